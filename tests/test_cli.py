"""The ``parallelzarr`` command line, run as a real subprocess on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.conftest import snapshot

pytest.importorskip("netCDF4")

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def pz(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m parallelzarr.cli ARGS`` (the console script's entry point) in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "parallelzarr.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def pz_inproc(*args: str) -> Any:
    """The same command in this process (click's runner): for quick usage and parsing checks."""
    from click.testing import CliRunner

    from parallelzarr.cli import main

    return CliRunner().invoke(main, list(args))


def sample(ntime: int = 30, start: str = "2020-01-01") -> xr.Dataset:
    rng = np.random.default_rng(0)
    time = pd.date_range(start, periods=ntime, freq="h")
    lat, lon = np.linspace(-45, 45, 10), np.linspace(0, 330, 12)
    field = (20 + 10 * np.cos(np.deg2rad(lat))[None, :, None] + rng.normal(0, 1, (ntime, 10, 12))).astype("f4")
    return xr.Dataset(
        {"t2m": (("time", "lat", "lon"), field, {"units": "degC"}), "p": (("time",), np.arange(ntime, dtype="f8"))},
        coords={"time": time, "lat": lat, "lon": lon},
        attrs={"title": "cli test"},
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    ds = sample()
    ds.to_netcdf(root / "in.nc")
    ds.isel(time=slice(0, 15)).to_netcdf(root / "part1.nc")
    ds.isel(time=slice(15, None)).to_netcdf(root / "part2.nc")
    return root


@pytest.fixture(scope="module")
def written(files: Path) -> Path:
    """``in.nc`` written once with the threads scheduler (shared by the read-only checks)."""
    res = pz("write", "in.nc", "shared.zarr", "--chunks", "time=7", "--cluster", "threads", cwd=files)
    assert res.returncode == 0, res.stderr
    return files / "shared.zarr"


def test_write_roundtrip(files: Path, written: Path) -> None:
    with xr.open_zarr(written) as out, xr.open_dataset(files / "in.nc") as src:
        xr.testing.assert_identical(out.load(), src.load())
        assert out["t2m"].encoding["chunks"] == (7, 10, 12)


def test_write_local_cluster_with_report_and_json(files: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.zarr"
    report = tmp_path / "report.html"
    res = pz("write", str(files / "in.nc"), str(target), "--chunks", "time=7", "--cluster", "local",
             "--workers", "1", "--threads-per-worker", "1", "--report", str(report), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # stdout is only JSON; the dashboard link went to stderr
    assert doc["command"] == "write" and not doc["dry_run"]
    assert doc["plan"]["variables"]["t2m"]["chunks"] == [7, 10, 12]
    assert "dashboard" in res.stderr
    assert report.stat().st_size > 0
    with xr.open_zarr(target) as out, xr.open_dataset(files / "in.nc") as src:
        xr.testing.assert_identical(out.load(), src.load())


def test_write_glob_of_files(files: Path, tmp_path: Path) -> None:
    res = pz("write", str(files / "part*.nc"), str(tmp_path / "m.zarr"), "--chunks", "time=5",
             "--cluster", "threads", "--workers", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with xr.open_zarr(tmp_path / "m.zarr") as out, xr.open_dataset(files / "in.nc") as src:
        xr.testing.assert_identical(out.load(), src.load())


def test_dry_run_writes_nothing(files: Path, tmp_path: Path) -> None:
    target = tmp_path / "dry.zarr"
    res = pz("write", str(files / "in.nc"), str(target), "--chunks", "time=7", "--dry-run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "write plan" in res.stdout and "t2m" in res.stdout and "direct" in res.stdout
    assert not target.exists()
    res = pz_inproc("write", str(files / "in.nc"), str(target), "--chunks", "time=7", "--dry-run", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["plan"]["variables"]["t2m"]["strategy"] == "direct"
    assert not target.exists()


BAD_INPUT = [
    (["--strategy", "bogus"], "bogus"),  # click's own usage error
    (["--encoding", "enc.json"], "unknown encoding key"),
    (["--chunks", "time=seven"], "--chunks"),
    (["--cluster", "nonsense"], "cannot understand --cluster"),
    (["--max-mem", "1kB"], "max_mem"),
    (["--region", "time=3"], "--region"),
]


@pytest.mark.parametrize("extra, message", [BAD_INPUT[1], BAD_INPUT[4]], ids=["encoding", "budget"])
def test_bad_input_exit_2_target_unchanged(files: Path, written: Path, extra: list[str], message: str) -> None:
    (files / "enc.json").write_text(json.dumps({"t2m": {"chunks": [10, 10, 12], "bogus": 1}}))
    before = snapshot(written)
    res = pz("write", "in.nc", "shared.zarr", "--mode", "w", "--cluster", "threads", *extra, cwd=files)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr
    assert res.stdout == ""
    assert snapshot(written) == before


def test_bad_options_exit_2_target_unchanged(files: Path, written: Path) -> None:
    (files / "enc.json").write_text(json.dumps({"t2m": {"chunks": [10, 10, 12], "bogus": 1}}))
    before = snapshot(written)
    for extra, message in BAD_INPUT:
        args = [str(files / "in.nc"), str(written), "--mode", "w", "--cluster", "threads"]
        res = pz_inproc("write", *args, *[str(files / e) if e == "enc.json" else e for e in extra])
        assert res.exit_code == 2, (extra, res.stdout, res.stderr)
        assert message in res.stderr and res.stdout == ""
    assert snapshot(written) == before


def test_target_exists_mode_w_minus(files: Path, written: Path) -> None:
    before = snapshot(written)
    res = pz("write", "in.nc", "shared.zarr", "--cluster", "threads", cwd=files)
    assert res.returncode == 2
    assert "already holds data" in res.stderr
    assert snapshot(written) == before


def test_missing_input_and_report_without_cluster(files: Path, tmp_path: Path) -> None:
    res = pz_inproc("write", str(files / "nothere.nc"), str(tmp_path / "x.zarr"), "--cluster", "threads")
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = pz_inproc("write", str(files / "*.grib"), str(tmp_path / "x.zarr"), "--cluster", "threads")
    assert res.exit_code == 2 and "no input matches" in res.stderr
    res = pz_inproc("write", str(files / "in.nc"), str(tmp_path / "x.zarr"), "--cluster", "threads",
                    "--report", str(tmp_path / "r.html"))
    assert res.exit_code == 2 and "distributed cluster" in res.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_failure_during_run_exit_1(written: Path, tmp_path: Path) -> None:
    # A corrupt chunk in a zarr input opens fine (metadata only) and fails while the write runs.
    bad = tmp_path / "bad.zarr"
    import shutil

    shutil.copytree(written, bad)
    chunk = next(p for p in sorted((bad / "t2m" / "c").rglob("*")) if p.is_file())
    chunk.write_bytes(b"not zstd data")
    res = pz("write", str(bad), str(tmp_path / "o.zarr"), "--cluster", "threads", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "Error:" in res.stderr and "--traceback" in res.stderr


def test_storage_option_values_never_printed(files: Path, tmp_path: Path) -> None:
    res = pz("write", "in.nc", str(tmp_path / "x.zarr"), "--cluster", "threads", "-o", "secret=hunter2-value",
             "--dry-run", "--json", cwd=files)
    assert "hunter2-value" not in res.stdout + res.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_info_text_and_json(written: Path) -> None:
    res = pz("info", str(written), cwd=written.parent)
    assert res.returncode == 0, res.stderr
    assert "zarr v3 group, consolidated" in res.stdout
    line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith("t2m"))
    assert "(time, lat, lon)" in line and "float32" in line and "30x10x12" in line and "chunks 7x10x12" in line
    assert "zstd" in line
    res = pz_inproc("info", str(written), "--json")
    doc = json.loads(res.stdout)
    t2m = next(a for a in doc["arrays"] if a["path"] == "t2m")
    assert t2m["shape"] == [30, 10, 12] and t2m["chunks"] == [7, 10, 12] and t2m["bytes_raw"] == 30 * 10 * 12 * 4
    res = pz_inproc("info", str(written.parent / "missing.zarr"))
    assert res.exit_code == 2 and "no zarr" in res.stderr


def test_append_then_info_log(files: Path, tmp_path: Path) -> None:
    target = str(tmp_path / "app.zarr")
    common = ["--append-dim", "time", "--chunks", "time=5", "--cluster", "threads"]
    res = pz("append", str(files / "part1.nc"), target, *common, cwd=tmp_path)
    if res.returncode == 1 and "not available" in res.stderr:
        pytest.skip("parallelzarr.append has not landed")
    assert res.returncode == 0, res.stderr
    res = pz_inproc("append", str(files / "part2.nc"), target, *common, "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "time=15:30" in res.stdout
    with xr.open_zarr(target) as out:
        assert out.sizes["time"] == 15  # the dry run wrote nothing
    res = pz("append", str(files / "part2.nc"), target, *common, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["result"]["applied"] is True
    with xr.open_zarr(target) as out, xr.open_dataset(files / "in.nc") as src:
        out = out.load()
        assert "parallelzarr_appends" not in out.attrs  # the append log lives under .parallelzarr/, shown by info
        xr.testing.assert_identical(out, src.load())
    res = pz_inproc("info", target, "--json")
    assert [e["length"] for e in json.loads(res.stdout)["appends"]] == [15, 15]
    res = pz_inproc("repair", target)
    assert res.exit_code == 0, res.stderr
    assert "ok" in res.stdout


def test_rechunk(written: Path, tmp_path: Path) -> None:
    target = tmp_path / "re.zarr"
    args = ["rechunk", str(written), str(target), "--chunks", "time=-1,lat=5,lon=6", "--max-mem", "64MB"]
    res = pz_inproc(*args, "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "RechunkPlan" in res.stdout
    assert not target.exists()
    res = pz(*args, "--cluster", "threads", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["result"]["tasks_run"] > 0
    with xr.open_zarr(target) as out, xr.open_zarr(written) as src:
        xr.testing.assert_identical(out.load(), src.load())
        assert out["t2m"].encoding["chunks"] == (30, 5, 6)
    # Only one axis named: the others keep their chunks, time=-1 takes the whole axis.
    res = pz("rechunk", str(written), str(tmp_path / "re2.zarr"), "--chunks", "time=-1", "--cluster", "threads",
             cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with xr.open_zarr(tmp_path / "re2.zarr") as out:
        assert out["t2m"].encoding["chunks"] == (30, 10, 12)
    res = pz_inproc(*args[:-2], "--max-mem", "1kB", "--cluster", "threads")
    assert res.exit_code == 2 and "max_mem" in res.stderr


def test_help_and_usage_errors() -> None:
    res = pz_inproc("--help")
    assert res.exit_code == 0
    for cmd in ("write", "append", "rechunk", "repair", "info", "demo"):
        assert cmd in res.stdout
    res = pz_inproc("write")  # missing arguments: click's usage error
    assert res.exit_code == 2


def test_console_script_installed(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("parallelzarr")
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    res = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, env=ENV)
    assert res.returncode == 0 and "version" in res.stdout


def test_option_parsers() -> None:
    import click

    from parallelzarr.cli import _option_keys, parse_chunks, parse_region, parse_storage_options

    assert parse_chunks("time=24, lat=-1,lon=auto") == {"time": 24, "lat": -1, "lon": "auto"}
    assert parse_chunks("100,50") == (100, 50)
    for bad in ("time=0", "time=", "time=x,lat=1", "time=-2"):
        with pytest.raises(click.BadParameter):
            parse_chunks(bad)
    assert parse_region("time=0:24,lat=:5") == {"time": slice(0, 24), "lat": slice(None, 5)}
    opts = parse_storage_options(["anon=true", "client_kwargs.endpoint_url=http://127.0.0.1:5000", "key=abc"])
    assert opts == {"anon": True, "client_kwargs": {"endpoint_url": "http://127.0.0.1:5000"}, "key": "abc"}
    assert _option_keys(opts) == ["anon", "client_kwargs.endpoint_url", "key"]
    with pytest.raises(click.BadParameter) as err:
        parse_storage_options(["secret"])
    assert "secret" in str(err.value)  # the key is named, a value is never shown


def test_s3_with_storage_options(files: Path, tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket="pzcli")
        opts = ["-o", "key=testing", "-o", "secret=s3cret-value-123", "-o", f"client_kwargs.endpoint_url={endpoint}"]
        res = pz("write", "in.nc", "s3://pzcli/out.zarr", "--chunks", "time=10", "--cluster", "threads", "--json",
                 *opts, cwd=files)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert sorted(doc["storage_option_keys"]) == ["client_kwargs.endpoint_url", "key", "secret"]
        assert "s3cret-value-123" not in res.stdout + res.stderr
        res = pz("info", "s3://pzcli/out.zarr", "--json", *opts, cwd=files)
        assert res.returncode == 0, res.stderr
        t2m = next(a for a in json.loads(res.stdout)["arrays"] if a["path"] == "t2m")
        assert t2m["chunks"] == [10, 10, 12]
        assert "s3cret-value-123" not in res.stdout + res.stderr
    finally:
        server.stop()


def test_mode_a_adds_and_overwrites_variables(tmp_path: Path) -> None:
    """``--mode a`` adds a variable to a stored dataset and ``--mode a-`` overwrites one (xarray's meaning of
    both without an append dim); the other variables stay as stored."""
    ds = sample()
    ds.to_zarr(tmp_path / "s.zarr", mode="w")
    xr.Dataset({"q": (("lat",), np.arange(10.0))}, coords={"lat": ds.lat}).to_netcdf(tmp_path / "q.nc")
    res = pz("write", "q.nc", "s.zarr", "--mode", "a", "--cluster", "threads", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with xr.open_zarr(tmp_path / "s.zarr") as out:
        np.testing.assert_array_equal(out["q"].values, np.arange(10.0))
        np.testing.assert_array_equal(out["t2m"].values, ds["t2m"].values)
    xr.Dataset({"q": (("lat",), -np.arange(10.0))}, coords={"lat": ds.lat}).to_netcdf(tmp_path / "q2.nc")
    res = pz("write", "q2.nc", "s.zarr", "--mode", "a-", "--cluster", "threads", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with xr.open_zarr(tmp_path / "s.zarr") as out:
        np.testing.assert_array_equal(out["q"].values, -np.arange(10.0))
        np.testing.assert_array_equal(out["t2m"].values, ds["t2m"].values)
        assert out.sizes["time"] == 30
