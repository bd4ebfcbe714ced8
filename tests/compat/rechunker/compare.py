"""Compare rechunker's own tests run on rechunker (baseline) and through parallelzarr (shim), per test.

    python compare.py baseline.xml shim.xml [--json out.json] [--markdown out.md] [--record expected.json]

Every test that passes on rechunker and not through parallelzarr is matched against :data:`RULES`:
a test of rechunker internals parallelzarr has no counterpart for ("not applicable"), or a
deliberate, documented difference ("difference"). A test no rule explains is printed as
UNEXPLAINED and makes the exit status 1, so a new regression cannot hide behind the table.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """Explains a test that passes on rechunker only: by test name and (optionally) failure message."""

    name: str
    kind: str  # "not applicable" or "difference"
    reason: str
    message: str = ""

    def matches(self, test: str, message: str) -> bool:
        return bool(re.search(self.name, test)) and (not self.message or bool(re.search(self.message, message)))


RULES = [
    Rule(r"test_algorithm\.py::", "not applicable",
         "tests rechunker's internal planning algorithm (rechunker.algorithm: consolidate_chunks, "
         "multistage_rechunking_plan...); parallelzarr plans with its own planner (tests/test_rechunk_plan*.py)"),
    Rule(r"test_pipelines\.py::", "not applicable",
         "tests rechunker's executor pipeline internals (rechunker.executors, rechunker.types.Pipeline); "
         "parallelzarr runs one dask graph of its own"),
    Rule(r"::test_(parse_target_chunks_from_dim_chunks|get_dim_chunk)\[", "not applicable",
         "tests rechunker's private helpers of rechunker.api; parallelzarr applies the same per-dimension rule "
         "inside rechunk (test_rechunk_dataset_dimchunks measures it)"),
    Rule(r"::test_no_intermediate$", "not applicable",
         "builds rechunker's Rechunked(executor, plan, source, intermediate, target) by hand; parallelzarr's "
         "Rechunked is made by rechunk() only"),
    Rule(r"::test_no_intermediate_fused$", "not applicable",
         "counts the tasks of rechunker's dask plan object (rechunked.plan[0].dask); parallelzarr's .plan is a "
         "RechunkPlan (plan.n_tasks)", ),
    Rule(r"::test_rechunk_(array|dask_array|group)\[", "difference",
         "the target is published when execute() finishes (metadata last), so a crash never leaves readers a "
         "half-written target; rechunker creates it in rechunk(), and these tests open it before execute() "
         "(publish=\"early\" opts in to rechunker's behaviour)",
         r"(GroupNotFoundError|ArrayNotFoundError|NodeNotFoundError|FileNotFoundError|KeyError|not found|"
         r"assert '[\w/]+' in <Group)"),
    Rule(r"::test_rechunk_no_temp_dir_provided_error\[", "difference",
         "parallelzarr needs no temp_store: without one, intermediates live in the target under "
         ".parallelzarr-rechunk/ and are removed at the end; rechunker refuses",
         r"DID NOT RAISE"),
    Rule(r"::test_repr\[(Group|Dataset)\]$", "difference",
         "the plan differs: parallelzarr copies these arrays in one pass (fewest bytes moved at 1,600 bytes per "
         "task), so its repr has no Intermediate line; rechunker makes a two-stage plan",
         r"assert False"),
]


def outcomes(path: str) -> dict[str, tuple[str, str]]:
    """``classname::name`` -> (passed/failed/skipped, first line of the message) from a junit file."""
    out: dict[str, tuple[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}".replace("tests.", "tests/", 1)
        name = re.sub(r"^tests/(\w+)::", r"tests/\1.py::", name)
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = "skipped" if tag == "skipped" else "failed"
                text = node.get("message") or node.text or ""
                message = text.strip().splitlines()[0][:400] if text.strip() else ""
                break
        if status == "failed" and out.get(name, ("",))[0] == "passed":
            status = "failed"  # an error in teardown after a pass still fails the test
        out[name] = (status, message)
    return out


def classify(base: dict[str, tuple[str, str]], shim: dict[str, tuple[str, str]]) -> dict[str, object]:
    """Per-test classes and, for tests passing on rechunker only, the rule that explains each."""
    classes: dict[str, list[str]] = collections.defaultdict(list)
    explained: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    unexplained: list[tuple[str, str]] = []
    for name in sorted(set(base) | set(shim)):
        b = base.get(name, ("missing", ""))[0]
        s, msg = shim.get(name, ("missing", "not collected: its module failed to import"))
        classes[f"rechunker {b} / parallelzarr {s}"].append(name)
        if b == "passed" and s != "passed":
            rule = next((r for r in RULES if r.matches(name, msg)), None)
            if rule is None:
                unexplained.append((name, msg))
            else:
                explained[(rule.kind, rule.reason)].append(name)
    return {"classes": classes, "explained": explained, "unexplained": unexplained}


def markdown(base: dict, shim: dict, result: dict) -> str:
    """The README table: totals, then every remaining difference with its reason and count."""
    total = len(base)
    peer = sum(1 for v in base.values() if v[0] == "passed")
    both = len(result["classes"].get("rechunker passed / parallelzarr passed", []))
    pz = sum(1 for v in shim.values() if v[0] == "passed")
    lines = [
        "| tests | rechunker passes | parallelzarr passes | of those passing on rechunker |",
        "| ---: | ---: | ---: | ---: |",
        f"| {total} | {peer} | {pz} | {both} |",
        "",
        "| class | tests | reason |",
        "| --- | ---: | --- |",
    ]
    for (kind, reason), names in sorted(result["explained"].items(), key=lambda kv: -len(kv[1])):
        lines.append(f"| {kind} | {len(names)} | {reason} |")
    if result["unexplained"]:
        lines.append(f"| UNEXPLAINED | {len(result['unexplained'])} | see compare.py output |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("baseline")
    ap.add_argument("shim")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--record", help="write the pass sets to this file (tests/compat/rechunker/expected.json)")
    args = ap.parse_args()
    base, shim = outcomes(args.baseline), outcomes(args.shim)
    result = classify(base, shim)
    print(f"{'class':48s} tests")
    for key in sorted(result["classes"]):
        print(f"{key:48s} {len(result['classes'][key])}")
    print()
    table = markdown(base, shim, result)
    print(table)
    for name, msg in result["unexplained"]:
        print(f"UNEXPLAINED {name}: {msg}")
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(table + "\n")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"classes": result["classes"],
                       "explained": {f"{k[0]}: {k[1]}": v for k, v in result["explained"].items()},
                       "unexplained": result["unexplained"]}, fh, indent=1)
    if args.record:
        record(base, shim, args.record)
    return 1 if result["unexplained"] else 0


def record(base: dict[str, tuple[str, str]], shim: dict[str, tuple[str, str]], path: str) -> None:
    """Store which tests pass on rechunker and through parallelzarr (what ``make test`` checks against)."""
    doc = {
        "rechunker": "0.5.4",
        "rechunker_passed": sorted(n for n, v in base.items() if v[0] == "passed"),
        "parallelzarr_passed": sorted(n for n, v in shim.items() if v[0] == "passed"),
    }
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    sys.exit(main())
