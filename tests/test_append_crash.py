"""SIGKILL an appending process at 20+ points: readers see the old or the new dataset, never a mix."""

from __future__ import annotations

import signal
import time

import pytest
import xarray as xr
from append_helpers import data_only, rows, run_append_subprocess

import parallelzarr as pz
from parallelzarr.commit.journal import pending_journal
from parallelzarr.errors import LeaseError
from parallelzarr.store.keys import LEASE_KEY, read_json

OLD, NEW, CHUNK = 10, 23, 3  # stored rows (zarr chunk 4: a partial last chunk), appended rows, dask chunk

PROTOCOL_POINTS = [
    "append:leased",
    "append:data-written",
    "append:journaled",
    "commit:resized:temp",
    "commit:resized:wind",
    "commit:logged",
    "commit:consolidated",
    "commit:journal-removed",
    "append:released",
]
WRITE_POINTS = [f"write:{k}" for k in range(1, 15)]


@pytest.fixture
def base(tmp_path):
    path = str(tmp_path / "ingest.zarr")
    pz.append(rows(0, OLD, 4), path, "time", encoding={"temp": {"chunks": (4, 6)}, "wind": {"chunks": (4, 6)}})
    return path


def _state(path: str) -> str:
    got = data_only(xr.open_zarr(path).load())
    old = rows(0, OLD, OLD).load()
    new = rows(0, OLD + NEW, OLD + NEW).load()
    if got.identical(old):
        return "old"
    if got.identical(new):
        return "new"
    return "MIX"


@pytest.mark.parametrize("path", ["lean", "full"])  # rows() has a static variable and coordinate: both paths take it
@pytest.mark.parametrize("point", WRITE_POINTS + PROTOCOL_POINTS)
def test_kill_then_recover(base, point, path):
    proc = run_append_subprocess(base, OLD, NEW, CHUNK, env={"PARALLELZARR_FAULT": point}, full_path=path == "full")
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr[-2000:])
    if point != "append:leased":  # killed before planning there (a lean plan is made under the lease)
        assert f"planned by the {path} path" in proc.stdout
    seen = _state(base)
    assert seen in ("old", "new"), f"readers saw a mix after a kill at {point}"
    journal = pending_journal(__import__("zarr").storage.LocalStore(base)) is not None
    # the next append of the same data finishes the job (rolling a journal forward if there is one)
    result = pz.append(rows(OLD, NEW, CHUNK), base, "time")
    assert _state(base) == "new"
    if seen == "new":
        assert not result.applied  # the commit had landed: the rerun is a no-op that says so
    if journal:
        assert any("rolled forward" in r for r in result.repaired)
    report = pz.repair(base)
    assert report.ok and not any("lease" in a for a in report.actions)


def test_repair_after_kill_clears_dead_lease_and_stray_chunks(base):
    proc = run_append_subprocess(base, OLD, NEW, CHUNK, env={"PARALLELZARR_FAULT": "write:6"})
    assert proc.returncode == -signal.SIGKILL
    report = pz.repair(base)
    assert any("stale lease" in a for a in report.actions), str(report)
    assert any("unreferenced chunk" in a for a in report.actions), str(report)
    assert _state(base) == "old"
    pz.append(rows(OLD, NEW, CHUNK), base, "time")
    assert _state(base) == "new"


def test_two_appenders_one_wins(base):
    holder = run_append_subprocess(base, OLD, NEW, CHUNK, env={"PARALLELZARR_PAUSE": "append:leased:6"}, wait=False)
    store = __import__("zarr").storage.LocalStore(base)
    for _ in range(200):  # wait until the first appender holds the lease
        if read_json(store, LEASE_KEY):
            break
        time.sleep(0.05)
    with pytest.raises(LeaseError, match=r"being written by another process .*pid \d+"):
        pz.append(rows(OLD, NEW, CHUNK), base, "time")
    out, err = holder.communicate(timeout=120)
    assert holder.returncode == 0, err[-2000:]
    assert _state(base) == "new"


@pytest.mark.parametrize("point", ["publish:data-written", "publish:root-written"])
def test_first_append_killed_while_publishing_then_next_append_keeps_every_row(tmp_path, point):
    """A kill after the new store's root is published but before its marker is dropped: the store is
    published, so the next append adds to it (it used to be taken for unpublished and rewritten)."""
    path = str(tmp_path / "new.zarr")
    proc = run_append_subprocess(path, 0, OLD, CHUNK, env={"PARALLELZARR_FAULT": point})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    pz.append(rows(OLD, NEW, CHUNK), path, "time")
    got = data_only(xr.open_zarr(path).load())
    # Killed before the root was written, the first rows were never published: the rerun starts over.
    expected = rows(0, OLD + NEW, OLD + NEW) if point == "publish:root-written" else rows(OLD, NEW, NEW)
    xr.testing.assert_identical(got, expected.load())
    assert pz.repair(path).ok
