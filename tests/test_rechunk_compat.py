"""rechunker-compatible inputs of ``rechunk``: signature, executors, dask and xarray sources, group targets."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
import zarr
from dask.delayed import Delayed

from parallelzarr import rechunk
from parallelzarr.entry.rechunk import ExecutorError, RechunkBudgetWarning, TargetExistsError


def _group(path: Path) -> zarr.Group:
    g = zarr.group(str(path))
    g.attrs["foo"] = "bar"
    a = g.create_array("a", shape=(10, 20, 40), chunks=(5, 10, 4), dtype="f4")
    a[...] = np.arange(8000, dtype="f4").reshape(10, 20, 40)
    b = g.create_array("b", shape=(800,), chunks=(20,), dtype="f4")
    b[...] = np.arange(800, dtype="f4")
    return g


def test_fifth_positional_is_target_options(tmp_path: Path) -> None:
    src = zarr.create_array(str(tmp_path / "s.zarr"), shape=(40, 30), chunks=(4, 30), dtype="i4", zarr_format=2)
    src[...] = np.arange(1200).reshape(40, 30)
    out = rechunk(src, (40, 3), "64MB", str(tmp_path / "t.zarr"), {"compressor": None},
                  str(tmp_path / "tmp.zarr")).execute()
    assert isinstance(out, zarr.Array)  # rechunker's execute() returns the target
    assert out.chunks == (40, 3) and out.compressors == ()
    np.testing.assert_array_equal(out[...], src[...])


def test_executors(tmp_path: Path) -> None:
    src = zarr.create_array(str(tmp_path / "s.zarr"), shape=(20, 20), chunks=(2, 20), dtype="f4")
    src[...] = 1
    r = rechunk(src, (20, 2), "64MB", str(tmp_path / "t.zarr"), executor="python")
    np.testing.assert_array_equal(r.execute()[...], 1)
    with pytest.raises(ValueError, match="unrecognized executor 'unknown'"):
        rechunk(src, (20, 2), "64MB", str(tmp_path / "u.zarr"), executor="unknown")
    with pytest.raises(ExecutorError, match="beam executor is not supported"):
        rechunk(src, (20, 2), "64MB", str(tmp_path / "u.zarr"), executor="beam")
    assert not (tmp_path / "u.zarr").exists()


def test_dask_source_with_a_tiny_budget(tmp_path: Path) -> None:
    data = dsa.arange(8000, chunks=200, dtype="f4").reshape(80, 100).rechunk((2, 100))
    with pytest.warns(RechunkBudgetWarning, match="read as rechunker reads it"):
        r = rechunk(data, (40, 5), 1600, str(tmp_path / "t.zarr"), temp_store=str(tmp_path / "tmp.zarr"))
    assert r.plan.budget_meaning == "chunk data" and "rechunker's meaning" in str(r.plan)
    out = r.execute()
    assert out.chunks == (40, 5)
    np.testing.assert_array_equal(out[...], data.compute())
    assert r.result.tasks_run == r.plan.n_tasks


def test_impossible_tiny_budget_is_refused(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RechunkBudgetWarning)
        with pytest.raises(ValueError, match="smallest budget that works"):
            rechunk(dsa.ones(1000, chunks=500), (10,), 1600, str(tmp_path / "t.zarr"))  # 4,000-byte chunks
    assert not (tmp_path / "t.zarr").exists()


def test_group_none_means_unchanged_and_tiny_budget(tmp_path: Path) -> None:
    g = _group(tmp_path / "s.zarr")
    with pytest.warns(RechunkBudgetWarning):
        r = rechunk(g, {"a": None, "b": None}, 1600, str(tmp_path / "t.zarr"), temp_store=str(tmp_path / "x.zarr"))
    out = r.execute()
    assert isinstance(out, zarr.Group) and dict(out.attrs) == {"foo": "bar"}
    assert out["a"].chunks == (5, 10, 4) and out["b"].chunks == (20,)
    np.testing.assert_array_equal(out["a"][...], g["a"][...])


def test_group_targets_and_array_name(tmp_path: Path) -> None:
    src = zarr.create_array(str(tmp_path / "s.zarr"), shape=(30, 30), chunks=(3, 30), dtype="f4")
    src[...] = np.arange(900, dtype="f4").reshape(30, 30)
    target, temp = zarr.group(str(tmp_path / "t.zarr")), zarr.group(str(tmp_path / "tmp.zarr"))
    with pytest.raises(ValueError, match="without a name for the array"):
        rechunk(src, (30, 3), "64MB", target, temp_store=temp)
    out = rechunk(src, (30, 3), "64MB", target, temp_store=temp, array_name="x").execute()
    assert out.path == "x" and out.chunks == (30, 3)
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "t.zarr"))["x"][...], src[...])
    with pytest.raises(ValueError, match="Can't specify `array_name`"):
        rechunk(_group(tmp_path / "g.zarr"), {"a": None}, "64MB", str(tmp_path / "o.zarr"), array_name="x")


def test_in_memory_dataset_with_xarray_encodings(tmp_path: Path) -> None:
    a = np.arange(5000, dtype="f4").reshape(100, 50)
    a[-1] = np.nan
    ds = xr.Dataset({"a": (("x", "y"), a, {"u": "K"}), "b": ("x", np.ones(100))},
                    coords={"cx": ("x", np.arange(100.0))}, attrs={"title": "t"}).chunk({"x": 10})
    options = {"a": {"dtype": "int32", "scale_factor": 0.1, "_FillValue": -9999}}
    out = rechunk(ds, {"a": (20, 10), "b": (20,)}, "10MB", str(tmp_path / "t.zarr"), options,
                  str(tmp_path / "tmp.zarr")).execute()
    assert isinstance(out, zarr.Group)
    raw = xr.open_zarr(tmp_path / "t.zarr", decode_cf=False)
    assert raw.a.dtype == "int32" and (raw.a.values[-1] == -9999).all()
    back = xr.open_zarr(tmp_path / "t.zarr")
    assert back.a.data.chunksize == (20, 10) and back.b.data.chunksize == (20,)
    xr.testing.assert_allclose(back.compute(), ds.compute(), atol=0.051)
    assert back.attrs == ds.attrs
    with pytest.raises(ValueError, match="Chunks must be provided in 'target_chunks'"):
        rechunk(ds, {"a": (20, 10)}, "10MB", str(tmp_path / "u.zarr"), {"a": {"chunks": 10}})


def test_netcdf_dataset_by_dimension(tmp_path: Path) -> None:
    ds = xr.Dataset({"t": (("time", "x"), np.random.default_rng(0).random((30, 8)))},
                    coords={"time": np.arange(30), "name": ("x", list("abcdefgh"))})
    ds.to_netcdf(tmp_path / "f.nc")
    with xr.open_dataset(tmp_path / "f.nc") as src:
        rechunk(src, {"time": 5}, "10MB", str(tmp_path / "t.zarr")).execute()
        back = xr.open_zarr(tmp_path / "t.zarr")
        xr.testing.assert_identical(back.load(), src.load())
    assert back.t.encoding["chunks"] == (5, 8)


def test_occupied_target_and_overwrite(tmp_path: Path) -> None:
    g = _group(tmp_path / "s.zarr")
    args = (g, {"a": (10, 5, 4), "b": (100,)}, "64MB", str(tmp_path / "t.zarr"))
    rechunk(*args).execute()
    with pytest.raises(TargetExistsError, match=r"path .* contains an array"):
        rechunk(*args)
    out = rechunk(*args, target_options={"a": {"overwrite": True}, "b": {"overwrite": True}}).execute()
    np.testing.assert_array_equal(out["b"][...], g["b"][...])


def test_compute_false_returns_delayed_publishing_last(tmp_path: Path) -> None:
    src = zarr.create_array(str(tmp_path / "s.zarr"), shape=(20, 20), chunks=(2, 20), dtype="f4")
    src[...] = 2
    r = rechunk(src, (20, 2), "64MB", str(tmp_path / "t.zarr"))
    lazy = r.execute(compute=False)
    assert isinstance(lazy, Delayed)
    with pytest.raises(FileNotFoundError):
        zarr.open_array(str(tmp_path / "t.zarr"), mode="r")  # nothing published before compute
    out = dask.compute(lazy, scheduler="threads")[0]
    np.testing.assert_array_equal(out[...], 2)
    assert r.result is not None and r.result.tasks_run == r.plan.n_tasks


def test_publish_early_creates_the_target_in_rechunk(tmp_path: Path) -> None:
    src = zarr.create_array(str(tmp_path / "s.zarr"), shape=(20, 20), chunks=(2, 20), dtype="f4")
    src[...] = 3
    src.attrs["foo"] = "bar"
    r = rechunk(src, (20, 2), "64MB", str(tmp_path / "t.zarr"), publish="early")
    early = zarr.open_array(str(tmp_path / "t.zarr"), mode="r")
    assert early.chunks == (20, 2) and dict(early.attrs) == {"foo": "bar"}
    r.execute()
    np.testing.assert_array_equal(early[...], 3)
    with pytest.raises(ValueError, match="publish must be"):
        rechunk(src, (20, 2), "64MB", str(tmp_path / "u.zarr"), publish="sometime")


def test_reprs_and_plot(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    g = _group(tmp_path / "s.zarr")
    r = rechunk(g, {"a": (10, 20, 1), "b": (800,)}, "1.5MB", str(tmp_path / "t.zarr"))
    text = repr(r)
    assert text.startswith("<Rechunked>") and "Source" in text and "Target" in text
    assert ("Intermediate" in text) == (r.plan.passes > 1)
    page = r._repr_html_()
    assert "<h2>Rechunked</h2>" in page and "RechunkPlan" in page
    assert r.plan._repr_html_().startswith("<pre>RechunkPlan")
    fig = r.plan.plot()
    assert len(fig.axes[0].patches) >= 3 * sum(a.passes for a in r.plan.arrays)


def test_invalid_source_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Source must be a Zarr Array, Zarr Group, Dask Array or Xarray Dataset"):
        rechunk([[1, 2], [3, 4]], (10, 10), 100, tmp_path)


def test_in_memory_times_keep_their_values(tmp_path: Path) -> None:
    # Lazy (dask) times get the units xarray chose for the metadata; other units would read back wrong times.
    import pandas as pd

    time = pd.date_range("1990-01-01", periods=40, freq="6h")
    ds = xr.Dataset({"seen": (("time",), time[::-1].values), "lag": (("time",), (time - time[0]).values)},
                    coords={"time": time})
    rechunk(ds, {"time": 8}, "10MB", str(tmp_path / "t.zarr")).execute()
    back = xr.open_zarr(tmp_path / "t.zarr")
    xr.testing.assert_identical(back.load(), ds)


def test_numcodecs_compressor_on_a_zarr3_target(tmp_path: Path) -> None:
    import numcodecs

    src = zarr.create_array(str(tmp_path / "s.zarr"), shape=(40, 40), chunks=(4, 40), dtype="f4", zarr_format=3)
    src[...] = np.arange(1600, dtype="f4").reshape(40, 40)
    # rechunker's zarr-2 spelling; the intermediate takes it too (temp_options default to target_options).
    out = rechunk(src, (40, 4), 1600 * 4 + 2**20, str(tmp_path / "t.zarr"), {"compressor": numcodecs.Blosc(cname="zstd")},
                  str(tmp_path / "tmp.zarr")).execute()
    assert "zstd" in repr(out.compressors)
    np.testing.assert_array_equal(out[...], src[...])


def test_dataset_changed_since_opened_gives_its_own_values(tmp_path: Path) -> None:
    # Same shapes and encoding["source"]: copying the stored values would silently give the old data.
    xr.Dataset({"t": (("x", "y"), np.arange(200.0).reshape(20, 10), {"u": "K"})},
               coords={"x": np.arange(20)}).to_zarr(tmp_path / "s.zarr")
    opened = xr.open_zarr(tmp_path / "s.zarr")
    changed = opened.copy()
    changed["t"] = opened.t * 2
    changed = changed.assign_coords(x=np.arange(20) + 100)
    rechunk(changed, {"x": 5}, "10MB", str(tmp_path / "t.zarr")).execute()
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "t.zarr").load(), changed.load())
    same = rechunk(opened, {"x": 5}, "10MB", str(tmp_path / "u.zarr"))
    assert same._info.jobs[0].source.store.root == (tmp_path / "s.zarr")  # unchanged: stored bytes copied


@pytest.mark.parametrize(("temp_options", "want"), [(None, "lz4"), ({"compressor": None}, "uncompressed")])
def test_intermediate_codecs(tmp_path: Path, temp_options: dict | None, want: str) -> None:
    src = zarr.create_array(str(tmp_path / "s.zarr"), shape=(60, 80, 80), chunks=(2, 80, 80), dtype="f4")
    src[...] = np.arange(60 * 80 * 80, dtype="f4").reshape(60, 80, 80)
    r = rechunk(src, (60, 8, 8), "2MB", str(tmp_path / "t.zarr"), temp_store=str(tmp_path / "tmp.zarr"),
                temp_options=temp_options, keep_temp=True)
    assert r.plan.passes == 2 and want in str(r.plan)
    r.execute()
    kept = zarr.open_array(str(tmp_path / "tmp.zarr"), path="array", mode="r")
    assert ("lz4" in repr(kept.compressors)) == (want == "lz4") and (kept.compressors == ()) == (want != "lz4")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "t.zarr"))[...], src[...])
