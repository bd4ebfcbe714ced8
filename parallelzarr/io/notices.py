"""zarr's notices about what parallelzarr does on purpose, kept out of users' output.

zarr-python warns on every consolidated zarr v3 write (consolidation is deliberate here: xarray reads
it) and whenever it lists a group holding our bookkeeping prefixes (``.parallelzarr/``,
``.parallelzarr-rechunk``), which are not zarr nodes. Neither tells a user anything they can act on.
zarr's fixed-width string notice is real (other zarr libraries may not read such arrays), so it is
kept, but said once per call, naming the variables, instead of once per array and per write.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["FixedWidthStringWarning", "quiet_zarr_notices", "quietly"]

F = TypeVar("F", bound=Callable[..., Any])

_NOISE = (
    "Consolidated metadata is currently not part",
    r"Object at \.parallelzarr\S* is not recognized",
)
_FIXED = re.compile(r"The data type \((FixedLength\w*)\(length=(\d+)")


class FixedWidthStringWarning(UserWarning):
    """Fixed-width strings were stored in zarr v3, whose spec has no such type yet."""


@contextmanager
def quiet_zarr_notices() -> Iterator[None]:
    """Drop zarr's notices about deliberate choices; collapse its fixed-width string notices into one."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            for message in _NOISE:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        _reemit(caught)  # after the recording ended, under the caller's filters


def _reemit(caught: list[warnings.WarningMessage]) -> None:
    """Show what was caught under the caller's own filters, the fixed-width notices as one."""
    fixed: set[str] = set()
    for w in caught:
        match = _FIXED.search(str(w.message))
        if match:
            fixed.add(f"{match.group(1)}({match.group(2)})")
            continue
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if fixed:
        warnings.warn(
            f"fixed-width strings ({', '.join(sorted(fixed))}) are stored with zarr v3's provisional string type: "
            "zarr-python and xarray read them back, other zarr libraries may not. For the widest readability "
            "write zarr_format=2, or store them as variable-length strings (encoding={'VAR': {'dtype': str}}).",
            FixedWidthStringWarning,
            stacklevel=5,
        )


def quietly(func: F) -> F:
    """Run ``func`` under :func:`quiet_zarr_notices` (for the public entry points)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with quiet_zarr_notices():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
