"""Rechunk zarr arrays, groups and xarray Datasets within a memory budget.

``rechunk`` takes rechunker 0.5.4's signature; the planner (:mod:`.plan`) is pure arithmetic,
:mod:`.source` reads metadata, :mod:`.inputs` presents dask arrays and xarray Datasets as
sources, :mod:`.execute` runs the dask graph and :mod:`.api` ties them together with resume
and a metadata-last commit.
"""

from .api import (
    ExecutorError,
    RechunkBudgetWarning,
    Rechunked,
    RechunkResult,
    TargetExistsError,
    plan_rechunk,
    rechunk,
)
from .plan import ArrayPlan, ArraySpec, MemoryModel, RechunkPlan, StagePlan, plan_array

__all__ = [
    "rechunk",
    "plan_rechunk",
    "plan_array",
    "Rechunked",
    "RechunkResult",
    "RechunkPlan",
    "ArrayPlan",
    "ArraySpec",
    "StagePlan",
    "MemoryModel",
    "TargetExistsError",
    "ExecutorError",
    "RechunkBudgetWarning",
]
