"""Appended data that repeats stored labels: tell identical rows from changed ones, skip or rewrite.

An append record (``.parallelzarr/appends/``) carries one content digest per appended label (see
:mod:`.ingest`), so "the same hours again" is recognised without reading the store. Rows stored by
a plain write (no record) are digested from the store itself. Policies (``repeat=``):

* ``"skip"`` (default): rows identical to the stored ones are skipped; any changed row is an error
  naming its labels (nothing is written);
* ``"overwrite"``: changed rows are rewritten in place with a region write, identical ones skipped;
* ``"error"``: any repeated label is an error.

An overwrite is crash-safe: each chunk is replaced whole (an atomic rename on a local filesystem, one
PUT on an object store; partly covered cells are merged under a lock by one task), so readers see
each value old or new, and shapes and metadata do not change. A record marking the rows as being
rewritten is written first and completed last: until then no recorded digest of those rows is
trusted, so a rerun after a crash compares with the store itself and finishes the rewrite.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr

from parallelzarr.commit.appendlog import append_log, write_record
from parallelzarr.commit.lease import acquire_lease
from parallelzarr.errors import AppendError
from parallelzarr.inputs.datasets import encoded_as_stored
from parallelzarr.inputs.ingest import REPEAT_POLICIES, combine_digests, labels_text, row_checksums
from parallelzarr.run.runner import write_now

__all__ = ["Repeats", "split_repeats", "digest_names", "incoming_digests", "stored_digests", "overwrite_rows"]


@dataclass
class Repeats:
    """The rows of appended data whose labels are already stored, and the rest."""

    positions: np.ndarray
    repeated: xr.Dataset
    new: xr.Dataset


def split_repeats(ds: xr.Dataset, stored: xr.Dataset, dim: str) -> Repeats | None:
    """Split ``ds`` into rows at stored labels and rows after the stored ones (``None``: no repeat).

    Raises
    ------
    AppendError
        Labels that are not stored but fall inside the stored range (late data for a gap).
    """
    if dim not in ds.indexes or dim not in stored.indexes or not len(stored.indexes[dim]):
        return None
    old, new = stored.indexes[dim], ds.indexes[dim]
    pos = np.asarray(old.get_indexer(new))
    hit = pos >= 0
    values, last, first = np.asarray(new), np.asarray(old)[-1], np.asarray(old)[0]
    increasing = len(old) < 2 or bool(old[-1] >= old[0])
    beyond = values > last if increasing else values < last
    inside = ~hit & ~beyond & ((values > first) if increasing else (values < first))
    if inside.any():
        raise AppendError(
            f"{int(inside.sum())} appended {dim!r} label(s) ({labels_text(values[inside])}) are not stored but lie "
            f"within the stored range ({labels_text([old[0]])} .. {labels_text([last])}): late data for a gap cannot "
            "be appended. Rows for it must exist in the store: append with the gap filled (missing values), then "
            "write the late data with a region write (README: 'Late data')"
        )
    if not hit.any():
        return None
    if (~hit).any() and np.flatnonzero(~hit)[0] < np.flatnonzero(hit)[-1]:
        raise AppendError(f"the appended {dim!r} labels mix new labels before stored ones; sort them")
    return Repeats(pos[hit], ds.isel({dim: np.flatnonzero(hit)}), ds.isel({dim: np.flatnonzero(~hit)}))


def digest_names(ds: xr.Dataset, stored: xr.Dataset, dim: str) -> list[str]:
    """The variables a label's digest covers: every stored variable along ``dim`` but ``dim`` itself."""
    return sorted(str(n) for n, v in ds.variables.items() if dim in v.dims and str(n) != dim and n in stored.variables)


def _axis(var: Any, dim: str) -> int:
    return list(map(str, var.dims)).index(dim)


def incoming_digests(ds: xr.Dataset, stored: xr.Dataset, store: Any, dim: str, **compute_kwargs: Any) -> list[str]:
    """One digest per label of ``ds``, over its values encoded as the store holds them."""
    sums = {}
    for name in digest_names(ds, stored, dim):
        arr = zarr.open_array(store, path=name, mode="r")
        var = encoded_as_stored(name, ds.variables[name], stored, arr.metadata.zarr_format)
        values = var.data if isinstance(var.data, da.Array) else da.from_array(np.asarray(var.data))
        sums[name] = row_checksums(values.astype(arr.dtype), _axis(var, dim))
    (computed,) = dask.compute(sums, **compute_kwargs)
    return combine_digests(computed)


def _from_store(store: Any, names: list[str], stored: xr.Dataset, dim: str, positions: np.ndarray) -> list[str]:
    sums = {}
    for name in names:
        arr = zarr.open_array(store, path=name, mode="r")
        axis = _axis(stored.variables[name], dim)
        rows = arr.get_orthogonal_selection(tuple(positions if i == axis else slice(None) for i in range(arr.ndim)))
        sums[name] = row_checksums(da.from_array(np.asarray(rows)), axis).compute(scheduler="sync")
    return combine_digests(sums)


def recorded_digests(store: Any) -> dict[int, str | None]:
    """Position -> digest from the records, later ones first; ``None``: a rewrite of it did not finish."""
    table: dict[int, str | None] = {}
    for entry in sorted(append_log(store), key=lambda e: (e.get("time_ns") or 0)):
        digests = entry.get("digests")
        if not isinstance(digests, list):
            continue
        positions = entry.get("positions") or range(int(entry.get("offset") or 0), int(entry.get("offset") or 0) + len(digests))
        for p, d in zip(positions, digests, strict=False):
            table[int(p)] = d
    return table


def stored_digests(store: Any, ds: xr.Dataset, stored: xr.Dataset, dim: str, positions: np.ndarray, *,
                   trust_records: bool = True) -> list[str]:
    """Digests of the stored rows at ``positions``: from the records where they have one, else from the store."""
    table = recorded_digests(store) if trust_records else {}
    out: list[str | None] = [table.get(int(p)) for p in positions]
    missing = [i for i, d in enumerate(out) if d is None]
    if missing:
        computed = _from_store(store, digest_names(ds, stored, dim), stored, dim, positions[missing])
        for i, d in zip(missing, computed, strict=True):
            out[i] = d
    return [str(d) for d in out]


def changed_rows(store: Any, rep: Repeats, stored: xr.Dataset, dim: str, repeat: str,
                 compute_kwargs: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Which repeated rows differ from the stored ones (a boolean mask) and the incoming digests.

    Recorded digests are trusted to say "identical" (the cheap path); a row they call changed is
    compared with the store before anything is refused or rewritten, since a region write may have
    changed the store after the record. ``repeat="overwrite"`` always compares with the store.
    """
    if repeat not in REPEAT_POLICIES:
        raise AppendError(f"repeat must be one of {REPEAT_POLICIES}, got {repeat!r}")
    new = np.asarray(incoming_digests(rep.repeated, stored, store, dim, **compute_kwargs))
    old = np.asarray(stored_digests(store, rep.repeated, stored, dim, rep.positions, trust_records=repeat != "overwrite"))
    changed = new != old
    if changed.any() and repeat != "overwrite":
        idx = np.flatnonzero(changed)
        recheck = np.asarray(stored_digests(store, rep.repeated, stored, dim, rep.positions[idx], trust_records=False))
        changed[idx] = new[idx] != recheck
    return changed, list(new)


def refuse_changed(rep: Repeats, changed: np.ndarray, dim: str, description: str) -> AppendError:
    labels = np.asarray(rep.repeated.indexes[dim])[changed]
    return AppendError(
        f"{int(changed.sum())} appended {dim!r} label(s) are already stored in {description} with other content: "
        f"{labels_text(labels)}. Nothing was written. To replace the stored rows pass repeat='overwrite' "
        "(CLI --repeat overwrite); to keep them, drop those labels from the data"
    )


def overwrite_rows(store: Any, description: str, rep: Repeats, changed: np.ndarray, digests: list[str], dim: str,
                   *, wait: Any, compute_kwargs: Mapping[str, Any], max_mem: Any) -> int:
    """Rewrite the changed repeated rows in place (region writes) under the lease; return the row count."""
    idx = np.flatnonzero(changed)
    positions = [int(p) for p in rep.positions[idx]]
    rows = rep.repeated.isel({dim: idx})
    rows = rows.drop_vars([n for n, v in rows.variables.items() if dim not in v.dims])
    lease = acquire_lease(store, description, "append (overwrite)", wait=wait)
    try:
        entry = {
            "id": f"overwrite-{uuid.uuid4().hex[:16]}", "kind": "overwrite", "dim": dim,
            "offset": min(positions), "length": max(positions) - min(positions) + 1, "positions": positions,
            "first": labels_text([rows.indexes[dim][0]]), "last": labels_text([rows.indexes[dim][-1]]),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "time_ns": time.time_ns(),
        }
        # First: until the rewrite is complete no recorded digest of these rows is trusted.
        write_record(store, {**entry, "digests": [None] * len(positions), "state": "rewriting"})
        # One region write per run of consecutive positions.
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        for run in np.split(np.arange(len(positions)), breaks):
            start, stop = positions[run[0]], positions[run[-1]] + 1
            write_now(rows.isel({dim: run}), store, region={dim: slice(start, stop)}, max_mem=max_mem,
                      compute_kwargs=compute_kwargs)
        write_record(store, {**entry, "digests": [digests[i] for i in idx], "state": "done"})
    finally:
        lease.release()
    return len(positions)
