"""parallelzarr: safe, fast parallel writes, appends and rechunks of Zarr data on Dask."""

from parallelzarr import errors  # noqa: F401
from parallelzarr.entry.rechunk import Rechunked, plan_rechunk, rechunk  # noqa: F401
from parallelzarr.entry.write import plan_write, to_zarr  # noqa: F401
from parallelzarr.inputs.sources import open_sources  # noqa: F401
from parallelzarr.plan.write import VariablePlan, WritePlan  # noqa: F401

__version__ = "0.1.0"
from parallelzarr.entry.accessor import register as _register_accessor  # noqa: E402
from parallelzarr.entry.append import AppendResult, append, plan_append, repair  # noqa: F401,E402
from parallelzarr.reports.plot import register as _register_plots  # noqa: E402

_register_accessor()
_register_plots()  # plan.plot(): the plan layer itself imports no drawing code
