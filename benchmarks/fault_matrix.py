"""Fault matrix: {write, region write, append, rechunk} x {worker SIGKILL, coordinator SIGKILL, store OSError, full disk}.

Runs every cell of ``tests/fault_cells.py`` (the same cells ``tests/test_fault_matrix.py`` runs) on
real stores on disk; the worker-kill cells on a ``distributed.LocalCluster`` of 2 worker processes
bound to 127.0.0.1. Each cell ends ``correct`` (done despite the fault, data equal to the numpy
oracle), ``clean error + recoverable`` (a clear error, readers see what they saw before, and the
recovery step completes it with the oracle's data), ``SKIPPED`` (only a tmpfs that cannot be mounted,
with the reason) or ``FAIL``.

Prints a table and writes JSON (``--out``). Exit status 1 if any cell failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the cells are shared with the tests
import fault_cells as fc  # noqa: E402
from _common import environment, format_table, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default=",".join(fc.OPS), help="comma-separated operations")
    parser.add_argument("--faults", default=",".join(fc.FAULTS), help="comma-separated faults")
    parser.add_argument("--out", default=str(HERE / "results" / "fault_matrix.json"))
    args = parser.parse_args(argv)
    ops, faults = args.ops.split(","), args.faults.split(",")
    warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
    warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy.*")

    client = cluster = None
    if "worker-kill" in faults:
        import distributed

        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, scheduler_port=0, host="127.0.0.1",
            dashboard_address=None, worker_dashboard_address=None,
        )
        client = distributed.Client(cluster, set_as_default=False)
    results: list[fc.CellResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="pz-fault-matrix-") as tmp:
            for fault in faults:
                for op in ops:
                    root = Path(tmp) / f"{op}-{fault}"
                    try:
                        result = fc.run_cell(op, fault, root, client, strict=False)
                    except fc.CellSkip as exc:
                        result = fc.CellResult(op, fault, fc.SKIPPED, recovery="-", detail=str(exc))
                    results.append(result)
                    print(f"  {op:8s} {fault:17s} {result.outcome} ({result.seconds:.1f} s)", file=sys.stderr, flush=True)
    finally:
        if client is not None:
            client.close()
            cluster.close()

    rows = [
        {
            "op": fc.OP_TITLES[r.op],
            "fault": fc.FAULT_TITLES[r.fault],
            "outcome": r.outcome,
            "recovery": r.recovery,
            "seconds": f"{r.seconds:.1f}",
            "recovery_seconds": f"{r.recovery_seconds:.1f}" if r.recovery not in ("none", "-") else "-",
            "what happened": _short(r.error or r.detail),
        }
        for r in results
    ]
    columns = [("op", "operation"), ("fault", "fault"), ("outcome", "outcome"), ("recovery", "recovery"),
               ("seconds", "cell s"), ("recovery_seconds", "recovery s"), ("what happened", "error / note")]
    print(format_table(rows, columns))
    failed = [r for r in results if r.outcome == fc.FAIL]
    for r in failed + [r for r in results if r.outcome == fc.SKIPPED]:
        print(f"\n{r.outcome} {r.op} x {r.fault}: {r.detail}")
    print(f"\n{sum(r.outcome != fc.FAIL and r.outcome != fc.SKIPPED for r in results)} of {len(results)} cells "
          f"correct or cleanly recoverable, {len(failed)} failed, "
          f"{sum(r.outcome == fc.SKIPPED for r in results)} skipped")
    out = write_json(args.out, {"environment": environment(), "cells": [r.to_dict() for r in results]})
    print(f"wrote {out}")
    return 1 if failed else 0


def _short(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
