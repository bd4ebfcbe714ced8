"""The append log: one small JSON record per committed append under ``.parallelzarr/appends/``.

Not a group attribute: readers (xarray decodes root attributes into ``Dataset.attrs``) never load
it, and the root metadata does not grow with the number of appends. A record is written only after
its append is visible and before its journal is deleted, so a record always means "applied", and an
applied append without a record still has its journal (the roll-forward writes the record). Stores
written before this layout keep their log in the root attribute ``parallelzarr_appends``; it is read
as well, and moved into records (and dropped from the attributes) by the next commit.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import zarr
from zarr.core.sync import sync

from parallelzarr.store.keys import APPENDS_PREFIX, read_json, write_json
from parallelzarr.store.keys import delete as delete_key

#: Root group attribute of the append log in stores written before the log moved to ``APPENDS_PREFIX``.
LEGACY_LOG_ATTR = "parallelzarr_appends"


_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def record_key(append_id: str) -> str:
    """The key of an append's record: the id itself when it is a safe file name, else its digest."""
    aid = str(append_id)
    name = aid if _SAFE_ID.fullmatch(aid) else "sha1-" + hashlib.sha1(aid.encode()).hexdigest()
    return f"{APPENDS_PREFIX}{name}.json"


def read_record(store: Any, append_id: str) -> dict[str, Any] | None:
    """The record of append ``append_id``, or ``None`` if it was never committed (one key read)."""
    entry = read_json(store, record_key(append_id))
    return entry if entry is not None and entry.get("id") == append_id else None


def write_record(store: Any, entry: dict[str, Any]) -> None:
    write_json(store, record_key(entry["id"]), entry)


def delete_record(store: Any, append_id: str) -> None:
    delete_key(store, record_key(append_id))


def legacy_log(store: Any, zarr_format: int | None = None) -> list[dict[str, Any]]:
    """The log kept in the root group attributes by earlier versions (empty for newer stores).

    With ``zarr_format`` known, the root attributes are read as one document (no format probing).
    """
    if zarr_format in (2, 3):
        doc = read_json(store, "zarr.json" if zarr_format == 3 else ".zattrs") or {}
        log = (doc.get("attributes") or {} if zarr_format == 3 else doc).get(LEGACY_LOG_ATTR, None)
        return [e for e in log if isinstance(e, dict)] if isinstance(log, list) else []
    try:
        group = zarr.open_group(store, mode="r", use_consolidated=False)
    except Exception:
        return []
    log = group.attrs.get(LEGACY_LOG_ATTR, None)
    return [e for e in log if isinstance(e, dict)] if isinstance(log, list) else []


def is_recorded(store: Any, append_id: str, zarr_format: int | None = None,
                root_attrs: dict[str, Any] | None = None) -> bool:
    """Whether append ``append_id`` was committed (a record, or an entry of a legacy log).

    ``root_attrs``: the root group's attributes when the caller has just read them (the legacy
    log is then looked up there, with no further read).
    """
    if read_record(store, append_id) is not None:
        return True
    if root_attrs is not None:
        log = root_attrs.get(LEGACY_LOG_ATTR)
        entries = [e for e in log if isinstance(e, dict)] if isinstance(log, list) else []
    else:
        entries = legacy_log(store, zarr_format)
    return any(e.get("id") == append_id for e in entries)


def append_log(store: Any) -> list[dict[str, Any]]:
    """Every recorded append, oldest first (records and any legacy attribute log, by offset)."""

    async def _keys() -> list[str]:
        return [k async for k in store.list_prefix(APPENDS_PREFIX)]

    try:
        keys = sync(_keys())
    except (FileNotFoundError, OSError):
        keys = []
    entries: dict[str, dict[str, Any]] = {str(e.get("id")): e for e in legacy_log(store)}
    for key in keys:
        if key.endswith(".json"):
            entry = read_json(store, key)
            if entry is not None and "id" in entry:
                entries[str(entry["id"])] = entry
    return sorted(entries.values(), key=lambda e: (e.get("offset") or 0, str(e.get("time") or "")))


def migrate_legacy_log(store: Any, consolidated: bool) -> list[str]:
    """Move a legacy attribute log into records, then drop the attribute (idempotent, crash-safe).

    The records are written first, so a crash in between leaves the entries in both places, which
    :func:`append_log` merges by id. Must run before the consolidation, which copies the root
    attributes.
    """
    entries = legacy_log(store)
    try:
        group = zarr.open_group(store, mode="r+", use_consolidated=None if consolidated else False)
    except Exception:
        return []
    if LEGACY_LOG_ATTR not in group.attrs:
        return []
    for entry in entries:
        if "id" in entry and read_record(store, entry["id"]) is None:
            write_record(store, entry)
    # Opened with its consolidated metadata (if any) so this write keeps it until the consolidation.
    del group.attrs[LEGACY_LOG_ATTR]
    return [f"moved the append log ({len(entries)} entries) from the root attributes to {APPENDS_PREFIX}"]

