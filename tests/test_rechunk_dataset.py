"""Rechunk xarray Datasets opened from zarr: identical up to chunking, encodings kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from parallelzarr import rechunk


def _dataset() -> xr.Dataset:
    nt, ny, nx = 48, 20, 30
    rng = np.random.default_rng(3)
    time = pd.date_range("2001-01-01", periods=nt, freq="6h")
    lat = np.linspace(-45, 45, ny)
    lon = np.linspace(0, 290, nx)
    base = 280 + 10 * np.cos(np.deg2rad(lat))[None, :, None] + rng.normal(0, 1, (nt, ny, nx))
    temp = base.astype("f4")
    temp[0, 0, :5] = np.nan
    precip = np.abs(rng.normal(0, 2, (nt, ny, nx)))
    ds = xr.Dataset(
        {
            "temp": (("time", "lat", "lon"), temp, {"units": "K", "long_name": "air temperature"}),
            "precip": (("time", "lat", "lon"), precip, {"units": "mm"}),
            "mask": (("lat", "lon"), rng.integers(0, 2, (ny, nx)).astype("i1")),
        },
        coords={
            "time": time,
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon),
            "station": ("lon", np.array([f"s{i:03d}" for i in range(nx)])),
        },
        attrs={"title": "test", "history": "made for rechunk tests"},
    )
    return ds


def _encoding(fmt: int) -> dict:
    return {
        "temp": {"chunks": (1, 20, 30), "_FillValue": -9999.0},
        "precip": {"chunks": (4, 10, 10), "dtype": "i2", "scale_factor": 0.01, "_FillValue": -1},
        "time": {"units": "hours since 2000-01-01", "calendar": "standard", "dtype": "i8"},
    }


@pytest.mark.parametrize("fmt", [2, 3])
def test_dataset_round_trip(tmp_path: Path, fmt: int) -> None:
    src_path = tmp_path / "src.zarr"
    _dataset().to_zarr(src_path, zarr_format=fmt, encoding=_encoding(fmt), consolidated=True)
    ds = xr.open_zarr(src_path)

    target = tmp_path / "tgt.zarr"
    r = rechunk(ds, {"time": -1, "lat": 5, "lon": 5}, "2MB", str(target))
    print(r.plan)
    r.execute(scheduler="threads")
    res = r.result
    assert res.tasks_skipped == 0

    out = xr.open_zarr(target)
    xr.testing.assert_identical(out.load(), xr.open_zarr(src_path).load())
    assert out["temp"].encoding["chunks"] == (48, 5, 5)
    assert out["precip"].encoding["chunks"] == (48, 5, 5)
    assert out["mask"].encoding["chunks"] == (5, 5)
    for name in ("temp", "precip", "time"):
        got, want = out[name].encoding, ds[name].encoding
        for key in ("dtype", "_FillValue", "scale_factor", "units", "calendar"):
            if key in want:
                assert np.all(got[key] == want[key]) or (
                    np.isnan(got[key]) and np.isnan(want[key])), (name, key)
    # CF-encoded values are copied bit for bit.
    raw_src = zarr.open_group(str(src_path), mode="r")
    raw_tgt = zarr.open_group(str(target), mode="r")
    for name in raw_src.array_keys():
        np.testing.assert_array_equal(raw_tgt[name][...], raw_src[name][...])
        assert raw_tgt[name].metadata.zarr_format == fmt
    assert xr.open_zarr(target, consolidated=True) is not None


def test_dataset_not_from_zarr_is_encoded(tmp_path: Path) -> None:
    # Was refused ("not opened from a zarr store"); rechunker rechunks in-memory Datasets (issue 12).
    ds = _dataset()
    rechunk(ds, {"time": -1}, "10MB", str(tmp_path / "t.zarr")).execute()
    out = xr.open_zarr(tmp_path / "t.zarr")
    xr.testing.assert_identical(out.load(), ds)
    assert out["temp"].encoding["chunks"] == (48, 20, 30)


def test_dataset_subset_of_variables(tmp_path: Path) -> None:
    src_path = tmp_path / "src.zarr"
    _dataset().to_zarr(src_path, encoding=_encoding(3))
    ds = xr.open_zarr(src_path)[["temp"]]
    rechunk(ds, {"time": 24}, "10MB", str(tmp_path / "tgt.zarr")).execute()
    out = xr.open_zarr(tmp_path / "tgt.zarr")
    xr.testing.assert_identical(out.load(), ds.load())
    assert out["temp"].encoding["chunks"] == (24, 20, 30)


def test_dask_dataset_with_0d_and_string_variables(tmp_path: Path) -> None:
    # A Dataset held as dask arrays (an open_mfdataset result) with 0-d variables (numeric and string):
    # their zarr source was created with chunks=None, which zarr refuses (found by mypy, issue 13).
    ds = _dataset().chunk({"time": 12})
    ds["height"] = xr.DataArray(np.float32(2.0), attrs={"units": "m"}).chunk()
    ds["crs"] = xr.DataArray(np.array("EPSG:4326")).chunk()
    target = tmp_path / "t.zarr"
    rechunk(ds, {"time": -1}, "10MB", str(target)).execute()
    out = xr.open_zarr(target)
    xr.testing.assert_identical(out.load(), ds.load())
    assert out["height"].shape == () and out["crs"].item() == "EPSG:4326"
