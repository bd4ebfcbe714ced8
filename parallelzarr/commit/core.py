"""Crash-safe commits: the append lease, the journal, the append log, roll-forward and repair.

All bookkeeping lives under the store's ``.parallelzarr/`` prefix, which zarr and xarray ignore.
The protocol (DESIGN "Append protocol"): take the lease -> write chunks beyond the stored shape ->
write the journal -> resize each array's metadata -> consolidate the metadata (the commit point) ->
record the append -> delete the journal -> release the lease. A journal found later means "roll
forward": every step after it is idempotent.

The append log is one small JSON object per append under ``.parallelzarr/appends/``, not a group
attribute: readers (xarray decodes root attributes into ``Dataset.attrs``) never load it, and the root
metadata does not grow with the number of appends. A record is written only after its append is
visible and before its journal is deleted, so a record always means "applied", and an applied append
without a record still has its journal (the roll-forward writes the record). Stores written before
this layout keep their log in the root attribute ``parallelzarr_appends``; it is read as well, and
moved into records (and dropped from the attributes) by the next commit.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import zarr
import zarr.storage
from zarr.core.buffer import cpu, default_buffer_prototype
from zarr.core.sync import sync

from parallelzarr.errors import LeaseError, StoreError
from parallelzarr.hooks import fault_point
from parallelzarr.store.keys import (
    ARRAY_DOCS,
    ROOT_DOCS,
    create_exclusive,
    read_json,
    write_json,
    write_metadata_doc,
)
from parallelzarr.store.keys import delete as delete_key

PREFIX = ".parallelzarr"
LEASE_KEY = f"{PREFIX}/lease.json"
JOURNAL_KEY = f"{PREFIX}/journal.json"
WRITE_KEY = f"{PREFIX}/write.json"
APPENDS_PREFIX = f"{PREFIX}/appends/"
#: Root group attribute of the append log in stores written before the log moved to ``APPENDS_PREFIX``.
LEGACY_LOG_ATTR = "parallelzarr_appends"
LOG_ATTR = LEGACY_LOG_ATTR  # the old name, for callers that still import it


# --- the lease -----------------------------------------------------------------------------------


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the lease holder still runs: ``True``/``False`` on this host, ``None`` elsewhere."""
    if holder.get("host") != socket.gethostname() or holder.get("operation") == "job-array append":
        return None  # a job array's lease outlives the init process: only finalize releases it
    pid = int(holder.get("pid", -1))
    started = _process_start(pid)
    if started is None:
        return False
    # A reused pid has a different start time.
    return abs(started - float(holder.get("pid_started", started))) < 1.0


@dataclass
class Lease:
    """The store's append lease, held by this process while an append runs."""

    store: Any
    holder: dict[str, Any]
    broke_stale: dict[str, Any] | None = None

    def release(self) -> None:
        current = read_json(self.store, LEASE_KEY)
        if current is not None and current.get("id") == self.holder["id"]:
            delete_key(self.store, LEASE_KEY)


def describe_holder(holder: dict[str, Any]) -> str:
    age = time.time() - float(holder.get("time", time.time()))
    text = f"{holder.get('operation', 'append')} by pid {holder.get('pid')} on {holder.get('host')}, taken {age:.0f}s ago"
    if holder.get("operation") == "job-array append":  # held from init to finalize by no one process
        text += "; finish it with `parallelzarr finalize`, or give it up with `parallelzarr finalize --abort`"
    return text


def _holder(operation: str) -> dict[str, Any]:
    """Who is doing ``operation``: host, process (with its start time, against pid reuse), time."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_started": _process_start(os.getpid()),
        "time": time.time(),
        "operation": operation,
    }


def held_by_this_process(holder: dict[str, Any]) -> bool:
    """Whether ``holder`` (a lease or marker) names this very process."""
    return holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid()


def parse_wait(wait: Any) -> float:
    """``"30s"``, ``"2min"``, ``45`` (seconds) or ``None`` (do not wait) as seconds."""
    if wait is None or wait is False:
        return 0.0
    if isinstance(wait, int | float) and not isinstance(wait, bool):
        seconds = float(wait)
    else:
        import pandas as pd

        try:
            seconds = pd.Timedelta(str(wait).strip()).total_seconds()
        except (TypeError, ValueError) as exc:
            raise LeaseError(f"wait={wait!r} is not a duration (e.g. '30s', '5min', or seconds as a number)") from exc
    if not seconds >= 0:
        raise LeaseError(f"wait must not be negative, got {wait!r}")
    return seconds


def acquire_lease(store: Any, description: str, operation: str = "append", lease_id: str | None = None,
                  wait: Any = None) -> Lease:
    """Take the append lease or raise :class:`LeaseError` naming the holder.

    A lease whose holder provably died (same host, process gone) is broken and reported; a lease
    held from another host is never broken here (``repair(force=True)`` does that). ``lease_id``
    fixes the holder's id in advance, so the caller can release the lease even when another
    process (a dask worker) took it. ``wait`` (``"30s"``, seconds) polls a lease held by another
    process with a growing interval (0.05 s up to 2 s) until it is free or the time is up, then
    raises as without it; a lease held by this very process is reported at once (waiting for it
    could never end).
    """
    deadline = time.monotonic() + parse_wait(wait)
    delay = 0.05
    while True:
        try:
            return _acquire_once(store, description, operation, lease_id)
        except LeaseError:
            current = read_json(store, LEASE_KEY) or {}
            left = deadline - time.monotonic()
            if left <= 0 or held_by_this_process(current):
                raise
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 2.0)


def _acquire_once(store: Any, description: str, operation: str, lease_id: str | None) -> Lease:
    holder = {"id": lease_id or uuid.uuid4().hex, **_holder(operation)}
    broke = None
    for _ in range(2):
        if create_exclusive(store, LEASE_KEY, holder):
            return Lease(store, holder, broke)
        current = read_json(store, LEASE_KEY) or {}
        if holder_alive(current) is False:
            delete_key(store, LEASE_KEY)
            broke = current
            continue
        if held_by_this_process(current):
            # Not another process at all: most often a lazy append whose graph never finished.
            raise LeaseError(
                f"{description} is leased by this process (pid {current.get('pid')}; "
                f"{describe_holder(current)}), probably an append(compute=False) whose Delayed was never "
                "computed or whose computation failed or is still running. Compute it (or let it finish), "
                "or clear the lease with parallelzarr.repair(store, force=True) if nothing is running"
            )
        state = "stale? run parallelzarr.repair(store, force=True) if it is gone" if holder_alive(current) is None else "still running"
        raise LeaseError(
            f"{description} is being written by another process ({describe_holder(current)}; {state}); "
            "wait for it to finish and retry"
        )
    raise LeaseError(f"could not take the lease of {description}; another process keeps taking it")


def clear_dead_lease(store: Any) -> dict[str, Any] | None:
    """Remove a lease whose holder provably died (same host, process gone); return it if removed."""
    lease = read_json(store, LEASE_KEY)
    if lease is not None and holder_alive(lease) is False:
        delete_key(store, LEASE_KEY)
        return lease
    return None


# --- the journal and the commit ------------------------------------------------------------------


def write_journal(store: Any, journal: dict[str, Any]) -> None:
    write_json(store, JOURNAL_KEY, journal)


def roll_forward(store: Any, journal: dict[str, Any], consolidated: bool) -> list[str]:
    """Apply a journal: resize arrays, consolidate, record the append, drop the journal.

    Every step checks before it acts, so running it twice (or after a crash inside it) is safe. The
    record is written after the consolidation (the commit point for consolidated readers) and
    before the journal goes: a record never names an append readers cannot see, and an append
    readers can see but that has no record yet still has its journal, which writes the record.
    """
    if journal.get("kind") == "overwrite":  # mode="a"/"r+" without append_dim (parallelzarr.commit.overwrite)
        from parallelzarr.commit.overwrite import roll_forward_overwrite

        return roll_forward_overwrite(store, journal)
    done: list[str] = []
    fmt = journal.get("zarr_format") or stored_zarr_format(store)
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


def pending_journal(store: Any) -> dict[str, Any] | None:
    return read_json(store, JOURNAL_KEY)


def stored_zarr_format(store: Any) -> int:
    """The zarr format of the store's root group (one key read for format 3, two for format 2)."""
    if sync(store.get("zarr.json", prototype=default_buffer_prototype())) is not None:
        return 3
    if sync(store.get(".zgroup", prototype=default_buffer_prototype())) is not None:
        return 2
    raise StoreError("no zarr group at the store's root (neither zarr.json nor .zgroup)")


def published_shapes(store: Any, zarr_format: int | None) -> dict[str, list[int]]:
    """Each array's shape in the consolidated metadata (one read; empty without it or a known format)."""
    return published_view(store, zarr_format)[0]


def published_view(store: Any, zarr_format: int | None) -> tuple[dict[str, list[int]], dict[str, Any] | None]:
    """The consolidated shapes and the root attributes, from one read (``({}, None)`` without them)."""
    if zarr_format not in (2, 3):
        return {}, None
    root = read_json(store, "zarr.json" if zarr_format == 3 else ".zmetadata") or {}
    meta = (root.get("consolidated_metadata") or {}).get("metadata") if zarr_format == 3 else root.get("metadata")
    if not isinstance(meta, dict):
        return {}, None
    attrs = root.get("attributes") if zarr_format == 3 else meta.get(".zattrs")
    return _shapes_of(meta, zarr_format), attrs if isinstance(attrs, dict) else {}


def _shapes_of(meta: dict[str, Any], zarr_format: int) -> dict[str, list[int]]:
    if zarr_format == 3:
        return {k: list(v["shape"]) for k, v in meta.items() if isinstance(v, dict) and v.get("node_type") == "array"}
    return {k[: -len("/.zarray")]: list(v["shape"]) for k, v in meta.items() if k.endswith("/.zarray") and "shape" in v}


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


# --- the append log: one record per append under .parallelzarr/appends/ ---------------------------

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


# --- one array-dimension view of a group (repair's consistency check) ------------------------------


def _array_dims(arr: zarr.Array) -> tuple[str, ...] | None:
    names = getattr(arr.metadata, "dimension_names", None)
    if names and all(n is not None for n in names):
        return tuple(str(n) for n in names)
    v2 = arr.attrs.get("_ARRAY_DIMENSIONS")
    return tuple(str(n) for n in v2) if v2 else None


def dimension_lengths(store: Any, zarr_format: int | None = None, use_consolidated: bool | None = False
                      ) -> dict[str, dict[str, int]]:
    """For each dimension name of the root group's arrays: array name -> its length along it.

    ``use_consolidated``: as zarr's (``False``, the default: each array's own metadata).
    """
    group = zarr.open_group(store, mode="r", use_consolidated=use_consolidated, zarr_format=zarr_format)
    out: dict[str, dict[str, int]] = {}
    for name, arr in group.arrays():
        dims = _array_dims(arr)
        if dims is None or len(dims) != len(arr.shape):
            continue
        for dim, size in zip(dims, arr.shape, strict=True):
            out.setdefault(dim, {})[str(name)] = int(size)
    return out


def dimension_conflicts(store: Any, zarr_format: int | None = None, use_consolidated: bool | None = False
                        ) -> dict[str, dict[str, int]]:
    """The dimensions whose length differs between arrays (readers such as xarray refuse those)."""
    lengths = dimension_lengths(store, zarr_format, use_consolidated)
    return {d: sizes for d, sizes in lengths.items() if len(set(sizes.values())) > 1}


def describe_conflict(dim: str, sizes: dict[str, int]) -> str:
    """``'time': 96 on t2m, u10, time; 72 on lsm``."""
    by_len: dict[int, list[str]] = {}
    for name, n in sizes.items():
        by_len.setdefault(n, []).append(name)
    parts = [f"{n} on {', '.join(sorted(names))}" for n, names in sorted(by_len.items(), reverse=True)]
    return f"{dim!r}: " + "; ".join(parts)


# --- new stores: the root metadata is published last -------------------------------------------

#: Ids of the unpublished writes this process is running; a marker of this process that is not
#: listed belongs to a write that failed here.
_RUNNING: set[str] = set()


def lay_down_unpublished(store: Any, mode: str, lay_down: Any) -> str:
    """Lay down a new store's metadata with its root documents held back until :func:`publish`.

    ``lay_down(staging)`` writes the metadata (and small in-memory values) into an in-memory store;
    everything but the root documents is copied to ``store``, and the root documents go into the
    marker ``.parallelzarr/write.json``. Until :func:`publish` runs after the last chunk, readers find
    no group at the root, as before the write: a failed or killed write is never seen half-written.
    With ``mode="w"`` the old contents are deleted first (what xarray's ``mode="w"`` does).
    Returns the write's id, for :func:`write_ended`.
    """
    staging = zarr.storage.MemoryStore()
    lay_down(staging)
    hook = STAGING_HOOK.get()
    if hook is not None:  # metadata the writers cannot lay down themselves (parallelzarr.store.rectilinear)
        hook(staging)
    resume = RESUME.get()
    if resume is not None:  # resume only onto the very same metadata (codecs, fill values, format...)
        resume = f"{resume}:{_digest(staging)}"
    if mode == "w" and not resumes(store, resume):
        sync(store.delete_dir(""))
    marker = {**_holder("write"), "id": uuid.uuid4().hex, "docs": {}}
    if resume is not None:
        marker["fingerprint"] = resume
    _RUNNING.add(marker["id"])

    async def _keys() -> list[str]:
        return [k async for k in staging.list()]

    try:
        write_json(store, WRITE_KEY, marker)  # first: any later crash leaves the marker behind
        for key in sorted(sync(_keys())):
            buf = sync(staging.get(key, prototype=default_buffer_prototype()))
            if buf is None:
                continue
            if key in ROOT_DOCS:
                marker["docs"][key] = buf.to_bytes().decode()
            else:
                sync(store.set(key, buf))
        write_json(store, WRITE_KEY, marker)
    except BaseException as exc:
        write_ended(store, marker["id"], exc)
        raise
    return marker["id"]


#: The fingerprint of the write whose metadata :func:`lay_down_unpublished` is laying down (set by
#: ``to_zarr`` and job-array ``init``): an unfinished write of the same fingerprint is resumed, its chunks kept.
RESUME: contextvars.ContextVar[str | None] = contextvars.ContextVar("parallelzarr_resume", default=None)
#: Called with the staging store after the metadata is laid down there, before it is copied.
STAGING_HOOK: contextvars.ContextVar[Any] = contextvars.ContextVar("parallelzarr_staging_hook", default=None)


def _digest(staging: Any) -> str:
    """A digest of every key and value laid down in ``staging`` (the new store's metadata)."""
    async def _items() -> list[tuple[str, bytes]]:
        out = []
        async for key in staging.list():
            buf = await staging.get(key, prototype=default_buffer_prototype())
            out.append((key, b"" if buf is None else buf.to_bytes()))
        return sorted(out)

    h = hashlib.sha256()
    for key, value in sync(_items()):
        h.update(key.encode() + b"\0" + value + b"\0")
    return h.hexdigest()[:16]


def resumes(store: Any, fingerprint: str | None) -> bool:
    """Whether ``store`` holds an unfinished, no longer running write of ``fingerprint`` (keep its chunks)."""
    if fingerprint is None:
        return False
    marker = unpublished_write(store)
    return marker is not None and marker.get("fingerprint") == fingerprint and not write_running(marker)


def write_ended(store: Any, write_id: str | None, failure: BaseException | None = None) -> None:
    """This process no longer runs the write ``write_id``; after a ``failure``, record it in the marker."""
    if write_id is None:
        return
    _RUNNING.discard(write_id)
    if failure is None:
        return
    try:
        marker = read_json(store, WRITE_KEY)
        if marker is not None and marker.get("id") == write_id:
            write_json(store, WRITE_KEY, {**marker, "failed": f"{type(failure).__name__}: {failure}"})
    except OSError:
        pass  # best effort (a full disk): in this process _RUNNING already tells, elsewhere the pid


def publish(store: Any) -> None:
    """Publish a new store: write its root metadata documents (the commit point), drop the marker."""
    marker = read_json(store, WRITE_KEY)
    if marker is None:
        return  # already published
    fault_point("write:data-written")
    docs = marker.get("docs", {})
    for key in ROOT_DOCS:
        if key in docs:
            sync(store.set(key, cpu.Buffer.from_bytes(docs[key].encode())))
    delete_key(store, WRITE_KEY)
    if isinstance(store, zarr.storage.LocalStore):
        try:  # an empty bookkeeping directory would make zarr warn about a foreign object
            os.rmdir(os.path.join(str(store.root), PREFIX))
        except OSError:
            pass  # not empty (a lease of a concurrent append), or already gone


def unpublished_write(store: Any) -> dict[str, Any] | None:
    """The marker of a new store's write that has not been published (running or interrupted)."""
    try:
        return read_json(store, WRITE_KEY)
    except (OSError, ValueError):
        return None


def write_running(marker: dict[str, Any]) -> bool:
    """Whether the unpublished write of ``marker`` may still be running."""
    if marker.get("failed"):
        return False
    if marker.get("host") == socket.gethostname() and marker.get("pid") == os.getpid():
        return marker.get("id") in _RUNNING
    return holder_alive(marker) is not False


def describe_unpublished(marker: dict[str, Any], description: str) -> str:
    """Say what an unpublished write is and what to do about it."""
    who = describe_holder(marker)
    if marker.get("failed"):
        who += f"; it failed: {marker['failed']}"
    if write_running(marker):
        return f"{description} is being written by another process ({who}); wait for it to finish"
    return (
        f"{description} holds a write that never finished ({who}; readers see no dataset there); "
        "rerun the write with mode='w': the same write resumes (its finished tasks are skipped), any other replaces it"
    )


# --- repair --------------------------------------------------------------------------------------


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
        if fmt == 3:
            enc = arr.metadata.chunk_key_encoding
            sep = getattr(enc, "separator", "/")
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
            dims = _array_dims(arr) or ()
            shape = tuple(keep if d == dim else s for d, s in zip(dims, arr.shape, strict=True))
            arr.resize(shape)
            done.append(f"truncated {name} along {dim!r} from {n} to {keep} (dropped its rows {keep}:{n})")
    if consolidated:
        zarr.consolidate_metadata(store)
        done.append("consolidated metadata")
    return done


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
    lease = read_json(store, LEASE_KEY)
    if lease is not None:
        alive = holder_alive(lease)
        if alive is True and not force:
            mine = " (this very process: an append(compute=False) not computed yet?)" if held_by_this_process(lease) else ""
            report.problems.append(f"lease held by a running process{mine} ({describe_holder(lease)}); not touched")
            return report
        if alive is None and not force:
            report.problems.append(
                f"lease held from another host ({describe_holder(lease)}); run repair(force=True) once it is gone"
            )
            return report
        delete_key(store, LEASE_KEY)
        report.actions.append(f"cleared {'stale' if alive is False else 'forced'} lease ({describe_holder(lease)})")
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
