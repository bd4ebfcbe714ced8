"""Resolve ``--cluster`` specifications into a running dask scheduler.

A specification is one of

``threads``
    No distributed cluster: dask's threaded scheduler in this process (small jobs, tests).
``sync``
    dask's single-threaded scheduler (debugging).
``local``
    A :class:`distributed.LocalCluster` of worker processes on 127.0.0.1, sized to this machine.
``tcp://host:port`` or ``host:port``
    An already running scheduler.
``SCHEDULER_FILE.json``
    The scheduler file written by ``dask-mpi``, ``dask scheduler --scheduler-file`` or a
    ``dask_jobqueue.runner`` (SLURMRunner/PBSRunner) inside a batch job.
``CONFIG.yaml``
    A cluster description: ``kind`` (``local``, ``slurm`` or ``pbs``), ``workers`` (jobs or
    worker processes to start), ``worker_timeout`` (seconds to wait for the first worker) and
    ``cluster`` (keywords of :class:`distributed.LocalCluster`, ``dask_jobqueue.SLURMCluster`` or
    ``dask_jobqueue.PBSCluster``). See ``cluster-configs/``.

Batch clusters fail fast: a missing ``sbatch``/``qsub`` is refused before anything starts, a
rejected job submission (bad account or partition) ends the start-up as soon as the batch system
answers, and no worker within ``worker_timeout`` (default :data:`DEFAULT_WORKER_TIMEOUT`) ends it
then. Each raises :class:`ClusterStartError` (the CLI exits 1) instead of hanging.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parallelzarr.errors import ParallelZarrError

__all__ = [
    "ClusterSpecError",
    "ClusterStartError",
    "DEFAULT_WORKER_TIMEOUT",
    "LOCAL_SCHEDULERS",
    "cluster_from_config",
    "load_cluster_config",
    "resolve_cluster",
    "default_local_size",
]

#: Specifications that run without a distributed scheduler.
LOCAL_SCHEDULERS = ("threads", "sync")
_KINDS = ("local", "slurm", "pbs")
_ADDRESS = re.compile(r"^([a-z0-9+]+://)?[\w.\-\[\]:]+:\d+$", re.IGNORECASE)


#: Seconds a batch cluster may take to start its first worker before start-up fails. Generous for
#: a busy queue yet finite: a job that never starts must not hold a pipeline for a whole walltime.
DEFAULT_WORKER_TIMEOUT = 600.0


class ClusterSpecError(ParallelZarrError, ValueError):
    """A ``--cluster`` specification or cluster config file is invalid."""


class ClusterStartError(ParallelZarrError, RuntimeError):
    """The cluster could not start: no submit command, a rejected job, or no worker in time.

    Nothing was written. The CLI exits 1 (a failure of the environment, not of the input).
    """


def default_local_size(
    workers: int | None = None, threads_per_worker: int | None = None
) -> tuple[int, int]:
    """Worker processes and threads per worker for a LocalCluster on this machine.

    Parameters
    ----------
    workers, threads_per_worker
        Requested values; ``None`` fills in a default from the CPU count.

    Returns
    -------
    (int, int)
        ``(n_workers, threads_per_worker)``.
    """
    from distributed.deploy.utils import nprocesses_nthreads

    ncpu = _cpu_count()
    if workers is None and threads_per_worker is None:
        return nprocesses_nthreads(ncpu)
    if workers is None:
        return max(1, ncpu // int(threads_per_worker)), int(threads_per_worker)  # type: ignore[arg-type]  # not None here: the branch above took that case
    if threads_per_worker is None:
        return int(workers), max(1, ncpu // int(workers))
    return int(workers), int(threads_per_worker)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def load_cluster_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a cluster YAML file.

    Parameters
    ----------
    path
        YAML file with ``kind``, optional ``workers`` and optional ``cluster`` mapping.

    Returns
    -------
    dict
        ``{"kind": str, "workers": int | None, "cluster": dict, "adapt": dict | None,
        "worker_timeout": float}``.

    Raises
    ------
    ClusterSpecError
        If the file is missing, not a mapping, or names an unknown kind or key.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ClusterSpecError(f"cluster config {str(p)!r} does not exist")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ClusterSpecError(f"cluster config {str(p)!r} is not valid YAML: {exc}") from exc
    if not isinstance(doc, Mapping):
        raise ClusterSpecError(f"cluster config {str(p)!r} must be a mapping with a 'kind' key")
    unknown = set(doc) - {"kind", "workers", "cluster", "adapt", "worker_timeout"}
    if unknown:
        raise ClusterSpecError(
            f"cluster config {str(p)!r}: unknown key(s) {', '.join(sorted(unknown))}; "
            "expected kind, workers, worker_timeout, cluster, adapt (put scheduler keywords under 'cluster:')"
        )
    worker_timeout = doc.get("worker_timeout", DEFAULT_WORKER_TIMEOUT)
    if isinstance(worker_timeout, bool) or not isinstance(worker_timeout, int | float) or worker_timeout <= 0:
        raise ClusterSpecError(f"cluster config {str(p)!r}: worker_timeout must be a positive number of seconds")
    kind = str(doc.get("kind", "")).lower()
    if kind not in _KINDS:
        raise ClusterSpecError(f"cluster config {str(p)!r}: kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    cluster = doc.get("cluster") or {}
    if not isinstance(cluster, Mapping):
        raise ClusterSpecError(f"cluster config {str(p)!r}: 'cluster' must be a mapping of keywords")
    workers = doc.get("workers")
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise ClusterSpecError(f"cluster config {str(p)!r}: workers must be a non-negative integer")
    adapt = doc.get("adapt")
    if adapt is not None and not isinstance(adapt, Mapping):
        raise ClusterSpecError(f"cluster config {str(p)!r}: 'adapt' must be a mapping (minimum, maximum)")
    return {"kind": kind, "workers": workers, "cluster": dict(cluster), "adapt": dict(adapt) if adapt else None,
            "worker_timeout": float(worker_timeout)}


def _cluster_class(kind: str) -> Callable[..., Any]:
    if kind == "local":
        from distributed import LocalCluster

        return LocalCluster
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise ClusterSpecError(
            f"kind: {kind} needs dask-jobqueue; install it with `pip install 'parallelzarr[hpc]'`"
        ) from exc
    return {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]


def cluster_from_config(
    path: str | os.PathLike[str],
    *,
    threads_per_worker: int | None = None,
    **overrides: Any,
) -> Any:
    """Build the cluster a YAML config describes (not yet scaled).

    For ``slurm``/``pbs`` this starts the scheduler in this process but submits no job until
    the cluster is scaled, so ``cluster_from_config(path).job_script()`` renders the batch script
    without a batch system present.

    Parameters
    ----------
    path
        The YAML config (see :func:`load_cluster_config`).
    threads_per_worker
        For jobqueue clusters: split each job's ``cores`` into processes of this many threads.
    **overrides
        Keywords that replace the config's ``cluster`` entries (e.g.
        ``scheduler_options={"host": "127.0.0.1"}``).

    Returns
    -------
    distributed.LocalCluster or dask_jobqueue.JobQueueCluster
    """
    cfg = load_cluster_config(path)
    kind = cfg["kind"]
    kwargs = {**cfg["cluster"], **overrides}
    cls = _cluster_class(kind)
    if kind == "local":
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("dashboard_address", "127.0.0.1:0")
        if threads_per_worker is not None:
            kwargs["threads_per_worker"] = threads_per_worker
        kwargs.setdefault("n_workers", 0)  # scaled by resolve_cluster
    else:
        # Job scripts run in the submit directory of each job: relative paths there are a trap.
        if isinstance(kwargs.get("log_directory"), str) and not os.path.isabs(kwargs["log_directory"]):
            kwargs["log_directory"] = os.path.abspath(kwargs["log_directory"])
    if kind != "local" and threads_per_worker is not None:
        cores = kwargs.get("cores")
        if cores is None:
            raise ClusterSpecError(f"{path}: --threads-per-worker needs 'cores' in the cluster config")
        kwargs["processes"] = max(1, int(cores) // int(threads_per_worker))
    try:
        return cls(**kwargs)
    except TypeError as exc:  # unknown keyword in the config
        raise ClusterSpecError(f"cluster config {str(path)!r}: {exc}") from exc


def _is_address(spec: str) -> bool:
    return "://" in spec or bool(_ADDRESS.match(spec))


def _echo(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def resolve_cluster(
    spec: str | None = "local",
    workers: int | None = None,
    threads_per_worker: int | None = None,
    *,
    echo: Callable[[str], None] | None = _echo,
    worker_timeout: float | None = None,
    **cluster_kwargs: Any,
) -> Iterator[Any]:
    """Start or connect to the scheduler ``spec`` names and yield a client for it.

    Parameters
    ----------
    spec
        ``threads``, ``sync``, ``local`` (default), a scheduler address, a scheduler file
        (``*.json``) or a cluster config (``*.yaml``/``*.yml``); see the module docstring.
    workers
        ``local``: worker processes; config files: jobs (or local workers) to start, overriding
        the file's ``workers``; ``threads``: threads of the threaded scheduler.
    threads_per_worker
        Threads per worker process (``local`` and config files).
    echo
        Where to announce the dashboard link (stderr by default; ``None`` for silence).
    worker_timeout
        Config files: seconds to wait for the first worker (default: the file's
        ``worker_timeout``, else :data:`DEFAULT_WORKER_TIMEOUT`).
    **cluster_kwargs
        Extra keywords for ``LocalCluster`` or the config's cluster class.

    Yields
    ------
    distributed.Client or None
        ``None`` for ``threads``/``sync``: the caller computes with dask's local schedulers.

    Raises
    ------
    ClusterSpecError
        If the specification cannot be understood.
    ClusterStartError
        If a batch cluster cannot start (see the module docstring).
    """
    spec = (spec or "local").strip()
    if spec in LOCAL_SCHEDULERS:
        yield None
        return
    from distributed import Client, LocalCluster

    if spec == "local":
        n, tpw = default_local_size(workers, threads_per_worker)
        kwargs = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "processes": True, **cluster_kwargs}
        with LocalCluster(n_workers=n, threads_per_worker=tpw, **kwargs) as cluster, Client(cluster) as client:
            _announce(client, f"local cluster: {n} worker(s) x {tpw} thread(s)", echo)
            yield client
        return
    lower = spec.lower()
    if lower.endswith((".yaml", ".yml")):
        cfg = load_cluster_config(spec)
        if cfg["kind"] != "local":
            _check_submit_command(cfg["kind"], spec)
        timeout = float(worker_timeout) if worker_timeout is not None else cfg["worker_timeout"]
        cluster, client = _start_config_cluster(spec, cfg, workers, threads_per_worker, timeout, cluster_kwargs)
        with cluster, client:
            _announce(client, f"{cfg['kind']} cluster from {spec}", echo)
            yield client
        return
    if lower.endswith(".json"):
        if not Path(spec).is_file():
            raise ClusterSpecError(f"scheduler file {spec!r} does not exist (is the scheduler running yet?)")
        with Client(scheduler_file=spec) as client:
            _announce(client, f"scheduler from {spec}", echo)
            yield client
        return
    if _is_address(spec):
        with Client(spec) as client:
            _announce(client, f"scheduler at {spec}", echo)
            yield client
        return
    raise ClusterSpecError(
        f"cannot understand --cluster {spec!r}; use threads, sync, local, a scheduler address "
        "(tcp://host:port), a scheduler file (*.json) or a cluster config (*.yaml)"
    )


def _check_submit_command(kind: str, spec: str) -> None:
    """Refuse a batch cluster whose submit command is not on PATH (dask-jobqueue would retry forever)."""
    command = getattr(getattr(_cluster_class(kind), "job_cls", None), "submit_command", None)
    if command and shutil.which(command.split()[0]) is None:
        raise ClusterStartError(
            f"--cluster {spec}: {command!r} is not on PATH, so no {kind.upper()} job can be submitted from this "
            "machine; run on a login node of the batch system, or use --cluster local/threads here"
        )


class _StartupErrors(logging.Handler):
    """Collects the errors dask-jobqueue only logs while it starts jobs (a rejected submission)."""

    LOGGERS = ("tornado.application", "distributed.deploy.spec", "distributed.deploy.adaptive", "dask_jobqueue")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self._saved: list[tuple[logging.Logger, bool, list[logging.Handler]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        self.messages.append(str(exc) if exc is not None else record.getMessage())

    def __enter__(self) -> _StartupErrors:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            # distributed gives some of these loggers their own stream handlers: set them aside too.
            self._saved.append((logger, logger.propagate, list(logger.handlers)))
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.addHandler(self)
            logger.propagate = False  # reported once, in our error, not as a traceback on stderr
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            # The failed cluster's loop may log the same rejection again while it shuts down; it is
            # already in our error, so keep those loggers quiet rather than print a traceback.
            return
        for logger, propagate, handlers in self._saved:
            logger.removeHandler(self)
            for handler in handlers:
                logger.addHandler(handler)
            logger.propagate = propagate


def _start_config_cluster(
    spec: str, cfg: dict[str, Any], workers: int | None, threads_per_worker: int | None,
    timeout: float, cluster_kwargs: Mapping[str, Any],
) -> tuple[Any, Any]:
    """Build, scale and wait for the first worker of a config's cluster; return ``(cluster, client)``."""
    from distributed import Client

    with _StartupErrors() as errors:
        cluster = cluster_from_config(spec, threads_per_worker=threads_per_worker, **cluster_kwargs)
        client = None
        try:
            client = Client(cluster)
            n = workers if workers is not None else cfg["workers"]
            if cfg["adapt"]:
                cluster.adapt(**cfg["adapt"])
                return cluster, client  # adaptive clusters start workers when work arrives
            if cfg["kind"] == "local":
                cluster.scale(n if n is not None else default_local_size()[0])
            else:
                cluster.scale(jobs=n if n is not None else 1)
            _wait_for_first_worker(client, spec, cfg["kind"], timeout, errors)
        except BaseException:
            _close_quietly(client, cluster)
            raise
    return cluster, client


def _wait_for_first_worker(client: Any, spec: str, kind: str, timeout: float, errors: _StartupErrors) -> None:
    deadline = time.monotonic() + timeout
    while not client.scheduler_info().get("workers"):
        if errors.messages:
            detail = errors.messages[0].strip()
            raise ClusterStartError(
                f"--cluster {spec}: the {kind.upper()} job submission failed: {detail}\nFix the queue, account or "
                "resources in the config (or use --cluster local/threads); nothing was written"
            )
        if time.monotonic() > deadline:
            raise ClusterStartError(
                f"--cluster {spec}: no worker started within {timeout:g} s (jobs were submitted but none is "
                "running: a busy queue, or jobs failing at start; see the job logs); raise worker_timeout in the "
                "config if the queue is slow. Nothing was written"
            )
        time.sleep(0.2)


def _close_quietly(client: Any, cluster: Any) -> None:
    """Close a cluster that failed to start; its own close can fail on never-started jobs.

    Its loggers are muted for the rest of the process (which is about to report the start-up
    error): some versions of distributed and bokeh log tracebacks while tearing down such a cluster.
    """
    for name in ("distributed", "distributed.core", "distributed.scheduler", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    for obj in (client, cluster):
        if obj is None:
            continue
        try:
            obj.close()
        except Exception:  # noqa: BLE001 - the start-up error is the one to report
            pass


def _announce(client: Any, what: str, echo: Callable[[str], None] | None) -> None:
    if echo is None:
        return
    link = getattr(client, "dashboard_link", None)
    echo(f"{what}; dashboard: {link}" if link else what)
