"""Unit tests of the pure grid arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parallelzarr.errors import ChunkSpecError
from parallelzarr.plan.grid import (
    aligned_chunks,
    axis_segments,
    block_offsets,
    choose_grid,
    is_aligned,
    is_uniform,
    summarize_chunks,
)


def test_segments_75_over_50():
    segs = axis_segments([75, 75, 50], grid=50, length=200)
    # cells: [0,50) owned by block 0; [50,100) shared by 0,1; [100,150) owned by 1; [150,200) owned by 2
    assert [(s.cell_start, s.cell_stop, s.block_start, s.block_stop) for s in segs] == [
        (0, 1, 0, 1),
        (1, 2, 0, 2),
        (2, 3, 1, 2),
        (3, 4, 2, 3),
    ]
    assert [s.shared for s in segs] == [False, True, False, False]
    assert all(s.full for s in segs)


def test_segments_region_mid_cell_is_partial():
    segs = axis_segments([30], grid=50, length=200, start=40)
    # one block owns both partly covered cells: one segment, read-modify-written without a race
    assert [(s.start, s.stop, s.cell_start, s.cell_stop, s.full) for s in segs] == [(40, 70, 0, 2, False)]


def test_segments_out_of_bounds():
    with pytest.raises(ChunkSpecError, match="exceeds axis length"):
        axis_segments([60], grid=10, length=50)


def test_uniform_rule():
    assert is_uniform([10, 10, 5])
    assert not is_uniform([10, 5, 10])
    assert not is_uniform([10, 10, 12])


def test_choose_grid_prefers_alignment():
    assert choose_grid([10, 10, 7], 27) == 10
    assert choose_grid([20, 40, 20, 40], 120) == 20


def test_aligned_chunks_from_offset():
    assert aligned_chunks([75, 75], grid=50, length=200, start=30) == (20, 100, 30)
    inner_edges = block_offsets(aligned_chunks([75, 75], 50, 200, 30), 30)[1:-1]
    assert all(e % 50 == 0 for e in inner_edges)


def test_summarize():
    assert summarize_chunks([75] * 13 + [25]) == "75x13+25"


@given(
    chunks=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    grid=st.integers(1, 30),
    pad=st.integers(0, 30),
    start=st.integers(0, 30),
)
def test_segments_partition_the_write(chunks, grid, pad, start):
    total = sum(chunks)
    length = start + total + pad
    segs = axis_segments(chunks, grid, length, start)
    # segments tile [start, start + total) without gaps or overlaps
    pos = start
    for s in segs:
        assert s.start == pos and s.stop > s.start
        pos = s.stop
    assert pos == start + total
    # a segment is shared iff more than one non-empty block intersects it
    bounds = [start]
    for c in chunks:
        bounds.append(bounds[-1] + c)
    for s in segs:
        touching = {
            b for b in range(len(chunks)) if chunks[b] and bounds[b] < s.stop and bounds[b + 1] > s.start
        }
        if not s.shared:
            assert len(touching) == 1
        assert s.shared == (len(touching) > 1) or any(chunks[b] == 0 for b in range(s.block_start, s.block_stop))
    # aligned writes never share a cell
    if is_aligned(chunks, grid, length, start):
        assert not any(s.shared for s in segs)


def _segments_by_loop(chunks, grid, length, start):
    """The plain per-cell loop the vectorised planner must agree with (test oracle)."""
    bounds = block_offsets(chunks, start)
    stop = bounds[-1]
    out = []
    c0, c1 = (start // grid, -(-stop // grid)) if stop > start else (0, 0)
    for cell in range(c0, c1):
        lo, hi = max(cell * grid, start), min((cell + 1) * grid, length, stop)
        blocks = [k for k in range(len(chunks)) if bounds[k + 1] > lo and bounds[k] < hi]
        bs = min(k for k in range(len(chunks)) if bounds[k + 1] > lo)
        be = max(blocks) + 1 if blocks else bs
        full = lo == cell * grid and hi == min((cell + 1) * grid, length)
        prev = out[-1] if out else None
        if prev and be - bs == 1 and prev[5] - prev[4] == 1 and prev[4] == bs and prev[6] == full:
            out[-1] = (prev[0], hi, prev[2], cell + 1, bs, be, full)
        else:
            out.append((lo, hi, cell, cell + 1, bs, be, full))
    return out


@given(
    chunks=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    grid=st.integers(1, 30),
    pad=st.integers(0, 30),
    start=st.integers(0, 30),
)
def test_vectorised_segments_match_the_loop(chunks, grid, pad, start):
    length = start + sum(chunks) + pad
    got = [(s.start, s.stop, s.cell_start, s.cell_stop, s.block_start, s.block_stop, s.full)
           for s in axis_segments(chunks, grid, length, start)]
    assert got == _segments_by_loop(chunks, grid, length, start)


def test_ten_million_cells_one_segment_per_block():
    # 10 M cells of 1 element under 66,667 blocks: one owned segment per block, no per-cell output
    segs = axis_segments((150,) * 66_666 + (100,), 1, 10_000_000)
    assert len(segs) == 66_667 and not any(s.shared for s in segs)
    assert segs[-1].stop == 10_000_000 and segs[-1].ncells == 100


def test_rectilinear_plan_one_task_per_block():
    """strategy='rectilinear': each non-empty dask block is one whole grid cell, written by one task."""
    import pytest

    from parallelzarr.errors import ChunkSpecError
    from parallelzarr.plan.write import plan_variable

    p = plan_variable("v", shape=(72, 6), dims=("t", "x"), dtype="f4", itemsize=4,
                      dask_chunks=((24, 0, 31, 17), (4, 2)), chunks=(24, 6), strategy="rectilinear")
    assert p.strategy == "rectilinear" and p.grid_edges == ((24, 31, 17), (4, 2))
    assert p.tasks == p.cells == p.cells_direct == 6 and p.edge_cells == p.partial_cells == p.bytes_moved == 0
    assert [(s.start, s.stop, s.block_start) for s in p.axes[0].segments] == [(0, 24, 0), (24, 55, 2), (55, 72, 3)]
    assert all(s.full and not s.shared for ax in p.axes for s in ax.segments)
    with pytest.raises(ChunkSpecError, match="sharded"):
        plan_variable("v", shape=(72,), dims=("t",), dtype="f4", itemsize=4, dask_chunks=((24, 48),), chunks=(24,),
                      shards=(48,), strategy="rectilinear")
