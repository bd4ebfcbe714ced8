"""Roll a journal forward: the steps after a commit point, each idempotent, for appends and overwrites.

The append protocol (DESIGN "Append protocol"): take the lease -> write chunks beyond the stored
shape -> write the journal -> resize each array's metadata -> consolidate the metadata (the commit
point) -> record the append -> delete the journal -> release the lease. A ``mode="a"`` overwrite's
journal (``kind="overwrite"``) is rolled forward by :mod:`parallelzarr.commit.overwrite`.
"""

from __future__ import annotations

from typing import Any

import zarr
from zarr.core.sync import sync

from parallelzarr.commit.appendlog import LEGACY_LOG_ATTR, migrate_legacy_log, read_record, write_record
from parallelzarr.commit.journal import stored_zarr_format
from parallelzarr.commit.overwrite import roll_forward_overwrite
from parallelzarr.hooks import fault_point
from parallelzarr.store.keys import JOURNAL_KEY, read_json, write_metadata_doc, zarr_format_of
from parallelzarr.store.keys import delete as delete_key


def roll_forward(store: Any, journal: dict[str, Any], consolidated: bool) -> list[str]:
    """Apply a journal: resize arrays, consolidate, record the append, drop the journal.

    Every step checks before it acts, so running it twice (or after a crash inside it) is safe. The
    record is written after the consolidation (the commit point for consolidated readers) and
    before the journal goes: a record never names an append readers cannot see, and an append
    readers can see but that has no record yet still has its journal, which writes the record.
    """
    if journal.get("kind") == "overwrite":  # mode="a"/"r+" without append_dim (parallelzarr.commit.overwrite)
        return roll_forward_overwrite(store, journal)
    done: list[str] = []
    fmt = zarr_format_of(journal.get("zarr_format") or stored_zarr_format(store))
    docs: dict[str, dict[str, Any]] = {}
    for name, shape in journal["shapes"].items():
        doc = _grow_shape(store, name, shape, fmt)
        if doc is None:  # not a plain regular-grid array document: let zarr resize it
            arr = zarr.open_array(store, path=name, mode="r+", zarr_format=fmt)
            if tuple(arr.shape) != tuple(shape):
                arr.resize(tuple(shape))
                done.append(f"resized {name} to {tuple(shape)}")
        else:
            if doc.pop("_resized", False):
                done.append(f"resized {name} to {tuple(shape)}")
            docs[name] = doc
        fault_point(f"commit:resized:{name}")
    if consolidated and len(docs) == len(journal["shapes"]) and _publish_consolidated(store, docs, fmt):
        done.append("consolidated metadata")
    else:
        done += migrate_legacy_log(store, consolidated)
        if consolidated:
            zarr.consolidate_metadata(store, zarr_format=fmt)
            done.append("consolidated metadata")
    fault_point("commit:consolidated")
    entry = journal["entry"]
    if read_record(store, entry["id"]) is None:
        write_record(store, entry)
        done.append(f"recorded append {entry['id']}")
    fault_point("commit:logged")
    if journal.get("markers"):  # the append's resume markers (parallelzarr.store.markers), no longer needed
        sync(store.delete_dir(journal["markers"]))
    delete_key(store, JOURNAL_KEY)
    fault_point("commit:journal-removed")
    return done


def _array_key(name: str, fmt: int) -> str:
    return f"{name}/zarr.json" if fmt == 3 else f"{name}/.zarray"


def _grow_shape(store: Any, name: str, shape: list[int], fmt: int) -> dict[str, Any] | None:
    """Set the shape in array ``name``'s own metadata document (one read, at most one write).

    Only a plain document on a regular chunk grid, growing: there the shape is all that changes
    (zarr's resize rewrites the same document). Anything else returns ``None`` for zarr to resize.
    The returned document is the one now stored (``"_resized"`` set when it was written).
    """
    doc = read_json(store, _array_key(name, fmt))
    if doc is None or not isinstance(doc.get("shape"), list) or len(doc["shape"]) != len(shape):
        return None
    if fmt == 3 and (doc.get("node_type") != "array" or (doc.get("chunk_grid") or {}).get("name") != "regular"):
        return None
    if any(int(old) > int(new) for old, new in zip(doc["shape"], shape, strict=True)):
        return None  # shrinking also deletes chunks: zarr's resize does that
    if [int(n) for n in doc["shape"]] != [int(n) for n in shape]:
        doc["shape"] = [int(n) for n in shape]
        write_metadata_doc(store, _array_key(name, fmt), doc)
        doc["_resized"] = True
    return doc


def _publish_consolidated(store: Any, docs: dict[str, dict[str, Any]], fmt: int) -> bool:
    """Put the arrays' new documents into the consolidated metadata with one write (the commit point).

    Only when the consolidated copy exists, lists every one of the arrays and holds no legacy
    append log (whose migration rewrites the root attributes): then only these arrays' shapes
    changed since it was written, and the document written equals what ``consolidate_metadata``
    would write for them. ``False`` otherwise (the caller consolidates the whole hierarchy).
    """
    key = "zarr.json" if fmt == 3 else ".zmetadata"
    root = read_json(store, key)
    if root is None:
        return False
    if fmt == 3:
        meta = (root.get("consolidated_metadata") or {}).get("metadata")
        attrs = root.get("attributes") or {}
        names = list(docs)
    else:
        meta = root.get("metadata")
        attrs = (meta or {}).get(".zattrs") or {}
        names = [f"{n}/.zarray" for n in docs]
    if not isinstance(meta, dict) or LEGACY_LOG_ATTR in attrs or any(n not in meta for n in names):
        return False
    changed = False
    for entry, doc in zip(names, docs.values(), strict=True):
        if meta[entry] != doc:
            meta[entry] = doc
            changed = True
    if changed:
        write_metadata_doc(store, key, root)
    return True
