"""Task sizes that give every worker work: a cap on one-pass tasks where it moves no more bytes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from parallelzarr.plan.rechunk.plans import StagePlan, times
from parallelzarr.plan.rechunk.stages import Problem
from parallelzarr.units import format_bytes

__all__ = ["DEFAULT_TARGET_TASK_BYTES", "BALANCE_TASKS", "BALANCE_MIN_BYTES", "balance_bytes", "balance_one_pass"]

DEFAULT_TARGET_TASK_BYTES = 64 * 2**20
#: Two-pass plans first try intermediates whose stage tasks are at most about 64 MB (or 1/BALANCE_TASKS
#: of the array, not below BALANCE_MIN_BYTES), so every stage has enough tasks for the workers: at
#: 256 MB a larger intermediate made stage 0 five 200 MB tasks on two threads.
BALANCE_TASKS = 8
BALANCE_MIN_BYTES = 4 * 2**20


def balance_bytes(nbytes: int, target_task_bytes: int | None = None) -> int:
    """Task size that gives every worker work: about 64 MB, or 1/BALANCE_TASKS of the array (not below 4 MiB)."""
    return min(target_task_bytes or DEFAULT_TARGET_TASK_BYTES, max(nbytes // BALANCE_TASKS, BALANCE_MIN_BYTES))


def balance_one_pass(p: Problem, stage: StagePlan, unit: Sequence[int]) -> StagePlan:
    """Cap an aligned one-pass stage's tasks at :func:`balance_bytes` where that moves no more bytes.

    Aligned blocks read every source chunk once at any multiple of ``unit``, so they are capped freely
    (the plan says so). A ``unit`` above the cap cannot shrink without splitting source chunks, which
    every task sharing them then decodes (more bytes moved): the stage keeps its few large tasks and
    its note gives the bytes the balanced alternatives would move.
    """
    shape, r, w, sharded = p.shape, p.read, p.write, p.sharded
    nbytes = p.nbytes
    balance = balance_bytes(nbytes)
    moved = stage.bytes_read + stage.bytes_written

    def block_bytes(b: Sequence[int]) -> int:
        return math.prod(min(x, n) for x, n in zip(b, shape, strict=True)) * p.itemsize

    if block_bytes(stage.block) > balance and block_bytes(unit) <= balance:
        block = p.grow(unit, r, w, sharded, min(p.target_bytes, balance))
        capped = p.stage(0, "source", "target", r, w, block, sharded)
        why = (f"tasks capped at {format_bytes(balance)} (about 64 MB, or 1/{BALANCE_TASKS} of the array) so "
               "each stage has tasks for every worker; aligned blocks read every source chunk once at any size")
        return replace(capped, note=f"{capped.note}; {why}" if capped.note else why)
    if block_bytes(unit) <= balance or stage.n_tasks >= BALANCE_TASKS:
        return stage
    # Too few tasks, and the smallest aligned block is above the cap: try blocks of whole target cells.
    least = tuple(min(n, b) for n, b in zip(shape, w, strict=True))
    alt = None
    if block_bytes(least) <= balance and p.fits(r, w, sharded)(least):
        block = p.grow(least, r, w, sharded, balance)
        alt = p.stage(0, "source", "target", r, w, block, sharded)
        if alt.bytes_read + alt.bytes_written <= moved:
            return alt
    why = (f"{stage.n_tasks} task(s) of {format_bytes(block_bytes(stage.block))}: the smallest block covering whole "
           f"source and target chunks is {format_bytes(block_bytes(unit))}, above {format_bytes(balance)} (about "
           f"64 MB, or 1/{BALANCE_TASKS} of the array), so fewer tasks than workers may run at once; ")
    if alt is not None:
        why += (f"tasks of at most {format_bytes(balance)} would split source chunks and move "
                f"{format_bytes(alt.bytes_read + alt.bytes_written)} ({times(alt.read_amplification)} read)")
    else:
        why += f"tasks of at most {format_bytes(balance)} would have to split target chunks"
    why += f", and two passes at least {format_bytes(4 * nbytes)}, against this plan's {format_bytes(moved)}"
    return replace(stage, note=f"{stage.note}; {why}" if stage.note else why)
