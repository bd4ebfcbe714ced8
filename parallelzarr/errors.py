"""The documented error types of parallelzarr.

Every error raised on bad input derives from :class:`ParallelZarrError` and is raised
*before* any byte is written to the target store. The one error raised *during* a run,
:class:`StoreWriteError`, says what readers see after it and how to recover.
"""

from __future__ import annotations

__all__ = [
    "ParallelZarrError",
    "PlanningError",
    "ChunkSpecError",
    "EncodingError",
    "EncodingTypeError",
    "EncodingKeyError",
    "EncodingNotImplementedError",
    "encoding_error",
    "RegionError",
    "RegionTypeError",
    "RegionKeyError",
    "InvalidNameError",
    "InvalidNameTypeError",
    "StoreOverlapError",
    "ModeError",
    "StoreExistsError",
    "SchemaMismatchError",
    "DataTypeError",
    "StrategyError",
    "MemoryBudgetError",
    "AppendError",
    "RepeatedLabelsError",
    "AlreadyAppliedError",
    "LeaseError",
    "StoreError",
    "StoreWriteError",
]


class ParallelZarrError(Exception):
    """Base class of every error parallelzarr raises on purpose."""


class PlanningError(ParallelZarrError, ValueError):
    """The requested operation cannot be planned with the given inputs."""


class ChunkSpecError(PlanningError):
    """A chunk or shard specification is malformed or inconsistent with the array."""


class EncodingError(PlanningError):
    """An ``encoding`` entry is unknown, malformed or conflicts with the stored one."""


class EncodingTypeError(EncodingError, TypeError):
    """An encoding xarray or zarr refuses with ``TypeError``; still a ``TypeError`` to callers."""


class EncodingKeyError(EncodingError, KeyError):
    """An encoding names a variable the Dataset does not have; a ``KeyError`` too, as in xarray."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class EncodingNotImplementedError(EncodingError, NotImplementedError):
    """A dataset feature xarray cannot yet store (a MultiIndex...); a ``NotImplementedError`` too."""


def encoding_error(message: str, cause: BaseException) -> EncodingError:
    """The :class:`EncodingError` for a refusal by xarray or zarr, of the built-in type ``cause`` has.

    Code written for xarray catches its ``TypeError``/``NotImplementedError``; wrapping them in a
    plain ``ValueError`` subclass would slip past those ``except`` clauses.
    """
    if isinstance(cause, NotImplementedError):
        return EncodingNotImplementedError(message)
    if isinstance(cause, TypeError):
        return EncodingTypeError(message)
    return EncodingError(message)


class RegionError(PlanningError):
    """A ``region`` is out of bounds, has a step, or names unknown dimensions."""


class RegionTypeError(RegionError, TypeError):
    """A ``region`` of the wrong type (not a dict, a value not a slice); a ``TypeError`` too, as in xarray."""


class RegionKeyError(RegionError, KeyError):
    """``region="auto"``: labels of the data are not in the store; a ``KeyError`` too, as in xarray."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class InvalidNameError(PlanningError):
    """A variable, coordinate, array, group or store path name would not stay inside the store.

    Names are single path components: not empty, not ``.`` or ``..``, without ``/``, ``\\`` or NUL,
    and not a zarr metadata document name (``zarr.json``, ``.zarray``...) or parallelzarr's own
    bookkeeping prefix (``.parallelzarr``).
    """


class InvalidNameTypeError(InvalidNameError, TypeError):
    """A name that is not a string at all; a ``TypeError`` too, as xarray raises for it."""


class StoreOverlapError(PlanningError):
    """Two stores of one operation (source, target, temporary) are the same or nested in each other."""


class ModeError(PlanningError):
    """The ``mode`` conflicts with what the target store holds."""


class StoreExistsError(ModeError, FileExistsError):
    """``mode="w-"`` onto a store that holds data; a ``FileExistsError`` too, as xarray's ``to_zarr`` raises."""


class SchemaMismatchError(PlanningError):
    """Dimensions, shapes or dtypes of the data disagree with the stored arrays."""


class DataTypeError(PlanningError, TypeError):
    """The data to write is not an array or Dataset (a file name, say); a ``TypeError`` too."""


class StrategyError(PlanningError):
    """The requested write strategy cannot work on this store or scheduler."""


class MemoryBudgetError(PlanningError):
    """The memory budget cannot be kept by any plan."""


class AppendError(PlanningError):
    """An append is invalid: wrong coordinate, overlap, or inconsistent variables."""


class RepeatedLabelsError(AppendError):
    """Appended labels along the append dimension are already stored (and repeats are refused)."""


class AlreadyAppliedError(AppendError):
    """Raised internally when an append with the same id was already committed."""


class LeaseError(ParallelZarrError, RuntimeError):
    """Another process holds the store's append lease (or a stale one remains)."""


class StoreError(ParallelZarrError, RuntimeError):
    """The target store cannot be opened or written as requested."""


class StoreWriteError(StoreError):
    """An I/O error (a failing store, a full disk) interrupted a run that had started writing.

    The message names the operation, the store, the cause (the ``OSError``, kept as ``__cause__``),
    what readers see now and the recovery step: rerun the write (``mode="w"`` for a new store), rerun
    the append or run :func:`parallelzarr.repair`, or rerun the rechunk to resume it.
    """
