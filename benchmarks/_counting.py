"""A zarr store wrapper that counts every store operation by kind (zarr 3 only: the rechunker venv
runs zarr 2, so this lives apart from ``_common``)."""

from __future__ import annotations

import threading
from typing import Any

from zarr.storage import WrapperStore


class CountingStore(WrapperStore):
    """Counts each operation by kind in ``counts`` (shared by the copies zarr makes), then forwards it."""

    def __init__(self, inner: Any, counts: dict[str, int] | None = None) -> None:
        super().__init__(inner)
        self.counts: dict[str, int] = counts if counts is not None else {}
        self._lock = threading.Lock()

    def _with_store(self, inner: Any) -> Any:
        return type(self)(inner, self.counts)

    def _n(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        self._n("get")
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        key_ranges = list(key_ranges)
        for _ in key_ranges:
            self._n("get")
        return await self._store.get_partial_values(prototype, key_ranges)

    async def exists(self, key: str) -> bool:
        self._n("exists")
        return await self._store.exists(key)

    async def set(self, key: str, value: Any) -> None:
        self._n("set")
        await self._store.set(key, value)

    async def set_if_not_exists(self, key: str, value: Any) -> None:
        self._n("set")
        await self._store.set_if_not_exists(key, value)

    async def delete(self, key: str) -> None:
        self._n("delete")
        await self._store.delete(key)

    async def delete_dir(self, prefix: str) -> None:
        self._n("delete")
        await self._store.delete_dir(prefix)

    async def list(self) -> Any:
        self._n("list")
        async for k in self._store.list():
            yield k

    async def list_prefix(self, prefix: str) -> Any:
        self._n("list")
        async for k in self._store.list_prefix(prefix):
            yield k

    async def list_dir(self, prefix: str) -> Any:
        self._n("list")
        async for k in self._store.list_dir(prefix):
            yield k


def counting_store(store: Any) -> CountingStore:
    """Wrap a zarr store so every operation is counted by kind (``get``, ``set``, ``delete``, ``list``...).

    ``wrapped.counts`` is a dict of kind -> number, shared by the copies zarr makes
    (``with_read_only``); reset it with ``wrapped.counts.clear()``. The wrapper only counts: every
    operation goes to ``store`` unchanged.
    """
    return CountingStore(store)
