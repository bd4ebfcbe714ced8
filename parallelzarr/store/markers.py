"""Task markers: what makes writes resumable (the mechanism rechunks use, for every write).

A write task writes its grid cells, then one empty object ``<prefix>/<variable>/<i.j.k>`` in the
target store, where the prefix holds the write's *fingerprint* (its plan and its source graph). A
rerun of the same write finds those markers and makes the finished tasks no-ops without inputs,
so their source blocks are not even read; a crash before a marker only means that task is redone
(every task is idempotent). The markers are deleted once the write is published.

The key-level store access is :mod:`parallelzarr.store.keys` (the rechunk markers use it the same
way); this module adds write fingerprints and the graph hook (:meth:`Selection.restrict`) that
:func:`parallelzarr.graph.write.build_write_graph` calls. The hook only makes dask tasks and key
sets; it relies on the key spaces of :mod:`parallelzarr.graph.lazy` by their interface (``name``,
``shape``, ``key_at``, membership), so this store-layer module imports nothing from the graph layer.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol

from dask._task_spec import Task

from parallelzarr.store import keys

#: Prefix of write task markers in the target store (zarr and xarray ignore ``.parallelzarr/``).
TASKS_PREFIX = ".parallelzarr/tasks"


def plan_fingerprint(plan: Any, data_names: Mapping[str, str] | None = None, extra: Any = None) -> str:
    """A digest of what a write writes where: its plan (per variable: shape, region, grid, strategy,
    task layout) and, given ``data_names``, the dask names of the values (their source graph).

    ``mode`` ``"w"`` and ``"w-"`` count as the same write: both create the store. ``extra``: more
    JSON-able facts the write depends on.
    """
    doc = plan.to_dict()
    for key in ("notes", "tasks_done", "tasks_run", "fingerprint", "parts", "part", "readers"):
        doc.pop(key, None)
    if doc.get("mode") == "w-":
        doc["mode"] = "w"
    for var in doc.get("variables", {}).values():
        var.pop("reason", None)
        var.pop("peak_memory_per_task", None)
    doc["data"] = dict(sorted((data_names or {}).items()))
    if extra is not None:  # e.g. a job array's encoding (codecs, CF scale/offset) and zarr format
        doc["extra"] = extra
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:24]


def task_id(index: Sequence[int]) -> str:
    """A write task's marker name: its index in the write's task grid, ``"3.0.7"``."""
    return ".".join(str(int(i)) for i in index)


@dataclass
class TaskMarkers:
    """The markers of one write in one store (picklable: a store and a key prefix)."""

    store: Any
    prefix: str

    @classmethod
    def of(cls, store: Any, fingerprint: str) -> TaskMarkers:
        return cls(store, f"{TASKS_PREFIX}/{fingerprint}")

    def done(self) -> dict[str, set[str]]:
        """Per variable, the ids of its finished tasks (one listing of the prefix)."""
        out: dict[str, set[str]] = {}
        try:
            found = keys.list_keys(self.store, self.prefix + "/")
        except (FileNotFoundError, OSError):
            return out
        for key in found:
            var, _, tid = key[len(self.prefix) + 1 :].rpartition("/")
            if var and tid:
                out.setdefault(var, set()).add(tid)
        return out

    def mark(self, variable: str, tid: str) -> bool:
        """Leave the marker of a finished task; ``False`` if other writes kept clearing it away.

        Another write of this store that finishes clears every write's markers (see :func:`finish`),
        directories included, so a local store's set can lose its temporary file or its directory
        mid-way. That is retried with a short back-off; if it still fails the task simply has no
        marker, which costs only its redo on a rerun (the data is written before the marker).
        """
        key = f"{self.prefix}/{variable}/{tid}"
        try:
            keys.beside_vanishing_dirs(lambda: keys.put(self.store, key, b""))
        except (FileNotFoundError, FileExistsError):
            return False
        return True

    def clear(self) -> None:
        """Delete every marker of this write (after it is published)."""
        try:
            keys.delete_prefix(self.store, self.prefix)
        except (FileNotFoundError, OSError):
            pass
        remove_empty_dirs(self.store, self.prefix)


def remove_empty_dirs(store: Any, prefix: str) -> None:
    """Remove the empty directories left above ``prefix`` in a local store (zarr warns about them)."""
    import os

    import zarr.storage

    if not isinstance(store, zarr.storage.LocalStore):
        return
    path = os.path.join(str(store.root), prefix)
    for _ in range(prefix.count("/") + 1):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass  # already gone: try its parent
        except OSError:
            return  # not empty
        path = os.path.dirname(path)


def clear_all(store: Any) -> None:
    """Delete the markers of every write of ``store`` (its chunks beyond the shape were dropped)."""
    try:
        keys.delete_prefix(store, TASKS_PREFIX)
    except (FileNotFoundError, OSError):
        pass


def _skipped() -> int:
    return 0


def _marked(markers: TaskMarkers, variable: str, tid: str, written: int) -> int:
    # Runs after the nested write task returned: the marker never precedes the data.
    markers.mark(variable, tid)
    return written


class GridLike(Protocol):
    """What the graph hook needs of a :class:`parallelzarr.graph.lazy.GridKeys`: keys ``(name, i0, ...)``
    of a C-order grid of ``shape``."""

    name: str
    shape: tuple[int, ...]

    def __contains__(self, key: object) -> bool: ...

    def __len__(self) -> int: ...

    def key_at(self, i: int) -> Any: ...


class RangeKeys(AbstractSet):
    """The keys of a grid (a :class:`~parallelzarr.graph.lazy.GridKeys`) whose C-order positions lie in
    ``[start, stop)``; a key space as :mod:`parallelzarr.graph.lazy` defines one (``key_at``)."""

    def __init__(self, grid: GridLike, start: int, stop: int):
        self.grid = grid
        self.name = grid.name
        self.start, self.stop = int(start), int(stop)
        self.shape = (self.stop - self.start,)  # what chain_sum_layers reads

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[Any]:
        for i in range(self.start, self.stop):
            yield self.grid.key_at(i)

    def __contains__(self, key: object) -> bool:
        if key not in self.grid:
            return False
        flat = 0
        for i, n in zip(key[1:], self.grid.shape, strict=True):  # type: ignore[index]  # a tuple key, checked by `in self.grid` above
            flat = flat * n + i
        return self.start <= flat < self.stop

    def key_at(self, i: int) -> Any:
        return self.grid.key_at(self.start + i)


@dataclass
class Selection:
    """Which write tasks of one variable a graph runs, and how they leave their markers.

    Attributes
    ----------
    variable
        The variable (array) name: the markers' sub-prefix.
    markers
        Where finished tasks are marked, or ``None`` (no resume).
    done
        Ids of the tasks already finished: made into no-ops without inputs.
    span
        ``(start, stop)``: only the tasks at these C-order positions of the task grid (one part of
        a job array), or ``None`` for all.
    """

    variable: str
    markers: TaskMarkers | None = None
    done: frozenset[str] = field(default_factory=frozenset)
    span: tuple[int, int] | None = None

    def restrict(self, writes: GridLike, make: Callable[[Any], Task]) -> tuple[Any, Callable[[Any], Task]]:
        """The hook of :func:`~parallelzarr.graph.write.build_write_graph`: the write keys to keep
        (``writes`` itself, or a :class:`RangeKeys` of it) and the task maker, with finished tasks
        skipped and the others marked when done."""
        kept: Any = writes if self.span is None else RangeKeys(writes, *self.span)

        def make_selected(key: Any) -> Task:
            tid = task_id(key[1:])
            if tid in self.done:
                return Task(key, _skipped)
            task = make(key)
            if self.markers is None:
                return task
            return Task(key, _marked, self.markers, self.variable, tid, task)

        return kept, make_selected


@dataclass
class Resume:
    """The resume state of one write: its fingerprint, markers and finished tasks per variable."""

    fingerprint: str
    markers: TaskMarkers
    done: dict[str, set[str]]
    spans: dict[str, tuple[int, int]] | None = None
    #: Delete the markers when the write graph ends (not for appends and job-array parts).
    clear_at_end: bool = True

    def selection(self, variable: str) -> Selection:
        span = self.spans.get(variable, (0, 0)) if self.spans is not None else None
        return Selection(variable, self.markers, frozenset(self.done.get(variable, ())), span)

    def tasks_done(self, plan: Any) -> int:
        """Finished tasks among those this write runs (all, or this part's)."""
        n = 0
        for name, vplan in plan.variables.items():
            done = self.done.get(name, set())
            if self.spans is None:
                n += len(done)
            else:
                lo, hi = self.spans.get(name, (0, 0))
                shape = task_grid(vplan)
                n += sum(1 for t in done if lo <= _flat(t, shape) < hi)
        return n


def task_grid(vplan: Any) -> tuple[int, ...]:
    """The shape of a variable's grid of write tasks, as the graph builder lays it out."""
    if vplan.strategy == "lock":
        return tuple(len(c) for c in vplan.write_chunks)
    return tuple(len(ax.segments) for ax in vplan.axes)


def _flat(tid: str, shape: Sequence[int]) -> int:
    flat = 0
    for i, n in zip((int(p) for p in tid.split(".")), shape, strict=True):
        flat = flat * n + i
    return flat


def attach(prepared: Any, store: Any, spans: dict[str, tuple[int, int]] | None = None, extra: Any = None) -> Resume:
    """Give a prepared write its resume state: fingerprint, markers found, ``plan.tasks_done``.

    ``store`` is the zarr store of the target (a ``Store``, not a path); ``extra``: more facts
    for the fingerprint (see :func:`plan_fingerprint`).
    """
    names = {job.plan.name: str(job.data.name) for job in prepared.jobs}
    fp = plan_fingerprint(prepared.plan, names, _jsonable(extra) if extra is not None else None)
    markers = TaskMarkers.of(store, fp)
    resume = Resume(fp, markers, markers.done(), spans)
    prepared.info["resume"] = resume
    prepared.plan.fingerprint = fp
    prepared.plan.tasks_done = resume.tasks_done(prepared.plan)
    return resume


def count_tasks(plan: Any) -> int:
    """The number of write tasks of the graph (``math.prod`` of each variable's task grid)."""
    return sum(math.prod(task_grid(v)) for v in plan.variables.values())


def resolve_marker_store(store: Any, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """The zarr store that holds a write's markers, and the key prefix of its target in it."""
    import zarr

    from parallelzarr.store.resolve import resolve_store

    if isinstance(store, zarr.Array):
        return store.store, (f"{store.path}/" if store.path else "")
    return resolve_store(store, storage_options).store, ""


def attach_to(prepared: Any, store: Any, storage_options: Mapping[str, Any] | None = None,
              spans: dict[str, tuple[int, int]] | None = None, extra: Any = None) -> Resume:
    """:func:`attach` for the ``store`` argument of a write (a path, URL, store or ``zarr.Array``)."""
    mstore, base = resolve_marker_store(store, storage_options)
    resume = attach(prepared, mstore, spans, extra)
    if base:
        resume.markers = TaskMarkers(mstore, base + resume.markers.prefix)
        resume.done = resume.markers.done()
        prepared.plan.tasks_done = resume.tasks_done(prepared.plan)
    return resume


def finish(resume: Resume | None, commit: Callable[[], Any] | None, *counts: int) -> int:
    """The last task of a write graph: commit (publish), then drop the markers of every write of
    the store (unless the commit is someone else's: an append's journal or a job array's finalize
    clears them)."""
    if commit is not None:
        commit()
    if resume is not None and resume.clear_at_end:
        # Every write's markers, not only this one's: cells an interrupted other write had finished
        # may now hold this write's values, so that write, rerun, must write them again.
        TaskMarkers(resume.markers.store, resume.markers.prefix.rsplit("/", 1)[0]).clear()
    return int(sum(counts))


def refresh(prepared: Any) -> None:
    """List the markers again (after the setup, which may have replaced the store and its markers)."""
    resume: Resume = prepared.info["resume"]
    resume.done = resume.markers.done()
    prepared.plan.tasks_done = resume.tasks_done(prepared.plan)


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data (codec objects by their repr, which names their settings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def keep_unfinished_array(prepared: Any, store: Any, storage_options: Mapping[str, Any] | None = None) -> None:
    """A bare array rewritten with ``mode="w"`` after an interrupted run of the same write keeps its chunks.

    Its setup would create the array anew (zarr's overwrite deletes the finished chunks and their
    markers). When markers of this very write (same plan, source, encoding and format: the
    fingerprint) exist and the stored array has the planned shape, dtype and grid, the setup opens
    it instead.
    """
    resume: Resume | None = prepared.info.get("resume")
    if resume is None or not resume.done or prepared.plan.mode != "w" or len(prepared.jobs) != 1:
        return
    import zarr

    from parallelzarr.store.zarr_compat import chunk_edges

    root, base = resolve_marker_store(store, storage_options)
    path = base.rstrip("/")
    job = prepared.jobs[0]
    vplan = job.plan
    try:
        arr = zarr.open_array(root, path=path, mode="r+")
    except Exception:
        return
    grid = vplan.grid_edges or tuple(
        tuple(c for c in (min(g, n - i) for i in range(0, n, g))) for n, g in zip(vplan.shape, vplan.chunks, strict=True))
    if (tuple(arr.shape) != vplan.shape or str(arr.dtype) != vplan.dtype or chunk_edges(arr) != tuple(grid)
            or (tuple(arr.shards) if arr.shards else None) != vplan.shards):
        return

    def setup() -> None:  # keep the array of the interrupted run: its finished chunks stay valid
        return None

    prepared.setup = setup
    job.open_target = lambda: zarr.open_array(root, path=path, mode="r+")
