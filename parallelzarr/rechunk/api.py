"""The rechunk entry points: validate, plan, build, run, commit.

``rechunk`` mirrors rechunker's signature.  Planning happens in :func:`rechunk` and
refuses an impossible budget before any store is touched; :meth:`Rechunked.execute`
writes chunks first and the target's metadata last, so readers never see a target
that is half written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import zarr
import zarr.storage
from zarr.abc.store import Store
from zarr.storage import StorePath

from ..errors import EncodingError, StoreError, StoreOverlapError, StoreWriteError
from ..kwargs import check_compute_kwargs
from ..units import format_bytes, parse_bytes
from .execute import (
    MARK,
    StageIO,
    build_graph,
    plan_record,
    store_delete,
    store_delete_prefix,
    store_exists,
    store_get,
    store_keys,
    store_set,
)
from .plan import ArraySpec, MemoryModel, RechunkPlan
from .plan import plan_rechunk as _plan_specs
from .source import SourceInfo, as_store, resolve_source

__all__ = ["rechunk", "plan_rechunk", "Rechunked", "RechunkResult"]

_METADATA_NAMES = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")

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
        A zarr array, group, xarray Dataset opened from zarr, or a sequence of
        :class:`~parallelzarr.rechunk.plan.ArraySpec` (pure planning, no I/O at all).
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
    TypeError
        On keywords that are not planner knobs.
    """
    _check_knobs("plan_rechunk", knobs)
    tpw = threads_per_worker or _threads_per_worker()
    model = MemoryModel(io_concurrency=int(zarr.config.get("async.concurrency")))
    if isinstance(source, Sequence) and all(isinstance(s, ArraySpec) for s in source):
        return _plan_specs(list(source), max_mem, threads_per_worker=tpw, model=model, **knobs)
    info = resolve_source(source, target_chunks, target_options, storage_options)
    return _plan_specs([j.spec for j in info.jobs], max_mem, threads_per_worker=tpw, model=model, **knobs)


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


class Rechunked:
    """A planned rechunk; print ``.plan`` to review it, call :meth:`execute` to run it."""

    def __init__(
        self,
        info: SourceInfo,
        plan: RechunkPlan,
        target_store: Store,
        temp_store: Store | None,
        temp_options: Mapping[str, Any] | None = None,
        keep_temp: bool = False,
    ) -> None:
        self._info = info
        self.plan = plan
        self._target = target_store
        self._temp = temp_store
        self._temp_options = dict(temp_options or {})
        self.keep_temp = keep_temp
        self.result: RechunkResult | None = None

    def __repr__(self) -> str:
        p = self.plan
        return (
            f"<Rechunked {self._info.kind}: {len(p.arrays)} array(s), {p.n_tasks} tasks, "
            f"{p.passes} pass(es), peak {format_bytes(p.task_memory)}/task of "
            f"{format_bytes(p.max_mem)} -> {self._target}>"
        )

    # ------------------------------------------------------------------ helpers

    def _check_target(self) -> bool:
        """Whether the target holds an interrupted run of this plan (to resume).

        Raises :class:`StoreError` when it holds other zarr data instead.
        """
        record = store_get(self._target, f"{MARK}/plan.json")
        if record is not None and json.loads(record).get("fingerprint") == self.plan.fingerprint():
            return True
        if self._has_metadata():
            raise StoreError(
                f"target store {_describe(self._target)} already holds zarr data; rechunk writes a new target, "
                "so give an empty location or delete it first"
            )
        return False

    def _has_metadata(self) -> bool:
        return any(store_exists(self._target, k) for k in _METADATA_NAMES)

    def _temp_location(self, path: str, fp: str) -> tuple[Store, str]:
        leaf = path or "array"
        if self._temp is None:
            return self._target, f"{MARK}/temp/{fp}/{leaf}"
        return self._temp, leaf

    def _stage_metadata(self) -> tuple[zarr.storage.MemoryStore, dict[str, zarr.Array]]:
        """Create the target's metadata in memory; return it and the staged arrays."""
        staging = zarr.storage.MemoryStore()
        for path, attrs in self._info.groups:
            zarr.create_group(staging, path=path, attributes=attrs, zarr_format=self._info.zarr_format,
                              overwrite=True)
        arrays = {j.path: zarr.create_array(staging, **j.create_kwargs) for j in self._info.jobs}
        return staging, arrays

    def _commit(self, staging: zarr.storage.MemoryStore) -> None:
        """Copy the staged metadata documents, deepest first so the root lands last."""
        keys = sorted(store_keys(staging), key=lambda k: (-k.count("/"), k))
        for key in keys:
            value = store_get(staging, key)
            if value is not None:
                store_set(self._target, key, value)
        if self._info.consolidated:
            zarr.consolidate_metadata(self._target, zarr_format=self._info.zarr_format)

    # ------------------------------------------------------------------ run

    def execute(self, keep_temp: bool | None = None, **compute_kwargs: Any) -> RechunkResult:
        """Run the rechunk on the active (or given) dask scheduler.

        Parameters
        ----------
        keep_temp
            Keep the intermediate arrays after success (default: the value given to
            :func:`rechunk`).
        **compute_kwargs
            Passed to ``dask.compute`` (e.g. ``scheduler="threads"``).

        Returns
        -------
        RechunkResult
            Also stored as ``self.result``.

        Raises
        ------
        StoreError
            If the target already holds zarr metadata that no interrupted run of this
            plan left behind.
        TypeError
            On keywords ``dask.compute`` does not take.
        """
        check_compute_kwargs("Rechunked.execute", compute_kwargs)
        start = time.perf_counter()
        keep = self.keep_temp if keep_temp is None else keep_temp
        store = self._target
        fp = self.plan.fingerprint()
        resumed = self._check_target()
        if not resumed:
            store_delete_prefix(store, MARK)  # leftovers of another plan are useless now
            store_set(store, f"{MARK}/plan.json", plan_record(fp, self.plan.to_dict()))

        staging, staged = self._stage_metadata()
        chains: list[list[StageIO]] = []
        temps: list[tuple[Store, str, dict[str, bytes]]] = []
        for idx, (job, ap) in enumerate(zip(self._info.jobs, self.plan.arrays, strict=True)):
            # Chunks go to the real store under the staged metadata; metadata is committed last.
            final = zarr.Array(zarr.AsyncArray(metadata=staged[job.path].metadata,
                                               store_path=StorePath(store, job.path)))
            src: zarr.Array = job.source
            chain = []
            for stage in ap.stages:
                marker = f"{MARK}/done/{fp}/{idx}/{stage.index}"
                if stage.write_to == "target":
                    dst = final
                else:
                    tstore, tpath = self._temp_location(job.path, fp)
                    dst, doc = self._temp_array(tstore, tpath, job, ap.intermediate_chunks)
                    if not resumed:
                        store_delete_prefix(tstore, tpath)  # chunks of an older, different plan
                    temps.append((tstore, tpath, doc))
                    # The intermediate's codecs depend on the store given (compressed on remote
                    # stores): a rerun that encodes differently must not trust chunks done before.
                    marker += "-" + hashlib.sha1(b"".join(k.encode() + v for k, v in sorted(doc.items()))).hexdigest()[:12]
                chain.append(StageIO(src=src, dst=dst, stage=stage, shape=ap.shape, marker_store=store,
                                     marker_prefix=marker,
                                     label=f"{job.path or 'array'}/{stage.index}"))
                src = dst
            chains.append(chain)

        try:
            runs = build_graph(chains, fp).compute(**compute_kwargs)
            self._commit(staging)
        except OSError as exc:
            raise StoreWriteError(
                f"rechunking into {_describe(store)} failed: {type(exc).__name__}: {exc}. The target is not published "
                "(readers see nothing there: its metadata is written last) and the source is untouched. Fix "
                "the cause, then rerun the same rechunk: it resumes, skipping the tasks that finished."
            ) from exc
        for tstore, tpath, doc in temps:
            if keep:
                for key, value in doc.items():
                    store_set(tstore, key, value)
            else:
                store_delete_prefix(tstore, tpath)
        if keep and self._temp is None:  # the kept intermediates live under MARK/temp
            store_delete_prefix(store, f"{MARK}/done")
            store_delete(store, f"{MARK}/plan.json")
        else:
            store_delete_prefix(store, MARK)
        ran = int(sum(runs.values()))
        opened = (zarr.open_array(store, mode="r+") if self._info.kind == "array"
                  else zarr.open_group(store, mode="r+"))
        self.result = RechunkResult(target=opened, tasks_run=ran, tasks_skipped=self.plan.n_tasks - ran,
                                    resumed=resumed, per_stage=runs, seconds=time.perf_counter() - start)
        return self.result

    def _temp_array(
        self, tstore: Store, tpath: str, job: Any, chunks: Any
    ) -> tuple[zarr.Array, dict[str, bytes]]:
        """An intermediate array over ``tstore`` whose metadata is held in memory.

        Creating it in place would also create implicit parent groups, i.e. a root
        ``zarr.json`` in the target store mid-run; the metadata document is written only
        if the intermediate is kept.
        """
        staging = zarr.storage.MemoryStore()
        opts = dict(self._temp_options)
        # Intermediates are read once and deleted: on local stores compressing them costs
        # more CPU than it saves I/O (measured ~1.5x slower), on remote stores bytes matter.
        local = isinstance(tstore, zarr.storage.LocalStore | zarr.storage.MemoryStore)
        opts.setdefault("compressors", None if local else "auto")
        staged = zarr.create_array(
            staging, name=tpath, shape=job.spec.shape, chunks=tuple(chunks),
            dtype=job.create_kwargs["dtype"], fill_value=job.create_kwargs["fill_value"],
            zarr_format=job.create_kwargs["zarr_format"], overwrite=True,
            compressors=opts["compressors"],
        )
        doc = {k: store_get(staging, k) for k in store_keys(staging, tpath + "/")}
        arr = zarr.Array(zarr.AsyncArray(metadata=staged.metadata, store_path=StorePath(tstore, tpath)))
        return arr, {k: v for k, v in doc.items() if v is not None}


def rechunk(
    source: Any,
    target_chunks: Any,
    max_mem: int | str,
    target_store: Any,
    temp_store: Any = None,
    target_options: Mapping[str, Any] | None = None,
    temp_options: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    keep_temp: bool = False,
    threads_per_worker: int | None = None,
    **knobs: Any,
) -> Rechunked:
    """Plan a rechunk of ``source`` into ``target_store`` (rechunker-compatible).

    Parameters
    ----------
    source
        :class:`zarr.Array`, :class:`zarr.Group`, or :class:`xarray.Dataset` opened from zarr.
    target_chunks
        Tuple (or dict by dimension name) for an array; for groups and Datasets a dict
        of array name -> chunks, or of dimension name -> size.  ``-1``/None = full length;
        arrays or axes not mentioned keep their chunks.
    max_mem
        Memory budget per task, bytes or a string like ``"1GB"``.
    target_store, temp_store
        Path, fsspec URL or zarr store.  Without ``temp_store`` intermediates live in
        the target store under ``.parallelzarr-rechunk/`` and are removed at the end.
    target_options
        ``zarr_format`` (default: the source's), ``shards``, ``compressors``,
        ``filters``; either for all arrays or keyed by array name.
    temp_options
        ``compressors`` for the intermediates (default: none on local/memory stores,
        zarr's default on remote stores).
    storage_options
        fsspec options for URL stores: the target, the temp store and a Dataset source's store
        (reopened from its ``encoding["source"]``).
    keep_temp
        Keep intermediates after success.
    threads_per_worker
        Scales the per-worker memory estimate; detected from the scheduler if None.
    **knobs
        Planner knobs (``max_tasks``, ``min_tasks``, ``target_task_bytes``,
        ``target_intermediate_bytes``).

    Returns
    -------
    Rechunked

    Raises
    ------
    MemoryBudgetError
        If ``max_mem`` cannot be kept; nothing has been written.
    ChunkSpecError, PlanningError
        On bad chunk requests or sources.
    TypeError
        On keywords that are not planner knobs (compute keywords go to :meth:`Rechunked.execute`).
    """
    _check_knobs("rechunk", knobs)
    parse_bytes(max_mem)
    if temp_options is not None and (not isinstance(temp_options, Mapping)
                                     or set(temp_options) - {"compressors"}):
        raise EncodingError(f"temp_options must be a dict with only the key 'compressors', got {temp_options!r}")
    plan = plan_rechunk(source, target_chunks, max_mem, target_options=target_options,
                        threads_per_worker=threads_per_worker, storage_options=storage_options, **knobs)
    info = resolve_source(source, target_chunks, target_options, storage_options)
    tstore = as_store(target_store, storage_options)
    temp = as_store(temp_store, storage_options) if temp_store is not None else None
    _check_overlap(info, tstore, temp)
    job = Rechunked(info, plan, tstore, temp, temp_options, keep_temp)
    job._check_target()  # refuse an occupied target now, before the caller plans around it
    return job


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


def _check_overlap(info: SourceInfo, target: Store, temp: Store | None) -> None:
    """Refuse targets and temporary stores that are, contain or lie inside the source or each other."""
    sources = []
    for job in info.jobs:
        src = job.source
        sources.append(_location(src.store, src.path))
    tloc, mloc = _location(target), _location(temp) if temp is not None else None
    for sloc in sources:
        if _nested(sloc, tloc):
            raise StoreOverlapError(
                f"the rechunk target {_describe(target)} overlaps the source array at {sloc[1]}; rechunk into "
                "a new, separate location"
            )
        if mloc is not None and _nested(sloc, mloc):
            raise StoreOverlapError(
                f"temp_store {_describe(temp)} overlaps the source array at {sloc[1]}; intermediates are deleted "
                "after the run, so give a separate location"
            )
    if mloc is not None and _nested(tloc, mloc):
        raise StoreOverlapError(
            f"temp_store {_describe(temp)} and the target {_describe(target)} are the same or nested; give a "
            "separate temp_store (or none: intermediates then live in the target and are removed at the end)"
        )
