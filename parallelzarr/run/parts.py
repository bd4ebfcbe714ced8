"""Job arrays: the split of a write into N parts, the manifest, and the run of one part.

See :mod:`parallelzarr.entry.parts` for the whole scheme (``init``, the parts, ``finalize``).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np

from parallelzarr.commit.lease import read_lease
from parallelzarr.errors import PlanningError, StoreError
from parallelzarr.plan.write import WritePlan
from parallelzarr.run.failures import part_failure, store_write_failures
from parallelzarr.run.job import StoredArray
from parallelzarr.run.resume import with_resume
from parallelzarr.run.runner import build_graph
from parallelzarr.store.keys import PREFIX, read_json, write_json
from parallelzarr.store.markers import plan_fingerprint

__all__ = ["PartsError", "PartsIncompleteError", "PartsStatus", "check_parts", "parse_part", "run_part", "split_plan"]


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
        from parallelzarr.inputs.datasets import as_dataset
        from parallelzarr.run.append import prepare_append
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


def run_part(
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
    """Write one part of a job array: :func:`parallelzarr.entry.parts.write_part` (and ``to_zarr(part=...)``)."""
    i, nparts = parse_part(part)
    mode, options = _options(mode, region, append_dim, encoding, strategy, max_mem, storage_options, zarr_format,
                             consolidated, lock)
    kind = _kind(mode, append_dim, region)
    resolved = _resolved(store, storage_options)
    manifest = _initialised_manifest(resolved, kind, nparts)
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
    _mark_done(resolved.store, i, nparts, fp, resume.markers.prefix, table[i]["tasks"])
    prepared.plan.tasks_run = table[i]["tasks"] - prepared.plan.tasks_done
    return prepared.plan


def _initialised_manifest(resolved: Any, kind: str, nparts: int) -> dict[str, Any]:
    """The store's job-array manifest; refuse a store without one, or initialised for another write or lease."""
    manifest = _manifest(resolved.store)
    if manifest is None:
        raise PartsError(f"{resolved.description} has no job array: run init first (parallelzarr init ... --parts "
                         f"{nparts}, or parallelzarr.entry.parts.init(data, store, parts={nparts}))")
    if manifest.get("kind") != kind or manifest.get("parts") != nparts:
        raise PartsError(f"{resolved.description} was initialised as a {manifest.get('kind')} write in "
                         f"{manifest.get('parts')} part(s), this is a {kind} write in {nparts} part(s); pass the "
                         "arguments given to init")
    if kind == "append":
        held = read_lease(resolved.store) or {}
        if held.get("id") != manifest.get("lease_id"):
            raise PartsError(f"the lease of {resolved.description} is not the job array's (it was cleared or "
                             "taken over); run init again")
    return manifest


def _mark_done(store: Any, i: int, nparts: int, fingerprint: str, markers: str, tasks: int) -> None:
    """Record part ``i`` of ``nparts`` as done (what ``finalize`` checks, and what a rerun of the part skips on)."""
    write_json(store, done_key(i), {
        "part": i, "parts": nparts, "fingerprint": fingerprint, "markers": markers, "host": socket.gethostname(),
        "tasks": tasks, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })


def _is_dataset(data: Any) -> bool:
    import xarray as xr

    return isinstance(data, xr.Dataset | xr.DataArray)
