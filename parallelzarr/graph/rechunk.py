"""Run a rechunk plan: dask graph per stage, zarr I/O per task, resume markers.

Each task reads one block with zarr, writes it back as whole cells of the stage's
write grid (so nothing is read-modify-written and tasks never race), then writes a
small marker object.  A rerun with the same plan fingerprint skips tasks whose
marker exists, which makes the whole rechunk resumable and every task idempotent.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zarr
from dask._task_spec import Task, TaskRef
from dask.delayed import Delayed
from dask.highlevelgraph import MaterializedLayer
from zarr.abc.store import Store

from parallelzarr.graph.lazy import GridKeys, LazyLayer, chain_sum_layers, data_layer, stack_layers
from parallelzarr.hooks import chunk_written
from parallelzarr.plan.rechunk import StagePlan
from parallelzarr.store import keys
from parallelzarr.store.chunk_io import read_region, write_region

__all__ = ["MARK", "StageIO", "run_block", "build_graph"]

#: Prefix in the target store for the plan record, task markers and (by default) intermediates.
MARK = ".parallelzarr-rechunk"


@dataclass
class StageIO:
    """Everything one stage's tasks need (pickled once per stage, not per task).

    Attributes
    ----------
    src, dst
        Arrays read and written.
    stage
        The stage plan (block grid).
    shape
        Array shape.
    marker_store
        Store holding the task markers (the target store).
    marker_prefix
        Key prefix of this stage's markers; it contains the plan fingerprint.
    label
        ``"<array>/<stage>"`` for reports.
    """

    src: zarr.Array
    dst: zarr.Array
    stage: StagePlan
    shape: tuple[int, ...]
    marker_store: Store
    marker_prefix: str
    label: str = ""


def run_block(io: StageIO, task: int, *after: Any) -> int:
    """Copy block ``task`` of a stage; return 1 if it ran, 0 if its marker said done.

    ``after`` only orders the task after the previous stage; its values are unused.
    """
    key = f"{io.marker_prefix}/{task}"
    if keys.exists(io.marker_store, key):
        return 0
    region = io.stage.block_slices(task, io.shape)
    k = io.stage.io_chunks
    # Decode, assemble, fill-check, encode and store in this (worker) thread, at most ``k`` objects
    # in flight on loop-bound stores: zarr's one event-loop thread would otherwise do it all.
    data = read_region(io.src, region, window=k)
    # Blocks are whole cells of the write grid, so every object is written whole, never merged.
    write_region(io.dst, region, data, window=k)
    chunk_written()  # test-only fault hook (PARALLELZARR_FAULT=write:K); a lookup when unset
    # The marker goes last: a crash before it means the block is simply redone.
    keys.put(io.marker_store, key, b"")
    del data
    return 1


def _glibc_trim() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_malloc_trim = _glibc_trim()


def release_freed_memory() -> None:
    """Hand memory freed by finished tasks back to the OS (glibc keeps it in its arenas otherwise).

    Called once per stage, when every task of the stage has finished (``malloc_trim`` trims every
    thread's arena): with several threads glibc retained ~0.1-0.3 GB beyond the plan's budget in a
    20 GB rechunk. Within a stage every task allocates the same sizes, so what glibc keeps is reused
    by the next task; trimming after each task instead made every task fault its pages in again
    (0.3 CPU s per 400 MB rechunked, 12% of the run). distributed's nannies do the same with
    ``MALLOC_TRIM_THRESHOLD_``, which the threaded scheduler lacks.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


def _stage_done(count: int) -> int:
    """The barrier after a stage: release what its tasks freed, pass its task count on."""
    release_freed_memory()
    return count


def _report(names: Sequence[str], *counts: int) -> dict[str, int]:
    return dict(zip(names, counts, strict=True))


def build_graph(chains: Sequence[Sequence[StageIO]], token: str) -> Delayed:
    """Build one dask graph running every array's stages in order.

    Each stage is one lazy layer (:mod:`parallelzarr.graph.lazy`): its tasks are made from their
    keys at submission, so building the graph costs O(stages), whatever the task count.

    Parameters
    ----------
    chains
        Per array, its stages in order; stage ``k+1`` starts after all of stage ``k``.
    token
        Unique name part (the plan fingerprint).

    Returns
    -------
    Delayed
        Computes to ``{"<array>/<stage>": tasks_run}``.
    """
    layers: list[tuple[str, Any, set[str]]] = []
    totals: list[str] = []
    names: list[str] = []
    for a, chain in enumerate(chains):
        barrier: str | None = None
        for io in chain:
            base = f"rechunk-{token}-{a}-{io.stage.index}"
            io_key = f"{base}-io"
            layers.append((io_key, data_layer(io_key, io), set()))

            def make(key: Any, io_key: str = io_key, barrier: str | None = barrier) -> Task:
                after = (TaskRef(barrier),) if barrier is not None else ()
                return Task(key, run_block, TaskRef(io_key), key[1], *after)

            tasks = GridKeys(base, (io.stage.n_tasks,))
            layers.append((base, LazyLayer(tasks, make), {io_key} | ({barrier} if barrier else set())))
            sums, total = chain_sum_layers(f"{base}-total", tasks)
            below = base
            for layer_name, layer in sums:
                layers.append((layer_name, layer, {below}))
                below = layer_name
            done = f"{base}-done"
            layers.append((done, MaterializedLayer({done: Task(done, _stage_done, TaskRef(total))}), {total}))
            barrier = done
            totals.append(done)
            names.append(io.label or f"{a}/{io.stage.index}")
    final = f"rechunk-{token}-report"
    report = MaterializedLayer({final: Task(final, _report, names, *(TaskRef(t) for t in totals))})
    layers.append((final, report, set(totals)))
    return Delayed(final, stack_layers(None, layers))


def plan_record(fingerprint: str, plan_dict: dict[str, Any]) -> bytes:
    """The JSON document stored at ``MARK/plan.json`` to recognise a resumable run."""
    return json.dumps({"fingerprint": fingerprint, "plan": plan_dict}, default=str).encode()
