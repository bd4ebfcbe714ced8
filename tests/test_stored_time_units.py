"""New times or timedeltas that the stored integer units cannot hold are refused before any write.

xarray encodes such values in finer units ("hours since ...") but leaves the stored units attribute
("days since ...") in place, so they read back as other dates (pydata/xarray#5969): an append of
12-hourly steps onto a store whose first file had only midnights. Every write into a stored
variable (``pz.append``, the drop-in's ``append_dim`` and ``region``, ``mode="a"``) must refuse
them and leave the store as it was; values the units hold are written exactly.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import cftime
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parallelzarr as pz
from parallelzarr.errors import EncodingError, SchemaMismatchError

DAYS = pd.date_range("2000-01-01", periods=4, freq="D")


def _step(times: Any, *, bounds_as_dask: bool = False, lead: Any = None) -> xr.Dataset:
    """A step with a time coordinate, datetime bounds along time and a timedelta along time."""
    times = pd.DatetimeIndex(times)
    bounds = np.stack([times.values, (times + pd.Timedelta("1D")).values], axis=1)
    return xr.Dataset(
        {
            "v": (("time",), np.arange(len(times), dtype="f4")),
            "time_bnds": (("time", "bnds"), da.from_array(bounds, chunks=(1, 2)) if bounds_as_dask else bounds),
            "lead": (("time",), np.full(len(times), np.timedelta64(1, "D")) if lead is None else lead),
        },
        coords={"time": times},
    )


ENCODING = {
    "time": {"units": "days since 2000-01-01", "dtype": "int64"},
    "time_bnds": {"units": "days since 2000-01-01", "dtype": "int64"},
    "lead": {"units": "days", "dtype": "int64"},
}


def _store(tmp_path: Path, first: xr.Dataset, encoding: dict[str, Any], name: str = "s.zarr") -> str:
    path = str(tmp_path / name)
    first.to_zarr(path, mode="w", encoding=encoding, consolidated=True)
    return path


def _append(how: str, ds: xr.Dataset, path: str) -> None:
    if how == "pz.append":
        pz.append(ds, path, "time")
    else:
        pz.to_zarr(ds, path, append_dim="time")


@pytest.mark.parametrize("how", ["pz.append", "drop-in"])
@pytest.mark.parametrize("case", ["12-hourly time", "6-hourly bounds from dask", "6-hour lead"])
def test_values_the_stored_units_cannot_hold_are_refused_before_any_write(tmp_path: Path, how: str, case: str) -> None:
    if case == "12-hourly time":
        # Its bounds are 12-hourly too: whichever the planner meets first is named.
        step, names, first_bad = _step(pd.date_range("2000-01-05", periods=4, freq="12h")), ("time", "time_bnds"), "2000-01-05T12:00"
    elif case == "6-hourly bounds from dask":  # the time labels are whole days, their bounds are not
        step = _step(pd.date_range("2000-01-05", periods=4, freq="D"), bounds_as_dask=True)
        step["time_bnds"] = step["time_bnds"] + np.timedelta64(6, "h")
        names, first_bad = ("time_bnds",), "2000-01-05T06:00"
    else:
        step = _step(pd.date_range("2000-01-05", periods=4, freq="D"), lead=np.full(4, np.timedelta64(6, "h")))
        names, first_bad = ("lead",), "21600 seconds"
    path = _store(tmp_path, _step(DAYS), ENCODING)
    before = snapshot(path)
    with pytest.raises(EncodingError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # xarray's own warning about the units it would switch to
        _append(how, step, path)
    message = str(info.value)
    assert any(f"variable {n!r}" in message for n in names) and first_bad in message, message
    assert "Nothing was written" in message and "encoding=" in message, message
    assert snapshot(path) == before  # not a byte: no lease, journal or chunk left behind
    assert xr.open_zarr(path).load().identical(xr.open_zarr(path).load())


def test_xarray_itself_stores_such_values_as_other_dates(tmp_path: Path) -> None:
    """What the refusal prevents, measured on xarray's own append (if xarray stops doing this, the
    README's note on it and this test must change)."""
    path = _store(tmp_path, _step(DAYS), ENCODING)
    step = _step(pd.date_range("2000-01-05", periods=4, freq="12h"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step.to_zarr(path, append_dim="time")
    got = xr.open_zarr(path).time.values[4:]
    assert not np.array_equal(got, step.time.values)
    assert got[0] > np.datetime64("2000-02-01")  # 96 "hours" stored under "days since": 96 days later


@pytest.mark.parametrize("how", ["pz.append", "drop-in"])
def test_cftime_values_finer_than_the_stored_days_are_refused(tmp_path: Path, how: str) -> None:
    def noleap(hours: list[int], day0: int) -> xr.Dataset:
        labels = [cftime.DatetimeNoLeap(2000, 1, day0 + h // 24, h % 24) for h in hours]
        return xr.Dataset({"v": ("time", np.arange(len(labels), dtype="f4"))}, coords={"time": labels})

    path = str(tmp_path / "s.zarr")
    noleap([0, 24, 48], 1).to_zarr(path, encoding={"time": {"units": "days since 2000-01-01", "calendar": "noleap",
                                                              "dtype": "int64"}})
    before = snapshot(path)
    with pytest.raises(EncodingError, match="2000-01-04 06:00:00"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _append(how, noleap([0, 6, 12], 4), path)
    assert snapshot(path) == before
    _append(how, noleap([0, 24], 4), path)  # whole days are held exactly
    got = xr.open_zarr(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)).time.values
    assert list(got) == [cftime.DatetimeNoLeap(2000, 1, d) for d in (1, 2, 3, 4, 5)]


def test_region_write_and_mode_a_refuse_them_too(tmp_path: Path) -> None:
    path = _store(tmp_path, _step(DAYS), ENCODING)
    before = snapshot(path)
    shifted = _step(DAYS)
    shifted["time_bnds"] = shifted["time_bnds"] + np.timedelta64(1, "h")
    with pytest.raises(EncodingError, match="time_bnds"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pz.to_zarr(shifted[["time_bnds"]].isel(time=slice(1, 3)).drop_vars("time"), path, region={"time": slice(1, 3)})
    with pytest.raises(EncodingError, match="time_bnds"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pz.to_zarr(shifted[["time_bnds"]], path, mode="a")
    assert snapshot(path) == before


@pytest.mark.parametrize("how", ["pz.append", "drop-in"])
def test_native_datetime64_stores_are_refused_not_appended_as_1970(tmp_path: Path, how: str) -> None:
    """A store written with encoding dtype datetime64[ms] (pydata/xarray#10639: xarray's append stores 1970-01-01)."""
    def one(t: str) -> xr.Dataset:
        ds = xr.Dataset({"v": ("time", [1.0])}, coords={"time": np.array([np.datetime64(t, "ms")])})
        ds.time.encoding = {"dtype": "datetime64[ms]", "units": "milliseconds since 1970-01-01T00:00:00"}
        return ds

    path = str(tmp_path / "s.zarr")
    one("2001-01-01T00:01").to_zarr(path, zarr_format=3)
    before = snapshot(path)
    with pytest.raises(SchemaMismatchError, match="native datetime64"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _append(how, one("2001-01-01T00:02"), path)
    assert snapshot(path) == before


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(units=st.sampled_from(["days", "hours", "minutes", "seconds"]),
       offsets=st.lists(st.integers(1, 4 * 86400), min_size=1, max_size=4, unique=True),
       whole=st.booleans(), lean=st.booleans())
def test_an_append_stores_the_times_asked_or_refuses_and_keeps_the_store(
        tmp_path_factory: pytest.TempPathFactory, units: str, offsets: list[int], whole: bool, lean: bool) -> None:
    """Against the numpy oracle: the appended times read back exactly, or the append refuses and the
    store is as it was. ``whole`` rounds the offsets to the stored unit, so both outcomes are drawn."""
    step_s = pd.Timedelta(1, units).total_seconds()
    seconds = sorted({int(o // step_s * step_s) if whole else o for o in offsets} - {0})
    if not seconds:
        return
    new = DAYS[-1] + pd.to_timedelta(seconds, unit="s")
    path = _store(tmp_path_factory.mktemp("p"), _step(DAYS)[["v"]], {"time": {"units": f"{units} since 2000-01-01",
                                                                               "dtype": "int64"}})
    before = snapshot(path)
    step = _step(new)[["v"]]
    if not lean:  # a static variable of another kind sends the append down the full path
        step = step.assign(label=("x", np.array(["a"], dtype=object)))
        xr.Dataset({"label": ("x", np.array(["a"], dtype=object))}).to_zarr(path, mode="a")
        before = snapshot(path)
    exact = all(s % step_s == 0 for s in seconds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pz.append(step, path, "time")
    except EncodingError:
        assert not exact
        assert snapshot(path) == before
        return
    assert exact
    got = xr.open_zarr(path).time.values
    np.testing.assert_array_equal(got, np.concatenate([DAYS.values, new.values]))


@pytest.mark.parametrize("opened_with", ["decode_times=False", "mask_and_scale=False"])
def test_files_opened_undecoded_are_refused_with_how_to_decode_them(tmp_path: Path, opened_with: str) -> None:
    """A netCDF step opened undecoded (raw hours, packed int16 with its scale in the attributes) onto a
    store written from decoded data: refused, saying which option to drop; decoded, it appends exactly."""
    def day(i: int) -> str:
        times = pd.date_range("2000-01-01", periods=4, freq="6h") + pd.Timedelta(days=i)
        values = np.random.default_rng(i).random((4, 5)) * 40 + 250
        path = str(tmp_path / f"day{i}.nc")
        xr.Dataset({"t2m": (("time", "y"), values)}, coords={"time": times}).to_netcdf(path, encoding={
            "t2m": {"dtype": "int16", "scale_factor": 0.01, "add_offset": 270.0, "_FillValue": -32767},
            "time": {"units": "hours since 2000-01-01"}})
        return path

    first, second = day(0), day(1)
    store = str(tmp_path / "s.zarr")
    xr.open_dataset(first).to_zarr(store)
    before = snapshot(store)
    undecoded = xr.open_dataset(second, **{opened_with.split("=")[0]: False})
    with pytest.raises(ValueError, match=r"xr\.decode_cf\(ds\)") as info:
        pz.append(undecoded, store, "time")
    assert opened_with in str(info.value)
    assert snapshot(store) == before
    pz.append(xr.decode_cf(undecoded), store, "time")
    expected = xr.open_mfdataset([first, second]).load()
    assert xr.open_zarr(store).load().equals(expected)
