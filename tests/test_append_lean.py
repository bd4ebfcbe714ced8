"""The lean append (checked from the consolidated metadata) against the full path and xarray's own append.

A small append whose variables all grow, stored as given, with labels beyond the stored ones, is
checked without opening the store as a dataset (``run/append._lean_append``). Each case here is
appended three times onto twin stores: through the lean path, through the full path (the lean
planner switched off) and by ``xarray.Dataset.to_zarr(append_dim=...)``. The stores must read back
identical and the two parallelzarr stores hold the same bytes; inputs the lean path does not take
must fall back to the full path, and refusals must be the full path's.
"""

from __future__ import annotations

import datetime
import importlib
import itertools
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parallelzarr as pz
from parallelzarr.errors import AppendError, SchemaMismatchError

run_append = importlib.import_module("parallelzarr.run.append")
_counter = itertools.count()


def _stored_bytes(path: Path) -> dict[str, bytes]:
    """Every object of a store but our bookkeeping (its records carry times and ids)."""
    out = {}
    for root, _, files in os.walk(path):
        rel = os.path.relpath(root, path)
        if rel.split(os.sep)[0] == ".parallelzarr":
            continue
        for name in files:
            out[os.path.join(rel, name)] = Path(root, name).read_bytes()
    return out


class _Spy:
    """Counts the lean plans made and those declined (the full path then runs)."""

    def __init__(self, real):
        self.real, self.taken, self.declined = real, 0, 0

    def __call__(self, *args, **kwargs):
        job = self.real(*args, **kwargs)
        if job is None:
            self.declined += 1
        else:
            self.taken += 1
        return job


def _three_ways(tmp: Path, first: xr.Dataset, steps: list[xr.Dataset], monkeypatch, *, fmt: int,
                encoding: dict | None = None, **kwargs) -> _Spy:
    """Write ``first`` then append ``steps`` lean, full and with xarray; assert all agree; return the spy."""
    lean, full, ref = (tmp / f"{k}.zarr" for k in ("lean", "full", "xarray"))
    for path in (lean, full):
        pz.to_zarr(first, str(path), encoding=encoding, zarr_format=fmt)
    # xarray's oracle gets the values in memory (it refuses dask chunks that straddle zarr chunks).
    first.load().to_zarr(str(ref), encoding=encoding, zarr_format=fmt, consolidated=True)
    spy = _Spy(run_append._lean_append)
    for step in steps:
        monkeypatch.setattr(run_append, "_lean_append", spy)
        pz.append(step, str(lean), "time", **kwargs)
        monkeypatch.setattr(run_append, "_lean_append", lambda *a, **k: None)
        pz.append(step, str(full), "time", **kwargs)
        step.load().to_zarr(str(ref), append_dim="time", consolidated=True)
    monkeypatch.undo()
    got, want, xarrays = (xr.open_zarr(str(p)).load() for p in (lean, full, ref))
    xr.testing.assert_identical(got, want)
    xr.testing.assert_identical(got, xarrays)
    assert _stored_bytes(lean) == _stored_bytes(full)
    return spy


@st.composite
def lean_case(draw):
    fmt = draw(st.sampled_from([2, 3]))
    nvars = draw(st.integers(1, 3))
    dtypes = [draw(st.sampled_from(["f4", "f8"])) for _ in range(nvars)]
    nx = draw(st.integers(1, 7))
    tchunk, xchunk = draw(st.integers(1, 5)), draw(st.integers(1, nx))
    first_len = draw(st.integers(2, 9))
    step_lens = draw(st.lists(st.integers(1, 7), min_size=1, max_size=3))
    datetimes = draw(st.booleans())
    nan_rate = draw(st.sampled_from([0.0, 0.3]))
    attrs = draw(st.sampled_from([{}, {"units": "K", "long_name": "air temperature"}]))
    dask_chunk = draw(st.one_of(st.none(), st.integers(1, 7)))
    # a variable without the append dimension (the same in every step), verified on the lean path
    static = draw(st.sampled_from([None, "f8", "i2", "bool"]))
    # the first variable stored packed (int16 with a scale factor and a fill value, as ERA5 netCDF files are)
    packed = draw(st.booleans())
    return fmt, dtypes, nx, tchunk, xchunk, first_len, step_lens, datetimes, nan_rate, attrs, dask_chunk, static, packed


def _dataset(start: int, n: int, dtypes, nx: int, datetimes: bool, nan_rate: float, attrs: dict,
             dask_chunk: int | None, seed: int, static: str | None = None) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    data = {}
    if static is not None:
        fixed = np.random.default_rng(seed // 10).standard_normal(nx) * 10
        data["s"] = xr.Variable(("x",), fixed > 0 if static == "bool" else fixed.astype(static), {"units": "m"})
    for i, dt in enumerate(dtypes):
        values = rng.standard_normal((n, nx)).astype(dt)
        values[rng.random((n, nx)) < nan_rate] = np.nan
        data[f"v{i}"] = xr.Variable(("time", "x"), values, attrs)
    labels = (pd.date_range("2001-01-01", periods=n, freq="6h") + pd.Timedelta(hours=6 * start) if datetimes
              else np.arange(start, start + n, dtype="i8") * 10)
    ds = xr.Dataset(data, coords={"time": labels})
    return ds.chunk({"time": dask_chunk}) if dask_chunk else ds


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=lean_case())
def test_lean_appends_store_what_the_full_path_and_xarray_store(case, monkeypatch):
    fmt, dtypes, nx, tchunk, xchunk, first_len, step_lens, datetimes, nan_rate, attrs, dask_chunk, static, packed = case
    seed = next(_counter)
    make = lambda start, n, k: _dataset(start, n, dtypes, nx, datetimes, nan_rate, attrs, dask_chunk,  # noqa: E731
                                        seed * 10 + k, static)
    first = make(0, first_len, 0)
    steps, start = [], first_len
    for k, n in enumerate(step_lens, 1):
        steps.append(make(start, n, k))
        start += n
    encoding = {f"v{i}": {"chunks": (tchunk, xchunk)} for i in range(len(dtypes))}
    if packed:
        encoding["v0"].update({"dtype": "i2", "scale_factor": 0.01, "add_offset": 1.0, "_FillValue": -32767})
    with tempfile.TemporaryDirectory() as tmp:
        spy = _three_ways(Path(tmp), first, steps, monkeypatch, fmt=fmt, encoding=encoding)
    assert spy.taken == len(steps) and spy.declined == 0


def _plain(start: int, n: int, **extra) -> xr.Dataset:
    values = (np.arange(start, start + n)[:, None] + np.arange(4)[None, :] / 10).astype("f4")
    times = pd.date_range("2001-01-01", periods=n, freq="D") + pd.Timedelta(days=start)
    return xr.Dataset({"v": (("time", "x"), values), **extra}, coords={"time": times})


def _with_static(start: int, n: int) -> xr.Dataset:
    return _plain(start, n).assign_coords(lat=("x", np.linspace(-10, 10, 4)))


def _int_data(start: int, n: int) -> xr.Dataset:
    return _plain(start, n).assign(k=(("time", "x"), np.full((n, 4), start, dtype="i4")))


def _with_statics(start: int, n: int) -> xr.Dataset:
    """Variables without the append dimension of the kinds CF files carry: coordinates (one with NaN), a
    0-d grid mapping, a boolean mask, an integer field."""
    lat = np.linspace(-10, 10, 4)
    lat[2] = np.nan
    return _with_static(start, n).assign_coords(lon=("x", lat)).assign(
        crs=((), np.int32(0), {"grid_mapping_name": "latitude_longitude"}),
        land=("x", np.array([True, False, True, True])), zone=("x", np.arange(4, dtype="i2")))


def _with_strings(start: int, n: int) -> xr.Dataset:
    """String statics: a 0-d coordinate (ERA5's ``expver``) and a label per ``x``."""
    return _with_static(start, n).assign_coords(expver="0001", site=("x", np.array(["a", "bb", "ccc", "d"])))


def _packed_static(start: int, n: int) -> xr.Dataset:
    return _plain(start, n).assign(orog=("x", np.array([0.0, 1.5, 3.0, 4.5])))


LEAN_STATICS = {
    # verified from their stored values (read plainly), then left as stored
    "static coordinate": (_with_static, None),
    "statics of several kinds": (_with_statics, None),
    "string statics": (_with_strings, None),
    # encoded by xarray's encoder with the stored encoding (the variables alone opened as xarray opens them)
    "int variable": (_int_data, None),
    # (a fill value of -1 here would be the packed code of 0.3: refused, it would read back as missing)
    "scale_factor": (_plain, {"v": {"scale_factor": 0.5, "add_offset": 1.0, "dtype": "i2", "_FillValue": -32768}}),
    "packed with statics": (_with_statics, {"v": {"scale_factor": 0.01, "dtype": "i2", "_FillValue": -32767}}),
}

NOT_LEAN = {
    # a static variable whose stored values xarray decodes (scaled): compared as xarray reads it
    "packed static": (_packed_static, {"orog": {"scale_factor": 0.5, "dtype": "i2", "_FillValue": -1}}, {}),
}


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("kind", sorted(NOT_LEAN))
def test_other_appends_take_the_full_path_and_agree(tmp_path, monkeypatch, fmt, kind):
    make, encoding, kwargs = NOT_LEAN[kind]
    spy = _three_ways(tmp_path, make(0, 5), [make(5, 3), make(8, 2)], monkeypatch, fmt=fmt, encoding=encoding,
                      **kwargs)
    assert spy.taken == 0 and spy.declined == 2


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("kind", sorted(LEAN_STATICS))
@pytest.mark.parametrize("static", ["verify", "ignore"])
def test_appends_with_static_variables_take_the_lean_path_and_agree(tmp_path, monkeypatch, fmt, kind, static):
    make, encoding = LEAN_STATICS[kind]
    spy = _three_ways(tmp_path, make(0, 5), [make(5, 3), make(8, 2)], monkeypatch, fmt=fmt, encoding=encoding,
                      static=static)
    assert spy.taken == 2 and spy.declined == 0


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("kind", ["number", "string"])
def test_a_changed_static_variable_is_refused_or_kept_as_the_full_path_does(tmp_path, monkeypatch, fmt, kind):
    make = _with_statics if kind == "number" else _with_strings
    changed = make(5, 3)
    if kind == "number":
        changed["zone"] = ("x", np.array([0, 1, 7, 3], dtype="i2"))
    else:
        changed = changed.assign_coords(site=("x", np.array(["a", "bb", "cxc", "d"])))
    name_changed = "zone" if kind == "number" else "site"
    for name in ("lean", "full"):
        pz.to_zarr(make(0, 5), str(tmp_path / f"{name}.zarr"), zarr_format=fmt)
    errors, spies = {}, {}
    for name in ("lean", "full"):
        spies[name] = _Spy(run_append._lean_append if name == "lean" else (lambda *a, **k: None))
        monkeypatch.setattr(run_append, "_lean_append", spies[name])
        path = str(tmp_path / f"{name}.zarr")
        with pytest.raises(AppendError) as info:
            pz.append(changed, path, "time")
        errors[name] = str(info.value).replace(path, "STORE")
        assert xr.open_zarr(path).sizes["time"] == 5  # nothing written
        pz.append(changed, path, "time", static="ignore")  # the stored zone stands
        monkeypatch.undo()
    assert errors["lean"] == errors["full"] and f"'{name_changed}' has no 'time' dimension and differs" in errors["lean"]
    assert spies["lean"].declined == 1 and spies["lean"].taken == 1
    got, want = (xr.open_zarr(str(tmp_path / f"{n}.zarr")).load() for n in ("lean", "full"))
    xr.testing.assert_identical(got, want)
    np.testing.assert_array_equal(got[name_changed].values, make(0, 1)[name_changed].values)
    assert _stored_bytes(tmp_path / "lean.zarr") == _stored_bytes(tmp_path / "full.zarr")


@pytest.mark.parametrize("calendar", ["noleap", "360_day"])
def test_cftime_calendars_take_the_full_path(tmp_path, monkeypatch, calendar):
    times = xr.date_range("2001-01-01", periods=8, freq="D", calendar=calendar, use_cftime=True)
    ds = xr.Dataset({"v": (("time", "x"), np.arange(32, dtype="f4").reshape(8, 4))}, coords={"time": times})
    spy = _three_ways(tmp_path, ds.isel(time=slice(0, 5)), [ds.isel(time=slice(5, 8))], monkeypatch, fmt=3)
    assert spy.taken == 0 and spy.declined == 1


def test_a_first_label_before_1678_takes_the_full_path(tmp_path, monkeypatch):
    # Decoded by xarray as cftime objects (the first label is out of datetime64[ns]'s range).
    raw = xr.Dataset({"v": (("time", "x"), np.zeros((3, 2), "f4"))},
                     coords={"time": ("time", np.array([-150000, 10, 20]), {"units": "days since 2000-01-01",
                                                                            "calendar": "standard"})})
    path = tmp_path / "s.zarr"
    raw.to_zarr(str(path), consolidated=True)
    stored = xr.open_zarr(str(path))
    assert stored.time.dtype == object  # cftime, as xarray decodes it
    after = np.array([stored.time.values[-1] + datetime.timedelta(days=1)], dtype=object)
    step = xr.Dataset({"v": (("time", "x"), np.ones((1, 2), "f4"))}, coords={"time": after})
    spy = _Spy(run_append._lean_append)
    monkeypatch.setattr(run_append, "_lean_append", spy)
    pz.append(step, str(path), "time")
    assert spy.taken == 0 and spy.declined == 1
    assert xr.open_zarr(str(path)).sizes["time"] == 4


def test_labels_at_or_before_the_last_stored_one_take_the_full_path(tmp_path, monkeypatch):
    # repeat="skip" (the default): identical rows at stored labels are compared and skipped there.
    spy = _three_ways(tmp_path, _plain(0, 5), [_plain(5, 3)], monkeypatch, fmt=3)
    assert spy.taken == 1
    path = tmp_path / "lean.zarr"
    spy = _Spy(run_append._lean_append)
    monkeypatch.setattr(run_append, "_lean_append", spy)
    result = pz.append(_plain(6, 4), str(path), "time")  # 6, 7 are stored (identical): skipped
    assert spy.declined == 1 and result.skipped == 2 and xr.open_zarr(str(path)).sizes["time"] == 10


@pytest.mark.parametrize("fmt", [2, 3])
def test_refusals_are_the_full_paths(tmp_path, monkeypatch, fmt):
    for name in ("lean", "full"):
        pz.to_zarr(_plain(0, 5), str(tmp_path / f"{name}.zarr"), zarr_format=fmt)
    unordered = _plain(5, 3).isel(time=[0, 2, 1])
    gap = _plain(7, 2)
    errors = {}
    for name, lean in (("lean", True), ("full", False)):
        if not lean:
            monkeypatch.setattr(run_append, "_lean_append", lambda *a, **k: None)
        path = str(tmp_path / f"{name}.zarr")
        got = []
        for ds, kwargs in ((unordered, {}), (gap, {"append_step": "1D"})):
            with pytest.raises(AppendError) as info:
                pz.append(ds, path, "time", **kwargs)
            got.append((type(info.value), str(info.value).replace(path, "STORE")))
        errors[name] = got
        assert xr.open_zarr(path).sizes["time"] == 5  # nothing written
    assert errors["lean"] == errors["full"]


def test_an_append_step_is_checked_on_the_lean_path(tmp_path, monkeypatch):
    spy = _three_ways(tmp_path, _plain(0, 5), [_plain(5, 2), _plain(7, 1)], monkeypatch, fmt=3, append_step="1D")
    assert spy.taken == 2


def test_datetime64_labels_onto_a_store_xarray_reads_as_cftime_are_refused_as_the_full_path_refuses(tmp_path,
                                                                                                     monkeypatch):
    # Only the first stored label is out of datetime64[ns]'s range: the last two alone would decode
    # as datetime64 and let the lean path take labels xarray cannot compare with the stored ones.
    raw = xr.Dataset({"v": (("time", "x"), np.zeros((3, 2), "f4"))},
                     coords={"time": ("time", np.array([-150000, 10, 20]), {"units": "days since 2000-01-01",
                                                                            "calendar": "standard"})})
    errors = []
    for name, lean in (("lean", True), ("full", False)):
        path = tmp_path / f"{name}.zarr"
        raw.to_zarr(str(path), consolidated=True)
        spy = _Spy(run_append._lean_append)
        monkeypatch.setattr(run_append, "_lean_append", spy if lean else (lambda *a, **k: None))
        step = xr.Dataset({"v": (("time", "x"), np.ones((1, 2), "f4"))},
                          coords={"time": np.array(["2000-02-01"], dtype="datetime64[ns]")})
        with pytest.raises(Exception) as info:
            pz.append(step, str(path), "time")
        errors.append((type(info.value), str(info.value).replace(str(path), "STORE")))
        assert not lean or spy.declined == 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert xr.open_zarr(str(path)).sizes["time"] == 3
    assert errors[0] == errors[1]


@pytest.mark.parametrize("make", [_plain, _with_statics])
def test_an_empty_append_takes_the_full_path(tmp_path, monkeypatch, make):
    # No labels to compare with the stored ones: the full path decides (with statics, the lean checks
    # used to reach the label comparison and fail on the empty labels).
    path = str(tmp_path / "s.zarr")
    pz.to_zarr(make(0, 5), path)
    spy = _Spy(run_append._lean_append)
    monkeypatch.setattr(run_append, "_lean_append", spy)
    before = _stored_bytes(tmp_path / "s.zarr")
    try:
        pz.append(make(5, 1).isel(time=slice(0, 0)), path, "time")
    except AppendError:
        pass  # refused before writing: nothing may change either way
    assert spy.taken == 0
    assert _stored_bytes(tmp_path / "s.zarr") == before
    xr.testing.assert_identical(xr.open_zarr(path).load(), make(0, 5))


@pytest.mark.parametrize("static", ["verify", "ignore"])
def test_another_grid_is_refused_under_either_static_policy_as_the_full_path_refuses_it(tmp_path, monkeypatch, static):
    # x is an index coordinate here: rows on shifted labels would be stored on the wrong grid.
    def gridded(start, n, shift=0.0):
        return _plain(start, n).assign_coords(x=np.arange(4) * 0.5 + shift)

    errors = {}
    for name in ("lean", "full"):
        path = str(tmp_path / f"{name}.zarr")
        pz.to_zarr(gridded(0, 5), path)
        spy = _Spy(run_append._lean_append if name == "lean" else (lambda *a, **k: None))
        monkeypatch.setattr(run_append, "_lean_append", spy)
        with pytest.raises(SchemaMismatchError) as info:
            pz.append(gridded(5, 3, shift=0.1), path, "time", static=static)
        errors[name] = str(info.value)
        monkeypatch.undo()
        xr.testing.assert_identical(xr.open_zarr(path).load(), gridded(0, 5))  # nothing written
        pz.append(gridded(5, 3), path, "time", static=static)  # the stored grid: appended (lean for "lean")
    assert errors["lean"] == errors["full"] and "coordinate differs from the stored one" in errors["lean"]
    assert _stored_bytes(tmp_path / "lean.zarr") == _stored_bytes(tmp_path / "full.zarr")
