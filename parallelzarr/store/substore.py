"""A zarr store seen from one of its groups: every key prefixed with the group's path.

xarray's ``group=`` works with any store (``zarr.open_group(store, path=group)``); parallelzarr writes
a Dataset at the root of the store it is given, so for stores that cannot simply be re-opened one
level deeper (a ``MemoryStore``, wrapper stores) the group is given as this view.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore


class SubStore(WrapperStore[Store]):
    """``store`` with every key under ``prefix/`` (``prefix`` a group path such as ``"a/b"``)."""

    def __init__(self, store: Store, prefix: str) -> None:
        super().__init__(store)
        self.prefix = prefix.strip("/")

    def _with_store(self, store: Store) -> SubStore:
        return type(self)(store, self.prefix)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if key else self.prefix

    def _rel(self, key: str) -> str:
        return key[len(self.prefix) + 1 :]

    @property
    def supports_consolidated_metadata(self) -> bool:
        return bool(getattr(self._store, "supports_consolidated_metadata", True))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SubStore) and other.prefix == self.prefix and other._store == self._store

    def __hash__(self) -> int:
        return hash((id(self._store), self.prefix))

    def __repr__(self) -> str:
        return f"SubStore({self._store!r}, {self.prefix!r})"

    def __str__(self) -> str:
        return f"{self._store}/{self.prefix}"

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        return await self._store.get(self._key(key), prototype, byte_range)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return await self._store.get_partial_values(prototype, [(self._key(k), r) for k, r in key_ranges])

    async def exists(self, key: str) -> bool:
        return await self._store.exists(self._key(key))

    async def set(self, key: str, value: Buffer) -> None:
        await self._store.set(self._key(key), value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        await self._store.set_if_not_exists(self._key(key), value)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        await self._store._set_many([(self._key(k), v) for k, v in values])

    async def delete(self, key: str) -> None:
        await self._store.delete(self._key(key))

    async def delete_dir(self, prefix: str) -> None:
        await self._store.delete_dir(self._key(prefix))

    async def is_empty(self, prefix: str) -> bool:
        return await self._store.is_empty(self._key(prefix))

    async def clear(self) -> None:
        await self._store.delete_dir(self.prefix)

    async def list(self) -> AsyncIterator[str]:
        async for key in self._store.list_prefix(self.prefix + "/"):
            yield self._rel(key)

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        async for key in self._store.list_prefix(f"{self.prefix}/{prefix}"):
            yield self._rel(key)

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        async for key in self._store.list_dir(self._key(prefix.rstrip("/"))):
            yield key

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
    ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        for key, prototype, byte_range in requests:  # the wrapped store's would skip the prefix
            yield key, await self.get(key, prototype, byte_range)

    async def getsize(self, key: str) -> int:
        return await self._store.getsize(self._key(key))

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self._store, "prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["store"], state["prefix"])  # type: ignore[misc]  # rebuilt exactly as constructed
