"""Shared fixtures: real stores on disk, a real LocalCluster with worker processes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

#: "small" in CI: slow-marked checks run at reduced size.
SCALE = os.environ.get("PZ_SCALE", "small")


def snapshot(path: str | os.PathLike) -> dict[str, str]:
    """Digest of every file under ``path`` (relative path -> sha256), to prove nothing changed."""
    root = Path(path)
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def client():
    """A distributed Client on a LocalCluster of 2 worker processes bound to 127.0.0.1."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


#: Credentials of the shared moto S3 server: distinctive, so tests can prove they are never printed.
S3_KEY = "AKIAPZTESTKEY00001"
S3_SECRET = "pz-s3cr3t-Z9x8c7v6b5"
S3_TOKEN = "pz-session-t0ken-Q1w2e3"


@pytest.fixture(scope="session")
def moto_s3():
    """A real S3 protocol server (moto) on 127.0.0.1 with bucket ``archive``; yields storage options.

    The options carry a key, a secret and a session token (moto accepts any), so tests can check that
    none of them ever appears in plans, logs, errors, reports or ``info`` output.
    """
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET,
                 region_name="us-east-1").create_bucket(Bucket="archive")
    yield {"endpoint_url": endpoint, "key": S3_KEY, "secret": S3_SECRET, "token": S3_TOKEN,
           "client_kwargs": {"region_name": "us-east-1"}}
    server.stop()
