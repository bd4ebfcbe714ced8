"""Chunk and shard grid arithmetic (pure: no I/O, no dask).

The unit of a safe write is a *grid cell*: the shard when an array is sharded, else the chunk.
Along one axis, a write covers ``[start, stop)`` of an array of ``length`` elements and is split
into dask blocks. This module splits that axis into *segments*:

* an **owned** segment is a run of consecutive cells touched by exactly one block; that block can
  write them directly, no other task touches them;
* a **shared** segment is one cell touched by two or more blocks; writing it from each block would
  be a read-modify-write race.

An N-D write is the Cartesian product of its axes' segments. A product of owned segments belongs to
one block; a product containing a shared segment must be gathered or locked. Everything here works
on per-axis lists, so an N-D plan never materialises per-cell lists.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from parallelzarr.errors import ChunkSpecError


@dataclass(frozen=True)
class Segment:
    """A run of grid cells along one axis, with the dask blocks that touch it.

    Attributes
    ----------
    start, stop
        Array coordinates covered by the write within these cells.
    cell_start, cell_stop
        Grid cell indices (``cell_stop`` exclusive).
    block_start, block_stop
        Indices of the dask blocks touching these cells (``block_stop`` exclusive).
    full
        ``True`` when the write covers every element of these cells, so nothing stored is read.
    """

    start: int
    stop: int
    cell_start: int
    cell_stop: int
    block_start: int
    block_stop: int
    full: bool

    @property
    def shared(self) -> bool:
        """Whether two or more blocks write into this segment."""
        return self.block_stop - self.block_start > 1

    @property
    def ncells(self) -> int:
        return self.cell_stop - self.cell_start

    @property
    def size(self) -> int:
        return self.stop - self.start


def block_offsets(chunks: Sequence[int], start: int = 0) -> list[int]:
    """Return the boundaries ``[start, start + c0, ...]`` of dask blocks along one axis."""
    out = [start]
    for c in chunks:
        out.append(out[-1] + int(c))
    return out


def cell_range(start: int, stop: int, grid: int) -> tuple[int, int]:
    """Indices of the grid cells that ``[start, stop)`` touches (``stop`` exclusive)."""
    if stop <= start:
        return start // grid, start // grid
    return start // grid, -(-stop // grid)


def axis_segments(chunks: Sequence[int], grid: int, length: int, start: int = 0) -> list[Segment]:
    """Split one axis of a write into owned and shared segments.

    Parameters
    ----------
    chunks
        Dask chunk sizes along the axis (zero-sized blocks are allowed and touch nothing).
    grid
        Write-grid cell size (shard or chunk length) along the axis.
    length
        Full length of the target array along the axis (the last cell may be shorter).
    start
        Offset of the write in the target array (region start or append position).

    Notes
    -----
    Vectorised over cells with numpy, so an axis of ten million cells plans in well under a
    second; Python only loops over the resulting segments.
    """
    if grid <= 0:
        raise ChunkSpecError(f"grid cell size must be positive, got {grid}")
    bounds = np.asarray(block_offsets(chunks, start), dtype=np.int64)
    stop = int(bounds[-1])
    if stop > length:
        raise ChunkSpecError(f"write [{start}, {stop}) exceeds axis length {length}")
    c0, c1 = cell_range(start, stop, grid)
    if c1 <= c0:
        return []
    cells = np.arange(c0, c1, dtype=np.int64)
    cell_lo = cells * grid
    cell_hi = np.minimum(cell_lo + grid, length)
    lo = np.maximum(cell_lo, start)
    hi = np.minimum(cell_hi, stop)
    # first block ending after lo; one past the last block starting before hi
    b = np.searchsorted(bounds[1:], lo, side="right")
    e = np.searchsorted(bounds[:-1], hi, side="left")
    full = (lo == cell_lo) & (hi == cell_hi)
    shared = (e - b) > 1
    # A new segment starts at every shared cell, after one, and where the owning block or the
    # fullness changes; runs of owned cells of one block merge into one segment.
    starts = np.ones(len(cells), dtype=bool)
    starts[1:] = shared[1:] | shared[:-1] | (b[1:] != b[:-1]) | (full[1:] != full[:-1])
    first = np.flatnonzero(starts)
    last = np.append(first[1:], len(cells)) - 1
    return [
        Segment(int(lo[i]), int(hi[j]), int(cells[i]), int(cells[j]) + 1, int(b[i]), int(e[i]), bool(full[i]))
        for i, j in zip(first.tolist(), last.tolist(), strict=True)
    ]


def is_aligned(chunks: Sequence[int], grid: int, length: int, start: int = 0) -> bool:
    """Whether every dask block starts and ends on a grid boundary (or the array's end)."""
    for edge in block_offsets(chunks, start):
        if edge % grid and edge != length:
            return False
    return True


def is_uniform(chunks: Sequence[int]) -> bool:
    """Zarr's rule: all chunks equal except the last, which is no larger than the first."""
    chunks = [int(c) for c in chunks]
    if len(chunks) <= 1:
        return True
    return all(c == chunks[0] for c in chunks[:-1]) and chunks[-1] <= chunks[0]


def choose_grid(chunks: Sequence[int], length: int) -> int:
    """Pick a zarr chunk length for one axis from its dask chunks.

    Uniform dask chunks give their first size (xarray's rule). Otherwise the candidate among the
    distinct chunk sizes and their greatest common divisor that leaves the most block edges on grid
    boundaries wins, preferring larger cells on ties, so most blocks can still be written directly.
    """
    sizes = [int(c) for c in chunks if int(c) > 0]
    if not sizes:
        return max(1, length)
    if is_uniform(sizes):
        return max(1, sizes[0])
    counts = Counter(sizes)
    candidates = set(counts)
    g = math.gcd(*sizes)
    # A gcd far smaller than the blocks would make tiny chunks; only offer it when reasonable.
    if g >= max(counts.most_common(1)[0][0] // 8, 1):
        candidates.add(g)
    edges = block_offsets(sizes)[1:-1]

    def score(c: int) -> tuple[int, int]:
        return sum(1 for e in edges if e % c == 0), c

    return max(candidates, key=score)


def aligned_chunks(chunks: Sequence[int], grid: int, length: int, start: int = 0) -> tuple[int, ...]:
    """Dask chunks that keep roughly the original block size but start and end on grid edges.

    Used by the ``rechunk`` strategy. The first chunk runs to the first grid boundary after
    ``start``; the rest are whole multiples of ``grid`` near the most common original block size.
    """
    total = sum(int(c) for c in chunks)
    if total == 0:
        return tuple(int(c) for c in chunks)
    typical = Counter(int(c) for c in chunks if int(c) > 0).most_common(1)[0][0]
    step = max(1, round(typical / grid)) * grid
    out: list[int] = []
    pos, stop = start, start + total
    first_edge = min(-(-pos // grid) * grid, stop)
    if first_edge > pos:
        out.append(first_edge - pos)
        pos = first_edge
    while pos < stop:
        nxt = min(pos + step, stop)
        out.append(nxt - pos)
        pos = nxt
    return tuple(out)


def summarize_chunks(chunks: Sequence[int]) -> str:
    """Short text for a chunk tuple: ``75 x 26 + 50`` rather than 27 numbers."""
    chunks = [int(c) for c in chunks]
    if not chunks:
        return "()"
    parts: list[str] = []
    i = 0
    while i < len(chunks):
        j = i
        while j + 1 < len(chunks) and chunks[j + 1] == chunks[i]:
            j += 1
        n = j - i + 1
        parts.append(f"{chunks[i]}x{n}" if n > 1 else f"{chunks[i]}")
        i = j + 1
    if len(parts) > 6:
        parts = parts[:3] + ["..."] + parts[-2:]
    return "+".join(parts)


def split_region(
    region: Sequence[slice], grid: Sequence[int], max_cells: int
) -> list[tuple[slice, ...]]:
    """Split ``region`` into grid-aligned pieces touching at most ``max_cells`` cells each.

    Pieces take whole cells on trailing axes and as many cells of the leading split axis
    as fit, so piece edges fall on grid boundaries (whole-chunk writes stay whole).
    """
    cuts = []
    for sl, g in zip(region, grid, strict=True):
        edges = [sl.start, *range((sl.start // g + 1) * g, sl.stop, g), sl.stop]
        cuts.append(edges)
    counts = [len(c) - 1 for c in cuts]
    if math.prod(counts) <= max_cells:
        return [tuple(region)]
    ndim = len(counts)
    d = next(i for i in range(ndim) if math.prod(counts[i + 1:]) <= max_cells)
    step = max(1, max_cells // math.prod(counts[d + 1:]))
    pieces = []
    for lead in itertools.product(*(range(c) for c in counts[:d])):
        for j in range(0, counts[d], step):
            sel = [slice(cuts[i][k], cuts[i][k + 1]) for i, k in enumerate(lead)]
            sel.append(slice(cuts[d][j], cuts[d][min(j + step, counts[d])]))
            sel.extend(region[d + 1:])
            pieces.append(tuple(sel))
    return pieces
