"""Plot benchmark JSON (``benchmarks/results/*.json``) as bar charts of the ratios measured in one run.

Every benchmark writes rows with a case, a contender and one or more ratio fields (``vs_peer``,
``vs_floor``, ``vs_fastest``, ``ratio_vs_xarray``...). This script draws, per JSON file and per ratio
field, one bar per (case, contender), with the line at 1.0 for parity, and saves a PNG beside the JSON.

Usage: ``python benchmarks/plot_results.py [FILE.json ...]`` (default: every JSON in benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RATIO_KEYS = ("vs_peer", "vs_floor", "vs_fastest", "ratio_vs_xarray", "ratio_vs_floor")


def ratio_series(rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, float]]]:
    """``{ratio field: [(label, value), ...]}`` for the rows that carry that ratio."""
    out: dict[str, list[tuple[str, float]]] = {}
    for row in rows:
        label = f"{row.get('case', '')}: {row.get('contender') or row.get('peer') or ''}".strip(": ")
        for key in RATIO_KEYS:
            value = row.get(key)
            if isinstance(value, int | float):
                out.setdefault(key, []).append((label, float(value)))
    return out


def plot_file(path: Path) -> Path | None:
    """Draw the ratios of one JSON file; return the PNG path (``None`` when it has no ratios)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    series = ratio_series(data.get("rows", []))
    if not series:
        return None
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 1.2 + 0.35 * max(len(v) for v in series.values()) * len(series)),
                             squeeze=False)
    for ax, (key, values) in zip(axes[:, 0], series.items(), strict=True):
        labels = [lab for lab, _ in values]
        ax.barh(range(len(values)), [v for _, v in values], color="tab:blue")
        ax.set_yticks(range(len(values)), labels, fontsize=8)
        ax.axvline(1.0, color="black", lw=0.8)
        ax.invert_yaxis()
        ax.set_title(f"{path.stem}: {key}", fontsize=10)
    fig.tight_layout()
    out = path.with_suffix(".png")
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    files = args.files or sorted(Path(__file__).parent.joinpath("results").glob("*.json"))
    for f in files:
        out = plot_file(f)
        print(f"{f}: {'no ratios found' if out is None else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
