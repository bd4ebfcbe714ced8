"""Dask graphs that carry out a :class:`~parallelzarr.planning.write.VariablePlan`.

Every task is idempotent (it writes the same values to the same cells when re-run), so distributed
may retry tasks on lost workers. No two tasks of one graph write the same grid cell unless they hold
that cell's lock.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ..faults import count_write
from ..locks import LockSpec
from ..planning.grid import Segment, block_offsets
from ..planning.write import VariablePlan

Box = tuple[slice, ...]


def write_box(target: Any, box: Box, value: np.ndarray) -> int:
    """Write ``value`` into ``target[box]`` and return the number of bytes written."""
    target[box] = value
    count_write()
    return int(np.asarray(value).nbytes)


def assemble_and_write(target: Any, box: Box, dtype: str, pieces: Sequence[Sequence[Any]]) -> int:
    """Assemble the pieces of shared grid cells into one buffer and write it once."""
    shape = tuple(s.stop - s.start for s in box)
    buf = np.empty(shape, dtype=dtype)
    for where, piece in pieces:
        buf[where] = piece
    target[box] = buf
    count_write()
    return int(buf.nbytes)


def write_with_locks(target: Any, block: np.ndarray, parts: Sequence[tuple[Box, Box, list[str]]], locks: LockSpec) -> int:
    """Write a block: parts it owns outright directly, parts of shared or partial cells under their locks."""
    nbytes = 0
    for local, box, lock_names in parts:
        value = block[local]
        if not lock_names:
            target[box] = value
        else:
            with locks.hold_all(lock_names):
                target[box] = value
        count_write()
        nbytes += int(value.nbytes)
    return nbytes


def total(*counts: int) -> int:
    """Sum byte counts of the write tasks (the final task of a write graph)."""
    return int(sum(counts))


def _local(seg: Segment, offsets: Sequence[int], b: int) -> slice:
    """Slice of block ``b`` that falls in ``seg``."""
    lo = max(seg.start, offsets[b])
    hi = min(seg.stop, offsets[b + 1])
    return slice(lo - offsets[b], hi - offsets[b])


def _segment_products(plan: VariablePlan) -> Iterator[tuple[tuple[int, ...], tuple[Segment, ...]]]:
    per_axis = [list(enumerate(ax.segments)) for ax in plan.axes]
    for combo in itertools.product(*per_axis):
        yield tuple(i for i, _ in combo), tuple(s for _, s in combo)


def build_write_graph(plan: VariablePlan, data: da.Array, target: Any, locks: LockSpec | None = None) -> tuple[HighLevelGraph, str]:
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

    Returns
    -------
    graph, key
        The graph and the key of its final task (the number of bytes written).
    """
    if tuple(tuple(c) for c in data.chunks) != plan.write_chunks:
        raise ValueError(f"{plan.name!r}: data chunks {data.chunks} differ from the plan's {plan.write_chunks}")
    token = tokenize(plan.name, data.name, plan.strategy, plan.region, id(target), str(target))
    name = f"pz-write-{plan.name}-{token}"
    offsets = [block_offsets(ax.chunks, ax.start) for ax in plan.axes]
    dsk: dict[Any, Any] = {}
    outputs: list[Any] = []

    if plan.strategy == "lock":
        if locks is None:
            raise ValueError("the lock strategy needs a lock backend")
        per_block: dict[tuple[int, ...], list[tuple[Box, Box, list[str]]]] = {}
        for _, segs in _segment_products(plan):
            # Cells shared by blocks of this write, and cells only partly written (a neighbouring
            # writer, e.g. another process's region, may write the rest) are locked cell by cell,
            # so every writer of a cell names the same lock whatever its own segments are.
            lock_names: list[str] = []
            if any(s.shared or not s.full for s in segs):
                cells = itertools.product(*(range(s.cell_start, s.cell_stop) for s in segs))
                lock_names = [f"{plan.name}/" + ".".join(map(str, c)) for c in cells]
            for bidx in itertools.product(*(range(s.block_start, s.block_stop) for s in segs)):
                local = tuple(_local(s, offsets[a], b) for a, (s, b) in enumerate(zip(segs, bidx, strict=True)))
                if any(sl.stop <= sl.start for sl in local):
                    continue
                box = tuple(
                    slice(offsets[a][b] + sl.start, offsets[a][b] + sl.stop)
                    for a, (b, sl) in enumerate(zip(bidx, local, strict=True))
                )
                per_block.setdefault(bidx, []).append((local, box, lock_names))
        for bidx, parts in per_block.items():
            key = (name, *bidx)
            dsk[key] = (write_with_locks, target, (data.name, *bidx), parts, locks)
            outputs.append(key)
    else:
        piece_name = f"pz-piece-{plan.name}-{token}"
        for seg_idx, segs in _segment_products(plan):
            box = tuple(slice(s.start, s.stop) for s in segs)
            key = (name, *seg_idx)
            blocks = list(itertools.product(*(range(s.block_start, s.block_stop) for s in segs)))
            if len(blocks) == 1:
                bidx = blocks[0]
                local = tuple(_local(s, offsets[a], b) for a, (s, b) in enumerate(zip(segs, bidx, strict=True)))
                dsk[key] = (write_box, target, box, (_getitem, (data.name, *bidx), local))
            else:
                pieces = []
                for bidx in blocks:
                    local = tuple(_local(s, offsets[a], b) for a, (s, b) in enumerate(zip(segs, bidx, strict=True)))
                    if any(sl.stop <= sl.start for sl in local):
                        continue
                    where = tuple(
                        slice(offsets[a][b] + sl.start - s.start, offsets[a][b] + sl.stop - s.start)
                        for a, (s, b, sl) in enumerate(zip(segs, bidx, local, strict=True))
                    )
                    pkey = (piece_name, *seg_idx, *bidx)
                    # A separate slicing task keeps only the edge slab, not the whole block, in transit.
                    dsk[pkey] = (_getitem, (data.name, *bidx), local)
                    pieces.append((where, pkey))
                # Lists, not tuples: dask substitutes keys inside lists.
                dsk[key] = (assemble_and_write, target, box, plan.dtype, [[w, k] for w, k in pieces])
            outputs.append(key)

    final = f"pz-done-{plan.name}-{token}"
    dsk[final] = (total, *outputs)
    graph = HighLevelGraph.from_collections(final, dsk, dependencies=[data])
    return graph, final


def _getitem(block: np.ndarray, local: Box) -> np.ndarray:
    return block[local]
