"""to_zarr(mode="a"/"a-"/"r+") without append_dim: add variables, overwrite stored ones (xarray's rules)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr
import zarr

import parallelzarr as pz
from parallelzarr.commit.journal import pending_journal
from parallelzarr.errors import EncodingError, LeaseError, ModeError, SchemaMismatchError
from parallelzarr.store.keys import LEASE_KEY, PREFIX, read_json


def _base(path: str) -> xr.Dataset:
    ds = xr.Dataset(
        {"temp": (("time", "x"), np.arange(48.0).reshape(8, 6), {"units": "K"})},
        coords={"time": np.arange(8), "x": np.arange(6) * 10},
        attrs={"title": "old"},
    ).chunk({"time": 3})
    pz.to_zarr(ds, path, mode="w", encoding={"temp": {"chunks": (4, 3)}})
    return ds


def test_add_variable_keeps_stored_ones(tmp_path):
    path = str(tmp_path / "s.zarr")
    old = _base(path)
    rain = xr.DataArray(np.random.default_rng(0).random((8, 6)), dims=("time", "x"), attrs={"units": "mm"})
    new = old.assign(rain=rain.chunk({"time": 5})).drop_vars("temp").assign_attrs(title="new")
    pz.to_zarr(new, path, mode="a", encoding={"rain": {"chunks": (2, 6)}})
    got = xr.open_zarr(path).load()
    np.testing.assert_array_equal(got.temp.values, old.temp.values)  # not in the Dataset: untouched
    np.testing.assert_array_equal(got.rain.values, rain.values)
    assert got.rain.attrs == {"units": "mm"} and got.temp.attrs == {"units": "K"}
    assert got.attrs == {"title": "new"}  # mode="a" replaces the root attributes, as xarray
    assert zarr.open_array(path, path="rain").chunks == (2, 6)
    assert not os.path.exists(os.path.join(path, PREFIX))  # staging, journal and lease are gone
    assert pz.repair(path).ok


def test_overwrite_transposed_keeps_metadata_and_drops_empty_chunks(tmp_path):
    path = str(tmp_path / "s.zarr")
    old = _base(path)
    values = -old.temp.values
    values[0:4, 0:3] = np.nan  # one whole chunk of fill values: its stored chunk must go
    temp = xr.DataArray(values.T, dims=("x", "time"), attrs={"comment": "ignored"}).chunk({"x": 4})
    pz.to_zarr(xr.Dataset({"temp": temp}), path, mode="a")
    got = xr.open_zarr(path).load()
    np.testing.assert_array_equal(got.temp.values, values)
    assert got.temp.attrs == {"units": "K"}  # stored variables keep their attributes (xarray); other units are refused (test_append_grid_units)
    arr = zarr.open_array(path, path="temp")
    assert arr.chunks == (4, 3) and arr.nchunks_initialized == 3
    assert not os.path.exists(os.path.join(path, "temp", "c", "0", "0"))


def test_rplus_overwrites_keeps_attrs_refuses_new(tmp_path):
    path = str(tmp_path / "s.zarr")
    old = _base(path)
    pz.to_zarr(xr.Dataset({"temp": old.temp * 2}, attrs={"title": "other"}), path, mode="r+")
    got = xr.open_zarr(path).load()
    np.testing.assert_array_equal(got.temp.values, old.temp.values * 2)
    assert got.attrs == {"title": "old"}
    with pytest.raises(ValueError, match="dataset contains non-pre-existing variables") as err:
        pz.to_zarr(xr.Dataset({"rain": old.temp}), path, mode="r+")
    assert isinstance(err.value, ModeError) and "mode='a'" in str(err.value)
    assert "rain" not in xr.open_zarr(path)


def test_a_minus_without_append_dim_is_a(tmp_path):
    path = str(tmp_path / "s.zarr")
    old = _base(path)
    pz.to_zarr(xr.Dataset({"temp": old.temp + 1}), path, mode="a-")
    np.testing.assert_array_equal(xr.open_zarr(path).temp.values, old.temp.values + 1)


@pytest.mark.parametrize(
    ("new", "match", "kind"),
    [
        (lambda o: xr.Dataset({"temp": (("time", "y"), np.zeros((8, 6)))}), "different dimension names", SchemaMismatchError),
        (lambda o: o.isel(time=slice(0, 5)), "different dimension sizes", SchemaMismatchError),
        (lambda o: xr.Dataset({"rain": (("time",), np.zeros(3))}), "length 3 along 'time'", SchemaMismatchError),
    ],
)
def test_refused_before_any_write(tmp_path, new, match, kind):
    path = str(tmp_path / "s.zarr")
    old = _base(path)
    before = sorted(os.walk(path))
    with pytest.raises(kind, match=match):
        pz.to_zarr(new(old), path, mode="a")
    assert sorted(os.walk(path)) == before
    xr.testing.assert_identical(xr.open_zarr(path).load(), old.load())


def test_encoding_for_stored_variable_refused(tmp_path):
    path = str(tmp_path / "s.zarr")
    old = _base(path)
    with pytest.raises(EncodingError, match="already exists, but encoding was provided"):
        pz.to_zarr(old, path, mode="a", encoding={"temp": {"chunks": (2, 2)}})


def test_fixed_width_strings_must_match(tmp_path):
    path = str(tmp_path / "s.zarr")
    pz.to_zarr(xr.Dataset({"s": ("x", np.array(["ab", "cd"], dtype="S2"))}), path, mode="w")
    with pytest.raises(ValueError, match="Mismatched dtypes for variable s"):
        pz.to_zarr(xr.Dataset({"s": ("x", np.array(["abc", "d"], dtype="S3"))}), path, mode="a")
    assert list(xr.open_zarr(path).s.values) == [b"ab", b"cd"]


def test_compute_false_holds_lease_until_computed(tmp_path):
    path = str(tmp_path / "s.zarr")
    old = _base(path)
    lazy = pz.to_zarr(xr.Dataset({"temp": old.temp * 3}), path, mode="a", compute=False)
    np.testing.assert_array_equal(xr.open_zarr(path).temp.values, old.temp.values)  # nothing visible yet
    with pytest.raises(LeaseError):
        pz.append(old.isel(time=slice(0, 2)).assign_coords(time=[8, 9]), path, "time")
    lazy.compute()
    np.testing.assert_array_equal(xr.open_zarr(path).temp.values, old.temp.values * 3)
    assert read_json(zarr.storage.LocalStore(path), LEASE_KEY) is None


def test_failed_commit_is_journaled_and_repaired(tmp_path):
    from parallelzarr.testing import FaultyStore

    path = str(tmp_path / "s.zarr")
    old = _base(path)
    # FaultyStore fails the 2nd write of a data key: staged chunks are bookkeeping, so that is a
    # move of the commit, after the journal.
    faulty = FaultyStore(zarr.storage.LocalStore(path), fail_at=2)
    with pytest.raises(pz.errors.StoreWriteError, match="failed while committing.*parallelzarr.repair"):
        pz.to_zarr(xr.Dataset({"temp": old.temp * 5}), faulty, mode="a")
    got, before, after = xr.open_zarr(path).temp.values, old.temp.values, old.temp.values * 5
    for i in (0, 4):  # each stored chunk (4, 3) reads as its old or its new values, never anything else
        for j in (0, 3):
            cell = np.s_[i:i + 4, j:j + 3]
            assert np.array_equal(got[cell], before[cell]) or np.array_equal(got[cell], after[cell])
    assert pending_journal(zarr.storage.LocalStore(path)) is not None
    report = pz.repair(path)
    assert any("rolled forward overwrite" in a for a in report.actions), str(report)
    np.testing.assert_array_equal(xr.open_zarr(path).temp.values, old.temp.values * 5)
    assert not os.path.exists(os.path.join(path, PREFIX, "staging"))
    pz.to_zarr(xr.Dataset({"temp": old.temp * 6}), path, mode="a")  # not blocked by a lease
    np.testing.assert_array_equal(xr.open_zarr(path).temp.values, old.temp.values * 6)


def test_region_of_transposed_dataset_is_written_in_stored_order(tmp_path):
    path = str(tmp_path / "s.zarr")
    old = _base(path)
    part = (old.isel(time=slice(4, 8)) * 10).transpose("x", "time")
    pz.to_zarr(part.drop_vars(["x"]), path, region={"time": slice(4, 8)})
    want = old.temp.values.copy()
    want[4:8] *= 10
    np.testing.assert_array_equal(xr.open_zarr(path).temp.values, want)


def test_group_on_memory_store_and_root_consolidation(tmp_path):
    store = zarr.storage.MemoryStore()
    ds = xr.Dataset({"a": ("x", np.arange(4.0))}).chunk(x=2)
    pz.to_zarr(ds, store, mode="w-")
    pz.to_zarr(ds * 2, store, group="g1/g2", mode="w")
    xr.testing.assert_identical(xr.open_zarr(store, group="g1/g2").load(), (ds * 2).load())
    xr.testing.assert_identical(xr.open_zarr(store).load(), ds.load())  # the root is left as it was
    path = str(tmp_path / "root.zarr")
    pz.to_zarr(ds, path, mode="w")  # consolidated at the root
    pz.to_zarr(ds * 3, path, group="g", mode="w")
    # opened through the root's consolidated metadata, which must now list the group
    xr.testing.assert_identical(xr.open_zarr(path, group="g", consolidated=True).load(), (ds * 3).load())


def test_variable_named_none_round_trips(tmp_path):
    path = str(tmp_path / "n.zarr")
    ds = xr.Dataset({None: (("x", "y"), [[0, 1], [2, 3]])})
    pz.to_zarr(ds, path, mode="w")
    xr.testing.assert_identical(xr.open_zarr(path).load(), ds)


def test_append_with_mode_a_overwrites_static_variables(tmp_path):
    path = str(tmp_path / "s.zarr")
    old = _base(path).assign(mask=("x", np.zeros(6)))
    pz.to_zarr(old, path, mode="w")
    more = old.isel(time=slice(0, 2)).assign_coords(time=[8, 9]).assign(mask=("x", np.ones(6)),
                                                                           orog=("x", np.arange(6.0)))
    pz.to_zarr(more, path, mode="a-", append_dim="time")  # a-: mask kept, orog added (xarray)
    got = xr.open_zarr(path).load()
    assert got.sizes["time"] == 10 and (got.mask.values == 0).all()
    np.testing.assert_array_equal(got.orog.values, np.arange(6.0))
    more = more.assign_coords(time=[10, 11]).assign(orog=("x", np.arange(6.0) + 1))
    pz.to_zarr(more, path, mode="a", append_dim="time")  # a: mask and orog overwritten (xarray)
    got = xr.open_zarr(path).load()
    assert got.sizes["time"] == 12 and (got.mask.values == 1).all()
    np.testing.assert_array_equal(got.orog.values, np.arange(6.0) + 1)
    np.testing.assert_array_equal(got.temp.values[10:], old.temp.values[0:2])
    assert pz.repair(path).ok


def test_dataarray_named_like_its_dimension_round_trips(tmp_path):
    path = str(tmp_path / "d.zarr")
    arr = xr.DataArray(np.arange(12).reshape(3, 4), dims=["x", "y"], name="x")
    pz.to_zarr(arr, path, mode="w")
    xr.testing.assert_identical(xr.open_dataarray(path, engine="zarr").load(), arr)


def test_to_zarr_append_of_stored_labels_is_refused_not_skipped(tmp_path):
    path = str(tmp_path / "s.zarr")
    old = _base(path)
    before = xr.open_zarr(path).load()
    # xarray would append duplicate labels; a silent skip would leave out rows asked for
    with pytest.raises(ValueError, match="already stored"):
        pz.to_zarr(old.isel(time=slice(6, 8)), path, append_dim="time")
    xr.testing.assert_identical(xr.open_zarr(path).load(), before)


def test_rerun_after_a_stop_between_the_two_commits_says_how_to_finish(tmp_path):
    # mode="a" with append_dim commits the rows, then the changed variables without append_dim. A run
    # stopped in between (here: the rows appended alone) leaves the old mask; rerunning the call is
    # refused (its labels are stored), and the message gives the call that finishes it.
    from parallelzarr.errors import RepeatedLabelsError

    path = str(tmp_path / "s.zarr")
    old = _base(path).assign(mask=("x", np.zeros(6)))
    pz.to_zarr(old, path, mode="w")
    more = old.isel(time=slice(0, 2)).assign_coords(time=[8, 9]).assign(mask=("x", np.ones(6)))
    pz.append(more.drop_vars("mask"), path, append_dim="time")
    with pytest.raises(RepeatedLabelsError, match=r"finish it with to_zarr\(ds\[\['mask'\]\], store, mode='a'\)") as info:
        pz.to_zarr(more, path, mode="a", append_dim="time")
    assert isinstance(info.value, ValueError)  # still the ValueError xarray raises
    assert (xr.open_zarr(path).mask.values == 0).all()  # refused before any write
    pz.to_zarr(more[["mask"]], path, mode="a")  # the call the message gives
    got = xr.open_zarr(path).load()
    assert got.sizes["time"] == 10 and (got.mask.values == 1).all()
    np.testing.assert_array_equal(got.temp.values[8:], old.temp.values[0:2])
