"""A region write whose data carries index labels other than the stored ones at its slices is refused.

xarray drops index coordinates from a region write and writes the data where the slices say, so a job
that computed its slice one step off stores hour 05:00's rows under 04:00, silently. parallelzarr
compares the labels first (``inputs/datasets.check_region_labels``); equal labels are left as stored.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import snapshot

import parallelzarr as pz
from parallelzarr.errors import RegionError

TIMES = pd.date_range("2000-01-01", periods=8, freq="h")


def _store(tmp_path: Path) -> str:
    path = str(tmp_path / "s.zarr")
    xr.Dataset({"v": (("time", "x"), np.zeros((8, 3), "f4"))},
               coords={"time": TIMES, "x": [10, 20, 30]}).to_zarr(path, encoding={"v": {"chunks": (2, 3)}})
    return path


def _rows(start: int, stop: int, x: list[int] | None = None) -> xr.Dataset:
    return xr.Dataset({"v": (("time", "x"), np.full((stop - start, 3), start + 1, "f4"))},
                      coords={"time": TIMES[start:stop], "x": x or [10, 20, 30]})


def test_labels_one_step_off_the_slice_are_refused(tmp_path: Path) -> None:
    path = _store(tmp_path)
    before = snapshot(path)
    with pytest.raises(RegionError, match=r"label 0 is 2000-01-01 05:00:00, the store has 2000-01-01 04:00:00") as info:
        pz.to_zarr(_rows(5, 7), path, region={"time": slice(4, 6)})
    assert isinstance(info.value, ValueError) and "'auto'" in str(info.value)
    assert snapshot(path) == before


def test_xarray_itself_writes_them_under_the_other_labels(tmp_path: Path) -> None:
    """What the refusal prevents (if xarray starts refusing, the README and this test must change)."""
    path = _store(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _rows(5, 7).to_zarr(path, region={"time": slice(4, 6), "x": slice(None)})
    assert float(xr.open_zarr(path).v.sel(time=TIMES[4])[0]) == 6.0  # hour 5's rows under 04:00


@pytest.mark.parametrize("region", [{"time": slice(4, 6)}, {"time": slice(4, 6), "x": slice(None)}, "auto"])
def test_the_stored_labels_write_the_data_and_keep_the_index(tmp_path: Path, region: object) -> None:
    path = _store(tmp_path)
    pz.to_zarr(_rows(4, 6), path, region=region)
    got = xr.open_zarr(path).load()
    assert (got.indexes["time"] == TIMES).all()
    np.testing.assert_array_equal(got.v.values[4:6], 5.0)
    np.testing.assert_array_equal(got.v.values[[0, 1, 2, 3, 6, 7]], 0.0)


def test_another_grid_off_the_region_is_refused(tmp_path: Path) -> None:
    path = _store(tmp_path)
    before = snapshot(path)
    with pytest.raises(RegionError, match="'x' labels"):
        pz.to_zarr(_rows(4, 6, x=[10, 20, 31]), path, region={"time": slice(4, 6)})
    assert snapshot(path) == before
    # auto places by the labels of every dimension: 31 is not stored.
    with pytest.raises(KeyError, match="31"):
        pz.to_zarr(_rows(4, 6, x=[10, 20, 31]), path, region="auto")


def test_mode_a_with_other_labels_warns_naming_the_variables_it_relabels(tmp_path: Path) -> None:
    """``mode="a"`` overwrites index coordinates (xarray's own tests require it): a variable added on a
    time axis a day off relabels the stored ones. Written as xarray writes it, with a warning naming them."""
    days = pd.date_range("2000-01-01", periods=6, freq="D")
    ours, theirs = str(tmp_path / "ours.zarr"), str(tmp_path / "theirs.zarr")
    for p in (ours, theirs):
        xr.Dataset({"v": ("time", np.arange(6.0))}, coords={"time": days}).to_zarr(p)
    extra = xr.Dataset({"w": ("time", np.arange(6.0) * 10)}, coords={"time": days + pd.Timedelta("1D")})
    with pytest.warns(UserWarning, match=r"the values already stored in \['v'\] stay as they are, under the new labels"):
        pz.to_zarr(extra, ours, mode="a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra.to_zarr(theirs, mode="a")
    assert xr.open_zarr(ours).load().identical(xr.open_zarr(theirs).load())
    with warnings.catch_warnings():  # on the stored labels: nothing relabelled, no warning
        warnings.simplefilter("error", UserWarning)
        pz.to_zarr(extra.assign_coords(time=days + pd.Timedelta("1D")).rename(w="u"), ours, mode="a")


def test_an_xarray_style_append_on_a_shifted_grid_warns_and_pz_append_refuses(tmp_path: Path) -> None:
    """``to_zarr(append_dim=...)`` overwrites the other index coordinates (xarray's tests require it),
    relabelling the rows already stored: it warns. ``pz.append`` refuses another grid."""
    def step(i: int, lat0: float = 0.0) -> xr.Dataset:
        times = pd.date_range("2000-01-01", periods=2, freq="h") + pd.Timedelta(hours=2 * i)
        return xr.Dataset({"v": (("time", "lat"), np.full((2, 3), float(i)))},
                          coords={"time": times, "lat": np.arange(3) + lat0})

    path = str(tmp_path / "s.zarr")
    step(0).to_zarr(path)
    before = snapshot(path)
    with pytest.raises(ValueError, match="lat"):
        pz.append(step(1, 0.5), path, "time")
    assert snapshot(path) == before
    with pytest.warns(UserWarning, match=r"overwrites 'lat' with other labels.*already stored in \['v'\]"):
        pz.to_zarr(step(1, 0.5), path, append_dim="time")
    np.testing.assert_array_equal(xr.open_zarr(path).lat.values, [0.5, 1.5, 2.5])
