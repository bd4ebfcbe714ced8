"""Test-only fault injection: SIGKILL this process at a named point.

Set ``PARALLELZARR_FAULT`` to a point name (``append:leased``, ``commit:logged``...) or to
``write:K`` to die after the K-th chunk-writing task of this process. With
``PARALLELZARR_FAULT_ONCE`` naming a file, only the first process to reach the point dies (the file
records it), so a restarted worker carries on. ``PARALLELZARR_PAUSE=point:seconds`` sleeps at a
point instead (to hold a lease open in tests). Unset, each costs a dictionary lookup per call.
"""

from __future__ import annotations

import itertools
import os
import signal
import time

_ENV = "PARALLELZARR_FAULT"
_writes = itertools.count(1)


def _die() -> None:
    once = os.environ.get("PARALLELZARR_FAULT_ONCE")
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def fault_point(name: str) -> None:
    """Kill this process if ``PARALLELZARR_FAULT`` names this point (or pause if asked to)."""
    if os.environ.get(_ENV) == name:
        _die()
    pause = os.environ.get("PARALLELZARR_PAUSE")
    if pause and pause.rsplit(":", 1)[0] == name:
        time.sleep(float(pause.rsplit(":", 1)[1]))


def count_write() -> None:
    """Count a finished chunk write; kill the process after the K-th if ``write:K`` is set."""
    want = os.environ.get(_ENV)
    if want and want.startswith("write:") and next(_writes) >= int(want.split(":", 1)[1]):
        _die()
