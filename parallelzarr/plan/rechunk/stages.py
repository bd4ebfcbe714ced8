"""Rechunk stages: one pass's tasks sized within the budget, and the search for the cheapest one.

:class:`Problem` is one array's rechunk as the planner sees it (grids, budget, batching knobs);
:func:`build_stage` lays one pass out for a given task block, :func:`grow_block` batches chunks into
larger blocks while they fit, and :func:`best_stage` picks the block that reads the fewest bytes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from parallelzarr.plan.rechunk.memory import MemoryModel, ceildiv, task_memory
from parallelzarr.plan.rechunk.plans import ArrayPlan, StagePlan

__all__ = ["Problem", "build_stage", "grow_block", "best_stage", "moved", "cells"]


def cells(shape: Sequence[int], grid: Sequence[int]) -> int:
    """Cells of ``grid`` covering ``shape``."""
    return math.prod(ceildiv(n, g) for n, g in zip(shape, grid, strict=True))


def _axis_pairs(n: int, block: int, grid: int) -> int:
    """(block, cell) overlaps along one axis: blocks plus cell edges strictly inside blocks."""
    if n == 0:
        return 0
    nblocks = ceildiv(n, block)
    cell_edges = ceildiv(n, grid) - 1
    shared_edges = ceildiv(n, math.lcm(block, grid)) - 1
    return nblocks + cell_edges - shared_edges


def grow_block(
    shape: Sequence[int],
    unit: Sequence[int],
    fits: Callable[[Sequence[int]], bool],
    itemsize: int,
    *,
    max_tasks: int,
    min_tasks: int,
    target_bytes: int,
) -> tuple[int, ...]:
    """Grow ``unit`` by whole multiples so tasks batch many chunks.

    Growth is forced while there are more than ``max_tasks`` tasks, and otherwise
    continues while blocks are under ``target_bytes`` and at least ``min_tasks`` remain;
    every step must keep ``fits(block)``.
    """
    block = [min(u, n) for u, n in zip(unit, shape, strict=True)]
    while True:
        n_tasks = cells(shape, block)
        order = sorted(range(len(shape)), key=lambda i: -ceildiv(shape[i], block[i]))
        grown = False
        for i in order:
            if block[i] >= shape[i]:
                continue
            cand = list(block)
            # Double in units of the aligned step, or jump straight to the full axis.
            cand[i] = min(shape[i], block[i] * 2)
            if cand[i] < shape[i]:
                cand[i] = max(unit[i], cand[i] // unit[i] * unit[i])
            new_tasks = cells(shape, cand)
            new_bytes = math.prod(cand) * itemsize
            wanted = n_tasks > max_tasks or (new_bytes <= target_bytes and new_tasks >= min_tasks)
            if wanted and fits(cand):
                block = cand
                grown = True
                break
        if not grown:
            return tuple(block)


def build_stage(
    index: int,
    read_from: str,
    write_to: str,
    shape: Sequence[int],
    itemsize: int,
    read_grid: Sequence[int],
    write_grid: Sequence[int],
    block: Sequence[int],
    model: MemoryModel,
    write_sharded: bool,
    budget: int,
    note: str = "",
) -> StagePlan:
    """Lay out one pass whose tasks each handle ``block``: counts, bytes, amplification, memory.

    ``io_chunks`` is the most objects in flight that keep ``budget`` (one when the budget is read as
    chunk data).
    """
    nbytes = math.prod(shape) * itemsize
    # Most objects in flight that keep the budget: more in flight means more overlap on remote stores.
    io_chunks = 1
    # Read as chunk data only, the budget says nothing about buffers: keep them at their least.
    for k in range(1 if model.data_only else model.io_concurrency, 0, -1):
        if task_memory(shape, itemsize, block, read_grid, write_grid, model, write_sharded=write_sharded,
                       io_chunks=k)["total"] <= budget:
            io_chunks = k
            break
    pairs = math.prod(_axis_pairs(n, b, g) for n, b, g in zip(shape, block, read_grid, strict=True))
    n_cells = cells(shape, read_grid)
    amp = pairs / n_cells if n_cells else 1.0
    mem = task_memory(shape, itemsize, block, read_grid, write_grid, model, write_sharded=write_sharded,
                      io_chunks=io_chunks)
    return StagePlan(
        index=index,
        read_from=read_from,
        write_to=write_to,
        read_grid=tuple(read_grid),
        write_grid=tuple(write_grid),
        block=tuple(block),
        blocks_per_axis=tuple(ceildiv(n, b) for n, b in zip(shape, block, strict=True)),
        n_tasks=cells(shape, block),
        read_amplification=round(amp, 6),
        chunks_read=pairs,
        chunks_written=cells(shape, write_grid),
        bytes_read=int(round(nbytes * amp)),
        bytes_written=nbytes,
        task_memory=mem["total"],
        memory_breakdown=mem,
        io_chunks=io_chunks,
        note=note,
    )


def moved(stages: Sequence[StagePlan]) -> int:
    """Bytes a plan moves: read plus written over its stages (the planner's cost)."""
    return sum(s.bytes_read + s.bytes_written for s in stages)


@dataclass(frozen=True)
class Problem:
    """One array's rechunk as the planner sees it.

    Attributes
    ----------
    name, dtype, shape, itemsize
        The array.
    source_chunks, target_chunks
        Its chunks before and after.
    read, write
        The grid the source is read in (its shards when sharded) and the grid the target is written
        in (its shards when sharded, else its chunks).
    sharded
        Whether the target is sharded (tasks then encode whole shards).
    model, budget
        The memory model and the per-task budget in bytes.
    max_tasks, min_tasks, target_bytes
        Batching knobs of :func:`grow_block`.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    itemsize: int
    source_chunks: tuple[int, ...]
    target_chunks: tuple[int, ...]
    read: tuple[int, ...]
    write: tuple[int, ...]
    sharded: bool
    model: MemoryModel
    budget: int
    max_tasks: int
    min_tasks: int
    target_bytes: int

    @property
    def nbytes(self) -> int:
        """Raw size of the array."""
        return math.prod(self.shape) * self.itemsize

    def mem(self, block: Sequence[int], rg: Sequence[int], wg: Sequence[int], ws: bool) -> int:
        """A task's estimated peak at its floor, one cell per zarr call (:func:`build_stage` then allows more)."""
        return task_memory(self.shape, self.itemsize, block, rg, wg, self.model, write_sharded=ws,
                           io_chunks=1)["total"]

    def fits(self, rg: Sequence[int], wg: Sequence[int], ws: bool) -> Callable[[Sequence[int]], bool]:
        """Whether a block reading ``rg`` and writing ``wg`` keeps the budget."""
        return lambda b: self.mem(b, rg, wg, ws) <= self.budget

    def grow(self, unit: Sequence[int], rg: Sequence[int], wg: Sequence[int], ws: bool,
             target_bytes: int | None = None) -> tuple[int, ...]:
        """:func:`grow_block` from ``unit`` within the budget, up to ``target_bytes`` (default: the knob)."""
        return grow_block(self.shape, unit, self.fits(rg, wg, ws), self.itemsize, max_tasks=self.max_tasks,
                          min_tasks=self.min_tasks,
                          target_bytes=self.target_bytes if target_bytes is None else target_bytes)

    def stage(self, index: int, read_from: str, write_to: str, rg: Sequence[int], wg: Sequence[int],
              block: Sequence[int], ws: bool) -> StagePlan:
        """:func:`build_stage` for this array."""
        return build_stage(index, read_from, write_to, self.shape, self.itemsize, rg, wg, block, self.model, ws,
                           self.budget)

    def array_plan(self, intermediate_chunks: tuple[int, ...] | None, stages: tuple[StagePlan, ...],
                   strategy: str, reason: str, alternatives: tuple[tuple[str, int, int], ...] = ()) -> ArrayPlan:
        """The :class:`ArrayPlan` of this array with these stages."""
        return ArrayPlan(name=self.name, shape=self.shape, dtype=self.dtype, itemsize=self.itemsize,
                         source_chunks=self.source_chunks, target_chunks=self.target_chunks,
                         target_shards=self.write if self.sharded else None,
                         intermediate_chunks=intermediate_chunks, stages=stages, strategy=strategy, reason=reason,
                         alternatives=alternatives)


def best_stage(p: Problem, index: int, read_from: str, write_to: str, rg: Sequence[int], wg: Sequence[int],
               ws: bool) -> StagePlan | None:
    """The stage reading the fewest bytes among blocks aligned to ``rg`` on any subset of axes.

    Per axis a block takes whole read cells where they fit; split read cells are reread by every
    task sharing them. ``None`` when no block keeps the budget.
    """
    ndim = len(p.shape)
    whole = [min(n, math.lcm(a, b)) for n, a, b in zip(p.shape, rg, wg, strict=True)]
    least = [min(n, b) for n, b in zip(p.shape, wg, strict=True)]
    free = [i for i in range(ndim) if whole[i] != least[i]]
    # Subsets of axes kept whole, most first; past 6 free axes only all or none (64 subsets at most).
    subsets = ([set(c) for k in range(len(free), -1, -1) for c in itertools.combinations(free, k)]
               if len(free) <= 6 else [set(free), set()])
    best: StagePlan | None = None
    for keep in subsets:
        unit = tuple(whole[i] if i in keep else least[i] for i in range(ndim))
        if p.mem(unit, rg, wg, ws) > p.budget:
            continue
        # Split read cells make larger blocks cheaper (fewer rereads): also try the largest that fit.
        for tb in ((p.target_bytes,) if len(keep) == len(free) else (p.target_bytes, p.budget)):
            st = p.stage(index, read_from, write_to, rg, wg, p.grow(unit, rg, wg, ws, tb), ws)
            if best is None or st.bytes_read < best.bytes_read:
                best = st
        if best is not None and best.read_amplification == 1.0:
            break  # nothing reads less
    return best
