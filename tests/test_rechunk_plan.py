"""The pure rechunk planner: stages, alignment, bytes, memory and refusals."""

from __future__ import annotations

import json
import math
import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parallelzarr.errors import ChunkSpecError, MemoryBudgetError
from parallelzarr.plan.rechunk import (
    ArraySpec,
    MemoryModel,
    RechunkPlan,
    normalize_chunks,
    plan_array,
    plan_rechunk,
    split_region,
)


def _aligned(block: tuple[int, ...], grid: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    return all(b % g == 0 or b >= n for b, g, n in zip(block, grid, shape, strict=True))


def test_era5_plan_is_fast_and_bounded() -> None:
    spec = ArraySpec("t", (350640, 137, 721, 1440), "float32", 4, (1, 137, 721, 1440), (8760, 1, 30, 30))
    start = time.perf_counter()
    plan = plan_rechunk([spec], "8GB", threads_per_worker=4)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    a = plan.arrays[0]
    nbytes = 350640 * 137 * 721 * 1440 * 4
    assert a.strategy == "two-pass"
    assert all(s.n_tasks <= 200_000 for s in a.stages)
    assert plan.bytes_written == 2 * nbytes
    assert plan.bytes_read == 2 * nbytes  # every chunk read once per pass
    assert plan.task_memory <= 8e9
    assert plan.worker_memory == 4 * plan.task_memory
    json.dumps(plan.to_dict())
    assert "intermediate->target" in str(plan)


def test_one_pass_when_block_fits() -> None:
    a = plan_array((500, 1000, 1000), 4, (10, 500, 500), (500, 25, 25), "1GB")
    assert a.strategy == "one-pass" and a.passes == 1
    (s,) = a.stages
    assert s.read_amplification == 1.0
    assert s.bytes_read == s.bytes_written == 500 * 1000 * 1000 * 4
    assert _aligned(s.block, (10, 500, 500), a.shape) and _aligned(s.block, (500, 25, 25), a.shape)
    assert s.task_memory <= 1e9


def test_two_pass_when_block_does_not_fit() -> None:
    a = plan_array((500, 1000, 1000), 4, (10, 500, 500), (500, 25, 25), "256MB")
    assert a.strategy == "two-pass"
    s0, s1 = a.stages
    assert s0.write_grid == s1.read_grid == a.intermediate_chunks
    assert s0.read_amplification == s1.read_amplification == 1.0
    assert max(s0.task_memory, s1.task_memory) <= 256e6


def test_amplified_one_pass_reports_amplification() -> None:
    # Without a budget for whole source chunks + target chunks, a block of whole target
    # chunks rereads the source chunks it shares with its neighbours.
    model = MemoryModel(overhead=0)
    a = plan_array((100, 100), 4, (10, 10), (5, 20), 1600, min_tasks=1, model=model)
    (s,) = a.stages
    assert a.strategy == "one-pass-amplified"
    assert s.read_amplification == 2.0  # each source chunk is split between two blocks
    assert s.chunks_read == 2 * 100
    assert "amplification" in s.note and "(2x)" in a.reason


def test_copy_when_chunks_equal() -> None:
    a = plan_array((10, 10), 8, (5, 5), (5, 5), "4MB")
    assert a.strategy == "copy"
    assert a.stages[0].read_amplification == 1.0


def test_refuses_impossible_budget_with_smallest_budget() -> None:
    with pytest.raises(MemoryBudgetError) as err:
        plan_array((500, 1000, 1000), 4, (10, 500, 500), (100, 100, 100), "10MB", name="temp")
    msg = str(err.value)
    assert "temp" in msg and "(10, 500, 500)" in msg and "max_mem" in msg
    smallest = int(re.search(r"smallest budget that works is .*?\((\d+) bytes\)", msg).group(1))
    assert smallest > 10_000_000
    plan_array((500, 1000, 1000), 4, (10, 500, 500), (100, 100, 100), smallest)


def test_task_count_bounded_by_batching() -> None:
    a = plan_array((10**6, 1000), 4, (10, 10), (10, 10), "1GB", max_tasks=1000)
    assert a.stages[0].n_tasks <= 1000


def test_normalize_chunks() -> None:
    assert normalize_chunks((-1, None, 5), (10, 20, 30)) == (10, 20, 5)
    assert normalize_chunks({"time": -1, "lat": 25}, (100, 50, 40), ("time", "lat", "lon"),
                            default=(1, 50, 40)) == (100, 25, 40)
    assert normalize_chunks({1: 7}, (10, 20), default=(2, 2)) == (2, 7)
    assert normalize_chunks((100,), (10,)) == (10,)
    with pytest.raises(ChunkSpecError, match="2 entries"):
        normalize_chunks((1, 2), (10,))
    with pytest.raises(ChunkSpecError, match="positive"):
        normalize_chunks((0,), (10,))


def test_printed_plan_is_a_table() -> None:
    plan = plan_rechunk([ArraySpec("x", (100, 100), "float32", 4, (10, 100), (100, 10))], "4MB",
                        threads_per_worker=2)
    text = str(plan)
    assert "tasks" in text and "mem/task" in text and "x" in text and "why:" in text
    assert isinstance(plan, RechunkPlan)
    d = plan.to_dict()
    assert json.loads(json.dumps(d))["arrays"][0]["name"] == "x"
    assert plan.fingerprint() == plan_rechunk(
        [ArraySpec("x", (100, 100), "float32", 4, (10, 100), (100, 10))], "4MB", threads_per_worker=8
    ).fingerprint()


@st.composite
def _cases(draw: st.DrawFn) -> tuple:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 60)) for _ in range(ndim))
    src = tuple(draw(st.integers(1, n + 3)) for n in shape)
    tgt = tuple(draw(st.integers(1, n + 3)) for n in shape)
    itemsize = draw(st.sampled_from([1, 4, 8]))
    budget = draw(st.integers(2**20 + 64, 2**20 + 200_000))
    return shape, itemsize, src, tgt, budget


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_plan_properties(case: tuple) -> None:
    shape, itemsize, src, tgt, budget = case
    src = tuple(min(c, n) for c, n in zip(src, shape, strict=True))
    tgt = tuple(min(c, n) for c, n in zip(tgt, shape, strict=True))
    try:
        a = plan_array(shape, itemsize, src, tgt, budget, min_tasks=1)
    except MemoryBudgetError as err:
        smallest = int(re.search(r"\((\d+) bytes\); raise", str(err)).group(1))
        assert smallest > budget
        plan_array(shape, itemsize, src, tgt, smallest)  # the quoted budget works
        return
    nbytes = math.prod(shape) * itemsize
    grids = [src] + [s.write_grid for s in a.stages]
    assert grids[-1] == tgt
    for s, read_grid in zip(a.stages, grids, strict=False):
        assert s.read_grid == read_grid
        assert s.task_memory <= budget
        assert _aligned(s.block, s.write_grid, shape)  # whole write cells only: no races
        assert s.n_tasks == math.prod(-(-n // b) for n, b in zip(shape, s.block, strict=True))
        assert s.bytes_written == nbytes
        assert s.read_amplification >= 1.0
        if _aligned(s.block, s.read_grid, shape):
            assert s.read_amplification == 1.0
        # The task regions tile the array exactly once.
        cover = np.zeros(shape, dtype=np.int8)
        for t in range(s.n_tasks):
            cover[s.block_slices(t, shape)] += 1
        assert (cover == 1).all()
        # Inside a task, I/O pieces tile the block, stay on grid edges and bound cells in flight.
        region = s.block_slices(0, shape)
        for grid in (s.read_grid, s.write_grid):
            inner = np.zeros(shape, dtype=np.int8)
            for piece in split_region(region, grid, s.io_chunks):
                inner[piece] += 1
                touched = math.prod(-(-p.stop // g) - p.start // g for p, g in zip(piece, grid, strict=True))
                assert touched <= max(s.io_chunks, 1)
                if grid == s.write_grid:
                    assert all(p.start % g == 0 and (p.stop % g == 0 or p.stop == n)
                               for p, g, n in zip(piece, grid, shape, strict=True))
            assert (inner[region] == 1).all() and inner.sum() == cover[region].size
    if a.strategy == "one-pass":
        assert a.stages[0].read_amplification == 1.0


@pytest.mark.parametrize("budget", ["64MB", "256MB", "1GB"])
def test_two_pass_stages_are_balanced_for_the_workers(budget: str) -> None:
    """A large budget does not make few huge tasks: at 256 MB stage 0 was five 200 MB tasks."""
    spec = ArraySpec("a", (1000, 500, 500), "float32", 4, (10, 500, 500), (1000, 25, 25))
    plan = plan_rechunk([spec], budget, threads_per_worker=2)
    a = plan.arrays[0]
    assert a.strategy == "two-pass"
    for s in a.stages:
        assert s.n_tasks >= 8, s
        assert math.prod(s.block) * 4 <= 64 * 2**20, s
        assert s.read_amplification == 1.0
    assert "tasks for every worker" in str(plan)
    # The knob still wins: asking for larger tasks gives larger tasks.
    big = plan_rechunk([spec], budget, threads_per_worker=2, target_task_bytes=256 * 2**20).arrays[0]
    assert max(math.prod(s.block) for s in big.stages) >= max(math.prod(s.block) for s in a.stages)


def test_one_pass_tasks_capped_for_the_workers_when_no_bytes_move_more() -> None:
    """Aligned one-pass blocks stop at about 1/8 of the array (here 25 MB of 200 MB), not at 64 MB."""
    spec = ((200, 500, 500), 4, (10, 500, 500), (20, 500, 500))
    a = plan_array(*spec, "4GB", min_tasks=1)
    s = a.stages[0]
    assert a.strategy == "one-pass" and s.read_amplification == 1.0
    assert math.prod(s.block) * 4 <= 200 * 10**6 // 8 and s.n_tasks >= 8, s
    assert "tasks capped at" in s.note and "1/8 of the array" in s.note
    # Same bytes moved as the uncapped plan: every source chunk read once, the array written once.
    assert s.bytes_read == s.bytes_written == 200 * 500 * 500 * 4
    # The caller's task size still wins.
    big = plan_array(*spec, "4GB", min_tasks=1, target_task_bytes=64 * 2**20).stages[0]
    assert math.prod(big.block) * 4 > 25 * 10**6 and "capped" not in big.note


def test_one_pass_whole_array_task_says_why_it_stays_one_task() -> None:
    """1 GB (10,500,500) -> (1000,25,25) at 4 GB: the smallest aligned block is the whole array; smaller
    tasks would split source chunks (more bytes), so it stays one task and the plan says so, with numbers."""
    a = plan_array((1000, 500, 500), 4, (10, 500, 500), (1000, 25, 25), "4GB")
    s = a.stages[0]
    assert a.strategy == "one-pass" and s.n_tasks == 1
    moved = re.search(r"would split source chunks and move ([\d.]+ \w+).*against this plan's ([\d.]+ \w+)", s.note)
    assert moved, s.note
    assert "two passes at least 3.73 GiB" in s.note and moved.group(2) == "1.86 GiB"
    assert s.note in str(RechunkPlan(arrays=(a,), max_mem=4 * 10**9, threads_per_worker=2))
