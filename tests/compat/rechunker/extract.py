"""Extract the ``tests/`` folder of rechunker's sdist into a scratch directory (never into the repo).

    python extract.py rechunker-0.5.4.tar.gz WORKDIR

Writes ``WORKDIR/tests-root/tests/*.py``: rechunker's test bodies exactly as released. A missing sdist
is downloaded from the package registry with pip (``pip download --no-binary``) into a cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "0.5.4"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "parallelzarr" / "sdists"


def ensure_sdist(path: str | None = None) -> Path:
    """Return rechunker's sdist: ``path`` if it exists, else the cached or freshly downloaded one."""
    if path and Path(path).is_file():
        return Path(path)
    found = sorted(CACHE.glob(f"rechunker-{VERSION}.tar.gz"))
    if found:
        return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    f"rechunker=={VERSION}", "-d", str(CACHE)], check=True)
    return CACHE / f"rechunker-{VERSION}.tar.gz"


def extract(sdist: str, work: str) -> Path:
    """Extract the sdist's ``tests/`` into ``work/tests-root/tests`` and return that folder."""
    dest = Path(work) / "tests-root" / "tests"
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(ensure_sdist(sdist)) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) == 3 and parts[1] == "tests" and member.isfile() and parts[2].endswith(".py"):
                src = tar.extractfile(member)
                assert src is not None
                (dest / parts[2]).write_bytes(src.read())
    if not any(dest.glob("test_*.py")):
        raise SystemExit(f"no tests/test_*.py in {sdist}")
    return dest


if __name__ == "__main__":
    extract(sys.argv[1], sys.argv[2])
