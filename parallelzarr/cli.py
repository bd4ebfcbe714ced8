"""The ``parallelzarr`` command line: a thin shell over :mod:`parallelzarr.entry.write`.

Exit codes: 0 done; 2 bad input (message on stderr, nothing written; click's usage errors too);
1 failure during the run. ``--json`` puts one JSON document on stdout; everything else that is
not the result (progress bars, dashboard links, warnings) goes to stderr.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import click

from parallelzarr.cluster import ClusterStartError
from parallelzarr.errors import ParallelZarrError, StoreWriteError
from parallelzarr.inputs.sources import MFDATASET_OPTIONS  # noqa: F401  (re-exported: how several inputs combine)
from parallelzarr.redact import is_secret_key, redact, url_credentials
from parallelzarr.run.failures import describe_cause, failures_as

__all__ = ["main"]

_STRATEGIES = ("auto", "direct", "gather-edges", "rechunk", "lock")
_MODES = ("w-", "w", "a", "a-", "r+")


# --- errors and exit codes ------------------------------------------------------------------------


class BadInput(click.ClickException):
    """Bad input: exit code 2, nothing written."""

    exit_code = 2


class RunFailure(click.ClickException):
    """A failure while running: exit code 1."""

    exit_code = 1


class _Group(click.Group):
    """Maps library errors to exit codes: ParallelZarrError -> 2, any other exception -> 1."""

    def invoke(self, ctx: click.Context) -> Any:
        tokens = [*getattr(ctx, "_protected_args", []), *ctx.args]
        ctx.meta["pz.secrets"] = _argument_secrets(tokens)
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException as exc:
            exc.message = _redact(exc.message)  # type: ignore[misc]  # click marks it Final; it is the text it prints
            raise
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (StoreWriteError, ClusterStartError) as exc:  # the run or its cluster failed, not the input: exit 1
            if ctx.meta.get("pz.traceback"):
                _print_traceback()
            raise RunFailure(_redact(str(exc))) from exc
        except ParallelZarrError as exc:
            if ctx.meta.get("pz.traceback"):
                _print_traceback()
            raise BadInput(_redact(str(exc))) from exc
        except KeyboardInterrupt:
            # SIGINT (Ctrl-C): say what the store holds now and how to go on, then exit 130.
            click.echo(_redact(_interrupted(ctx.meta.get("pz.running"))), err=True)
            raise click.exceptions.Exit(130) from None
        except Exception as exc:
            if ctx.meta.get("pz.traceback"):
                _print_traceback()
            hint = "" if ctx.meta.get("pz.traceback") else " (rerun with `parallelzarr --traceback ...` for details)"
            raise RunFailure(_redact(f"{type(exc).__name__}: {exc}{hint}")) from exc


def _running(command: str, target: str, **details: Any) -> None:
    """Note what this invocation writes, for the message of an interrupt."""
    click.get_current_context().meta["pz.running"] = {"command": command, "target": target, **details}


def _interrupted(running: Mapping[str, Any] | None) -> str:
    """What an interrupted command kept and how to resume it (after its running tasks finished)."""
    from parallelzarr.reports.progress import finish_running_tasks

    finish_running_tasks()
    if not running:
        return "Interrupted; nothing was being written."
    command, target = running["command"], running["target"]
    head = f"Interrupted: {command} to {target} stopped."
    if command == "rechunk":
        return (f"{head} Finished tasks are kept; the target is published only when complete. To resume, rerun the "
                "same command: finished tasks are skipped.")
    try:
        from parallelzarr.reports.info import bookkeeping
        from parallelzarr.store.resolve import resolve_store, store_has_data

        store = resolve_store(target, running.get("storage_options"), read_only=True).store
        held, has_data = bookkeeping(store), store_has_data(store)
    except Exception:  # the message must come out whatever the store's state
        held, has_data = {}, None
    if held.get("journal"):
        return (f"{head} Its commit was interrupted: readers of the consolidated metadata still see the data before "
                "it. `parallelzarr repair TARGET` or rerunning the same command finishes the commit.")
    if command == "append":
        return (f"{head} Readers see whole appends only: the data before this append, or with it if its commit had "
                "finished (`parallelzarr info TARGET` lists the appends). New chunks not committed lie beyond the "
                "stored shape, unseen. To resume, rerun the same command (rows already stored are skipped as "
                "identical); `parallelzarr repair TARGET` drops the uncommitted chunks instead.")
    if running.get("region"):
        return (f"{head} Each value in the region is its old or its new value; metadata is unchanged. To resume, "
                "rerun the same command.")
    if held.get("unpublished_write") or not has_data:
        return (f"{head} Nothing was published: readers see no dataset at {target} (chunks written so far are kept "
                "unpublished). To resume, rerun the same command with --mode w.")
    return f"{head} The write had published {target} before stopping; it is complete (`parallelzarr info TARGET`)."


def _argument_secrets(tokens: Sequence[str]) -> list[str]:
    """Credentials on the command line: secret ``-o KEY=VALUE`` values and URL userinfo."""
    found: list[str] = []
    for token in tokens:
        found += url_credentials(token)
        item = token
        for prefix in ("--storage-option=", "-o"):
            if item.startswith(prefix) and item != prefix:
                item = item[len(prefix):]
        key, sep, value = item.partition("=")
        if sep and is_secret_key(key.strip().split(".")[-1]) and value:
            found.append(value)
            found.append(str(_scalar(value)))
    return found


def _redact(text: Any, options: Mapping[str, Any] | None = None) -> str:
    """``text`` without the credentials of this invocation (command line and storage options)."""
    ctx = click.get_current_context(silent=True)
    secrets = list(ctx.find_root().meta.get("pz.secrets", [])) if ctx is not None else []
    return redact(text, options, secrets)


def _print_traceback() -> None:
    click.echo(_redact(traceback.format_exc()), err=True)


# --- option parsing --------------------------------------------------------------------------------


def _scalar(text: str) -> Any:
    """``"7"`` -> 7, ``"true"`` -> True, ``"null"`` -> None, anything else stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_chunks(text: str | None, *, allow_auto: bool = True) -> dict[str, int | str | None] | tuple[int, ...] | None:
    """Parse ``time=24,lat=-1`` into ``{"time": 24, "lat": -1}`` (or ``100,100`` into a tuple).

    Parameters
    ----------
    text
        The option value; ``None`` stays ``None``.
    allow_auto
        Accept ``auto`` as a size (dask's automatic chunking).

    Raises
    ------
    click.BadParameter
        On malformed input.
    """
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise click.BadParameter("empty chunk specification", param_hint="--chunks")
    if all("=" not in p for p in parts):
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise click.BadParameter(f"{text!r}: expected DIM=SIZE[,DIM=SIZE...] or SIZE,SIZE,...",
                                     param_hint="--chunks") from None
    out: dict[str, int | str | None] = {}
    for part in parts:
        dim, sep, size = part.partition("=")
        dim, size = dim.strip(), size.strip()
        if not sep or not dim or not size:
            raise click.BadParameter(f"{part!r}: expected DIM=SIZE", param_hint="--chunks")
        if size == "auto" and allow_auto:
            out[dim] = "auto"
            continue
        try:
            value = int(size)
        except ValueError:
            raise click.BadParameter(f"{part!r}: size must be an integer, -1 (whole axis)"
                                     + (" or auto" if allow_auto else ""), param_hint="--chunks") from None
        if value == 0 or value < -1:
            raise click.BadParameter(f"{part!r}: size must be positive or -1 (whole axis)", param_hint="--chunks")
        out[dim] = value
    return out


def parse_region(text: str | None) -> dict[str, slice] | str | None:
    """Parse ``time=0:24,lat=10:20`` into slices by dimension; ``auto`` stays ``"auto"``."""
    if text is None or text == "auto":
        return text
    out: dict[str, slice] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        dim, sep, rng = part.partition("=")
        start, colon, stop = rng.partition(":")
        try:
            if not sep or not colon:
                raise ValueError
            out[dim.strip()] = slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)
        except ValueError:
            raise click.BadParameter(f"{part!r}: expected DIM=START:STOP", param_hint="--region") from None
    return out


def parse_storage_options(items: Sequence[str]) -> dict[str, Any]:
    """Turn ``key=value`` items into fsspec storage options.

    Values are read as JSON when they parse (``anon=true`` -> ``True``), else kept as text;
    dotted keys nest (``client_kwargs.endpoint_url=http://...``).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            # Values may be credentials: name only the key in the message.
            raise click.BadParameter(f"expected KEY=VALUE, got an item with key {key.strip()!r}",
                                     param_hint="--storage-option")
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise click.BadParameter(f"{key!r} conflicts with another option", param_hint="--storage-option")
        node[leaf] = _scalar(value)
    return out


def _option_keys(options: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of storage options; never their values (they may be credentials)."""
    keys: list[str] = []
    for k, v in options.items():
        if isinstance(v, Mapping):
            keys += _option_keys(v, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


# --- shared run options --------------------------------------------------------------------------


@dataclass
class RunOptions:
    """Options every writing command takes."""

    dry_run: bool
    cluster: str
    workers: int | None
    threads_per_worker: int | None
    progress: bool
    report: str | None
    json: bool
    storage_options: dict[str, Any]

    def emit(self, text: str, data: Mapping[str, Any]) -> None:
        """Print the human text, or the JSON document with ``--json``."""
        if self.json:
            click.echo(_redact(json.dumps(dict(data), indent=2, default=str), self.storage_options))
        else:
            click.echo(_redact(text, self.storage_options))


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options shared by every writing command; the function receives ``run: RunOptions``."""
    options = [
        click.option("--dry-run", is_flag=True, help="Print the plan and write nothing."),
        click.option("--cluster", default="threads", show_default=True, envvar="PARALLELZARR_CLUSTER",
                     help="threads (dask's threads in this process: no start-up cost, the default), sync, "
                          "local (LocalCluster of worker processes sized to this machine), a scheduler "
                          "address tcp://HOST:PORT, a scheduler file *.json, or a cluster config *.yaml "
                          "(kind: local|slurm|pbs)."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Worker processes (local), jobs (slurm/pbs configs) or threads (--cluster threads)."),
        click.option("--threads-per-worker", type=click.IntRange(min=1), default=None,
                     help="Threads per worker process."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar on stderr [default: when stderr is a terminal]."),
        click.option("--report", type=click.Path(dir_okay=False), default=None,
                     help="Write a dask performance report (HTML) here; needs a distributed cluster."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout."),
        click.option("--storage-option", "-o", "storage_option", multiple=True, metavar="KEY=VALUE",
                     help="fsspec option for URL stores (repeatable; dotted keys nest)."),
    ]

    def wrapper(*args: Any, dry_run: bool, cluster: str, workers: int | None, threads_per_worker: int | None,
                progress: bool | None, report: str | None, as_json: bool, storage_option: Sequence[str],
                **kwargs: Any) -> Any:
        run = RunOptions(
            dry_run=dry_run,
            cluster=cluster,
            workers=workers,
            threads_per_worker=threads_per_worker,
            progress=sys.stderr.isatty() if progress is None else progress,
            report=report,
            json=as_json,
            storage_options=parse_storage_options(storage_option),
        )
        if report and not dry_run:
            if cluster.strip() in ("threads", "sync"):
                raise BadInput(f"--report needs a distributed cluster; --cluster {cluster} runs without one "
                               "(use --cluster local)")
            from parallelzarr.reports.progress import report_problem

            problem = report_problem()
            if problem:
                raise BadInput(f"--report: {problem}")
        return func(*args, run=run, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    for opt in reversed(options):
        wrapper = opt(wrapper)
    return wrapper


def _execute(run: RunOptions, work: Callable[[dict[str, Any]], Any]) -> tuple[Any, float]:
    """Run ``work(compute_kwargs)`` on the requested cluster, with progress bar and report."""
    from parallelzarr.cluster import resolve_cluster
    from parallelzarr.reports.progress import compute_kwargs, performance_report, progress

    with ExitStack() as stack:
        client = stack.enter_context(resolve_cluster(run.cluster, run.workers, run.threads_per_worker))
        kwargs = compute_kwargs(client, run.workers, single=run.cluster.strip() == "sync")
        stack.enter_context(performance_report(run.report, client))
        kwargs.update(stack.enter_context(progress(run.progress, client)))
        start = time.perf_counter()
        result = work(kwargs)
        seconds = time.perf_counter() - start
    if run.report and not run.json:
        click.echo(f"performance report: {run.report}", err=True)
    return result, seconds


# --- inputs ---------------------------------------------------------------------------------------


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Expand local globs; URLs pass through. Raises :class:`BadInput` when nothing matches."""
    from parallelzarr.inputs.sources import SourceError, expand_sources

    try:
        return expand_sources(list(inputs))
    except SourceError as exc:
        raise BadInput(str(exc)) from None


def _names_option(text: str | None) -> list[str] | None:
    """``t2m,u10`` -> ``["t2m", "u10"]``."""
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def open_inputs(inputs: Sequence[str], chunks: Any, storage_options: Mapping[str, Any], *,
                variables: str | None = None, drop_variables: str | None = None, preprocess: str | None = None) -> Any:
    """Open netCDF files and zarr stores (or globs of them) as one lazy xarray Dataset.

    See :func:`parallelzarr.inputs.sources.open_sources` (the API uses the same): several files
    combine by coordinates with :data:`MFDATASET_OPTIONS`; without ``--chunks``, zarr inputs keep
    their stored chunks and netCDF inputs use dask's ``auto`` chunking.
    """
    from parallelzarr.inputs.sources import open_sources

    return open_sources(list(inputs), chunks=chunks, variables=_names_option(variables),
                        drop_variables=_names_option(drop_variables), preprocess=preprocess,
                        storage_options=storage_options)


def _target_chunks(text: str) -> Any:
    """``rechunk --target-chunks``: inline ``time=-1,latitude=25``, ``100,100``, or a JSON file of them."""
    if text.strip().endswith(".json") or (os.path.isfile(text) and "=" not in text):
        try:
            with open(text) as fh:
                value = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise BadInput(f"--target-chunks {text}: cannot read a JSON file of chunks: {exc}") from exc
        if not isinstance(value, dict | list):
            raise BadInput(f"--target-chunks {text}: expected a JSON object (dimension or variable -> chunks) or a list")
        return tuple(value) if isinstance(value, list) else value
    return parse_chunks(text, allow_auto=False)


def _load_encoding(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with open(path) as fh:
            enc = json.load(fh)
    except json.JSONDecodeError as exc:
        raise BadInput(f"--encoding {path}: not valid JSON: {exc}") from exc
    if not isinstance(enc, dict):
        raise BadInput(f"--encoding {path}: expected a JSON object of variable -> encoding")
    return enc


def _given(**options: Any) -> dict[str, Any]:
    """The options the user gave: ``None`` (an unset flag) leaves the API's own default in force."""
    return {k: v for k, v in options.items() if v is not None}


def _to_data(obj: Any) -> Any:
    """JSON-able form of an API result (plans, reports, dataclasses)."""
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _to_data(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_data(v) for v in obj]
    return str(obj)


# --- commands -------------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="parallelzarr")
@click.option("--traceback", "show_traceback", is_flag=True, help="Print full tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, show_traceback: bool) -> None:
    """Write, append to and rechunk Zarr data in parallel on Dask, safely.

    Exit codes: 0 done, 2 bad input (nothing written), 1 failure during the run.
    """
    ctx.meta["pz.traceback"] = show_traceback
    # Writing consolidated zarr v3 metadata is intended; the warning only alarms CLI users.
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
    # Our bookkeeping prefix (.parallelzarr/) is not a zarr node; zarr says so when listing groups.
    warnings.filterwarnings("ignore", message=r"Object at \.parallelzarr\S* is not recognized")
    # zarr warns that fixed-width strings (a 0-d ``expver``) have no v3 spec yet; zarr-python reads
    # them back, which is what the CLI's users read with. The plan and README say so once.
    warnings.filterwarnings("ignore", message=r"The data type \(FixedLength")


def _input_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("--chunks", default=None, metavar="DIM=SIZE,...",
                     help="dask chunks for reading the inputs, e.g. time=24,lat=-1 (-1: whole axis; auto)."),
        click.option("--variables", default=None, metavar="NAME,...",
                     help="Keep only these data variables of the inputs (coordinates stay)."),
        click.option("--drop-variables", default=None, metavar="NAME,...",
                     help="Leave these variables or coordinates of the inputs out (e.g. a static lsm for --region)."),
        click.option("--preprocess", default=None, metavar="MODULE:FUNCTION",
                     help="Function applied to each input file's Dataset before combining (open_mfdataset's "
                          "preprocess); MODULE may be importable or a path/to/file.py."),
        click.option("--encoding", "encoding_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="JSON file: variable -> encoding (chunks, shards, compressors, dtype, _FillValue...)."),
        click.option("--strategy", type=click.Choice(_STRATEGIES), default="auto", show_default=True,
                     help="How misaligned dask blocks are written."),
        click.option("--max-mem", default="256MiB", show_default=True, help="Memory budget per task."),
        click.option("--consolidated/--no-consolidated", default=True, show_default=True,
                     help="Write consolidated metadata."),
    ]):
        func = opt(func)
    return func


def _write_text(head: str, plan: Any, seconds: float | None) -> str:
    text = str(plan)
    if seconds is not None:
        text += f"\n{head} in {seconds:.2f}s"
    return text


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.argument("target")
@_input_options
@click.option("--mode", type=click.Choice(_MODES), default=None,
              help="w- create (fail if the target exists; the default), w overwrite, r+ region of existing arrays "
                   "(the default with --region), a (or a-) add variables or overwrite stored ones, as in xarray. "
                   "Appends along a dimension: `parallelzarr append`.")
@click.option("--region", default=None, metavar="DIM=START:STOP,...|auto", help="Write into this region (mode r+).")
@click.option("--zarr-format", type=click.Choice(["2", "3"]), default="3", show_default=True)
@click.option("--lock", type=click.Choice(["file", "distributed", "threading"]), default=None,
              help="Lock backend for --strategy lock.")
@click.option("--part", default=None, metavar="I/N",
              help="Write only part I of N of a job array (after `parallelzarr init --parts N`; then finalize).")
@run_options
def write(inputs: tuple[str, ...], target: str, chunks: str | None, encoding_file: str | None, strategy: str,
          max_mem: str, consolidated: bool, mode: str, region: str | None, zarr_format: str, lock: str | None,
          run: RunOptions, part: str | None = None, variables: str | None = None, drop_variables: str | None = None,
          preprocess: str | None = None) -> None:
    """Write INPUTS (netCDF files, zarr stores or globs) to the zarr store TARGET."""
    import parallelzarr as pz

    ds = open_inputs(inputs, parse_chunks(chunks), run.storage_options, variables=variables,
                     drop_variables=drop_variables, preprocess=preprocess)
    _running("write", target, region=region, storage_options=run.storage_options or None)
    options = dict(mode=mode, region=parse_region(region), encoding=_load_encoding(encoding_file), strategy=strategy,
                   max_mem=max_mem, storage_options=run.storage_options or None, zarr_format=int(zarr_format),
                   lock=lock)
    doc: dict[str, Any] = {"command": "write", "target": target, "inputs": list(inputs), "dry_run": run.dry_run,
                           "storage_option_keys": _option_keys(run.storage_options)}
    if run.dry_run:
        plan = pz.plan_write(ds, target, **_given(**options))
        run.emit(str(plan), {**doc, "plan": _to_data(plan)})
        return
    if part is not None:  # one part of a job array: validated against init's manifest before any write
        plan, seconds = _execute(run, lambda kw: pz.to_zarr(ds, target, **_given(consolidated=consolidated, part=part,
                                                                            **options), **kw))
        run.emit(_write_text(f"wrote part {part} of {target}", plan, seconds),
                 {**doc, "part": part, "seconds": seconds, "plan": _to_data(plan)})
        return
    if strategy != "lock":
        # Plan once before starting a cluster so bad input fails fast. (Lock plans depend on the
        # scheduler: a distributed Lock needs the client, so those are checked inside the run.)
        pz.plan_write(ds, target, **_given(**options))
    plan, seconds = _execute(run, lambda kw: pz.to_zarr(ds, target, **_given(consolidated=consolidated, **options),
                                                   **kw))
    run.emit(_write_text(f"wrote {target}", plan, seconds), {**doc, "seconds": seconds, "plan": _to_data(plan)})


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.argument("target")
@click.option("--append-dim", required=True, help="Dimension to append along.")
@click.option("--append-id", default=None, help="Identity of this append (default: from the coordinate labels).")
@click.option("--append-step", default=None, metavar="STEP",
              help="Expected step between --append-dim labels (1h, 1D; a number for numeric labels): gaps and "
                   "uneven steps are refused.")
@click.option("--gaps", type=click.Choice(["refuse", "allow"]), default="refuse", show_default=True,
              help="With --append-step: allow missing labels (late data then needs rows filled for it; see README).")
@click.option("--repeat", type=click.Choice(["skip", "overwrite", "error"]), default="skip", show_default=True,
              help="Data at labels already stored: skip identical rows (refuse changed ones), overwrite changed "
                   "rows in place (crash-safe), or refuse any.")
@click.option("--static", type=click.Choice(["verify", "ignore"]), default="verify", show_default=True,
              help="Check that variables without --append-dim (lsm, expver) equal the stored ones.")
@click.option("--wait", default=None, metavar="DURATION",
              help="Wait this long (30s, 5min) for a lease held by another append, then fail as without it.")
@click.option("--part", default=None, metavar="I/N",
              help="Append only part I of N of a job array (after `parallelzarr init --append-dim ... --parts N`).")
@_input_options
@run_options
def append(inputs: tuple[str, ...], target: str, append_dim: str, append_id: str | None, chunks: str | None,
           encoding_file: str | None, strategy: str, max_mem: str, consolidated: bool, run: RunOptions,
           part: str | None = None, variables: str | None = None, drop_variables: str | None = None,
           preprocess: str | None = None, append_step: str | None = None, gaps: str = "refuse", repeat: str = "skip",
           static: str = "verify", wait: str | None = None) -> None:
    """Append INPUTS along --append-dim to the zarr store TARGET (crash-safe, idempotent)."""
    import parallelzarr as pz

    ds = open_inputs(inputs, parse_chunks(chunks), run.storage_options, variables=variables,
                     drop_variables=drop_variables, preprocess=preprocess)
    checks = dict(append_step=append_step, gaps=gaps, repeat=repeat, static=static)
    _running("append", target, storage_options=run.storage_options or None)
    encoding = _load_encoding(encoding_file)
    doc: dict[str, Any] = {"command": "append", "target": target, "inputs": list(inputs), "dry_run": run.dry_run,
                           "append_dim": append_dim, "storage_option_keys": _option_keys(run.storage_options)}
    if run.dry_run:
        plan = pz.plan_append(ds, target, append_dim, **_given(strategy=strategy, max_mem=max_mem, encoding=encoding,
                                                               storage_options=run.storage_options or None,
                                                               **checks))
        run.emit(str(plan), {**doc, "plan": _to_data(plan)})
        return
    if part is not None:  # one part of a job-array append: committed by finalize
        plan, seconds = _execute(run, lambda kw: pz.to_zarr(ds, target, **_given(
            append_dim=append_dim, part=part, strategy=strategy, max_mem=max_mem, encoding=encoding,
            storage_options=run.storage_options or None), **kw))
        run.emit(_write_text(f"wrote part {part} of the append to {target}", plan, seconds),
                 {**doc, "part": part, "seconds": seconds, "plan": _to_data(plan)})
        return
    result, seconds = _execute(run, lambda kw: pz.append(ds, target, append_dim, **_given(
        strategy=strategy, append_id=append_id, consolidated=consolidated,
        storage_options=run.storage_options or None, max_mem=max_mem, encoding=encoding, wait=wait, **checks), **kw))
    run.emit(_write_text(f"appended to {target}", result, seconds),
             {**doc, "seconds": seconds, "result": _to_data(result)})


@main.command()
@click.argument("source")
@click.argument("target")
@click.option("--target-chunks", "--chunks", "chunks", required=True, metavar="DIM=SIZE,...|FILE.json",
              help="Target chunks inline by dimension (time=-1,latitude=25,longitude=25), for one array "
                   "SIZE,SIZE,..., or a JSON file of them ({\"time\": -1, ...}, or variable -> chunks).")
@click.option("--max-mem", default="1GB", show_default=True, help="Memory budget per task.")
@click.option("--temp", default=None, help="Store for intermediates (default: inside TARGET, removed at the end).")
@click.option("--zarr-format", type=click.Choice(["2", "3"]), default=None, help="Target zarr format (default: the source's).")
@click.option("--keep-temp", is_flag=True, help="Keep intermediates after success.")
@run_options
def rechunk(source: str, target: str, chunks: str, max_mem: str, temp: str | None, zarr_format: str | None,
            keep_temp: bool, run: RunOptions) -> None:
    """Rechunk the zarr array or group SOURCE into TARGET within --max-mem per task (resumable)."""
    import zarr

    import parallelzarr as pz

    target_chunks = _target_chunks(chunks)
    _running("rechunk", target)
    # -1 (whole axis) goes through as -1: in a dimension dict the rechunk API reads None as "keep".
    so = run.storage_options or None
    from parallelzarr.store.resolve import resolve_store

    def refused(exc: BaseException) -> BadInput | None:  # missing nodes, unreachable endpoints, bad options
        if isinstance(exc, ParallelZarrError):
            return None  # says what is wrong already
        return BadInput(_redact(f"cannot open rechunk source {source!r}: {describe_cause(exc)}", so))

    with failures_as(refused, Exception, secret_safe=True):
        src = zarr.open(resolve_store(source, so, read_only=True).store, mode="r")
    target_options = {"zarr_format": int(zarr_format)} if zarr_format else None
    doc: dict[str, Any] = {"command": "rechunk", "source": source, "target": target, "dry_run": run.dry_run,
                           "storage_option_keys": _option_keys(run.storage_options)}
    if run.dry_run:
        plan = pz.plan_rechunk(src, target_chunks, max_mem, **_given(target_options=target_options,
                                                                     threads_per_worker=run.threads_per_worker))
        run.emit(str(plan), {**doc, "plan": _to_data(plan)})
        return
    tpw = run.threads_per_worker or (run.workers if run.cluster.strip() == "threads" else None)

    def work(kw: dict[str, Any]) -> Any:
        job = pz.rechunk(src, target_chunks, max_mem, target, **_given(
            temp_store=temp, target_options=target_options, storage_options=so, keep_temp=keep_temp or None,
            threads_per_worker=tpw))
        job.execute(**kw)
        return job, job.result  # execute() returns the target, as rechunker's does

    (job, result), seconds = _execute(run, work)
    summary = f"rechunked {source} -> {target}"
    if result is not None and hasattr(result, "tasks_run"):
        summary += f": {result.tasks_run} task(s) run, {result.tasks_skipped} skipped"
        if getattr(result, "resumed", False):
            summary += " (resumed an interrupted run)"
    result_data = _to_data(result)
    if isinstance(result_data, dict):
        result_data.pop("target", None)  # the opened zarr node
    run.emit(_write_text(summary, job.plan, seconds),
             {**doc, "seconds": seconds, "plan": _to_data(job.plan), "result": result_data})


# --- job arrays (parallelzarr.entry.parts): init, then `write --part I/N` per task, then finalize ----------


@main.command("init")
@click.argument("inputs", nargs=-1, required=True)
@click.argument("target")
@_input_options
@click.option("--parts", type=click.IntRange(min=1), required=True, help="Number of parts (job-array tasks).")
@click.option("--mode", type=click.Choice(_MODES), default=None, help="As for write.")
@click.option("--region", default=None, metavar="DIM=START:STOP,...|auto", help="Parts write into this region.")
@click.option("--append-dim", default=None, help="The parts append along this dimension (committed at finalize).")
@click.option("--zarr-format", type=click.Choice(["2", "3"]), default="3", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("--storage-option", "-o", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="fsspec option for URL stores (repeatable).")
def init_parts(inputs: tuple[str, ...], target: str, chunks: str | None, encoding_file: str | None, strategy: str,
               max_mem: str, consolidated: bool, parts: int, mode: str | None, region: str | None,
               append_dim: str | None, zarr_format: str, as_json: bool, storage_option: Sequence[str],
               **source: Any) -> None:
    """Lay down TARGET's metadata unpublished for a write of INPUTS in --parts parts (a job array).

    Then run `parallelzarr write INPUTS TARGET --part I/N` for I = 0..N-1 (any order, any host,
    reruns skip finished work) and `parallelzarr finalize TARGET` to publish.
    """
    from parallelzarr.entry.parts import init

    so = parse_storage_options(storage_option)
    ds = open_inputs(inputs, parse_chunks(chunks), so, **source)  # the other input options, as for write
    status = init(ds, target, parts, mode, region=parse_region(region), append_dim=append_dim,
                  encoding=_load_encoding(encoding_file), strategy=strategy, max_mem=max_mem,
                  storage_options=so or None, zarr_format=int(zarr_format), consolidated=consolidated)
    text = json.dumps({"command": "init", **status.to_dict()}, indent=2, default=str) if as_json else str(status)
    click.echo(_redact(text, so))


@main.command()
@click.argument("target")
@click.option("--abort", is_flag=True, help="Give the job array up instead: publish nothing, drop its bookkeeping "
              "(an append's unpublished rows and lease too).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("--storage-option", "-o", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="fsspec option for URL stores (repeatable).")
def finalize(target: str, as_json: bool, storage_option: Sequence[str], abort: bool = False) -> None:
    """Publish TARGET's job-array write once every part is done (exit 1 listing the missing parts otherwise)."""
    from parallelzarr.entry.parts import PartsIncompleteError
    from parallelzarr.entry.parts import abort as abort_parts
    from parallelzarr.entry.parts import finalize as finalize_parts

    so = parse_storage_options(storage_option)
    try:
        status = (abort_parts if abort else finalize_parts)(target, storage_options=so or None)
    except PartsIncompleteError as exc:
        raise RunFailure(_redact(str(exc), so)) from exc
    text = json.dumps({"command": "finalize", **status.to_dict()}, indent=2, default=str) if as_json else str(status)
    click.echo(_redact(text, so))


@main.command()
@click.argument("target")
@click.option("--force", is_flag=True, help="Clear the append lease even if its holder may still be alive.")
@click.option("--truncate", is_flag=True,
              help="If arrays disagree on a dimension's length, cut the longer ones back to the shortest (drops rows).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("--storage-option", "-o", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="fsspec option for URL stores (repeatable).")
def repair(target: str, force: bool, truncate: bool, as_json: bool, storage_option: Sequence[str]) -> None:
    """Repair TARGET after an interrupted append: roll forward, clear stale leases, drop orphan chunks.

    Also checks that the arrays agree on each dimension's length (--truncate cuts them back).
    Exits 1 when problems remain (e.g. a live lease: rerun with --force once its holder is gone),
    2 when there is no store at TARGET.
    """
    import parallelzarr as pz

    so = parse_storage_options(storage_option)
    report = pz.repair(target, **_given(force=force, truncate=truncate or None, storage_options=so or None))
    if as_json:
        click.echo(_redact(json.dumps({"command": "repair", "target": target, "report": _to_data(report)}, indent=2,
                                      default=str), so))
    else:
        click.echo(_redact(str(report), so))
    if getattr(report, "ok", True) is False:
        sys.exit(1)


@main.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("--attrs", is_flag=True, help="Also list attributes.")
@click.option("--storage-option", "-o", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="fsspec option for URL stores (repeatable).")
def info(target: str, as_json: bool, attrs: bool, storage_option: Sequence[str]) -> None:
    """Show the tree of TARGET: shapes, dtypes, chunks, shards, codecs, sizes, the append log, and any
    held lease (holder, age), interrupted commit (journal) or unpublished write."""
    from parallelzarr.reports.info import format_info, inspect_store

    so = parse_storage_options(storage_option)
    data = inspect_store(target, storage_options=so or None)
    click.echo(_redact(json.dumps(data, indent=2, default=str) if as_json else format_info(data, attrs=attrs), so))


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """Run the parallelzarr demo (arguments go to it; try `parallelzarr demo --help`)."""
    try:
        module = importlib.import_module("parallelzarr.demo")
    except ModuleNotFoundError as exc:
        if exc.name != "parallelzarr.demo":
            raise
        raise RunFailure("the demo (parallelzarr.demo) is not available in this version of parallelzarr") from None
    code = module.main(list(args))
    sys.exit(int(code or 0))


if __name__ == "__main__":
    main()
