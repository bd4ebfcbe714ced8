"""The rechunk entry points: validate, plan, build, run, commit.

``rechunk`` mirrors rechunker's signature.  Planning happens in :func:`rechunk` and
refuses an impossible budget before any store is touched; :meth:`Rechunked.execute`
writes chunks first and the target's metadata last, so readers never see a target
that is half written.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, overload

import dask
import zarr
import zarr.storage
from dask.delayed import Delayed
from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.storage import StorePath

from parallelzarr.entry.kwargs import check_compute_kwargs
from parallelzarr.entry.notices import quietly
from parallelzarr.errors import EncodingError, PlanningError, StoreError, StoreOverlapError
from parallelzarr.graph.rechunk import MARK, StageIO, build_graph, plan_record
from parallelzarr.inputs.rechunk_source import SourceInfo, as_store, as_zarr3_codecs, resolve_source
from parallelzarr.plan.rechunk import DATA_MEANING, DEFAULT_MAX_TASKS, ArraySpec, MemoryModel, RechunkPlan
from parallelzarr.plan.rechunk import plan_rechunk as _plan_specs
from parallelzarr.plan.temp_codecs import describe_compressors, temp_compressors
from parallelzarr.run.failures import rechunk_failure, store_write_failures
from parallelzarr.store import keys
from parallelzarr.store.keys import zarr_format_of
from parallelzarr.store.staging import unpublished_array
from parallelzarr.units import format_bytes, parse_bytes

__all__ = ["rechunk", "plan_rechunk", "Rechunked", "RechunkResult", "TargetExistsError", "ExecutorError",
           "RechunkBudgetWarning", "resolve_executor"]

#: Keywords :func:`rechunk` and :func:`plan_rechunk` pass to the planner (``plan_array``).
PLANNER_KNOBS = frozenset({"max_tasks", "min_tasks", "target_task_bytes", "target_intermediate_bytes"})


def _check_knobs(func: str, knobs: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` naming keywords that are not planner knobs.

    Compute keywords (``scheduler=``...) get their own message: planning runs nothing, so they
    belong to :meth:`Rechunked.execute`.
    """
    check_compute_kwargs(func, knobs, extra=PLANNER_KNOBS)
    misplaced = sorted(k for k in knobs if k not in PLANNER_KNOBS)
    if misplaced:
        raise TypeError(
            f"{func}() got unexpected keyword argument(s) {', '.join(map(repr, misplaced))}: {func}() only "
            f"plans; pass dask.compute keywords to .execute() (planner keywords are {', '.join(sorted(PLANNER_KNOBS))})"
        )


def _threads_per_worker() -> int:
    """Threads that share one worker's memory on the scheduler that would run now."""
    try:
        from distributed import default_client

        nthreads = default_client().nthreads()
        if nthreads:
            return max(nthreads.values())
    except (ImportError, ValueError):
        pass
    import dask

    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


@quietly
def plan_rechunk(
    source: Any,
    target_chunks: Any = None,
    max_mem: int | str = "1GB",
    *,
    target_options: Mapping[str, Any] | None = None,
    threads_per_worker: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **knobs: Any,
) -> RechunkPlan:
    """Plan a rechunk without writing anything.

    Parameters
    ----------
    source
        What :func:`rechunk` takes (zarr array or group, dask array, xarray Dataset), or a
        sequence of :class:`~parallelzarr.plan.rechunk.ArraySpec` (pure planning, no I/O at all).
    target_chunks, max_mem, target_options
        As in :func:`rechunk`.
    threads_per_worker
        For the per-worker memory estimate; detected from the active scheduler if None.
    storage_options
        fsspec options used to reopen a Dataset source's store when it is a URL.
    **knobs
        Planner knobs (``max_tasks``, ``min_tasks``, ``target_task_bytes``,
        ``target_intermediate_bytes``).

    Returns
    -------
    RechunkPlan

    Raises
    ------
    MemoryBudgetError
        If ``max_mem`` cannot hold even a task's chunk data (see :func:`rechunk`).
    TypeError
        On keywords that are not planner knobs.
    """
    _check_knobs("plan_rechunk", knobs)
    if isinstance(source, Sequence) and all(isinstance(s, ArraySpec) for s in source):
        return _plan_with_warnings(list(source), max_mem, threads_per_worker, knobs)
    info = resolve_source(source, target_chunks, target_options, storage_options)
    return _plan(info, max_mem, threads_per_worker, knobs,
                 intermediate_codec=describe_compressors(_temp_codecs(None, info.zarr_format)))


@dataclass
class RechunkResult:
    """What :meth:`Rechunked.execute` did.

    Attributes
    ----------
    target
        The target, opened with zarr.
    tasks_run, tasks_skipped
        Tasks that copied data, and tasks skipped because a previous run finished them.
    resumed
        Whether this run continued an interrupted one.
    per_stage
        Tasks run per ``"<array>/<stage>"``.
    seconds
        Wall time.
    """

    target: Any
    tasks_run: int
    tasks_skipped: int
    resumed: bool
    per_stage: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class TargetExistsError(StoreError, ValueError):
    """The rechunk target already holds zarr data (a ``ValueError``, as zarr's ContainsArrayError in rechunker)."""


class ExecutorError(PlanningError):
    """An ``executor`` parallelzarr does not run (a ``ValueError``, as in rechunker)."""


class RechunkBudgetWarning(UserWarning):
    """``max_mem`` is read as rechunker reads it, or the plan has very many tasks."""


#: rechunker's executor names parallelzarr runs, and the ``dask.compute`` keywords each means.
EXECUTORS: Mapping[str, Mapping[str, Any]] = MappingProxyType({"dask": MappingProxyType({}),
                                                             "python": MappingProxyType({"scheduler": "sync"})})
#: rechunker's other executors: engines of their own that parallelzarr does not drive.
PEER_EXECUTORS = frozenset({"beam", "prefect", "pywren"})


def resolve_executor(executor: Any) -> dict[str, Any]:
    """Return the ``dask.compute`` keywords for one of rechunker's executor names.

    ``"dask"`` runs on the active dask scheduler (threads, processes or a distributed Client);
    ``"python"`` runs in this process, one task after another (rechunker's plain-Python executor).

    Raises
    ------
    ExecutorError
        For other names (``ValueError``; rechunker's message starts the same way).
    TypeError
        For executor objects (rechunker's experimental ``CopySpecExecutor`` interface).
    """
    if not isinstance(executor, str):
        raise TypeError(f"executor must be a name ('dask' or 'python'), got {type(executor).__name__}: parallelzarr "
                        "runs its own dask graph, not rechunker's CopySpecExecutor objects")
    name = executor.lower()
    if name in EXECUTORS:
        return dict(EXECUTORS[name])
    if name in PEER_EXECUTORS:
        raise ExecutorError(f"unrecognized executor {executor!r} for parallelzarr: rechunker's {name} executor is not "
                            "supported; use executor='dask' (any dask scheduler, including a distributed Client) or "
                            "'python' (in this process)")
    raise ExecutorError(f"unrecognized executor {executor!r}; parallelzarr takes 'dask' or 'python'")


def _open_now(store: Store | None) -> None:
    """Open ``store`` in this thread: tasks writing their first chunks at once would each open it,
    and zarr's LocalStore refuses a second open ("store is already open", seen in rechunker's tests)."""
    ensure = getattr(store, "_ensure_open", None)
    if store is not None and ensure is not None and not getattr(store, "_is_open", True):
        sync(ensure())


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _node_kind(store: Store, path: str) -> str | None:
    """``"array"``/``"group"`` when zarr metadata exists at ``path`` in ``store``, else None."""
    if keys.exists(store, _join(path, ".zarray")):
        return "array"
    if keys.exists(store, _join(path, ".zgroup")):
        return "group"
    doc = keys.get(store, _join(path, "zarr.json"))
    if doc is None:
        return None
    try:
        return str(json.loads(doc).get("node_type", "group"))
    except ValueError:
        return "group"


class Rechunked:
    """A planned rechunk; print ``.plan`` to review it, call :meth:`execute` to run it.

    rechunker's ``Rechunked``: ``repr`` lists source, intermediate and target, and
    :meth:`execute` returns the target. The target is published when the run finishes (see
    :meth:`execute`); the figures of the run are kept in :attr:`result`.
    """

    def __init__(
        self,
        info: SourceInfo,
        plan: RechunkPlan,
        target_store: Store,
        temp_store: Store | None,
        temp_options: Mapping[str, Any] | None = None,
        keep_temp: bool = False,
        *,
        source: Any = None,
        target_path: str = "",
        temp_path: str = "",
        target_group: zarr.Group | None = None,
        executor_kwargs: Mapping[str, Any] | None = None,
        publish: str = "last",
        temp_leaf: str | None = None,
    ) -> None:
        self._info = info
        self._temp_leaf = temp_leaf
        self._publish = publish
        self._replaced: list[str] = []  # nodes deleted because target_options asked to overwrite them
        self._resumed: bool | None = None  # decided when the target is laid down early
        self.plan = plan
        self._store = target_store
        self._prefix = target_path.strip("/")
        self._temp = temp_store
        self._temp_prefix = temp_path.strip("/")
        self._target_group = target_group
        self._temp_options = dict(temp_options or {})
        self._executor_kwargs = dict(executor_kwargs or {})
        self._source = source
        self._opened: Any = None
        self.keep_temp = keep_temp
        self.result: RechunkResult | None = None

    # ------------------------------------------------------------------ display

    @property
    def _target(self) -> Any:
        """The target as rechunker names it: the opened zarr node once published, else its store."""
        return self._opened if self._opened is not None else self._store

    def _describe_target(self) -> str:
        where = _describe(self._store) + (f" path {self._prefix!r}" if self._prefix else "")
        if self._opened is not None:
            return repr(self._opened)
        kinds = {"array": "array", "group": "group", "dataset": "group"}
        return f"<zarr {kinds[self._info.kind]} at {where}, published by execute()>"

    def _describe_intermediate(self) -> str | None:
        temps = [a for a in self.plan.arrays if a.intermediate_chunks is not None]
        if not temps:
            return None
        where = (_describe(self._temp) + (f" path {self._temp_prefix!r}" if self._temp_prefix else "")
                 if self._temp is not None else f"{_describe(self._store)} under {self._mark}/temp")
        chunks = ", ".join(f"{a.name or '<array>'} {a.intermediate_chunks}" for a in temps)
        return f"{len(temps)} intermediate array(s) in {where} (chunks {chunks}), removed after the run"

    def __repr__(self) -> str:
        p = self.plan
        entries = [f"* Source      : {self._source!r}" if self._source is not None
                   else f"* Source      : {self._info.kind}"]
        intermediate = self._describe_intermediate()
        if intermediate is not None:
            entries.append(f"* Intermediate: {intermediate}")
        entries.append(f"* Target      : {self._describe_target()}")
        entries.append(f"* Plan        : {len(p.arrays)} array(s), {p.n_tasks} tasks, {p.passes} pass(es), peak "
                       f"{format_bytes(p.task_memory)}/task of {format_bytes(p.max_mem)}"
                       + (" (max_mem read as chunk data, rechunker's meaning)" if p.budget_meaning == DATA_MEANING
                          else ""))
        return "<Rechunked>\n" + "\n".join(entries) + "\n"

    def _repr_html_(self) -> str:
        """Notebook view: source, intermediate, target and the plan, each foldable."""
        def body(obj: Any, text: str) -> str:
            try:
                return str(obj._repr_html_())
            except AttributeError:
                return f"<p><code>{html.escape(text)}</code></p>"

        parts = ["<h2>Rechunked</h2>"]
        parts.append(f"<details><summary><b>Source</b></summary>{body(self._source, repr(self._source))}</details>")
        intermediate = self._describe_intermediate()
        if intermediate is not None:
            parts.append(f"<details><summary><b>Intermediate</b></summary><p>{html.escape(intermediate)}</p></details>")
        target = self._opened if self._opened is not None else None
        parts.append(f"<details><summary><b>Target</b></summary>{body(target, self._describe_target())}</details>")
        parts.append(f"<details open><summary><b>Plan</b></summary>{self.plan._repr_html_()}</details>")
        return "\n".join(parts)

    # ------------------------------------------------------------------ helpers

    @property
    def _mark(self) -> str:
        return _join(self._prefix, MARK)

    def _node_paths(self) -> list[tuple[str, bool]]:
        """Target node paths this rechunk creates, with whether ``overwrite`` allows replacing each."""
        out = [(_join(self._prefix, j.path), self._info.overwrite.get(j.path, False)) for j in self._info.jobs]
        every = bool(self._info.jobs) and all(self._info.overwrite.get(j.path, False) for j in self._info.jobs)
        for path, _ in self._info.groups:
            full = _join(self._prefix, path)
            if self._target_group is not None and full == self._prefix:
                continue  # the given group itself: arrays are added to it, as rechunker does
            out.append((full, every))
        return out

    def _check_target(self) -> bool:
        """Whether the target holds an interrupted run of this plan (to resume).

        Raises :class:`TargetExistsError` when it holds other zarr data where this rechunk writes,
        unless ``target_options`` asked to overwrite it.
        """
        record = keys.get(self._store, f"{self._mark}/plan.json")
        if record is not None and json.loads(record).get("fingerprint") == self.plan.fingerprint():
            return True
        occupied = [(p, kind, ok) for p, ok in self._node_paths() if (kind := _node_kind(self._store, p))]
        refused = [(p, kind) for p, kind, ok in occupied if not ok]
        if refused:
            refused.sort(key=lambda pk: pk[1] != "array")
            path, kind = refused[0]
            raise TargetExistsError(
                f"target store {_describe(self._store)} already holds zarr data: path {path!r} contains an "
                f"{kind if kind == 'array' else 'group'} ({len(refused)} node(s) in the way); rechunk writes a new "
                "target, so give an empty location, delete it first, or pass target_options={'overwrite': True} "
                "(per array for groups and Datasets) to replace it"
            )
        return False

    def _clear_overwritten(self) -> None:
        """Delete what ``overwrite`` replaces (only nodes this rechunk writes).

        Before any chunk is written: stale chunks of the old array would otherwise show through
        where the new one has fill values (zarr skips writing those).
        """
        for path, ok in self._node_paths():
            if ok and _node_kind(self._store, path) is not None:
                keys.delete_prefix(self._store, path)
                self._replaced.append(path)

    def _temp_location(self, path: str, fp: str) -> tuple[Store, str]:
        leaf = path or self._temp_leaf or "array"
        if self._temp is None:
            return self._store, f"{self._mark}/temp/{fp}/{leaf}"
        return self._temp, _join(self._temp_prefix, leaf)

    def _stage_metadata(self) -> tuple[zarr.storage.MemoryStore, dict[str, zarr.Array]]:
        """Create the target's metadata in memory; return it and the staged arrays."""
        staging = zarr.storage.MemoryStore()
        for path, attrs in self._info.groups:
            full = _join(self._prefix, path)
            if self._target_group is not None and full == self._prefix:
                attrs = {**dict(self._target_group.attrs), **attrs}  # rechunker updates the given group's attrs
            zarr.create_group(staging, path=full or None, attributes=attrs, zarr_format=zarr_format_of(self._info.zarr_format),
                              overwrite=True)
        arrays = {}
        for j in self._info.jobs:
            arrays[j.path] = zarr.create_array(staging, **{**j.create_kwargs, "name": _join(self._prefix, j.path) or None})
        return staging, arrays

    def _commit(self, staging: zarr.storage.MemoryStore) -> None:
        """Copy the staged metadata documents, deepest first so the root lands last."""
        docs = {key: keys.get(staging, key) for key in keys.list_keys(staging)}
        keys.write_documents(self._store, {key: value for key, value in docs.items() if value is not None})
        if self._info.consolidated:
            zarr.consolidate_metadata(self._store, path=self._prefix or None, zarr_format=zarr_format_of(self._info.zarr_format))

    def _open_target(self) -> Any:
        if self._info.kind == "array":
            return zarr.open_array(self._store, path=_join(self._prefix, self._info.jobs[0].path), mode="r+")
        return zarr.open_group(self._store, path=self._prefix or None, mode="r+")

    # ------------------------------------------------------------------ run

    @overload
    def execute(self, keep_temp: bool | None = ..., *, compute: Literal[False], progress: bool = ...,
                **compute_kwargs: Any) -> Delayed: ...
    @overload
    def execute(self, keep_temp: bool | None = ..., *, compute: Literal[True] = ..., progress: bool = ...,
                **compute_kwargs: Any) -> zarr.Array | zarr.Group: ...
    @quietly
    def execute(self, keep_temp: bool | None = None, *, compute: bool = True, progress: bool = False,
                **compute_kwargs: Any) -> zarr.Array | zarr.Group | Delayed:
        """Run the rechunk on the active (or given) dask scheduler and return the target.

        Chunks are written first and the target's metadata last, so readers see no target until
        every chunk is in place (rechunker creates the target in :func:`rechunk`; see the README).
        An interrupted run resumes when the same rechunk is run again.

        Parameters
        ----------
        keep_temp
            Keep the intermediate arrays after success (default: the value given to
            :func:`rechunk`).
        compute
            If False, prepare the target and return a :class:`dask.delayed.Delayed` that runs the
            rechunk, publishes the target and returns it when computed.
        progress
            Draw a progress bar while computing (:func:`parallelzarr.reports.progress.compute_progress`).
        **compute_kwargs
            Passed to ``dask.compute`` (e.g. ``scheduler="threads"``); they override the executor's.

        Returns
        -------
        zarr.Array or zarr.Group or dask.delayed.Delayed
            The published target (an array for an array source, else a group), as rechunker
            returns it; the run's figures are in :attr:`result` (a :class:`RechunkResult`).

        Raises
        ------
        TargetExistsError
            If the target already holds zarr data that no interrupted run of this plan left behind.
        StoreWriteError
            On a store failure during the run (the target is not published; rerun to resume).
        TypeError
            On keywords ``dask.compute`` does not take.
        """
        check_compute_kwargs("Rechunked.execute", compute_kwargs)
        keep = self.keep_temp if keep_temp is None else keep_temp
        start = time.perf_counter()
        graph, finish = self._prepare(keep, start)
        if not compute:
            return dask.delayed(finish, pure=False, name=f"rechunk-commit-{self.plan.fingerprint()}")(graph)
        kwargs = {**self._executor_kwargs, **compute_kwargs}
        from parallelzarr.reports.progress import compute_progress

        with self._write_failures(), compute_progress(progress, kwargs) as kw:
            runs = graph.compute(**kw)
        return finish(runs)

    def _write_failures(self) -> AbstractContextManager[None]:
        """I/O failures of this run as :class:`StoreWriteError` (run/failures.py, shared with writes)."""
        return store_write_failures(rechunk_failure(_describe(self._store), self._publish, self._replaced))

    def _record_run(self) -> bool:
        """Check the target, clear what ``overwrite`` replaces, record the plan; return whether resuming."""
        resumed = self._check_target()
        if not resumed:
            self._clear_overwritten()
            keys.delete_prefix(self._store, self._mark)  # leftovers of another plan are useless now
            keys.put(self._store, f"{self._mark}/plan.json",
                      plan_record(self.plan.fingerprint(), self.plan.to_dict()))
        return resumed

    def _lay_down_early(self) -> None:
        """``publish='early'``: create the target's groups and arrays now, as rechunker does."""
        self._resumed = self._record_run()
        staging, _ = self._stage_metadata()
        for key in sorted(keys.list_keys(staging), key=lambda k: (-k.count("/"), k)):
            value = keys.get(staging, key)
            if value is not None:
                keys.put(self._store, key, value)
        self._opened = self._open_target()

    def _prepare(self, keep: bool, start: float) -> tuple[Delayed, Any]:
        """Record the run in the target, build the graph; return it and the function that publishes."""
        store = self._store
        fp = self.plan.fingerprint()
        resumed = self._resumed if self._resumed is not None else self._record_run()
        for each in (store, self._temp):
            _open_now(each)
        staging, staged = self._stage_metadata()
        chains: list[list[StageIO]] = []
        temps: list[tuple[Store, str, dict[str, bytes]]] = []
        for idx, (job, ap) in enumerate(zip(self._info.jobs, self.plan.arrays, strict=True)):
            # Chunks go to the real store under the staged metadata; metadata is committed last.
            final = unpublished_array(staged[job.path].metadata, StorePath(store, _join(self._prefix, job.path)))
            src: Any = job.source
            chain = []
            for stage in ap.stages:
                marker = f"{self._mark}/done/{fp}/{idx}/{stage.index}"
                if stage.write_to == "target":
                    dst = final
                else:
                    tstore, tpath = self._temp_location(job.path, fp)
                    dst, doc = self._temp_array(tstore, tpath, job, ap.intermediate_chunks)
                    if not resumed:
                        keys.delete_prefix(tstore, tpath)  # chunks of an older, different plan
                    temps.append((tstore, tpath, doc))
                    # The intermediate's codecs depend on the store given (compressed on remote
                    # stores): a rerun that encodes differently must not trust chunks done before.
                    marker += "-" + hashlib.sha1(b"".join(k.encode() + v for k, v in sorted(doc.items()))).hexdigest()[:12]
                chain.append(StageIO(src=src, dst=dst, stage=stage, shape=ap.shape, marker_store=store,
                                     marker_prefix=marker,
                                     label=f"{job.path or 'array'}/{stage.index}"))
                src = dst
            chains.append(chain)
        graph = build_graph(chains, fp)

        def finish(runs: dict[str, int]) -> Any:
            with self._write_failures():
                self._commit(staging)
            for tstore, tpath, doc in temps:
                if keep:
                    for key, value in doc.items():
                        keys.put(tstore, key, value)
                else:
                    keys.delete_prefix(tstore, tpath)
            if keep and self._temp is None:  # the kept intermediates live under MARK/temp
                keys.delete_prefix(store, f"{self._mark}/done")
                keys.delete(store, f"{self._mark}/plan.json")
            else:
                keys.delete_prefix(store, self._mark)
            ran = int(sum(runs.values()))
            self._opened = self._open_target()
            self.result = RechunkResult(target=self._opened, tasks_run=ran, tasks_skipped=self.plan.n_tasks - ran,
                                        resumed=resumed, per_stage=runs, seconds=time.perf_counter() - start)
            return self._opened

        return graph, finish

    def _temp_array(
        self, tstore: Store, tpath: str, job: Any, chunks: Any
    ) -> tuple[zarr.Array, dict[str, bytes]]:
        """An intermediate array over ``tstore`` whose metadata is held in memory.

        Creating it in place would also create implicit parent groups, i.e. a root
        ``zarr.json`` in the target store mid-run; the metadata document is written only
        if the intermediate is kept.
        """
        staging = zarr.storage.MemoryStore()
        kw = job.create_kwargs
        opts = dict(self._temp_options)
        # Written once, read once: a fast lz4 Blosc unless temp_options say otherwise (temp_codecs).
        opts["compressors"] = _temp_codecs(self._temp_options, kw["zarr_format"])
        if kw["zarr_format"] == 3 and opts.get("filters") is not None:
            opts["filters"] = as_zarr3_codecs(opts["filters"])
        staged = zarr.create_array(
            staging, name=tpath, shape=job.spec.shape, chunks=tuple(chunks),
            dtype=kw["dtype"], fill_value=kw.get("fill_value"),
            zarr_format=kw["zarr_format"], overwrite=True,
            compressors=opts["compressors"],
            **({"filters": opts["filters"]} if opts.get("filters") is not None else {}),
        )
        doc = {k: keys.get(staging, k) for k in keys.list_keys(staging, tpath + "/")}
        arr = unpublished_array(staged.metadata, StorePath(tstore, tpath))
        return arr, {k: v for k, v in doc.items() if v is not None}


#: ``temp_options`` keys: rechunker's zarr options (its own meaning for intermediates) and zarr 3's name.
TEMP_OPTION_KEYS = frozenset({"compressors", "compressor", "filters", "order", "cache_metadata", "cache_attrs",
                              "overwrite", "write_empty_chunks"})


def _check_temp_options(temp_options: Any, names: set[str]) -> dict[str, Any]:
    """Validate ``temp_options`` (global, or per array name as rechunker takes them for groups)."""
    if temp_options is None:
        return {}
    if not isinstance(temp_options, Mapping):
        raise EncodingError(f"temp_options must be a dict, got {type(temp_options).__name__} {temp_options!r}")
    per_array = bool(temp_options) and all(isinstance(v, Mapping) for v in temp_options.values()) and (
        any(k in names for k in temp_options))
    groups = list(temp_options.values()) if per_array else [temp_options]
    for opts in groups:
        unknown = sorted(str(k) for k in opts if k not in TEMP_OPTION_KEYS)
        if unknown:
            raise EncodingError(f"Zarr options must not include {unknown[0]} (got {unknown[0]}={opts[unknown[0]]!r}) "
                                f"in temp_options; valid keys are {sorted(TEMP_OPTION_KEYS)}")
    # One intermediate codec setting serves every array: the first given (they are read once, then deleted).
    merged = dict(groups[0]) if groups else {}
    return {k: v for k, v in merged.items() if k in ("compressors", "compressor", "filters")}


def _target_of(target: Any, storage_options: Mapping[str, Any] | None) -> tuple[Store, str, zarr.Group | None]:
    """Store, node path and (for a :class:`zarr.Group`) the group of a target or temp store."""
    if isinstance(target, zarr.Group):
        return target.store, target.path, target
    return as_store(target, storage_options), "", None


def _temp_codecs(temp_options: Mapping[str, Any] | None, zarr_format: int) -> Any:
    """``compressors`` of the intermediates: temp_codecs' choice, numcodecs ones wrapped for zarr 3."""
    chosen = temp_compressors(temp_options, zarr_format)
    return as_zarr3_codecs(chosen) if zarr_format == 3 else chosen


@quietly
def rechunk(
    source: Any,
    target_chunks: Any,
    max_mem: int | str,
    target_store: Any,
    target_options: Mapping[str, Any] | None = None,
    temp_store: Any = None,
    temp_options: Mapping[str, Any] | None = None,
    executor: str = "dask",
    array_name: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    keep_temp: bool = False,
    threads_per_worker: int | None = None,
    publish: str = "last",
    **knobs: Any,
) -> Rechunked:
    """Plan a rechunk of ``source`` into ``target_store`` (rechunker 0.5.4's signature).

    Parameters
    ----------
    source
        :class:`zarr.Array`, :class:`zarr.Group`, :class:`dask.array.Array`, or
        :class:`xarray.Dataset` (opened from zarr, from netCDF, or in memory).
    target_chunks
        Tuple (or dict by dimension name) for an array; for groups and Datasets a dict
        of array name -> chunks (None = unchanged), or of dimension name -> size.  ``-1``/None
        = full length; arrays or axes not mentioned keep their chunks.
    max_mem
        Memory budget per task, bytes or a string like ``"1GB"``: parallelzarr's estimate of a
        task's peak (data, decode/encode buffers and a fixed 1 MiB) stays within it. When no plan
        can keep that (rechunker's tests give 1,600 bytes, or 25.6 MB for 25.6 MB chunks), it is
        read as rechunker reads it, the chunk data one task holds, with a
        :class:`RechunkBudgetWarning` giving the estimated peak and the ``max_mem`` that keeps it;
        ``plan.budget_meaning`` says which reading was used.
    target_store, temp_store
        Path, fsspec URL, zarr store or :class:`zarr.Group` (arrays are added to the group).
        Without ``temp_store`` intermediates live in the target store under
        ``.parallelzarr-rechunk/`` and are removed at the end.
    target_options
        For zarr sources: ``zarr_format`` (default: the source's), ``shards``, ``compressors``
        (or rechunker's ``compressor``), ``filters``, ``order``, ``write_empty_chunks``,
        ``overwrite``...; for all arrays or keyed by array name. For a Dataset: per-variable
        encodings as in ``Dataset.to_zarr`` (``dtype``, ``scale_factor``, ``_FillValue``...).
    temp_options
        ``compressors``/``compressor``/``filters`` for the intermediates (default: none on
        local/memory stores, zarr's default on remote stores).
    executor
        ``"dask"`` (the active dask scheduler) or ``"python"`` (in this process, one task at a time).
    array_name
        Name of the array inside ``target_store``/``temp_store`` when those are groups
        (array sources only).
    storage_options
        fsspec options for URL stores: the target, the temp store and a Dataset source's store
        (reopened from its ``encoding["source"]``).
    keep_temp
        Keep intermediates after success.
    threads_per_worker
        Scales the per-worker memory estimate; detected from the scheduler if None.
    publish
        ``"last"`` (default): the target's metadata is written when :meth:`Rechunked.execute`
        has written every chunk, so readers never see a half-written target, and a crash leaves
        none. ``"early"``: rechunker's behaviour, the target's groups and arrays are created now
        (readers see unwritten chunks as the fill value until the run ends).
    **knobs
        Planner knobs (``max_tasks``, ``min_tasks``, ``target_task_bytes``,
        ``target_intermediate_bytes``).

    Returns
    -------
    Rechunked

    Raises
    ------
    MemoryBudgetError
        If ``max_mem`` cannot hold even the chunk data of a task (one source and one target chunk):
        a ``ValueError`` as in rechunker; nothing has been written.
    ChunkSpecError, PlanningError, EncodingError
        On bad chunk requests, sources or options (all ``ValueError``, as in rechunker).
    TargetExistsError
        If the target already holds zarr data where this rechunk writes (``ValueError``).
    TypeError
        On keywords that are not planner knobs (compute keywords go to :meth:`Rechunked.execute`).
    """
    executor_kwargs = resolve_executor(executor)
    if publish not in ("last", "early"):
        raise PlanningError(f"publish must be 'last' or 'early', got {publish!r}")
    _check_knobs("rechunk", knobs)
    _check_source_and_name(source, target_store, temp_store, array_name)
    parse_bytes(max_mem)
    tstore, tpath, tgroup = _target_of(target_store, storage_options)
    temp, temp_path, _ = _target_of(temp_store, storage_options) if temp_store is not None else (None, "", None)
    options = dict(target_options or {}) if isinstance(target_options, Mapping) else target_options
    if tgroup is not None and isinstance(options, dict) and "zarr_format" not in options:
        options["zarr_format"] = tgroup.metadata.zarr_format  # arrays join the given group in its format
    info = resolve_source(source, target_chunks, options, storage_options)
    names = {j.path for j in info.jobs}
    temp_opts = _check_temp_options(temp_options, names)
    if temp_options is None and isinstance(target_options, Mapping) and info.kind != "dataset":
        # rechunker: temp_options default to target_options; only the codecs matter for intermediates.
        temp_opts = _check_temp_options(_codec_options(target_options, names), names)
    temp_leaf = None
    if array_name is not None and info.kind == "array":
        # As in rechunker: the name places the array inside a group target or temp store; a
        # plain target store holds the array at its root.
        temp_leaf = array_name.strip("/")
        if tgroup is not None:
            only = info.jobs[0]
            only.path = temp_leaf
            only.create_kwargs["name"] = only.path
    plan = _plan(info, max_mem, threads_per_worker, knobs,
                 intermediate_codec=describe_compressors(_temp_codecs(temp_opts, info.zarr_format)))
    _check_overlap(info, tstore, temp, tpath, temp_path)
    job = Rechunked(info, plan, tstore, temp, temp_opts, keep_temp, source=source, target_path=tpath,
                    temp_path=temp_path, target_group=tgroup, executor_kwargs=executor_kwargs, publish=publish,
                    temp_leaf=temp_leaf)
    if publish == "early":
        job._lay_down_early()
    else:
        job._check_target()  # refuse an occupied target now, before the caller plans around it
    return job


def _codec_options(options: Mapping[str, Any], names: set[str]) -> dict[str, Any]:
    per_array = bool(options) and all(isinstance(v, Mapping) for v in options.values()) and any(k in names for k in options)
    groups = list(options.values()) if per_array else [options]
    for opts in groups:
        picked = {k: v for k, v in opts.items() if k in ("compressors", "compressor", "filters")}
        if picked:
            return picked
    return {}


def _check_source_and_name(source: Any, target_store: Any, temp_store: Any, array_name: str | None) -> None:
    """rechunker's up-front refusals: unknown sources, and ``array_name`` where it cannot apply."""
    import dask.array as da
    import xarray as xr

    if isinstance(source, xr.Dataset | zarr.Group):
        if array_name is not None:
            kind = "an Xarray Dataset" if isinstance(source, xr.Dataset) else "a Group"
            raise PlanningError(f"Can't specify `array_name` when rechunking {kind}: its arrays keep their names")
    elif isinstance(source, zarr.Array | da.Array):
        if (isinstance(target_store, zarr.Group) or isinstance(temp_store, zarr.Group)) and array_name is None:
            raise PlanningError("Can't rechunk to a group without a name for the array: pass array_name=")
    else:
        raise PlanningError(
            f"Source must be a Zarr Array, Zarr Group, Dask Array or Xarray Dataset (not {type(source)})"
        )


def _plan(info: SourceInfo, max_mem: int | str, threads_per_worker: int | None, knobs: Mapping[str, Any],
          intermediate_codec: str = "") -> RechunkPlan:
    return _plan_with_warnings([j.spec for j in info.jobs], max_mem, threads_per_worker, knobs, intermediate_codec)


def _plan_with_warnings(specs: list[ArraySpec], max_mem: int | str, threads_per_worker: int | None,
                        knobs: Mapping[str, Any], intermediate_codec: str = "") -> RechunkPlan:
    tpw = threads_per_worker or _threads_per_worker()
    model = MemoryModel(io_concurrency=int(zarr.config.get("async.concurrency")))
    budget = parse_bytes(max_mem)
    # One rule for every budget (1,600 bytes or 25.6 MB alike): keep the estimated peak if any plan can;
    # else read max_mem as rechunker does, the chunk data a task holds, and say so; refuse only below that.
    plan = _plan_specs(specs, max_mem, threads_per_worker=tpw, model=model, intermediate_codec=intermediate_codec,
                       chunk_data_fallback=True, **knobs)
    if plan.budget_meaning == DATA_MEANING:
        names = ", ".join(a.name or "<array>" for a in plan.arrays if a.budget_meaning == DATA_MEANING)
        warnings.warn(
            f"max_mem={format_bytes(budget)} cannot hold parallelzarr's estimate of a task's peak (chunk data, "
            f"decode/encode buffers and {format_bytes(model.overhead)} of Python objects) for {names}; it is read "
            "as rechunker reads it, the chunk data one task holds. Estimated peak per task: "
            f"{format_bytes(plan.task_memory)} ({plan.task_memory} bytes). For a plan whose peak stays within the "
            f"budget, raise max_mem to {format_bytes(plan.peak_budget)} ({plan.peak_budget} bytes)",
            RechunkBudgetWarning, stacklevel=3)
    limit = knobs.get("max_tasks", DEFAULT_MAX_TASKS)
    if plan.n_tasks > limit:
        warnings.warn(
            f"the plan has {plan.n_tasks} tasks (more than {limit}): max_mem={format_bytes(budget)} allows only small "
            "blocks; the rechunk will work but scheduling dominates; raise max_mem to batch more chunks per task",
            RechunkBudgetWarning, stacklevel=3)
    return plan


def _location(store: Store, path: str = "") -> tuple[str, str] | None:
    """Where a store (and a node path inside it) lives, comparable across store objects; None if unknown."""
    path = path.strip("/")
    if isinstance(store, zarr.storage.LocalStore):
        root = os.path.realpath(str(store.root))
        return ("file", os.path.join(root, path) if path else root)
    if isinstance(store, zarr.storage.FsspecStore):
        protocol = store.fs.protocol
        protocol = protocol[0] if isinstance(protocol, tuple | list) else protocol
        base = str(store.path).strip("/")
        return (str(protocol), f"{base}/{path}".strip("/") if path else base)
    if isinstance(store, zarr.storage.MemoryStore):
        return (f"memory-{id(store._store_dict)}", path)
    return None


def _nested(a: tuple[str, str] | None, b: tuple[str, str] | None) -> bool:
    if a is None or b is None or a[0] != b[0]:
        return False
    x, y = a[1].rstrip("/"), b[1].rstrip("/")
    return x == y or x.startswith(y + "/") or y.startswith(x + "/") or not x or not y


def _describe(store: Store) -> str:
    loc = _location(store)
    return f"{loc[0]}://{loc[1]}" if loc and not loc[0].startswith("memory") else type(store).__name__


def _check_overlap(info: SourceInfo, target: Store, temp: Store | None, target_path: str = "",
                   temp_path: str = "") -> None:
    """Refuse targets and temporary stores that are, contain or lie inside the source or each other."""
    sources = [loc for job in info.jobs if (loc := _location(job.source.store, job.source.path)) is not None]
    tloc = _location(target, target_path)
    mloc = _location(temp, temp_path) if temp is not None else None
    for sloc in sources:
        if _nested(sloc, tloc):
            raise StoreOverlapError(
                f"the rechunk target {_describe(target)} overlaps the source array at {sloc[1]}; rechunk into "
                "a new, separate location"
            )
        if temp is not None and _nested(sloc, mloc):
            raise StoreOverlapError(
                f"temp_store {_describe(temp)} overlaps the source array at {sloc[1]}; intermediates are deleted "
                "after the run, so give a separate location"
            )
    if temp is not None and _nested(tloc, mloc):
        raise StoreOverlapError(
            f"temp_store {_describe(temp)} and the target {_describe(target)} are the same or nested; give a "
            "separate temp_store (or none: intermediates then live in the target and are removed at the end)"
        )
