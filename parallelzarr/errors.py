"""The documented error types of parallelzarr.

Every error raised on bad input derives from :class:`ParallelZarrError` and is raised
*before* any byte is written to the target store.
"""

from __future__ import annotations

__all__ = [
    "ParallelZarrError",
    "PlanningError",
    "ChunkSpecError",
    "EncodingError",
    "RegionError",
    "ModeError",
    "SchemaMismatchError",
    "StrategyError",
    "MemoryBudgetError",
    "AppendError",
    "AlreadyAppliedError",
    "LeaseError",
    "StoreError",
]


class ParallelZarrError(Exception):
    """Base class of every error parallelzarr raises on purpose."""


class PlanningError(ParallelZarrError, ValueError):
    """The requested operation cannot be planned with the given inputs."""


class ChunkSpecError(PlanningError):
    """A chunk or shard specification is malformed or inconsistent with the array."""


class EncodingError(PlanningError):
    """An ``encoding`` entry is unknown, malformed or conflicts with the stored one."""


class RegionError(PlanningError):
    """A ``region`` is out of bounds, has a step, or names unknown dimensions."""


class ModeError(PlanningError):
    """The ``mode`` conflicts with what the target store holds."""


class SchemaMismatchError(PlanningError):
    """Dimensions, shapes or dtypes of the data disagree with the stored arrays."""


class StrategyError(PlanningError):
    """The requested write strategy cannot work on this store or scheduler."""


class MemoryBudgetError(PlanningError):
    """The memory budget cannot be kept by any plan."""


class AppendError(PlanningError):
    """An append is invalid: wrong coordinate, overlap, or inconsistent variables."""


class AlreadyAppliedError(AppendError):
    """Raised internally when an append with the same id was already committed."""


class LeaseError(ParallelZarrError, RuntimeError):
    """Another process holds the store's append lease (or a stale one remains)."""


class StoreError(ParallelZarrError, RuntimeError):
    """The target store cannot be opened or written as requested."""
