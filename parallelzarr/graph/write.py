"""Dask graphs that carry out a :class:`~parallelzarr.plan.write.VariablePlan`.

Every task is idempotent (it writes the same values to the same cells when re-run), so distributed
may retry tasks on lost workers. No two tasks of one graph write the same grid cell unless they hold
that cell's lock.

The layers are lazy (:mod:`parallelzarr.graph.lazy`): a task is made from its key, using per-axis
segment tables, only when dask asks for it at submission. Building the graph is O(number of
segments per axis), whatever the number of chunks.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask._task_spec import List, Task, TaskRef
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from parallelzarr.graph.lazy import (
    GridKeys,
    KeySpace,
    LazyLayer,
    as_hlg,
    chain_sum_layers,
    data_layer,
    stack_layers,
)
from parallelzarr.hooks import chunk_written
from parallelzarr.plan.grid import Segment, block_offsets
from parallelzarr.plan.write import VariablePlan
from parallelzarr.store.chunk_io import write_parts, write_region
from parallelzarr.store.locks import LockSpec
from parallelzarr.store.zarr_compat import FAST_KINDS

Box = tuple[slice, ...]


def _store_box(target: Any, box: Box, value: Any) -> None:
    """``target[box] = value``; for a zarr array, encoded and stored from this (worker) thread."""
    if isinstance(target, zarr.Array):
        write_region(target, box, value, window=int(zarr.config.get("async.concurrency")))
    else:
        target[box] = value


def write_box(target: Any, box: Box, value: np.ndarray) -> int:
    """Write ``value`` into ``target[box]`` and return the number of bytes written."""
    _store_box(target, box, value)
    chunk_written()
    return int(np.asarray(value).nbytes)


def write_part(target: Any, box: Box, block: np.ndarray, local: Box,
               lock_names: Sequence[str] = (), locks: LockSpec | None = None) -> int:
    """Write ``block[local]`` (the part of a dask block inside one segment) into ``target[box]``,
    holding ``lock_names`` (partly covered cells of a region write) while it writes."""
    with _holding(locks, lock_names):
        return write_box(target, box, block[local])


def assemble_and_write(target: Any, box: Box, dtype: str, wheres: Sequence[Box], pieces: Sequence[np.ndarray],
                       lock_names: Sequence[str] = (), locks: LockSpec | None = None) -> int:
    """Assemble the pieces of shared grid cells and write them once (under ``lock_names``).

    A zarr target assembles each stored object straight from the pieces (one copy per object);
    other targets get one box-sized buffer.
    """
    shape = tuple(s.stop - s.start for s in box)
    with _holding(locks, lock_names):
        if isinstance(target, zarr.Array) and np.dtype(dtype).kind in FAST_KINDS:
            parts = [(where, np.asarray(piece)) for where, piece in zip(wheres, pieces, strict=True)]
            write_parts(target, box, parts, window=int(zarr.config.get("async.concurrency")))
        else:
            buf = np.empty(shape, dtype=dtype)
            for where, piece in zip(wheres, pieces, strict=True):
                buf[where] = piece
            target[box] = buf
        chunk_written()
    return int(math.prod(shape) * np.dtype(dtype).itemsize)


def _holding(locks: LockSpec | None, names: Sequence[str]) -> Any:
    return locks.hold_all(list(names)) if locks is not None and names else contextlib.nullcontext()


def cell_lock_names(plan_name: str, segs: Sequence[Segment]) -> list[str]:
    """Lock names of every grid cell in a product of segments: the same for every writer of a cell."""
    cells = itertools.product(*(range(s.cell_start, s.cell_stop) for s in segs))
    return [f"{plan_name}/" + ".".join(map(str, c)) for c in cells]


def write_with_locks(target: Any, block: np.ndarray, parts: Sequence[tuple[Box, Box, list[str]]], locks: LockSpec) -> int:
    """Write a block: parts it owns outright directly, parts of shared or partial cells under their locks."""
    nbytes = 0
    for local, box, lock_names in parts:
        value = block[local]
        if not lock_names:
            _store_box(target, box, value)
        else:
            with locks.hold_all(lock_names):
                _store_box(target, box, value)
        chunk_written()
        nbytes += int(value.nbytes)
    return nbytes


def total(*counts: int) -> int:
    """Sum byte counts of the write tasks (the final task of a write graph)."""
    return int(sum(counts))


def _getitem(block: np.ndarray, local: Box) -> np.ndarray:
    # A copy, not a view: a view would pin the whole block in memory until the edge is written.
    return np.array(block[local], copy=True)


@dataclass(frozen=True)
class _Axes:
    """Per-axis tables the task makers index into (O(segments + blocks) per axis)."""

    segments: tuple[tuple[Segment, ...], ...]
    offsets: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, plan: VariablePlan) -> _Axes:
        return cls(
            tuple(tuple(ax.segments) for ax in plan.axes),
            tuple(tuple(block_offsets(ax.chunks, ax.start)) for ax in plan.axes),
        )

    def segs(self, seg_idx: Sequence[int]) -> tuple[Segment, ...]:
        return tuple(self.segments[a][i] for a, i in enumerate(seg_idx))

    def local(self, segs: Sequence[Segment], bidx: Sequence[int]) -> Box:
        """Slice of block ``bidx`` that falls in the product of ``segs``."""
        out = []
        for a, (s, b) in enumerate(zip(segs, bidx, strict=True)):
            off = self.offsets[a]
            out.append(slice(max(s.start, off[b]) - off[b], min(s.stop, off[b + 1]) - off[b]))
        return tuple(out)

    def box(self, local: Box, bidx: Sequence[int]) -> Box:
        """Array coordinates of ``local`` (a slice of block ``bidx``)."""
        return tuple(slice(self.offsets[a][b] + sl.start, self.offsets[a][b] + sl.stop) for a, (b, sl) in enumerate(zip(bidx, local, strict=True)))


def _blocks(segs: Sequence[Segment]) -> Iterator[tuple[int, ...]]:
    return itertools.product(*(range(s.block_start, s.block_stop) for s in segs))


def _nblocks(s: Segment) -> int:
    return s.block_stop - s.block_start


class _PieceKeys(KeySpace):
    """Keys ``(name, *segment_index, *block_index)`` of the edge slabs of shared segment products."""

    def __init__(self, name: str, axes: _Axes):
        self.name = name
        self.axes = axes

    def __len__(self) -> int:
        # Blocks over all segment products, less the products written by a single block.
        every = math.prod(sum(_nblocks(s) for s in segs) for segs in self.axes.segments)
        single = math.prod(sum(1 for s in segs if _nblocks(s) == 1) for segs in self.axes.segments)
        return every - single

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for seg_idx in itertools.product(*(range(len(s)) for s in self.axes.segments)):
            segs = self.axes.segs(seg_idx)
            if any(_nblocks(s) > 1 for s in segs):
                for bidx in _blocks(segs):
                    yield (self.name, *seg_idx, *bidx)

    def __contains__(self, key: object) -> bool:
        nd = len(self.axes.segments)
        if not (isinstance(key, tuple) and len(key) == 1 + 2 * nd and key[0] == self.name):
            return False
        seg_idx, bidx = key[1 : 1 + nd], key[1 + nd :]
        if not all(isinstance(i, int) and 0 <= i < len(s) for i, s in zip(seg_idx, self.axes.segments, strict=True)):
            return False
        segs = self.axes.segs(seg_idx)
        return any(_nblocks(s) > 1 for s in segs) and all(s.block_start <= b < s.block_stop for s, b in zip(segs, bidx, strict=True))


def build_write_graph(plan: VariablePlan, data: da.Array, target: Any, locks: LockSpec | None = None,
                      select: Any = None) -> tuple[HighLevelGraph, str]:
    """Build the graph writing ``data`` into ``target`` following ``plan``.

    Parameters
    ----------
    plan
        The variable's plan. For the ``rechunk`` strategy ``data`` must already have
        ``plan.write_chunks``.
    data
        The dask array to write (encoded values, the target's dtype).
    target
        A picklable object supporting ``target[box] = value`` (a ``zarr.Array``).
    locks
        Lock backend for the ``lock`` strategy.
    select
        A :class:`parallelzarr.store.markers.Selection`: run only some write tasks (one part of a job
        array), skip those already done and mark each one done after it writes (resume).

    Returns
    -------
    graph, key
        The graph and the key of its final task (the number of bytes written).
    """
    if tuple(tuple(c) for c in data.chunks) != plan.write_chunks:
        raise ValueError(f"{plan.name!r}: data chunks {data.chunks} differ from the plan's {plan.write_chunks}")
    if (plan.strategy == "lock" or plan.lock_backend) and locks is None:
        raise ValueError(f"{plan.name!r}: the plan locks cells ({plan.lock_backend}) but no lock backend was given")
    token = tokenize(plan.name, data.name, plan.strategy, plan.region, id(target), str(target))
    name = f"pz-write-{plan.name}-{token}"
    target_key = f"pz-target-{plan.name}-{token}"
    locks_key = f"pz-locks-{plan.name}-{token}"
    axes = _Axes.of(plan)
    data_layers = set(data.__dask_layers__())
    layers: list[tuple[str, Any, set[str]]] = [(target_key, data_layer(target_key, target), set())]
    # Region writes lock their partly covered cells whatever the strategy (see plan_variable).
    if plan.strategy == "lock" or plan.lock_backend is not None:
        layers.append((locks_key, data_layer(locks_key, locks), set()))
    make: Any
    if plan.strategy == "lock":
        writes = GridKeys(name, data.numblocks)
        make = _LockedBlockWrite(axes, _segments_per_block(plan), plan.name, data.name, target_key, locks_key)
        deps = data_layers | {target_key, locks_key}
    else:
        piece_name = f"pz-piece-{plan.name}-{token}"
        pieces = _PieceKeys(piece_name, axes)
        writes = GridKeys(name, [len(s) for s in axes.segments])
        make = _CellWrite(axes, plan.name, plan.dtype, data.name, target_key, piece_name,
                          locks_key if plan.lock_backend is not None else None)
        deps = data_layers | {target_key}
        if len(pieces):
            layers.append((piece_name, LazyLayer(pieces, _Piece(axes, data.name)), set(data_layers)))
            deps.add(piece_name)
        if plan.lock_backend is not None:
            deps.add(locks_key)
    if select is not None:  # parts and resume (parallelzarr.store.markers)
        writes, make = select.restrict(writes, make)
    layers.append((name, LazyLayer(writes, make), deps))
    sums, final = chain_sum_layers(f"pz-done-{plan.name}-{token}", writes)
    below = name
    for layer_name, layer in sums:
        layers.append((layer_name, layer, {below}))
        below = layer_name
    return stack_layers(as_hlg(data), layers), final


@dataclass(frozen=True)
class _LockedBlockWrite:
    """The task of the ``lock`` strategy writing dask block ``key[1:]``: each of its cells under its lock."""

    axes: _Axes
    seg_range: list[list[range]]
    plan_name: str
    data_name: str
    target_key: str
    locks_key: str

    def __call__(self, key: Any) -> Task:
        bidx = key[1:]
        parts = []
        for seg_idx in itertools.product(*(self.seg_range[a][b] for a, b in enumerate(bidx))):
            segs = self.axes.segs(seg_idx)
            local = self.axes.local(segs, bidx)
            if any(sl.stop <= sl.start for sl in local):
                continue
            # Cells shared by blocks of this write, and cells only partly written (a neighbouring
            # writer, e.g. another process's region, may write the rest) are locked cell by cell,
            # so every writer of a cell names the same lock whatever its own segments are.
            lock_names: list[str] = []
            if any(s.shared or not s.full for s in segs):
                lock_names = cell_lock_names(self.plan_name, segs)
            parts.append((local, self.axes.box(local, bidx), lock_names))
        return Task(key, write_with_locks, TaskRef(self.target_key), TaskRef((self.data_name, *bidx)), parts,
                    TaskRef(self.locks_key))


@dataclass(frozen=True)
class _Piece:
    """The task slicing one block's share of a cell: only the edge slab, not the block, stays in transit."""

    axes: _Axes
    data_name: str

    def __call__(self, key: Any) -> Task:
        nd = len(self.axes.segments)
        seg_idx, bidx = key[1 : 1 + nd], key[1 + nd :]
        return Task(key, _getitem, TaskRef((self.data_name, *bidx)), self.axes.local(self.axes.segs(seg_idx), bidx))


@dataclass(frozen=True)
class _CellWrite:
    """The task writing grid segment ``key[1:]``: from its one block, or assembled from its pieces."""

    axes: _Axes
    plan_name: str
    dtype: str
    data_name: str
    target_key: str
    piece_name: str
    #: Set for region writes: their partly covered cells are written under the cell's lock.
    locks_key: str | None

    def __call__(self, key: Any) -> Task:
        seg_idx = key[1:]
        segs = self.axes.segs(seg_idx)
        box = tuple(slice(s.start, s.stop) for s in segs)
        blocks = list(_blocks(segs))
        extra: tuple[Any, ...] = ()
        if self.locks_key is not None and any(not s.full for s in segs):
            extra = (cell_lock_names(self.plan_name, segs), TaskRef(self.locks_key))
        target = TaskRef(self.target_key)
        if len(blocks) == 1:
            bidx = blocks[0]
            return Task(key, write_part, target, box, TaskRef((self.data_name, *bidx)), self.axes.local(segs, bidx),
                        *extra)
        wheres = []
        refs = []
        for bidx in blocks:
            local = self.axes.local(segs, bidx)
            wheres.append(tuple(slice(b.start - s.start, b.stop - s.start)
                                for s, b in zip(segs, self.axes.box(local, bidx), strict=True)))
            refs.append(TaskRef((self.piece_name, *seg_idx, *bidx)))
        return Task(key, assemble_and_write, target, box, self.dtype, wheres, List(*refs), *extra)


def _segments_per_block(plan: VariablePlan) -> list[list[range]]:
    """Per axis, per dask block: the range of segment indices the block touches."""
    out = []
    for ax in plan.axes:
        nblocks = len(ax.chunks)
        lo = [nblocks] * nblocks
        hi = [-1] * nblocks
        for i, s in enumerate(ax.segments):
            for b in range(s.block_start, s.block_stop):
                lo[b] = min(lo[b], i)
                hi[b] = max(hi[b], i)
        out.append([range(f, la + 1) if la >= 0 else range(0) for f, la in zip(lo, hi, strict=True)])
    return out
