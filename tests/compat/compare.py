"""Compare two junit XML runs of the same tests (the peer alone, then through parallelzarr).

    python tests/compat/compare.py baseline.xml shim.xml [--json out.json]

Prints, per class of outcome, how many tests: pass on both, pass on the peer only, fail on both,
pass through parallelzarr only. Each test passing on the peer only is explained by an entry of
``xarray_differences.py`` (class, kind, reason) or reported as UNDOCUMENTED; the exit status is 1
when any is undocumented.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import xml.etree.ElementTree as ET
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from xarray_differences import explain  # noqa: E402


def outcomes(path: str) -> dict[str, tuple[str, str]]:
    """Test id -> (``passed``/``failed``/``skipped``, first line of the failure message)."""
    out: dict[str, tuple[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = "skipped" if tag == "skipped" else "failed"
                text = node.get("message") or node.text or ""
                message = text.strip().splitlines()[0][:500] if text.strip() else ""
                break
        out[name] = (status, message)
    return out


def compare(baseline: str, shim: str) -> dict[str, Any]:
    """Classes of outcome (``"peer passed / parallelzarr failed"``...) and each difference explained."""
    base, through = outcomes(baseline), outcomes(shim)
    classes: dict[str, list[str]] = collections.defaultdict(list)
    for name in sorted(set(base) | set(through)):
        b, s = base.get(name, ("missing", ""))[0], through.get(name, ("missing", ""))[0]
        classes[f"peer {b} / parallelzarr {s}"].append(name)
    explained: dict[str, list[str]] = collections.defaultdict(list)
    reasons: dict[str, dict[str, str]] = {}
    for name in classes.get("peer passed / parallelzarr failed", []):
        diff = explain(name, through[name][1])
        label = diff.label if diff else "UNDOCUMENTED"
        explained[label].append(name)
        if diff:
            reasons[label] = {"kind": diff.kind, "reason": diff.reason}
    return {"classes": dict(classes), "differences": dict(explained), "reasons": reasons,
            "messages": {n: through[n][1] for n in classes.get("peer passed / parallelzarr failed", [])}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("baseline")
    ap.add_argument("shim")
    ap.add_argument("--json")
    args = ap.parse_args()
    result = compare(args.baseline, args.shim)
    print(f"{'class':40s} tests")
    for key in sorted(result["classes"]):
        print(f"{key:40s} {len(result['classes'][key])}")
    print("\ntests passing on the peer and failing through parallelzarr, by documented difference:")
    for label, names in sorted(result["differences"].items(), key=lambda kv: -len(kv[1])):
        kind = result["reasons"].get(label, {}).get("kind", "-")
        print(f"  {len(names):4d}  {label} ({kind})")
    for name in result["differences"].get("UNDOCUMENTED", []):
        print(f"  UNDOCUMENTED {name}: {result['messages'][name][:200]}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    sys.exit(1 if result["differences"].get("UNDOCUMENTED") else 0)


if __name__ == "__main__":
    main()
