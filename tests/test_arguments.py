"""Finding 6 of issue 11: arguments never vanish silently, and a file name is not data."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

import parallelzarr as pz
from parallelzarr.errors import DataTypeError, ParallelZarrError


def _ds() -> xr.Dataset:
    data = da.from_array(np.arange(24, dtype="f4").reshape(4, 6), chunks=(2, 3))
    return xr.Dataset({"t2m": (("time", "x"), data)}, coords={"time": np.arange(4)})


def _files(root: str) -> list[str]:
    out = []
    for d, _, names in os.walk(root):
        out.extend(os.path.join(d, n) for n in names)
    return sorted(out)


@pytest.mark.parametrize("bad", [{"group": "era5"}, {"consolidate": False}, {"safe_chunk": True}])
def test_to_zarr_unknown_keyword_is_type_error(tmp_path, bad):
    target = str(tmp_path / "g.zarr")
    with pytest.raises(TypeError, match=repr(next(iter(bad)))):
        pz.to_zarr(_ds(), target, **bad)
    assert not os.path.exists(target), "nothing may be written when an argument is refused"


def test_to_zarr_compute_keywords_still_pass(tmp_path):
    target = str(tmp_path / "ok.zarr")
    pz.to_zarr(_ds(), target, scheduler="threads", num_workers=2)
    np.testing.assert_array_equal(xr.open_zarr(target)["t2m"].values, _ds()["t2m"].values)


def test_unknown_keyword_on_an_existing_store_leaves_it_unchanged(tmp_path):
    target = str(tmp_path / "s.zarr")
    pz.to_zarr(_ds(), target)
    before = {f: open(f, "rb").read() for f in _files(target)}
    with pytest.raises(TypeError, match="'regoin'"):
        pz.to_zarr(_ds(), target, mode="r+", regoin={"time": slice(0, 2)})
    assert {f: open(f, "rb").read() for f in _files(target)} == before


def test_plan_write_unknown_keyword(tmp_path):
    with pytest.raises(TypeError, match="group"):
        pz.plan_write(_ds(), str(tmp_path / "p.zarr"), group="x")


@pytest.mark.parametrize("as_path", [str, os.fsencode, lambda p: __import__("pathlib").Path(p)])
def test_path_as_data_is_refused_with_a_pointer(tmp_path, as_path):
    src = tmp_path / "era5.nc"
    _ds().compute().to_netcdf(src)
    target = str(tmp_path / "f.zarr")
    with pytest.raises(DataTypeError, match="open_mfdataset") as info:
        pz.to_zarr(as_path(str(src)), target)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ParallelZarrError)
    assert "xr.open_dataset" in str(info.value)
    assert not os.path.exists(target)
    with pytest.raises(DataTypeError):
        pz.plan_write(str(src), target)


def test_numpy_string_array_is_still_data(tmp_path):
    # Refusing file names must not refuse real string arrays.
    target = str(tmp_path / "s.zarr")
    values = np.array(["a", "bc", "def"])
    pz.to_zarr(values, target)
    np.testing.assert_array_equal(zarr.open_array(target)[:], values)
