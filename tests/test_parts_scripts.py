"""cluster-configs/{slurm,pbs}/job-array.sh run the whole job-array flow (init, parts, finalize).

There is no batch system here: a fake ``sbatch``/``qsub`` on PATH runs each submitted array task
at once, as its own process with ``SLURM_ARRAY_TASK_ID``/``PBS_ARRAY_INDEX`` set, and the
dependent finalize job after them. One task is SIGKILLed midway (as a walltime kill would), so
finalize refuses naming it; rerunning that part and finalize gives the oracle.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

CONFIGS = Path(__file__).resolve().parent.parent / "cluster-configs"
N = 3

# Runs the array tasks one after the other; task FAKE_KILL_INDEX (on the sync scheduler, so its first task
# is marked done) dies at its 2nd chunk write.
SBATCH = r"""#!/bin/bash
array=""; wrap=""
for a in "$@"; do
  case "$a" in --array=*) array=${a#--array=} ;; --wrap=*) wrap=${a#--wrap=} ;; esac
done
echo "$*" >> "$FAKE_LOG"
if [ -n "$array" ]; then
  for i in $(seq ${array%-*} ${array#*-}); do
    if [ "$i" = "${FAKE_KILL_INDEX:-}" ]; then
      SLURM_ARRAY_TASK_ID=$i PARALLELZARR_CLUSTER=sync PARALLELZARR_FAULT=write:2 bash -c "$wrap" > "$FAKE_DIR/task-$i.log" 2>&1 || true
    else
      SLURM_ARRAY_TASK_ID=$i bash -c "$wrap" > "$FAKE_DIR/task-$i.log" 2>&1 || true
    fi
  done
  echo 101
else
  bash -c "$wrap" > "$FAKE_DIR/finalize.log" 2>&1 || true
  echo 102
fi
"""
QSUB = r"""#!/bin/bash
array=""; script="${@: -1}"; prev=""
for a in "$@"; do [ "$prev" = "-J" ] && array=$a; prev=$a; done
echo "$*" >> "$FAKE_LOG"
if [ -n "$array" ]; then
  for i in $(seq ${array%-*} ${array#*-}); do
    if [ "$i" = "${FAKE_KILL_INDEX:-}" ]; then
      PBS_ARRAY_INDEX=$i PARALLELZARR_CLUSTER=sync PARALLELZARR_FAULT=write:2 bash "$script" > "$FAKE_DIR/task-$i.log" 2>&1 || true
    else
      PBS_ARRAY_INDEX=$i bash "$script" > "$FAKE_DIR/task-$i.log" 2>&1 || true
    fi
  done
  echo "201[].pbs"
else
  bash "$script" > "$FAKE_DIR/finalize.log" 2>&1 || true
  echo "202.pbs"
fi
"""


@pytest.mark.parametrize("system", ["slurm", "pbs"])
def test_job_array_script_whole_flow(tmp_path: Path, system: str) -> None:
    rng = np.random.default_rng(3)
    ds = xr.Dataset({"v": (("time", "x"), rng.normal(size=(40, 30)).astype("f4"))}, coords={"time": np.arange(40)})
    src = tmp_path / "src.zarr"
    ds.to_zarr(src, zarr_format=3, consolidated=False, encoding={"v": {"chunks": (4, 30)}})
    fake = tmp_path / "bin"
    fake.mkdir()
    name = "sbatch" if system == "slurm" else "qsub"
    (fake / name).write_text(SBATCH if system == "slurm" else QSUB)
    (fake / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLELZARR_")}
    env.update(PATH=f"{fake}:{Path(sys.executable).parent}:{env['PATH']}", FAKE_LOG=str(tmp_path / "submit.log"),
               FAKE_DIR=str(tmp_path), FAKE_KILL_INDEX="1", PZ_LOGS=str(tmp_path / "logs"))
    out = tmp_path / "out.zarr"
    run = subprocess.run(["bash", str(CONFIGS / system / "job-array.sh"), str(src), str(out), str(N),
                          "--chunks", "time=4"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    submitted = (tmp_path / "submit.log").read_text()
    assert (f"--array=0-{N - 1}" if system == "slurm" else f"-J 0-{N - 1}") in submitted
    assert "afterany:101" in submitted if system == "slurm" else "afterany:201[].pbs" in submitted
    # Task 1 was killed: finalize ran after the array, refused and named it; nothing is published.
    assert "1 of 3 part(s) not done: 1" in (tmp_path / "finalize.log").read_text()
    assert not (out / "zarr.json").exists()

    pz = [str(Path(sys.executable).parent / "parallelzarr")]
    rerun = subprocess.run([*pz, "write", str(src), str(out), "--chunks", "time=4", "--part", f"1/{N}"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "already done by an interrupted run" in rerun.stdout
    fin = subprocess.run([*pz, "finalize", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert fin.returncode == 0, fin.stderr
    xr.testing.assert_equal(xr.open_zarr(str(out)).compute(), ds)
