"""Write plans: which task writes what, and how each write is made safe (pure: no I/O).

:func:`plan_variable` takes the facts of one array write (shape, dask chunks, write grid, region,
dtype size, memory budget, what locks can work) and returns a :class:`VariablePlan`. A
:class:`WritePlan` gathers the plans of every variable of a write and prints as a table.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from parallelzarr.errors import ChunkSpecError, MemoryBudgetError, StrategyError
from parallelzarr.plan.grid import Segment, aligned_chunks, axis_segments, summarize_chunks
from parallelzarr.units import format_bytes

STRATEGIES = ("auto", "direct", "gather-edges", "rechunk", "lock", "rectilinear")
#: Variables whose zarr grid is their own dask chunks (a rectilinear grid, zarr >= 3.2), set by
#: :mod:`parallelzarr.store.rectilinear` while a write with ``encoding={"chunks": ((24, 31, ...), ...)}`` is planned.
RECTILINEAR_NAMES: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("pz_rectilinear", default=frozenset())
#: ``auto`` rechunks instead of gathering once one shared cell would gather pieces of more dask blocks
#: than this. Gathering copies only edge data where rechunking copies all of it (measured: 0.7-99 MB
#: of extra RSS against 93-359 MB on 2 GB writes), but a cell assembled from very many small blocks
#: is better built by dask's tree of rechunk merges.
GATHER_FANIN_FOR_RECHUNK = 8


@dataclass
class AxisLayout:
    """One axis of a write: dask chunks laid over the write grid."""

    name: str
    length: int
    start: int
    chunks: tuple[int, ...]
    grid: int
    segments: list[Segment]

    @property
    def stop(self) -> int:
        return self.start + sum(self.chunks)

    @property
    def ncells(self) -> int:
        return sum(s.ncells for s in self.segments)

    @property
    def owned_cells(self) -> int:
        return sum(s.ncells for s in self.segments if not s.shared)

    @property
    def owned_length(self) -> int:
        return sum(s.size for s in self.segments if not s.shared)

    @property
    def full_cells(self) -> int:
        return sum(s.ncells for s in self.segments if s.full)


def layout(
    names: Sequence[str],
    shape: Sequence[int],
    chunks: Sequence[Sequence[int]],
    grid: Sequence[int],
    start: Sequence[int],
) -> list[AxisLayout]:
    """Build the per-axis layouts of a write of ``chunks`` at ``start`` into ``shape``."""
    return [
        AxisLayout(str(n), int(L), int(s), tuple(int(c) for c in ch), int(g), axis_segments(ch, g, L, s))
        for n, L, ch, g, s in zip(names, shape, chunks, grid, start, strict=True)
    ]


@dataclass
class VariablePlan:
    """How one array (one variable of a Dataset) is written.

    The counts describe the task graph the builder makes: ``tasks`` write tasks, ``edge_cells``
    grid cells written by more than one dask block (gathered or locked), ``partial_cells`` grid
    cells only partly covered by the write (their stored values are read and kept), and
    ``bytes_moved`` the data that travels between tasks beyond the plain one-block-one-write path.
    """

    name: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    dtype: str
    itemsize: int
    region: tuple[tuple[int, int], ...]
    dask_chunks: tuple[tuple[int, ...], ...]
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    strategy: str
    reason: str
    write_chunks: tuple[tuple[int, ...], ...]
    axes: list[AxisLayout] = field(repr=False)
    tasks: int = 0
    cells: int = 0
    cells_direct: int = 0
    edge_cells: int = 0
    partial_cells: int = 0
    bytes_total: int = 0
    bytes_moved: int = 0
    locks: int = 0
    lock_backend: str | None = None
    peak_memory_per_task: int = 0
    #: Per axis, the sizes of a rectilinear grid's cells (strategy ``rectilinear``), else ``None``.
    grid_edges: tuple[tuple[int, ...], ...] | None = None

    @property
    def grid(self) -> tuple[int, ...]:
        return self.shards or self.chunks

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no per-cell lists)."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dims": list(self.dims),
            "dtype": self.dtype,
            "region": [list(r) for r in self.region],
            "dask_chunks": [summarize_chunks(c) for c in self.dask_chunks],
            "chunks": list(self.chunks),
            "shards": list(self.shards) if self.shards else None,
            "write_grid": list(self.grid),
            "strategy": self.strategy,
            "reason": self.reason,
            "write_chunks": [summarize_chunks(c) for c in self.write_chunks],
            "tasks": self.tasks,
            "cells": self.cells,
            "cells_direct": self.cells_direct,
            "edge_cells": self.edge_cells,
            "partial_cells": self.partial_cells,
            "bytes_total": self.bytes_total,
            "bytes_moved": self.bytes_moved,
            "locks": self.locks,
            "lock_backend": self.lock_backend,
            "peak_memory_per_task": self.peak_memory_per_task,
            "grid_edges": [list(e) for e in self.grid_edges] if self.grid_edges else None,
        }


def _prod(values: Sequence[int]) -> int:
    return math.prod(int(v) for v in values)


def _cell_bytes(grid: Sequence[int], itemsize: int) -> int:
    return _prod(grid) * itemsize


def _max_block_bytes(chunks: Sequence[Sequence[int]], itemsize: int) -> int:
    return _prod([max(c) if len(c) else 0 for c in chunks]) * itemsize


def _edge_task_bytes(axes: Sequence[AxisLayout], itemsize: int) -> int:
    """Largest box a gather task assembles: shared segments on some axes, owned runs on others."""
    worst = 0
    for i, ax in enumerate(axes):
        shared = [s.size for s in ax.segments if s.shared]
        if not shared:
            continue
        box = max(shared)
        for j, other in enumerate(axes):
            if j != i:
                box *= max((s.size for s in other.segments), default=0)
        worst = max(worst, box)
    return worst * itemsize


def _partial_cells_text(axes: Sequence[AxisLayout]) -> str:
    """Where the partly covered cells are: per axis with any, the covered ranges that end mid-cell."""
    parts = []
    for ax in axes:
        spans = [f"{s.start}:{s.stop}" for s in ax.segments if not s.full]
        if spans:
            shown = ", ".join(spans[:4]) + (", ..." if len(spans) > 4 else "")
            parts.append(f"along {ax.name!r} (grid {ax.grid}) the write covers {shown} of those cells")
    return "; ".join(parts)


def plan_variable(
    name: str,
    *,
    shape: Sequence[int],
    dims: Sequence[str] | None,
    dtype: str,
    itemsize: int,
    dask_chunks: Sequence[Sequence[int]],
    chunks: Sequence[int],
    shards: Sequence[int] | None = None,
    region_start: Sequence[int] | None = None,
    strategy: str = "auto",
    max_mem: int | None = None,
    lock_backend: str | None = None,
    lock_problem: str | None = None,
    partial_cells_shared: bool = False,
) -> VariablePlan:
    """Plan the write of one array.

    Parameters
    ----------
    name
        Variable or array name, used in messages.
    shape
        Full shape of the target array (after the write, for appends).
    dims
        Dimension names (``dim_0``... when the array has none).
    dtype, itemsize
        Stored dtype (as text) and its size in bytes.
    dask_chunks
        Chunks of the data being written (its shape is the write's extent).
    chunks, shards
        The zarr chunk shape and, if sharded, the shard shape. The write grid is the shard shape if
        sharded, else the chunk shape.
    region_start
        Offset of the write in the target array per axis (zeros by default).
    strategy
        One of ``auto``, ``direct``, ``gather-edges``, ``rechunk``, ``lock``.
    max_mem
        Memory budget per task in bytes; ``None`` for no check.
    lock_backend
        Lock backend that can work here (``threading``, ``distributed``, ``file``) or ``None``.
    lock_problem
        Why no lock backend works, used in the error if ``strategy="lock"``.
    partial_cells_shared
        ``True`` for region writes: a grid cell the write covers only partly may be written at the
        same time by another writer (a neighbouring region, possibly another process), and each
        write of a cell rewrites all of it. Such cells are then written under their cell's lock
        whatever the strategy (``lock_backend`` must work across those writers), and the write
        is refused when no lock backend works. ``False`` (new arrays, appends under their
        lease): partial cells are read, merged and written by the one task that owns them.

    Returns
    -------
    VariablePlan

    Raises
    ------
    StrategyError
        Partly covered cells of a region write cannot be synchronised (no lock backend).
    """
    ndim = len(shape)
    dims = tuple(dims) if dims else tuple(f"dim_{i}" for i in range(ndim))
    if strategy == "rectilinear" or name in RECTILINEAR_NAMES.get():
        return plan_rectilinear(name, shape=shape, dims=dims, dtype=dtype, itemsize=itemsize, dask_chunks=dask_chunks,
                                shards=shards, region_start=region_start, max_mem=max_mem)
    if strategy not in STRATEGIES:
        raise StrategyError(f"unknown strategy {strategy!r} for {name!r}; choose one of {', '.join(STRATEGIES)}")
    chunks, shards = _checked_grid(name, dims, chunks, shards, len(dask_chunks))
    grid = shards or chunks
    start, dask_chunks = _checked_extent(name, dims, shape, region_start, dask_chunks)
    axes = layout(dims, shape, dask_chunks, grid, start)
    aligned = all(not any(seg.shared for seg in ax.segments) for ax in axes)
    total_bytes = _prod([sum(c) for c in dask_chunks]) * itemsize
    moved_bytes = total_bytes - _prod([ax.owned_length for ax in axes]) * itemsize
    partial_before = _prod([ax.ncells for ax in axes]) - _prod([ax.full_cells for ax in axes])
    # Region writes: cells the write covers only in part are shared with whoever writes the rest.
    lock_partial = bool(partial_cells_shared and partial_before)
    if lock_partial and lock_backend is None:
        raise _unlockable_partial_error(name, partial_before, axes, grid, lock_problem)
    chosen, reason = _choose_strategy(
        name, strategy, axes, aligned=aligned, partial=partial_before, lock_partial=lock_partial,
        lock_backend=lock_backend, lock_problem=lock_problem, share=moved_bytes / total_bytes if total_bytes else 0.0,
    )
    write_chunks = dask_chunks
    if chosen == "rechunk":
        write_chunks = tuple(aligned_chunks(ch, g, L, s) for ch, g, L, s in zip(dask_chunks, grid, shape, start, strict=True))
        axes = layout(dims, shape, write_chunks, grid, start)
        moved_bytes = total_bytes if not aligned else 0
    counts = _task_counts(chosen, axes, write_chunks, grid, itemsize, aligned=aligned)
    if chosen == "lock":
        moved_bytes = 0
    locks = counts.locks
    if lock_partial:
        locks, reason = _lock_partial_cells(chosen, counts, axes, lock_backend, reason)
    _check_task_memory(name, counts, max_mem)
    return VariablePlan(
        name=name, shape=tuple(int(s) for s in shape), dims=dims, dtype=dtype, itemsize=itemsize,
        region=tuple((ax.start, ax.stop) for ax in axes), dask_chunks=dask_chunks, chunks=chunks, shards=shards,
        strategy=chosen, reason=reason, write_chunks=write_chunks, axes=axes, tasks=counts.tasks,
        cells=counts.cells, cells_direct=counts.owned_cells, edge_cells=counts.cells - counts.owned_cells,
        partial_cells=counts.partial, bytes_total=total_bytes, bytes_moved=moved_bytes, locks=locks,
        lock_backend=lock_backend if chosen == "lock" or lock_partial else None, peak_memory_per_task=counts.peak,
    )


def _checked_extent(name: str, dims: tuple[str, ...], shape: Sequence[int], region_start: Sequence[int] | None,
                    dask_chunks: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """The write's start per axis and its dask chunks as ints, checked to lie inside the array."""
    start = tuple(int(s) for s in region_start) if region_start is not None else (0,) * len(shape)
    chunks = tuple(tuple(int(c) for c in ch) for ch in dask_chunks)
    _check_extent(name, dims, shape, start, chunks)
    return start, chunks


def _lock_partial_cells(chosen: str, counts: _Counts, axes: Sequence[AxisLayout], lock_backend: str | None,
                        reason: str) -> tuple[int, str]:
    """A region write's locks and reason: whatever the strategy, a task writing a partly covered cell
    holds that cell's lock."""
    locks = counts.locks if chosen == "lock" else counts.partial
    return locks, reason + (
        f"; the region covers {counts.partial} grid cell(s) only in part ({_partial_cells_text(axes)}), which "
        f"neighbouring writers may share: they are written under {lock_backend} locks"
    )


def _check_task_memory(name: str, counts: _Counts, max_mem: int | None) -> None:
    """Refuse a plan whose largest write task would hold more than ``max_mem``."""
    if max_mem is not None and counts.peak > max_mem:
        raise MemoryBudgetError(
            f"{name!r}: a write task would hold about {format_bytes(counts.peak)} (largest dask block "
            f"{format_bytes(counts.block_bytes)}, grid cell {format_bytes(counts.cell_bytes)}) but max_mem is "
            f"{format_bytes(max_mem)}; raise max_mem to at least {format_bytes(counts.peak)} or use smaller dask chunks"
        )


def _checked_grid(name: str, dims: tuple[str, ...], chunks: Sequence[int], shards: Sequence[int] | None,
                  data_ndim: int) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """The chunk and shard shapes as int tuples, checked against the array's dimensions and each other.

    Raises
    ------
    ChunkSpecError
        A wrong number of entries (or of data dimensions), non-positive chunks, or shards that are
        not positive multiples of the chunks.
    """
    ndim = len(dims)
    for label, spec in (("chunks", chunks), ("shards", shards)):
        if spec is not None and len(spec) != ndim:
            raise ChunkSpecError(
                f"{name!r}: {label} {tuple(spec)} has {len(spec)} entries but the array has {ndim} "
                f"dimensions {dims}; give one length per dimension"
            )
    if data_ndim != ndim:
        raise ChunkSpecError(f"{name!r}: data has {data_ndim} dimensions, target has {ndim} {dims}")
    chunks = tuple(int(c) for c in chunks)
    shards = tuple(int(s) for s in shards) if shards else None
    if any(c <= 0 for c in chunks):
        raise ChunkSpecError(f"{name!r}: chunks {chunks} must all be positive")
    if shards is not None:
        bad = [d for d, c, s in zip(dims, chunks, shards, strict=True) if s <= 0 or s % c]
        if bad:
            raise ChunkSpecError(
                f"{name!r}: shards {shards} must be positive multiples of chunks {chunks} "
                f"(dimension(s) {', '.join(bad)}); e.g. shards={tuple(c * 4 for c in chunks)}"
            )
    return chunks, shards


def _check_extent(name: str, dims: Sequence[str], shape: Sequence[int], start: Sequence[int],
                  dask_chunks: Sequence[Sequence[int]]) -> None:
    """Refuse a write that reaches outside the array along some axis."""
    for d, L, s, ch in zip(dims, shape, start, dask_chunks, strict=True):
        if s < 0 or s + sum(ch) > L:
            raise ChunkSpecError(f"{name!r}: write [{s}, {s + sum(ch)}) along {d!r} is outside the array length {L}")


def _unlockable_partial_error(name: str, partial: int, axes: Sequence[AxisLayout], grid: Sequence[int],
                              lock_problem: str | None) -> StrategyError:
    """The refusal of a region write whose partly covered cells no lock can protect."""
    return StrategyError(
        f"{name!r}: this region covers {partial} grid cell(s) only in part ({_partial_cells_text(axes)}); "
        "other writers of the rest of those cells would race with it and lose updates, and no lock works here "
        f"({lock_problem or 'no lock backend'}). Fix: align the region to the write grid {tuple(grid)} "
        "(start and stop on multiples of it, or the array's end), split the work at grid boundaries, or "
        "write under a lock (a store on a shared filesystem with lock='file', or a distributed Client "
        "shared by every writer with lock='distributed')"
    )


def _choose_strategy(name: str, strategy: str, axes: Sequence[AxisLayout], *, aligned: bool, partial: int,
                     lock_partial: bool, lock_backend: str | None, lock_problem: str | None,
                     share: float) -> tuple[str, str]:
    """The strategy carried out (``auto`` resolved) and why, refusing a requested one that cannot work.

    ``share`` is the part of the data in shared cells (what gathering moves).

    Raises
    ------
    StrategyError
        ``direct`` for misaligned blocks, ``lock`` without a lock backend.
    """
    if strategy == "auto":
        if aligned:
            reason = "every dask block covers whole grid cells"
            if partial:
                reason = "no grid cell is written by two dask blocks"
                if not lock_partial:
                    reason += f"; {partial} partly covered cell(s) are read, merged and rewritten by their owner"
            return "direct", reason
        fanin = _prod([max(s.block_stop - s.block_start for s in ax.segments) for ax in axes])
        if fanin > GATHER_FANIN_FOR_RECHUNK:
            return "rechunk", (
                f"a shared cell gathers up to {fanin} dask blocks (> {GATHER_FANIN_FOR_RECHUNK}); "
                "rechunking to the grid merges them in fewer, larger tasks"
            )
        return "gather-edges", f"misaligned blocks; only edge cells ({share:.0%} of the data) are gathered"
    if strategy == "direct":
        if not aligned:
            ax = next(ax for ax in axes if any(s.shared for s in ax.segments))
            raise StrategyError(
                f"{name!r}: strategy='direct' needs every dask block to cover whole grid cells, but along "
                f"{ax.name!r} dask chunks {summarize_chunks(ax.chunks)} (starting at {ax.start}) split grid "
                f"cells of {ax.grid}; use strategy='auto' or 'gather-edges', or rechunk the data to multiples "
                f"of {ax.grid}"
            )
        return strategy, "requested; every block covers whole grid cells"
    if strategy == "gather-edges":
        return strategy, "requested; blocks write owned cells, one task per shared cell assembles it"
    if strategy == "rechunk":
        return strategy, "requested; data is rechunked to the write grid first"
    if lock_backend is None:  # lock
        raise StrategyError(
            f"{name!r}: strategy='lock' cannot work here: {lock_problem or 'no lock backend available'}; "
            "use strategy='gather-edges' (no locks needed) instead"
        )
    return strategy, f"requested; shared cells written under {lock_backend} locks"


@dataclass(frozen=True)
class _Counts:
    """What a write's task graph holds: tasks, cells by kind, locks and the peak bytes of a task."""

    tasks: int
    cells: int
    owned_cells: int
    partial: int
    locks: int
    peak: int
    block_bytes: int
    cell_bytes: int


def _task_counts(chosen: str, axes: Sequence[AxisLayout], write_chunks: Sequence[Sequence[int]],
                 grid: Sequence[int], itemsize: int, *, aligned: bool) -> _Counts:
    """Tasks, cells, locks and peak memory per task of strategy ``chosen`` over ``axes``."""
    cells = _prod([ax.ncells for ax in axes])
    partial = cells - _prod([ax.full_cells for ax in axes])
    cell_bytes = _cell_bytes(grid, itemsize)
    block_bytes = _max_block_bytes(write_chunks, itemsize)
    # A writing task holds its input block, the cell being encoded and the encoded copy; a cell that
    # is only partly written is also read back first.
    per_cell = 2 * cell_bytes + (cell_bytes if partial else 0)
    locks = 0
    if chosen in ("direct", "rechunk"):
        tasks = _prod([len(c) for c in write_chunks])
        peak = block_bytes + per_cell
        if chosen == "rechunk" and not aligned:
            # dask's rechunk tasks concatenate pieces of old blocks into a new block.
            peak = max(peak, 2 * _max_block_bytes(write_chunks, itemsize))
    elif chosen == "gather-edges":
        tasks = _prod([len(ax.segments) for ax in axes])
        edge = _edge_task_bytes(axes, itemsize)
        peak = max(block_bytes + per_cell, 2 * edge + per_cell)
    else:  # lock
        tasks = _prod([len(c) for c in write_chunks])
        peak = block_bytes + per_cell
        # Shared cells and partly written cells (a neighbouring writer may own the rest) are locked.
        locks = cells - _prod([sum(s.ncells for s in ax.segments if not s.shared and s.full) for ax in axes])
    return _Counts(tasks=tasks, cells=cells, owned_cells=_prod([ax.owned_cells for ax in axes]), partial=partial,
                   locks=locks, peak=peak, block_bytes=block_bytes, cell_bytes=cell_bytes)


def plan_rectilinear(
    name: str,
    *,
    shape: Sequence[int],
    dims: Sequence[str],
    dtype: str,
    itemsize: int,
    dask_chunks: Sequence[Sequence[int]],
    shards: Sequence[int] | None = None,
    region_start: Sequence[int] | None = None,
    max_mem: int | None = None,
) -> VariablePlan:
    """Plan a write whose zarr grid is the dask chunks themselves (a rectilinear grid).

    Every dask block is exactly one grid cell, so each task writes one whole cell: no edges, no
    gathering, no locks, whatever the chunk sizes. Zero-sized blocks write nothing.
    """
    ndim = len(shape)
    blocks = tuple(tuple(int(c) for c in ch) for ch in dask_chunks)
    if shards:
        raise ChunkSpecError(f"{name!r}: a rectilinear grid cannot be sharded here; drop shards (or use a regular grid)")
    if len(blocks) != ndim:
        raise ChunkSpecError(f"{name!r}: data has {len(blocks)} dimensions, target has {ndim} {tuple(dims)}")
    start = tuple(int(s) for s in region_start) if region_start is not None else (0,) * ndim
    axes = []
    for d, L, s, ch in zip(dims, shape, start, blocks, strict=True):
        if s < 0 or s + sum(ch) > L:
            raise ChunkSpecError(f"{name!r}: write [{s}, {s + sum(ch)}) along {d!r} is outside the array length {L}")
        segs, pos, cell = [], s, 0
        for b, c in enumerate(ch):
            if c:
                segs.append(Segment(pos, pos + c, cell, cell + 1, b, b + 1, True))
                cell += 1
            pos += c
        axes.append(AxisLayout(str(d), int(L), s, tuple(ch), max(ch, default=1) or 1, segs))
    edges = tuple(tuple(c for c in ch if c) for ch in blocks)
    tasks = _prod([len(ax.segments) for ax in axes])
    total_bytes = _prod([sum(c) for c in blocks]) * itemsize
    block_bytes = _max_block_bytes(blocks, itemsize)
    peak = 3 * block_bytes  # the block, the cell being encoded and its encoded copy
    plan = VariablePlan(
        name=name, shape=tuple(int(n) for n in shape), dims=tuple(dims), dtype=dtype, itemsize=itemsize,
        region=tuple((ax.start, ax.stop) for ax in axes), dask_chunks=blocks,
        chunks=tuple(max(e, default=1) for e in edges), shards=None, strategy="rectilinear",
        reason="a rectilinear grid: each dask block is stored as one chunk of its own size", write_chunks=blocks,
        axes=axes, tasks=tasks, cells=tasks, cells_direct=tasks, bytes_total=total_bytes,
        peak_memory_per_task=peak, grid_edges=edges,
    )
    if max_mem is not None and peak > max_mem:
        raise MemoryBudgetError(
            f"{name!r}: a write task would hold about {format_bytes(peak)} (largest dask block, one rectilinear "
            f"chunk, {format_bytes(block_bytes)}) but max_mem is {format_bytes(max_mem)}; raise max_mem or use "
            "smaller dask chunks"
        )
    return plan


@dataclass
class WritePlan:
    """The plan of one write: a :class:`VariablePlan` per variable, plus what the write does.

    Plain data: ``print`` it, :meth:`to_dict`. ``plan.plot(variable=None, axes=(0, 1), ax=None)``
    draws one variable (needs matplotlib); it is :func:`parallelzarr.reports.plot.plot_write_plan`,
    installed on this class by :func:`parallelzarr.reports.plot.register` when ``parallelzarr`` is
    imported, so that this pure layer imports no drawing code.
    """

    target: str
    mode: str
    variables: dict[str, VariablePlan]
    append_dim: str | None = None
    max_mem: int | None = None
    notes: list[str] = field(default_factory=list)
    #: Digest of the write (plan and source graph); markers of a rerun with the same one are reused.
    fingerprint: str | None = None
    #: Write tasks already finished by an earlier, interrupted run of this write (skipped now).
    tasks_done: int = 0
    #: Write tasks this run executed (set once it finished).
    tasks_run: int | None = None
    #: Job-array parts: per part its write tasks and bytes (``plan_write(..., parts=N)``).
    parts: list[dict[str, Any]] | None = None
    #: ``(i, N)`` when this plan is the part ``i`` of ``N`` of a job array.
    part: tuple[int, int] | None = None
    #: Draws the plan; installed by :func:`parallelzarr.reports.plot.register` (see above).
    plot: ClassVar[Callable[..., Any]]

    @property
    def tasks(self) -> int:
        return sum(v.tasks for v in self.variables.values())

    @property
    def bytes_total(self) -> int:
        return sum(v.bytes_total for v in self.variables.values())

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-able data."""
        return {
            "target": self.target,
            "mode": self.mode,
            "append_dim": self.append_dim,
            "max_mem": self.max_mem,
            "tasks": self.tasks,
            "bytes_total": self.bytes_total,
            "notes": list(self.notes),
            "fingerprint": self.fingerprint,
            "tasks_done": self.tasks_done,
            "tasks_run": self.tasks_run,
            "parts": self.parts,
            "part": list(self.part) if self.part else None,
            "variables": {k: v.to_dict() for k, v in self.variables.items()},
        }

    def __str__(self) -> str:
        return format_plan(self)

    def _repr_html_(self) -> str:  # notebooks
        import html

        return f"<pre>{html.escape(format_plan(self))}</pre>"

def format_plan(plan: WritePlan) -> str:
    """Render a :class:`WritePlan` as a readable text table."""
    head = f"parallelzarr write plan -> {plan.target} (mode={plan.mode!r}"
    if plan.append_dim:
        head += f", append_dim={plan.append_dim!r}"
    head += f"): {len(plan.variables)} variable(s), {plan.tasks} write task(s), {format_bytes(plan.bytes_total)}"
    lines = [head]
    cols = [
        ("variable", lambda v: v.name),
        ("shape", lambda v: "x".join(map(str, v.shape)) or "()"),
        ("dask chunks", lambda v: " , ".join(summarize_chunks(c) for c in v.dask_chunks)),
        ("chunks", lambda v: " , ".join(summarize_chunks(e) for e in v.grid_edges) if v.grid_edges
         else "x".join(map(str, v.chunks))),
        ("shards", lambda v: "x".join(map(str, v.shards)) if v.shards else "-"),
        ("strategy", lambda v: v.strategy),
        ("tasks", lambda v: str(v.tasks)),
        ("cells", lambda v: str(v.cells)),
        ("direct", lambda v: str(v.cells_direct)),
        ("edge", lambda v: str(v.edge_cells)),
        ("partial", lambda v: str(v.partial_cells)),
        ("moved", lambda v: format_bytes(v.bytes_moved)),
        ("locks", lambda v: f"{v.locks} ({v.lock_backend})" if v.lock_backend else "0"),
        ("peak/task", lambda v: format_bytes(v.peak_memory_per_task)),
    ]
    rows = [[f(v) for _, f in cols] for v in plan.variables.values()]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, (h, _) in enumerate(cols)]
    lines.append("  ".join(h.ljust(w) for (h, _), w in zip(cols, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    lines.append("why:")
    for v in plan.variables.values():
        region = ", ".join(f"{d}={a}:{b}" for d, (a, b) in zip(v.dims, v.region, strict=True))
        lines.append(f"  {v.name}: {v.strategy}: {v.reason} [writes {region}]")
    if plan.part is not None:
        lines.append(f"part {plan.part[0]} of {plan.part[1]} (job array): writes only this part's grid cells")
    if plan.tasks_done:
        lines.append(f"resume: {plan.tasks_done} write task(s) already done by an interrupted run of this write "
                     f"(fingerprint {plan.fingerprint}); they are skipped")
    if plan.tasks_run is not None:
        lines.append(f"ran {plan.tasks_run} write task(s)")
    if plan.parts:
        lines.append(f"job array: {len(plan.parts)} part(s) split at grid-cell boundaries, balanced by bytes:")
        for p in plan.parts:
            lines.append(f"  part {p['part']}: {p['tasks']} task(s), {format_bytes(p['bytes'])}")
    for note in plan.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
