"""``rechunker.api`` routed to parallelzarr: ``rechunk``, ``Rechunked`` and the executor-name check.

By default ``rechunk`` *is* :func:`parallelzarr.rechunk`. Two diagnostic settings (never used for the
compat figures) show what the documented differences hide: ``PZ_SHIM_PUBLISH=early`` passes
``publish="early"`` (the target is created by ``rechunk()``, as rechunker does) and
``PZ_SHIM_MAX_MEM_SCALE=K`` multiplies budgets of 1 MiB and more by K (a budget parallelzarr's memory
estimate keeps, where rechunker's tests give about one chunk's worth).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from dask.utils import parse_bytes

from parallelzarr.entry.rechunk import Rechunked
from parallelzarr.entry.rechunk import rechunk as _pz_rechunk

try:  # parallelzarr's check of rechunker's executor names (absent in older parallelzarr)
    from parallelzarr.entry.rechunk import resolve_executor as _get_executor
except ImportError:  # pragma: no cover - measured "before" runs
    _get_executor = None

_PUBLISH = os.environ.get("PZ_SHIM_PUBLISH")
_SCALE = float(os.environ.get("PZ_SHIM_MAX_MEM_SCALE", "1"))


def _diagnostic(func: Any) -> Any:
    @functools.wraps(func)
    def rechunk(source: Any, target_chunks: Any, max_mem: Any, *args: Any, **kwargs: Any) -> Any:
        if _SCALE != 1 and parse_bytes(max_mem) >= 2**20:
            max_mem = int(parse_bytes(max_mem) * _SCALE)
        if _PUBLISH:
            kwargs["publish"] = _PUBLISH
        return func(source, target_chunks, max_mem, *args, **kwargs)

    return rechunk


rechunk = _diagnostic(_pz_rechunk) if (_PUBLISH or _SCALE != 1) else _pz_rechunk

__all__ = ["Rechunked", "rechunk", "_get_executor"]
