"""Roll a journal forward: the steps after a commit point, each idempotent, for appends and overwrites.

The append protocol (DESIGN "Append protocol"): take the lease -> write chunks beyond the stored
shape -> write the journal -> resize each array's metadata -> consolidate the metadata (the commit
point) -> record the append -> delete the journal -> release the lease. A ``mode="a"`` overwrite's
journal (``kind="overwrite"``) is rolled forward by :mod:`parallelzarr.commit.overwrite`.
"""

from __future__ import annotations

from typing import Any

import zarr

from parallelzarr.commit.appendlog import LEGACY_LOG_ATTR, migrate_legacy_log
from parallelzarr.commit.grow import grow_arrays, record_append
from parallelzarr.commit.journal import stored_zarr_format
from parallelzarr.commit.overwrite import roll_forward_overwrite
from parallelzarr.hooks import fault_point
from parallelzarr.store.keys import (
    JOURNAL_KEY,
    consolidated_key,
    read_consolidated,
    write_metadata_doc,
    zarr_format_of,
)
from parallelzarr.store.keys import delete as delete_key


def roll_forward(store: Any, journal: dict[str, Any], consolidated: bool, fresh: bool = False) -> list[str]:
    """Apply a journal: resize arrays, consolidate, record the append, drop the journal.

    Every step checks before it acts, so running it twice (or after a crash inside it) is safe. The
    record is written after the consolidation (the commit point for consolidated readers) and
    before the journal goes: a record never names an append readers cannot see, and an append
    readers can see but that has no record yet still has its journal, which writes the record.
    ``fresh``: the first roll-forward, by the append that wrote the journal and found under its
    lease that the append has no record (the record is then written without reading it first).
    """
    if journal.get("kind") == "overwrite":  # mode="a"/"r+" without append_dim (parallelzarr.commit.overwrite)
        return roll_forward_overwrite(store, journal)
    done: list[str] = []
    fmt = zarr_format_of(journal.get("zarr_format") or stored_zarr_format(store))
    docs = grow_arrays(store, journal["shapes"], fmt, done)
    if consolidated and len(docs) == len(journal["shapes"]) and _publish_consolidated(store, docs, fmt):
        done.append("consolidated metadata")
    else:
        done += migrate_legacy_log(store, consolidated)
        if consolidated:
            zarr.consolidate_metadata(store, zarr_format=fmt)
            done.append("consolidated metadata")
    fault_point("commit:consolidated")
    record_append(store, journal, done, fresh)
    delete_key(store, JOURNAL_KEY)
    fault_point("commit:journal-removed")
    return done


def _publish_consolidated(store: Any, docs: dict[str, dict[str, Any]], fmt: int) -> bool:
    """Put the arrays' new documents into the consolidated metadata with one write (the commit point).

    Only when the consolidated copy exists, lists every one of the arrays and holds no legacy
    append log (whose migration rewrites the root attributes): then only these arrays' shapes
    changed since it was written, and the document written equals what ``consolidate_metadata``
    would write for them. ``False`` otherwise (the caller consolidates the whole hierarchy).
    """
    found = read_consolidated(store, fmt)
    names = list(docs) if fmt == 3 else [f"{n}/.zarray" for n in docs]
    if found is None or LEGACY_LOG_ATTR in found.attributes or any(n not in found.metadata for n in names):
        return False
    meta = found.metadata
    changed = False
    for entry, doc in zip(names, docs.values(), strict=True):
        if meta[entry] != doc:
            meta[entry] = doc
            changed = True
    if changed:
        write_metadata_doc(store, consolidated_key(fmt), found.root)
    return True
