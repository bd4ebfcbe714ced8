"""The rechunk planner: per array the aligned pass if it fits, else the plan moving the fewest bytes.

:func:`plan_array` plans one array in named steps: check the grids (:func:`_problem`), the empty
array, one aligned pass (:func:`_one_aligned_pass`), else the cheapest of one pass that splits
source chunks and two passes through an intermediate (:func:`_cheapest_plan`, with
:mod:`.two_pass`), explained in one sentence (:func:`_reason`). :func:`plan_rechunk` plans several
arrays under one budget, reading it as chunk data where the estimated peak cannot be kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from parallelzarr.errors import ChunkSpecError, MemoryBudgetError
from parallelzarr.plan.rechunk.balance import DEFAULT_TARGET_TASK_BYTES, balance_one_pass
from parallelzarr.plan.rechunk.memory import DATA_MEANING, MemoryModel, task_memory
from parallelzarr.plan.rechunk.plans import ArrayPlan, ArraySpec, RechunkPlan, StagePlan, times
from parallelzarr.plan.rechunk.stages import Problem, best_stage, moved
from parallelzarr.plan.rechunk.two_pass import plan_two_pass
from parallelzarr.units import format_bytes, parse_bytes

__all__ = ["DEFAULT_MAX_TASKS", "DEFAULT_MIN_TASKS", "DEFAULT_TARGET_INTERMEDIATE_BYTES", "plan_array",
           "plan_rechunk", "estimate_peaks"]

# Bounds that keep graphs schedulable and tasks worth their overhead.
DEFAULT_MAX_TASKS = 100_000
DEFAULT_MIN_TASKS = 16
DEFAULT_TARGET_INTERMEDIATE_BYTES = 16 * 2**20

#: One plan considered: its strategy, intermediate chunks (two passes) and stages.
_Candidate = tuple[str, tuple[int, ...] | None, tuple[StagePlan, ...]]


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
    p = _problem(shape, itemsize, source_chunks, target_chunks, parse_bytes(max_mem), name=name, dtype=dtype,
                 source_read_grid=source_read_grid, target_shards=target_shards, model=model or MemoryModel(),
                 max_tasks=max_tasks, min_tasks=min_tasks, target_task_bytes=target_task_bytes)
    if math.prod(p.shape) == 0:
        stage = p.stage(0, "source", "target", p.read, p.write, tuple(max(n, 1) for n in p.shape), p.sharded)
        return p.array_plan(None, (stage,), "copy", "empty array: only metadata is written")
    # 1. One aligned pass: blocks are multiples of both grids, each source chunk read once.
    unit = tuple(min(n, math.lcm(a, b)) for n, a, b in zip(p.shape, p.read, p.write, strict=True))
    need = p.mem(unit, p.read, p.write, p.sharded)
    if need <= p.budget:
        return _one_aligned_pass(p, unit, balance=target_task_bytes is None)
    # 2. Otherwise compare every plan that keeps the budget by the bytes it moves.
    return _cheapest_plan(p, need, target_task_bytes, target_intermediate_bytes)


def _problem(
    shape: Sequence[int],
    itemsize: int,
    source_chunks: Sequence[int],
    target_chunks: Sequence[int],
    budget: int,
    *,
    name: str,
    dtype: str,
    source_read_grid: Sequence[int] | None,
    target_shards: Sequence[int] | None,
    model: MemoryModel,
    max_tasks: int,
    min_tasks: int,
    target_task_bytes: int | None,
) -> Problem:
    """Check the chunk tuples against the shape and gather what the planner needs.

    Raises
    ------
    ChunkSpecError
        Chunk tuples that do not fit the shape, or shards that are not multiples of the chunks.
    """
    shape = tuple(int(n) for n in shape)
    src = tuple(int(c) for c in source_chunks)
    tgt = tuple(int(c) for c in target_chunks)
    for what, t in (("source chunks", src), ("target chunks", tgt)):
        if len(t) != len(shape) or any(c <= 0 for c in t):
            raise ChunkSpecError(f"{what} {t} do not fit array {name!r} of shape {shape}")
    sharded = target_shards is not None
    w = tuple(int(c) for c in (target_shards or tgt))
    if sharded and any(s % c for s, c in zip(w, tgt, strict=True)):
        raise ChunkSpecError(f"shards {w} of array {name!r} must be multiples of its chunks {tgt}")
    return Problem(name=name, dtype=dtype, shape=shape, itemsize=itemsize, source_chunks=src, target_chunks=tgt,
                   read=tuple(int(c) for c in (source_read_grid or src)), write=w, sharded=sharded, model=model,
                   budget=budget, max_tasks=max_tasks, min_tasks=min_tasks,
                   target_bytes=target_task_bytes or max(min(DEFAULT_TARGET_TASK_BYTES, budget // 4), 1))


def _one_aligned_pass(p: Problem, unit: tuple[int, ...], *, balance: bool) -> ArrayPlan:
    """One pass in blocks of whole source and target cells (``unit`` fits the budget).

    ``balance``: cap the tasks so every worker has some (:func:`.balance.balance_one_pass`); off
    when the caller sets the task size.
    """
    stage = p.stage(0, "source", "target", p.read, p.write, p.grow(unit, p.read, p.write, p.sharded), p.sharded)
    if balance:
        stage = balance_one_pass(p, stage, unit)
    strategy = "copy" if p.read == p.write else "one-pass"
    reason = ("a block covering whole source and target chunks fits the budget, so one pass "
              "reads every source chunk once")
    return p.array_plan(None, (stage,), strategy, reason)


def _cheapest_plan(p: Problem, need_aligned: int, target_task_bytes: int | None,
                   target_intermediate_bytes: int) -> ArrayPlan:
    """The plan moving the fewest bytes within the budget when no aligned pass fits.

    Candidates: one pass whose blocks split some source chunks (each task rereads the pieces it
    needs), and two passes through an intermediate array. On a tie the one with fewer passes wins.

    Raises
    ------
    MemoryBudgetError
        If neither fits; the message gives the smallest budget that works.
    """
    candidates: list[_Candidate] = []
    one = best_stage(p, 0, "source", "target", p.read, p.write, p.sharded)
    if one is not None:
        candidates.append(("one-pass-amplified", None, (one,)))
    need_one = p.mem(tuple(min(n, b) for n, b in zip(p.shape, p.write, strict=True)), p.read, p.write, p.sharded)
    two, need_two = plan_two_pass(p, target_intermediate_bytes, target_task_bytes)
    if two is not None:
        candidates.append(("two-pass", two.chunks, two.stages))
    if not candidates:
        raise _no_plan_error(p, min(need_aligned, need_one, need_two))
    # Fewest bytes moved wins; on a tie the earlier (fewer passes) candidate.
    strategy, mm, stages = min(candidates, key=lambda c: moved(c[2]))
    reason = _reason(candidates, strategy, stages, p.nbytes, need_aligned, need_one, need_two)
    alternatives = tuple((c[0], sum(s.bytes_read for s in c[2]), sum(s.bytes_written for s in c[2]))
                         for c in candidates)
    return p.array_plan(mm, _amplification_notes(stages), strategy, reason, alternatives)


def _no_plan_error(p: Problem, smallest: int) -> MemoryBudgetError:
    """The refusal of an array no plan fits, with the smallest budget that works."""
    return _budget_error(
        smallest,
        f"cannot rechunk array {p.name or '<array>'} (shape {p.shape}, {p.dtype or f'{p.itemsize}-byte items'}) "
        f"from chunks {p.source_chunks} to {tuple(p.write)} within max_mem={format_bytes(p.budget)} ({p.budget} "
        f"bytes): one task must hold at least one decoded source chunk and one encoded target "
        f"{'shard' if p.sharded else 'chunk'}. The smallest budget that works is "
        f"{format_bytes(smallest)} ({smallest} bytes); raise max_mem or choose smaller chunks."
    )


def _reason(candidates: Sequence[_Candidate], strategy: str, stages: Sequence[StagePlan], nbytes: int,
            need_aligned: int, need_one: int, need_two: int) -> str:
    """One sentence on why ``strategy`` was chosen, with the bytes each alternative moves."""
    one_c = next((c for c in candidates if c[0] != "two-pass"), None)
    two_c = next((c for c in candidates if c[0] == "two-pass"), None)
    parts = []
    if one_c is not None:
        s = one_c[2][0]
        parts.append(f"one pass reads {format_bytes(s.bytes_read)} ({times(s.read_amplification)}) + writes "
                     f"{format_bytes(s.bytes_written)}")
    else:
        parts.append(f"one pass does not fit (needs {format_bytes(need_one)})")
    if two_c is not None:
        rd = sum(s.bytes_read for s in two_c[2])
        wr = sum(s.bytes_written for s in two_c[2])
        amps = "/".join(times(s.read_amplification) for s in two_c[2])
        parts.append(f"two passes through intermediate chunks {two_c[1]} read {format_bytes(rd)} ({amps}) + "
                     f"write {format_bytes(wr)}")
    else:
        parts.append(f"two passes do not fit (need {format_bytes(need_two)})")
    chose = "one pass" if strategy != "two-pass" else "two passes"
    return (f"no block covering whole source and target chunks fits the budget (needs {format_bytes(need_aligned)}); "
            + "; ".join(parts) + f"; chose {chose}, moving {format_bytes(moved(stages))} "
            f"({moved(stages) / nbytes:.2f}x the array)")


def _amplification_notes(stages: Sequence[StagePlan]) -> tuple[StagePlan, ...]:
    """``stages`` with a note on each stage whose tasks reread chunks that straddle block edges."""
    out = []
    for s in stages:
        if s.read_amplification > 1.0:
            what = "source" if s.read_from == "source" else "intermediate"
            amp_note = (f"{what} chunks straddle block edges, so tasks sharing them each read them "
                        f"(amplification {s.read_amplification:.2f})")
            s = replace(s, note=f"{s.note}; {amp_note}" if s.note else amp_note)
        out.append(s)
    return tuple(out)


def _budget_error(smallest: int, message: str) -> MemoryBudgetError:
    """A :class:`MemoryBudgetError` carrying the smallest budget that works (``.smallest``, bytes)."""
    err = MemoryBudgetError(message)
    err.smallest = smallest  # type: ignore[attr-defined]  # an attribute of this instance only, read by callers
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
            plans.append(_plan_as_chunk_data(a, model, budget, one, err))
    return RechunkPlan(arrays=tuple(plans), max_mem=budget, threads_per_worker=max(1, int(threads_per_worker)),
                       memory_model=model, intermediate_codec=intermediate_codec)


def _plan_as_chunk_data(a: ArraySpec, model: MemoryModel, budget: int, one: Callable[..., ArrayPlan],
                        err: MemoryBudgetError) -> ArrayPlan:
    """Plan ``a`` with ``max_mem`` read as the chunk data one task holds (rechunker's meaning).

    ``one`` plans an array (spec, model, budget); ``err`` is its refusal with the full model, whose
    ``smallest`` keeps the estimated peak. The plan's stages are re-estimated with the full model,
    and ``peak_budget`` is the budget to suggest.

    Raises
    ------
    MemoryBudgetError
        If even the chunk data cannot fit ``budget``.
    """
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
    return replace(planned, budget_meaning=DATA_MEANING, peak_budget=peak)
