"""A validated, planned write: what to lay down, what each array receives, what to do last."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np

from parallelzarr.plan.write import VariablePlan, WritePlan, plan_variable
from parallelzarr.store.locks import LockSpec


@dataclass
class ArrayJob:
    """One array to fill: its plan, the (encoded) data, and how to open the target array."""

    plan: VariablePlan
    data: da.Array
    open_target: Callable[[], Any]


@dataclass
class PreparedWrite:
    """Everything a write needs once all input checks have passed.

    ``setup`` lays down metadata (new arrays and groups); ``commit`` runs after all data is written
    (appends publish their new shapes there). Neither runs before the whole input is validated.
    """

    plan: WritePlan
    jobs: list[ArrayJob]
    setup: Callable[[], None] = lambda: None
    commit: Callable[[], Any] | None = None
    locks: LockSpec | None = None
    info: dict[str, Any] = field(default_factory=dict)


def plan_job(
    name: str,
    values: da.Array,
    *,
    shape: Sequence[int],
    dims: Sequence[str],
    dtype: Any,
    chunks: Sequence[int],
    shards: Sequence[int] | None,
    open_target: Callable[[], Any],
    start: Sequence[int] | None = None,
    strategy: str = "auto",
    max_mem: int | None = None,
    lock_backend: str | None = None,
    lock_problem: str | None = None,
    partial_cells_shared: bool = False,
) -> ArrayJob:
    """Plan the write of ``values`` into one array and return the job (values cast and, for the
    ``rechunk`` strategy, rechunked as the plan says)."""
    dtype = np.dtype(dtype)
    if not isinstance(values, da.Array):
        # xarray's encoders compute some variables (object-dtype strings, with a SerializationWarning
        # as xarray itself gives): write what they produced, one block per grid cell.
        values = da.from_array(np.asarray(values), chunks=tuple(shards or chunks) or ())
    if values.dtype != dtype:
        values = values.astype(dtype)
    vplan = plan_variable(
        name,
        shape=shape,
        dims=dims,
        dtype=str(dtype),
        itemsize=dtype.itemsize,
        dask_chunks=values.chunks,
        chunks=chunks,
        shards=shards,
        region_start=start,
        strategy=strategy,
        max_mem=max_mem,
        lock_backend=lock_backend,
        lock_problem=lock_problem,
        partial_cells_shared=partial_cells_shared,
    )
    if vplan.strategy == "rechunk":
        values = values.rechunk(vplan.write_chunks)
    return ArrayJob(plan=vplan, data=values, open_target=open_target)
