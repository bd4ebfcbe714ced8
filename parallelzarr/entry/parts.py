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

import bisect
import dataclasses
import json
import math
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
from zarr.core.sync import sync

from parallelzarr.commit.appendlog import is_recorded
from parallelzarr.commit.journal import pending_journal, roll_forward, write_journal
from parallelzarr.commit.lease import Lease, acquire_lease, clear_dead_lease
from parallelzarr.commit.repair import remove_chunks_beyond_shape
from parallelzarr.entry.kwargs import check_compute_kwargs
from parallelzarr.errors import PlanningError, StoreError
from parallelzarr.plan.write import WritePlan
from parallelzarr.run.failures import part_failure, store_write_failures
from parallelzarr.run.job import StoredArray
from parallelzarr.run.resume import with_resume
from parallelzarr.run.runner import build_graph
from parallelzarr.store.keys import LEASE_KEY, PREFIX, read_json, write_json
from parallelzarr.store.keys import delete as delete_key
from parallelzarr.store.markers import TaskMarkers, plan_fingerprint, remove_empty_dirs
from parallelzarr.store.staging import RESUME, publish, write_ended

__all__ = ["init", "write_part", "finalize", "abort", "status", "parse_part", "split_plan", "PartsError", "PartsIncompleteError"]

PARTS_PREFIX = f"{PREFIX}/parts"
MANIFEST_KEY = f"{PARTS_PREFIX}/manifest.json"


class PartsError(PlanningError):
    """A job-array part cannot run: bad part number, no ``init``, or a write other than the initialised one."""


class PartsIncompleteError(StoreError):
    """``finalize`` before every part is done (nothing is published)."""


def _manifest(store: Any) -> dict[str, Any] | None:
    """The job-array manifest of ``store``, or ``None`` (also for a store that does not exist yet)."""
    try:
        return read_json(store, MANIFEST_KEY)
    except (FileNotFoundError, NotADirectoryError):
        return None


def done_key(i: int) -> str:
    return f"{PARTS_PREFIX}/done/{int(i)}.json"


def parse_part(part: Any) -> tuple[int, int]:
    """``(i, N)`` from ``(i, N)`` or ``"i/N"``; ``0 <= i < N``."""
    if isinstance(part, str):
        head, sep, tail = part.partition("/")
        try:
            if not sep:
                raise ValueError
            part = (int(head), int(tail))
        except ValueError:
            raise PartsError(f"part must look like 'i/N' (e.g. 3/16, counting from 0), got {part!r}") from None
    if (not isinstance(part, tuple | list) or len(part) != 2
            or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in part)):
        raise PartsError(f"part must be (i, N) or 'i/N' with integers, got {part!r}")
    i, n = int(part[0]), int(part[1])
    if n < 1 or not 0 <= i < n:
        raise PartsError(f"part {i}/{n}: need N >= 1 and 0 <= i < N (parts count from 0, as SLURM_ARRAY_TASK_ID "
                         f"with --array=0-{max(n - 1, 0)})")
    return i, n


def check_parts(parts: Any) -> int:
    if not isinstance(parts, int | np.integer) or isinstance(parts, bool) or parts < 1:
        raise PartsError(f"parts must be a positive integer, got {parts!r}")
    return int(parts)


# --- the split -------------------------------------------------------------------------------------


def _axis_sizes(vplan: Any) -> list[list[int]]:
    """Per axis, the extent of each write task's slab (the graph's task grid, C order)."""
    if vplan.strategy == "lock":
        return [[int(c) for c in ch] for ch in vplan.write_chunks]
    return [[s.size for s in ax.segments] for ax in vplan.axes]


def _bytes_before(sizes: Sequence[Sequence[int]], cums: Sequence[Sequence[int]], flat: int) -> int:
    """Elements written by the tasks before C-order position ``flat`` (per-axis arithmetic only)."""
    shape = [len(s) for s in sizes]
    total = math.prod(shape)
    if flat >= total:
        return math.prod(c[-1] for c in cums)
    idx = []
    for n in reversed(shape):
        flat, r = divmod(flat, n)
        idx.append(r)
    idx.reverse()
    out, lead = 0, 1
    for a, i in enumerate(idx):
        rest = math.prod(c[-1] for c in cums[a + 1:])
        out += lead * cums[a][i] * rest
        lead *= sizes[a][i]
    return out


def split_variable(vplan: Any, nparts: int) -> list[tuple[int, int]]:
    """Cut one variable's write tasks (C order) into ``nparts`` runs of about equal bytes."""
    sizes = _axis_sizes(vplan)
    ntasks = math.prod(len(s) for s in sizes)
    if ntasks == 0:
        return [(0, 0)] * nparts
    cums = [[0, *np.cumsum(s).tolist()] for s in sizes]
    total = _bytes_before(sizes, cums, ntasks)

    class _Cum:  # a lazy sequence for bisect: bytes before each position
        def __len__(self) -> int:
            return ntasks + 1

        def __getitem__(self, f: int) -> int:
            return _bytes_before(sizes, cums, f)

    seq = _Cum()
    cuts = [0]
    for k in range(1, nparts):
        target = total * k / nparts
        f = bisect.bisect_left(seq, target)
        if f > 0 and abs(seq[f - 1] - target) <= abs(seq[f] - target):
            f -= 1
        cuts.append(max(cuts[-1], f))
    cuts.append(ntasks)
    if total == 0:  # tasks of zero bytes: split by count
        cuts = [ntasks * k // nparts for k in range(nparts + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def split_plan(plan: WritePlan, nparts: int) -> tuple[list[dict[str, tuple[int, int]]], list[dict[str, Any]]]:
    """Per part, each variable's run of write tasks; and the table of tasks and bytes per part."""
    for v in plan.variables.values():
        if v.strategy == "lock":
            raise PartsError(
                f"{v.name!r}: strategy='lock' writes shared cells from several tasks, so its tasks cannot be split "
                "into independent parts; use strategy='auto' (parts never share a grid cell)"
            )
    spans: list[dict[str, tuple[int, int]]] = [{} for _ in range(nparts)]
    table = [{"part": i, "tasks": 0, "bytes": 0} for i in range(nparts)]
    for name, v in plan.variables.items():
        sizes = _axis_sizes(v)
        cums = [[0, *np.cumsum(s).tolist()] for s in sizes]
        for i, (lo, hi) in enumerate(split_variable(v, nparts)):
            spans[i][name] = (lo, hi)
            table[i]["tasks"] += hi - lo
            table[i]["bytes"] += (_bytes_before(sizes, cums, hi) - _bytes_before(sizes, cums, lo)) * v.itemsize
    return spans, table


# --- the manifest ----------------------------------------------------------------------------------


def _structure(plan: WritePlan, options: Mapping[str, Any]) -> str:
    """The fingerprint every part must share: the plan and the options that decide the stored values
    (encoding: codecs, CF scale/offset; zarr format), without the source graph's names (which may
    differ between processes) and without the mode's create/replace distinction."""
    facts = {k: options.get(k) for k in ("encoding", "zarr_format", "region", "append_dim")}
    return plan_fingerprint(plan, extra=json.loads(json.dumps(facts, sort_keys=True, default=repr)))


@dataclass
class PartsStatus:
    """What ``init``, a part or ``finalize`` found or did."""

    target: str
    nparts: int
    message: str
    done: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    plan: WritePlan | None = None

    def __str__(self) -> str:
        return self.message + (f"\n{self.plan}" if self.plan is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "parts": self.nparts, "message": self.message, "done": self.done,
                "missing": self.missing, "plan": self.plan.to_dict() if self.plan is not None else None}


def _ranges(ids: Sequence[int]) -> str:
    """``0, 3, 7-9``."""
    out: list[str] = []
    ids = sorted(ids)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ", ".join(out)


def _resolved(store: Any, storage_options: Mapping[str, Any] | None) -> Any:
    from parallelzarr.store.resolve import resolve_store

    return resolve_store(store, storage_options)


def _kind(mode: str, append_dim: str | None, region: Any) -> str:
    if append_dim is not None:
        return "append"
    if region is not None or mode == "r+":
        return "region"
    return "new"


def _prepare(kind: str, data: Any, store: Any, mode: str, options: dict[str, Any]) -> Any:
    """Plan the write (reading metadata only); for appends against the store as it was at init."""
    from parallelzarr.run.prepare import prepare

    if kind == "append":
        from parallelzarr.entry.append import prepare_append
        from parallelzarr.inputs.datasets import as_dataset
        from parallelzarr.units import parse_bytes

        resolved = _resolved(store, options.get("storage_options"))
        budget = options.get("max_mem")
        return prepare_append(as_dataset(data), resolved, options["append_dim"], strategy=options.get("strategy", "auto"),
                              max_mem=parse_bytes(budget) if budget is not None else None,
                              encoding=options.get("encoding"), static="ignore")
    return prepare(data, store, mode=mode, region=options.get("region"), encoding=options.get("encoding"),
                   strategy=options.get("strategy", "auto"), max_mem=options.get("max_mem", "256MiB"),
                   storage_options=options.get("storage_options"), zarr_format=options.get("zarr_format", 3),
                   consolidated=options.get("consolidated"), lock=options.get("lock"))


def _options(mode: str | None, region: Any, append_dim: str | None, encoding: Any, strategy: str, max_mem: Any,
             storage_options: Any, zarr_format: int | None, consolidated: bool | None, lock: str | None) -> tuple[str, dict]:
    from parallelzarr.run.prepare import default_mode, default_zarr_format

    mode = default_mode(mode, append_dim, region)
    if region is not None and mode == "w-":
        mode = "r+"
    return mode, {"region": region, "append_dim": append_dim, "encoding": encoding, "strategy": strategy,
                  "max_mem": max_mem, "storage_options": storage_options,
                  "zarr_format": default_zarr_format(zarr_format), "consolidated": consolidated, "lock": lock}


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
    from parallelzarr.entry.append import _derive_id, _entry, _labels_only
    from parallelzarr.inputs.datasets import as_dataset
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
    i, nparts = parse_part(part)
    mode, options = _options(mode, region, append_dim, encoding, strategy, max_mem, storage_options, zarr_format,
                             consolidated, lock)
    kind = _kind(mode, append_dim, region)
    resolved = _resolved(store, storage_options)
    manifest = _manifest(resolved.store)
    if manifest is None:
        raise PartsError(f"{resolved.description} has no job array: run init first (parallelzarr init ... --parts "
                         f"{nparts}, or parallelzarr.entry.parts.init(data, store, parts={nparts}))")
    if manifest.get("kind") != kind or manifest.get("parts") != nparts:
        raise PartsError(f"{resolved.description} was initialised as a {manifest.get('kind')} write in "
                         f"{manifest.get('parts')} part(s), this is a {kind} write in {nparts} part(s); pass the "
                         "arguments given to init")
    if kind == "append":
        held = read_json(resolved.store, LEASE_KEY) or {}
        if held.get("id") != manifest.get("lease_id"):
            raise PartsError(f"the lease of {resolved.description} is not the job array's (it was cleared or "
                             "taken over); run init again")
    prepared = _prepare(kind, data, store, "w" if kind == "new" else mode, options)
    fp = _structure(prepared.plan, options)
    if fp != manifest.get("fingerprint"):
        raise PartsError(f"part {i}/{nparts}: this write differs from the one initialised at {resolved.description} "
                         "(other data shape, chunks, encoding, strategy or region); pass the arguments and data "
                         "given to init")
    spans, table = split_plan(prepared.plan, nparts)
    prepared = with_resume(prepared, resolved.store, spans=spans[i]).replace(commit=None)  # finalize publishes
    resume = prepared.resume
    assert resume is not None
    resume.clear_at_end = False  # finalize clears them
    prepared.plan.part = (i, nparts)
    prepared.plan.parts = table
    if read_json(resolved.store, done_key(i)) is not None:
        prepared.plan.tasks_run = 0
        prepared.plan.notes.append(f"part {i}/{nparts} was already done; nothing written")
        return prepared.plan
    if not _is_dataset(data):  # a bare array: opened here (init laid it down)
        prepared = prepared.replace(jobs=tuple(dataclasses.replace(job, target=StoredArray(resolved.store))
                                               for job in prepared.jobs))
    delayed = build_graph(prepared)
    with store_write_failures(part_failure(i, nparts, resolved.description)):
        dask.compute(delayed, **compute_kwargs)
    write_json(resolved.store, done_key(i), {
        "part": i, "parts": nparts, "fingerprint": fp, "markers": resume.markers.prefix, "host": socket.gethostname(),
        "tasks": table[i]["tasks"], "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    prepared.plan.tasks_run = table[i]["tasks"] - prepared.plan.tasks_done
    return prepared.plan


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


def _is_dataset(data: Any) -> bool:
    import xarray as xr

    return isinstance(data, xr.Dataset | xr.DataArray)


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
