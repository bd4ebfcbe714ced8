"""zarr's notices about what parallelzarr does on purpose, kept out of users' output.

zarr-python warns on every consolidated zarr v3 write (consolidation is deliberate here: xarray reads
it) and whenever it lists a group holding our bookkeeping prefixes (``.parallelzarr/``,
``.parallelzarr-rechunk``), which are not zarr nodes. Neither tells a user anything they can act on.
zarr's notice that a data type has no zarr v3 spec yet (fixed-width strings) is real, so it is kept,
with zarr's own category and text (so filters written for zarr's warning still apply), but shown once
per data type and call instead of once per array and per metadata write.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["quiet_zarr_notices", "quietly"]

F = TypeVar("F", bound=Callable[..., Any])

_NOISE = (
    "Consolidated metadata is currently not part",
    r"Object at \.parallelzarr\S* is not recognized",
)


@contextmanager
def quiet_zarr_notices() -> Iterator[None]:
    """Drop zarr's notices about deliberate choices; show each other warning once, under the caller's filters."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for message in _NOISE:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        _reemit(caught)  # after the recording ended, under the caller's filters


def _reemit(caught: list[warnings.WarningMessage]) -> None:
    seen: set[tuple[type, str]] = set()
    for w in caught:
        key = (w.category, str(w.message))
        if key in seen:
            continue
        seen.add(key)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def quietly(func: F) -> F:
    """Run ``func`` under :func:`quiet_zarr_notices` (for the public entry points)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with quiet_zarr_notices():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]  # same signature as func (functools.wraps)
