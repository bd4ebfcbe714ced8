"""What a planned write learns from its store before it runs, each as a new :class:`WriteJob`.

- :func:`with_resume`: the task markers of an interrupted run of the same write (a rerun skips
  its finished tasks; :mod:`parallelzarr.store.markers`);
- :func:`keep_unfinished_array`: a bare array rewritten with ``mode="w"`` keeps that run's chunks;
- :func:`with_rectilinear_grids`: rectilinear chunk grids laid down with the metadata
  (:mod:`parallelzarr.store.rectilinear`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import zarr

from parallelzarr.run.job import KeepArray, StoredArray, WithRectilinearGrids, WriteJob
from parallelzarr.store.markers import Resume, TaskMarkers, plan_fingerprint, resolve_marker_store

__all__ = ["keep_unfinished_array", "relisted", "with_rectilinear_grids", "with_resume"]


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data (codec objects by their repr, which names their settings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def with_resume(job: WriteJob, store: Any, storage_options: Mapping[str, Any] | None = None,
                spans: dict[str, tuple[int, int]] | None = None, extra: Any = None) -> WriteJob:
    """``job`` with its resume state: the fingerprint, the markers found, ``plan.tasks_done``.

    Parameters
    ----------
    job
        The planned write.
    store
        The ``store`` argument of the write (a path, URL, store or ``zarr.Array``); the markers live
        in its zarr store, under the array's path for a ``zarr.Array``.
    storage_options
        fsspec options for a URL.
    spans
        For one part of a job array: the run of write tasks of each variable it writes.
    extra
        More facts for the fingerprint (see :func:`~parallelzarr.store.markers.plan_fingerprint`).
    """
    mstore, base = resolve_marker_store(store, storage_options)
    names = {a.plan.name: str(a.data.name) for a in job.jobs}
    fp = plan_fingerprint(job.plan, names, _jsonable(extra) if extra is not None else None)
    markers = TaskMarkers(mstore, base + TaskMarkers.of(mstore, fp).prefix) if base else TaskMarkers.of(mstore, fp)
    resume = Resume(fp, markers, markers.done(), spans)
    job.plan.fingerprint = fp
    job.plan.tasks_done = resume.tasks_done(job.plan)
    return job.replace(resume=resume)


def relisted(job: WriteJob) -> None:
    """List the markers again (after the lay-down, which may have replaced the store and its markers)."""
    if job.resume is None:
        return
    job.resume.done = job.resume.markers.done()
    job.plan.tasks_done = job.resume.tasks_done(job.plan)


def keep_unfinished_array(job: WriteJob, store: Any, storage_options: Mapping[str, Any] | None = None) -> WriteJob:
    """A bare array rewritten with ``mode="w"`` after an interrupted run of the same write keeps its chunks.

    Its lay-down would create the array anew (zarr's overwrite deletes the finished chunks and their
    markers). When markers of this very write (same plan, source, encoding and format: the
    fingerprint) exist and the stored array has the planned shape, dtype and grid, the job opens
    it instead.
    """
    resume = job.resume
    if resume is None or not resume.done or job.plan.mode != "w" or len(job.jobs) != 1:
        return job
    from parallelzarr.store.zarr_compat import chunk_edges

    root, base = resolve_marker_store(store, storage_options)
    path = base.rstrip("/")
    (one,) = job.jobs
    vplan = one.plan
    try:
        arr = zarr.open_array(root, path=path, mode="r+")
    except Exception:
        return job
    grid = vplan.grid_edges or tuple(
        tuple(c for c in (min(g, n - i) for i in range(0, n, g))) for n, g in zip(vplan.shape, vplan.chunks, strict=True))
    if (tuple(arr.shape) != vplan.shape or str(arr.dtype) != vplan.dtype or chunk_edges(arr) != tuple(grid)
            or (tuple(arr.shards) if arr.shards else None) != vplan.shards):
        return job
    kept = type(one)(plan=one.plan, data=one.data, target=StoredArray(root, path))
    return job.replace(lay_down=KeepArray(), jobs=(kept,))


def with_rectilinear_grids(job: WriteJob, store: Any, storage_options: Mapping[str, Any] | None) -> WriteJob:
    """After planning: note the readers, and lay the rectilinear grids down with the metadata."""
    from parallelzarr.store.rectilinear import READERS, enable_rectilinear

    grids = {a.plan.name: a.plan.grid_edges for a in job.jobs if a.plan.strategy == "rectilinear"}
    if not grids:
        return job
    enable_rectilinear()
    job.plan.notes.append(f"rectilinear chunk grid ({', '.join(sorted(grids))}): {READERS}")
    if not (list(grids) == ["array"] and job.store is None):
        return job.replace(lay_down=WithRectilinearGrids(job.lay_down, grids))
    # A bare array is created in place, not staged: patch it there, then open it from there.
    root, base = resolve_marker_store(store, storage_options)
    jobs = tuple(type(a)(plan=a.plan, data=a.data, target=StoredArray(root, base.rstrip("/"))) for a in job.jobs)
    return job.replace(lay_down=WithRectilinearGrids(job.lay_down, grids, (root, base)), jobs=jobs)
