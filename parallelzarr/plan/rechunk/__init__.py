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

Modules, one job each (this package re-exports their public names):

- :mod:`.plans`: the plan as plain frozen data (:class:`ArraySpec` in, :class:`RechunkPlan`,
  :class:`ArrayPlan` and :class:`StagePlan` out) and how it prints.
- :mod:`.memory`: the memory model (:class:`MemoryModel`, :func:`task_memory`) and the two meanings
  of ``max_mem``.
- :mod:`.stages`: one pass laid out for a task block, blocks grown within the budget, the cheapest stage.
- :mod:`.balance`: task sizes that give every worker work.
- :mod:`.two_pass`: the intermediate chunks of a two-pass plan.
- :mod:`.planner`: :func:`plan_array` and :func:`plan_rechunk`.

Target chunk requests are parsed by :func:`parallelzarr.plan.chunk_spec.normalize_chunks` (the rule
set writes share); grid-aligned pieces of a region by :func:`parallelzarr.plan.grid.split_region`.
"""

from parallelzarr.plan.chunk_spec import normalize_chunks
from parallelzarr.plan.grid import split_region
from parallelzarr.plan.rechunk.balance import BALANCE_MIN_BYTES, BALANCE_TASKS, DEFAULT_TARGET_TASK_BYTES
from parallelzarr.plan.rechunk.memory import DATA_MEANING, PEAK_MEANING, MemoryModel, task_memory
from parallelzarr.plan.rechunk.planner import (
    DEFAULT_MAX_TASKS,
    DEFAULT_MIN_TASKS,
    DEFAULT_TARGET_INTERMEDIATE_BYTES,
    estimate_peaks,
    plan_array,
    plan_rechunk,
)
from parallelzarr.plan.rechunk.plans import (
    AMPLIFICATION_WARNING,
    ArrayPlan,
    ArraySpec,
    RechunkPlan,
    StagePlan,
)
from parallelzarr.plan.rechunk.two_pass import SMALL_INTERMEDIATE_BYTES

__all__ = [
    "MemoryModel",
    "StagePlan",
    "ArrayPlan",
    "ArraySpec",
    "RechunkPlan",
    "normalize_chunks",
    "plan_array",
    "plan_rechunk",
    "estimate_peaks",
    "task_memory",
    "split_region",
    "PEAK_MEANING",
    "DATA_MEANING",
    "DEFAULT_MAX_TASKS",
    "DEFAULT_MIN_TASKS",
    "DEFAULT_TARGET_TASK_BYTES",
    "DEFAULT_TARGET_INTERMEDIATE_BYTES",
    "SMALL_INTERMEDIATE_BYTES",
    "BALANCE_TASKS",
    "BALANCE_MIN_BYTES",
    "AMPLIFICATION_WARNING",
]
