"""Chunk objects of a plain zarr ``LocalStore`` read and written as files, from the calling thread.

A ``LocalStore`` operation is a coroutine that hands its file work to ``asyncio.to_thread``; run
inline (:func:`parallelzarr.store.zarr_compat.run_inline`) each one still costs an event-loop turn,
a future and a ``mkdir`` of the key's directory: 75-100 µs of CPU per write and 40-50 µs per read
on the development machine (``benchmarks/bench_store_ops.py``). Here the same file operations are
made directly, with the store's guarantees kept: every object is written
to a temporary file beside it and renamed into place (a reader or a crash sees the old object or
the new one, never part of one), a missing object reads as ``None``, and a read-only store refuses
writes. Only an open store of exactly ``zarr.storage.LocalStore`` qualifies: a subclass or a
wrapper may change what its operations do, so it keeps going through them. The one wrapper let
through is an append's :class:`~parallelzarr.store.read_cache.ReadCache` directly over such a
store (:func:`files_target`): its files are written the same way and the cache forgets each key.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr.storage
from zarr.core.buffer import Buffer, BufferPrototype

from parallelzarr.store.read_cache import ReadCache

__all__ = ["FilesTarget", "files_target", "local_root", "read_object", "write_object", "delete_object"]


def local_root(store: Any) -> Path | None:
    """The directory of ``store`` when it is an open, plain ``LocalStore`` (else ``None``)."""
    if type(store) is zarr.storage.LocalStore and getattr(store, "_is_open", False):
        return Path(store.root)
    return None


@dataclass(frozen=True)
class FilesTarget:
    """Where a store's objects are written as files: the plain store, its directory, a cache to tell.

    Attributes
    ----------
    store
        The plain ``LocalStore`` (its ``read_only`` is honoured).
    root
        Its directory.
    cache
        The ``ReadCache`` the caller was given over ``store`` (``None`` without one): it forgets
        each key written or deleted around it.
    """

    store: Any
    root: Path
    cache: ReadCache | None = None

    def write(self, key: str, value: Buffer) -> None:
        """:func:`write_object`, the cache forgetting ``key`` before and after (as ``ReadCache.set``)."""
        self._forget(key)
        try:
            write_object(self.store, self.root, key, value)
        finally:
            self._forget(key)  # a read racing the write cached nothing stale

    def delete(self, key: str) -> bool:
        """:func:`delete_object`, the cache forgetting ``key``."""
        self._forget(key)
        try:
            return delete_object(self.store, self.root, key)
        finally:
            self._forget(key)

    def _forget(self, key: str) -> None:
        if self.cache is not None:
            self.cache.forget(key)


def files_target(store: Any) -> FilesTarget | None:
    """How to write ``store``'s objects as files: a plain open ``LocalStore``, or a ``ReadCache`` over one."""
    root = local_root(store)
    if root is not None:
        return FilesTarget(store, root)
    if type(store) is ReadCache:
        root = local_root(store.inner)
        if root is not None:
            return FilesTarget(store.inner, root, store)
    return None


def _path(root: Path, key: str) -> str:
    # As LocalStore joins them (``root / key``): a key's trailing or doubled slashes are dropped.
    return os.fspath(root / key)


def read_object(root: Path, key: str, prototype: BufferPrototype) -> Buffer | None:
    """The whole object at ``key`` under ``root``, or ``None`` where there is none (as ``LocalStore.get``)."""
    try:
        with open(_path(root, key), "rb") as f:
            return prototype.buffer.from_bytes(f.read())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def write_object(store: Any, root: Path, key: str, value: Buffer) -> None:
    """Store ``value`` at ``key`` atomically: a temporary file in the same directory, then a rename.

    The key's directory is made only when the first open finds it missing (one system call saved
    per object in the common case where it exists).
    """
    if store.read_only:
        raise ValueError("store was opened in read-only mode and does not support writing")
    if not isinstance(value, Buffer):
        raise TypeError(f"LocalStore.set(): `value` must be a Buffer instance. Got an instance of {type(value)} instead.")
    path = _path(root, key)
    partial = f"{path}.{uuid.uuid4().hex}.partial"
    try:
        f = open(partial, "wb")  # noqa: SIM115 - closed below, before the rename
    except FileNotFoundError:
        os.makedirs(os.path.dirname(partial), exist_ok=True)
        f = open(partial, "wb")  # noqa: SIM115
    try:
        with f:
            f.write(value.as_buffer_like())
        os.replace(partial, path)
    except BaseException:
        try:
            os.unlink(partial)
        except FileNotFoundError:
            pass
        raise


def delete_object(store: Any, root: Path, key: str) -> bool:
    """Delete the object file at ``key`` (absent is fine); ``False`` when ``key`` is a directory (the store decides)."""
    if store.read_only:
        raise ValueError("store was opened in read-only mode and does not support writing")
    try:
        os.unlink(_path(root, key))
    except FileNotFoundError:
        pass
    except (IsADirectoryError, PermissionError):  # a directory (EISDIR on Linux, EPERM on macOS), or denied
        return False
    return True
