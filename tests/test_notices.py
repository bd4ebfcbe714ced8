"""zarr's notices about deliberate choices stay out of users' output; real caveats are said once."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import parallelzarr as pz
from parallelzarr.io.notices import FixedWidthStringWarning


def _files(root: Path) -> str:
    ds = xr.Dataset(
        {"t": (("time", "x"), np.random.default_rng(0).random((48, 10), dtype="f4")),
         "lsm": (("x",), np.ones(10)), "expver": ((), np.array("0001"))},
        coords={"time": pd.date_range("2020", periods=48, freq="h"), "x": np.arange(10)},
    )
    ds.isel(time=slice(0, 24)).to_netcdf(root / "a.nc")
    ds.isel(time=slice(24, None)).to_netcdf(root / "b.nc")
    return str(root / "*.nc")


def test_convert_says_only_the_fixed_width_caveat_once(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pz.to_zarr(_files(tmp_path), str(tmp_path / "o.zarr"))
    shown = [(w.category.__name__, str(w.message)[:80]) for w in caught]
    assert [c for c, _ in shown] == ["FixedWidthStringWarning"], shown
    assert "zarr_format=2" in str(caught[0].message)  # says how to avoid it
    with xr.open_zarr(tmp_path / "o.zarr") as out:
        assert str(out["expver"].values) == "0001"


def test_zarr_format_2_has_no_caveat_and_callers_filters_apply(tmp_path: Path) -> None:
    source = _files(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pz.to_zarr(source, str(tmp_path / "v2.zarr"), zarr_format=2)
    assert caught == []
    # The caveat is re-raised under the caller's own filters: an "error" filter makes it an error.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FixedWidthStringWarning)
        with pytest.raises(FixedWidthStringWarning):
            pz.to_zarr(source, str(tmp_path / "v3.zarr"))
