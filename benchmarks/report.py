"""Assemble ``benchmarks/report.md`` from the figures the benchmarks wrote in this run.

Every benchmark writes ``benchmarks/results/<name>.json`` (:mod:`results`); this script reads
them all and writes one table of every figure against its goal (and FlorDB 4.0.1's figure where
the benchmark measured it) and PNG plots of the series (with matplotlib, the ``bench`` extra:
``pip install -e '.[bench]'``). Nothing here is typed in: a figure not measured is not shown.

    python benchmarks/report.py [--results DIR] [--out benchmarks/report.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import PLOTS, Row, folder


def load(where: Path) -> list[dict[str, Any]]:
    """The benchmarks' JSON documents, by name."""
    docs = []
    for path in sorted(where.glob("*.json")):
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            print(f"skipping {path.name}: {e}", file=sys.stderr)
    return docs


def _num(v: float | None, unit: str = "") -> str:
    if v is None:
        return ""
    text = f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return f"{text}{unit}" if unit in ("x", "%") else f"{text} {unit}".rstrip()


def table(docs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| benchmark | figure | measured | goal | met | FlorDB 4.0.1 | vs FlorDB |",
        "|---|---|---|---|---|---|---|",
    ]
    for doc in docs:
        for raw in doc["rows"]:
            r = Row(**raw)
            goal = f"{r.op} {_num(r.goal, r.unit)}" if r.goal is not None else ""
            if r.op == "within" and r.goal is not None:
                goal = f"{_num(1 / r.goal, r.unit)} to {_num(r.goal, r.unit)}"
            if r.flordb_goal is not None:
                goal = f"FlorDB / this >= {r.flordb_goal:g}x"
            met = {True: "yes", False: "**no**", None: ""}[r.met]
            vs = ""
            if r.flordb is not None and r.value:
                vs = f"{r.flordb / r.value:.2g}x"
            figure = r.figure + (f" ({r.note})" if r.note else "")
            cells = [doc["benchmark"], figure, _num(r.value, r.unit), goal, met]
            cells += [_num(r.flordb, r.unit), vs]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def phase_tables(docs: list[dict[str, Any]]) -> list[str]:
    """Where a replay task's time goes: each benchmark's ``task_phases`` (mean s per task)."""
    lines: list[str] = []
    for doc in docs:
        phases = (doc.get("extra") or {}).get("task_phases") or {}
        if not phases:
            continue
        cols = list(dict.fromkeys(c for p in phases.values() for c in p))
        lines += ["", f"Replay task phases, `{doc['benchmark']}` (mean seconds per task):", ""]
        lines.append("| configuration | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for key, p in phases.items():
            cells = [_phase(c, p[c]) if c in p else "" for c in cols]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def _phase(column: str, value: float) -> str:
    return f"{value:g}" if column == "restores" else f"{value:.3f}"


def plots(docs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per plot that has a series; none without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots", file=sys.stderr)
        return []
    made = []
    for key, (title, xlabel, ylabel) in PLOTS.items():
        lines = [(d["benchmark"], s) for d in docs for s in d["series"] if s["plot"] == key]
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for bench, s in lines:
            ax.plot(s["x"], s["y"], marker="o", label=f"{bench}: {s['label']}")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{key}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append(path)
    return made


def render(docs: list[dict[str, Any]], out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    pngs = plots(docs, out.parent)
    lines = ["# florsql benchmarks", ""]
    if not docs:
        lines.append("No benchmark results found: run `make bench` (or a benchmark) first.")
    else:
        lines.append("Every figure below was measured by `make bench` in the run listed here;")
        lines.append("ratios are against each benchmark's goal (issue 12) and, where the benchmark")
        lines.append("ran it, FlorDB 4.0.1 on the same workload in the same run.")
        lines.append("")
        for d in docs:
            mode = "quick" if d.get("quick") else "full"
            note = f"; {d['notes']}" if d.get("notes") else ""
            lines.append(
                f"- `{d['benchmark']}` ({mode}): {d.get('when', '?')}, {d.get('cores', '?')} "
                f"cores, load average {d.get('load', '?')}{note}"
            )
        lines += ["", *table(docs), *phase_tables(docs)]
    for png in pngs:
        lines += ["", f"![{png.stem}]({png.name})"]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=None, help="the benchmarks' JSON files")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "report.md")
    ns = parser.parse_args(argv)
    docs = load(ns.results or folder())
    render(docs, ns.out)
    print(f"wrote {ns.out} ({len(docs)} benchmark(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
