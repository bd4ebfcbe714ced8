"""Batch clusters fail fast (issue 14): no sbatch, a rejected job, no worker in time -> exit 1, no hang.

A fake ``sbatch`` on PATH stands in for the batch system (there is none here); the cluster, its
scheduler and the CLI are real, run as a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("dask_jobqueue")

CONFIGS = Path(__file__).resolve().parent.parent / "cluster-configs"

REJECT = """#!/bin/sh
echo "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified" >&2
exit 1
"""
ACCEPT = """#!/bin/sh
echo "Submitted batch job 4242"
"""
SCANCEL = "#!/bin/sh\nexit 0\n"


def _bin(tmp_path: Path, sbatch: str | None) -> str:
    """A PATH whose only batch commands are the fakes (the real PATH minus any sbatch)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    if sbatch is not None:
        for name, text in (("sbatch", sbatch), ("scancel", SCANCEL), ("squeue", SCANCEL)):
            (fake / name).write_text(text)
            (fake / name).chmod(0o755)
    python_dir = os.path.dirname(sys.executable)
    return os.pathsep.join([str(fake), python_dir, "/usr/bin", "/bin"])


def _config(tmp_path: Path, timeout: float = 600) -> Path:
    text = (CONFIGS / "slurm" / "jobqueue.yaml").read_text()
    text = re.sub(r"worker_timeout: \S+", f"worker_timeout: {timeout}", text)
    text = text.replace("local_directory: $TMPDIR", f"local_directory: {tmp_path}")
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text(text + "  scheduler_options: {host: 127.0.0.1, dashboard_address: '127.0.0.1:0'}\n")
    return cfg


def _run(tmp_path: Path, sbatch: str | None, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float, Path]:
    src = tmp_path / "in.zarr"
    xr.Dataset({"t": (("x",), np.arange(10.0))}).to_zarr(src, zarr_format=3, consolidated=True)
    out = tmp_path / "out.zarr"
    env = {**os.environ, "PATH": _bin(tmp_path, sbatch)}
    cmd = [sys.executable, "-m", "parallelzarr.cli", "write", str(src), str(out), "--cluster", str(_config(tmp_path, timeout))]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - start, out


def test_missing_sbatch_fails_at_once(tmp_path):
    proc, seconds, out = _run(tmp_path, None)
    assert proc.returncode == 1, proc.stderr
    assert "'sbatch' is not on PATH" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 30 and not out.exists()


def test_rejected_job_fails_within_seconds(tmp_path):
    proc, seconds, out = _run(tmp_path, REJECT)
    assert proc.returncode == 1, proc.stderr
    assert "job submission failed" in proc.stderr and "Invalid account" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 45, f"took {seconds:.1f} s"
    assert not out.exists()


def test_job_that_never_starts_times_out(tmp_path):
    proc, seconds, out = _run(tmp_path, ACCEPT, timeout=3)
    assert proc.returncode == 1, proc.stderr
    assert "no worker started within 3 s" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 45, f"took {seconds:.1f} s"
    assert not out.exists()


def test_rendered_scripts_have_one_job_name_and_absolute_paths(tmp_path, monkeypatch):
    from parallelzarr.cluster import cluster_from_config

    monkeypatch.chdir(tmp_path)
    for kind, directive in (("slurm", "#SBATCH -J"), ("pbs", "#PBS -N")):
        cluster = cluster_from_config(CONFIGS / kind / "jobqueue.yaml", scheduler_options={"host": "127.0.0.1"})
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
        assert script.count(directive) == 1 and "job-name" not in script, script
        assert "source .venv" not in script and "activate" not in script
        assert f"{sys.executable} -m distributed" in script  # the scheduler's own, absolute Python
        for line in script.splitlines():
            if line.startswith(("#SBATCH -e", "#SBATCH -o", "#PBS -e", "#PBS -o")):
                assert line.split()[-1].startswith("/"), line
