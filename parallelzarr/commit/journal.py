"""The journal of a commit under way, and what readers of the consolidated metadata see.

The journal (``.parallelzarr/journal.json``) is written at a commit's commit point and deleted
when its roll-forward (:mod:`parallelzarr.commit.rollforward`) is done: a journal found later
means "roll forward". Appends and ``mode="a"`` overwrites share it (its ``kind`` tells them apart).
"""

from __future__ import annotations

from typing import Any

from parallelzarr.errors import StoreError
from parallelzarr.store.keys import JOURNAL_KEY, get, read_consolidated, read_json, write_json


def write_journal(store: Any, journal: dict[str, Any]) -> None:
    write_json(store, JOURNAL_KEY, journal)


def pending_journal(store: Any) -> dict[str, Any] | None:
    return read_json(store, JOURNAL_KEY)


def stored_zarr_format(store: Any) -> int:
    """The zarr format of the store's root group (one key read for format 3, two for format 2)."""
    if get(store, "zarr.json") is not None:
        return 3
    if get(store, ".zgroup") is not None:
        return 2
    raise StoreError("no zarr group at the store's root (neither zarr.json nor .zgroup)")


def published_shapes(store: Any, zarr_format: int | None) -> dict[str, list[int]]:
    """Each array's shape in the consolidated metadata (one read; empty without it or a known format)."""
    return published_view(store, zarr_format)[0]


def published_view(store: Any, zarr_format: int | None) -> tuple[dict[str, list[int]], dict[str, Any] | None]:
    """The consolidated shapes and the root attributes, from one read (``({}, None)`` without them)."""
    if zarr_format not in (2, 3):
        return {}, None
    found = read_consolidated(store, zarr_format)
    if found is None:
        return {}, None
    return _shapes_of(found.metadata, zarr_format), found.attributes


def _shapes_of(meta: dict[str, Any], zarr_format: int) -> dict[str, list[int]]:
    if zarr_format == 3:
        return {k: list(v["shape"]) for k, v in meta.items() if isinstance(v, dict) and v.get("node_type") == "array"}
    return {k[: -len("/.zarray")]: list(v["shape"]) for k, v in meta.items() if k.endswith("/.zarray") and "shape" in v}


