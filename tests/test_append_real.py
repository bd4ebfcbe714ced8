"""Appends of ERA5-like netCDF files (issue 11, findings 2, 3 and 7).

Three files of 24 hourly steps: ``t2m`` float32, ``u10`` int16-packed (scale_factor, add_offset,
_FillValue), a static land-sea mask ``lsm (latitude, longitude)`` and a 0-d string coordinate
``expver``. ``xr.open_mfdataset`` with its default options broadcasts ``lsm`` along ``time``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from click.testing import CliRunner
from conftest import snapshot
from dask.delayed import Delayed

import parallelzarr as pz
from parallelzarr.cli import main
from parallelzarr.commit.appendlog import (
    LEGACY_LOG_ATTR,
    append_log,
    delete_record,
    is_recorded,
    read_record,
    write_record,
)
from parallelzarr.commit.journal import write_journal
from parallelzarr.commit.lease import acquire_lease
from parallelzarr.errors import AppendError, LeaseError, SchemaMismatchError, StoreError
from parallelzarr.reports.info import format_info, inspect_store
from parallelzarr.store.holders import process_start, this_holder
from parallelzarr.store.keys import LEASE_KEY, WRITE_KEY, read_json, write_json

NY, NX, STEPS = 12, 20, 24

pytestmark = [
    pytest.mark.filterwarnings("ignore:In a future version of xarray the default value for:FutureWarning"),
    pytest.mark.filterwarnings("ignore:endian-ness of dtype:UserWarning"),
]


def _era5_file(path: Path, k: int, steps: int = STEPS) -> Path:
    time = pd.date_range("2021-01-01", periods=steps, freq="h") + pd.Timedelta(hours=STEPS * k)
    rng = np.random.default_rng(k)
    u10 = (rng.standard_normal((steps, NY, NX)) * 5).astype("f4")
    u10[0, 0, 0] = np.nan  # a missing value: _FillValue in the file
    lsm = (np.add.outer(np.arange(NY), np.arange(NX)) % 3 == 0).astype("f4")
    ds = xr.Dataset(
        {
            "t2m": (("time", "latitude", "longitude"), (270 + rng.standard_normal((steps, NY, NX))).astype("f4"), {"units": "K"}),
            "u10": (("time", "latitude", "longitude"), u10, {"units": "m s**-1"}),
            "lsm": (("latitude", "longitude"), lsm, {"units": "(0 - 1)"}),
        },
        coords={"time": time, "latitude": np.linspace(60, 49, NY), "longitude": np.linspace(-10, 9, NX), "expver": "0001"},
        attrs={"Conventions": "CF-1.6", "history": "generated for tests"},
    )
    encoding = {
        "u10": {"dtype": "i2", "scale_factor": 0.001, "add_offset": 0.0, "_FillValue": -32767},
        "time": {"units": "hours since 1900-01-01", "calendar": "gregorian", "dtype": "i4"},
    }
    ds.to_netcdf(path, engine="netcdf4", encoding=encoding)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("era5")
    return [_era5_file(root / f"era5_{k}.nc", k) for k in range(3)]


def _lazy_lsm_store(files: list[Path], tmp_path: Path) -> str:
    """A store created from two files opened with open_mfdataset's defaults (lsm broadcast along time)."""
    path = str(tmp_path / "era5.zarr")
    with xr.open_mfdataset(files[:2]) as ds:
        assert ds["lsm"].dims == ("time", "latitude", "longitude")  # what users get by default
        pz.append(ds, path, "time", scheduler="threads")
    return path


def _open_ok(path: str, ntime: int) -> None:
    with xr.open_zarr(path) as out:
        assert out.sizes["time"] == ntime


# --- finding 2: an append must not leave arrays of unequal length --------------------------------


def test_static_variable_appended_without_the_append_dim_is_refused(files, tmp_path):
    path = _lazy_lsm_store(files, tmp_path)
    before = snapshot(tmp_path)
    with xr.open_dataset(files[2]) as one:  # lsm (latitude, longitude): no time
        with pytest.raises(SchemaMismatchError, match="'lsm' is stored with dimension 'time'") as err:
            pz.append(one, path, "time")
        assert isinstance(err.value, ValueError)
        message = str(err.value)
        assert "expand_dims(time=ds['time'])" in message and "data_vars='minimal'" in message
        assert snapshot(tmp_path) == before  # refused before any write
        _open_ok(path, 48)
        # The fix the message gives works, and readers open the result.
        one["lsm"] = one["lsm"].expand_dims(time=one["time"])
        assert pz.append(one, path, "time").applied
    _open_ok(path, 72)
    assert pz.repair(path).ok


def test_broadcast_variable_appended_to_a_static_one_is_refused(files, tmp_path):
    path = str(tmp_path / "static.zarr")
    with xr.open_dataset(files[0]) as first:
        pz.append(first, path, "time")
    before = snapshot(tmp_path)
    with xr.open_mfdataset(files[1:]) as rest:
        with pytest.raises(SchemaMismatchError, match="the appended 'lsm' has dimension 'time'.*data_vars='minimal'"):
            pz.append(rest, path, "time")
        with pytest.raises(SchemaMismatchError, match="data_vars='minimal'"):
            pz.plan_append(rest, path, "time")
    assert snapshot(tmp_path) == before
    with xr.open_mfdataset(files[1:], data_vars="minimal") as rest:
        assert pz.append(rest, path, "time").applied
    _open_ok(path, 72)


def test_repair_finds_arrays_of_unequal_length(files, tmp_path):
    """The state the old append left: t2m, u10 and time one file longer than lsm."""
    path = _lazy_lsm_store(files, tmp_path)
    group = zarr.open_group(path, mode="r+")
    for name in ("t2m", "u10", "time"):
        arr = group[name]
        arr.resize((72, *arr.shape[1:]))
    group["time"][48:] = group["time"][47] + np.arange(1, 25)
    zarr.consolidate_metadata(path)
    store = zarr.storage.LocalStore(path)
    write_record(store, {"id": "bad-append", "dim": "time", "offset": 48, "length": 24, "first": "2021-01-03T00",
                            "last": "2021-01-03T23", "time": "2025-01-01T00:00:00Z"})
    with pytest.raises(ValueError, match="conflicting sizes for dimension 'time'"):
        xr.open_zarr(path)

    report = pz.repair(path)
    text = str(report)
    assert not report.ok and "consistent" not in text
    assert "'time': 72 on t2m, time, u10; 48 on lsm" in text and "truncate=True" in text
    with pytest.raises(AppendError, match="inconsistent.*parallelzarr.repair"):
        pz.append(xr.open_dataset(files[2]), path, "time")
    res = CliRunner().invoke(main, ["repair", path])
    assert res.exit_code == 1 and "--truncate" in res.stdout

    report = pz.repair(path, truncate=True)
    assert report.ok, str(report)
    assert any("truncated t2m along 'time' from 72 to 48" in a for a in report.actions)
    assert any("forgot append bad-append" in a for a in report.actions)
    _open_ok(path, 48)
    # The forgotten append can be redone properly.
    with xr.open_mfdataset(files[1:]) as rest:
        assert pz.append(rest.isel(time=slice(24, None)), path, "time").applied
    _open_ok(path, 72)


# --- finding 3: the append log stays out of the user's data --------------------------------------


def _root_metadata_bytes(path: str) -> int:
    return os.path.getsize(os.path.join(path, "zarr.json"))


def test_append_log_is_not_user_data_and_costs_no_metadata(files, tmp_path):
    path = _lazy_lsm_store(files, tmp_path)
    with xr.open_mfdataset(files) as ds:
        tail = ds.isel(time=slice(48, None))
        sizes = [_root_metadata_bytes(path)]
        for start in range(0, 24, 3):  # eight appends of three hours
            assert pz.append(tail.isel(time=slice(start, start + 3)), path, "time").applied
            sizes.append(_root_metadata_bytes(path))
            _open_ok(path, 48 + start + 3)
    # Only the shape digits of the consolidated metadata may change (the old log grew ~183 B each).
    assert max(sizes) - min(sizes) < 16, sizes
    with xr.open_zarr(path) as out:
        assert LEGACY_LOG_ATTR not in out.attrs
        assert out.attrs == {"Conventions": "CF-1.6", "history": "generated for tests"}
        out.isel(time=slice(0, 2)).to_netcdf(tmp_path / "x.nc")
    with xr.open_dataset(tmp_path / "x.nc") as back:
        assert back.sizes["time"] == 2 and set(back.data_vars) == {"t2m", "u10", "lsm"}
    log = append_log(zarr.storage.LocalStore(path))
    assert [e["offset"] for e in log] == [0, *range(48, 72, 3)]
    assert [e["offset"] for e in inspect_store(path)["appends"]] == [0, *range(48, 72, 3)]
    again = pz.append(xr.open_mfdataset(files).isel(time=slice(69, 72)), path, "time")
    assert not again.applied  # idempotent as before


def test_legacy_log_in_root_attributes_is_read_then_moved(files, tmp_path):
    path = _lazy_lsm_store(files, tmp_path)
    store = zarr.storage.LocalStore(path)
    legacy = append_log(store)
    assert len(legacy) == 1
    # Make it a store of an earlier version: the log in the root attributes, no records.
    delete_record(store, legacy[0]["id"])
    group = zarr.open_group(path, mode="r+")
    group.attrs[LEGACY_LOG_ATTR] = legacy
    zarr.consolidate_metadata(path)
    assert LEGACY_LOG_ATTR in xr.open_zarr(path).attrs
    assert is_recorded(store, legacy[0]["id"])
    with xr.open_mfdataset(files[:2]) as ds:
        assert not pz.append(ds, path, "time").applied  # the legacy record still makes it idempotent
    with xr.open_mfdataset(files) as ds:
        assert pz.append(ds.isel(time=slice(48, None)), path, "time").applied
    with xr.open_zarr(path) as out:
        assert LEGACY_LOG_ATTR not in out.attrs
        assert out.sizes["time"] == 72
    assert LEGACY_LOG_ATTR not in zarr.open_group(path, mode="r", use_consolidated=False).attrs
    assert [e["offset"] for e in append_log(store)] == [0, 48]
    assert read_record(store, legacy[0]["id"]) is not None


# --- finding 7: laziness, leases, info, repair ----------------------------------------------------


def test_lazy_append_holds_no_lease_until_computed(files, tmp_path):
    path = _lazy_lsm_store(files, tmp_path)
    store = zarr.storage.LocalStore(path)
    with xr.open_mfdataset(files) as ds:
        tail = ds.isel(time=slice(48, None))
        lazy = pz.append(tail.isel(time=slice(0, 12)), path, "time", compute=False)
        assert isinstance(lazy, Delayed)
        assert read_json(store, LEASE_KEY) is None and inspect_store(path)["lease"] is None
        del lazy  # never computed: the kernel goes on, and the next append is not blocked
        assert pz.append(tail.isel(time=slice(0, 12)), path, "time").applied
        _open_ok(path, 60)
        lazy = pz.append(tail.isel(time=slice(12, 24)), path, "time", compute=False)
        result = lazy.compute()
        assert result.applied and result.offset == 60
        assert read_json(store, LEASE_KEY) is None
    _open_ok(path, 72)


def test_failed_lazy_append_releases_its_lease(files, tmp_path):
    path = _lazy_lsm_store(files, tmp_path)
    store = zarr.storage.LocalStore(path)

    def boom(block):
        raise RuntimeError("source read failed")

    with xr.open_mfdataset(files) as ds:
        tail = ds.isel(time=slice(48, None))
        bad = tail.copy()
        bad["t2m"] = tail["t2m"].copy(data=tail["t2m"].data.map_blocks(boom, dtype="f4"))
        lazy = pz.append(bad, path, "time", compute=False)
        with pytest.raises(RuntimeError, match="source read failed"):
            lazy.compute()
        assert read_json(store, LEASE_KEY) is None
        _open_ok(path, 48)
        assert pz.append(tail, path, "time").applied
    _open_ok(path, 72)


def test_lazy_first_append_returns_a_delayed_and_writes_nothing(files, tmp_path):
    path = tmp_path / "new.zarr"
    with xr.open_mfdataset(files) as ds:
        lazy = pz.append(ds, str(path), "time", compute=False)
        assert isinstance(lazy, Delayed)
        assert not (path / "zarr.json").exists()
        result = lazy.compute()
    assert result.applied and result.length == 72
    _open_ok(str(path), 72)
    assert len(append_log(zarr.storage.LocalStore(path))) == 1


def test_lease_of_this_process_is_named_and_shown(files, tmp_path):
    path = _lazy_lsm_store(files, tmp_path)
    store = zarr.storage.LocalStore(path)
    # What a lazy append whose computation failed under dask.compute leaves: a lease of this process.
    acquire_lease(store, path, "append(compute=False)")
    with xr.open_mfdataset(files) as ds:
        with pytest.raises(LeaseError, match=rf"this process \(pid {os.getpid()}.*compute=False.*repair\(store, force=True\)"):
            pz.append(ds.isel(time=slice(48, None)), path, "time")
    info = inspect_store(path)
    assert info["lease"]["pid"] == os.getpid() and info["lease"]["state"] == "this process"
    assert info["lease"]["age_s"] >= 0
    assert "lease: held (append(compute=False) by pid" in format_info(info)
    res = CliRunner().invoke(main, ["info", path, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["lease"]["pid"] == os.getpid()
    assert not pz.repair(path).ok
    assert any("forced lease" in a for a in pz.repair(path, force=True).actions)
    assert inspect_store(path)["lease"] is None


def test_info_shows_journal_and_unpublished_write(files, tmp_path):
    path = _lazy_lsm_store(files, tmp_path)
    store = zarr.storage.LocalStore(path)
    shapes = {n: list(zarr.open_array(path, path=n).shape) for n in ("t2m", "u10", "lsm", "time")}
    entry = {"id": "journaled", "dim": "time", "offset": 48, "length": 0, "first": None, "last": None, "time": "now"}
    write_journal(store, {"shapes": shapes, "entry": entry, "consolidated": True})
    info = inspect_store(path)
    assert info["journal"]["append_id"] == "journaled"
    assert "journal: interrupted commit of append journaled" in format_info(info)
    assert any("rolled forward append journaled" in a for a in pz.repair(path).actions)
    assert inspect_store(path)["journal"] is None

    new = tmp_path / "unpublished.zarr"
    marker = {**this_holder("write"), "pid": 1, "pid_started": process_start(1), "id": "w", "docs": {}}
    write_json(zarr.storage.LocalStore(new), WRITE_KEY, marker)
    info = inspect_store(new)
    assert info["kind"] == "unpublished" and info["unpublished_write"]["pid"] == 1
    assert "unpublished write:" in format_info(info)
    res = CliRunner().invoke(main, ["info", str(new), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["unpublished_write"]["operation"] == "write"


def test_repair_of_a_missing_store_says_so(tmp_path):
    missing = tmp_path / "nope.zarr"
    with pytest.raises(StoreError, match="no zarr store at"):
        pz.repair(str(missing))
    assert not missing.exists()  # and created nothing
    res = CliRunner().invoke(main, ["repair", str(missing)])
    assert res.exit_code == 2 and "no zarr store at" in res.stderr and "Traceback" not in res.output


def test_unknown_keywords_are_refused(files, tmp_path):
    path = str(tmp_path / "kw.zarr")
    with xr.open_dataset(files[0]) as one:
        with pytest.raises(TypeError, match="'consolidate'"):
            pz.append(one, path, "time", consolidate=False)
        with pytest.raises(TypeError, match="bogus"):
            pz.plan_append(one, path, "time", bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        pz.repair(path, bogus=1)
    assert not os.path.exists(path)
