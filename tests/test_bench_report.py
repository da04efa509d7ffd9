"""benchmarks/report.py assembles benchmarks/report.md from the benchmarks' JSON figures (tiny
made-up results here: the report's assembly is tested, never a timing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_report_has_every_figure_against_its_goal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = _load("results")
    report = _load("report")
    monkeypatch.setenv("FLORSQL_BENCH_RESULTS", str(tmp_path / "results"))
    results.write(
        "hindsight",
        [
            results.Row("epoch-level speed-up", 9.5, "x", 8, ">="),
            results.Row("EXPLAIN / actual", 2.0, "x", 1.5, "<="),
            results.Row("runs of v2: query s", 1.0, "s", flordb=12.0, flordb_goal=10),
        ],
        [results.Series("replay_vs_workers", "epoch-level", [1, 2], [3.0, 2.0])],
        quick=True,
        extra={"task_phases": {"a": {"start": 0.01, "load": 0.025, "restores": 4.0}}},
    )
    results.write("record_overhead", [results.Row("overhead %", 0.5, "%", 1, "<=")])
    out = tmp_path / "out" / "report.md"
    assert report.main(["--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| hindsight")]
    assert len(rows) == 3
    assert "| epoch-level speed-up | 9.5x | >= 8x | yes |" in rows[0]
    assert "| EXPLAIN / actual | 2x | <= 1.5x | **no** |" in rows[1]
    assert "| 1 s | FlorDB / this >= 10x | yes | 12 s | 12x |" in rows[2]
    assert "| record_overhead | overhead % | 0.5% | <= 1% | yes |" in text
    assert "`hindsight` (quick)" in text
    assert "Replay task phases, `hindsight`" in text
    assert "| configuration | start | load | restores |" in text
    assert "| a | 0.010 | 0.025 | 4 |" in text
    if importlib.util.find_spec("matplotlib") is not None:  # the bench extra
        assert (out.parent / "replay_vs_workers.png").is_file()
        assert "![replay_vs_workers](replay_vs_workers.png)" in text


def test_report_without_results_says_so(tmp_path: Path) -> None:
    report = _load("report")
    out = tmp_path / "report.md"
    assert report.main(["--results", str(tmp_path / "none"), "--out", str(out)]) == 0
    assert "No benchmark results found" in out.read_text()


def test_every_benchmark_of_make_bench_writes_its_figures() -> None:
    """`make bench` runs each script, then report.py: each must hand its figures to
    results.write (a script that only prints would be missing from the report)."""
    import ast
    import re

    makefile = (BENCH.parent / "Makefile").read_text()
    recipe = makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    scripts = re.findall(r"benchmarks/(\w+)\.py", recipe)
    assert "record_overhead" in scripts and "ray_executor" in scripts
    for name in (s for s in scripts if s != "report"):
        tree = ast.parse((BENCH / f"{name}.py").read_text())
        calls = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "write"
        ]
        assert any(
            isinstance(c.args[0], ast.Constant) and c.args[0].value == name for c in calls
        ), f"{name}.py never calls write({name!r}, ...)"
