"""The fault matrix: {write, region write, append, rechunk} x {worker kill, coordinator kill, store error, disk full}.

Each cell (``tests/fault_cells.py``, shared with ``benchmarks/fault_matrix.py``) runs on real stores on
disk; the worker-kill cells on a real ``LocalCluster`` with worker processes. A cell passes when the
operation completes with the oracle's data, or fails with a clean error, leaves readers what they saw
before (per-operation guarantee in ``fault_cells``) and completes after the user's recovery step.
The only skip: a disk-full cell where no tmpfs can be mounted (the reason is shown).
"""

from __future__ import annotations

import errno

import numpy as np
import pytest
import xarray as xr
import zarr
import zarr.storage
from fault_cells import CORRECT, OPS, RECOVERABLE, CellSkip, make_ds, run_cell, tmpfs
from zarr.core.buffer import cpu
from zarr.core.sync import sync

import parallelzarr as pz
from parallelzarr.errors import ModeError, StoreWriteError
from parallelzarr.store.holders import process_start
from parallelzarr.store.keys import WRITE_KEY
from parallelzarr.testing import FaultyStore, is_chunk_key


@pytest.fixture(scope="module")
def cluster_client():
    """A Client on 2 single-threaded worker processes bound to 127.0.0.1 (nannies restart dead workers)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, scheduler_port=0, host="127.0.0.1",
        dashboard_address=None, worker_dashboard_address=None,
    )
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("op", OPS)
def test_worker_killed_mid_run_still_gives_correct_data(op, tmp_path, cluster_client):
    result = run_cell(op, "worker-kill", tmp_path, cluster_client)
    assert result.outcome == CORRECT
    assert result.recovery == "none"


@pytest.mark.parametrize("fault", ["coordinator-kill", "store-error", "disk-full"])
@pytest.mark.parametrize("op", OPS)
def test_fault_is_clean_and_recoverable(op, fault, tmp_path):
    try:
        result = run_cell(op, fault, tmp_path)
    except CellSkip as exc:  # only a tmpfs that cannot be mounted on this machine
        pytest.skip(str(exc))
    assert result.outcome == RECOVERABLE
    assert result.recovery != "none"
    if fault != "coordinator-kill":
        assert result.error.startswith("StoreWriteError: ")
        assert ("No space left on device" if fault == "disk-full" else "injected store fault") in result.error


# --- the pieces the matrix relies on -------------------------------------------------------------


def test_faulty_store_counts_chunk_keys_only(tmp_path):
    store = FaultyStore(zarr.storage.LocalStore(tmp_path / "s.zarr"), fail_at=2)
    arr = zarr.create_array(store, shape=(8,), chunks=(2,), dtype="i4")  # metadata: not counted
    arr[0:2] = 1
    with pytest.raises(OSError, match=r"chunk write #2 refused for key 'c/1'") as info:
        arr[2:4] = 2
    assert info.value.errno == errno.EIO
    with pytest.raises(OSError):  # persistent: the backend stays broken
        arr[4:6] = 3
    assert store.chunk_writes == 3 and store.failed_keys == ["c/1", "c/2"]
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "s.zarr")[:], [1, 1, 0, 0, 0, 0, 0, 0])
    assert [is_chunk_key(k) for k in ("t/c/0/1", "t/zarr.json", ".parallelzarr/journal.json",
                                      ".parallelzarr-rechunk/done/f/0/0/3", ".parallelzarr-rechunk/temp/f/t/c/0")] == [
        True, False, False, False, True]


def test_failed_write_during_setup_leaves_no_dataset(tmp_path):
    """The very first chunk (a coordinate, laid down before any data) fails: still nothing readable."""
    path = tmp_path / "w.zarr"
    store = FaultyStore(zarr.storage.LocalStore(path), fail_at=1)
    with pytest.raises(StoreWriteError, match=r"refused for key .*Nothing was published.*mode='w'"):
        pz.to_zarr(make_ds(0, 8), store, scheduler="threads")
    with pytest.raises(Exception):  # noqa: B017 - whatever zarr raises for a missing group
        xr.open_zarr(path)
    report = pz.repair(str(path))
    assert not report.ok and "rerun the write with mode='w'" in str(report)
    with pytest.raises(ModeError, match="never finished.*it failed: OSError.*mode='w'"):
        pz.to_zarr(make_ds(0, 8), str(path))
    with pytest.raises(ModeError, match="mode='w'"):  # a region write cannot fill it either
        pz.to_zarr(make_ds(0, 8), str(path), region={"time": slice(0, 8)})
    pz.to_zarr(make_ds(0, 8), str(path), mode="w", scheduler="threads")
    xr.testing.assert_identical(xr.open_zarr(path).load(), make_ds(0, 8).load())
    assert not (path / ".parallelzarr" / "write.json").exists()


def test_unpublished_write_of_a_live_process_is_not_replaced_by_w_dash(tmp_path):
    path = tmp_path / "w.zarr"
    store = zarr.storage.LocalStore(path)
    marker = {"host": __import__("socket").gethostname(), "pid": 1, "pid_started": process_start(1),
              "time": 0, "operation": "write", "id": "x", "docs": {}}
    sync(store.set(WRITE_KEY, cpu.Buffer.from_bytes(__import__("json").dumps(marker).encode())))
    with pytest.raises(ModeError, match="being written by another process"):
        pz.to_zarr(make_ds(0, 8), str(path))


def test_interrupted_first_append_is_restarted_by_the_rerun(tmp_path):
    path = tmp_path / "a.zarr"
    with pytest.raises(StoreWriteError):
        pz.append(make_ds(0, 8), FaultyStore(zarr.storage.LocalStore(path), fail_at=3), "time", scheduler="threads")
    result = pz.append(make_ds(0, 8), str(path), "time", scheduler="threads")
    assert result.applied
    got = xr.open_zarr(path).load()
    assert "parallelzarr_appends" not in got.attrs  # the append log lives under .parallelzarr/
    xr.testing.assert_identical(got, make_ds(0, 8).load())


def test_compute_false_publishes_the_template_at_once(tmp_path):
    """xarray's convention is kept: the lazy write's metadata is readable (fill values) before compute."""
    path = tmp_path / "lazy.zarr"
    delayed = pz.to_zarr(make_ds(0, 8), str(path), compute=False)
    assert np.isnan(xr.open_zarr(path).temp.values).all()
    delayed.compute(scheduler="threads")
    xr.testing.assert_identical(xr.open_zarr(path).load(), make_ds(0, 8).load())


def test_cli_reports_a_full_disk_as_a_run_failure(tmp_path):
    """Exit 1 (failure during the run) with the recovery step, not exit 2 (bad input, nothing written)."""
    from click.testing import CliRunner

    from parallelzarr.cli import main

    src = tmp_path / "src.zarr"
    arr = zarr.create_array(src, shape=(64, 256), chunks=(1, 256), dtype="f8", compressors=None)
    arr[...] = np.random.default_rng(0).standard_normal((64, 256))
    try:
        with tmpfs(tmp_path / "fs", 48 * 1024):
            target = tmp_path / "fs" / "t.zarr"
            args = ["rechunk", str(src), str(target), "--chunks", "64,8", "--max-mem", "64MB", "--cluster", "threads"]
            res = CliRunner().invoke(main, args)
            assert res.exit_code == 1, res.output
            assert "No space left on device" in res.output and "rerun the same rechunk" in res.output
    except CellSkip as exc:
        pytest.skip(str(exc))
