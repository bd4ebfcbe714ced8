"""Breaking a dead lease: two processes that find the same dead lease never both end up holding it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import parallelzarr as pz
from parallelzarr.commit.lease import BREAK_PREFIX, acquire_lease, break_dead_lease
from parallelzarr.errors import LeaseError
from parallelzarr.reports.info import bookkeeping
from parallelzarr.store.holders import this_holder
from parallelzarr.store.keys import (
    DRAFT_TAG,
    LEASE_KEY,
    create_exclusive,
    delete,
    list_keys,
    read_json,
    write_json,
)

# Each contender tries to take the lease, reports whether it got it, holds it a while and then
# reports whether the stored lease is still its own (a second breaker would have replaced it).
CONTENDER = textwrap.dedent("""
    import json, sys, time
    import zarr
    from parallelzarr.commit.lease import acquire_lease
    from parallelzarr.errors import LeaseError
    store = zarr.storage.LocalStore(sys.argv[1])
    try:
        lease = acquire_lease(store, "the store")
    except LeaseError as exc:
        print(json.dumps({"got": False, "error": str(exc)}), flush=True)
        sys.exit(0)
    time.sleep(float(sys.argv[2]))
    from parallelzarr.store.keys import LEASE_KEY, read_json
    still = (read_json(store, LEASE_KEY) or {}).get("id") == lease.holder["id"]
    lease.release()
    print(json.dumps({"got": True, "still_mine": still, "broke": lease.broke_stale is not None}), flush=True)
""")


def _dead_lease(store) -> dict:
    """A lease of a process that has exited (same host): what a killed append leaves."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    holder = {"id": "dead-one", **this_holder("append"), "pid": int(proc.stdout), "pid_started": time.time() - 5}
    assert create_exclusive(store, LEASE_KEY, holder)
    return holder


def _contender(path: str, hold: float, pause: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLELZARR_")}
    if pause:
        env["PARALLELZARR_PAUSE"] = pause
    return subprocess.Popen([sys.executable, "-c", CONTENDER, path, str(hold)], env=env, stdout=subprocess.PIPE, text=True)


def test_two_breakers_of_one_dead_lease_never_both_hold_it(tmp_path):
    """The slow breaker read the dead lease before the fast one broke it and took its own."""
    path = str(tmp_path / "s.zarr")
    store = zarr.storage.LocalStore(path)
    _dead_lease(store)
    slow = _contender(path, 0.2, pause="lease:breaking:2.5")  # reads the dead lease, then stalls
    time.sleep(1.5)
    fast = _contender(path, 3.0)  # breaks it and holds the store while the slow one wakes up
    results = [json.loads(p.communicate(timeout=60)[0]) for p in (slow, fast)]
    holders = [r for r in results if r["got"]]
    assert len(holders) == 1, results
    assert holders[0]["still_mine"] and holders[0]["broke"], results
    refused = next(r for r in results if not r["got"])
    assert "being written by another process" in refused["error"], refused
    assert read_json(store, LEASE_KEY) is None
    assert not [k for k in list_keys(store, ".parallelzarr") if k.startswith(BREAK_PREFIX)]


def test_many_processes_racing_for_a_dead_lease_get_one_holder(tmp_path):
    path = str(tmp_path / "s.zarr")
    store = zarr.storage.LocalStore(path)
    _dead_lease(store)
    procs = [_contender(path, 2.0) for _ in range(6)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    holders = [r for r in results if r["got"]]
    assert len(holders) == 1 and holders[0]["still_mine"], results


def test_a_breaker_that_lost_the_race_leaves_the_new_lease_alone(tmp_path):
    store = zarr.storage.LocalStore(str(tmp_path / "s.zarr"))
    dead = _dead_lease(store)
    assert break_dead_lease(store, dead)
    mine = {"id": "alive", **this_holder("append")}
    assert create_exclusive(store, LEASE_KEY, mine)
    assert not break_dead_lease(store, dead)  # late: the lease is another one now
    assert read_json(store, LEASE_KEY)["id"] == "alive"


def test_a_breaker_that_died_mid_break_is_named_and_repair_force_clears_it(tmp_path):
    path = str(tmp_path / "s.zarr")
    zarr.create_group(path)
    store = zarr.storage.LocalStore(path)
    dead = _dead_lease(store)
    write_json(store, f"{BREAK_PREFIX}{dead['id']}.json", {**dead, "id": "breaker", "operation": "lease break"})
    try:
        acquire_lease(store, "the store")
        raise AssertionError("took a lease whose breaker died mid-break")
    except LeaseError as exc:
        assert "repair(store, force=True)" in str(exc) and "died too" in str(exc)
    report = pz.repair(path, force=True)
    assert any("lease breaker that died" in a for a in report.actions), report.actions
    lease = acquire_lease(store, "the store")
    assert read_json(store, LEASE_KEY)["id"] == lease.holder["id"]
    lease.release()


def test_repair_force_removes_a_marker_left_without_a_lease(tmp_path):
    """A breaker killed after deleting the dead lease but before its marker: only the marker is left."""
    path = str(tmp_path / "s.zarr")
    zarr.create_group(path)
    store = zarr.storage.LocalStore(path)
    dead = _dead_lease(store)
    write_json(store, f"{BREAK_PREFIX}{dead['id']}.json", {**dead, "id": "breaker", "operation": "lease break"})
    delete(store, LEASE_KEY)
    report = pz.repair(path, force=True)
    assert any("lease breaker that died" in a for a in report.actions), report.actions
    assert not [k for k in list_keys(store, ".parallelzarr") if k.startswith(BREAK_PREFIX)]


def test_a_created_lease_is_never_seen_half_written(tmp_path):
    """A contender that finds the lease file reads a whole document: an ``O_EXCL`` create written
    afterwards was visible empty for a moment (126 of 297 reads here parsed badly, and CI saw a
    contender fail with JSONDecodeError). No draft is left beside it."""
    import threading

    store = zarr.storage.LocalStore(str(tmp_path / "s.zarr"))
    doc = {"id": "x" * 2000}
    found, partial = 0, []
    for i in range(200):
        path = tmp_path / "s.zarr" / f".parallelzarr/k{i}.json"
        done = threading.Event()

        def watch(path=path, done=done) -> None:
            nonlocal found
            while not done.is_set():
                if path.exists():
                    data = path.read_bytes()
                    found += 1
                    try:
                        json.loads(data)
                    except ValueError:
                        partial.append(data[:40])
                    return

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert create_exclusive(store, f".parallelzarr/k{i}.json", doc)
        done.set()
        watcher.join()
    assert found >= 50, found  # the watcher did race the creates
    assert partial == [], (len(partial), found)
    assert not [k for k in list_keys(store, ".parallelzarr/") if "draft" in k]


def test_repair_removes_drafts_a_killed_creator_left(tmp_path):
    """A process killed between writing its draft and linking it leaves the draft, maybe half written.

    ``repair`` removes old drafts (a fresh one may be some creator's, mid-create, and stays), and
    ``repair(force=True)`` does not take a half-written draft of a break marker for a marker.
    """
    path = tmp_path / "s.zarr"
    pz.to_zarr(xr.Dataset({"a": ("x", np.arange(4.0))}), str(path))
    meta = path / ".parallelzarr"
    meta.mkdir(exist_ok=True)
    old_marker = meta / f"lease-break-dead-one.json{DRAFT_TAG}12345-aa"
    old_marker.write_text('{"id": "brea')  # killed mid-write
    old_lease = meta / f"lease.json{DRAFT_TAG}12345-bb"
    old_lease.write_text(json.dumps({"id": "x", "pid": 12345}))
    fresh = meta / f"lease.json{DRAFT_TAG}{os.getpid()}-cc"
    fresh.write_text("{}")
    hour_ago = time.time() - 3600
    for f in (old_marker, old_lease):
        os.utime(f, (hour_ago, hour_ago))
    report = pz.repair(str(path), force=True)
    assert report.ok, report
    assert not old_marker.exists() and not old_lease.exists() and fresh.exists()
    assert sum("left unfinished" in a for a in report.actions) == 2, report.actions
    xr.testing.assert_identical(xr.open_zarr(path).compute(), xr.Dataset({"a": ("x", np.arange(4.0))}))


def test_exclusive_create_without_hard_links(tmp_path, monkeypatch):
    """Where the filesystem refuses hard links (FUSE mounts, some network filesystems: EPERM,
    ENOTSUP, ENOSYS), the create falls back to ``O_EXCL``: still once only, whole, no draft left."""
    import errno

    def no_links(src, dst):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "link", no_links)
    store = zarr.storage.LocalStore(str(tmp_path / "s.zarr"))
    assert create_exclusive(store, LEASE_KEY, {"id": "first"})
    assert not create_exclusive(store, LEASE_KEY, {"id": "second"})
    assert read_json(store, LEASE_KEY) == {"id": "first"}
    assert list_keys(store, ".parallelzarr/") == [LEASE_KEY]


def test_an_unreadable_lease_is_named_and_cleared_by_force(tmp_path):
    """The O_EXCL fallback's creator killed between creating the lease file and writing it leaves it
    empty: an append says so (a LeaseError with the fix, not a JSON error), ``repair()`` leaves it
    and says how, ``repair(force=True)`` clears it, and the next append works."""
    path = tmp_path / "s.zarr"
    times = pd.date_range("2000-01-01", periods=4, freq="h")
    first = xr.Dataset({"a": ("time", np.arange(4.0))}, coords={"time": times})
    pz.to_zarr(first, str(path))
    (path / LEASE_KEY).parent.mkdir(exist_ok=True)
    (path / LEASE_KEY).write_bytes(b"")
    more = xr.Dataset({"a": ("time", np.arange(4.0, 8.0))}, coords={"time": times + pd.Timedelta(hours=4)})
    with pytest.raises(LeaseError, match="unreadable lease.*repair\\(store, force=True\\)"):
        pz.append(more, str(path), "time")
    xr.testing.assert_identical(xr.open_zarr(path).compute(), first)
    shown = bookkeeping(zarr.storage.LocalStore(str(path)))["lease"]  # what `parallelzarr info` shows
    assert shown is not None and shown["state"].startswith("unreadable"), shown
    report = pz.repair(str(path))
    assert not report.ok and "unreadable" in str(report.problems), report
    assert (path / LEASE_KEY).exists()
    report = pz.repair(str(path), force=True)
    assert report.ok and any("unreadable lease" in a for a in report.actions), report
    pz.append(more, str(path), "time")
    xr.testing.assert_identical(xr.open_zarr(path).compute(), xr.concat([first, more], "time"))
