"""Ingest through the CLI as pipelines run it (issue 16): subprocesses on generated multi-file netCDF sets.

Convert options (``--variables``, ``--drop-variables``, ``--preprocess``, rechunk's inline
``--target-chunks``), hourly appends with ``--append-step``, repeated hours, shifted grids and changed
static variables, ``--wait`` for a lease held by another process, and SIGINT mid-write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from append_helpers import SHOW_WARNINGS, cli, era5_set, hold_lease, hourly_file


@pytest.fixture
def converted(tmp_path: Path) -> Path:
    """Three daily files converted with no flags; hourly appends go on from 2024-01-04T00."""
    era5_set(tmp_path)
    res = cli("write", "nc/*.nc", "out.zarr", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    return tmp_path


def _no_warnings(res: subprocess.CompletedProcess) -> None:
    assert "Warning" not in res.stderr, res.stderr


# --- convert options ---------------------------------------------------------------------------------


def test_variables_and_drop_variables(tmp_path: Path) -> None:
    era5_set(tmp_path, files=2)
    res = cli("write", "nc/*.nc", "keep.zarr", "--variables", "t2m", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    _no_warnings(res)
    kept = xr.open_zarr(tmp_path / "keep.zarr")
    assert set(kept.data_vars) == {"t2m"} and {"latitude", "longitude", "expver"} <= set(kept.coords)

    res = cli("write", "nc/*.nc", "drop.zarr", "--drop-variables", "lsm,u10", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert set(xr.open_zarr(tmp_path / "drop.zarr").data_vars) == {"t2m"}

    res = cli("write", "nc/*.nc", "typo.zarr", "--drop-variables", "lms", cwd=tmp_path)
    assert res.returncode == 2 and "'lms'" in res.stderr and "lsm" in res.stderr, res.stderr
    assert not (tmp_path / "typo.zarr").exists()


def test_region_write_with_drop_variables(converted: Path) -> None:
    # --region refuses variables without the region's dims; --drop-variables leaves the static ones out.
    res = cli("write", "nc/era5_1.nc", "out.zarr", "--region", "time=24:48", "--drop-variables", "lsm,expver",
              cwd=converted)
    assert res.returncode == 0, res.stderr
    _no_warnings(res)


PREPROCESS = '''
def celsius(ds):
    return ds.assign(t2m=ds.t2m - 273.15)
'''


@pytest.mark.parametrize("spec", ["prep:celsius", "prep.py:celsius"])
def test_preprocess_module_function(tmp_path: Path, spec: str) -> None:
    era5_set(tmp_path, files=2)
    (tmp_path / "prep.py").write_text(PREPROCESS)
    res = cli("write", "nc/*.nc", "c.zarr", "--preprocess", spec, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    raw = xr.open_mfdataset(str(tmp_path / "nc" / "*.nc"), data_vars="minimal", coords="minimal", compat="no_conflicts")
    got = xr.open_zarr(tmp_path / "c.zarr")
    np.testing.assert_allclose(got.t2m.values, raw.t2m.values - 273.15, rtol=1e-6)


def test_preprocess_that_cannot_load_is_bad_input(tmp_path: Path) -> None:
    era5_set(tmp_path, files=2)
    res = cli("write", "nc/*.nc", "c.zarr", "--preprocess", "nosuchmodule:f", cwd=tmp_path)
    assert res.returncode == 2 and "nosuchmodule" in res.stderr, res.stderr
    res = cli("write", "nc/*.nc", "c.zarr", "--preprocess", "celsius", cwd=tmp_path)
    assert res.returncode == 2 and "MODULE:FUNCTION" in res.stderr, res.stderr
    assert not (tmp_path / "c.zarr").exists()


def test_rechunk_inline_target_chunks_and_json_file(converted: Path) -> None:
    res = cli("rechunk", "out.zarr", "r1.zarr", "--target-chunks", "time=-1,latitude=6", cwd=converted)
    assert res.returncode == 0, res.stderr
    _no_warnings(res)
    r1 = xr.open_zarr(converted / "r1.zarr")
    assert r1.t2m.encoding["chunks"][:2] == (72, 6)
    xr.testing.assert_identical(r1.load(), xr.open_zarr(converted / "out.zarr").load())
    (converted / "chunks.json").write_text(json.dumps({"time": 24, "latitude": -1, "longitude": 8}))
    res = cli("rechunk", "out.zarr", "r2.zarr", "--target-chunks", "chunks.json", cwd=converted)
    assert res.returncode == 0, res.stderr
    assert xr.open_zarr(converted / "r2.zarr").t2m.encoding["chunks"] == (24, 12, 8)


# --- hourly appends -----------------------------------------------------------------------------------


def test_hourly_appends_with_step_refuse_a_gap_unless_allowed(converted: Path) -> None:
    for h in range(3):
        f = hourly_file(converted, f"2024-01-04T{h:02d}:00", 10 + h)
        res = cli("append", str(f), "out.zarr", "--append-dim", "time", "--append-step", "1h", cwd=converted)
        assert res.returncode == 0, res.stderr
        _no_warnings(res)
    late = hourly_file(converted, "2024-01-04T05:00", 20)
    res = cli("append", str(late), "out.zarr", "--append-dim", "time", "--append-step", "1h", cwd=converted)
    assert res.returncode == 2 and "gap" in res.stderr and "2 label(s) missing" in res.stderr, res.stderr
    assert xr.open_zarr(converted / "out.zarr").sizes["time"] == 75
    odd = hourly_file(converted, "2024-01-04T03:30", 21)
    res = cli("append", str(odd), "out.zarr", "--append-dim", "time", "--append-step", "1h", cwd=converted)
    assert res.returncode == 2 and "uneven" in res.stderr, res.stderr
    res = cli("append", str(late), "out.zarr", "--append-dim", "time", "--append-step", "1h", "--gaps", "allow",
              cwd=converted)
    assert res.returncode == 0, res.stderr
    assert xr.open_zarr(converted / "out.zarr").sizes["time"] == 76


def test_repeated_hour_skipped_when_identical_refused_when_changed_overwritten_on_request(converted: Path) -> None:
    f = hourly_file(converted, "2024-01-04T00:00", 10)
    assert cli("append", str(f), "out.zarr", "--append-dim", "time", cwd=converted).returncode == 0
    before = xr.open_zarr(converted / "out.zarr").load()
    again = cli("append", str(f), "out.zarr", "--append-dim", "time", "--json", cwd=converted)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["result"]["applied"] is False and doc["result"]["skipped"] == 1
    # reprocessed data for the same hour: refused, naming the hour
    changed = hourly_file(converted, "2024-01-04T00:00", 99, name="reprocessed.nc")
    res = cli("append", str(changed), "out.zarr", "--append-dim", "time", cwd=converted)
    assert res.returncode == 2 and "2024-01-04T00:00:00" in res.stderr and "other content" in res.stderr, res.stderr
    xr.testing.assert_identical(xr.open_zarr(converted / "out.zarr").load(), before)
    res = cli("append", str(changed), "out.zarr", "--append-dim", "time", "--repeat", "overwrite", cwd=converted)
    assert res.returncode == 0, res.stderr
    after = xr.open_zarr(converted / "out.zarr").load()
    new = xr.open_dataset(changed).load()
    np.testing.assert_array_equal(after.u10.isel(time=-1).values, new.u10.isel(time=0).values)
    xr.testing.assert_identical(after.isel(time=slice(0, 72)), before.isel(time=slice(0, 72)))
    # the rewrite's digest is recorded: the reprocessed file is now the identical one
    res = cli("append", str(changed), "out.zarr", "--append-dim", "time", "--json", cwd=converted)
    assert res.returncode == 0 and json.loads(res.stdout)["result"]["skipped"] == 1, res.stderr


@pytest.mark.parametrize("change, message", [
    ({"lat_shift": 0.1}, "'latitude' coordinate differs"),
    ({"lsm_flip": True}, "'lsm' has no 'time' dimension and differs"),
    ({"expver": "0005"}, "'expver' has no 'time' dimension and differs"),
])
def test_other_grid_or_changed_static_refused(converted: Path, change: dict, message: str) -> None:
    f = hourly_file(converted, "2024-01-04T00:00", 10, name="changed.nc", **change)
    res = cli("append", str(f), "out.zarr", "--append-dim", "time", cwd=converted)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert xr.open_zarr(converted / "out.zarr").sizes["time"] == 72


# --- leases -------------------------------------------------------------------------------------------


def test_wait_for_a_lease_held_by_another_process(converted: Path) -> None:
    f = hourly_file(converted, "2024-01-04T00:00", 10)
    holder = hold_lease(str(converted / "out.zarr"), 9)
    try:
        res = cli("append", str(f), "out.zarr", "--append-dim", "time", cwd=converted)
        assert res.returncode == 2 and "being written by another process" in res.stderr, res.stderr
        lease = json.loads(cli("info", "out.zarr", "--json", cwd=converted).stdout)["lease"]
        assert lease["pid"] == holder.pid and lease["state"] == "running" and lease["age_s"] >= 0
        start = time.monotonic()
        res = cli("append", str(f), "out.zarr", "--append-dim", "time", "--wait", "60s", cwd=converted)
        waited = time.monotonic() - start
        assert res.returncode == 0, res.stderr
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()
    assert waited >= 1.0, "the append must have waited for the holder"
    assert xr.open_zarr(converted / "out.zarr").sizes["time"] == 73


def test_wait_runs_out_then_the_lease_error(converted: Path) -> None:
    f = hourly_file(converted, "2024-01-04T00:00", 10)
    holder = hold_lease(str(converted / "out.zarr"), 30)
    try:
        start = time.monotonic()
        res = cli("append", str(f), "out.zarr", "--append-dim", "time", "--wait", "2s", cwd=converted)
        waited = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 2 and "being written by another process" in res.stderr, res.stderr
    assert waited >= 2.0


# --- SIGINT --------------------------------------------------------------------------------------------


SLOW = """
import time


def slow(ds):
    def nap(block):
        time.sleep(0.4)
        return block

    for name in ("t2m", "u10"):
        ds[name] = ds[name].copy(data=ds[name].data.map_blocks(nap, dtype=ds[name].dtype))
    return ds
"""


def _interrupt(args: list[str], cwd: Path, started: str) -> tuple[int, str]:
    """Run the CLI with slow reads, SIGINT it 1 s after ``started`` (a bookkeeping file) appears."""
    (cwd / "slowprep.py").write_text(SLOW)
    proc = subprocess.Popen([sys.executable, "-m", "parallelzarr.cli", *args, "--preprocess", "slowprep:slow",
                             "--chunks", "time=4"], cwd=cwd, env={**os.environ, "PYTHONWARNINGS": SHOW_WARNINGS},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = cwd / "out.zarr" / ".parallelzarr" / started
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not marker.exists():
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_sigint_mid_append_says_what_was_kept_and_the_rerun_finishes(converted: Path) -> None:
    era5_set(converted / "more", files=1, steps=24, start="2024-01-04")
    code, err = _interrupt(["append", "more/nc/era5_0.nc", "out.zarr", "--append-dim", "time"], converted, "lease.json")
    assert code == 130, err
    assert "Interrupted: append to out.zarr stopped" in err and "rerun the same command" in err, err
    assert "Traceback" not in err and "Aborted!" not in err
    assert xr.open_zarr(converted / "out.zarr").sizes["time"] == 72, "the commit never ran: readers see the old data"
    assert not (converted / "out.zarr" / ".parallelzarr" / "lease.json").exists(), "the lease is released"
    res = cli("append", "more/nc/era5_0.nc", "out.zarr", "--append-dim", "time", cwd=converted)
    assert res.returncode == 0, res.stderr
    got = xr.open_zarr(converted / "out.zarr").load()
    assert got.sizes["time"] == 96
    xr.testing.assert_equal(got.isel(time=slice(72, None)).t2m, xr.open_dataset(converted / "more/nc/era5_0.nc").t2m)


def test_sigint_mid_convert_says_nothing_was_published_and_mode_w_finishes(tmp_path: Path) -> None:
    era5_set(tmp_path)
    code, err = _interrupt(["write", "nc/*.nc", "out.zarr"], tmp_path, "write.json")
    assert code == 130, err
    assert "Interrupted: write to out.zarr stopped" in err and "Nothing was published" in err, err
    assert "--mode w" in err and "Traceback" not in err
    with pytest.raises(Exception):  # noqa: B017  readers see no dataset (zarr/xarray raise various errors)
        xr.open_zarr(tmp_path / "out.zarr")
    info = cli("info", "out.zarr", "--json", cwd=tmp_path)
    assert json.loads(info.stdout)["unpublished_write"]["running"] is False, info.stdout
    res = cli("write", "nc/*.nc", "out.zarr", "--mode", "w", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert xr.open_zarr(tmp_path / "out.zarr").sizes["time"] == 72
