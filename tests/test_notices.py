"""zarr's notices about deliberate choices stay out of users' output; real caveats are shown once per call."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from append_helpers import warnings_of_run
from zarr.errors import UnstableSpecificationWarning

import parallelzarr as pz


def _files(root: Path) -> str:
    ds = xr.Dataset(
        {"t": (("time", "x"), np.random.default_rng(0).random((48, 10), dtype="f4")),
         "lsm": (("x",), np.ones(10)), "expver": ((), np.array("0001"))},
        coords={"time": pd.date_range("2020", periods=48, freq="h"), "x": np.arange(10)},
    )
    ds.isel(time=slice(0, 24)).to_netcdf(root / "a.nc")
    ds.isel(time=slice(24, None)).to_netcdf(root / "b.nc")
    return str(root / "*.nc")


def _zarr_warns_for_fixed_width() -> bool:
    """Whether this zarr warns when it stores fixed-width strings in zarr v3."""
    import zarr

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zarr.create_array(zarr.storage.MemoryStore(), shape=(), dtype="<U4", zarr_format=3)
    return any(issubclass(w.category, UnstableSpecificationWarning) for w in caught)


def test_convert_says_only_the_fixed_width_caveat_once(tmp_path: Path) -> None:
    _files(tmp_path)
    shown = warnings_of_run("""
        import parallelzarr as pz
        pz.to_zarr("*.nc", "o.zarr")
    """, str(tmp_path))
    shown = [w for w in shown if w[0] != "DeprecationWarning"]  # hidden from users by Python's defaults
    # zarr's own caveat (its category and text, so filters written for it apply), once per data type,
    # where this zarr has it (zarr 3.1 does; 3.4 no longer warns)
    expected = ["UnstableSpecificationWarning"] if _zarr_warns_for_fixed_width() else []
    assert [c for c, _ in shown] == expected, shown
    if expected:
        assert "FixedLengthUTF32(length=4" in shown[0][1]
    with xr.open_zarr(tmp_path / "o.zarr") as out:
        assert str(out["expver"].values) == "0001"


def test_zarr_format_2_has_no_caveat_and_callers_filters_apply(tmp_path: Path) -> None:
    source = _files(tmp_path)
    shown = warnings_of_run("""
        import parallelzarr as pz
        pz.to_zarr("*.nc", "v2.zarr", zarr_format=2)
    """, str(tmp_path))
    assert [w for w in shown if w[0] != "DeprecationWarning"] == []
    if not _zarr_warns_for_fixed_width():
        return
    # The caveat is re-raised under the caller's own filters: an "error" filter makes it an error.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnstableSpecificationWarning)
        with pytest.raises(UnstableSpecificationWarning):
            pz.to_zarr(source, str(tmp_path / "v3.zarr"))
