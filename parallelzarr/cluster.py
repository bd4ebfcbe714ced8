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
    worker processes to start) and ``cluster`` (keywords of :class:`distributed.LocalCluster`,
    ``dask_jobqueue.SLURMCluster`` or ``dask_jobqueue.PBSCluster``). See ``cluster-configs/``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ParallelZarrError

__all__ = [
    "ClusterSpecError",
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


class ClusterSpecError(ParallelZarrError, ValueError):
    """A ``--cluster`` specification or cluster config file is invalid."""


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
        return max(1, ncpu // int(threads_per_worker)), int(threads_per_worker)  # type: ignore[arg-type]
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
        ``{"kind": str, "workers": int | None, "cluster": dict, "adapt": dict | None}``.

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
    unknown = set(doc) - {"kind", "workers", "cluster", "adapt"}
    if unknown:
        raise ClusterSpecError(
            f"cluster config {str(p)!r}: unknown key(s) {', '.join(sorted(unknown))}; "
            "expected kind, workers, cluster, adapt (put scheduler keywords under 'cluster:')"
        )
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
    return {"kind": kind, "workers": workers, "cluster": dict(cluster), "adapt": dict(adapt) if adapt else None}


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
    elif threads_per_worker is not None:
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
        cluster = cluster_from_config(spec, threads_per_worker=threads_per_worker, **cluster_kwargs)
        with cluster, Client(cluster) as client:
            n = workers if workers is not None else cfg["workers"]
            if cfg["adapt"]:
                cluster.adapt(**cfg["adapt"])
            elif cfg["kind"] == "local":
                cluster.scale(n if n is not None else default_local_size()[0])
            else:
                cluster.scale(jobs=n if n is not None else 1)
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


def _announce(client: Any, what: str, echo: Callable[[str], None] | None) -> None:
    if echo is None:
        return
    link = getattr(client, "dashboard_link", None)
    echo(f"{what}; dashboard: {link}" if link else what)
