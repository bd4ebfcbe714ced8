"""The append opens its dimension's CF datetimes undecoded and decodes them from the labels at the
ends (parallelzarr.inputs.stored_times): what it gets must be what xarray's own open gives."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import parallelzarr as pz
from parallelzarr.inputs.stored_times import decode_from_ends, undecoded_open_kwargs
from parallelzarr.run.append import _open_for_append
from parallelzarr.store.resolve import resolve_store


def _hourly(n: int, start: str = "2000-01-01") -> Any:
    return pd.date_range(start, periods=n, freq="h")


def _cases() -> dict[str, tuple[Any, dict[str, Any]]]:
    """Stored time labels and their encoding, as users' stores hold them."""
    return {
        "hours, standard": (_hourly(9), {}),
        "days as float": (pd.date_range("2000-01-01", periods=7, freq="12h"),
                          {"units": "days since 2000-01-01", "dtype": "float64"}),
        "noleap cftime": (xr.date_range("2000-02-25", periods=8, freq="D", calendar="noleap", use_cftime=True), {}),
        "360_day cftime": (xr.date_range("2001-01-01", periods=5, freq="D", calendar="360_day", use_cftime=True), {}),
        # The first label is out of datetime64[ns]'s range, the last ones are not: xarray decides
        # the dtype from the first and the last, so must the decode from the ends.
        "first label before 1678": (
            [cftime.DatetimeProlepticGregorian(1600, 1, 1), cftime.DatetimeProlepticGregorian(1990, 1, 1),
             cftime.DatetimeProlepticGregorian(1990, 1, 2)],
            {"units": "days since 1600-01-01", "calendar": "proleptic_gregorian"}),
        "with a _FillValue": (_hourly(6), {"_FillValue": -1, "dtype": "int64"}),
        "one label": (_hourly(1), {}),
        "seconds since a late epoch": (_hourly(5, "2020-06-01"), {"units": "seconds since 2020-06-01T00:00:00"}),
    }


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("case", list(_cases()))
def test_the_stored_dimension_is_what_xarray_opens(tmp_path: Path, case: str, zarr_format: int) -> None:
    labels, enc = _cases()[case]
    ds = xr.Dataset({"v": ("time", np.arange(len(labels), dtype="f4"))}, coords={"time": labels})
    path = tmp_path / "s.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, zarr_format=zarr_format, consolidated=True, encoding={"time": enc} if enc else None)
        expected = xr.open_zarr(path, chunks=None)
        later = xr.Dataset({"v": ("time", np.zeros(1, dtype="f4"))}, coords={"time": [labels[-1] + timedelta(days=1)]})
        stored, ends = _open_for_append(later, resolve_store(str(path)), zarr_format, "time")
    got = stored.variables["time"]
    want = expected.variables["time"]
    assert got.dtype == want.dtype
    assert got.attrs == want.attrs
    assert got.encoding.keys() == want.encoding.keys()
    for key, value in want.encoding.items():  # NaN fill values compare unequal to themselves
        assert got.encoding[key] == value or (pd.isna(value) and pd.isna(got.encoding[key])), key
    assert np.array_equal(np.asarray(got.values), np.asarray(want.values))
    xr.testing.assert_identical(stored.drop_indexes("time", errors="ignore").load(), expected.drop_indexes("time").load())
    if len(labels) >= 2:  # the continuity checks' last two labels, read with the first
        assert ends is not None and list(ends) == list(np.asarray(want.values)[-2:])


def test_only_plain_cf_datetimes_are_decoded_from_the_ends(tmp_path: Path) -> None:
    """Numbers, masked or scaled times and a single label are left to xarray's own open."""
    path = tmp_path / "s.zarr"
    ds = xr.Dataset(coords={"time": _hourly(4), "step": np.arange(4), "masked": ("time", _hourly(4))})
    ds.to_zarr(path, zarr_format=3, consolidated=True, encoding={"masked": {"_FillValue": -1, "dtype": "int64"}})
    for name, decoded in (("time", True), ("step", False)):
        raw = xr.open_zarr(path, chunks=None, create_default_indexes=False, **undecoded_open_kwargs(name)).variables[name]
        assert (decode_from_ends(raw, name) is not None) is decoded
    raw = xr.open_zarr(path, chunks=None, create_default_indexes=False, **undecoded_open_kwargs("masked")).variables["masked"]
    assert decode_from_ends(raw, "masked") is None


@pytest.mark.parametrize("spelling", ["pz.append", "pz.to_zarr"])
@pytest.mark.parametrize("case", ["hours, standard", "noleap cftime", "360_day cftime", "first label before 1678",
                                  "with a _FillValue"])
def test_appends_onto_each_kind_of_time_match_xarrays(tmp_path: Path, case: str, spelling: str) -> None:
    """End to end: pz.append and the drop-in to_zarr onto each stored kind of time give what xarray's append gives.

    Several labels per append (up to 3): the order check compares cftime labels, whose differences
    are timedelta objects (it raised TypeError on them).
    """
    labels, enc = _cases()[case]
    n = len(labels)
    ds = xr.Dataset({"v": ("time", np.arange(n, dtype="f4"))}, coords={"time": labels})
    cut = max(1, n - 3)
    head, tail = ds.isel(time=slice(0, cut)), ds.isel(time=slice(cut, n))
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in (ours, theirs):
            head.to_zarr(p, zarr_format=3, consolidated=True, encoding={"time": enc} if enc else None)
        if spelling == "pz.append":
            pz.append(tail, str(ours), "time")
        else:
            pz.to_zarr(tail, str(ours), append_dim="time")
        tail.to_zarr(theirs, append_dim="time", consolidated=True)
        a, b = xr.open_zarr(ours).load(), xr.open_zarr(theirs).load()
    assert a.identical(b)
    assert a.time.encoding.get("units") == b.time.encoding.get("units")
