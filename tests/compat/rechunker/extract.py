"""Extract the ``tests/`` folder of rechunker's sdist into a scratch directory (never into the repo).

    python extract.py rechunker-0.5.4.tar.gz WORKDIR

Writes ``WORKDIR/tests-root/tests/*.py``: rechunker's test bodies exactly as released.
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path


def extract(sdist: str, work: str) -> Path:
    """Extract the sdist's ``tests/`` into ``work/tests-root/tests`` and return that folder."""
    dest = Path(work) / "tests-root" / "tests"
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
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
