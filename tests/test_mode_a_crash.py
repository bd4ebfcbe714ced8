"""SIGKILL a mode="a" write (add a variable, overwrite one) at every step: old or new, and recoverable.

Before the journal, readers must see exactly the old dataset; after the commit exactly the new one.
Inside the roll-forward (chunks being moved) each chunk is old or new and the journal is there; every
case ends as the new dataset after ``repair`` or a rerun of the same write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr

import parallelzarr as pz
from parallelzarr.commit.journal import pending_journal
from parallelzarr.store.keys import PREFIX

SCRIPT = """
import sys; sys.path.insert(0, {tests!r})
import parallelzarr as pz
from test_mode_a_crash import change
pz.to_zarr(change({kind!r}), {path!r}, mode="a")
"""

BEFORE_JOURNAL = ["write:1", "write:4", "overwrite:staging-laid", "overwrite:data-written"]
IN_COMMIT = ["overwrite:journaled", "overwrite:stale-dropped", "overwrite:moved:temp", "overwrite:moved:time",
             "overwrite:moved:rain", "overwrite:attrs"]
AFTER_COMMIT = ["overwrite:consolidated", "overwrite:journal-removed"]
#: (kind, point): the add-only write never rewrites temp, so it has no "moved:temp" step.
CASES = [(k, p) for k in ("add", "overwrite") for p in BEFORE_JOURNAL + IN_COMMIT + AFTER_COMMIT
         if (k, p) != ("add", "overwrite:moved:temp")]


def original() -> xr.Dataset:
    return xr.Dataset(
        {"temp": (("time", "x"), np.arange(48.0).reshape(8, 6)), "wind": (("time", "x"), np.ones((8, 6)))},
        coords={"time": np.arange(8), "x": np.arange(6) * 10},
        attrs={"title": "old"},
    )


def change(kind: str) -> xr.Dataset:
    """``"add"``: only a new variable (and the stored coordinates); ``"overwrite"``: also new temp values."""
    old = original()
    rain = xr.DataArray(np.arange(48.0).reshape(8, 6) / 7, dims=("time", "x"))
    new = xr.Dataset({"rain": rain}, coords={"time": old.time, "x": old.x}, attrs={"title": "new"})
    if kind == "overwrite":
        temp = -old.temp.values
        temp[0:4, 0:3] = np.nan  # a chunk that becomes all fill: its stored chunk is deleted
        new["temp"] = (("time", "x"), temp)
    return new.chunk({"time": 2})


def expected(kind: str) -> xr.Dataset:
    old = original()
    new = change(kind).load()
    return old.assign({n: new[n] for n in new.data_vars}).assign_attrs(new.attrs)


@pytest.fixture
def store(tmp_path):
    path = str(tmp_path / "s.zarr")
    pz.to_zarr(original().chunk({"time": 4}), path, mode="w", encoding={"temp": {"chunks": (4, 3)}})
    return path


def _state(path: str, kind: str) -> str:
    got = xr.open_zarr(path).load()
    if got.identical(original()):
        return "old"
    if got.identical(expected(kind)):
        return "new"
    return "MIX"


def _kill_at(path: str, kind: str, point: str) -> None:
    code = SCRIPT.format(tests=os.path.dirname(__file__), kind=kind, path=path)
    env = {**os.environ, "PARALLELZARR_FAULT": point}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr[-2000:])


def _chunks_old_or_new(path: str, kind: str) -> None:
    got = xr.open_zarr(path).temp.values
    old, new = original().temp.values, expected(kind).temp.values
    for i in (0, 4):
        for j in (0, 3):
            cell = np.s_[i:i + 4, j:j + 3]
            assert np.array_equal(got[cell], old[cell], equal_nan=True) or np.array_equal(
                got[cell], new[cell], equal_nan=True), f"chunk {cell} is neither old nor new"


@pytest.mark.parametrize(("kind", "point"), CASES)
def test_kill_then_recover(store, kind, point):
    _kill_at(store, kind, point)
    seen = _state(store, kind)
    journal = pending_journal(zarr.storage.LocalStore(store)) is not None
    if point in BEFORE_JOURNAL:
        assert seen == "old" and not journal, (point, seen)
    elif point in AFTER_COMMIT:
        assert seen == "new", (point, seen)
    else:
        assert journal, point
        if kind == "add":  # the coordinates are rewritten with their own values: no visible mix
            assert seen in ("old", "new"), (point, seen)
        else:
            _chunks_old_or_new(store, kind)
    if point in ("overwrite:journaled", "write:4"):
        report = pz.repair(store)  # repair alone recovers: rolls forward, or drops the staging
        assert report.ok, str(report)
        assert _state(store, kind) == ("new" if journal else "old")
    pz.to_zarr(change(kind), store, mode="a")  # the rerun always ends with the new dataset
    assert _state(store, kind) == "new"
    assert not os.path.exists(os.path.join(store, PREFIX, "staging"))
    report = pz.repair(store)
    assert report.ok and not report.actions, str(report)


def test_append_after_killed_commit_rolls_it_forward_first(store):
    _kill_at(store, "overwrite", "overwrite:moved:temp")
    more = expected("overwrite").isel(time=slice(0, 2)).assign_coords(time=[8, 9])
    result = pz.append(more, store, "time")
    assert any("rolled forward" in r for r in result.repaired), result.repaired
    got = xr.open_zarr(store).load()
    want = xr.concat([expected("overwrite"), more], dim="time", data_vars="minimal", coords="minimal")
    np.testing.assert_array_equal(got.temp.values, want.temp.values)
    np.testing.assert_array_equal(got.rain.values, want.rain.values)


def test_region_write_after_killed_commit_rolls_it_forward_first(store):
    _kill_at(store, "overwrite", "overwrite:stale-dropped")
    region = xr.Dataset({"temp": (("time", "x"), np.full((4, 6), 7.0))})
    pz.to_zarr(region, store, region={"time": slice(4, 8)})
    # the interrupted commit was finished before the region was written, not after (which would
    # have moved the older staged chunks over the region)
    got = xr.open_zarr(store).load()
    want = expected("overwrite").temp.values.copy()
    want[4:8] = 7.0
    np.testing.assert_array_equal(got.temp.values, want)
    assert pending_journal(zarr.storage.LocalStore(store)) is None
