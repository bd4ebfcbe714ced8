"""Target stores: paths, fsspec URLs and zarr stores, described without credentials."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zarr
import zarr.abc.store
import zarr.storage

from parallelzarr.errors import InvalidNameError, StoreError
from parallelzarr.redact import redact, redact_url, url_credentials

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")
#: Object stores: credentials in the URL are never valid there, and the bucket must exist.
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"})


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


def check_path(path: Any, what: str = "store path") -> None:
    """Refuse store paths that cannot name a location: empty (the current directory) or with NUL."""
    if isinstance(path, str | bytes):
        text = path.decode(errors="replace") if isinstance(path, bytes) else path
        if not text.strip():
            raise InvalidNameError(f"{what} is empty; give the path or URL of the store")
        if "\x00" in text:
            raise InvalidNameError(f"{what} {text!r} contains a NUL character; give a valid path")


def _strip_credentials(url: str) -> str:
    return redact_url(re.sub(r"(://)[^/@]*@", r"\1", url))


def _protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _check_bucket(fs_store: zarr.storage.FsspecStore, url: str, options: dict[str, Any], secrets: list[str]) -> None:
    """Refuse, before anything is written, an object-store URL whose bucket does not exist or cannot be reached."""
    bucket = str(fs_store.path).strip("/").split("/", 1)[0]
    if not bucket:
        raise StoreError(f"store URL {_strip_credentials(url)} names no bucket; give s3://BUCKET/PATH")
    problem = None
    try:
        from zarr.core.sync import sync

        fs = fs_store.fs
        exists = sync(fs._exists(bucket)) if getattr(fs, "asynchronous", False) else fs.exists(bucket)
        if not exists:
            problem = "does not exist (or these credentials cannot see it); create it first or fix the URL"
    except Exception as exc:  # connection errors, bad options, permissions: all from the client library
        problem = f"cannot be reached: {type(exc).__name__}: {exc}; check the endpoint and the credentials"
    if problem is not None:
        raise StoreError(redact(f"bucket {bucket!r} of {_strip_credentials(url)} {problem}", options, secrets))


def resolve_store(store: Any, storage_options: Mapping[str, Any] | None = None, *, read_only: bool = False) -> ResolvedStore:
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
    check_path(store)
    if isinstance(store, str):
        if store.startswith("file://"):
            store = store[len("file://") :]
            check_path(store)
        if _URL.match(store):
            options = dict(storage_options or {})
            secrets = url_credentials(store)
            if secrets and _protocol(store) in OBJECT_STORE_PROTOCOLS:
                raise StoreError(
                    f"{_strip_credentials(store)}: credentials embedded in a {_protocol(store)}:// URL are not "
                    "supported (and would be logged); pass them in storage_options (key=..., secret=...) instead"
                )
            problem = None
            try:
                fs_store = zarr.storage.FsspecStore.from_url(store, storage_options=options, read_only=read_only)
            except Exception as exc:  # fsspec raises many kinds for unknown protocols or bad options
                problem = redact(f"cannot open store {_strip_credentials(store)}: {type(exc).__name__}: {exc}",
                                 options, secrets)
            if problem is not None:  # raised outside the handler: no chained exception carries secrets
                raise StoreError(problem)
            if _protocol(store) in OBJECT_STORE_PROTOCOLS:
                _check_bucket(fs_store, store, options, secrets)
            return ResolvedStore(fs_store, _strip_credentials(store), None)
        if storage_options:
            raise StoreError(f"storage_options are only used with URLs (s3://, gs://, ...), not the local path {store!r}")
        path = os.path.abspath(store)
        from parallelzarr.store.zarr_compat import open_existing_here

        local = zarr.storage.LocalStore(path, read_only=read_only)
        open_existing_here(local)
        return ResolvedStore(local, path, path)
    if isinstance(store, dict):
        # As zarr and xarray do: a plain dict holds the keys of an in-memory store.
        return ResolvedStore(zarr.storage.MemoryStore(store_dict=store, read_only=read_only), "MemoryStore(dict)", None)
    if isinstance(store, zarr.storage.LocalStore):
        return ResolvedStore(store, str(store.root), str(store.root))
    if isinstance(store, zarr.storage.FsspecStore):
        return ResolvedStore(store, _strip_credentials(f"{store.fs.protocol}://{store.path}"), None)
    if isinstance(store, zarr.storage.WrapperStore):
        # A wrapper (logging, counting, fault injection) writes where its inner store does: the
        # inner store's directory is where file locks must live.
        inner = resolve_store(unwrap_store(store), read_only=read_only)
        return ResolvedStore(store, f"{type(store).__name__}({inner.description})", inner.local_path)
    if isinstance(store, zarr.abc.store.Store):
        return ResolvedStore(store, type(store).__name__, None)
    raise StoreError(
        f"cannot use {type(store).__name__} as a store; give a path, an fsspec URL or a zarr store"
    )


def unwrap_store(store: Any) -> Any:
    """The innermost store under any ``zarr.storage.WrapperStore`` layers."""
    while isinstance(store, zarr.storage.WrapperStore):
        store = store._store
    return store


def is_in_memory(store: Any) -> bool:
    """Whether ``store`` lives in this process's memory (no other process can write it)."""
    store = unwrap_store(store)
    if isinstance(store, zarr.storage.MemoryStore):
        return True
    fs = getattr(store, "fs", None)
    protocol = getattr(fs, "protocol", None)
    protocols = protocol if isinstance(protocol, tuple | list) else (protocol,)
    return isinstance(store, zarr.storage.FsspecStore) and "memory" in protocols


def resolve_consolidated(store: Any, consolidated: bool | None, description: str) -> bool:
    """Whether to write consolidated metadata: only where the store supports it, as xarray does.

    Decided before any write: a consolidation that failed at the commit left an append applied for
    some readers, a journal behind, and every later append failing. A store without support (it
    declares ``supports_consolidated_metadata = False``) is written unconsolidated whatever
    ``consolidated`` says, which is what xarray does with such a store.
    """
    supported = bool(getattr(store, "supports_consolidated_metadata", True))
    if consolidated is None:
        return supported
    return bool(consolidated) and supported


#: The documents that make a store's root node visible (v3, then v2's group and array), with their format.
_ROOT_NODE_DOCS = (("zarr.json", 3), (".zgroup", 2), (".zarray", 2))


async def _root_node_format(store: Any) -> int | None:
    for key, fmt in _ROOT_NODE_DOCS:
        if await store.exists(key):
            return fmt
    return None


def root_node_format(store: Any) -> int | None:
    """The zarr format of the store's root node document, ``None`` without one (or when unreadable).

    The same ``exists`` checks as :func:`has_root_node` (one for a zarr v3 store), so an open that
    follows can be given the format instead of probing every format's documents.
    """
    from parallelzarr.store.zarr_compat import run_for

    try:
        return run_for(store, _root_node_format(store))
    except Exception:
        return None


def has_root_node(store: Any) -> bool:
    """Whether a root node document is stored: the store is published (our writes publish it last).

    One ``exists`` for a zarr v3 store; no listing. ``False`` also when the store cannot be read.
    """
    return root_node_format(store) is not None


def store_has_data(store: Any, description: str | None = None) -> bool:
    """Whether anything is stored at the root of ``store``.

    Root metadata documents answer without listing; only a store without them is listed (a partly
    written or foreign store still counts as holding data).
    """
    from parallelzarr.store.zarr_compat import run_for

    async def _any() -> bool:
        if await _root_node_format(store) is not None:
            return True
        async for _ in store.list():
            return True
        return False

    problem = None
    try:
        return bool(run_for(store, _any()))
    except FileNotFoundError:
        return False
    except Exception as exc:  # unreachable endpoints, bad options, permissions
        problem = f"cannot list {description or type(store).__name__}: {type(exc).__name__}: {redact(exc)}"
    raise StoreError(f"{problem}; check the path or URL, the endpoint and the credentials")
