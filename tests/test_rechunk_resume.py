"""Resume: SIGKILL a rechunk mid-run, rerun it, get identical data with fewer tasks run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import zarr

from parallelzarr import rechunk
from parallelzarr.graph.rechunk import MARK

SCRIPT = textwrap.dedent(
    """
    import sys, zarr
    from parallelzarr import rechunk
    src = zarr.open_array(sys.argv[1], mode="r")
    r = rechunk(src, (32, 8, 8), "1.2MB", sys.argv[2], target_task_bytes=1, min_tasks=1)
    r.execute(scheduler="threads", num_workers=1)
    print("finished")
    """
)


def _count_markers(target: Path) -> int:
    """Finished markers: a marker being written is a ``.partial`` file until its rename (not finished yet)."""
    done = target / MARK / "done"
    return sum(not f.endswith(".partial") for _, _, files in os.walk(done) for f in files) if done.exists() else 0


def test_sigkill_then_resume(tmp_path: Path) -> None:
    shape = (32, 256, 256)
    rng = np.random.default_rng(1)
    data = (np.cumsum(rng.normal(size=shape), axis=0)).astype("f4")
    src = zarr.create_array(str(tmp_path / "src.zarr"), shape=shape, chunks=(1, 64, 64), dtype="f4")
    src[...] = data
    target = tmp_path / "tgt.zarr"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)

    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "src.zarr"), str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    killed_at = 0
    while time.monotonic() < deadline and proc.poll() is None:
        killed_at = _count_markers(target)
        if killed_at >= 100:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    # Killed mid-run: chunks and markers exist, but no target metadata yet.
    assert not (target / "zarr.json").exists()
    assert (target / MARK / "plan.json").exists()

    r = rechunk(src, (32, 8, 8), "1.2MB", str(target), target_task_bytes=1, min_tasks=1)
    r.execute(scheduler="threads")
    res = r.result
    assert res.resumed
    assert res.tasks_skipped >= killed_at
    assert res.tasks_run == r.plan.n_tasks - res.tasks_skipped
    assert res.tasks_run < r.plan.n_tasks
    out = zarr.open_array(str(target), mode="r")
    assert out.chunks == (32, 8, 8)
    np.testing.assert_array_equal(out[...], data)
    assert not (target / MARK).exists()
