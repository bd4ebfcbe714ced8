"""Store inspection behind ``parallelzarr info``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from parallelzarr.errors import StoreError
from parallelzarr.reports.info import APPEND_LOG_ATTR, format_info, inspect_store


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    root = zarr.create_group(path, attributes={"title": "t"})
    a = root.create_array("temp", shape=(20, 30), chunks=(10, 10), dtype="f4", dimension_names=("y", "x"))
    a[:] = np.arange(600, dtype="f4").reshape(20, 30)
    sub = root.create_group("sub", attributes={"level": 1})
    s = sub.create_array("sharded", shape=(40, 40), chunks=(5, 5), shards=(20, 20), dtype="i2", fill_value=0)
    s[:20, :] = 7
    root.attrs[APPEND_LOG_ATTR] = [
        {"id": "a1", "dim": "time", "offset": 0, "length": 10, "first": "2020-01-01", "last": "2020-01-10"}
    ]
    zarr.consolidate_metadata(path)
    return path


def test_inspect_group(store: Path) -> None:
    info = inspect_store(store)
    json.dumps(info)  # JSON-able throughout
    assert info["kind"] == "group" and info["zarr_format"] == 3 and info["consolidated"]
    assert set(info["groups"]) == {"", "sub"}
    assert APPEND_LOG_ATTR not in info["groups"][""]  # shown separately
    arrays = {a["path"]: a for a in info["arrays"]}
    temp, sharded = arrays["temp"], arrays["sub/sharded"]
    assert temp["shape"] == [20, 30] and temp["dims"] == ["y", "x"] and temp["dtype"] == "float32"
    assert temp["chunks"] == [10, 10] and temp["shards"] is None
    assert temp["bytes_raw"] == 20 * 30 * 4 and temp["bytes_stored"] > 0
    assert any(c.startswith("zstd") for c in temp["codecs"])
    assert sharded["chunks"] == [5, 5] and sharded["shards"] == [20, 20]
    assert "sharding" not in sharded["codecs"]  # inner codecs are listed instead
    # Half the shards are empty and never written: stored < raw.
    assert sharded["bytes_stored"] < sharded["bytes_raw"]
    assert info["bytes_raw"] == temp["bytes_raw"] + sharded["bytes_raw"]
    assert info["appends"][0]["id"] == "a1"


def test_format_info(store: Path) -> None:
    text = format_info(inspect_store(store), attrs=True)
    lines = text.splitlines()
    assert "zarr v3 group, consolidated" in lines[0] and "2 array(s)" in lines[0]
    assert any(ln.startswith("  sub/") for ln in lines)
    sharded = next(ln for ln in lines if "sharded" in ln)
    assert sharded.startswith("    sharded ") and "shards 20x20" in sharded and "int16" in sharded
    temp = next(ln for ln in lines if ln.strip().startswith("temp"))
    assert "(y, x)" in temp and "chunks 10x10" in temp
    assert '@title: "t"' in text
    assert "appends (1):" in text and "a1: dim=time" in text


def test_single_array_and_v2(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    arr = zarr.create_array(path, shape=(8,), chunks=(4,), dtype="i8", zarr_format=2)
    arr[:] = 1
    info = inspect_store(path)
    assert info["kind"] == "array" and info["zarr_format"] == 2
    assert info["arrays"][0]["shape"] == [8]
    assert "array" in format_info(info).splitlines()[0]


def test_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no zarr"):
        inspect_store(tmp_path / "nope.zarr")
