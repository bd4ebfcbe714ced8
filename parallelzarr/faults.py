"""Test-only fault injection: SIGKILL this process at a named point.

Set ``PARALLELZARR_FAULT`` to a point name (``append:leased``, ``commit:logged``...) or to
``write:K`` to die after the K-th chunk-writing task of this process. Unset, it costs one
dictionary lookup per call.
"""

from __future__ import annotations

import itertools
import os
import signal

_ENV = "PARALLELZARR_FAULT"
_writes = itertools.count(1)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fault_point(name: str) -> None:
    """Kill this process if ``PARALLELZARR_FAULT`` names this point."""
    if os.environ.get(_ENV) == name:
        _die()


def count_write() -> None:
    """Count a finished chunk write; kill the process after the K-th if ``write:K`` is set."""
    want = os.environ.get(_ENV)
    if want and want.startswith("write:") and next(_writes) >= int(want.split(":", 1)[1]):
        _die()
