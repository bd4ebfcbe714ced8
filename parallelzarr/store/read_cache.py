"""A store wrapper that reads each key once while its user is the store's only writer.

An append under the store's lease reads the same few documents several times on its way (the root
metadata for the format, for the dimension check and for xarray's open; the journal and the append
record before and after planning; the last index chunk for xarray's time decoding and for the
continuity check). Under the lease no other process writes the store, so a key read once stays
what it was until this process writes or deletes it, which the wrapper sees. Keys another process
may change while the lease is held (the lease itself) are never cached.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

__all__ = ["ReadCache"]


class ReadCache(WrapperStore[Any]):
    """Forward every operation to ``store``; answer repeated whole-key reads from memory.

    Parameters
    ----------
    store
        The zarr store read and written.
    uncached
        Keys always read from ``store`` (what another process may change meanwhile).

    Notes
    -----
    Only safe while no other process writes ``store`` (an append holding the lease). A set or a
    delete through the wrapper drops the key (a ``delete_dir`` everything under its prefix); ranged
    reads are not cached. Cached values are kept as bytes and handed out read-only, so no reader can
    change what the next one gets.
    """

    def __init__(self, store: Any, uncached: Iterable[str] = (), *, _shared: dict[str, bytes | None] | None = None,
                 _lock: threading.Lock | None = None) -> None:
        super().__init__(store)
        self.uncached = frozenset(uncached)
        self._values: dict[str, bytes | None] = {} if _shared is None else _shared
        self._lock = threading.Lock() if _lock is None else _lock

    def _with_store(self, store: Any) -> ReadCache:
        # zarr makes copies (with_read_only); they share the values so a write through one is seen by all.
        return type(self)(store, self.uncached, _shared=self._values, _lock=self._lock)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a ReadCache is valid only in the process holding the lease; it is not sent to workers")

    @property
    def supports_consolidated_metadata(self) -> bool:
        return bool(getattr(self._store, "supports_consolidated_metadata", True))

    @property
    def inner(self) -> Any:
        """The store this wrapper reads and writes."""
        return self._store

    def forget(self, key: str) -> None:
        """Drop ``key``'s cached value: the next read asks the store (after a write made around the wrapper)."""
        with self._lock:
            self._values.pop(key, None)

    _forget = forget

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        if byte_range is not None or key in self.uncached:
            return await self._store.get(key, prototype, byte_range)
        with self._lock:
            known = key in self._values
            data = self._values.get(key)
        if not known:
            buf = await self._store.get(key, prototype)
            data = None if buf is None else buf.to_bytes()
            with self._lock:
                self._values[key] = data
        return None if data is None else prototype.buffer.from_bytes(data)

    async def exists(self, key: str) -> bool:
        with self._lock:
            if key in self._values and key not in self.uncached:
                return self._values[key] is not None
        return await self._store.exists(key)

    async def set(self, key: str, value: Buffer) -> None:
        self._forget(key)
        await self._store.set(key, value)
        self._forget(key)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._forget(key)
        await self._store.set_if_not_exists(key, value)
        self._forget(key)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        values = list(values)
        for key, _ in values:
            self._forget(key)
        await self._store._set_many(values)
        for key, _ in values:
            self._forget(key)

    async def delete(self, key: str) -> None:
        self._forget(key)
        await self._store.delete(key)
        with self._lock:
            self._values[key] = None

    async def delete_dir(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._values if k.startswith(prefix)]:
                del self._values[key]
        await self._store.delete_dir(prefix)
