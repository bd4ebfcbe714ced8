"""The ``.pz`` accessor (issue 12): ``ds.pz.to_zarr`` behaves as ``pz.to_zarr(ds, ...)``."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import parallelzarr as pz


def _ds() -> xr.Dataset:
    data = da.from_array(np.arange(60, dtype="f4").reshape(6, 10), chunks=(4, 3))
    return xr.Dataset({"t": (("time", "x"), data)}, coords={"time": np.arange(6)})


def test_dataset_accessor_writes_plans_and_appends(tmp_path):
    ds = _ds()
    target = str(tmp_path / "a.zarr")
    plan = ds.isel(time=slice(0, 4)).pz.plan_write(target, encoding={"t": {"chunks": (3, 5)}})
    assert plan.variables["t"].strategy != "direct"  # 4-row blocks over 3-row chunks are misaligned
    ds.isel(time=slice(0, 4)).pz.to_zarr(target, encoding={"t": {"chunks": (3, 5)}})
    ds.isel(time=slice(4, 6)).pz.append(target, "time")
    xr.testing.assert_identical(xr.open_zarr(target).compute(), ds.compute())


def test_dataarray_accessor(tmp_path):
    arr = _ds()["t"]
    target = str(tmp_path / "d.zarr")
    arr.pz.to_zarr(target)
    np.testing.assert_array_equal(xr.open_zarr(target)["t"].values, arr.values)


def test_accessor_rechunk(tmp_path):
    src = str(tmp_path / "src.zarr")
    _ds().pz.to_zarr(src)
    r = xr.open_zarr(src).pz.rechunk({"time": 6, "x": 10}, "10MB", str(tmp_path / "dst.zarr"))
    r.execute()
    out = xr.open_zarr(str(tmp_path / "dst.zarr"))
    assert out["t"].encoding["chunks"] == (6, 10)
    np.testing.assert_array_equal(out["t"].values, _ds()["t"].values)


def test_accessor_keeps_keyword_checks(tmp_path):
    with pytest.raises(TypeError, match="'grup'"):
        _ds().pz.to_zarr(str(tmp_path / "x.zarr"), grup="g")


def test_reimport_does_not_warn(recwarn):
    import importlib

    importlib.reload(pz)
    assert xr.Dataset.pz is not None
    assert not [w for w in recwarn if "pz" in str(w.message)]
