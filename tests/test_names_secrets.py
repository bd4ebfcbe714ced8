"""Names that would escape the store are refused before any write; credentials never appear in any output.

Names: variable, coordinate and DataArray names, rechunk source members, overlapping rechunk stores and CLI
paths. Secrets: ``storage_options`` credentials (key, secret, token) and credentials embedded in URLs, checked
in plans, logs, errors (with their whole chain), results and reports, ``info`` and the CLI, against a real
moto S3 server on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import shutil
import traceback
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from click.testing import CliRunner

import parallelzarr as pz
from parallelzarr.cli import main as cli_main
from parallelzarr.errors import InvalidNameError, ParallelZarrError, StoreError, StoreOverlapError
from parallelzarr.redact import redact
from parallelzarr.reports.info import format_info, inspect_store
from tests.conftest import S3_KEY, S3_SECRET, S3_TOKEN, snapshot

BAD_NAMES = ["..", ".", "", "/etc/x", "a/b", "..\\x", "a\\b", "a\x00b", "zarr.json", ".zattrs", ".parallelzarr"]
SECRETS = (S3_KEY, S3_SECRET, S3_TOKEN)


def refused(root: Path, call: Any, exc_type: type[Exception], name: str | None = None) -> ParallelZarrError:
    """``call`` raises ``exc_type`` naming ``name`` and no file under ``root`` changes."""
    before = snapshot(root)
    with pytest.raises(exc_type) as info:
        call()
    if name is not None:
        assert repr(name) in str(info.value), str(info.value)
    assert snapshot(root) == before
    return info.value


def small(name: str = "v", coord: str = "x") -> xr.Dataset:
    return xr.Dataset({name: ((coord,), da.arange(6, chunks=3, dtype="f4"))}, coords={coord: np.arange(6)})


# --- names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES)
def test_variable_names_refused(tmp_path: Path, name: str) -> None:
    ds = xr.Dataset({name: (("x",), da.zeros(6, chunks=3))})
    target = tmp_path / "out.zarr"
    err = refused(tmp_path, lambda: pz.to_zarr(ds, str(target)), InvalidNameError, name)
    assert "variable" in str(err) and "rename" in str(err)
    refused(tmp_path, lambda: pz.plan_write(ds, str(target)), InvalidNameError, name)
    assert not target.exists()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_coordinate_names_refused(tmp_path: Path, name: str) -> None:
    ds = xr.Dataset({"v": (("x",), da.zeros(6, chunks=3))}, coords={name: (("x",), np.arange(6))})
    err = refused(tmp_path, lambda: pz.to_zarr(ds, str(tmp_path / "out.zarr")), InvalidNameError, name)
    assert "coordinate" in str(err)
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_dataarray_names_refused(tmp_path: Path, name: str) -> None:
    arr = xr.DataArray(da.zeros(6, chunks=3), dims="x", name=name)
    err = refused(tmp_path, lambda: pz.to_zarr(arr, str(tmp_path / "out.zarr")), InvalidNameError, name)
    assert "DataArray" in str(err)


def test_dataarray_named_like_its_coordinate(tmp_path: Path) -> None:
    # stored as xarray stores it (generic variable name, the real one in the root attributes), so
    # its data is not taken for the coordinate's
    arr = xr.DataArray(da.arange(6, chunks=3) * 2.0, dims="x", coords={"x": np.arange(6)}, name="x")
    pz.to_zarr(arr, str(tmp_path / "out.zarr"))
    xr.testing.assert_identical(xr.open_dataarray(str(tmp_path / "out.zarr"), engine="zarr").load(), arr.compute())


@pytest.mark.parametrize("name", ["..", "a/b", "a\x00b", ".zgroup"])
def test_append_of_escaping_names_refused(tmp_path: Path, name: str) -> None:
    store = tmp_path / "s.zarr"
    pz.append(small().assign_coords(x=np.arange(6)), str(store), "x")
    new = small().assign_coords(x=np.arange(6, 12)).rename({"v": name}) if name else small()
    refused(tmp_path, lambda: pz.append(new, str(store), "x"), InvalidNameError, name)
    # a new store, created by the first append
    refused(tmp_path, lambda: pz.append(new, str(tmp_path / "fresh.zarr"), "x"), InvalidNameError, name)
    assert not (tmp_path / "fresh.zarr").exists()


@pytest.mark.parametrize("member", [".parallelzarr-rechunk", "..x"])
def test_rechunk_source_member_names(tmp_path: Path, member: str) -> None:
    src = tmp_path / "src.zarr"
    group = zarr.create_group(str(src))
    group.create_array("ok", shape=(8,), chunks=(2,), dtype="f4")[:] = 1
    shutil.copytree(src / "ok", src / member)  # a member no zarr API would create
    if member == "..x":  # a legal (if odd) single component: rechunked like any other
        pz.rechunk(zarr.open_group(str(src), mode="r"), {"ok": (4,), member: (4,)}, "64MB",
                   str(tmp_path / "t.zarr")).execute(scheduler="threads")
        assert zarr.open_array(str(tmp_path / "t.zarr" / member)).chunks == (4,)
        return
    refused(tmp_path, lambda: pz.rechunk(zarr.open_group(str(src), mode="r"), {"ok": (4,)}, "64MB",
                                         str(tmp_path / "t.zarr")), InvalidNameError, member)


@pytest.fixture
def source(tmp_path: Path) -> zarr.Array:
    path = tmp_path / "src.zarr"
    pz.to_zarr(da.arange(40, chunks=10, dtype="f8"), str(path), encoding={"chunks": (10,)})
    return zarr.open_array(str(path), mode="r")


@pytest.mark.parametrize("layout", ["target-is-source", "target-inside-source", "temp-is-target",
                                    "temp-inside-target", "target-inside-temp", "temp-is-source"])
def test_rechunk_store_overlap_refused(tmp_path: Path, source: zarr.Array, layout: str) -> None:
    src = tmp_path / "src.zarr"
    target, temp = {
        "target-is-source": (src, None),
        "target-inside-source": (src / "sub", None),
        "temp-is-target": (tmp_path / "t.zarr", tmp_path / "t.zarr"),
        "temp-inside-target": (tmp_path / "t.zarr", tmp_path / "t.zarr" / "tmp"),
        "target-inside-temp": (tmp_path / "tmp" / "t.zarr", tmp_path / "tmp"),
        "temp-is-source": (tmp_path / "t.zarr", src),
    }[layout]
    err = refused(tmp_path, lambda: pz.rechunk(source, (20,), "64MB", str(target),
                                               temp_store=str(temp) if temp else None), StoreOverlapError)
    assert "overlap" in str(err) or "nested" in str(err)
    assert not (tmp_path / "t.zarr").exists()


def test_rechunk_separate_temp_works(tmp_path: Path, source: zarr.Array) -> None:
    pz.rechunk(source, (20,), "64MB", str(tmp_path / "t.zarr"), temp_store=str(tmp_path / "tmp.zarr")).execute(
        scheduler="threads")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "t.zarr"))[...], np.arange(40.0))


@pytest.mark.parametrize("path", ["", "   ", "a\x00b.zarr"])
def test_bad_store_paths(tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # an empty path must not mean "write into the current directory"
    refused(tmp_path, lambda: pz.to_zarr(small(), path), InvalidNameError)
    refused(tmp_path, lambda: pz.to_zarr(da.ones(4, chunks=2), path), InvalidNameError)
    refused(tmp_path, lambda: pz.append(small(), path, "x"), InvalidNameError)
    refused(tmp_path, lambda: inspect_store(path), InvalidNameError)


@pytest.mark.parametrize("args", [
    ["write", "in.zarr", ""], ["write", "in.zarr", "a\x00b.zarr"], ["write", "in.zarr", " "],
    ["append", "in.zarr", "", "--append-dim", "x"], ["rechunk", "in.zarr", "", "--chunks", "x=2"],
    ["rechunk", "in.zarr", "in.zarr", "--chunks", "x=2"], ["rechunk", "in.zarr", "t.zarr", "--chunks", "x=2",
                                                           "--temp", "t.zarr"],
    ["info", ""],
])
def test_cli_paths(tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    small().to_zarr(tmp_path / "in.zarr")
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli_main, [*args, "--cluster", "threads"] if args[0] != "info" else args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Error:" in result.output
    assert snapshot(tmp_path) == before


# --- secrets -------------------------------------------------------------------------------------------------


def chain_text(exc: BaseException) -> str:
    """Every message of an exception, its causes and contexts, and the formatted traceback."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts += [str(e), repr(e)]
        todo += [e.__cause__, e.__context__]
    return "\n".join(parts)


def assert_clean(*texts: Any) -> None:
    for text in texts:
        body = text if isinstance(text, str) else json.dumps(text, default=str)
        for secret in SECRETS:
            assert secret not in body, f"credential leaked: {body[:2000]}"


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """All log records: parallelzarr at DEBUG, every other library at INFO."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="parallelzarr")
    return caplog


def test_redact_helper() -> None:
    opts = {"key": S3_KEY, "secret": S3_SECRET, "client_kwargs": {"aws_session_token": S3_TOKEN},
            "endpoint_url": "http://127.0.0.1:9"}
    text = f"s3://{S3_KEY}:{S3_SECRET}@bucket/x failed ({S3_TOKEN}) at http://127.0.0.1:9"
    out = redact(text, opts)
    assert_clean(out)
    assert "s3://***@bucket/x" in out and "http://127.0.0.1:9" in out  # the endpoint is not a secret
    assert redact("https://h/x?a=1&X-Amz-Signature=abc&token=zz") == "https://h/x?a=1&X-Amz-Signature=***&token=***"


def test_plan_write_and_result(moto_s3: dict[str, Any], captured: pytest.LogCaptureFixture) -> None:
    ds = small()
    plan = pz.plan_write(ds, "s3://archive/secrets-plan.zarr", storage_options=moto_s3)
    written = pz.to_zarr(ds, "s3://archive/secrets-ds.zarr", storage_options=moto_s3, scheduler="threads")
    arr = pz.to_zarr(da.arange(10, chunks=5), "s3://archive/secrets-arr.zarr", storage_options=moto_s3,
                     scheduler="threads")
    for p in (plan, written, arr):
        assert_clean(str(p), repr(p), p.to_dict(), json.dumps(p.to_dict()))
    assert "s3://archive/secrets-ds.zarr" in str(written)
    assert_clean(captured.text, *(r.getMessage() for r in captured.records))


def test_append_result_and_repair(moto_s3: dict[str, Any], captured: pytest.LogCaptureFixture) -> None:
    url = "s3://archive/secrets-append.zarr"
    first = pz.append(small(), url, "x", storage_options=moto_s3, scheduler="threads")
    second = pz.append(small().assign_coords(x=np.arange(6, 12)), url, "x", storage_options=moto_s3,
                       scheduler="threads")
    again = pz.append(small().assign_coords(x=np.arange(6, 12)), url, "x", storage_options=moto_s3,
                      scheduler="threads")
    report = pz.repair(url, storage_options=moto_s3)
    for r in (first, second, again):
        assert_clean(str(r), repr(r))
    assert_clean(str(report), report.to_dict())
    assert not again.applied
    assert_clean(captured.text)


def test_rechunk_plan(moto_s3: dict[str, Any], captured: pytest.LogCaptureFixture) -> None:
    src_url = "s3://archive/secrets-rsrc.zarr"
    pz.to_zarr(da.arange(40, chunks=10, dtype="f4"), src_url, encoding={"chunks": (10,)}, storage_options=moto_s3,
               scheduler="threads")
    source = zarr.open_array(zarr.storage.FsspecStore.from_url(src_url, storage_options=moto_s3), mode="r")
    job = pz.rechunk(source, (20,), "64MB", "s3://archive/secrets-rdst.zarr", storage_options=moto_s3,
                     temp_store="s3://archive/secrets-rtmp.zarr")
    job.execute(scheduler="threads")
    result = job.result
    assert_clean(str(job.plan), repr(job), json.dumps(job.plan.to_dict(), default=str), result.per_stage)
    assert_clean(captured.text)


def test_info(moto_s3: dict[str, Any]) -> None:
    pz.to_zarr(small(), "s3://archive/secrets-info.zarr", storage_options=moto_s3, scheduler="threads")
    data = inspect_store("s3://archive/secrets-info.zarr", storage_options=moto_s3)
    assert_clean(data, format_info(data, attrs=True))
    assert data["store"] == "s3://archive/secrets-info.zarr"


def wrong_endpoint(options: dict[str, Any]) -> dict[str, Any]:
    return {**options, "endpoint_url": "http://127.0.0.1:1",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}


@pytest.mark.parametrize("case", ["missing-bucket", "wrong-endpoint", "url-credentials", "bad-option",
                                  "url-credentials-info", "missing-store-info"])
def test_errors_do_not_leak(moto_s3: dict[str, Any], case: str, captured: pytest.LogCaptureFixture) -> None:
    embedded = f"s3://{S3_KEY}:{S3_SECRET}@archive/secrets-e.zarr"
    calls = {
        "missing-bucket": lambda: pz.to_zarr(small(), "s3://nobucket/x.zarr", storage_options=moto_s3),
        "wrong-endpoint": lambda: pz.to_zarr(small(), "s3://archive/secrets-w.zarr", storage_options=wrong_endpoint(moto_s3)),
        "url-credentials": lambda: pz.to_zarr(small(), embedded,
                                              storage_options={"endpoint_url": moto_s3["endpoint_url"]}),
        "bad-option": lambda: pz.append(small(), "s3://archive/secrets-b.zarr", "x",
                                        storage_options={**moto_s3, "no_such_option": S3_SECRET}),
        "url-credentials-info": lambda: inspect_store(embedded, storage_options={"endpoint_url": moto_s3["endpoint_url"]}),
        "missing-store-info": lambda: inspect_store("s3://archive/secrets-none.zarr", storage_options=moto_s3),
    }
    with pytest.raises(StoreError) as info:
        calls[case]()
    message = str(info.value)
    assert message.strip()
    assert_clean(chain_text(info.value), captured.text)
    if case == "missing-bucket":
        assert "'nobucket'" in message and "does not exist" in message
    if case == "url-credentials":
        assert "storage_options" in message


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli_main, list(args))


def so_args(options: dict[str, Any]) -> list[str]:
    return ["-o", f"key={S3_KEY}", "-o", f"secret={S3_SECRET}", "-o", f"token={S3_TOKEN}",
            "-o", f"endpoint_url={options['endpoint_url']}", "-o", "client_kwargs.region_name=us-east-1"]


def test_cli_outputs(moto_s3: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     captured: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    small().to_zarr(tmp_path / "in.zarr")
    opts = so_args(moto_s3)
    outputs = []
    for args in (
        ["write", "in.zarr", "s3://archive/secrets-cli.zarr", *opts, "--cluster", "threads", "--json"],
        ["write", "in.zarr", "s3://archive/secrets-cli2.zarr", *opts, "--cluster", "threads"],
        ["write", "in.zarr", "s3://archive/secrets-cli3.zarr", *opts, "--dry-run", "--json"],
        ["info", "s3://archive/secrets-cli.zarr", *opts, "--json"],
        ["info", "s3://archive/secrets-cli.zarr", *opts, "--attrs"],
        ["repair", "s3://archive/secrets-cli.zarr", *opts, "--json"],
        ["rechunk", "s3://archive/secrets-cli.zarr", "local.zarr", "--chunks", "x=2", *opts, "--cluster", "threads",
         "--json"],
    ):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert_clean(*outputs, captured.text)
    assert json.loads(outputs[0])["storage_option_keys"]  # the keys are listed, never the values


@pytest.mark.parametrize("case", ["missing-bucket", "url-credentials", "wrong-endpoint", "traceback"])
def test_cli_errors(moto_s3: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
                    captured: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    small().to_zarr(tmp_path / "in.zarr")
    opts = so_args(moto_s3)
    args = {
        "missing-bucket": ["write", "in.zarr", "s3://nobucket/x.zarr", *opts, "--cluster", "threads"],
        "url-credentials": ["write", "in.zarr", f"s3://{S3_KEY}:{S3_SECRET}@archive/secrets-x.zarr",
                            "-o", f"endpoint_url={moto_s3['endpoint_url']}", "--cluster", "threads", "--json"],
        "wrong-endpoint": ["info", "s3://archive/secrets-x.zarr", *opts[:-4], "-o", "endpoint_url=http://127.0.0.1:1",
                           "-o", "config_kwargs.retries.max_attempts=1"],
        "traceback": ["--traceback", "append", "in.zarr", "s3://nobucket/x.zarr", "--append-dim", "x", *opts,
                      "--cluster", "threads"],
    }[case]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert_clean(result.output, captured.text)
    assert "Error:" in result.output
