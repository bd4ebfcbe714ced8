"""``repair``: roll forward a journal, clear dead leases, drop stray chunks, report disagreements.

Each step is one the commit protocol already allows; ``truncate=True`` cuts arrays that disagree
on a shared dimension back to the shortest length (forgetting the records of the dropped rows first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zarr
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.sync import sync

from parallelzarr.commit.appendlog import append_log, delete_record, migrate_legacy_log
from parallelzarr.commit.journal import pending_journal
from parallelzarr.commit.lease import acquire_lease, break_dead_lease, clear_break_markers, read_lease
from parallelzarr.commit.rollforward import roll_forward
from parallelzarr.errors import LeaseError, StoreError
from parallelzarr.store.dims import array_dims, describe_conflict, dimension_conflicts
from parallelzarr.store.holders import describe_holder, held_by_this_process, holder_alive
from parallelzarr.store.keys import ARRAY_DOCS, LEASE_KEY, PREFIX, clear_stale_drafts
from parallelzarr.store.keys import delete as delete_key
from parallelzarr.store.staging import describe_unpublished, unpublished_write


@dataclass
class RepairReport:
    """What :func:`repair` found and did."""

    store: str
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"repair {self.store}: {'ok' if self.ok else 'needs attention'}"]
        nothing = "  did: nothing (store was consistent)" if self.ok else "  did: nothing"
        lines += [f"  did: {a}" for a in self.actions] or [nothing]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "ok": self.ok, "actions": self.actions, "problems": self.problems}


def _chunk_index(key: str, prefix: str, separator: str, zarr_format: int) -> tuple[int, ...] | None:
    rest = key[len(prefix) :]
    if zarr_format == 3:
        if not rest.startswith("c"):
            return None
        rest = rest[1:].lstrip(separator)
    parts = rest.split(separator) if rest else []
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        return None


def remove_chunks_beyond_shape(store: Any) -> list[str]:
    """Delete chunk keys lying wholly outside each array's shape (left by an interrupted append)."""
    removed: list[str] = []
    group = zarr.open_group(store, mode="r", use_consolidated=False)
    for name, arr in group.arrays():
        fmt = arr.metadata.zarr_format
        if isinstance(arr.metadata, ArrayV3Metadata):
            sep = getattr(arr.metadata.chunk_key_encoding, "separator", "/")
        else:
            sep = getattr(arr.metadata, "dimension_separator", ".") or "."
        grid = arr.shards or arr.chunks
        ncells = [-(-s // g) for s, g in zip(arr.shape, grid, strict=True)]
        prefix = f"{name}/"

        async def keys(prefix: str = prefix) -> list[str]:
            return [k async for k in store.list_prefix(prefix)]

        for key in sync(keys()):
            if key.endswith(ARRAY_DOCS):
                continue
            idx = _chunk_index(key, prefix, sep, fmt)
            if idx is None or len(idx) != len(ncells):
                continue
            if any(i >= n for i, n in zip(idx, ncells, strict=True)):
                delete_key(store, key)
                removed.append(key)
    return removed


def _open_root_group(store: Any, description: str) -> zarr.Group:
    """The root group, or :class:`StoreError` saying there is none (a missing path, a bare array)."""
    problem = None
    try:
        return zarr.open_group(store, mode="r", use_consolidated=False)
    except zarr.errors.ContainsArrayError:
        problem = f"{description} holds a single zarr array, not a dataset group; appends never touched it, nothing to repair"
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.NodeNotFoundError) as exc:
        problem = f"no zarr store at {description} ({type(exc).__name__}); nothing to repair"
    raise StoreError(problem)  # outside the handler: no chained zarr traceback for the CLI to show


def truncate_to_common_length(store: Any, conflicts: dict[str, dict[str, int]], consolidated: bool) -> list[str]:
    """Shrink every array along each conflicting dimension to the shortest length found.

    Records of the appends whose rows are dropped go first, so a crash halfway leaves a store that
    is still refused (and repaired again), never one whose log names rows it does not have.
    """
    done: list[str] = []
    for dim, sizes in conflicts.items():
        keep = min(sizes.values())
        migrate_legacy_log(store, consolidated)
        for entry in append_log(store):
            if entry.get("dim") == dim and int(entry.get("offset") or 0) + int(entry.get("length") or 0) > keep:
                delete_record(store, entry["id"])
                done.append(
                    f"forgot append {entry['id']} ({dim!r} rows {entry.get('offset')}:"
                    f"{int(entry.get('offset') or 0) + int(entry.get('length') or 0)}, {entry.get('first')} .. "
                    f"{entry.get('last')}): rerun it once its data matches the store"
                )
        for name, n in sorted(sizes.items()):
            if n == keep:
                continue
            arr = zarr.open_array(store, path=name, mode="r+")
            dims = array_dims(arr) or ()
            shape = tuple(keep if d == dim else s for d, s in zip(dims, arr.shape, strict=True))
            arr.resize(shape)
            done.append(f"truncated {name} along {dim!r} from {n} to {keep} (dropped its rows {keep}:{n})")
    if consolidated:
        zarr.consolidate_metadata(store)
        done.append("consolidated metadata")
    return done


def _clear_lease(store: Any, description: str, force: bool, report: RepairReport) -> bool:
    """Clear a dead (with ``force``, any) lease into ``report``; ``False`` if repair must stop here."""
    if force:
        # First, and with or without a lease: a breaker that died mid-break blocks the stale lease,
        # or (dead after deleting it) leaves only its marker.
        report.actions.extend(f"removed the marker of a lease breaker that died ({key})"
                              for key in clear_break_markers(store))
    lease = read_lease(store)
    if lease is None:
        return True
    if lease.get("unreadable"):
        if not force:
            report.problems.append(f"the lease ({LEASE_KEY}) is unreadable, not written whole; if nothing else is "
                                   "writing the store, run repair(force=True) to clear it")
            return False
        delete_key(store, LEASE_KEY)
        report.actions.append(f"cleared an unreadable lease ({LEASE_KEY})")
        return True
    alive = holder_alive(lease)
    if alive is True and not force:
        mine = " (this very process: an append(compute=False) not computed yet?)" if held_by_this_process(lease) else ""
        report.problems.append(f"lease held by a running process{mine} ({describe_holder(lease)}); not touched")
        return False
    if alive is None and not force:
        report.problems.append(
            f"lease held from another host ({describe_holder(lease)}); run repair(force=True) once it is gone"
        )
        return False
    if alive is False:
        try:
            if break_dead_lease(store, lease, description):
                report.actions.append(f"cleared stale lease ({describe_holder(lease)})")
        except LeaseError as exc:
            report.problems.append(str(exc))
            return False
    else:
        delete_key(store, LEASE_KEY)
        report.actions.append(f"cleared forced lease ({describe_holder(lease)})")
    return True


def repair_store(store: Any, description: str, *, force: bool = False, truncate: bool = False) -> RepairReport:
    """Roll forward a journal, clear a dead (or, with ``force``, any) lease, drop stray chunks.

    Then check that all arrays agree on the length of every shared dimension (readers refuse a
    store where they do not); with ``truncate`` such a store is cut back to the shortest length.
    Raises :class:`StoreError` when there is no store at all.
    """
    report = RepairReport(description)
    unpublished = unpublished_write(store)
    if unpublished is not None:
        # Its chunks can only come from the data, which repair does not have.
        report.problems.append(describe_unpublished(unpublished, description))
        return report
    _open_root_group(store, description)
    report.actions.extend(f"removed a lease file a killed process left unfinished ({key})"
                          for key in clear_stale_drafts(store))
    if not _clear_lease(store, description, force, report):
        return report
    journal = pending_journal(store)
    if journal is not None:
        steps = roll_forward(store, journal, journal.get("consolidated", True))
        report.actions.append(f"rolled forward {journal.get('kind', 'append')} {journal['entry']['id']}: "
                              + "; ".join(steps or ["already applied"]))
    from parallelzarr.commit.overwrite import (
        discard_staging,  # staging of a mode="a" write that died before its commit point
    )

    report.actions += discard_staging(store)
    conflicts = dimension_conflicts(store)
    if conflicts and truncate:
        held = acquire_lease(store, description, "repair")
        try:
            report.actions += truncate_to_common_length(store, conflicts, _has_consolidated(store))
        finally:
            held.release()
        conflicts = dimension_conflicts(store)
    for dim, sizes in conflicts.items():
        keep = min(sizes.values())
        longer = sorted(n for n, v in sizes.items() if v > keep)
        report.problems.append(
            f"arrays disagree on the length of {describe_conflict(dim, sizes)}, so readers (xr.open_zarr) "
            f"refuse the store. An append probably skipped the shorter arrays (a variable stored with {dim!r} "
            f"but appended without it). To recover, either cut {', '.join(longer)} back to {keep} along {dim!r} "
            f"with parallelzarr.repair(store, truncate=True) (CLI: parallelzarr repair --truncate), then redo "
            f"the appends after row {keep} with data that has every stored variable along {dim!r}; or rewrite "
            "the store from the source files"
        )
    removed = remove_chunks_beyond_shape(store)
    if removed:
        report.actions.append(f"removed {len(removed)} unreferenced chunk(s) beyond the stored shape")
        sync(store.delete_dir(f"{PREFIX}/tasks"))  # resume markers of those chunks must not outlive them
    return report


def _has_consolidated(store: Any) -> bool:
    try:
        return zarr.open_group(store, mode="r").metadata.consolidated_metadata is not None
    except Exception:
        return False

