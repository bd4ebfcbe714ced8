"""Remote stores over a real S3 protocol server (moto's server on 127.0.0.1, port 0)."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from append_helpers import data_only, rows

import parallelzarr as pz
from parallelzarr.errors import LeaseError
from parallelzarr.store.keys import LEASE_KEY, create_exclusive

SECRET = "s3cr3t-value-never-printed"


@pytest.fixture(scope="module")
def s3():
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key=SECRET,
                 region_name="us-east-1").create_bucket(Bucket="archive")
    yield {"endpoint_url": endpoint, "key": "test", "secret": SECRET, "client_kwargs": {"region_name": "us-east-1"}}
    server.stop()


def test_write_array_and_dataset(s3):
    x = np.arange(1000, dtype="f4").reshape(100, 10)
    plan = pz.to_zarr(da.from_array(x, chunks=(30, 10)), "s3://archive/arr.zarr", encoding={"chunks": (25, 10)},
                      storage_options=s3)
    assert SECRET not in str(plan) and SECRET not in json.dumps(plan.to_dict())
    store = zarr.storage.FsspecStore.from_url("s3://archive/arr.zarr", storage_options=s3)
    np.testing.assert_array_equal(zarr.open_array(store)[...], x)
    ds = rows(0, 20, 7)
    pz.to_zarr(ds, "s3://archive/ds.zarr", storage_options=s3, encoding={"temp": {"chunks": (5, 6)}})
    xr.testing.assert_identical(xr.open_zarr("s3://archive/ds.zarr", storage_options=s3).load(), ds.load())


def test_append_with_conditional_lease(s3):
    url = "s3://archive/ingest.zarr"
    pz.append(rows(0, 10, 4), url, "time", storage_options=s3, encoding={"temp": {"chunks": (4, 6)}})
    store = zarr.storage.FsspecStore.from_url(url, storage_options=s3)
    # an If-None-Match create: the second creator loses
    assert create_exclusive(store, LEASE_KEY, {"id": "first", "host": "elsewhere", "pid": 1, "time": 0})
    assert not create_exclusive(store, LEASE_KEY, {"id": "second"})
    with pytest.raises(LeaseError, match="being written by another process") as info:
        pz.append(rows(10, 5, 2), url, "time", storage_options=s3)
    assert SECRET not in str(info.value)
    report = pz.repair(url, storage_options=s3, force=True)
    assert any("lease" in a for a in report.actions)
    result = pz.append(rows(10, 5, 2), url, "time", storage_options=s3)
    assert result.applied and SECRET not in str(result)
    xr.testing.assert_identical(data_only(xr.open_zarr(url, storage_options=s3).load()), rows(0, 15, 15).load())


def test_rechunk_on_s3(s3):
    src = "s3://archive/src.zarr"
    x = np.arange(60 * 40, dtype="f4").reshape(60, 40)
    pz.to_zarr(da.from_array(x, chunks=(10, 40)), src, encoding={"chunks": (10, 40)}, storage_options=s3)
    source = zarr.open_array(zarr.storage.FsspecStore.from_url(src, storage_options=s3))
    r = pz.rechunk(source, (60, 5), "8MB", "s3://archive/dst.zarr", storage_options=s3)
    assert SECRET not in str(r.plan)
    r.execute()
    out = zarr.open_array(zarr.storage.FsspecStore.from_url("s3://archive/dst.zarr", storage_options=s3))
    assert out.chunks == (60, 5)
    np.testing.assert_array_equal(out[...], x)


def test_dead_lease_is_broken_through_its_marker_on_s3(s3):
    """A lease of a process that died on this host is broken (exclusive break marker, a conditional PUT)."""
    import subprocess
    import sys

    from parallelzarr.commit.lease import BREAK_PREFIX
    from parallelzarr.store.holders import this_holder
    from parallelzarr.store.keys import list_keys

    url = "s3://archive/dead-lease.zarr"
    pz.append(rows(0, 8, 4), url, "time", storage_options=s3, encoding={"temp": {"chunks": (4, 6)}})
    store = zarr.storage.FsspecStore.from_url(url, storage_options=s3)
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    assert create_exclusive(store, LEASE_KEY, {"id": "dead", **this_holder("append"), "pid": gone})
    result = pz.append(rows(8, 4, 2), url, "time", storage_options=s3)
    assert result.applied and any("dead process" in r for r in result.repaired), result.repaired
    assert not [k for k in list_keys(store, ".parallelzarr") if k.startswith(BREAK_PREFIX) or k == LEASE_KEY]
    xr.testing.assert_identical(data_only(xr.open_zarr(url, storage_options=s3).load()), rows(0, 12, 12).load())
