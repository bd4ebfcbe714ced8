"""Datasets written by parallelzarr read back identical with xarray.open_zarr."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import parallelzarr as pz


def make_dataset(n_time: int = 60, chunks: int = 7) -> xr.Dataset:
    rng = np.random.default_rng(0)
    temp = rng.random((n_time, 12, 16)).astype("f4")
    temp[3, 4, 5] = np.nan
    ds = xr.Dataset(
        {
            "temp": (("time", "lat", "lon"), da.from_array(temp, chunks=(chunks, 5, 16)), {"units": "K", "long_name": "air temperature"}),
            "precip": (("time", "lat", "lon"), da.from_array(rng.random((n_time, 12, 16)), chunks=(chunks * 2, 12, 16))),
            "count": (("time",), da.arange(n_time, chunks=chunks, dtype="i4")),
            "label": (("lon",), np.array([f"st{i:02d}" for i in range(16)])),
        },
        coords={
            "time": pd.date_range("2001-01-01", periods=n_time, freq="h"),
            "lat": np.linspace(-60, 60, 12),
            "lon": np.arange(16.0),
            "stamp": ("time", da.from_array(pd.date_range("1999-01-01", periods=n_time, freq="D").values, chunks=chunks)),
        },
        attrs={"title": "round trip", "history": "made by a test"},
    )
    ds["temp"].encoding = {"_FillValue": -9999.0}
    ds["precip"].encoding = {"dtype": "f4", "scale_factor": 0.5}
    return ds


@pytest.mark.parametrize("strategy", ["auto", "gather-edges", "rechunk", "lock"])
def test_roundtrip_identical(tmp_path, strategy):
    ds = make_dataset()
    path = str(tmp_path / "ds.zarr")
    pz.to_zarr(ds, path, encoding={"temp": {"chunks": (10, 6, 16), "_FillValue": -9999.0}}, strategy=strategy)
    back = xr.open_zarr(path)
    expected = xr.open_dataset(path, engine="zarr")  # xarray's own decoding of the same bytes
    xr.testing.assert_identical(back.load(), expected.load())
    # compared to the input: identical except the lossy scale_factor/float32 encoding of precip
    xr.testing.assert_identical(back.drop_vars("precip").load(), ds.drop_vars("precip").load())
    np.testing.assert_allclose(back.precip.values, ds.precip.values.astype("f4"), atol=0.5)
    assert back.temp.encoding["chunks"] == (10, 6, 16)


def test_same_bytes_as_xarray(tmp_path):
    """Aligned data: parallelzarr and xarray store identical values and attributes."""
    ds = make_dataset(chunks=10)
    ours, theirs = str(tmp_path / "ours.zarr"), str(tmp_path / "theirs.zarr")
    pz.to_zarr(ds, ours)
    ds.to_zarr(theirs, zarr_format=3)
    a, b = xr.open_zarr(ours, decode_cf=False).load(), xr.open_zarr(theirs, decode_cf=False).load()
    xr.testing.assert_identical(a, b)


def test_sharded_dataset(tmp_path):
    ds = make_dataset()
    path = str(tmp_path / "sh.zarr")
    plan = pz.to_zarr(ds[["temp"]], path, encoding={"temp": {"chunks": (5, 6, 8), "shards": (20, 12, 16), "_FillValue": -9999.0}})
    assert plan.variables["temp"].shards == (20, 12, 16)
    xr.testing.assert_identical(xr.open_zarr(path).load(), ds[["temp"]].load())


def test_dataarray(tmp_path):
    arr = make_dataset().temp.rename("air")
    path = str(tmp_path / "da.zarr")
    pz.to_zarr(arr, path, encoding={"air": {"_FillValue": -9999.0}})
    xr.testing.assert_identical(xr.open_zarr(path).air.load(), arr.load())


def test_region_write_dict_and_auto(tmp_path):
    ds = make_dataset()
    path = str(tmp_path / "r.zarr")
    pz.to_zarr(ds, path, encoding={"temp": {"chunks": (10, 6, 16), "_FillValue": -9999.0}})
    part = ds.isel(time=slice(13, 37)).drop_vars(["lat", "lon", "label"])
    part = part.assign(temp=part.temp * 0 + 2.5, count=part["count"] * 0 - 1).chunk(time=5)
    pz.to_zarr(part, path, region={"time": slice(13, 37)}, strategy="gather-edges")
    expected = ds.load().copy(deep=True)
    expected["temp"][13:37] = 2.5
    expected["count"][13:37] = -1
    xr.testing.assert_identical(xr.open_zarr(path).drop_vars("precip").load(), expected.drop_vars("precip"))
    part2 = part.assign(temp=part.temp * 0 + 7).isel(time=slice(2, 9))
    pz.to_zarr(part2, path, region="auto")
    expected["temp"][15:22] = 7
    xr.testing.assert_identical(xr.open_zarr(path).temp.load(), expected.temp)


def test_compute_false_defers_data(tmp_path):
    ds = make_dataset()
    path = str(tmp_path / "lazy.zarr")
    delayed = pz.to_zarr(ds, path, compute=False, encoding={"temp": {"_FillValue": -9999.0, "chunks": (10, 6, 16)}})
    assert np.isnan(xr.open_zarr(path).temp.values).all()  # metadata only, fill values
    delayed.compute()
    xr.testing.assert_identical(xr.open_zarr(path).temp.load(), ds.temp.load())
