"""Target stores: paths, fsspec URLs and zarr stores, described without credentials."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import zarr
import zarr.storage

from ..errors import StoreError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")


@dataclass
class ResolvedStore:
    """A store ready for zarr, with what the planner needs to know about it.

    Attributes
    ----------
    store
        What to hand to zarr and xarray (a path string or a ``zarr.abc.store.Store``).
    description
        Path or URL for messages and plans, never with credentials.
    local_path
        Filesystem directory when the store is on a (possibly shared) local filesystem.
    """

    store: Any
    description: str
    local_path: str | None


def _strip_credentials(url: str) -> str:
    return re.sub(r"(://)[^/@]*@", r"\1", url)


def resolve_store(store: Any, storage_options: dict[str, Any] | None = None, *, read_only: bool = False) -> ResolvedStore:
    """Turn a path, URL or zarr store into a :class:`ResolvedStore`.

    Parameters
    ----------
    store
        A filesystem path (``str`` or ``os.PathLike``), an fsspec URL such as ``s3://bucket/x.zarr``,
        or a zarr store instance.
    storage_options
        Options for fsspec (credentials, endpoint); only used with URLs.
    read_only
        Open the store read-only.
    """
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    if isinstance(store, str):
        if store.startswith("file://"):
            store = store[len("file://") :]
        if _URL.match(store):
            try:
                fs_store = zarr.storage.FsspecStore.from_url(
                    store, storage_options=dict(storage_options or {}), read_only=read_only
                )
            except Exception as exc:  # fsspec raises many kinds for unknown protocols or bad options
                raise StoreError(f"cannot open store {_strip_credentials(store)}: {exc}") from exc
            return ResolvedStore(fs_store, _strip_credentials(store), None)
        if storage_options:
            raise StoreError(f"storage_options are only used with URLs (s3://, gs://, ...), not the local path {store!r}")
        path = os.path.abspath(store)
        return ResolvedStore(zarr.storage.LocalStore(path, read_only=read_only), path, path)
    if isinstance(store, zarr.storage.LocalStore):
        return ResolvedStore(store, str(store.root), str(store.root))
    if isinstance(store, zarr.storage.FsspecStore):
        return ResolvedStore(store, _strip_credentials(f"{store.fs.protocol}://{store.path}"), None)
    if isinstance(store, zarr.abc.store.Store):
        return ResolvedStore(store, type(store).__name__, None)
    raise StoreError(
        f"cannot use {type(store).__name__} as a store; give a path, an fsspec URL or a zarr store"
    )


def store_has_data(store: Any) -> bool:
    """Whether anything is stored at the root of ``store``.

    Root metadata documents answer without listing; only a store without them is listed (a partly
    written or foreign store still counts as holding data).
    """
    from zarr.core.sync import sync

    async def _any() -> bool:
        for key in ("zarr.json", ".zgroup", ".zarray"):
            if await store.exists(key):
                return True
        async for _ in store.list():
            return True
        return False

    try:
        return bool(sync(_any()))
    except FileNotFoundError:
        return False
