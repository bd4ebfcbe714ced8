"""A plain LocalStore's chunk objects read and written as files keep the store's guarantees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
import zarr.storage
from zarr.core.buffer import Buffer, default_buffer_prototype
from zarr.core.buffer.cpu import Buffer as CpuBuffer
from zarr.core.sync import sync

from parallelzarr.store.chunk_io import StoreOps, read_region, write_region
from parallelzarr.store.local_files import delete_object, local_root, read_object, write_object
from parallelzarr.store.read_cache import ReadCache
from parallelzarr.testing import FaultyStore

PROTO = default_buffer_prototype()


def _buf(data: bytes) -> Buffer:
    return PROTO.buffer.from_bytes(data)


def _open_store(path: Path, read_only: bool = False) -> zarr.storage.LocalStore:
    zarr.create_array(str(path), shape=(4,), chunks=(2,), dtype="f4")
    # The store of an opened array (zarr opens it on first use), as chunk I/O is handed it.
    return zarr.open_array(zarr.storage.LocalStore(str(path), read_only=read_only), mode="r" if read_only else "r+").store


def test_only_a_plain_open_local_store_is_written_directly(tmp_path: Path) -> None:
    store = _open_store(tmp_path / "a.zarr")
    assert local_root(store) == tmp_path / "a.zarr"
    assert StoreOps(store, 1).root is not None
    # A wrapper (it may count, fail or cache) and a store not yet open go through the store's coroutines.
    assert local_root(FaultyStore(store, fail_at=10**6)) is None
    assert local_root(zarr.storage.LocalStore(str(tmp_path / "b.zarr"))) is None
    assert local_root(zarr.storage.MemoryStore()) is None


def test_objects_round_trip_and_missing_ones_read_as_none(tmp_path: Path) -> None:
    store = _open_store(tmp_path / "a.zarr")
    root = local_root(store)
    assert root is not None
    write_object(store, root, "c/new/dir/0", _buf(b"abc"))  # a directory that does not exist yet
    assert (tmp_path / "a.zarr" / "c/new/dir/0").read_bytes() == b"abc"
    got = read_object(root, "c/new/dir/0", PROTO)
    assert got is not None and got.to_bytes() == b"abc"
    assert read_object(root, "c/absent", PROTO) is None
    assert read_object(root, "c/new", PROTO) is None  # a directory is no object, as LocalStore.get says
    assert read_object(root, "c/new/dir/0/below", PROTO) is None
    assert delete_object(store, root, "c/absent")
    assert delete_object(store, root, "c/new/dir/0") and not (tmp_path / "a.zarr" / "c/new/dir/0").exists()
    assert not delete_object(store, root, "c/new")  # a directory: left to the store (zarr removes the tree)
    assert not [p for p in (tmp_path / "a.zarr").rglob("*.partial")]


class _FailingBuffer(CpuBuffer):
    """A buffer whose bytes cannot be had: the write fails after its temporary file is opened."""

    def as_buffer_like(self) -> bytes:
        raise OSError("disk went away")


def test_a_failed_write_leaves_the_old_object_and_no_partial_file(tmp_path: Path) -> None:
    store = _open_store(tmp_path / "a.zarr")
    root = local_root(store)
    assert root is not None
    write_object(store, root, "c/0", _buf(b"old"))
    with pytest.raises(OSError, match="disk went away"):
        write_object(store, root, "c/0", _FailingBuffer(np.zeros(4, dtype="B")))
    assert (tmp_path / "a.zarr" / "c/0").read_bytes() == b"old"
    assert not [p for p in (tmp_path / "a.zarr").rglob("*.partial")]


def test_a_read_only_store_refuses_writes_as_zarr_does(tmp_path: Path) -> None:
    store = _open_store(tmp_path / "a.zarr", read_only=True)
    root = local_root(store)
    assert root is not None
    with pytest.raises(ValueError, match="read-only"):
        write_object(store, root, "c/0", _buf(b"x"))
    with pytest.raises(ValueError, match="read-only"):
        delete_object(store, root, "c/0")
    with pytest.raises(TypeError, match="Buffer"):
        write_object(_open_store(tmp_path / "b.zarr"), tmp_path / "b.zarr", "c/0", b"x")  # type: ignore[arg-type]
    assert not (tmp_path / "a.zarr" / "c" / "0").exists()


def test_region_writes_through_files_read_back_through_zarr(tmp_path: Path) -> None:
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=(30, 17), chunks=(7, 5), dtype="f4",
                            config={"write_empty_chunks": False})
    data = np.random.default_rng(3).normal(size=(30, 17)).astype("f4")
    data[:7] = 0  # a row of all-fill chunks: deleted, as zarr deletes them
    arr[...] = 1.0  # every chunk stored first: the fill chunks must go
    write_region(arr, (slice(0, 30), slice(0, 17)), data)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[...], data)
    np.testing.assert_array_equal(read_region(arr, (slice(2, 29), slice(1, 16))), data[2:29, 1:16])
    assert not list((tmp_path / "a.zarr" / "c" / "0").glob("*"))  # the chunks of row 0 were all fill


def test_files_written_under_an_append_read_cache_are_not_read_stale(tmp_path: Path) -> None:
    """An append's ReadCache over a plain LocalStore: its objects are written as files and the
    cache forgets each one written or deleted, so a read through the cache sees the new bytes."""
    store = _open_store(tmp_path / "a.zarr")
    cached = ReadCache(store)
    assert StoreOps(cached, 1).root == tmp_path / "a.zarr"
    assert StoreOps(ReadCache(FaultyStore(store, fail_at=10**6)), 1).root is None  # a wrapper inside: its coroutines
    arr = zarr.open_array(cached, mode="r+")
    write_region(arr, (slice(0, 4),), np.arange(4, dtype="f4"))
    assert sync(cached.get("c/0", PROTO)) is not None  # now cached
    write_region(arr, (slice(0, 4),), np.arange(10, 14, dtype="f4"))
    assert np.array_equal(arr[:], np.arange(10, 14, dtype="f4"))  # read through the cache
    assert np.array_equal(zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[:], np.arange(10, 14, dtype="f4"))
    write_region(arr, (slice(0, 2),), np.zeros(2, dtype="f4"))  # all fill value: the chunk is deleted
    assert np.array_equal(arr[:], np.array([0, 0, 12, 13], dtype="f4"))
    assert not (tmp_path / "a.zarr" / "c" / "0").exists()


def test_keys_are_joined_as_the_local_store_joins_them(tmp_path: Path) -> None:
    """A key with a trailing or doubled slash (a 0-d variable's marker prefix) names the file the
    store itself would write: the same bytes come back through the store, and a delete removes it."""
    store = _open_store(tmp_path / "a.zarr")
    root = local_root(store)
    assert root is not None
    for key in (".parallelzarr/tasks/x/a/", "b//c"):
        write_object(store, root, key, _buf(b"marker"))
        back = sync(store.get(key, PROTO))
        assert back is not None and back.to_bytes() == b"marker"
        got = read_object(root, key, PROTO)
        assert got is not None and got.to_bytes() == b"marker"
        assert delete_object(store, root, key)
        assert sync(store.get(key, PROTO)) is None
