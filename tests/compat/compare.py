"""Compare two junit XML runs of the same tests (the peer alone, then through parallelzarr).

    python tests/compat/compare.py baseline.xml shim.xml [--json out.json]

Prints, per class of outcome, how many tests: pass on both, pass on the peer only (a difference
to explain), fail on both, pass through parallelzarr only; and the first lines of each difference.
"""

from __future__ import annotations

import argparse
import collections
import json
import xml.etree.ElementTree as ET


def outcomes(path: str) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = "skipped" if tag == "skipped" else "failed"
                message = (node.get("message") or node.text or "").strip().splitlines()[0][:300] if (node.get("message") or node.text) else ""
                break
        out[name] = (status, message)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("baseline")
    ap.add_argument("shim")
    ap.add_argument("--json")
    args = ap.parse_args()
    base, shim = outcomes(args.baseline), outcomes(args.shim)
    classes: dict[str, list[str]] = collections.defaultdict(list)
    for name in sorted(set(base) | set(shim)):
        b, s = base.get(name, ("missing", ""))[0], shim.get(name, ("missing", ""))[0]
        classes[f"peer {b} / parallelzarr {s}"].append(name)
    print(f"{'class':40s} tests")
    for key in sorted(classes):
        print(f"{key:40s} {len(classes[key])}")
    diffs = classes.get("peer passed / parallelzarr failed", [])
    reasons = collections.Counter(shim[n][1].split(":")[0][:80] for n in diffs)
    print("\nmost common failure types through parallelzarr (tests passing on the peer):")
    for reason, n in reasons.most_common(25):
        print(f"  {n:4d}  {reason}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({k: v for k, v in classes.items()} | {"_messages": {n: shim[n][1] for n in diffs}}, fh, indent=1)


if __name__ == "__main__":
    main()
