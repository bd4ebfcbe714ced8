"""Stand-in ``rechunker`` for the compat run: its API is parallelzarr's (see ``pz_rechunker_shim``).

Only the names rechunker's tests reach through ``rechunker``/``rechunker.api`` that parallelzarr has
an equivalent for are here. Tests of rechunker's own algorithm module and executors find no module:
they are counted as not applicable, not hidden.
"""

from . import api
from .api import Rechunked, rechunk

__version__ = "0.5.4+parallelzarr"
__all__ = ["Rechunked", "rechunk", "api"]
