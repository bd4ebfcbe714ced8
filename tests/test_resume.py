"""Resumable writes: SIGKILL a write after about half its tasks, rerun it, count what the rerun writes.

Each dask block is one zarr chunk here, so a write task is one chunk file: the chunk files the
rerun rewrites (new modification time) are the tasks it ran, counted independently of the plan.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import parallelzarr as pz
from parallelzarr.store.markers import TASKS_PREFIX

SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, xarray as xr, parallelzarr as pz
    path, kind = sys.argv[1], sys.argv[2]

    def ds(t0, n):
        t = np.arange(t0, t0 + n)
        v = (np.arange(n * 8 * 6).reshape(n, 8, 6) + 1000 * t0).astype("f4")
        return xr.Dataset({"v": (("time", "y", "x"), v)}, coords={"time": t}).chunk({"time": 4, "y": 4, "x": 3})

    run = dict(scheduler="threads", num_workers=1)
    if kind == "new":
        pz.to_zarr(ds(0, 24), path, mode="w", encoding={"v": {"chunks": (4, 4, 3)}}, **run)
    elif kind == "region":
        pz.to_zarr((ds(0, 24) * 2)[["v"]], path, region={"time": slice(0, 24)}, **run)
    elif kind == "append":
        # Appends up to INLINE_APPEND_BYTES are written without a graph (and rewritten whole by a rerun:
        # at most 64 MiB); markers and resume are for the graph path, which this forces.
        import importlib  # (the attribute parallelzarr.append is the function, not the module)
        importlib.import_module("parallelzarr.run.append").INLINE_APPEND_BYTES = 0
        pz.to_zarr(ds(24, 16), path, append_dim="time", **run)
    print("finished")
    """
)


def _ds(t0: int, n: int) -> xr.Dataset:
    t = np.arange(t0, t0 + n)
    v = (np.arange(n * 8 * 6).reshape(n, 8, 6) + 1000 * t0).astype("f4")
    return xr.Dataset({"v": (("time", "y", "x"), v)}, coords={"time": t}).chunk({"time": 4, "y": 4, "x": 3})


def _run(script: Path, store: Path, kind: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLELZARR_")}
    if fault:
        env["PARALLELZARR_FAULT"] = fault
    return subprocess.run([sys.executable, str(script), str(store), kind], env=env, capture_output=True, text=True,
                          timeout=300)


def _chunk_mtimes(store: Path) -> dict[str, int]:
    out = {}
    for root, _, files in os.walk(store / "v" / "c"):
        for f in files:
            p = os.path.join(root, f)
            out[p] = os.stat(p).st_mtime_ns
    return out


def _markers(store: Path, variable: str | None = None) -> int:
    """Finished-task markers of the store (of one variable)."""
    base = store / TASKS_PREFIX
    if not base.exists():
        return 0
    return sum(not name.endswith(".partial")  # a marker being written when the process died is not finished
               for root, _, f in os.walk(base) if variable is None or os.path.basename(root) == variable for name in f)


@pytest.mark.parametrize("kind", ["new", "region", "append"])
def test_sigkill_half_then_rerun_writes_only_the_rest(tmp_path: Path, kind: str) -> None:
    script = tmp_path / "w.py"
    script.write_text(SCRIPT)
    store = tmp_path / "s.zarr"
    if kind != "new":
        pz.to_zarr(_ds(0, 24), str(store), encoding={"v": {"chunks": (4, 4, 3)}}, scheduler="threads")
    total = {"new": 24, "region": 24, "append": 16}[kind]  # chunks of v written (one task each)
    kill_after = total // 2
    # The K-th chunk write kills the process before its marker: K - 1 tasks are finished.
    # (An append also writes its 'time' coordinate chunks; they count as writes too.)
    killed = _run(script, store, kind, f"write:{kill_after}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    finished = _markers(store)
    finished_v = _markers(store, "v")
    assert 0 < finished_v < total

    if kind == "new":  # readers see no dataset before the rerun publishes it
        with pytest.raises((FileNotFoundError, KeyError, ValueError, zarr.errors.NodeNotFoundError)):
            xr.open_zarr(str(store))
    elif kind == "append":  # readers still see the store before the append
        assert xr.open_zarr(str(store)).sizes["time"] == 24

    before = _chunk_mtimes(store)
    if kind == "new":
        plan = pz.plan_write(_ds(0, 24), str(store), mode="w", encoding={"v": {"chunks": (4, 4, 3)}})
    elif kind == "region":
        plan = pz.plan_write((_ds(0, 24) * 2)[["v"]], str(store), region={"time": slice(0, 24)})
    else:
        plan = pz.plan_append(_ds(24, 16), str(store), "time")
    assert plan.tasks_done == finished  # the plan says how many tasks are already done
    assert f"resume: {finished} write task(s) already done" in str(plan)

    rerun = _run(script, store, kind)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _chunk_mtimes(store)
    rewritten = [p for p, t in after.items() if before.get(p) != t]
    # Exactly the chunks of v whose task had not finished were written again; the rest kept their files.
    assert len(rewritten) == total - finished_v, (len(rewritten), total, finished_v)
    print(f"{kind}: {total} v tasks, {finished_v} finished before SIGKILL, rerun wrote {len(rewritten)}")

    out = xr.open_zarr(str(store)).compute()
    if kind == "new":
        expect = _ds(0, 24).compute()
    elif kind == "region":
        expect = (_ds(0, 24) * 2).compute()
        expect["time"] = _ds(0, 24)["time"]
    else:
        expect = xr.concat([_ds(0, 24), _ds(24, 16)], dim="time").compute()
    np.testing.assert_array_equal(out["v"].values, expect["v"].values)
    np.testing.assert_array_equal(out["time"].values, expect["time"].values)
    assert not (store / TASKS_PREFIX).exists() or _markers(store) == 0


def test_rerun_of_a_different_write_does_not_skip(tmp_path: Path) -> None:
    """Markers of an interrupted write are not reused by a write with other data (another fingerprint)."""
    script = tmp_path / "w.py"
    script.write_text(SCRIPT)
    store = tmp_path / "s.zarr"
    killed = _run(script, store, "new", "write:12")
    assert killed.returncode == -signal.SIGKILL
    other = _ds(0, 24) + 1
    plan = pz.to_zarr(other, str(store), mode="w", encoding={"v": {"chunks": (4, 4, 3)}}, scheduler="threads")
    assert plan.tasks_done == 0
    np.testing.assert_array_equal(zarr.open_array(str(store), path="v")[...], other["v"].values)


def test_rerun_with_other_codecs_starts_afresh(tmp_path: Path) -> None:
    """Same data, same plan, another compressor: the finished chunks hold the other codec's bytes, so
    nothing is kept (resuming would make them unreadable)."""
    from zarr.codecs import ZstdCodec

    script = tmp_path / "w.py"
    script.write_text(SCRIPT)
    store = tmp_path / "s.zarr"
    assert _run(script, store, "new", "write:12").returncode == -signal.SIGKILL
    assert _markers(store, "v") == 11
    enc = {"v": {"chunks": (4, 4, 3), "compressors": [ZstdCodec(level=5)]}}
    plan = pz.to_zarr(_ds(0, 24), str(store), mode="w", encoding=enc, scheduler="threads")
    assert plan.tasks_done == 0 and plan.tasks_run == 24
    got = xr.open_zarr(str(store))
    np.testing.assert_array_equal(got["v"].values, _ds(0, 24)["v"].values)


ARRAY_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, dask.array as da, parallelzarr as pz
    v = np.arange(96 * 16, dtype="f4").reshape(96, 16) + float(sys.argv[2])
    plan = pz.to_zarr(da.from_array(v, chunks=(4, 16)), sys.argv[1], mode="w", scheduler="threads", num_workers=1)
    print(plan.tasks_done, plan.tasks_run)
    """
)


def test_bare_array_rerun_keeps_finished_chunks(tmp_path: Path) -> None:
    """A bare array written with mode='w', killed, rerun: the array is not created anew (which would
    delete the finished chunks); only the other 13 of 24 tasks run. Other data starts afresh."""
    script = tmp_path / "a.py"
    script.write_text(ARRAY_SCRIPT)
    store = tmp_path / "a.zarr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLELZARR_")}
    run = [sys.executable, str(script), str(store)]
    killed = subprocess.run([*run, "0"], env={**env, "PARALLELZARR_FAULT": "write:12"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    again = subprocess.run([*run, "0"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.split() == ["11", "13"]
    expect = np.arange(96 * 16, dtype="f4").reshape(96, 16)
    np.testing.assert_array_equal(zarr.open_array(str(store))[...], expect)
    killed = subprocess.run([*run, "0"], env={**env, "PARALLELZARR_FAULT": "write:12"}, capture_output=True)
    other = subprocess.run([*run, "5"], env=env, capture_output=True, text=True)
    assert other.stdout.split() == ["0", "24"]
    np.testing.assert_array_equal(zarr.open_array(str(store))[...], expect + 5)


def test_interrupted_region_rerun_after_another_write_rewrites_all(tmp_path: Path) -> None:
    """Region write A is killed, write B then fills the same region with other values, A is rerun:
    A's finished tasks must not be skipped (their cells now hold B's values), so A's rerun writes all."""
    script = tmp_path / "w.py"
    script.write_text(SCRIPT)
    store = tmp_path / "s.zarr"
    pz.to_zarr(_ds(0, 24), str(store), encoding={"v": {"chunks": (4, 4, 3)}}, scheduler="threads")
    assert _run(script, store, "region", "write:12").returncode == -signal.SIGKILL  # A: 2 x the data
    assert _markers(store, "v") == 11
    pz.to_zarr((_ds(0, 24) * 3)[["v"]], str(store), region={"time": slice(0, 24)}, scheduler="threads")  # B
    rerun = _run(script, store, "region")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    np.testing.assert_array_equal(xr.open_zarr(str(store))["v"].values, (_ds(0, 24) * 2)["v"].values)


CLEARER = textwrap.dedent(
    """
    import sys, time, zarr
    from parallelzarr.store.markers import TASKS_PREFIX, TaskMarkers
    store = zarr.storage.LocalStore(sys.argv[1])
    stop = time.time() + float(sys.argv[2])
    n = 0
    while time.time() < stop:  # what every finishing write of a job array does
        TaskMarkers(store, TASKS_PREFIX).clear()
        n += 1
    print(n)
    """
)


def test_markers_survive_other_writes_clearing_them(tmp_path: Path) -> None:
    """A job array's writes clear every write's markers when they finish (CI once failed a region write
    with FileNotFoundError on a marker's temporary file): leaving a marker meanwhile never fails the write."""
    import time

    import zarr

    from parallelzarr.store import keys
    from parallelzarr.store.markers import TaskMarkers

    store = zarr.storage.LocalStore(str(tmp_path))
    markers = TaskMarkers.of(store, "f" * 24)
    markers.mark("v", "0")  # the directories exist before the clearer starts
    clearers = [subprocess.Popen([sys.executable, "-c", CLEARER, str(tmp_path), "6"], stdout=subprocess.PIPE,
                                 text=True) for _ in range(3)]
    time.sleep(1.5)  # imports done: they are clearing
    kept, created, end = [], 0, time.time() + 3
    while time.time() < end:
        kept.append(markers.mark("v", f"{len(kept)}.0"))
        # A lease is created the same way, beside the markers: its directory may vanish too.
        created += keys.create_exclusive(store, ".parallelzarr/probe.json", {"id": "x"})
        keys.delete(store, ".parallelzarr/probe.json")
    cleared = [int(p.communicate(timeout=60)[0]) for p in clearers]
    assert all(c > 100 for c in cleared), cleared  # the race did run
    assert len(kept) >= 5 and any(kept)  # not all lost (a lost marker has been retried for about 0.5 s)
    assert created == len(kept)
    markers.mark("v", "done")
    assert "done" in markers.done().get("v", set())
