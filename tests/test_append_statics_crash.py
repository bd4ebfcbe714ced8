"""SIGKILL a to_zarr(mode="a", append_dim=...) that also rewrites variables without append_dim.

The rows and the changed variables without the append dimension (and the root attributes) commit in
one journal: before it, readers see exactly the old dataset; after the consolidation, exactly the new
one; in between (the roll-forward: renames and metadata writes only) the journal is there and
``repair`` (or the next write) finishes it. Before this, the variables were a second commit after the
append's, and a kill between the two left the new rows beside the old mask.
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
from parallelzarr.errors import RepeatedLabelsError
from parallelzarr.store.keys import PREFIX

SCRIPT = """
import sys; sys.path.insert(0, {tests!r})
import parallelzarr as pz
from test_append_statics_crash import change
pz.to_zarr(change(), {path!r}, mode="a", append_dim="time")
"""

BEFORE_JOURNAL = ["append:leased", "overwrite:staging-laid", "write:1", "append:then-staged", "append:data-written"]
IN_COMMIT = ["append:journaled", "overwrite:stale-dropped", "overwrite:moved:mask", "overwrite:moved:orog",
             "commit:resized:temp", "overwrite:attrs"]
AFTER_COMMIT = ["overwrite:consolidated", "commit:logged", "overwrite:journal-removed", "append:released"]


def original() -> xr.Dataset:
    return xr.Dataset(
        {"temp": (("time", "x"), np.arange(48.0).reshape(8, 6)), "mask": ("x", np.zeros(6, dtype="i1"))},
        coords={"time": np.arange(8), "x": np.arange(6) * 10},
        attrs={"title": "old"},
    )


def change() -> xr.Dataset:
    """Two new rows, a changed mask, a new static variable and new attributes."""
    old = original()
    rows = old.isel(time=slice(0, 2)).assign_coords(time=[8, 9])
    return rows.assign(temp=-rows.temp, mask=("x", np.ones(6, dtype="i1")),
                       orog=("x", np.arange(6.0))).assign_attrs(title="new")


def expected() -> xr.Dataset:
    new = change()
    both = xr.concat([original(), new[["temp"]]], dim="time", data_vars="minimal", coords="minimal")
    return both.assign(mask=new.mask, orog=new.orog).assign_attrs(new.attrs)


@pytest.fixture
def store(tmp_path):
    path = str(tmp_path / "s.zarr")
    pz.to_zarr(original(), path, mode="w", encoding={"temp": {"chunks": (4, 3)}})
    return path


def _state(path: str) -> str:
    got = xr.open_zarr(path).load()  # the consolidated metadata, as xarray reads by default
    if got.identical(original()):
        return "old"
    if got.identical(expected()):
        return "new"
    return "MIX"


def _kill_at(path: str, point: str) -> None:
    code = SCRIPT.format(tests=os.path.dirname(__file__), path=path)
    env = {**os.environ, "PARALLELZARR_FAULT": point}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr[-2000:])


def test_one_commit_without_a_kill(store):
    pz.to_zarr(change(), store, mode="a", append_dim="time")
    assert _state(store) == "new"
    assert not os.path.exists(os.path.join(store, PREFIX, "staging"))
    report = pz.repair(store)
    assert report.ok and not report.actions, str(report)


@pytest.mark.parametrize("point", BEFORE_JOURNAL + IN_COMMIT + AFTER_COMMIT)
def test_kill_then_recover(store, point):
    _kill_at(store, point)
    seen = _state(store)
    journal = pending_journal(zarr.storage.LocalStore(store)) is not None
    if point in BEFORE_JOURNAL:
        assert seen == "old" and not journal, (point, seen)
        pz.to_zarr(change(), store, mode="a", append_dim="time")  # the rerun writes it all
    elif point in IN_COMMIT:
        assert journal, point
        report = pz.repair(store)  # finishes the commit from the journal
        assert report.ok, str(report)
    else:
        assert seen == "new", (point, seen)
        with pytest.raises(RepeatedLabelsError):  # applied already: a rerun would store the rows twice
            pz.to_zarr(change(), store, mode="a", append_dim="time")
    assert _state(store) == "new"
    assert not os.path.exists(os.path.join(store, PREFIX, "staging"))
    report = pz.repair(store)
    assert report.ok and not report.actions, str(report)




SCRIPT_LAZY = """
import sys; sys.path.insert(0, {tests!r})
import parallelzarr as pz
from test_append_statics_crash import change
pz.to_zarr(change(), {path!r}, mode="a", append_dim="time", compute=False).compute(scheduler="threads")
"""


def test_lazy_write_is_one_commit_too(store):
    delayed = pz.to_zarr(change(), store, mode="a", append_dim="time", compute=False)
    assert _state(store) == "old"  # staged, not committed, until it is computed
    delayed.compute(scheduler="threads")
    assert _state(store) == "new"
    report = pz.repair(store)
    assert report.ok and not report.actions, str(report)


@pytest.mark.parametrize("point", ["overwrite:staging-laid", "write:1", "append:data-written", "append:journaled",
                                   "overwrite:moved:mask", "overwrite:consolidated"])
def test_lazy_write_killed(store, point):
    code = SCRIPT_LAZY.format(tests=os.path.dirname(__file__), path=store)
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PARALLELZARR_FAULT": point},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr[-2000:])
    seen = _state(store)
    journal = pending_journal(zarr.storage.LocalStore(store)) is not None
    if point in ("overwrite:staging-laid", "write:1", "append:data-written"):
        assert seen == "old" and not journal, (point, seen)
    elif point == "overwrite:consolidated":
        assert seen == "new", (point, seen)
    else:
        assert journal, point
    report = pz.repair(store)  # the killed process's lease is cleared; a journal is rolled forward
    assert report.ok, str(report)
    if not journal and seen == "old":
        pz.to_zarr(change(), store, mode="a", append_dim="time")
    assert _state(store) == "new"
    assert not os.path.exists(os.path.join(store, PREFIX, "staging"))
