"""Appends: sequences equal a numpy oracle, bad input leaves the store byte-identical, worker loss."""

from __future__ import annotations

import tempfile

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from append_helpers import data_only, rows
from conftest import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parallelzarr as pz
from parallelzarr.errors import AppendError, EncodingError, ParallelZarrError, SchemaMismatchError


def _int_rows(start: int, n: int, chunks, nx: int) -> xr.Dataset:
    v = (np.arange(start, start + n)[:, None] * 100 + np.arange(nx)[None, :]).astype("i4")
    return xr.Dataset({"v": (("t", "x"), da.from_array(v, chunks=(chunks, nx)))}, coords={"t": np.arange(start, start + n)})


@st.composite
def append_sequence(draw):
    nx = draw(st.integers(1, 5))
    chunk = draw(st.integers(1, 7))
    shard_mult = draw(st.sampled_from([None, 2, 3]))
    first = draw(st.integers(1, 15))
    steps = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 12))
        pieces = []
        left = n
        while left:
            c = draw(st.integers(1, left))
            pieces.append(c)
            left -= c
        steps.append(tuple(pieces))
    strategy = draw(st.sampled_from(["auto", "gather-edges", "rechunk"]))
    return nx, chunk, shard_mult, first, steps, strategy


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=append_sequence())
def test_append_sequences_equal_oracle(case):
    nx, chunk, shard_mult, first, steps, strategy = case
    with tempfile.TemporaryDirectory() as root:
        path = f"{root}/s.zarr"
        enc = {"v": {"chunks": (chunk, nx)}}
        if shard_mult:
            enc["v"]["shards"] = (chunk * shard_mult, nx)
        pz.to_zarr(_int_rows(0, first, first, nx), path, encoding=enc)
        length = first
        for pieces in steps:
            n = sum(pieces)
            pz.append(_int_rows(length, n, pieces, nx), path, "t", strategy=strategy, scheduler="threads", num_workers=8)
            length += n
        got = xr.open_zarr(path).load()
        np.testing.assert_array_equal(got.v.values, _int_rows(0, length, length, nx).v.values)
        np.testing.assert_array_equal(got.t.values, np.arange(length))


@pytest.fixture
def stored(tmp_path):
    path = str(tmp_path / "s.zarr")
    pz.append(rows(0, 10, 4), path, "time", encoding={"temp": {"chunks": (4, 6)}})
    return tmp_path, path


BAD = {
    "overlap changed": (lambda: rows(8, 5, 5).assign(temp=lambda d: d.temp + 1), AppendError,
                        r"2 appended 'time' label\(s\) are already stored .* with other content"),
    "gap label": (lambda: rows(12, 2, 2).isel(time=[0]).assign_coords(time=[np.datetime64("2020-01-01T05:30")]),
                  AppendError, "within the stored range"),
    "not after": (lambda: rows(0, 10, 5).isel(time=slice(0, 0)).pipe(lambda d: rows(3, 1, 1).assign_coords(time=[np.datetime64("2019-01-01")])), AppendError, "not after the last stored"),
    "not monotonic": (lambda: rows(10, 4, 4).isel(time=[0, 2, 1, 3]), AppendError, "strictly increasing"),
    "missing var": (lambda: rows(10, 4, 4).drop_vars("wind"), AppendError, r"\['wind'\] .*missing"),
    "new var": (lambda: rows(10, 4, 4).assign(extra=rows(10, 4, 4).temp), AppendError, r"\['extra'\] are not in the store"),
    "size off dim": (lambda: rows(10, 4, 4, nx=7), SchemaMismatchError, "size 7 along 'x'"),
    "dtype": (lambda: rows(10, 4, 4).assign(temp=rows(10, 4, 4).temp.astype("c8")), SchemaMismatchError, "cannot be stored"),
    # (the stored dims in another order are appended transposed, as xarray does: see below)
    "other dims": (lambda: rows(10, 4, 4).assign(temp=(("time", "z"), np.zeros((4, 6), "f4"))), SchemaMismatchError,
                   "dims"),
    "bad dim": (lambda: rows(10, 4, 4).rename(time="t"), AppendError, "not a dimension"),
}


def test_overlap_refused_with_repeat_error(stored):
    tmp, path = stored
    before = snapshot(tmp)
    with pytest.raises(AppendError, match="overlap the stored ones: 2 label"):
        pz.append(rows(8, 5, 5), path, "time", repeat="error")
    assert snapshot(tmp) == before


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_append_leaves_store_identical(stored, case):
    tmp, path = stored
    make, exc, match = BAD[case]
    before = snapshot(tmp)
    with pytest.raises(exc, match=match) as info:
        pz.append(make(), path, "time")
    assert isinstance(info.value, ParallelZarrError)
    assert snapshot(tmp) == before


def test_new_encoding_for_stored_variable_is_an_error(stored):
    tmp, path = stored
    before = snapshot(tmp)
    with pytest.raises(EncodingError, match="already stored"):
        pz.append(rows(10, 4, 4), path, "time", encoding={"temp": {"dtype": "f8"}})
    assert snapshot(tmp) == before


@pytest.mark.parametrize("spelling", ["pz.append", "pz.to_zarr"])
def test_transposed_rows_are_appended_in_the_stored_order_as_xarray_does(tmp_path, spelling):
    """Variables whose dims are the stored ones in another order: xarray appends them transposed; so do we."""
    ours, theirs = str(tmp_path / "ours.zarr"), str(tmp_path / "theirs.zarr")
    for p in (ours, theirs):
        rows(0, 10, 4).to_zarr(p, zarr_format=3, consolidated=True)
    new = rows(10, 5, 5).transpose("x", "time")
    assert new.temp.dims == ("x", "time")
    if spelling == "pz.append":
        pz.append(new, ours, "time")
    else:
        pz.to_zarr(new, ours, append_dim="time")
    new.to_zarr(theirs, append_dim="time")
    a, b = xr.open_zarr(ours).load(), xr.open_zarr(theirs).load()
    assert a.identical(b)
    assert a.temp.dims == ("time", "x")
    np.testing.assert_array_equal(a.temp.values, rows(0, 15, 5).temp.values)


def test_string_width_checked(tmp_path):
    path = str(tmp_path / "str.zarr")
    ds = xr.Dataset({"name": (("t",), np.array(["ab", "cd"]))}, coords={"t": [0, 1]})
    pz.append(ds, path, "t")
    before = snapshot(tmp_path)
    longer = xr.Dataset({"name": (("t",), np.array(["abcdef"]))}, coords={"t": [2]})
    with pytest.raises(SchemaMismatchError, match="need 6 characters"):
        pz.append(longer, path, "t")
    assert snapshot(tmp_path) == before
    pz.append(xr.Dataset({"name": (("t",), np.array(["x"]))}, coords={"t": [2]}), path, "t")
    assert list(xr.open_zarr(path).name.values) == ["ab", "cd", "x"]


def test_static_verify(stored):
    tmp, path = stored
    changed = rows(10, 4, 4).assign(elev=rows(10, 4, 4).elev + 1)
    with pytest.raises(AppendError, match="'elev' .*differs"):
        pz.append(changed, path, "time", static="verify")
    pz.append(rows(10, 4, 4), path, "time", static="verify")


def test_compute_false_publishes_only_on_compute(stored):
    tmp, path = stored
    lazy = pz.append(rows(10, 6, 4), path, "time", compute=False)
    assert xr.open_zarr(path).sizes["time"] == 10
    lazy.compute()
    xr.testing.assert_identical(data_only(xr.open_zarr(path).load()), rows(0, 16, 16).load())


def test_same_append_twice_is_a_noop_that_says_so(stored):
    tmp, path = stored
    first = pz.append(rows(10, 5, 2), path, "time")
    before = snapshot(tmp)
    again = pz.append(rows(10, 5, 2), path, "time")
    assert first.applied and not again.applied and "already applied" in again.message
    assert snapshot(tmp) == before


def test_worker_killed_mid_append(tmp_path):
    """A worker process dies mid-append on a LocalCluster; the nanny restarts it and the append completes."""
    distributed = pytest.importorskip("distributed")
    path = str(tmp_path / "w.zarr")
    pz.append(rows(0, 10, 4), path, "time", encoding={"temp": {"chunks": (4, 6)}, "wind": {"chunks": (4, 6)}})
    env = {"PARALLELZARR_FAULT": "write:2", "PARALLELZARR_FAULT_ONCE": str(tmp_path / "killed-once")}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, env=env) as cluster, distributed.Client(cluster) as client:
        result = pz.append(rows(10, 40, 3), path, "time", scheduler=client)
    assert (tmp_path / "killed-once").exists(), "the fault hook did not fire in a worker"
    assert result.applied
    xr.testing.assert_identical(data_only(xr.open_zarr(path).load()), rows(0, 50, 50).load())
