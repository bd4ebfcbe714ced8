"""The one place that turns failures during a run into parallelzarr's errors.

An I/O error (``OSError``) once a run has started writing becomes a :class:`StoreWriteError` whose
message says what readers see now and how to recover; the ``OSError`` stays its ``__cause__``.
Errors built from third-party exceptions that may quote credentials (a URL with a key, fsspec
options) are raised with no chained exception at all (``secret_safe=True``), so that no traceback
printed later shows the original text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from parallelzarr.commit.journal import pending_journal
from parallelzarr.errors import StoreWriteError
from parallelzarr.inputs.rechunk_inputs import SourceBlockError, SourceBlockWriteError
from parallelzarr.inputs.stored_range import StoredRangeError, StoredRangeWriteError
from parallelzarr.plan.write import WritePlan

__all__ = ["append_failure", "describe_cause", "failures_as", "part_failure", "rechunk_failure",
           "store_write_failures", "write_failure"]


def describe_cause(exc: BaseException) -> str:
    """An ``OSError`` (or other cause) as one line: its type and message (with the file, if any)."""
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def failures_as(
    make_error: Callable[[BaseException], BaseException | None],
    catch: type[BaseException] | tuple[type[BaseException], ...] = OSError,
    *,
    secret_safe: bool = False,
    cleanup: Callable[[BaseException], None] | None = None,
) -> Iterator[None]:
    """Raise the error ``make_error`` builds for an exception of type ``catch`` raised in the block.

    Parameters
    ----------
    make_error
        Called with the caught exception; returns the exception to raise instead, or ``None`` to
        let the caught one go on unchanged (a library error that already says enough).
    catch
        The exception type(s) mapped; others pass through untouched.
    secret_safe
        Raise the new error with neither ``__cause__`` nor ``__context__``: the caught exception's
        text may hold credentials, and a chained traceback would print it. The new message must
        then be redacted by ``make_error``. Otherwise the caught exception is the ``__cause__``.
    cleanup
        Called with any exception that leaves the block (``KeyboardInterrupt`` too), before it is
        mapped: drop a lease, record an unfinished write.

    Raises
    ------
    BaseException
        What ``make_error`` returned (or the caught exception when it returned ``None``).

    Examples
    --------
    >>> with failures_as(lambda exc: ValueError(f"bad: {describe_cause(exc)}"), KeyError):
    ...     {}["x"]
    Traceback (most recent call last):
    ...
    ValueError: bad: KeyError: 'x'
    """
    try:
        yield
    except catch as exc:
        if cleanup is not None:
            cleanup(exc)
        error = make_error(exc)
        if error is None:
            raise
        if not secret_safe:
            raise error from exc
        try:
            raise error
        finally:
            # Raised inside the handler, the new error got the caught one as __context__: drop it.
            error.__context__ = None
            error.__cause__ = None
    except BaseException as exc:
        if cleanup is not None:
            cleanup(exc)
        raise


def store_write_failures(
    describe: Callable[[str], str],
    *,
    cleanup: Callable[[BaseException], None] | None = None,
) -> AbstractContextManager[None]:
    """Map an ``OSError`` raised in the block (a run writing to its store) to :class:`StoreWriteError`,
    a value found out of its stored range as it was written to a :class:`StoredRangeWriteError` (both),
    and a dask source's block of the wrong shape to a :class:`SourceBlockWriteError` (both).

    Parameters
    ----------
    describe
        Called with the cause as one line (:func:`describe_cause`); returns the whole message: the
        operation, the store, what readers see now and how to recover.
    cleanup
        Called with any exception leaving the block, before it is mapped (see :func:`failures_as`).

    Returns
    -------
    context manager
        Raises ``StoreWriteError(describe(cause))`` from the ``OSError``.
    """
    def error(exc: BaseException) -> BaseException | None:
        if isinstance(exc, StoredRangeError):  # found in a block as it was written; else nothing was written
            return (StoredRangeWriteError(describe(f"{exc.problem} ({exc.fix})"), exc.problem, exc.fix, True)
                    if exc.while_writing else None)
        if isinstance(exc, SourceBlockError):  # a dask source's block, computed as the run read it
            return SourceBlockWriteError(describe(f"{exc.problem} ({exc.fix})"), exc.problem, exc.fix)
        return StoreWriteError(describe(describe_cause(exc)))

    return failures_as(error, (OSError, StoredRangeError, SourceBlockError), cleanup=cleanup)


# --- what readers see after a failed run, per operation -----------------------------------------------------


def write_failure(plan: WritePlan, publish_last: bool) -> Callable[[str], str]:
    """The message of an I/O failure during a write of ``plan``, given its cause.

    ``publish_last``: the write holds back the root metadata until its last chunk (new Datasets).
    """

    def describe(cause: str) -> str:
        if plan.mode == "r+":
            return (
                f"region write into {plan.target} failed: {cause}. The metadata is unchanged; inside the region "
                "each value is either its old or its new value (a region write is not atomic). Fix the cause, "
                "then rerun the same region write."
            )
        if publish_last:
            seen = ("Nothing was published: readers see no dataset there (its root metadata is written after the "
                    "last chunk).")
        else:
            seen = "Chunks not yet written read as fill values."
        return (f"writing {plan.target} failed: {cause}. {seen} Fix the cause, then rerun the write with mode='w' "
                "to replace the unfinished store.")

    return describe


def append_failure(store: Any, description: str) -> Callable[[str], str]:
    """The message of an I/O failure during an append to ``store``, given its cause.

    It depends on whether the append's journal (its commit point) was written when it failed.
    """

    def describe(cause: str) -> str:
        try:
            committing = pending_journal(store) is not None
        except (OSError, ValueError):
            committing = False
        if committing:
            return (
                f"appending to {description} failed while committing: {cause}. Readers of the consolidated "
                "metadata still see the data before this append. Fix the cause, then run "
                "parallelzarr.repair(store) or rerun the same append: either finishes the commit."
            )
        return (
            f"appending to {description} failed: {cause}. Readers still see the data as it was before this "
            "append (its new chunks lie beyond the stored shape, unpublished). Fix the cause, then rerun the "
            "same append; parallelzarr.repair(store) drops the unpublished chunks."
        )

    return describe


def part_failure(i: int, nparts: int, description: str) -> Callable[[str], str]:
    """The message of an I/O failure while writing part ``i`` of ``nparts`` of a job array."""

    def describe(cause: str) -> str:
        return (f"part {i}/{nparts} of the write to {description} failed: {cause}. Nothing is published (finalize "
                "refuses until every part is done). Fix the cause, then rerun the same part: its finished tasks "
                "are skipped.")

    return describe


def rechunk_failure(description: str, publish: str, replaced: Sequence[str]) -> Callable[[str], str]:
    """The message of an I/O failure while rechunking into ``description``, given its cause.

    ``publish``: ``"last"`` (the target's metadata is written after its chunks) or ``"early"``
    (rechunker's way: the target exists from the start). ``replaced``: what an ``overwrite`` deleted.
    """

    def describe(cause: str) -> str:
        seen = ("The target is not published (readers see nothing there: its metadata is written last)"
                if publish == "last" else
                "The target was created by rechunk() (publish='early'): readers see it, with the chunks not yet "
                "written read as the fill value")
        gone = (f" The previous contents at {', '.join(map(repr, replaced))} were deleted first, as overwrite asked."
                if replaced else "")
        return (f"rechunking into {description} failed: {cause}. {seen}, and the source is untouched. Fix the "
                "cause, then rerun the same rechunk: it resumes, skipping the tasks that finished." + gone)

    return describe
