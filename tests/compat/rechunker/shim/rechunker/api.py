"""``rechunker.api`` routed to parallelzarr: ``rechunk``, ``Rechunked`` and the executor-name check."""

from parallelzarr.rechunk import Rechunked, rechunk

try:  # parallelzarr's check of rechunker's executor names (absent in older parallelzarr)
    from parallelzarr.rechunk.api import resolve_executor as _get_executor
except ImportError:  # pragma: no cover - measured "before" runs
    _get_executor = None

__all__ = ["Rechunked", "rechunk", "_get_executor"]
