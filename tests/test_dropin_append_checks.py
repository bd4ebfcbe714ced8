"""The drop-in ``pz.to_zarr(ds, store, append_dim=...)`` skips opening the store for xarray's checks
only when the consolidated metadata shows those checks pass and nothing but rows is written
(``inputs/xarray_checks.nothing_for_xarray_to_check``).

Each case is appended by the drop-in and by ``xarray.Dataset.to_zarr(append_dim=...)`` onto twin
stores; they must read back identical (attributes included), and the drop-in must have opened the
store for xarray's checks exactly when the case is not plain.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import parallelzarr as pz

checks = importlib.import_module("parallelzarr.inputs.xarray_checks")
schema = importlib.import_module("parallelzarr.inputs.stored_schema")


def _step(i: int, attrs: dict | None = None, **extra: xr.DataArray) -> xr.Dataset:
    t = pd.date_range("2024-01-01", periods=4, freq="h") + pd.Timedelta(hours=4 * i)
    rng = np.random.default_rng(i)
    ds = xr.Dataset({"t2m": (("time", "y"), rng.normal(size=(4, 3)).astype("f4")),
                     "d2m": (("time", "y"), rng.normal(size=(4, 3)))},
                    coords={"time": t}, attrs={"source": "test", "version": 1} if attrs is None else attrs)
    return ds.assign(extra)


def _with_lsm(ds: xr.Dataset, value: float) -> xr.Dataset:
    return ds.assign(lsm=("y", np.full(3, value)))


def _with_label(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign(station=(("time",), np.array(["abc", "de", "f", "gh"])))


def _with_names(ds: xr.Dataset, expver: str = "0001") -> xr.Dataset:
    """A 0-d string coordinate (ERA5's ``expver``) and a string label per ``y``."""
    return ds.assign_coords(expver=expver, site=("y", np.array(["north", "mid", "s"])))


def test_a_wider_string_is_refused_as_xarray_refuses_it(tmp_path: Path) -> None:
    ours, ref = str(tmp_path / "ours.zarr"), str(tmp_path / "xarray.zarr")
    for path in (ours, ref):
        _with_label(_step(0)).to_zarr(path, zarr_format=3, consolidated=True)
    wider = _with_label(_step(1)).assign(station=(("time",), np.array(["abcd", "de", "f", "gh"])))
    assert checks.nothing_for_xarray_to_check(wider, ours, "time", None, None) is None
    with pytest.raises(ValueError, match="Mismatched dtypes for variable station") as info:
        pz.to_zarr(wider, ours, append_dim="time")
    with pytest.raises(ValueError, match="Mismatched dtypes for variable station"):
        wider.to_zarr(ref, append_dim="time", consolidated=True)
    assert "astype" in str(info.value)  # and how to fix it
    xr.testing.assert_identical(xr.open_zarr(ours).load(), _with_label(_step(0)))


def _with_coords(ds: xr.Dataset, lat: float = 0.0) -> xr.Dataset:
    """Static coordinates and a grid mapping, as CF files carry them."""
    return ds.assign_coords(lat=("y", np.array([lat, 1.5, np.nan]))).assign(crs=((), np.int32(0), {"grid_mapping_name": "x"}))


def _with_packed(ds: xr.Dataset, value: float) -> xr.Dataset:
    out = ds.assign(orog=("y", np.array([0.0, 1.5, value])))
    out.orog.encoding.update({"scale_factor": 0.5, "dtype": "i2", "_FillValue": -1})
    return out


#: name: (first write, appended step, which checks the drop-in runs):
#: "metadata" - xarray's checks from the consolidated metadata, static variables (if any) read plainly;
#: "statics opened" - the same, but the static variables opened as xarray opens them (decoded, or changed);
#: "full" - the store opened for xarray's checks.
CASES = {
    "plain": (_step(0), _step(1), "metadata"),
    "netcdf attributes ignored as xarray ignores them": (
        _step(0, {"source": "test", "_NCProperties": "version=2"}), _step(1, {"source": "test"}), "metadata"),
    "attributes changed": (_step(0), _step(1, {"source": "other"}), "full"),
    "array-valued attribute, same values": (
        _step(0, {"levels": [1, 2]}), _step(1, {"levels": np.array([1, 2])}), "metadata"),
    "array-valued attribute changed": (
        _step(0, {"levels": [1, 2]}), _step(1, {"levels": np.array([1, 3])}), "full"),
    "static variable changed": (_with_lsm(_step(0), 1.0), _with_lsm(_step(1), 2.0), "statics opened"),
    "static variable unchanged": (_with_lsm(_step(0), 1.0), _with_lsm(_step(1), 1.0), "metadata"),
    "static coordinates and a 0-d variable": (_with_coords(_step(0)), _with_coords(_step(1)), "metadata"),
    "static coordinate changed": (_with_coords(_step(0)), _with_coords(_step(1), lat=0.5), "statics opened"),
    "packed static variable unchanged": (_with_packed(_step(0), 3.0), _with_packed(_step(1), 3.0).drop_encoding(),
                                         "statics opened"),
    "packed static variable changed": (_with_packed(_step(0), 3.0), _with_packed(_step(1), 4.0).drop_encoding(),
                                       "statics opened"),
    "string variable of the stored width": (_with_label(_step(0)), _with_label(_step(1)), "metadata"),
    "string statics unchanged": (_with_names(_step(0)), _with_names(_step(1)), "metadata"),
    "string static changed": (_with_names(_step(0)), _with_names(_step(1), "0005"), "statics opened"),
}


@pytest.mark.parametrize("mode", ["a", "a-"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_dropin_append_matches_xarray_and_skips_only_plain_checks(tmp_path: Path, name: str, mode: str,
                                                                   monkeypatch) -> None:
    first, step, path = CASES[name]
    ours, ref = tmp_path / "ours.zarr", tmp_path / "xarray.zarr"
    first.to_zarr(str(ours), zarr_format=3, consolidated=True)
    first.to_zarr(str(ref), zarr_format=3, consolidated=True)
    opened, plainly = [], []
    real, real_statics = checks.check_append, schema.statics_as_stored
    monkeypatch.setattr(checks, "check_append", lambda *a, **k: opened.append(1) or real(*a, **k))
    monkeypatch.setattr(schema, "statics_as_stored", lambda *a, **k: plainly.append(real_statics(*a, **k)) or plainly[-1])
    pz.to_zarr(step, str(ours), mode=mode, append_dim="time")
    step.to_zarr(str(ref), mode=mode, append_dim="time", consolidated=True)
    taken = "full" if opened else "statics opened" if plainly and not plainly[-1] else "metadata"
    assert taken == path
    got, want = xr.open_zarr(str(ours)).load(), xr.open_zarr(str(ref)).load()
    xr.testing.assert_identical(got, want)


def test_a_new_variable_along_append_dim_is_refused_where_xarray_leaves_the_store_unreadable(tmp_path: Path) -> None:
    # xarray writes q with the step's 4 rows beside a time of 8: open_zarr then fails with
    # "conflicting sizes for dimension 'time'". The drop-in refuses before writing anything.
    store = str(tmp_path / "s.zarr")
    _step(0).to_zarr(store, zarr_format=3, consolidated=True)
    step = _step(1).assign(q=(("time", "y"), np.ones((4, 3))))
    with pytest.raises(ValueError, match=r"variable\(s\) \['q'\] are not in the store"):
        pz.to_zarr(step, store, append_dim="time")
    xr.testing.assert_identical(xr.open_zarr(store).load(), _step(0))


@pytest.mark.parametrize("change", ["transposed", "resized"])
def test_other_dimensions_changed_take_xarrays_checks(tmp_path: Path, change: str) -> None:
    ours, ref = str(tmp_path / "ours.zarr"), str(tmp_path / "xarray.zarr")
    for path in (ours, ref):
        _step(0).to_zarr(path, zarr_format=3, consolidated=True)
    step = _step(1).transpose("y", "time") if change == "transposed" else _step(1).isel(y=slice(0, 2))
    assert not checks.nothing_for_xarray_to_check(step, ours, "time", None, None)
    if change == "resized":
        with pytest.raises(ValueError, match="already exists with different dimension sizes"):
            pz.to_zarr(step, ours, append_dim="time")
        xr.testing.assert_identical(xr.open_zarr(ours).load(), _step(0))
    else:  # xarray writes it in the stored order
        pz.to_zarr(step, ours, append_dim="time")
        step.to_zarr(ref, append_dim="time", consolidated=True)
        xr.testing.assert_identical(xr.open_zarr(ours).load(), xr.open_zarr(ref).load())


def test_encoding_for_a_stored_variable_is_refused_as_xarray_refuses_it(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    _step(0).to_zarr(store, zarr_format=3, consolidated=True)
    with pytest.raises(ValueError, match="variable 't2m' already exists, but encoding was provided"):
        pz.to_zarr(_step(1), store, append_dim="time", encoding={"t2m": {"dtype": "f8"}})
    assert xr.open_zarr(store).sizes["time"] == 4


def test_unconsolidated_stores_take_the_full_checks(tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    _step(0).to_zarr(store, zarr_format=3, consolidated=False)
    assert not checks.nothing_for_xarray_to_check(_step(1), store, "time", None, None)
    pz.to_zarr(_step(1), store, append_dim="time")
    assert xr.open_zarr(store, consolidated=False).sizes["time"] == 8
