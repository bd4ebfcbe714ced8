"""The rechunk plan as plain frozen data: stages, arrays, the whole plan and how it prints.

:class:`ArraySpec` is what the planner is given about one array; :class:`RechunkPlan` (one
:class:`ArrayPlan` per array, one :class:`StagePlan` per pass) is what it returns. Nothing here
plans or touches a store.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from parallelzarr.plan.rechunk.memory import DATA_MEANING, PEAK_MEANING, MemoryModel
from parallelzarr.units import format_bytes

__all__ = ["StagePlan", "ArrayPlan", "RechunkPlan", "ArraySpec", "AMPLIFICATION_WARNING", "times"]

#: Read amplification above which the printed plan warns (the CLI's --dry-run prints the plan).
AMPLIFICATION_WARNING = 2.0


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
                        f"{times(s.read_amplification)} over: {format_bytes(s.bytes_read)} read to write "
                        f"{format_bytes(s.bytes_written)}; a larger max_mem reads less"
                    )
        return "\n".join(lines)


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



def _fmt(t: Sequence[int]) -> str:
    return "(" + ",".join(str(x) for x in t) + ")"


def times(amp: float) -> str:
    """``1x``, ``2.5x``, ``132x``: an amplification as the reader says it."""
    return f"{amp:.2f}".rstrip("0").rstrip(".") + "x"
