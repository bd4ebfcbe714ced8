"""An append's commit steps on array metadata: grow each array's shape, then record the append.

Shared by the append's roll-forward (:mod:`parallelzarr.commit.rollforward`) and by a ``mode="a"``
write with ``append_dim`` whose changed variables without it commit in the same journal
(:mod:`parallelzarr.commit.overwrite`). Each step checks before it acts: safe to rerun after a crash.
"""

from __future__ import annotations

from typing import Any

import zarr
from zarr.core.sync import sync

from parallelzarr.commit.appendlog import read_record, write_record
from parallelzarr.hooks import fault_point
from parallelzarr.store.keys import ZarrFormat, read_json, write_metadata_doc


def grow_arrays(store: Any, shapes: dict[str, list[int]], fmt: ZarrFormat, done: list[str]) -> dict[str, dict[str, Any]]:
    """Give each array of ``shapes`` its new shape; return the documents now stored (for consolidation).

    A plain regular-grid document is rewritten in place (one read, at most one write); any other
    array is resized by zarr (and has no entry in the result). ``done`` gets a line per resize.
    """
    docs: dict[str, dict[str, Any]] = {}
    for name, shape in shapes.items():
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
    return docs


def record_append(store: Any, journal: dict[str, Any], done: list[str], fresh: bool = False) -> None:
    """Record the append of ``journal`` (after it is visible) and drop its resume markers.

    ``fresh``: the commit of the run that checked, under its lease, that no record exists (not a
    roll-forward after a crash): the record is written without reading it first.
    """
    entry = journal["entry"]
    if fresh or read_record(store, entry["id"]) is None:
        write_record(store, entry)
        done.append(f"recorded append {entry['id']}")
    fault_point("commit:logged")
    if journal.get("markers"):  # the append's resume markers (parallelzarr.store.markers), no longer needed
        sync(store.delete_dir(journal["markers"]))


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
