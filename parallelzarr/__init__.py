"""parallelzarr: safe, fast parallel writes, appends and rechunks of Zarr data on Dask."""

from . import errors  # noqa: F401
from .api import plan_write, to_zarr  # noqa: F401
from .io.sources import open_sources  # noqa: F401
from .planning.write import VariablePlan, WritePlan  # noqa: F401
from .rechunk import Rechunked, plan_rechunk, rechunk  # noqa: F401

__version__ = "0.1.0"
from .accessor import register as _register_accessor  # noqa: E402
from .append import AppendResult, append, plan_append, repair  # noqa: F401,E402

_register_accessor()
