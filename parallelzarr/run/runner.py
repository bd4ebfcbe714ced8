"""The one runner: carry out a planned :class:`~parallelzarr.run.job.WriteJob`.

In order: lay the metadata down (:attr:`WriteJob.lay_down`), build one dask graph writing every
array then committing (:attr:`WriteJob.commit`, the graph's last task), compute it (or return it
as a ``Delayed``), and record the end of the write. An I/O failure on the way becomes a
:class:`~parallelzarr.errors.StoreWriteError` through :mod:`parallelzarr.run.failures`, after the
job's commit step has undone what it holds (staging, lease).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, cast, overload

import dask
from dask._task_spec import Task, TaskRef
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from zarr.core.array_spec import ArrayConfigParams

from parallelzarr.graph.write import build_write_graph, total
from parallelzarr.plan.write import WritePlan
from parallelzarr.reports.progress import compute_progress
from parallelzarr.run.failures import store_write_failures, write_failure
from parallelzarr.run.job import WriteJob
from parallelzarr.run.prepare import check_bool, default_mode, default_zarr_format, prepare
from parallelzarr.run.resume import relisted
from parallelzarr.store.markers import count_tasks
from parallelzarr.store.markers import finish as finish_markers
from parallelzarr.store.staging import RESUME, write_ended

__all__ = ["build_graph", "execute", "write_now"]


def build_graph(job: WriteJob, array_config: Mapping[str, Any] | None = None) -> Delayed:
    """Build one dask graph writing every array of a planned write, then its commit.

    Parameters
    ----------
    job
        The planned write, its metadata laid down (the graph opens the target arrays).
    array_config
        zarr array runtime configuration for the writes (``write_empty_chunks``).

    Returns
    -------
    Delayed
        Computes to the number of tasks run; its last task commits.
    """
    parts: list[Delayed] = []
    for one in job.jobs:
        target = one.open_target()
        if array_config:
            target = target.with_config(cast(ArrayConfigParams, dict(array_config)))
        # parallelzarr.store.markers: resume and job-array parts
        select = job.resume.selection(one.plan.name) if job.resume is not None else None
        graph, final = build_write_graph(one.plan, one.data, target, job.locks, select=select)
        parts.append(Delayed(final, graph))
    name = "pz-write-all-" + tokenize(*(p.key for p in parts))
    refs = [TaskRef(p.key) for p in parts]
    commit = job.commit.commit if job.commit is not None else None
    if job.resume is not None:
        task = Task(name, finish_markers, job.resume, commit, *refs)
    elif commit is not None:
        task = Task(name, _commit_after, commit, *refs)
    else:
        task = Task(name, total, *refs)
    # Delayed is a dask collection; dask's annotation (DaskCollection) does not admit it.
    graph = HighLevelGraph.from_collections(name, {name: task}, dependencies=parts)  # type: ignore[arg-type]
    return Delayed(name, graph)


def _commit_after(commit: Callable[[], Any], *counts: int) -> int:
    commit()
    return int(sum(counts))


def _describe_failure(job: WriteJob) -> Callable[[str], str]:
    """The message of an I/O failure of ``job``: its commit step's, else the write's default."""
    default = write_failure(job.plan, publish_last=job.commit is not None)
    commit = job.commit

    def describe(cause: str) -> str:
        return (commit.describe_failure(cause) if commit is not None else None) or default(cause)

    return describe


def _failed(job: WriteJob, exc: BaseException) -> None:
    """Record a failed write: its unpublished marker, and let its commit step drop what it holds."""
    write_ended(job.store, job.write_id, exc)
    if job.commit is not None:
        job.commit.failed(exc)


@overload
def execute(job: WriteJob, *, compute: Literal[True] = ..., array_config: Mapping[str, Any] | None = ...,
            progress: bool = ..., compute_kwargs: Mapping[str, Any] | None = ...,
            after_setup: Callable[[], None] | None = ...) -> WritePlan: ...


@overload
def execute(job: WriteJob, *, compute: Literal[False], array_config: Mapping[str, Any] | None = ...,
            progress: bool = ..., compute_kwargs: Mapping[str, Any] | None = ...,
            after_setup: Callable[[], None] | None = ...) -> Delayed: ...


@overload
def execute(job: WriteJob, *, compute: bool, array_config: Mapping[str, Any] | None = ...,
            progress: bool = ..., compute_kwargs: Mapping[str, Any] | None = ...,
            after_setup: Callable[[], None] | None = ...) -> WritePlan | Delayed: ...


def execute(
    job: WriteJob,
    *,
    compute: bool = True,
    array_config: Mapping[str, Any] | None = None,
    progress: bool = False,
    compute_kwargs: Mapping[str, Any] | None = None,
    after_setup: Callable[[], None] | None = None,
) -> WritePlan | Delayed:
    """Run a planned write: lay down, build the graph, compute, commit.

    Parameters
    ----------
    job
        The planned write (nothing written yet).
    compute
        ``False``: lay the metadata down and return the graph as a ``Delayed`` (it commits when
        computed). A commit that is not for after the data (a new store's metadata: xarray's
        readable template) is carried out at once.
    array_config
        zarr array runtime configuration for the writes (``write_empty_chunks``).
    progress
        Draw a progress bar while computing (:func:`parallelzarr.reports.progress.compute_progress`).
    compute_kwargs
        Passed to ``dask.compute``.
    after_setup
        Called once the metadata is laid down (e.g. to create the groups above the target).

    Returns
    -------
    WritePlan or Delayed
        The plan carried out, its ``tasks_run`` filled in; or the lazy write.

    Raises
    ------
    StoreWriteError
        An I/O error during the run (see :mod:`parallelzarr.run.failures`).
    """
    with store_write_failures(_describe_failure(job), cleanup=lambda exc: _failed(job, exc)):
        resuming = RESUME.set(job.plan.fingerprint)  # keep the chunks of an unfinished same write
        try:
            job = job.setup()  # the cleanup above sees this job: it names the write id the lay-down recorded
        finally:
            RESUME.reset(resuming)
        relisted(job)  # mode='w' may have replaced the store: list the markers again
        if not compute and job.commit is not None and not job.commit.after_data:
            # xarray's convention: compute=False lays down readable metadata now (a template that
            # region writes, possibly from other processes, then fill), so publish it at once.
            job.commit.commit()
            job = job.replace(commit=None)
        if after_setup is not None:
            after_setup()
        delayed = build_graph(job, array_config)
        if not compute:
            return delayed
        with compute_progress(progress, dict(compute_kwargs or {})) as kw:
            dask.compute(delayed, **kw)
    write_ended(job.store, job.write_id)
    job.plan.tasks_run = count_tasks(job.plan) - job.plan.tasks_done  # every other task ran
    return job.plan


def write_now(data: Any, store: Any, *, mode: str | None = None, region: Any = None,
              write_empty_chunks: bool | None = None, zarr_format: int | None = None,
              compute_kwargs: Mapping[str, Any] | None = None, **options: Any) -> WritePlan:
    """Plan and run a write at once, as ``to_zarr(data, store, mode=..., region=..., **options)`` does
    without ``group``, ``append_dim`` or ``part``: for writes other operations make (a first append, the
    rewrite of changed rows).

    ``options``: :func:`~parallelzarr.run.prepare.prepare`'s other keywords (``encoding``,
    ``strategy``, ``max_mem``, ``consolidated``...).
    """
    job = prepare(data, store, mode=default_mode(mode, None, region), region=region,
                  write_empty_chunks=write_empty_chunks, zarr_format=default_zarr_format(zarr_format), **options)
    config = {"write_empty_chunks": check_bool("write_empty_chunks", write_empty_chunks)} \
        if write_empty_chunks is not None else None
    return execute(job, array_config=config, compute_kwargs=compute_kwargs)
