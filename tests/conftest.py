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
