"""Who holds a lease or runs a write: the holder record (host, pid, its start time) and liveness.

A holder is written into the append lease and into a new store's unpublished-write marker. Liveness
is only decidable on the holder's own host; a reused pid is told apart by the process start time.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any


def process_start(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the lease holder still runs: ``True``/``False`` on this host, ``None`` elsewhere."""
    if holder.get("host") != socket.gethostname() or holder.get("operation") == "job-array append":
        return None  # a job array's lease outlives the init process: only finalize releases it
    pid = int(holder.get("pid", -1))
    started = process_start(pid)
    if started is None:
        return False
    # A reused pid has a different start time.
    return abs(started - float(holder.get("pid_started", started))) < 1.0


def describe_holder(holder: dict[str, Any]) -> str:
    age = time.time() - float(holder.get("time", time.time()))
    text = f"{holder.get('operation', 'append')} by pid {holder.get('pid')} on {holder.get('host')}, taken {age:.0f}s ago"
    if holder.get("operation") == "job-array append":  # held from init to finalize by no one process
        text += "; finish it with `parallelzarr finalize`, or give it up with `parallelzarr finalize --abort`"
    return text


def this_holder(operation: str) -> dict[str, Any]:
    """Who is doing ``operation``: host, process (with its start time, against pid reuse), time."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_started": process_start(os.getpid()),
        "time": time.time(),
        "operation": operation,
    }


def held_by_this_process(holder: dict[str, Any]) -> bool:
    """Whether ``holder`` (a lease or marker) names this very process."""
    return holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid()

