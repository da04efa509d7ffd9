"""Query latency over generated histories: florsql vs a flat DuckDB table vs FlorDB 4.0.1.

Histories of about 100k, 1M and 10M log records (runs x 10 epochs x steps, three names per step
and one per epoch) are written in the real on-disk format (run.json + Arrow segments) and
ingested by the real index. For each size, p50/p95 over repeated runs of:

  (a) filter + aggregate per epoch      (b) pivot of 3 names for 10 runs
  (c) latest value per run              (d) EXPLAIN of a hindsight query
  (e) flor.dataframe of 3 names (all runs), also timed with FlorDB 4.0.1 where it is installed

and the ratio to the same query over a flat DuckDB table holding the pivot (the floor). The
first query after opening pays for the index refresh and the materialized pivot ("cold"). A
repeated statement reuses its plan while the data holds; "new text each time" defeats that
cache (a counter in a trailing comment), so parse, bind and plan run on every call.

Usage: ``python benchmarks/query_latency.py [--sizes 100k,1m,10m] [--reps 15]``
(the default, 100k and 1M, takes about a minute; 10M adds a few minutes of generation).
FlorDB: ``python -m venv /tmp/flordb-venv && /tmp/flordb-venv/bin/pip install flordb==4.0.1``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import Row, write  # noqa: E402

from florsql.engine import Engine  # noqa: E402
from florsql.engine.frame import dataframe  # noqa: E402
from tests.helpers_sql import write_bulk_run  # noqa: E402

SIZES = {"100k": (20, 10, 165), "1m": (50, 10, 660), "10m": (200, 10, 1650)}
STEP_NAMES = ("loss", "grad_norm", "lr_now")
SCRIPT = """import florsql as flor
lr = flor.arg("lr", 0.1)
for epoch in flor.loop("epoch", range(10)):
    for step in flor.loop("step", range(100)):
        flor.log("loss", 1.0)
        flor.log("grad_norm", 1.0)
        flor.log("lr_now", lr)
        flor.log("grad_var", 0.0)
    flor.log("val_acc", 0.5)
"""
TEN = ", ".join(f"'run{i:04d}'" for i in range(10))
QUERIES = {
    "a filter+agg/epoch": (
        "SELECT epoch, avg(loss) FROM logs WHERE lr > 0.2 GROUP BY epoch ORDER BY epoch",
        "SELECT epoch, avg(loss) FROM flat WHERE lr > 0.2 GROUP BY epoch ORDER BY epoch",
    ),
    "b pivot 3 names/10 runs": (
        f"SELECT run_id, epoch, step, loss, grad_norm, lr_now FROM logs WHERE run_id IN ({TEN})",
        "SELECT run_id, epoch, step, loss, grad_norm, lr_now FROM flat WHERE run_id IN "
        f"({TEN}) AND (loss IS NOT NULL OR grad_norm IS NOT NULL OR lr_now IS NOT NULL)",
    ),
    "c latest per run": (
        "SELECT run_id, arg_max(loss, epoch * 100000 + step) FROM logs GROUP BY run_id",
        "SELECT run_id, arg_max(loss, epoch * 100000 + step) FROM flat GROUP BY run_id",
    ),
}
HINDSIGHT = (
    "EXPLAIN SELECT epoch, avg(grad_var) FROM logs WHERE lr > 0.2 AND epoch >= 5 GROUP BY ALL"
)


def generate(repo: Path, runs: int, epochs: int, steps: int) -> int:
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "train.py").write_text(SCRIPT)
    total = 0
    for r in range(runs):
        total += write_bulk_run(
            repo,
            f"run{r:04d}",
            {"lr": round(0.01 * (r + 1), 3)},
            epochs=epochs,
            steps=steps,
            step_names=STEP_NAMES,
            seed=r,
        )
    return total


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    fn()  # warm-up
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95


def flordb_python() -> Path | None:
    candidate = Path(os.environ.get("FLORDB_PYTHON", "/tmp/flordb-venv/bin/python"))
    if not candidate.exists():
        return None
    ok = subprocess.run(
        [str(candidate), "-c", "import importlib.metadata as m; print(m.version('flordb'))"],
        capture_output=True,
        text=True,
    )
    return candidate if ok.stdout.strip() == "4.0.1" else None


def export_to_flordb(eng: Engine, repo: Path) -> Path:
    """FlorDB 4.0.1's sqlite cache (``.flor/<projid>.db``) holding the same log records."""
    folder = repo / ".flor"
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    db = folder / f"{repo.name}.db"
    rows = eng._box.con.execute(
        """SELECT m.projid, strftime(m.tstamp, '%Y-%m-%dT%H:%M:%S'), m.filename,
                  '[' || string_agg('{"name": "' || p.loop_name || '", "iteration": '
                         || p.iteration || ', "value": null}', ', ' ORDER BY p.depth) || ']',
                  r.name, coalesce(r.value_float, r.value_int)::VARCHAR
           FROM log_records r JOIN run_meta m USING (run_id)
           LEFT JOIN ctx_path p ON p.run_id = r.run_id AND p.ctx_id = r.ctx_id
           GROUP BY ALL"""
    ).fetchall()
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE IF NOT EXISTS logs (projid TEXT, tstamp TEXT, filename TEXT, ctx TEXT, "
        "value_name TEXT, value TEXT, value_type INTEGER, source TEXT NOT NULL DEFAULT "
        "'forward')"
    )
    con.executemany(
        "INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, 1, 'forward')",
        rows,
    )
    con.commit()
    con.close()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return db


def time_flordb(python: Path, repo: Path, reps: int) -> tuple[float, float, int]:
    code = (
        "import time, statistics, flordb as flor\n"
        "names = ('loss', 'grad_norm', 'lr_now')\n"
        "s = []\n"
        f"for _ in range({reps}):\n"
        "    t = time.perf_counter(); df = flor.dataframe(*names)\n"
        "    s.append((time.perf_counter() - t) * 1000)\n"
        "s.sort(); print(statistics.median(s), s[-1], len(df))\n"
    )
    out = subprocess.run(
        [str(python), "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    p50, p95, n = out.stdout.split()[-3:]
    return float(p50), float(p95), int(n)


def bench_size(
    label: str, root: Path, reps: int, flordb: Path | None, rows: list[Row]
) -> list[str]:
    """Print lines for one history size; its figures are appended to ``rows``."""
    import duckdb

    runs, epochs, steps = SIZES[label]
    repo = root / f"proj{label}"
    t0 = time.perf_counter()
    records = generate(repo, runs, epochs, steps)
    gen = time.perf_counter() - t0
    lines = [f"== {label}: {records:,} log records, {runs} runs (generated in {gen:.1f}s)"]
    counter = itertools.count()
    with Engine(repo) as eng, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        eng.execute(QUERIES["a filter+agg/epoch"][0])
        cold = time.perf_counter() - t0
        lines.append(f"   cold (refresh + stats + pivot): {cold:.2f}s")
        rows.append(Row(f"{label}: first query (refresh + stats + pivot)", cold, "s"))
        flat = duckdb.connect()
        flat.register("wide", eng.execute("SELECT * FROM logs").table)
        flat.execute("CREATE TABLE flat AS SELECT * FROM wide")
        for name, (ours, floor) in QUERIES.items():
            got = eng.execute(ours).table.num_rows
            want = len(flat.execute(floor).fetchall())
            assert got == want, (name, got, want)
            p50, p95 = timed(lambda q=ours: eng.execute(q), reps)
            fresh, _ = timed(lambda q=ours: eng.execute(f"{q} -- {next(counter)}"), reps)
            f50, _ = timed(lambda q=floor: flat.sql(q).to_arrow_table(), reps)
            lines.append(
                f"   {name:24s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms   floor {f50:6.1f} ms"
                f"   ratio {p50 / f50:4.2f}   (new text each time: p50 {fresh:6.1f} ms,"
                f" ratio {fresh / f50:4.2f})"
            )
            note = f"p50 {p50:.1f} ms, floor {f50:.1f} ms; planned afresh: {fresh / f50:.2f}x"
            rows.append(Row(f"{label}: ({name}) p50 / flat DuckDB floor", p50 / f50, "x",
                            note=note))  # fmt: skip
        p50, p95 = timed(lambda: eng.execute(f"{HINDSIGHT} -- {next(counter)}"), reps)
        lines.append(
            f"   {'d EXPLAIN hindsight':24s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms"
            "   (new text each time: planned afresh)"
        )
        rows.append(Row(f"{label}: (d) EXPLAIN of a hindsight query, p50", p50, "ms"))
        names = ("loss", "grad_norm", "lr_now")
        p50, p95 = timed(lambda: dataframe(*names, engine=eng), max(3, reps // 3))
        line = f"   {'e dataframe 3 names':24s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms"
        fl50: float | None = None
        if flordb is None:
            line += "   FlorDB 4.0.1: not installed"
        elif label == "10m":
            line += "   FlorDB 4.0.1: skipped at 10M (its pandas merge takes minutes)"
        else:
            export_to_flordb(eng, repo)
            n_ours = dataframe(*names, engine=eng).num_rows
            fl50, _, n = time_flordb(flordb, repo, 3 if label == "100k" else 1)
            line += f"   FlorDB {fl50:8.1f} ms ({n:,} rows vs {n_ours:,})  ratio {p50 / fl50:5.3f}"
        lines.append(line)
        rows.append(Row(f"{label}: (e) dataframe of 3 names, p50", p50, "ms", flordb=fl50))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,1m", help="comma list of 100k, 1m, 10m")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="generate under this folder and keep it")
    parser.add_argument("--quick", action="store_true", help="100k rows, 3 repetitions")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.reps = "100k", 3
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}; choose from {', '.join(SIZES)}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="florsql-bench-"))
    flordb = flordb_python()
    missing = "not available (pip install flordb==4.0.1 into /tmp/flordb-venv)"
    print(f"florsql query latency ({os.cpu_count()} cores); FlorDB 4.0.1: {flordb or missing}")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    rows: list[Row] = []
    try:
        for label in sizes:
            print("\n".join(bench_size(label, root, args.reps, flordb, rows)), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    notes = "no goal in an issue: ratios to the same query over a flat DuckDB table (the floor)"
    if flordb is None:
        notes += "; FlorDB 4.0.1 not installed"
    write("query_latency", rows, quick=args.quick, notes=notes)


if __name__ == "__main__":
    main()
