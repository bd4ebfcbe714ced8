"""This process's writer threads for the chunks of small appends, started once and reused.

A small append writes its few arrays from the calling thread and these threads together, one array
at a time each (encoding and file writes release the GIL: :func:`run_shared`). Starting and joining
a new thread pool for each append cost about 1.7 ms of a 16 ms append on the development machine
(``benchmarks/bench_append.py``); these threads live as long as the process, idle between appends,
as dask's own default pool does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

__all__ = ["writer_pool", "run_shared"]

T = TypeVar("T")

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


def run_shared(tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``tasks`` on this thread and the writer threads together; their results, in order.

    Each thread takes the next task nobody has taken, so a writer thread that wakes late (1-2 ms
    after its task was handed over, measured here while another process wrote) leaves its share to
    this one instead of holding the append up. After a failure no new task starts; the first
    failure is raised once every started task has ended (nothing is still writing on return).
    """
    tasks = list(tasks)
    results: list[Any] = [None] * len(tasks)
    failures: list[BaseException] = []
    queue = iter(enumerate(tasks))
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                taken = None if failures else next(queue, None)
            if taken is None:
                return
            i, task = taken
            try:
                results[i] = task()
            except BaseException as exc:  # re-raised below, after the other threads stop
                with lock:
                    failures.append(exc)

    helpers = [writer_pool().submit(drain) for _ in range(min(len(tasks) - 1, max(1, (os.cpu_count() or 1) - 1)))]
    try:
        drain()
    finally:
        wait(helpers)
    if failures:
        raise failures[0]
    return results
