"""Byte-size parsing and formatting shared by planners and reports."""

from __future__ import annotations

import numbers

import dask.utils
import numpy as np

from parallelzarr.errors import PlanningError


def parse_bytes(value: int | float | str) -> int:
    """Return ``value`` as a number of bytes.

    Parameters
    ----------
    value
        An integer number of bytes or a string such as ``"256MiB"`` or ``"2GB"``.

    Raises
    ------
    PlanningError
        If ``value`` is not a positive size.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real | str):
        raise PlanningError(
            f"max_mem must be a number of bytes or a string like '256MiB' or '2GB', got {type(value).__name__} "
            f"{value!r}"
        )
    try:
        n = int(value) if isinstance(value, numbers.Real) else int(dask.utils.parse_bytes(value))
    except (ValueError, TypeError, OverflowError) as exc:
        raise PlanningError(
            f"cannot read {value!r} as a memory size; give bytes or a string like '256MiB' or '2GB'"
        ) from exc
    if n <= 0:
        raise PlanningError(f"memory size must be positive, got {value!r}")
    return n


def format_bytes(n: int | float) -> str:
    """Format a number of bytes for people (``1.5 GiB``)."""
    return dask.utils.format_bytes(int(n))
