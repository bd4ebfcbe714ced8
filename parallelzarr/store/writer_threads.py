"""This process's writer threads for the chunks of small appends, started once and reused.

A small append writes its few chunks from the calling process, one array per thread (encoding and
file writes release the GIL). Starting and joining a new thread pool for each append cost about
1.7 ms of a 16 ms append on the development machine (``benchmarks/bench_append.py``); these
threads live as long as the process, idle between appends, as dask's own default pool does.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["writer_pool"]

#: The pool of each process id: one inherited through fork has no threads in the child.
_POOLS: dict[int, ThreadPoolExecutor] = {}


def writer_pool() -> ThreadPoolExecutor:
    """The writer threads of this process (one per core), made on first use.

    Tasks given to it must not wait for other tasks of it (nothing here submits from inside).
    """
    pid = os.getpid()
    pool = _POOLS.get(pid)
    if pool is None:
        made = ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="parallelzarr-writer")
        for other in [p for p in _POOLS if p != pid]:
            _POOLS.pop(other, None)  # a parent's, inherited through fork: its threads are not here
        pool = _POOLS.setdefault(pid, made)  # atomic: of two threads racing here, one pool is kept
        if pool is not made:
            made.shutdown(wait=False)
    return pool
