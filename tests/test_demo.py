"""The demo runs end to end (tiny size, real worker processes) and verifies what it wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    proc = subprocess.run(
        [sys.executable, "-m", "parallelzarr.demo", "--size", "20MB", "--workers", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verified:" in proc.stdout, proc.stdout
    assert "MISMATCH" not in proc.stdout
    assert "dashboard: http://127.0.0.1:" in proc.stdout
    assert "gather-edges" in proc.stdout  # the plan is printed and handles the misalignment
    assert (out / "demo.zarr").is_dir()
