"""Ingest through the API (issue 16): sources, append steps, repeats (skip/overwrite, SIGKILL), late data,
static variables, content digests and progress bars. Real stores on disk, real processes."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from append_helpers import data_only, era5_set, era5_step, rows, warnings_of_run

import parallelzarr as pz
from parallelzarr.commit.appendlog import append_log
from parallelzarr.errors import AppendError, ParallelZarrError, SchemaMismatchError
from parallelzarr.inputs.ingest import row_checksums
from parallelzarr.inputs.sources import SourceError, SourceOptionError

MF = {"data_vars": "minimal", "coords": "minimal", "compat": "no_conflicts", "combine": "by_coords"}


# --- sources -------------------------------------------------------------------------------------------


def test_to_zarr_of_a_glob_or_a_list_matches_open_mfdataset(tmp_path: Path) -> None:
    paths = era5_set(tmp_path)
    # Closed before the next open: netCDF4 1.7.5 / HDF5 2.2 here segfault when a dataset is freed while
    # another one holds the same files (pure xarray too), which this test is not about.
    with xr.open_mfdataset(paths, **MF) as opened:
        ref = opened.load()
    gc.collect()
    pz.to_zarr(str(tmp_path / "nc" / "*.nc"), str(tmp_path / "glob.zarr"))
    pz.to_zarr([str(p) for p in paths], str(tmp_path / "list.zarr"))
    for name in ("glob.zarr", "list.zarr"):
        got = xr.open_zarr(tmp_path / name).load()
        xr.testing.assert_identical(got, ref)
        assert got.lsm.dims == ("latitude", "longitude")
    plan = pz.plan_write(str(tmp_path / "nc" / "*.nc"), str(tmp_path / "plan.zarr"))
    assert set(plan.variables) >= {"t2m", "u10", "lsm"} and not (tmp_path / "plan.zarr").exists()


def test_open_sources_options_and_errors(tmp_path: Path) -> None:
    era5_set(tmp_path, files=2)
    ds = pz.open_sources(str(tmp_path / "nc" / "*.nc"), variables=["u10"], preprocess=lambda d: d.assign(k=1))
    assert set(ds.data_vars) == {"u10", "k"} and ds.sizes["time"] == 48
    with pytest.raises(SourceOptionError, match="'nope'"):
        pz.open_sources(str(tmp_path / "nc" / "*.nc"), drop_variables="nope")
    with pytest.raises(SourceError, match="no input matches") as info:
        pz.open_sources(str(tmp_path / "missing" / "*.nc"))
    assert isinstance(info.value, OSError) and isinstance(info.value, ParallelZarrError)


def test_api_convert_warnings_are_only_zarrs_own_notices(tmp_path: Path) -> None:
    """The xarray/dask side of a convert warns about nothing; zarr's notices are what xarray shows too."""
    era5_set(tmp_path)
    caught = warnings_of_run("""
        import parallelzarr as pz
        pz.to_zarr(pz.open_sources("nc/*.nc"), "w.zarr")
    """, str(tmp_path))
    others = [m for c, m in caught if not (  # DeprecationWarnings are hidden from users by Python's defaults
        c == "DeprecationWarning" or "Consolidated metadata is currently not part" in m or "FixedLength" in m)]
    assert others == []
    assert (tmp_path / "w.zarr" / "zarr.json").exists()


# --- append step, gaps, late data ----------------------------------------------------------------------


@pytest.fixture
def hourly(tmp_path: Path) -> str:
    path = str(tmp_path / "h.zarr")
    pz.append(rows(0, 10, 4), path, "time", encoding={"temp": {"chunks": (4, 6)}})
    return path


def test_append_step_refuses_gaps_and_uneven_steps(hourly: str) -> None:
    with pytest.raises(AppendError, match=r"gap in 'time': 2 label\(s\) missing between 2020-01-01T09:00:00"):
        pz.append(rows(12, 3, 3), hourly, "time", append_step="1h")
    odd = rows(10, 2, 2).assign_coords(time=pd.to_datetime(["2020-01-01T10:00", "2020-01-01T10:30"]))
    with pytest.raises(AppendError, match="uneven 'time' step"):
        pz.append(odd, hourly, "time", append_step="1h", gaps="allow")
    inner = rows(10, 4, 4).isel(time=[0, 1, 3])
    with pytest.raises(AppendError, match="gap in 'time': 1 label"):
        pz.append(inner, hourly, "time", append_step="1h")
    assert xr.open_zarr(hourly).sizes["time"] == 10
    assert pz.append(rows(10, 3, 3), hourly, "time", append_step="1h").applied
    assert pz.append(rows(15, 2, 2), hourly, "time", append_step="1h", gaps="allow").applied
    assert xr.open_zarr(hourly).sizes["time"] == 15
    with pytest.raises(AppendError, match="not a time step"):
        pz.append(rows(17, 1, 1), hourly, "time", append_step="hourly")


def _noleap_days(start: str, n: int, freq: str = "D") -> xr.Dataset:
    time = xr.date_range(start, periods=n, freq=freq, calendar="noleap", use_cftime=True)
    ds = xr.Dataset({"tas": (("time", "x"), np.arange(n * 3, dtype="f4").reshape(n, 3))}, coords={"time": time})
    ds.time.encoding = {"units": "days since 1850-01-01", "calendar": "noleap"}
    return ds


def test_append_step_on_cftime_labels(tmp_path: Path) -> None:
    """A noleap calendar (CMIP-style data): its steps are timedelta objects; Feb 28 -> Mar 1 is one day."""
    store = str(tmp_path / "noleap.zarr")
    pz.to_zarr(_noleap_days("2003-02-26", 2), store)
    assert pz.append(_noleap_days("2003-02-28", 2), store, "time", append_step="1D").applied
    with pytest.raises(AppendError, match=r"gap in 'time': 3 label\(s\) missing between 2003-03-01"):
        pz.append(_noleap_days("2003-03-05", 2), store, "time", append_step="1D")
    with pytest.raises(AppendError, match="uneven 'time' step"):
        pz.append(_noleap_days("2003-03-02", 2, freq="12h"), store, "time", append_step="1D", gaps="allow")
    with pytest.raises(AppendError, match="not a time step"):
        pz.append(_noleap_days("2003-03-02", 2), store, "time", append_step="daily")
    assert xr.open_zarr(store).sizes["time"] == 4
    assert pz.append(_noleap_days("2003-03-05", 2), store, "time", append_step="1D", gaps="allow").applied
    assert [t.day for t in xr.open_zarr(store).time.values] == [26, 27, 28, 1, 5, 6]


def test_late_data_for_a_filled_gap_goes_in_with_a_region_write(hourly: str) -> None:
    """README recipe: append with the gap filled (missing values), write the late rows with region='auto'."""
    after = rows(12, 3, 3)
    full = pd.date_range("2020-01-01T10:00", "2020-01-01T14:00", freq="h")
    filled = after.reindex(time=full)  # 10:00 and 11:00 are NaN rows, ready for the late data
    pz.append(filled, hourly, "time", append_step="1h")
    with pytest.raises(AppendError, match="other content"):
        pz.append(rows(10, 2, 2), hourly, "time")  # the late rows differ from the stored NaN rows
    late = rows(10, 2, 2)
    pz.to_zarr(late.drop_vars(["elev", "x"]), hourly, region="auto")
    got = data_only(xr.open_zarr(hourly).load())
    xr.testing.assert_identical(got, rows(0, 15, 15).load())
    # the same late file again is now identical: skipped, nothing written
    again = pz.append(rows(10, 2, 2), hourly, "time")
    assert not again.applied and again.skipped == 2


def test_late_data_into_a_stored_jump_is_refused_with_the_recipe(hourly: str) -> None:
    pz.append(rows(12, 2, 2), hourly, "time", append_step="1h", gaps="allow")
    with pytest.raises(AppendError, match="late data for a gap cannot be appended.*Late data"):
        pz.append(rows(10, 2, 2), hourly, "time")


# --- repeats -------------------------------------------------------------------------------------------


def test_partly_repeated_identical_rows_are_skipped_and_the_rest_appended(hourly: str) -> None:
    res = pz.append(rows(7, 6, 2), hourly, "time")
    assert res.applied and res.skipped == 3 and res.offset == 10 and res.length == 3
    xr.testing.assert_identical(data_only(xr.open_zarr(hourly).load()), rows(0, 13, 13).load())


def test_explicit_append_id_reused_for_new_labels_is_refused(hourly: str) -> None:
    pz.append(rows(10, 2, 2), hourly, "time", append_id="batch-1")
    assert not pz.append(rows(10, 2, 2), hourly, "time", append_id="batch-1").applied
    with pytest.raises(AppendError, match="already recorded.*new append_id"):
        pz.append(rows(12, 2, 2), hourly, "time", append_id="batch-1")


def test_overwrite_rewrites_changed_rows_only(hourly: str) -> None:
    pz.append(rows(10, 4, 2), hourly, "time")
    new = rows(8, 8, 3)
    new["temp"] = new.temp.where(new.time != new.time[3], -1.0)  # 11:00 changed, 08-10 and 12-13 identical
    res = pz.append(new, hourly, "time", repeat="overwrite")
    assert res.overwritten == 1 and res.skipped == 5 and res.length == 2
    got = data_only(xr.open_zarr(hourly).load())
    expect = rows(0, 16, 16).load()
    expect["temp"] = expect.temp.where(expect.time != new.time[3].values, -1.0)
    xr.testing.assert_identical(got, expect)


OVERWRITE = """
import sys
sys.path.insert(0, {tests!r})
import parallelzarr as pz
from append_helpers import rows
new = rows(2, 12, 2)
new["temp"] = new.temp + 1000
new["wind"] = new.wind + 1000
pz.append(new, {path!r}, "time", repeat="overwrite", scheduler="threads", num_workers=2)
"""


@pytest.mark.parametrize("kill_after", [1, 3])
def test_overwrite_killed_midway_readers_see_old_or_new_and_the_rerun_finishes(tmp_path: Path, kill_after: int) -> None:
    path = str(tmp_path / "o.zarr")
    pz.append(rows(0, 14, 14), path, "time", encoding={"temp": {"chunks": (4, 6)}, "wind": {"chunks": (4, 6)}})
    old = data_only(xr.open_zarr(path).load())
    code = OVERWRITE.format(tests=os.path.dirname(__file__), path=path)
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PARALLELZARR_FAULT": f"write:{kill_after}"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    got = data_only(xr.open_zarr(path).load())
    for name in ("temp", "wind"):
        a, o = got[name].values, old[name].values
        assert np.all((a == o) | (a == o + 1000)), f"{name}: a value is neither old nor new"
    changed = bool((got.temp.values != old.temp.values).any())
    if changed:  # the old data is no longer what is stored: it must not be skipped as identical
        with pytest.raises(AppendError, match="other content"):
            pz.append(rows(2, 12, 2), path, "time")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = data_only(xr.open_zarr(path).load())
    np.testing.assert_array_equal(got.temp.values[2:], old.temp.values[2:] + 1000)
    np.testing.assert_array_equal(got.temp.values[:2], old.temp.values[:2])
    assert pz.repair(path).ok


# --- grids and static variables --------------------------------------------------------------------------


@pytest.fixture
def era5_store(tmp_path: Path) -> str:
    path = str(tmp_path / "e.zarr")
    pz.to_zarr(era5_step(pd.date_range("2024-01-01", periods=6, freq="h"), 1), path)
    return path


def _next(**kwargs):
    return era5_step(pd.date_range("2024-01-01T06:00", periods=2, freq="h"), 2, **kwargs)


def test_shifted_grid_is_refused_even_with_static_ignore(era5_store: str) -> None:
    for static in ("verify", "ignore"):
        with pytest.raises(SchemaMismatchError, match="'latitude' coordinate differs.*label 0 is 60.1"):
            pz.append(_next(lat_shift=0.1), era5_store, "time", static=static)
    assert xr.open_zarr(era5_store).sizes["time"] == 6
    # the stored hours again on the shifted grid: refused too, not skipped as "identical" content
    same_hours = era5_step(pd.date_range("2024-01-01", periods=6, freq="h"), 1, lat_shift=0.1)
    with pytest.raises(SchemaMismatchError, match="'latitude' coordinate differs"):
        pz.append(same_hours, era5_store, "time")
    with pytest.raises(AppendError, match="'lsm' has no 'time' dimension and differs"):
        pz.append(era5_step(pd.date_range("2024-01-01", periods=6, freq="h"), 1, lsm_flip=True), era5_store, "time")


@pytest.mark.parametrize("in_memory", [True, False])
def test_changed_static_variable_refused_in_memory_and_blockwise(era5_store: str, in_memory: bool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if not in_memory:  # the path for static variables above the in-memory limit
        monkeypatch.setattr(sys.modules["parallelzarr.run.append"], "STATIC_VERIFY_IN_MEMORY", 16)
    with pytest.raises(AppendError, match="'lsm' has no 'time' dimension and differs"):
        pz.append(_next(lsm_flip=True), era5_store, "time")
    with pytest.raises(AppendError, match="'expver' has no 'time'"):
        pz.append(_next(expver="0005"), era5_store, "time")
    assert pz.append(_next(lsm_flip=True), era5_store, "time", static="ignore").applied
    assert pz.append(era5_step(pd.date_range("2024-01-01T08:00", periods=1, freq="h"), 3), era5_store, "time").applied
    assert xr.open_zarr(era5_store).sizes["time"] == 9


def test_graph_append_records_carry_one_digest_per_label(era5_store: str) -> None:
    pz.append(_next(), era5_store, "time", progress=True)  # progress: through the graph, which digests as it writes
    (record,) = [e for e in append_log(zarr.storage.LocalStore(era5_store)) if e["offset"] == 6]
    assert len(record["digests"]) == 2 and len(set(record["digests"])) == 2


def test_row_checksums_do_not_depend_on_chunking() -> None:
    x = np.random.default_rng(1).standard_normal((9, 5, 7)).astype("f4")
    want = row_checksums(da.from_array(x, chunks=(9, 5, 7)), 0).compute()
    for chunks in [(1, 1, 1), (4, 2, 3), (2, 5, 7)]:
        np.testing.assert_array_equal(row_checksums(da.from_array(x, chunks=chunks), 0).compute(), want)
    y = x.copy()
    y[5, 4, 6] = np.nextafter(y[5, 4, 6], np.float32(10))  # one bit in one value
    got = row_checksums(da.from_array(y, chunks=(3, 3, 3)), 0).compute()
    assert list(np.flatnonzero(got != want)) == [5]


# --- progress ---------------------------------------------------------------------------------------------


def test_progress_bar_on_threads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pz.to_zarr(rows(0, 12, 3), str(tmp_path / "p.zarr"), progress=True)
    pz.append(rows(12, 6, 3), str(tmp_path / "p.zarr"), "time", progress=True)
    out = capsys.readouterr().out
    assert out.count("100% Completed") >= 2, out
    pz.to_zarr(rows(0, 12, 3), str(tmp_path / "q.zarr"))
    assert "Completed" not in capsys.readouterr().out


def test_progress_bar_on_distributed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        pz.to_zarr(rows(0, 12, 3), str(tmp_path / "d.zarr"), progress=True, scheduler=client)
        job = pz.rechunk(zarr.open_array(str(tmp_path / "d.zarr"), path="temp"), (12, 6), "64MB",
                         str(tmp_path / "r.zarr"))
        job.execute(progress=True, scheduler=client)
    out = capsys.readouterr().out
    assert out.count("100% Completed") >= 2, out
    with pytest.raises(TypeError, match="progress must be True or False"):
        pz.to_zarr(rows(0, 2, 2), str(tmp_path / "e.zarr"), progress="yes")
