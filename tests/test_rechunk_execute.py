"""Rechunk execution on real zarr stores: correctness, memory, refusals, groups, shards."""

from __future__ import annotations

import os
import re
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from parallelzarr import rechunk
from parallelzarr.entry.rechunk import RechunkBudgetWarning
from parallelzarr.errors import ChunkSpecError, MemoryBudgetError, StoreError
from parallelzarr.graph.rechunk import MARK, StageIO, run_block


def _field(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth field plus noise, like a temperature field."""
    grid = np.indices(shape).sum(axis=0).astype("f4") if shape else np.zeros(())
    noise = np.random.default_rng(seed).normal(0, 0.1, shape)
    return (np.sin(grid / 7.0) + noise).astype("f4")


def _source(path: Path, shape, chunks, fmt: int = 3, dtype: str = "f4") -> tuple[zarr.Array, np.ndarray]:
    data = _field(shape).astype(dtype)
    arr = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=dtype, zarr_format=fmt)
    arr[...] = data
    return arr, data


@st.composite
def _cases(draw: st.DrawFn) -> tuple:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 30)) for _ in range(ndim))
    src = tuple(draw(st.integers(1, n)) for n in shape)
    tgt = tuple(draw(st.one_of(st.integers(1, n + 2), st.just(-1))) for n in shape)
    frac = draw(st.sampled_from([0.2, 0.5, 1.0, 2.0, 5.0, 1000.0]))
    fmt = draw(st.sampled_from([2, 3]))
    return shape, src, tgt, frac, fmt


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_cases())
def test_target_equals_source(tmp_path_factory: pytest.TempPathFactory, case: tuple) -> None:
    shape, src_chunks, tgt_chunks, frac, fmt = case
    root = tmp_path_factory.mktemp("rt")
    src, data = _source(root / "src.zarr", shape, src_chunks, fmt)
    # The model's fixed overhead plus a working budget relative to the array's size.
    budget = 2**20 + int(frac * data.nbytes)
    try:
        r = rechunk(src, tgt_chunks, budget, str(root / "tgt.zarr"))
    except MemoryBudgetError:
        event("refused")
        assert not (root / "tgt.zarr").exists()
        return
    event(r.plan.arrays[0].strategy)
    r.execute(scheduler="threads")
    res = r.result
    out = zarr.open_array(str(root / "tgt.zarr"), mode="r")
    want = tuple(n if c == -1 else min(c, n) for c, n in zip(tgt_chunks, shape, strict=True))
    assert out.chunks == want
    assert out.metadata.zarr_format == fmt
    np.testing.assert_array_equal(out[...], data)
    assert res.tasks_run == r.plan.n_tasks and res.tasks_skipped == 0
    assert not (root / "tgt.zarr" / MARK).exists()


_MEMORY_CASES = [
    ((120, 160, 160), (10, 80, 80), (120, 20, 20), "200MB", None),  # one pass
    ((120, 160, 160), (10, 80, 80), (120, 20, 20), "6MB", None),  # two passes
    ((120, 160, 160), (10, 80, 80), (40, 20, 20), "200MB", (120, 40, 40)),  # sharded target
    ((30, 400, 400), (1, 400, 400), (30, 50, 50), "200MB", None),  # big source chunks
]


@pytest.mark.parametrize(
    ("shape", "src_chunks", "tgt_chunks", "budget", "shards", "store"),
    [(*c, "local") for c in _MEMORY_CASES] + [(*c, "fsspec") for c in _MEMORY_CASES[1:]],
)
def test_measured_task_memory_within_estimate(tmp_path: Path, shape, src_chunks, tgt_chunks, budget,
                                              shards, store) -> None:
    """The model's bound holds on local files (one operation at a time, in the task's thread) and on
    a store driven from zarr's loop (``io_chunks`` reads prefetched, encoded writes queued)."""
    src, _ = _source(tmp_path / "src.zarr", shape, src_chunks)
    opts = {"shards": shards} if shards else None
    r = rechunk(src, tgt_chunks, budget, str(tmp_path / "tgt.zarr"), target_options=opts)
    plan = r.plan.arrays[0]
    for stage in plan.stages:
        read = src if stage.read_from == "source" else zarr.create_array(
            str(tmp_path / f"in{stage.index}.zarr"), shape=shape, chunks=stage.read_grid, dtype="f4")
        if stage.read_from != "source":
            read[...] = src[...]
        sharded = stage.write_to == "target" and shards is not None
        out = str(tmp_path / f"out{stage.index}.zarr")
        if store == "fsspec":
            out = zarr.storage.FsspecStore.from_url("file://" + out, storage_options={"auto_mkdir": True})
            read = zarr.open_array(zarr.storage.FsspecStore.from_url("file://" + str(read.store.root / read.path)),
                                   mode="r")
        dst = zarr.create_array(
            out, shape=shape, dtype="f4",
            chunks=tgt_chunks if sharded else stage.write_grid, shards=shards if sharded else None)
        io = StageIO(read, dst, stage, shape, zarr.storage.MemoryStore(), "m")
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            run_block(io, 0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak <= stage.task_memory, (stage, peak)
        assert stage.task_memory <= r.plan.max_mem
        # The estimate is not wildly loose either (it is used to refuse budgets).
        assert peak >= 0.4 * (stage.task_memory - r.plan.memory_model.overhead)


def test_refuses_impossible_budget_before_writing(tmp_path: Path) -> None:
    """Below one source chunk (800 KB) even rechunker's reading of max_mem cannot fit: refused, a ValueError."""
    src, _ = _source(tmp_path / "src.zarr", (50, 200, 200), (5, 200, 200))
    target = tmp_path / "tgt.zarr"
    with pytest.raises(MemoryBudgetError, match=r"even read as rechunker reads it.*smallest budget that works is "
                                                r".*\((\d+) bytes\), read that way") as err:
        rechunk(src, (50, 10, 10), "700KB", str(target))
    assert isinstance(err.value, ValueError)
    assert err.value.smallest == 800_000  # one decoded source chunk
    assert not target.exists()


def test_budget_read_as_chunk_data_when_the_peak_cannot_be_kept(tmp_path: Path) -> None:
    """1.1 MB holds a source chunk (800 KB) but not parallelzarr's peak model: planned in rechunker's
    meaning with a warning naming the estimated peak and the budget that keeps it; the peak is measured."""
    src, data = _source(tmp_path / "src.zarr", (50, 200, 200), (5, 200, 200))
    with pytest.warns(RechunkBudgetWarning, match=r"read as rechunker reads it.*Estimated peak per task: .*"
                                                  r"\((\d+) bytes\).*raise max_mem to .*\((\d+) bytes\)") as rec:
        r = rechunk(src, (50, 10, 10), "1.1MB", str(tmp_path / "tgt.zarr"))
    plan = r.plan
    assert plan.budget_meaning == "chunk data" and plan.arrays[0].budget_meaning == "chunk data"
    assert "max_mem read as the chunk data a task holds (rechunker's meaning" in str(plan)
    assert "max_mem read as chunk data" in repr(r)
    said = [int(x) for x in re.search(r"\((\d+) bytes\).*\((\d+) bytes\)", str(rec[0].message)).groups()]
    assert said == [plan.task_memory, plan.peak_budget]
    assert plan.task_memory > plan.max_mem  # the estimate is stated, not hidden
    for stage in plan.arrays[0].stages:  # chunk data within the budget, rechunker's meaning
        assert stage.memory_breakdown["assembled"] <= plan.max_mem
    np.testing.assert_array_equal(r.execute()[...], data)
    # The budget the warning names keeps the estimated peak: no warning, read as the peak.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RechunkBudgetWarning)
        again = rechunk(src, (50, 10, 10), plan.peak_budget, str(tmp_path / "tgt2.zarr"))
    assert again.plan.budget_meaning == "peak" and again.plan.task_memory <= plan.peak_budget
    assert "max_mem read as the estimated peak" in str(again.plan)
    # ... and a plan as lean as the chunk-data one (not tiny tasks rereading the source).
    assert again.plan.bytes_read <= plan.bytes_read and again.plan.n_tasks <= 10 * plan.n_tasks


def test_chunk_data_plan_peak_measured_within_its_estimate(tmp_path: Path) -> None:
    """The estimated peak a chunk-data plan states bounds what a task really holds (tracemalloc)."""
    src, _ = _source(tmp_path / "src.zarr", (50, 200, 200), (5, 200, 200))
    with pytest.warns(RechunkBudgetWarning):
        r = rechunk(src, (50, 10, 10), "1.1MB", str(tmp_path / "tgt.zarr"))
    stage = r.plan.arrays[0].stages[0]
    dst = zarr.create_array(str(tmp_path / "out.zarr"), shape=src.shape, chunks=stage.write_grid, dtype="f4")
    io = StageIO(src, dst, stage, src.shape, zarr.storage.MemoryStore(), "m")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run_block(io, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= stage.task_memory, (stage, peak)
    assert peak > r.plan.max_mem * 0.5  # a real task, not an empty one


def test_refuses_existing_target(tmp_path: Path) -> None:
    src, _ = _source(tmp_path / "src.zarr", (20, 20), (5, 5))
    zarr.create_array(str(tmp_path / "tgt.zarr"), shape=(1,), dtype="i1")
    with pytest.raises(StoreError, match="already holds zarr data"):
        rechunk(src, (20, 1), "10MB", str(tmp_path / "tgt.zarr")).execute()


def test_temp_store_and_keep_temp(tmp_path: Path) -> None:
    src, data = _source(tmp_path / "src.zarr", (60, 80, 80), (2, 80, 80))
    r = rechunk(src, (60, 8, 8), "2MB", str(tmp_path / "tgt.zarr"), temp_store=str(tmp_path / "tmp.zarr"),
                keep_temp=True)
    assert r.plan.passes == 2
    r.execute()
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "tgt.zarr"))[...], data)
    kept = zarr.open_array(str(tmp_path / "tmp.zarr"), path="array", mode="r")
    assert kept.chunks == r.plan.arrays[0].intermediate_chunks
    np.testing.assert_array_equal(kept[...], data)
    assert not (tmp_path / "tgt.zarr" / MARK).exists()


def test_format_conversion_and_shards(tmp_path: Path) -> None:
    src, data = _source(tmp_path / "src.zarr", (40, 60), (4, 60), fmt=2)
    r = rechunk(src, (40, 10), "50MB", str(tmp_path / "tgt.zarr"),
                target_options={"zarr_format": 3, "shards": (40, 30)})
    r.execute()
    out = zarr.open_array(str(tmp_path / "tgt.zarr"), mode="r")
    assert out.metadata.zarr_format == 3 and out.chunks == (40, 10) and out.shards == (40, 30)
    np.testing.assert_array_equal(out[...], data)
    with pytest.raises(ChunkSpecError, match="zarr format 3"):
        rechunk(src, (40, 10), "50MB", str(tmp_path / "t2.zarr"), target_options={"shards": (40, 30)})


def test_group_per_array_and_by_dimension(tmp_path: Path) -> None:
    g = zarr.open_group(str(tmp_path / "src.zarr"), mode="w", attributes={"title": "t"})
    a = g.create_array("a", shape=(30, 40), chunks=(1, 40), dtype="f4", dimension_names=("time", "x"),
                       attributes={"units": "K"})
    b = g.create_array("b", shape=(40,), chunks=(10,), dtype="i8", dimension_names=("x",), fill_value=-1)
    c = g.create_array("c", shape=(7,), chunks=(2,), dtype="f8")
    a[...] = _field((30, 40))
    b[...] = np.arange(40)
    c[...] = np.arange(7.0)

    r = rechunk(g, {"time": -1, "x": 8}, "20MB", str(tmp_path / "t1.zarr"))
    r.execute(scheduler="threads")
    t = zarr.open_group(str(tmp_path / "t1.zarr"), mode="r")
    assert t["a"].chunks == (30, 8) and t["b"].chunks == (8,) and t["c"].chunks == (2,)
    assert dict(t.attrs) == {"title": "t"} and t["a"].attrs["units"] == "K"
    assert t["b"].metadata.fill_value == -1
    assert t["a"].metadata.dimension_names == ("time", "x")
    for name in "abc":
        np.testing.assert_array_equal(t[name][...], g[name][...])

    r = rechunk(g, {"a": (5, 5), "c": None}, "20MB", str(tmp_path / "t2.zarr"))
    r.execute()
    t = zarr.open_group(str(tmp_path / "t2.zarr"), mode="r")
    assert t["a"].chunks == (5, 5) and t["b"].chunks == (10,) and t["c"].chunks == (2,)
    np.testing.assert_array_equal(t["a"][...], a[...])

    with pytest.raises(ChunkSpecError, match="does not have"):
        rechunk(g, {"nope": (1,), "a": (5, 5)}, "20MB", str(tmp_path / "t3.zarr"))


def test_fsspec_url_target(tmp_path: Path) -> None:
    src, data = _source(tmp_path / "src.zarr", (20, 30), (1, 30))
    url = "file://" + str(tmp_path / "tgt.zarr")
    rechunk(src, (20, 5), "20MB", url).execute()
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "tgt.zarr"))[...], data)
    memstore = zarr.storage.MemoryStore()
    job = rechunk(src, (20, 5), "20MB", memstore, storage_options={"unused": 1})
    job.execute()
    res = job.result
    np.testing.assert_array_equal(res.target[...], data)


def test_distributed_local_cluster(tmp_path: Path, client) -> None:
    src, data = _source(tmp_path / "src.zarr", (40, 64, 64), (4, 64, 64))
    r = rechunk(src, (40, 8, 8), "1.5MB", str(tmp_path / "tgt.zarr"))
    assert r.plan.passes == 2
    r.execute(scheduler=client)
    res = r.result
    assert res.tasks_run == r.plan.n_tasks
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "tgt.zarr"))[...], data)
    assert not os.path.exists(tmp_path / "tgt.zarr" / MARK)


def test_dims_dict_none_means_whole_axis(tmp_path):
    """{"time": None} rechunks every array with a time dimension to one chunk, even though a
    coordinate array is also called "time"."""
    import dask.array as dask_array
    import xarray as xr

    import parallelzarr as pz

    ds = xr.Dataset({"v": (("time", "x"), dask_array.zeros((30, 8), chunks=(7, 8)))}, coords={"time": np.arange(30)})
    pz.to_zarr(ds, str(tmp_path / "s.zarr"), encoding={"v": {"chunks": (7, 8)}, "time": {"chunks": (7,)}})
    r = pz.rechunk(zarr.open_group(str(tmp_path / "s.zarr")), {"time": None}, "64MB", str(tmp_path / "t.zarr"))
    r.execute()
    out = zarr.open_group(str(tmp_path / "t.zarr"))
    assert out["v"].chunks == (30, 8)
    assert out["time"].chunks == (30,)
