"""benchmarks/plot_results.py turns benchmark JSON into bar charts of the ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_plot_results_draws_ratios(tmp_path):
    rows = [
        {"case": "aligned", "contender": "parallelzarr", "vs_peer": 1.02, "vs_floor": 0.9},
        {"case": "aligned", "contender": "xarray", "vs_peer": 1.0, "vs_floor": 0.88},
        {"case": "small appends", "contender": "parallelzarr", "ratio_vs_xarray": 1.5},
    ]
    src = tmp_path / "bench.json"
    src.write_text(json.dumps({"rows": rows}))
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"rows": [{"case": "x"}]}))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plot_results.py"), str(src), str(empty)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    png = tmp_path / "bench.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no ratios found" in out.stdout and not (tmp_path / "empty.png").exists()
