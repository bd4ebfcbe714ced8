"""Appends and writes whose data says something else than the store about where or what the values are.

Two cases an ingest pipeline meets when a provider changes its files, in which xarray stores other
values than it was given, silently:

* a flipped (or otherwise reordered) latitude on an append: xarray stores the rows in the given order
  under the stored labels (``mode="a-"``) or overwrites the labels, relabelling every row already
  stored (``mode="a"``). Refused here, with the reindex that fixes it (``entry/write._check_grid``,
  ``inputs/ingest.grid_mismatch``);
* new values in ``degC`` written into a variable stored in ``K``: xarray keeps the stored attribute, so
  they read back as kelvins. Refused for every write into a stored variable
  (``inputs/stored_units.check_units``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import snapshot
from hypothesis import given
from hypothesis import strategies as st

import parallelzarr as pz
from parallelzarr.errors import SchemaMismatchError
from parallelzarr.inputs.ingest import reordered
from parallelzarr.inputs.stored_units import StoredUnitsError

LAT = np.linspace(-60.0, 60.0, 6)


def _step(day: int, *, lat: np.ndarray = LAT, units: str | None = "K", static: bool = False) -> xr.Dataset:
    times = pd.date_range("2000-01-01", periods=2, freq="D") + pd.Timedelta(days=2 * day)
    values = 270 + np.arange(2 * 6 * 4, dtype="f4").reshape(2, 6, 4) + 100 * day
    # the rows as a function of the latitude, so that reordered data is told apart from misplaced data
    values += (lat[None, :, None] * 10).astype("f4")
    ds = xr.Dataset({"t2m": (("time", "latitude", "longitude"), values, {} if units is None else {"units": units})},
                    coords={"time": times, "latitude": lat, "longitude": np.arange(4.0)})
    if static:
        ds["lsm"] = (("latitude", "longitude"), np.broadcast_to((lat[:, None] > 0).astype("f4"), (6, 4)))
    return ds


def _store(tmp_path: Path, **kw: object) -> str:
    path = str(tmp_path / "s.zarr")
    _step(0, **kw).to_zarr(path, consolidated=True)  # type: ignore[arg-type]
    return path


# --- a reordered grid ------------------------------------------------------------------------------------


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("how", ["append", "a", "a-"])
def test_a_flipped_latitude_is_refused_before_any_write(tmp_path: Path, how: str, static: bool) -> None:
    path = _store(tmp_path, static=static)
    before = snapshot(path)
    flipped = _step(1, static=static).isel(latitude=slice(None, None, -1))
    with pytest.raises(SchemaMismatchError, match=r"'latitude'.*label 0 is 60\.0 where the store has -60\.0.*another "
                                                  r"order.*ds\.reindex\(latitude=") as info:
        if how == "append":
            pz.append(flipped, path, "time")
        else:
            pz.to_zarr(flipped, path, append_dim="time", mode=how)
    assert isinstance(info.value, ValueError)
    assert snapshot(path) == before


@pytest.mark.parametrize("how", ["append", "a", "a-"])
def test_the_reindex_the_refusal_names_appends_every_row_under_its_label(tmp_path: Path, how: str) -> None:
    path = _store(tmp_path, static=True)
    flipped = _step(1, static=True).isel(latitude=slice(None, None, -1))
    fixed = flipped.reindex(latitude=xr.open_zarr(path).latitude.values)
    if how == "append":
        pz.append(fixed, path, "time")
    else:
        pz.to_zarr(fixed, path, append_dim="time", mode=how)
    want = xr.concat([_step(0, static=True), _step(1, static=True)], "time", data_vars="minimal")
    xr.testing.assert_identical(xr.open_zarr(path).load(), want)


@pytest.mark.parametrize("mode", ["a", "a-"])
def test_xarray_itself_misplaces_the_rows_of_a_flipped_latitude(tmp_path: Path, mode: str) -> None:
    """What the refusal prevents (if xarray starts refusing or aligning, the README and this test must change)."""
    path = _store(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _step(1).isel(latitude=slice(None, None, -1)).to_zarr(path, append_dim="time", mode=mode)
    got = xr.open_zarr(path).load()
    want = xr.concat([_step(0), _step(1)], "time")
    assert not got.t2m.sel(latitude=want.latitude).equals(want.t2m)


def test_other_labels_under_a_minus_are_kept_as_xarray_keeps_them_with_a_warning(tmp_path: Path) -> None:
    """xarray's own tests append lon=-999 under ``mode="a-"`` and expect the stored labels kept; so does
    the drop-in, and says what that means for the rows."""
    ours, theirs = _store(tmp_path / "ours"), _store(tmp_path / "theirs")
    moved = _step(1, lat=LAT + 0.5)
    with pytest.warns(UserWarning, match=r"mode='a-' keeps the stored 'latitude' labels.*\['t2m'\].*label 0 is -59\.5 "
                                         r"where the store has -60\.0"):
        pz.to_zarr(moved, ours, append_dim="time", mode="a-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moved.to_zarr(theirs, append_dim="time", mode="a-")
    xr.testing.assert_identical(xr.open_zarr(ours).load(), xr.open_zarr(theirs).load())
    np.testing.assert_array_equal(xr.open_zarr(ours).latitude.values, LAT)


@given(st.lists(st.integers(-50, 50), min_size=1, max_size=12, unique=True), st.randoms(use_true_random=False))
def test_reordered_means_the_same_labels_each_once_in_another_order(labels: list[int], rnd: object) -> None:
    old = np.asarray(labels, dtype="f8")
    new = old.copy()
    rnd.shuffle(new)  # type: ignore[attr-defined]
    assert reordered(new, old) == (not np.array_equal(new, old))
    if len(old) > 1:
        assert not reordered(np.where(new == new[0], new[1], new), old)  # one label twice, one missing
    assert not reordered(new + 0.5, old)
    assert not reordered(new[:-1], old)


# --- units -----------------------------------------------------------------------------------------------


def _in_celsius(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out["t2m"] = (ds.t2m - np.float32(273.15)).assign_attrs(units="degC")
    return out


WRITES = {
    "pz.append": lambda ds, path: pz.append(ds, path, "time"),
    "pz.append verify": lambda ds, path: pz.append(ds, path, "time", static="verify"),
    "drop-in append": lambda ds, path: pz.to_zarr(ds, path, append_dim="time"),
    "drop-in append, dask": lambda ds, path: pz.to_zarr(ds.chunk({"time": 1}), path, append_dim="time"),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_an_append_in_other_units_is_refused_before_any_write(tmp_path: Path, write: str) -> None:
    path = _store(tmp_path)
    before = snapshot(path)
    with pytest.raises(StoredUnitsError, match=r"'t2m' is stored in 'K' but the new values are in 'degC'.*Nothing "
                                               r"was written.*attrs\['units'\] = 'K'") as info:
        WRITES[write](_in_celsius(_step(1)), path)
    assert isinstance(info.value, ValueError)
    assert snapshot(path) == before


@pytest.mark.parametrize("kw", [{"mode": "a"}, {"mode": "r+", "region": {"time": slice(0, 2)}},
                                {"mode": "r+", "region": "auto"}], ids=["overwrite", "region", "region-auto"])
def test_a_write_into_the_stored_variable_in_other_units_is_refused(tmp_path: Path, kw: dict) -> None:
    path = _store(tmp_path)
    before = snapshot(path)
    new = _in_celsius(_step(0))
    if "region" in kw:
        new = new.drop_vars(["latitude", "longitude"]) if kw["region"] != "auto" else new
    with pytest.raises(StoredUnitsError, match="'t2m' is stored in 'K'"):
        pz.to_zarr(new, path, **kw)
    assert snapshot(path) == before


def test_xarray_itself_stores_the_celsius_values_under_kelvin(tmp_path: Path) -> None:
    """What the refusal prevents (if xarray starts refusing or rewriting units, this test must change)."""
    path = _store(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _in_celsius(_step(1)).to_zarr(path, append_dim="time")
    got = xr.open_zarr(path)
    assert got.t2m.attrs["units"] == "K" and float(got.t2m.isel(time=-1).min()) < 0


@pytest.mark.parametrize("units", [None, " K "], ids=["no units attribute", "the stored units, spaced"])
def test_new_values_without_units_or_in_the_stored_ones_are_appended(tmp_path: Path, units: str | None) -> None:
    path = _store(tmp_path)
    pz.append(_step(1, units=units), path, "time")
    got = xr.open_zarr(path).load()
    assert got.t2m.attrs["units"] == "K"
    np.testing.assert_array_equal(got.t2m.values, xr.concat([_step(0), _step(1)], "time").t2m.values)


def test_the_fix_the_refusal_names_changes_the_stored_units(tmp_path: Path) -> None:
    import zarr

    path = _store(tmp_path)
    zarr.open_array(path, path="t2m", mode="r+").attrs["units"] = "degC"
    zarr.consolidate_metadata(path)
    pz.append(_in_celsius(_step(1)), path, "time")
    got = xr.open_zarr(path)
    assert got.t2m.attrs["units"] == "degC"
    np.testing.assert_allclose(got.t2m.isel(time=-1).values, _in_celsius(_step(1)).t2m.isel(time=-1).values)


# --- calendars -------------------------------------------------------------------------------------------


def _days(times: object) -> xr.Dataset:
    return xr.Dataset({"v": (("time",), np.arange(3, dtype="f4"))}, coords={"time": times})


NOLEAP = xr.date_range("2000-02-25", periods=3, freq="D", calendar="noleap", use_cftime=True)


@pytest.mark.parametrize("how", ["append", "drop-in"])
@pytest.mark.parametrize("calendar", ["360_day", "standard numpy"])
def test_dates_of_another_calendar_are_refused_with_the_conversion(tmp_path: Path, how: str, calendar: str) -> None:
    """xarray fails on these while encoding ("invalid day number"); before, parallelzarr raised cftime's
    bare ``TypeError: cannot compare`` for a 360-day file."""
    path = str(tmp_path / "s.zarr")
    _days(NOLEAP).to_zarr(path)
    before = snapshot(path)
    new = _days(xr.date_range("2000-02-28", periods=3, freq="D", calendar="360_day", use_cftime=True)
                if calendar == "360_day" else pd.date_range("2000-02-28", periods=3, freq="D"))
    with pytest.raises(ValueError, match=r"'noleap' calendar.*convert_calendar\('noleap', dim='time', use_cftime=True"):
        (pz.append(new, path, "time") if how == "append" else pz.to_zarr(new, path, append_dim="time"))
    assert snapshot(path) == before
    align = {"align_on": "date"} if calendar == "360_day" else {}
    pz.append(new.convert_calendar("noleap", dim="time", use_cftime=True, **align), path, "time")
    got = xr.open_zarr(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)).time.values
    # the dates noleap lacks are dropped by the conversion (29 February; the 360-day 29th and 30th)
    extra = [] if calendar == "360_day" else ["2000-03-01"]
    assert [str(t)[:10] for t in got] == ["2000-02-25", "2000-02-26", "2000-02-27", "2000-02-28", *extra]


# --- labels ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["append", "drop-in"])
def test_a_missing_time_label_is_refused_naming_its_row(tmp_path: Path, how: str) -> None:
    path = _store(tmp_path)
    before = snapshot(path)
    new = _step(1).assign_coords(time=pd.DatetimeIndex([pd.Timestamp("2000-01-03"), pd.NaT]))
    with pytest.raises(ValueError, match=r"'time' labels include missing values \(NaT or NaN\) at position\(s\) \[1\].*"
                                         r"ds\.sel\(time=ds\['time'\]\.notnull\(\)\)"):
        (pz.append(new, path, "time") if how == "append" else pz.to_zarr(new, path, append_dim="time"))
    assert snapshot(path) == before
    pz.append(new.sel(time=new["time"].notnull()), path, "time")  # the fix the message names
    assert xr.open_zarr(path).sizes["time"] == 3


def test_an_auto_region_in_another_order_names_the_reindex(tmp_path: Path) -> None:
    path = _store(tmp_path)
    rows = _step(0).isel(time=[1]).copy(deep=True)
    rows["t2m"] = rows.t2m + 1000
    with pytest.raises(ValueError, match=r"non-contiguous.*another order.*ds\.reindex\(latitude=stored\['latitude'\]"
                                         r"\.values\[0:6\]\)"):
        pz.to_zarr(rows.isel(latitude=slice(None, None, -1)), path, region="auto", mode="r+")
    pz.to_zarr(rows.isel(latitude=slice(None, None, -1)).reindex(latitude=LAT), path, region="auto", mode="r+")
    xr.testing.assert_identical(xr.open_zarr(path).t2m.isel(time=[1]).load(), rows.t2m)


# --- a curvilinear grid (2-D coordinates) ----------------------------------------------------------------


def _curvilinear(day: int, flip: bool = False) -> xr.Dataset:
    times = pd.date_range("2000-01-01", periods=2, freq="D") + pd.Timedelta(days=2 * day)
    lat = np.add.outer(np.linspace(-60.0, 60.0, 4), np.zeros(3))
    ds = xr.Dataset({"t2m": (("time", "y", "x"), np.broadcast_to(lat, (2, 4, 3)).astype("f4") + 100 * day)},
                    coords={"time": times, "lat": (("y", "x"), lat)})
    return ds.isel(y=slice(None, None, -1)) if flip else ds


@pytest.mark.parametrize("mode", ["a", "a-"])
def test_a_flipped_curvilinear_grid_warns_as_it_is_stored_as_xarray_stores_it(tmp_path: Path, mode: str) -> None:
    """A 2-D latitude cannot be told flipped from changed, and xarray's own tests require such appends:
    the drop-in stores what xarray stores and says what it means for the rows; ``pz.append`` refuses."""
    ours, theirs = str(tmp_path / "ours.zarr"), str(tmp_path / "theirs.zarr")
    for path in (ours, theirs):
        _curvilinear(0).to_zarr(path)
    what = "overwrites the coordinate 'lat'.*already stored in" if mode == "a" else "keeps the stored coordinate 'lat'.*rows of"
    with pytest.warns(UserWarning, match=rf"mode='{mode}' {what} \['t2m'\].*element \(0, 0\) is 60\.0 where the store "
                                         r"has -60\.0"):
        pz.to_zarr(_curvilinear(1, flip=True), ours, append_dim="time", mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _curvilinear(1, flip=True).to_zarr(theirs, append_dim="time", mode=mode)
    xr.testing.assert_identical(xr.open_zarr(ours).load(), xr.open_zarr(theirs).load())
    with warnings.catch_warnings():  # on the stored grid: nothing to say
        warnings.simplefilter("error", UserWarning)
        pz.to_zarr(_curvilinear(2, flip=mode == "a"), ours, append_dim="time", mode=mode)


def test_pz_append_refuses_a_flipped_curvilinear_grid(tmp_path: Path) -> None:
    path = str(tmp_path / "s.zarr")
    _curvilinear(0).to_zarr(path)
    before = snapshot(path)
    with pytest.raises(ValueError, match="lat"):
        pz.append(_curvilinear(1, flip=True), path, "time")
    assert snapshot(path) == before
