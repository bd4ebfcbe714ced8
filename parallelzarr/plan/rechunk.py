"""Pure rechunk planning: stages, task blocks, bytes and a memory model.

Nothing here touches a store.  Every number is computed from shapes with integer
arithmetic, so planning a petabyte array costs the same as planning a small one.

Vocabulary
----------
read grid
    The chunk grid a stage reads (source chunks, or shards for a sharded source,
    since the sharding codec decodes into a shard-sized buffer).
write grid
    The grid a stage writes: intermediate chunks, target chunks, or target shards.
    A task always writes whole cells of this grid, so no task ever does a
    read-modify-write and tasks never race.
block
    The region one task handles.  It is a multiple of the write grid on every
    axis (or the whole axis); when it is also a multiple of the read grid, every
    source chunk is read by exactly one task (read amplification 1).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from numbers import Integral
from typing import Any, ClassVar

from parallelzarr.errors import ChunkSpecError, MemoryBudgetError
from parallelzarr.units import format_bytes, parse_bytes

__all__ = [
    "MemoryModel",
    "StagePlan",
    "ArrayPlan",
    "ArraySpec",
    "RechunkPlan",
    "normalize_chunks",
    "plan_array",
    "plan_rechunk",
    "task_memory",
    "split_region",
]

# Bounds that keep graphs schedulable and tasks worth their overhead.
DEFAULT_MAX_TASKS = 100_000
DEFAULT_MIN_TASKS = 16
DEFAULT_TARGET_TASK_BYTES = 64 * 2**20
DEFAULT_TARGET_INTERMEDIATE_BYTES = 16 * 2**20
SMALL_INTERMEDIATE_BYTES = 2**20
#: Two-pass plans first try intermediates whose stage tasks are at most about 64 MB (or 1/BALANCE_TASKS
#: of the array, not below BALANCE_MIN_BYTES), so every stage has enough tasks for the workers: at
#: 256 MB a larger intermediate made stage 0 five 200 MB tasks on two threads.
BALANCE_TASKS = 8
BALANCE_MIN_BYTES = 4 * 2**20
#: Read amplification above which the printed plan warns (the CLI's --dry-run prints the plan).
AMPLIFICATION_WARNING = 2.0


@dataclass(frozen=True)
class MemoryModel:
    """What one task holds at its peak, as multiples of chunk sizes.

    A task reads its block into one assembled buffer (which is also what it writes),
    so the peak is ``block + max(read transients, write transients)``. Chunk I/O runs in the
    task's thread (:mod:`parallelzarr.store.chunk_io`): it decodes one stored object at a time
    straight into the block, and encodes one at a time from a contiguous copy (none when the
    block already holds the object contiguously). On stores driven from zarr's loop (fsspec) up
    to ``io_chunks`` encoded objects are in flight besides (prefetched reads, queued writes);
    on local and in-memory stores each operation completes before the next, so the model is an
    upper bound there. The planner picks the largest ``io_chunks`` that fits, up to zarr's
    ``async.concurrency``.

    Per task, with ``k`` objects in flight and ``c`` bytes per object (raw):
    reading holds ``k * c * encoded_factor + c * decode_factor``; writing holds
    ``k * c * encoded_factor + c * encode_factor`` (plus ``c * shard_extra`` for a shard, whose
    inner chunks are encoded before they are concatenated).

    Attributes
    ----------
    encoded_factor
        Bytes of one encoded object in flight, in units of its raw size (compressed data is
        smaller; incompressible data adds a header of a few bytes).
    decode_factor
        Bytes held while one object is decoded: the decoded object (uncompressed data is a view).
    encode_factor
        Bytes held while one object is encoded: its contiguous copy and the codec's output buffer.
    shard_extra
        Extra raw multiples held while a shard is encoded (its encoded inner chunks).
    io_concurrency
        Most objects in flight per task.
    overhead
        Fixed bytes per task for Python objects, selections and the marker write.
    data_only
        Count only the chunk data a task holds, as rechunker reads ``max_mem``: the largest of
        its block, one read cell and one write cell (no buffers, no overhead). Plans made this
        way are re-estimated with the full model (:func:`estimate_peaks`) before they are shown.
    """

    encoded_factor: float = 1.0
    decode_factor: float = 1.0
    encode_factor: float = 2.0
    shard_extra: float = 1.0
    io_concurrency: int = 10
    overhead: int = 2**20
    data_only: bool = False


#: How :class:`ArrayPlan` reads ``max_mem``: parallelzarr's whole estimated peak, or rechunker's meaning.
PEAK_MEANING = "peak"
DATA_MEANING = "chunk data"


@dataclass(frozen=True)
class StagePlan:
    """One pass over an array: read ``read_grid`` cells, write ``write_grid`` cells.

    Attributes
    ----------
    index
        Stage number, from 0.
    read_from, write_to
        ``"source"``, ``"intermediate-<k>"`` or ``"target"``.
    read_grid, write_grid
        Chunk grids read and written (the write grid is the shard shape when sharded).
    block
        Shape of the region one task handles (clipped at the array's end).
    blocks_per_axis
        Number of blocks along each axis; tasks are their product, in C order.
    n_tasks
        Number of tasks.
    read_amplification
        How many times each read-grid cell is read, on average (1.0 when aligned).
    chunks_read, chunks_written
        Read-grid cell reads (counting repeats) and write-grid cells written.
    bytes_read, bytes_written
        Decoded bytes read (with amplification) and raw bytes written.
    task_memory
        Estimated peak bytes of one task; ``memory_breakdown`` says what makes it up.
    io_chunks
        Stored objects a task keeps in flight on stores driven from zarr's loop (fsspec): reads
        prefetched, encoded writes queued (:mod:`parallelzarr.store.chunk_io`); local and in-memory
        stores do one at a time. Bounds the task's transient buffers.
    note
        Why this stage looks the way it does.
    """

    index: int
    read_from: str
    write_to: str
    read_grid: tuple[int, ...]
    write_grid: tuple[int, ...]
    block: tuple[int, ...]
    blocks_per_axis: tuple[int, ...]
    n_tasks: int
    read_amplification: float
    chunks_read: int
    chunks_written: int
    bytes_read: int
    bytes_written: int
    task_memory: int
    memory_breakdown: dict[str, int]
    io_chunks: int = 1
    note: str = ""

    def block_slices(self, task: int, shape: Sequence[int]) -> tuple[slice, ...]:
        """Return the region of task number ``task`` (C order over the block grid)."""
        idx = []
        for nb in reversed(self.blocks_per_axis):
            idx.append(task % nb)
            task //= nb
        idx.reverse()
        return tuple(
            slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(idx, self.block, shape, strict=True)
        )


@dataclass(frozen=True)
class ArrayPlan:
    """How one array is rechunked.

    Attributes
    ----------
    name
        Array name (``""`` for a lone array).
    shape, dtype, itemsize
        Array description.
    source_chunks, target_chunks, target_shards
        Chunking before and after (``target_shards`` is None when not sharded).
    intermediate_chunks
        Chunks of the intermediate array, None for a single pass.
    stages
        The passes, in order.
    strategy
        ``"copy"``, ``"one-pass"``, ``"one-pass-amplified"`` or ``"two-pass"``.
    reason
        One sentence on why this strategy was chosen, with the bytes each alternative moves.
    alternatives
        ``(strategy, bytes_read, bytes_written)`` of every plan considered that keeps the budget,
        the chosen one included (empty when one aligned pass fits: nothing moves fewer bytes).
    budget_meaning
        ``"peak"``: every task's estimated peak (data, buffers, overhead) is within ``max_mem``.
        ``"chunk data"``: no such plan exists, so ``max_mem`` bounds only the chunk data a task
        holds (rechunker's meaning); ``task_memory`` still gives the estimated peak, above the budget.
    peak_budget
        With ``"chunk data"``: the smallest ``max_mem`` whose plan keeps the estimated peak (0 otherwise).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    itemsize: int
    source_chunks: tuple[int, ...]
    target_chunks: tuple[int, ...]
    target_shards: tuple[int, ...] | None
    intermediate_chunks: tuple[int, ...] | None
    stages: tuple[StagePlan, ...]
    strategy: str
    reason: str
    alternatives: tuple[tuple[str, int, int], ...] = ()
    budget_meaning: str = PEAK_MEANING
    peak_budget: int = 0

    @property
    def passes(self) -> int:
        """Number of stages."""
        return len(self.stages)

    @property
    def task_memory(self) -> int:
        """Largest per-task peak over the stages."""
        return max((s.task_memory for s in self.stages), default=0)

    @property
    def n_tasks(self) -> int:
        """Tasks over all stages."""
        return sum(s.n_tasks for s in self.stages)

    @property
    def nbytes(self) -> int:
        """Raw size of the array."""
        return math.prod(self.shape) * self.itemsize


@dataclass(frozen=True)
class RechunkPlan:
    """The whole rechunk: one :class:`ArrayPlan` per array plus budget facts.

    ``print(plan)`` shows a table; :meth:`to_dict` is JSON-able; :meth:`fingerprint`
    identifies the plan for resuming. ``plan.plot(ax=None)`` draws the stages against the budget
    (needs matplotlib); it is :func:`parallelzarr.reports.plot.plot_rechunk_plan`, installed on this
    class by :func:`parallelzarr.reports.plot.register` when ``parallelzarr`` is imported, so that
    this pure layer imports no drawing code.
    """

    arrays: tuple[ArrayPlan, ...]
    max_mem: int
    threads_per_worker: int
    memory_model: MemoryModel = field(default_factory=MemoryModel)
    #: How intermediates are encoded (e.g. "Blosc lz4 level 5"), printed with two-pass plans; "" if not given.
    intermediate_codec: str = ""
    #: Draws the plan; installed by :func:`parallelzarr.reports.plot.register` (see above).
    plot: ClassVar[Callable[..., Any]]

    @property
    def n_tasks(self) -> int:
        """Tasks over all arrays and stages."""
        return sum(a.n_tasks for a in self.arrays)

    @property
    def task_memory(self) -> int:
        """Largest per-task peak estimate."""
        return max((a.task_memory for a in self.arrays), default=0)

    @property
    def worker_memory(self) -> int:
        """Per-worker peak estimate: every thread running the largest task."""
        return self.task_memory * self.threads_per_worker

    @property
    def bytes_read(self) -> int:
        """Decoded bytes read over all stages."""
        return sum(s.bytes_read for a in self.arrays for s in a.stages)

    @property
    def bytes_written(self) -> int:
        """Raw bytes written over all stages."""
        return sum(s.bytes_written for a in self.arrays for s in a.stages)

    @property
    def passes(self) -> int:
        """Most stages any array needs."""
        return max((a.passes for a in self.arrays), default=0)

    @property
    def budget_meaning(self) -> str:
        """``"peak"`` if every array keeps its estimated peak within ``max_mem``, else ``"chunk data"``."""
        return DATA_MEANING if any(a.budget_meaning == DATA_MEANING for a in self.arrays) else PEAK_MEANING

    @property
    def peak_budget(self) -> int:
        """Smallest ``max_mem`` that keeps every task's estimated peak (``max_mem`` if it already does)."""
        return max([self.max_mem] + [a.peak_budget for a in self.arrays if a.budget_meaning == DATA_MEANING])

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able description of the plan."""
        return {
            "max_mem": self.max_mem,
            "budget_meaning": self.budget_meaning,
            "peak_budget": self.peak_budget,
            "threads_per_worker": self.threads_per_worker,
            "memory_model": asdict(self.memory_model),
            "intermediate_codec": self.intermediate_codec,
            "n_tasks": self.n_tasks,
            "passes": self.passes,
            "task_memory": self.task_memory,
            "worker_memory": self.worker_memory,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "arrays": [
                {
                    **{k: v for k, v in asdict(a).items() if k != "stages"},
                    "passes": a.passes,
                    "n_tasks": a.n_tasks,
                    "task_memory": a.task_memory,
                    "stages": [asdict(s) for s in a.stages],
                }
                for a in self.arrays
            ],
        }

    def fingerprint(self) -> str:
        """Return a short hash that changes whenever the plan would do something else."""
        # Scheduler facts (threads per worker) do not change what tasks do, so they stay out.
        # Nor do the alternatives the planner weighed.
        # The budget's meaning changes blocks only, which are in; so fingerprints of earlier plans still hold.
        arrays = [{k: v for k, v in asdict(a).items() if k not in ("alternatives", "budget_meaning", "peak_budget")}
                  for a in self.arrays]
        text = json.dumps([self.max_mem, arrays], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _repr_html_(self) -> str:
        """Notebook view: the printed plan in a preformatted block."""
        import html

        return f"<pre>{html.escape(str(self))}</pre>"

    def __str__(self) -> str:
        lines = [
            f"RechunkPlan: {len(self.arrays)} array(s), {self.n_tasks} tasks, up to {self.passes} pass(es)",
            f"  budget {format_bytes(self.max_mem)} per task; estimated peak {format_bytes(self.task_memory)} "
            f"per task, {format_bytes(self.worker_memory)} per worker ({self.threads_per_worker} thread(s))",
            "  max_mem read as " + (
                "the estimated peak of a task (data, buffers, overhead)" if self.budget_meaning == PEAK_MEANING
                else "the chunk data a task holds (rechunker's meaning; no plan keeps the estimated peak within "
                f"it): for a plan whose peak stays within the budget, raise max_mem to "
                f"{format_bytes(self.peak_budget)} ({self.peak_budget} bytes)"),
            f"  reads {format_bytes(self.bytes_read)}, writes {format_bytes(self.bytes_written)}",
        ]
        if self.intermediate_codec and self.passes > 1:
            lines.append(f"  intermediates encoded with {self.intermediate_codec} (temp_options overrides)")
        header = (
            f"  {'array':<14} {'stage':<24} {'read grid':<18} {'write grid':<18} {'block':<20} "
            f"{'tasks':>8} {'amp':>5} {'read':>10} {'written':>10} {'mem/task':>10}"
        )
        lines.append(header)
        lines.append("  " + "-" * (len(header) - 2))
        for a in self.arrays:
            lines.append(
                f"  {a.name or '<array>':<14} {a.strategy}: {a.shape} {a.dtype} "
                f"{a.source_chunks} -> {a.target_chunks}"
                + (f" shards {a.target_shards}" if a.target_shards else "")
                + (" [max_mem read as chunk data]" if a.budget_meaning == DATA_MEANING else "")
            )
            for s in a.stages:
                lines.append(
                    f"  {'':<14} {s.read_from + '->' + s.write_to:<24} {_fmt(s.read_grid):<18} "
                    f"{_fmt(s.write_grid):<18} {_fmt(s.block):<20} {s.n_tasks:>8} "
                    f"{s.read_amplification:>5.2f} {format_bytes(s.bytes_read):>10} "
                    f"{format_bytes(s.bytes_written):>10} {format_bytes(s.task_memory):>10}"
                )
            lines.append(f"  {'':<14} why: {a.reason}")
            for s in a.stages:
                if s.note:
                    lines.append(f"  {'':<14} stage {s.index}: {s.note}")
            for s in a.stages:
                if s.read_amplification > AMPLIFICATION_WARNING:
                    lines.append(
                        f"  {'':<14} WARNING: stage {s.index} reads its {s.read_from.split('-')[0]} "
                        f"{_times(s.read_amplification)} over: {format_bytes(s.bytes_read)} read to write "
                        f"{format_bytes(s.bytes_written)}; a larger max_mem reads less"
                    )
        return "\n".join(lines)


def _fmt(t: Sequence[int]) -> str:
    return "(" + ",".join(str(x) for x in t) + ")"


# --------------------------------------------------------------------------- chunk specs


def normalize_chunks(
    target_chunks: Any,
    shape: Sequence[int],
    dims: Sequence[str] | None = None,
    *,
    default: Sequence[int] | None = None,
    name: str = "",
) -> tuple[int, ...]:
    """Turn a user's chunk request into a full tuple of positive ints.

    Parameters
    ----------
    target_chunks
        A tuple/list (one entry per axis), a dict keyed by axis number or dimension
        name, or None (keep ``default``).  ``-1`` or ``None`` entries mean the full
        length; entries larger than the axis are clipped to it.
    shape
        Array shape.
    dims
        Dimension names, for dict keys that are names.
    default
        Chunks for axes the request leaves out (the source chunks).
    name
        Array name, for error messages.

    Raises
    ------
    ChunkSpecError
        On a wrong number of entries, unknown keys or non-positive sizes.
    """
    ndim = len(shape)
    default = tuple(default) if default is not None else tuple(shape)
    where = f" for array {name!r}" if name else ""
    if target_chunks is None:
        spec: list[Any] = list(default)
    elif isinstance(target_chunks, Mapping):
        spec = list(default)
        for key, value in target_chunks.items():
            if isinstance(key, int) and not isinstance(key, bool):
                axis = key
            elif dims is not None and key in dims:
                axis = list(dims).index(key)
            else:
                continue  # a dimension this array does not have
            if not 0 <= axis < ndim:
                raise ChunkSpecError(f"axis {key!r} out of range for a {ndim}-d array{where}")
            spec[axis] = value
    elif isinstance(target_chunks, int) and not isinstance(target_chunks, bool):
        spec = [target_chunks] * ndim
    elif isinstance(target_chunks, Sequence) and not isinstance(target_chunks, str | bytes):
        spec = list(target_chunks)
        if len(spec) != ndim:
            raise ChunkSpecError(
                f"target chunks {tuple(spec)} have {len(spec)} entries but the array{where} has "
                f"{ndim} axes (shape {tuple(shape)}); give one chunk size per axis"
            )
    else:
        raise ChunkSpecError(
            f"target chunks{where} must be an int, a tuple with one size per axis or a dict by dimension, "
            f"got {type(target_chunks).__name__} {target_chunks!r}"
        )
    out = []
    for axis, (c, n) in enumerate(zip(spec, shape, strict=True)):
        if c is None or (isinstance(c, int) and not isinstance(c, bool) and c == -1):
            c = max(n, 1)
        if isinstance(c, bool) or not isinstance(c, int):
            if isinstance(c, Integral) and not isinstance(c, bool):
                c = int(c)
            else:
                raise ChunkSpecError(f"chunk size {c!r} on axis {axis}{where} is not an integer; give a "
                                     "positive integer (or -1/None for the full length)")
        if c <= 0:
            raise ChunkSpecError(
                f"chunk size {c} on axis {axis}{where} must be positive (or -1/None for the full length)"
            )
        out.append(min(c, max(n, 1)))
    return tuple(out)


# --------------------------------------------------------------------------- arithmetic


def _ceildiv(a: int, b: int) -> int:
    return -(-a // b)


def _cells(shape: Sequence[int], grid: Sequence[int]) -> int:
    return math.prod(_ceildiv(n, g) for n, g in zip(shape, grid, strict=True))


def _axis_pairs(n: int, block: int, grid: int) -> int:
    """(block, cell) overlaps along one axis: blocks plus cell edges strictly inside blocks."""
    if n == 0:
        return 0
    nblocks = _ceildiv(n, block)
    cell_edges = _ceildiv(n, grid) - 1
    shared_edges = _ceildiv(n, math.lcm(block, grid)) - 1
    return nblocks + cell_edges - shared_edges


def _axis_touch(n: int, block: int, grid: int) -> int:
    """Most read-grid cells one block touches along an axis.

    Block starts are multiples of ``block``, so their offsets inside a cell are
    multiples of ``gcd(block, grid)``: the worst offset is ``grid - gcd``.
    """
    worst = grid - math.gcd(block, grid)
    return min(_ceildiv(worst + min(block, n), grid), _ceildiv(n, grid))


def task_memory(
    shape: Sequence[int],
    itemsize: int,
    block: Sequence[int],
    read_grid: Sequence[int],
    write_grid: Sequence[int],
    model: MemoryModel,
    *,
    write_sharded: bool = False,
    io_chunks: int | None = None,
) -> dict[str, int]:
    """Estimate the peak bytes one task holds (see :class:`MemoryModel`).

    ``io_chunks`` caps the cells per zarr call (default: ``model.io_concurrency``).

    Returns
    -------
    dict
        ``assembled``, ``read_transient``, ``write_transient``, ``overhead`` and ``total``
        in bytes.
    """
    clipped = [min(b, n) for b, n in zip(block, shape, strict=True)]
    assembled = math.prod(clipped) * itemsize
    touched = math.prod(_axis_touch(n, b, g) for n, b, g in zip(shape, clipped, read_grid, strict=True))
    written = math.prod(_ceildiv(b, g) for b, g in zip(clipped, write_grid, strict=True))
    read_cell = math.prod(read_grid) * itemsize
    write_cell = math.prod(write_grid) * itemsize
    k = max(1, min(io_chunks or model.io_concurrency, model.io_concurrency))
    k_r = min(k, touched)
    k_w = min(k, written)
    enc = model.encode_factor + (model.shard_extra if write_sharded else 0.0)
    read_t = int(read_cell * (k_r * model.encoded_factor + model.decode_factor))
    write_t = int(write_cell * (k_w * model.encoded_factor + enc))
    if model.data_only:
        # rechunker's meaning: block, read chunk and write chunk each within max_mem, nothing else counted.
        return {"assembled": assembled, "read_transient": 0, "write_transient": 0, "overhead": 0,
                "total": max(assembled, read_cell, write_cell)}
    return {
        "assembled": assembled,
        "read_transient": read_t,
        "write_transient": write_t,
        "overhead": model.overhead,
        "total": assembled + max(read_t, write_t) + model.overhead,
    }


def _grow_block(
    shape: Sequence[int],
    unit: Sequence[int],
    fits: Any,
    itemsize: int,
    *,
    max_tasks: int,
    min_tasks: int,
    target_bytes: int,
) -> tuple[int, ...]:
    """Grow ``unit`` by whole multiples so tasks batch many chunks.

    Growth is forced while there are more than ``max_tasks`` tasks, and otherwise
    continues while blocks are under ``target_bytes`` and at least ``min_tasks`` remain;
    every step must keep ``fits(block)``.
    """
    block = [min(u, n) for u, n in zip(unit, shape, strict=True)]
    while True:
        n_tasks = _cells(shape, block)
        order = sorted(range(len(shape)), key=lambda i: -_ceildiv(shape[i], block[i]))
        grown = False
        for i in order:
            if block[i] >= shape[i]:
                continue
            cand = list(block)
            # Double in units of the aligned step, or jump straight to the full axis.
            cand[i] = min(shape[i], block[i] * 2)
            if cand[i] < shape[i]:
                cand[i] = max(unit[i], cand[i] // unit[i] * unit[i])
            new_tasks = _cells(shape, cand)
            new_bytes = math.prod(cand) * itemsize
            wanted = n_tasks > max_tasks or (new_bytes <= target_bytes and new_tasks >= min_tasks)
            if wanted and fits(cand):
                block = cand
                grown = True
                break
        if not grown:
            return tuple(block)


def _stage(
    index: int,
    read_from: str,
    write_to: str,
    shape: Sequence[int],
    itemsize: int,
    read_grid: Sequence[int],
    write_grid: Sequence[int],
    block: Sequence[int],
    model: MemoryModel,
    write_sharded: bool,
    budget: int,
    note: str = "",
) -> StagePlan:
    nbytes = math.prod(shape) * itemsize
    # Most objects in flight that keep the budget: more in flight means more overlap on remote stores.
    io_chunks = 1
    # Read as chunk data only, the budget says nothing about buffers: keep them at their least.
    for k in range(1 if model.data_only else model.io_concurrency, 0, -1):
        kw = dict(write_sharded=write_sharded, io_chunks=k)
        if task_memory(shape, itemsize, block, read_grid, write_grid, model, **kw)["total"] <= budget:
            io_chunks = k
            break
    pairs = math.prod(_axis_pairs(n, b, g) for n, b, g in zip(shape, block, read_grid, strict=True))
    cells = _cells(shape, read_grid)
    amp = pairs / cells if cells else 1.0
    mem = task_memory(shape, itemsize, block, read_grid, write_grid, model, write_sharded=write_sharded,
                      io_chunks=io_chunks)
    return StagePlan(
        index=index,
        read_from=read_from,
        write_to=write_to,
        read_grid=tuple(read_grid),
        write_grid=tuple(write_grid),
        block=tuple(block),
        blocks_per_axis=tuple(_ceildiv(n, b) for n, b in zip(shape, block, strict=True)),
        n_tasks=_cells(shape, block),
        read_amplification=round(amp, 6),
        chunks_read=pairs,
        chunks_written=_cells(shape, write_grid),
        bytes_read=int(round(nbytes * amp)),
        bytes_written=nbytes,
        task_memory=mem["total"],
        memory_breakdown=mem,
        io_chunks=io_chunks,
        note=note,
    )


def split_region(
    region: Sequence[slice], grid: Sequence[int], max_cells: int
) -> list[tuple[slice, ...]]:
    """Split ``region`` into grid-aligned pieces touching at most ``max_cells`` cells each.

    Pieces take whole cells on trailing axes and as many cells of the leading split axis
    as fit, so piece edges fall on grid boundaries (whole-chunk writes stay whole).
    """
    cuts = []
    for sl, g in zip(region, grid, strict=True):
        edges = [sl.start, *range((sl.start // g + 1) * g, sl.stop, g), sl.stop]
        cuts.append(edges)
    counts = [len(c) - 1 for c in cuts]
    if math.prod(counts) <= max_cells:
        return [tuple(region)]
    ndim = len(counts)
    d = next(i for i in range(ndim) if math.prod(counts[i + 1:]) <= max_cells)
    step = max(1, max_cells // math.prod(counts[d + 1:]))
    pieces = []
    for lead in itertools.product(*(range(c) for c in counts[:d])):
        for j in range(0, counts[d], step):
            sel = [slice(cuts[i][k], cuts[i][k + 1]) for i, k in enumerate(lead)]
            sel.append(slice(cuts[d][j], cuts[d][min(j + step, counts[d])]))
            sel.extend(region[d + 1:])
            pieces.append(tuple(sel))
    return pieces


def _divisors(x: int) -> list[int]:
    small, large = [], []
    d = 1
    while d * d <= x:
        if x % d == 0:
            small.append(d)
            if d * d != x:
                large.append(x // d)
        d += 1
    return small + large[::-1]


def _intermediate_candidates(n: int, s: int, w: int) -> list[int]:
    """Intermediate chunk sizes on one axis that keep both stages aligned cheaply.

    Candidates form a divisibility chain with the source and target sizes, so the
    stage blocks ``lcm(s, m)`` and ``lcm(m, w)`` stay ``max(s, m)`` and ``max(m, w)``.
    """
    g = math.gcd(s, w)
    cands = set(_divisors(g)) if g <= 10**7 else {g}
    if w % s == 0 and w // s <= 10**7:
        cands.update(s * k for k in _divisors(w // s))
    if s % w == 0 and s // w <= 10**7:
        cands.update(w * k for k in _divisors(s // w))
    cands.add(max(n, 1))
    return sorted(c for c in cands if c <= max(n, 1))


# --------------------------------------------------------------------------- planner


def plan_array(
    shape: Sequence[int],
    itemsize: int,
    source_chunks: Sequence[int],
    target_chunks: Sequence[int],
    max_mem: int | str,
    *,
    name: str = "",
    dtype: str = "",
    source_read_grid: Sequence[int] | None = None,
    target_shards: Sequence[int] | None = None,
    model: MemoryModel | None = None,
    max_tasks: int = DEFAULT_MAX_TASKS,
    min_tasks: int = DEFAULT_MIN_TASKS,
    target_task_bytes: int | None = None,
    target_intermediate_bytes: int = DEFAULT_TARGET_INTERMEDIATE_BYTES,
) -> ArrayPlan:
    """Plan the rechunk of one array.

    Parameters
    ----------
    shape, itemsize
        Array shape and bytes per element.
    source_chunks, target_chunks
        Full chunk tuples (see :func:`normalize_chunks`).
    max_mem
        Budget per task in bytes (or a string such as ``"1GB"``).
    name, dtype
        For the report and error messages.
    source_read_grid
        Grid the source decodes in (its shard shape if sharded); defaults to its chunks.
    target_shards
        Shard shape of the target, if sharded; tasks then write whole shards.
    model
        Memory model; defaults to :class:`MemoryModel()`.
    max_tasks, min_tasks, target_task_bytes, target_intermediate_bytes
        Batching knobs: blocks grow while a stage has more than ``max_tasks`` tasks, and
        otherwise up to ``target_task_bytes`` while ``min_tasks`` tasks remain.

    Returns
    -------
    ArrayPlan

    Raises
    ------
    MemoryBudgetError
        If no plan keeps ``max_mem``; the message gives the smallest budget that works.
    ChunkSpecError
        If the chunk tuples do not match the shape.
    """
    plan = _plan_array(shape, itemsize, source_chunks, target_chunks, max_mem, name=name, dtype=dtype,
                       source_read_grid=source_read_grid, target_shards=target_shards, model=model,
                       max_tasks=max_tasks, min_tasks=min_tasks, target_task_bytes=target_task_bytes,
                       target_intermediate_bytes=target_intermediate_bytes)
    stages = []
    for st in plan.stages:
        if st.n_tasks > max_tasks:
            extra = (f"{st.n_tasks} tasks exceed max_tasks={max_tasks}: larger blocks would break the "
                     "budget; raise max_mem to batch more chunks per task")
            st = replace(st, note=f"{st.note}; {extra}" if st.note else extra)
        stages.append(st)
    return replace(plan, stages=tuple(stages))


def _plan_array(
    shape: Sequence[int],
    itemsize: int,
    source_chunks: Sequence[int],
    target_chunks: Sequence[int],
    max_mem: int | str,
    *,
    name: str,
    dtype: str,
    source_read_grid: Sequence[int] | None,
    target_shards: Sequence[int] | None,
    model: MemoryModel | None,
    max_tasks: int,
    min_tasks: int,
    target_task_bytes: int | None,
    target_intermediate_bytes: int,
) -> ArrayPlan:
    """The planner proper (see :func:`plan_array`)."""
    model = model or MemoryModel()
    budget = parse_bytes(max_mem)
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    src = tuple(int(c) for c in source_chunks)
    tgt = tuple(int(c) for c in target_chunks)
    for what, t in (("source chunks", src), ("target chunks", tgt)):
        if len(t) != ndim or any(c <= 0 for c in t):
            raise ChunkSpecError(f"{what} {t} do not fit array {name!r} of shape {shape}")
    r = tuple(int(c) for c in (source_read_grid or src))
    sharded = target_shards is not None
    w = tuple(int(c) for c in (target_shards or tgt))
    if sharded and any(s % c for s, c in zip(w, tgt, strict=True)):
        raise ChunkSpecError(f"shards {w} of array {name!r} must be multiples of its chunks {tgt}")
    target_bytes = target_task_bytes or max(min(DEFAULT_TARGET_TASK_BYTES, budget // 4), 1)
    common = dict(name=name, shape=shape, dtype=dtype, itemsize=itemsize, source_chunks=src,
                  target_chunks=tgt, target_shards=tuple(w) if sharded else None)

    def mem(block: Sequence[int], rg: Sequence[int], wg: Sequence[int], ws: bool) -> int:
        # The floor: one cell per zarr call; _stage then allows as many as fit.
        return task_memory(shape, itemsize, block, rg, wg, model, write_sharded=ws, io_chunks=1)["total"]

    def grow(unit: Sequence[int], rg: Sequence[int], wg: Sequence[int], ws: bool) -> tuple[int, ...]:
        return _grow_block(shape, unit, lambda b: mem(b, rg, wg, ws) <= budget, itemsize,
                           max_tasks=max_tasks, min_tasks=min_tasks, target_bytes=target_bytes)

    if math.prod(shape) == 0:
        stage = _stage(0, "source", "target", shape, itemsize, r, w, tuple(max(n, 1) for n in shape),
                       model, sharded, budget)
        return ArrayPlan(**common, intermediate_chunks=None, stages=(stage,), strategy="copy",
                         reason="empty array: only metadata is written")

    # 1. One aligned pass: blocks are multiples of both grids, each source chunk read once.
    unit1 = tuple(min(n, math.lcm(a, b)) for n, a, b in zip(shape, r, w, strict=True))
    need1 = mem(unit1, r, w, sharded)
    if need1 <= budget:
        block = grow(unit1, r, w, sharded)
        stage = _stage(0, "source", "target", shape, itemsize, r, w, block, model, sharded, budget)
        if target_task_bytes is None:
            stage = _balance_one_pass(stage, shape, itemsize, unit1, r, w, sharded, model, budget,
                                      lambda b: mem(b, r, w, sharded) <= budget, max_tasks, min_tasks, target_bytes)
        strategy = "copy" if r == w else "one-pass"
        reason = ("a block covering whole source and target chunks fits the budget, so one pass "
                  "reads every source chunk once")
        return ArrayPlan(**common, intermediate_chunks=None, stages=(stage,), strategy=strategy,
                         reason=reason)

    # 2. Otherwise compare every plan that keeps the budget by the bytes it moves: one pass whose
    #    blocks split some source chunks (each task rereads the pieces it needs), or two passes
    #    through an intermediate array. Each stage picks, per axis, whole read cells where they fit.
    def best_stage(index: int, read_from: str, write_to: str, rg: Sequence[int], wg: Sequence[int],
                   ws: bool) -> StagePlan | None:
        """The stage reading the fewest bytes among blocks aligned to ``rg`` on any subset of axes."""
        whole = [min(n, math.lcm(a, b)) for n, a, b in zip(shape, rg, wg, strict=True)]
        least = [min(n, b) for n, b in zip(shape, wg, strict=True)]
        free = [i for i in range(ndim) if whole[i] != least[i]]
        # Subsets of axes kept whole, most first; past 6 free axes only all or none (64 subsets at most).
        subsets = ([set(c) for k in range(len(free), -1, -1) for c in itertools.combinations(free, k)]
                   if len(free) <= 6 else [set(free), set()])
        best: StagePlan | None = None
        for keep in subsets:
            unit = tuple(whole[i] if i in keep else least[i] for i in range(ndim))
            if mem(unit, rg, wg, ws) > budget:
                continue
            # Split read cells make larger blocks cheaper (fewer rereads): also try the largest that fit.
            for tb in ((target_bytes,) if len(keep) == len(free) else (target_bytes, budget)):
                block = _grow_block(shape, unit, lambda b: mem(b, rg, wg, ws) <= budget, itemsize,
                                    max_tasks=max_tasks, min_tasks=min_tasks, target_bytes=tb)
                st = _stage(index, read_from, write_to, shape, itemsize, rg, wg, block, model, ws, budget)
                if best is None or st.bytes_read < best.bytes_read:
                    best = st
            if best is not None and best.read_amplification == 1.0:
                break  # nothing reads less
        return best

    candidates: list[tuple[str, tuple[int, ...] | None, tuple[StagePlan, ...]]] = []
    one = best_stage(0, "source", "target", r, w, sharded)
    if one is not None:
        candidates.append(("one-pass-amplified", None, (one,)))
    need_a = mem(tuple(min(n, b) for n, b in zip(shape, w, strict=True)), r, w, sharded)

    # Two passes through an intermediate array whose chunks chain with both grids.
    cands = [_intermediate_candidates(n, a, b) for n, a, b in zip(shape, r, w, strict=True)]

    def aligned_mem(mm: Sequence[int]) -> int:
        b1 = tuple(min(n, math.lcm(a, c)) for n, a, c in zip(shape, r, mm, strict=True))
        b2 = tuple(min(n, math.lcm(c, b)) for n, c, b in zip(shape, mm, w, strict=True))
        return max(mem(b1, r, mm, False), mem(b2, mm, w, sharded))

    def least_mem(mm: Sequence[int]) -> int:
        b1 = tuple(min(n, c) for n, c in zip(shape, mm, strict=True))
        b2 = tuple(min(n, b) for n, b in zip(shape, w, strict=True))
        return max(mem(b1, r, mm, False), mem(b2, mm, w, sharded))

    def grow_intermediate(fits: Any) -> tuple[int, ...] | None:
        """Grow intermediate chunks along the candidate chains while ``fits`` (None if even the smallest fails)."""
        m = [c[0] for c in cands]
        if not fits(m):
            return None
        pos = [0] * ndim
        while math.prod(m) * itemsize < target_intermediate_bytes:
            best = None
            for i in range(ndim):
                if pos[i] + 1 >= len(cands[i]):
                    continue
                trial = list(m)
                trial[i] = cands[i][pos[i] + 1]
                if fits(trial):
                    size = math.prod(trial)
                    if best is None or size > best[0]:
                        best = (size, i)
            if best is None:
                break
            i = best[1]
            pos[i] += 1
            m[i] = cands[i][pos[i]]
        return tuple(m)

    memo: dict[tuple[int, ...], tuple[StagePlan, StagePlan] | None] = {}

    def two_pass(mm: tuple[int, ...]) -> tuple[StagePlan, StagePlan] | None:
        if mm not in memo:
            s1 = best_stage(0, "source", "intermediate", r, mm, False)
            s2 = best_stage(1, "intermediate", "target", mm, w, sharded) if s1 is not None else None
            memo[mm] = None if s2 is None else (s1, s2)
        return memo[mm]

    def moved(stages: Sequence[StagePlan]) -> int:
        return sum(s.bytes_read + s.bytes_written for s in stages)

    smallest_m = [c[0] for c in cands]
    need2 = min(aligned_mem(smallest_m), least_mem(smallest_m))
    nbytes = math.prod(shape) * itemsize
    # Intermediates whose stages both read whole cells (every chunk read once per pass, 4x the array:
    # no two-pass plan moves less), else the largest that fit at all (stages then split cells)...
    # Balanced first: both stages' whole-cell units at most ``balance`` bytes (enough tasks per stage).
    balance = _balance_bytes(nbytes, target_task_bytes)

    def units_bytes(mm: Sequence[int]) -> int:
        b1 = math.prod(min(n, math.lcm(a, c)) for n, a, c in zip(shape, r, mm, strict=True))
        b2 = math.prod(min(n, math.lcm(c, b)) for n, c, b in zip(shape, mm, w, strict=True))
        return max(b1, b2) * itemsize

    found = None
    balanced = False
    tiers = (lambda mm: aligned_mem(mm) <= budget and units_bytes(mm) <= balance,
             lambda mm: aligned_mem(mm) <= budget, lambda mm: least_mem(mm) <= budget)
    for tier, fits in enumerate(tiers):
        mm = grow_intermediate(fits)
        pair = two_pass(mm) if mm is not None else None
        if pair is not None and (found is None or moved(pair) < moved(found[1])):
            found = (mm, pair)
            balanced = tier == 0
        if found is not None and moved(found[1]) <= 4 * nbytes:
            break
    # ... improved one axis at a time: move it to whichever of its candidates moves the fewest bytes,
    # until no axis helps (coordinate descent; a few dozen stage evaluations per round).
    rounds = 0
    while found is not None and moved(found[1]) > 4 * nbytes and rounds < 16:
        rounds += 1
        mm, pair = found
        better = found
        for i in range(ndim):
            for c in cands[i]:
                if c != mm[i]:
                    trial = mm[:i] + (c,) + mm[i + 1:]
                    got = two_pass(trial)
                    # Fewer bytes, or as few in larger intermediate chunks (fewer objects).
                    if got is not None and (moved(got), -math.prod(trial)) < (moved(better[1]),
                                                                               -math.prod(better[0])):
                        better = (trial, got)
        if better is found:
            break
        found = better
    if found is not None:
        mm, (s1, s2) = found
        if balanced and found[1][0].n_tasks > 1:
            why = (f"intermediate chunks keep every task at most {format_bytes(balance)} (about 64 MB, or 1/"
                   f"{BALANCE_TASKS} of the array), so each stage has tasks for every worker")
            s1 = replace(s1, note=f"{s1.note}; {why}" if s1.note else why)
        if math.prod(mm) * itemsize < SMALL_INTERMEDIATE_BYTES:
            s1 = replace(s1, note=f"intermediate chunks are small ({format_bytes(math.prod(mm) * itemsize)}); "
                                  "a larger budget makes them larger")
        candidates.append(("two-pass", mm, (s1, s2)))

    if not candidates:
        smallest = min(need1, need_a, need2)
        raise _budget_error(
            smallest,
            f"cannot rechunk array {name or '<array>'} (shape {shape}, {dtype or f'{itemsize}-byte items'}) "
            f"from chunks {src} to {tuple(w)} within max_mem={format_bytes(budget)} ({budget} bytes): "
            f"one task must hold at least one decoded source chunk and one encoded target "
            f"{'shard' if sharded else 'chunk'}. The smallest budget that works is "
            f"{format_bytes(smallest)} ({smallest} bytes); raise max_mem or choose smaller chunks."
        )

    # Fewest bytes moved wins; on a tie the earlier (fewer passes) candidate.
    strategy, mm, stages = min(candidates, key=lambda c: moved(c[2]))
    one_c = next((c for c in candidates if c[0] != "two-pass"), None)
    two_c = next((c for c in candidates if c[0] == "two-pass"), None)
    parts = []
    if one_c is not None:
        s = one_c[2][0]
        parts.append(f"one pass reads {format_bytes(s.bytes_read)} ({_times(s.read_amplification)}) + writes "
                     f"{format_bytes(s.bytes_written)}")
    else:
        parts.append(f"one pass does not fit (needs {format_bytes(need_a)})")
    if two_c is not None:
        rd = sum(s.bytes_read for s in two_c[2])
        wr = sum(s.bytes_written for s in two_c[2])
        amps = "/".join(_times(s.read_amplification) for s in two_c[2])
        parts.append(f"two passes through intermediate chunks {two_c[1]} read {format_bytes(rd)} ({amps}) + "
                     f"write {format_bytes(wr)}")
    else:
        parts.append(f"two passes do not fit (need {format_bytes(need2)})")
    chose = "one pass" if strategy != "two-pass" else "two passes"
    reason = (f"no block covering whole source and target chunks fits the budget (needs {format_bytes(need1)}); "
              + "; ".join(parts) + f"; chose {chose}, moving {format_bytes(moved(stages))} "
              f"({moved(stages) / nbytes:.2f}x the array)")
    out = []
    for s in stages:
        if s.read_amplification > 1.0:
            what = "source" if s.read_from == "source" else "intermediate"
            amp_note = (f"{what} chunks straddle block edges, so tasks sharing them each read them "
                        f"(amplification {s.read_amplification:.2f})")
            s = replace(s, note=f"{s.note}; {amp_note}" if s.note else amp_note)
        out.append(s)
    alternatives = tuple((c[0], sum(s.bytes_read for s in c[2]), sum(s.bytes_written for s in c[2]))
                         for c in candidates)
    return ArrayPlan(**common, intermediate_chunks=mm, stages=tuple(out), strategy=strategy, reason=reason,
                     alternatives=alternatives)


def _balance_bytes(nbytes: int, target_task_bytes: int | None = None) -> int:
    """Task size that gives every worker work: about 64 MB, or 1/BALANCE_TASKS of the array (not below 4 MiB)."""
    return min(target_task_bytes or DEFAULT_TARGET_TASK_BYTES, max(nbytes // BALANCE_TASKS, BALANCE_MIN_BYTES))


def _balance_one_pass(stage: StagePlan, shape: tuple[int, ...], itemsize: int, unit: Sequence[int],
                      r: Sequence[int], w: Sequence[int], sharded: bool, model: MemoryModel, budget: int,
                      fits: Any, max_tasks: int, min_tasks: int, target_bytes: int) -> StagePlan:
    """Cap an aligned one-pass stage's tasks at :func:`_balance_bytes` where that moves no more bytes.

    Aligned blocks read every source chunk once at any multiple of ``unit``, so they are capped freely
    (the plan says so). A ``unit`` above the cap cannot shrink without splitting source chunks, which
    every task sharing them then decodes (more bytes moved): the stage keeps its few large tasks and
    its note gives the bytes the balanced alternatives would move.
    """
    nbytes = math.prod(shape) * itemsize
    balance = _balance_bytes(nbytes)
    moved = stage.bytes_read + stage.bytes_written

    def block_bytes(b: Sequence[int]) -> int:
        return math.prod(min(x, n) for x, n in zip(b, shape, strict=True)) * itemsize

    if block_bytes(stage.block) > balance and block_bytes(unit) <= balance:
        block = _grow_block(shape, unit, fits, itemsize, max_tasks=max_tasks, min_tasks=min_tasks,
                            target_bytes=min(target_bytes, balance))
        capped = _stage(0, "source", "target", shape, itemsize, r, w, block, model, sharded, budget)
        why = (f"tasks capped at {format_bytes(balance)} (about 64 MB, or 1/{BALANCE_TASKS} of the array) so "
               "each stage has tasks for every worker; aligned blocks read every source chunk once at any size")
        return replace(capped, note=f"{capped.note}; {why}" if capped.note else why)
    if block_bytes(unit) <= balance or stage.n_tasks >= BALANCE_TASKS:
        return stage
    # Too few tasks, and the smallest aligned block is above the cap: try blocks of whole target cells.
    least = tuple(min(n, b) for n, b in zip(shape, w, strict=True))
    alt = None
    if block_bytes(least) <= balance and fits(least):
        block = _grow_block(shape, least, fits, itemsize, max_tasks=max_tasks, min_tasks=min_tasks,
                            target_bytes=balance)
        alt = _stage(0, "source", "target", shape, itemsize, r, w, block, model, sharded, budget)
        if alt.bytes_read + alt.bytes_written <= moved:
            return alt
    why = (f"{stage.n_tasks} task(s) of {format_bytes(block_bytes(stage.block))}: the smallest block covering whole "
           f"source and target chunks is {format_bytes(block_bytes(unit))}, above {format_bytes(balance)} (about "
           f"64 MB, or 1/{BALANCE_TASKS} of the array), so fewer tasks than workers may run at once; ")
    if alt is not None:
        why += (f"tasks of at most {format_bytes(balance)} would split source chunks and move "
                f"{format_bytes(alt.bytes_read + alt.bytes_written)} ({_times(alt.read_amplification)} read)")
    else:
        why += f"tasks of at most {format_bytes(balance)} would have to split target chunks"
    why += f", and two passes at least {format_bytes(4 * nbytes)}, against this plan's {format_bytes(moved)}"
    return replace(stage, note=f"{stage.note}; {why}" if stage.note else why)


def _budget_error(smallest: int, message: str) -> MemoryBudgetError:
    """A :class:`MemoryBudgetError` carrying the smallest budget that works (``.smallest``, bytes)."""
    err = MemoryBudgetError(message)
    err.smallest = smallest  # type: ignore[attr-defined]
    return err


def estimate_peaks(plan: ArrayPlan, model: MemoryModel) -> ArrayPlan:
    """Re-estimate every stage's per-task peak of ``plan`` with ``model`` (same blocks, same ``io_chunks``)."""
    shape, itemsize = plan.shape, plan.itemsize
    stages = []
    for s in plan.stages:
        sharded = plan.target_shards is not None and s.write_to == "target"
        mem = task_memory(shape, itemsize, s.block, s.read_grid, s.write_grid, model, write_sharded=sharded,
                          io_chunks=s.io_chunks)
        stages.append(replace(s, task_memory=mem["total"], memory_breakdown=mem))
    return replace(plan, stages=tuple(stages))


def _times(amp: float) -> str:
    """``1x``, ``2.5x``, ``132x``: an amplification as the reader says it."""
    return f"{amp:.2f}".rstrip("0").rstrip(".") + "x"


@dataclass(frozen=True)
class ArraySpec:
    """What the planner needs to know about one array (no I/O handles).

    Attributes
    ----------
    name, shape, dtype, itemsize, source_chunks, target_chunks
        As in :func:`plan_array`.
    source_read_grid, target_shards
        Optional shard shapes.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    itemsize: int
    source_chunks: tuple[int, ...]
    target_chunks: tuple[int, ...]
    source_read_grid: tuple[int, ...] | None = None
    target_shards: tuple[int, ...] | None = None


def plan_rechunk(
    arrays: Sequence[ArraySpec],
    max_mem: int | str,
    *,
    threads_per_worker: int = 1,
    model: MemoryModel | None = None,
    intermediate_codec: str = "",
    chunk_data_fallback: bool = False,
    **knobs: Any,
) -> RechunkPlan:
    """Plan several arrays under one per-task budget.

    Parameters
    ----------
    arrays
        One :class:`ArraySpec` per array.
    max_mem
        Budget per task (bytes or a size string).
    threads_per_worker
        Threads sharing a worker's memory; scales the per-worker estimate.
    model
        Memory model.
    intermediate_codec
        Description of the intermediates' codecs, for the printed plan.
    chunk_data_fallback
        If an array's estimated peak cannot be kept within ``max_mem``, plan it with ``max_mem``
        read as rechunker reads it, the chunk data one task holds (``budget_meaning="chunk data"``,
        its ``task_memory`` the estimated peak, ``peak_budget`` the budget that keeps it) instead
        of refusing. Refused only when even that cannot fit.
    **knobs
        Passed to :func:`plan_array` (``max_tasks``, ``min_tasks``, ...).

    Raises
    ------
    MemoryBudgetError
        Naming the first array whose budget cannot be kept (a ``ValueError``, as rechunker raises).
    """
    model = model or MemoryModel()
    budget = parse_bytes(max_mem)

    def one(a: ArraySpec, m: MemoryModel, limit: int = budget) -> ArrayPlan:
        return plan_array(a.shape, a.itemsize, a.source_chunks, a.target_chunks, limit, name=a.name,
                          dtype=a.dtype, source_read_grid=a.source_read_grid, target_shards=a.target_shards,
                          model=m, **knobs)

    plans = []
    for a in arrays:
        try:
            plans.append(one(a, model))
        except MemoryBudgetError as err:
            if not chunk_data_fallback:
                raise
            peak = getattr(err, "smallest", 0)
            try:
                planned = one(a, replace(model, data_only=True, io_concurrency=1))
            except MemoryBudgetError as err2:
                least = getattr(err2, "smallest", 0)
                raise _budget_error(least, (
                    f"cannot rechunk array {a.name or '<array>'} (shape {a.shape}, {a.dtype}) from chunks "
                    f"{a.source_chunks} to {a.target_shards or a.target_chunks} within max_mem="
                    f"{format_bytes(budget)} ({budget} bytes), even read as rechunker reads it (the chunk data "
                    f"one task holds: at least one source chunk and one target chunk). The smallest budget that "
                    f"works is {format_bytes(least)} ({least} bytes), read that way; "
                    f"{format_bytes(peak)} ({peak} bytes) keeps parallelzarr's estimated peak per task. "
                    "Raise max_mem or choose smaller chunks.")) from None
            planned = estimate_peaks(planned, model)
            # The budget to suggest: this plan's estimated peak, where the planner finds a plan at least as
            # lean (the smallest budget that works at all may mean tiny tasks rereading their source).
            peak = max(peak, planned.task_memory)
            try:
                one(a, model, peak)
            except MemoryBudgetError:
                peak = getattr(err, "smallest", peak)
            plans.append(replace(planned, budget_meaning=DATA_MEANING, peak_budget=peak))
    return RechunkPlan(arrays=tuple(plans), max_mem=budget, threads_per_worker=max(1, int(threads_per_worker)),
                       memory_model=model, intermediate_codec=intermediate_codec)
