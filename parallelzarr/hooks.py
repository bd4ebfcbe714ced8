"""Hook points production code calls at moments tests want to interrupt; no-ops unless armed.

A write calls :func:`fault_point` at each step of its commit protocol (``append:leased``,
``commit:logged``...) and :func:`chunk_written` after each chunk-writing task. Unarmed, each is an
``os.environ`` membership test or two and returns. Armed, they hand over to
:mod:`parallelzarr.testing`, which holds the fault logic and its state (the write counter) and is
imported only then, so production modules never import test code.

The hooks read the environment, not module state, so they arm the same way in this process, in a
subprocess and in a dask worker process: the variables are those :mod:`parallelzarr.testing`
documents (``PARALLELZARR_FAULT``, ``PARALLELZARR_PAUSE``), set directly or by
:func:`parallelzarr.testing.arm`.

This module is in the base layer: it imports nothing from parallelzarr at import time.
"""

from __future__ import annotations

import os

__all__ = ["fault_point", "chunk_written"]

# The variables parallelzarr.testing documents and reads (spelled out here rather than imported, so
# that this module loads nothing of the test code while unarmed).
_FAULT = "PARALLELZARR_FAULT"
_PAUSE = "PARALLELZARR_PAUSE"


def fault_point(name: str) -> None:
    """Mark the named point of a write; a test may kill or pause this process here.

    Parameters
    ----------
    name
        The point, e.g. ``"append:leased"``; :mod:`parallelzarr.testing` lists how to arm it.
    """
    if _FAULT in os.environ or _PAUSE in os.environ:
        from parallelzarr import testing

        testing.fault_point(name)


def chunk_written() -> None:
    """Mark one finished chunk-writing task; a test may kill this process after the K-th.

    Called in every chunk-writing task, so unarmed it costs one ``os.environ`` membership test.
    """
    if _FAULT in os.environ:
        from parallelzarr import testing

        testing.count_write()
