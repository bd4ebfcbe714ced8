"""Chunk objects of a plain zarr ``LocalStore`` read and written as files, from the calling thread.

A ``LocalStore`` operation is a coroutine that hands its file work to ``asyncio.to_thread``; run
inline (:func:`parallelzarr.store.zarr_compat.run_inline`) each one still costs an event-loop turn,
a future and a ``mkdir`` of the key's directory: 75-100 µs of CPU per write and 40-50 µs per read
on the development machine (``benchmarks/bench_store_ops.py``). Here the same file operations are
made directly, with the store's guarantees kept: every object is written
to a temporary file beside it and renamed into place (a reader or a crash sees the old object or
the new one, never part of one), a missing object reads as ``None``, and a read-only store refuses
writes. Only an open store of exactly ``zarr.storage.LocalStore`` qualifies: a subclass or a
wrapper may change what its operations do, so it keeps going through them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import zarr.storage
from zarr.core.buffer import Buffer, BufferPrototype

__all__ = ["local_root", "read_object", "write_object", "delete_object"]


def local_root(store: Any) -> Path | None:
    """The directory of ``store`` when it is an open, plain ``LocalStore`` (else ``None``)."""
    if type(store) is zarr.storage.LocalStore and getattr(store, "_is_open", False):
        return Path(store.root)
    return None


def read_object(root: Path, key: str, prototype: BufferPrototype) -> Buffer | None:
    """The whole object at ``key`` under ``root``, or ``None`` where there is none (as ``LocalStore.get``)."""
    try:
        with open(os.path.join(root, key), "rb") as f:
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
    path = os.path.join(root, key)
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
        os.unlink(os.path.join(root, key))
    except FileNotFoundError:
        pass
    except (IsADirectoryError, PermissionError):  # a directory (EISDIR on Linux, EPERM on macOS), or denied
        return False
    return True
