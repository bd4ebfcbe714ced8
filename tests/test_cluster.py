"""--cluster resolution, cluster config files and the shipped HPC scripts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import dask
import dask.array as da
import pytest

from parallelzarr.cluster import (
    ClusterSpecError,
    cluster_from_config,
    default_local_size,
    load_cluster_config,
    resolve_cluster,
)
from parallelzarr.errors import ParallelZarrError
from parallelzarr.reports.progress import compute_kwargs, performance_report, progress

CONFIGS = Path(__file__).resolve().parent.parent / "cluster-configs"
LOCALHOST = {"scheduler_options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}}


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # dask-jobqueue creates log_directory relative to the working directory.
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_threads_and_sync_yield_no_client() -> None:
    for spec in ("threads", "sync"):
        with resolve_cluster(spec) as client:
            assert client is None
    assert compute_kwargs(None, 3) == {"scheduler": "threads", "num_workers": 3}
    assert compute_kwargs(None, single=True) == {"scheduler": "sync"}


def test_default_local_size() -> None:
    n, t = default_local_size()
    assert n >= 1 and t >= 1
    assert default_local_size(3, 2) == (3, 2)
    assert default_local_size(1)[0] == 1


def test_local_cluster_runs_and_reports(tmp_path: Path) -> None:
    messages: list[str] = []
    x = da.ones((200, 200), chunks=50)
    with resolve_cluster("local", workers=1, threads_per_worker=1, echo=messages.append) as client:
        assert client is not None
        assert len(client.scheduler_info()["workers"]) == 1
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        report = tmp_path / "r.html"
        with performance_report(report, client), progress(True, client) as kw:
            assert float(dask.compute(x.sum(), **kw)[0]) == 40000
        assert report.stat().st_size > 0
        address = client.scheduler.address
        # The same scheduler, reached by address and by scheduler file.
        with resolve_cluster(address, echo=None) as c2:
            assert c2.submit(lambda: 41 + 1).result() == 42
        sched = tmp_path / "scheduler.json"
        sched.write_text(json.dumps({"address": address, "type": "Scheduler"}))
        with resolve_cluster(str(sched), echo=None) as c3:
            assert c3.scheduler.address == address
    assert any("dashboard" in m for m in messages)


def test_performance_report_needs_a_client(tmp_path: Path) -> None:
    with performance_report(None):
        pass
    with pytest.raises(RuntimeError, match="distributed"):
        with performance_report(tmp_path / "r.html", None):
            pass


def test_bad_specs() -> None:
    for spec, match in [
        ("nonsense", "cannot understand"),
        ("missing-scheduler.json", "does not exist"),
        ("missing.yaml", "does not exist"),
    ]:
        with pytest.raises(ClusterSpecError, match=match), resolve_cluster(spec):
            pass
    assert issubclass(ClusterSpecError, ParallelZarrError)  # -> exit code 2 in the CLI


@pytest.mark.parametrize(
    "text, match",
    [
        ("kind: kubernetes\n", "kind must be"),
        ("- a list\n", "mapping"),
        ("kind: slurm\ncores: 4\n", "unknown key"),
        ("kind: slurm\nworkers: -1\n", "non-negative"),
        ("kind: slurm\ncluster: [1]\n", "mapping of keywords"),
    ],
)
def test_invalid_configs(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ClusterSpecError, match=match):
        load_cluster_config(path)


def test_local_yaml_config() -> None:
    cfg = load_cluster_config(CONFIGS / "local.yaml")
    assert cfg["kind"] == "local"
    with resolve_cluster(str(CONFIGS / "local.yaml"), workers=1, echo=None,
                         dashboard_address="127.0.0.1:0") as client:
        client.wait_for_workers(1, timeout=60)
        assert client.submit(sum, [1, 2]).result() == 3


def _render(config: Path, **overrides: object) -> str:
    cluster = cluster_from_config(config, **{**LOCALHOST, **overrides})
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def test_slurm_config_renders(in_tmp: Path) -> None:
    pytest.importorskip("dask_jobqueue")
    cfg = load_cluster_config(CONFIGS / "slurm" / "jobqueue.yaml")
    script = _render(CONFIGS / "slurm" / "jobqueue.yaml")
    assert f"#SBATCH -p {cfg['cluster']['queue']}" in script
    assert f"#SBATCH -A {cfg['cluster']['account']}" in script
    assert f"#SBATCH --cpus-per-task={cfg['cluster']['cores']}" in script
    assert "#SBATCH --mem=30G" in script  # 32GB expressed in GiB by dask-jobqueue
    assert f"#SBATCH -t {cfg['cluster']['walltime']}" in script
    assert "--nworkers 4" in script and "--nthreads 2" in script
    assert "tcp://127.0.0.1:" in script
    # --threads-per-worker regroups a job's cores into processes.
    assert "--nworkers 2" in _render(CONFIGS / "slurm" / "jobqueue.yaml", threads_per_worker=4)


def test_pbs_config_renders(in_tmp: Path) -> None:
    pytest.importorskip("dask_jobqueue")
    cfg = load_cluster_config(CONFIGS / "pbs" / "jobqueue.yaml")
    script = _render(CONFIGS / "pbs" / "jobqueue.yaml")
    assert f"#PBS -q {cfg['cluster']['queue']}" in script
    assert f"#PBS -l {cfg['cluster']['resource_spec']}" in script
    assert f"#PBS -l walltime={cfg['cluster']['walltime']}" in script
    assert "ncpus=8" in script and "mem=32GB" in script
    assert "--nworkers 4" in script


def test_config_with_unknown_keyword(in_tmp: Path) -> None:
    pytest.importorskip("dask_jobqueue")
    path = in_tmp / "bad.yaml"
    path.write_text("kind: slurm\ncluster:\n  cores: 2\n  memory: 1GB\n  no_such_keyword: 1\n")
    with pytest.raises((ClusterSpecError, ValueError)):
        _render(path)


@pytest.mark.parametrize("script", sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.sh")))
def test_shell_scripts_parse(script: str) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    res = subprocess.run([bash, "-n", str(CONFIGS / script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    text = (CONFIGS / script).read_text()
    if script.endswith("job-array.sh"):
        # Job arrays run without a dask cluster: init, one part per array task, then finalize.
        assert '"$PZ" init' in text and "--part" in text and "finalize" in text
    else:
        assert "parallelzarr write" in text and "--cluster" in text
