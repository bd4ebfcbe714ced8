"""Job arrays: one write split into N parts that run anywhere, then published once.

``init`` validates the whole write and lays down its metadata unpublished (a new store's root
documents are held back; an append takes the store's lease), and records the split in
``.parallelzarr/parts/manifest.json``. Part ``i`` of ``N`` (any process, any scheduler, no network
between parts) plans the same write, checks it against the manifest, and runs only its own write
tasks: the tasks of each variable in C order, cut into ``N`` runs of about equal bytes. A write
task writes whole grid cells (shards, else chunks) that no other task writes, so no cell is written
by two parts and no lock is needed; each part's graph is culled to the source blocks its tasks read.
A part marks its finished tasks (:mod:`parallelzarr.store.markers`), so a killed part rerun does only the
rest, and a finished part rerun does nothing. ``finalize`` publishes once every part is done
(a new store's root metadata, an append's commit) and refuses, naming the missing parts, before.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from zarr.core.sync import sync

from parallelzarr.commit.appendlog import is_recorded
from parallelzarr.commit.journal import pending_journal, write_journal
from parallelzarr.commit.lease import Lease, acquire_lease, clear_dead_lease
from parallelzarr.commit.repair import remove_chunks_beyond_shape
from parallelzarr.commit.rollforward import roll_forward
from parallelzarr.entry.kwargs import check_compute_kwargs
from parallelzarr.plan.write import WritePlan
from parallelzarr.run.parts import (  # noqa: F401  (parse_part, split_plan, check_parts: part of this module's API)
    MANIFEST_KEY,
    PARTS_PREFIX,
    PartsError,
    PartsIncompleteError,
    PartsStatus,
    _kind,
    _manifest,
    _options,
    _prepare,
    _ranges,
    _resolved,
    _structure,
    check_parts,
    done_key,
    parse_part,
    run_part,
    split_plan,
)
from parallelzarr.store.keys import delete as delete_key
from parallelzarr.store.keys import read_json, write_json
from parallelzarr.store.markers import TaskMarkers, plan_fingerprint, remove_empty_dirs
from parallelzarr.store.staging import RESUME, publish, write_ended

__all__ = ["init", "write_part", "finalize", "abort", "status", "parse_part", "split_plan", "PartsError", "PartsIncompleteError"]


def init(
    data: Any,
    store: Any,
    parts: int,
    mode: str | None = None,
    *,
    region: Any = None,
    append_dim: str | None = None,
    encoding: Mapping[str, Any] | None = None,
    strategy: str = "auto",
    max_mem: int | str | None = "256MiB",
    storage_options: Mapping[str, Any] | None = None,
    zarr_format: int | None = None,
    consolidated: bool | None = None,
    lock: str | None = None,
) -> PartsStatus:
    """Validate a write, lay down its metadata unpublished and record its split into ``parts`` parts.

    Takes :func:`parallelzarr.to_zarr`'s arguments. Nothing readers see changes: a new store's root
    metadata is held back until :func:`finalize` (``mode="w"`` does delete an old store here), an
    append's rows lie beyond the stored shape until then (the store's lease is held until
    :func:`finalize`, so no other append interleaves), a region write changes only values. Running
    it again for the same write does nothing more.

    Returns
    -------
    PartsStatus
        With the plan, whose ``parts`` lists the tasks and bytes of each part.
    """
    nparts = check_parts(parts)
    mode, options = _options(mode, region, append_dim, encoding, strategy, max_mem, storage_options, zarr_format,
                             consolidated, lock)
    kind = _kind(mode, append_dim, region)
    resolved = _resolved(store, storage_options)
    existing = _manifest(resolved.store)
    if kind == "append":
        return _init_append(data, store, resolved, nparts, mode, options, existing)
    plan_mode = "w" if kind == "new" and existing is not None else mode
    prepared = _prepare(kind, data, store, plan_mode, options)
    spans, table = split_plan(prepared.plan, nparts)
    fp = _structure(prepared.plan, options)
    prepared.plan.parts = table
    if existing is not None:
        if existing.get("fingerprint") == fp and existing.get("parts") == nparts:
            return PartsStatus(resolved.description, nparts, f"{resolved.description}: job array of {nparts} part(s) "
                               "already initialised for this write; run the parts, then finalize", plan=prepared.plan)
        if not (kind == "new" and mode == "w"):
            raise PartsError(
                f"{resolved.description} holds the job array of another write ({existing.get('parts')} part(s), "
                f"initialised {existing.get('created')}); finalize it first, or init with mode='w' to replace a new store"
            )
    if kind == "new":
        token = RESUME.set(prepared.plan.fingerprint)
        try:
            prepared = prepared.setup()
        finally:
            RESUME.reset(token)
        write_ended(prepared.store, prepared.write_id)
    manifest = {"kind": kind, "parts": nparts, "fingerprint": fp, "mode": mode, "target": resolved.description,
                "publish": prepared.commit is not None, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(resolved.store, MANIFEST_KEY, manifest)
    return PartsStatus(resolved.description, nparts, f"initialised {resolved.description} for {nparts} part(s) "
                       f"({kind} write, {prepared.plan.tasks} write task(s)); readers see nothing new until finalize",
                       missing=list(range(nparts)), plan=prepared.plan)


def _init_append(data: Any, store: Any, resolved: Any, nparts: int, mode: str, options: dict[str, Any],
                 existing: dict[str, Any] | None) -> PartsStatus:
    from parallelzarr.inputs.datasets import as_dataset
    from parallelzarr.run.append import _derive_id, _entry, _labels_only
    from parallelzarr.store.resolve import resolve_consolidated, store_has_data

    dim = options["append_dim"]
    ds = as_dataset(data)
    if existing is not None:
        prepared = _prepare("append", data, store, mode, options)
        if existing.get("fingerprint") == _structure(prepared.plan, options) and existing.get("parts") == nparts:
            prepared.plan.parts = split_plan(prepared.plan, nparts)[1]
            return PartsStatus(resolved.description, nparts, f"{resolved.description}: job array of {nparts} part(s) "
                               "already initialised for this append; run the parts, then finalize", plan=prepared.plan)
        raise PartsError(f"{resolved.description} holds the job array of another write ({existing.get('parts')} "
                         "part(s)); finalize it first")
    if not store_has_data(resolved.store):
        raise PartsError(f"{resolved.description} is empty: a job-array append needs an existing store; write the "
                         "first rows with init/parts without append_dim")
    consolidated = resolve_consolidated(resolved.store, options.get("consolidated"), resolved.description)
    clear_dead_lease(resolved.store)
    journal = pending_journal(resolved.store)
    if journal is not None:
        lease = acquire_lease(resolved.store, resolved.description, "roll-forward")
        try:
            roll_forward(resolved.store, journal, journal.get("consolidated", consolidated))
        finally:
            lease.release()
    aid = _derive_id(ds, dim, _labels_only(ds, dim))
    if is_recorded(resolved.store, aid):
        raise PartsError(f"append {aid} was already applied to {resolved.description}; nothing to do")
    prepared = _prepare("append", data, store, mode, options)
    spans, table = split_plan(prepared.plan, nparts)
    prepared.plan.parts = table
    fp = _structure(prepared.plan, options)
    info = prepared.rows
    assert info is not None
    lease_id = uuid.uuid4().hex
    # Held until finalize, by no process: holder_alive() never calls a job array's lease dead.
    acquire_lease(resolved.store, resolved.description, "job-array append", lease_id=lease_id)
    names = {job.plan.name: str(job.data.name) for job in prepared.jobs}
    markers = TaskMarkers.of(resolved.store, plan_fingerprint(prepared.plan, names))
    manifest = {"kind": "append", "parts": nparts, "fingerprint": fp, "mode": "a", "target": resolved.description,
                "lease_id": lease_id, "consolidated": consolidated,
                "journal": {"shapes": dict(info.shapes), "entry": _entry(aid, dim, info.offset, info.length, info.labels),
                            "consolidated": consolidated, "markers": markers.prefix},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(resolved.store, MANIFEST_KEY, manifest)
    return PartsStatus(resolved.description, nparts, f"initialised the append of {info.length} {dim!r} row(s) to "
                       f"{resolved.description} for {nparts} part(s); readers see the store as before until finalize",
                       missing=list(range(nparts)), plan=prepared.plan)


def write_part(
    data: Any,
    store: Any,
    part: Any,
    mode: str | None = None,
    *,
    region: Any = None,
    append_dim: str | None = None,
    encoding: Mapping[str, Any] | None = None,
    strategy: str = "auto",
    max_mem: int | str | None = "256MiB",
    storage_options: Mapping[str, Any] | None = None,
    zarr_format: int | None = None,
    consolidated: bool | None = None,
    lock: str | None = None,
    **compute_kwargs: Any,
) -> WritePlan:
    """Write part ``i`` of ``N`` of a write initialised with :func:`init` (same arguments).

    Runs on any dask scheduler (threads by default). Idempotent and resumable: a part that already
    finished does nothing, a part killed midway rerun writes only its unfinished tasks.

    Raises
    ------
    PartsError
        ``init`` did not run, or this write differs from the initialised one (other data shape,
        chunks, encoding or part count): nothing is written.
    StoreWriteError
        An I/O error during the run; rerun the same part.
    """
    check_compute_kwargs("write_part", compute_kwargs)
    return run_part(data, store, part, mode, region=region, append_dim=append_dim, encoding=encoding,
                    strategy=strategy, max_mem=max_mem, storage_options=storage_options, zarr_format=zarr_format,
                    consolidated=consolidated, lock=lock, **compute_kwargs)


def status(store: Any, storage_options: Mapping[str, Any] | None = None) -> PartsStatus:
    """Which parts of the store's job array are done and which are missing."""
    resolved = _resolved(store, storage_options)
    manifest = _manifest(resolved.store)
    if manifest is None:
        raise PartsError(f"{resolved.description} has no job array to finalize (never initialised, or already "
                         "finalized)")
    n = int(manifest["parts"])
    done = [i for i in range(n) if read_json(resolved.store, done_key(i)) is not None]
    missing = sorted(set(range(n)) - set(done))
    return PartsStatus(resolved.description, n, f"{len(done)} of {n} part(s) done", done, missing)


def finalize(store: Any, storage_options: Mapping[str, Any] | None = None) -> PartsStatus:
    """Publish a job array's write once every part is done.

    A new store's root metadata is written (the commit point: readers see the whole dataset, never
    part of it); an append is committed (new shapes, consolidated metadata, its record; the lease is
    released); a region write has nothing to publish. Then the bookkeeping is removed. Safe to rerun
    after a crash inside it.

    Raises
    ------
    PartsIncompleteError
        Some parts are not done: they are listed; nothing is published.
    PartsError
        There is no job array at ``store``.
    """
    resolved = _resolved(store, storage_options)
    st = status(store, storage_options)
    manifest = read_json(resolved.store, MANIFEST_KEY) or {}
    if st.missing:
        raise PartsIncompleteError(
            f"cannot finalize {resolved.description}: {len(st.missing)} of {st.nparts} part(s) not done: "
            f"{_ranges(st.missing)}. Run them (e.g. sbatch --array={_ranges(st.missing).replace(' ', '')} "
            "job-array.sh) and finalize again; nothing was published"
        )
    kind = manifest.get("kind")
    if kind == "new" and manifest.get("publish"):
        publish(resolved.store)
        what = "published the new store (its root metadata)"
    elif kind == "append":
        journal = manifest["journal"]
        write_journal(resolved.store, journal)
        roll_forward(resolved.store, journal, bool(manifest.get("consolidated")))
        Lease(resolved.store, {"id": manifest.get("lease_id")}).release()
        entry = journal["entry"]
        what = f"committed the append of {entry['length']} {entry['dim']!r} row(s) at {entry['offset']}"
    else:
        what = "the region is written (region writes publish nothing)"
    for i in range(st.nparts):
        rec = read_json(resolved.store, done_key(i)) or {}
        if rec.get("markers"):
            TaskMarkers(resolved.store, rec["markers"]).clear()
    sync(resolved.store.delete_dir(f"{PARTS_PREFIX}/done"))
    delete_key(resolved.store, MANIFEST_KEY)
    remove_empty_dirs(resolved.store, f"{PARTS_PREFIX}/done")
    st.message = f"finalized {resolved.description}: all {st.nparts} part(s) done; {what}"
    return st


def abort(store: Any, storage_options: Mapping[str, Any] | None = None) -> PartsStatus:
    """Give up a job array: drop its manifest, part records and task markers, publish nothing.

    A new store stays unpublished (readers see no dataset; a write with ``mode="w"`` replaces it);
    an append's lease is released and its rows beyond the stored shape are deleted (readers saw
    the store as before throughout); a region write keeps the values its finished parts wrote.
    """
    resolved = _resolved(store, storage_options)
    manifest = _manifest(resolved.store)
    if manifest is None:
        raise PartsError(f"{resolved.description} has no job array to abort")
    n = int(manifest.get("parts", 0))
    for i in range(n):
        rec = read_json(resolved.store, done_key(i)) or {}
        if rec.get("markers"):
            TaskMarkers(resolved.store, rec["markers"]).clear()
    kind = manifest.get("kind")
    what = "nothing was published"
    if kind == "append":
        TaskMarkers(resolved.store, manifest["journal"]["markers"]).clear()
        removed = remove_chunks_beyond_shape(resolved.store)
        Lease(resolved.store, {"id": manifest.get("lease_id")}).release()
        what = f"the append was dropped ({len(removed)} unpublished chunk(s) deleted, the lease released)"
    elif kind == "new":
        what = "the new store stays unpublished (write it again with mode='w')"
    sync(resolved.store.delete_dir(f"{PARTS_PREFIX}/done"))
    delete_key(resolved.store, MANIFEST_KEY)
    remove_empty_dirs(resolved.store, f"{PARTS_PREFIX}/done")
    return PartsStatus(resolved.description, n, f"aborted the job array of {resolved.description}: {what}")
