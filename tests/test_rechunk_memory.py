"""Process-level memory: an out-of-core rechunk stays near the plan's per-worker estimate."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import zarr
from conftest import SCALE

CHILD = textwrap.dedent(
    """
    import json, sys, psutil, zarr
    from parallelzarr import rechunk
    src = zarr.open_array(sys.argv[1], mode="r")
    r = rechunk(src, (src.shape[0], 20, 20), int(sys.argv[3]), sys.argv[2], threads_per_worker=2)
    base = psutil.Process().memory_info().rss
    print(json.dumps({"base": base, "worker_memory": r.plan.worker_memory, "passes": r.plan.passes}),
          flush=True)
    r.execute(scheduler="threads", num_workers=2)
    print(json.dumps({"done": True}), flush=True)
    """
)


@pytest.mark.slow
def test_out_of_core_rss_within_plan(tmp_path: Path) -> None:
    nt = 100 if SCALE == "small" else 400
    shape = (nt, 400, 400)
    nbytes = math.prod(shape) * 4
    src = zarr.create_array(str(tmp_path / "src.zarr"), shape=shape, chunks=(5, 200, 200), dtype="f4")
    rng = np.random.default_rng(0)
    for t in range(0, nt, 5):
        src[t:t + 5] = rng.normal(280, 5, (5, 400, 400)).astype("f4")
    budget = nbytes // 8 // 2  # per task; two threads: the process gets 1/8 of the array
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "src.zarr"), str(tmp_path / "t.zarr"),
                             str(budget)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                peak = max(peak, p.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=300)
    stop.set()
    sampler.join()
    assert proc.returncode == 0, err[-3000:]
    facts = json.loads(out.splitlines()[0])
    assert facts["passes"] == 2
    grown = peak - facts["base"]
    print(f"RSS grew {grown / 2**20:.1f} MiB; plan per worker {facts['worker_memory'] / 2**20:.1f} MiB")
    # RSS also holds allocator slack and zarr's thread pools: allow a fixed 64 MiB on top.
    assert grown <= facts["worker_memory"] + 64 * 2**20, (grown, facts)
    assert grown < nbytes / 2  # truly out of core (the whole array never sits in memory)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "t.zarr"))[:, :7], src[:, :7])
