"""Keyword checks shared by the public entry points.

Public functions forward ``**compute_kwargs`` to ``dask.compute``, which ignores keywords it does
not know. A typo (``consolidate=False``) or an xarray argument we do not take would then vanish
silently; :func:`check_compute_kwargs` turns that into a ``TypeError`` naming them, as Python does
for any other unknown keyword.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Keywords ``dask.compute`` acts on: its own (``scheduler``, ``num_workers``, ``pool``,
#: ``optimize_graph``, ``traverse``) and the ``distributed.Client.compute`` ones it forwards.
COMPUTE_KWARGS = frozenset({
    "scheduler", "num_workers", "pool", "optimize_graph", "traverse",
    "workers", "allow_other_workers", "resources", "retries", "priority", "fifo_timeout", "actors",
})


def check_compute_kwargs(func: str, kwargs: Mapping[str, Any], extra: frozenset[str] = frozenset()) -> None:
    """Raise ``TypeError`` naming every key of ``kwargs`` that is neither a compute keyword nor in ``extra``.

    Parameters
    ----------
    func
        The public function's name, for the message (``"to_zarr"``).
    kwargs
        The ``**kwargs`` the function received.
    extra
        Further keywords the function itself accepts through ``**kwargs``.
    """
    unknown = sorted(k for k in kwargs if k not in COMPUTE_KWARGS and k not in extra)
    if unknown:
        allowed = ", ".join(sorted(COMPUTE_KWARGS | extra))
        raise TypeError(
            f"{func}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"extra keywords are passed to dask.compute, which takes: {allowed}"
        )
