"""``make demo`` / ``florsql demo``: record runs of the example torch script, add a log statement
to today's code, and answer a hindsight SQL query by replaying the old runs.

Runs in a fresh temporary git repository (or ``--dir``), so the user's own repositories are never
touched. Prints; this is a front end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train.py"

#: (label, command-line arguments) of the recorded runs.
RUNS = (
    ("baseline", ["--lr", "0.05"]),
    ("higher lr", ["--lr", "0.1", "--epochs", "3"]),
    ("FlorDB-style kwargs", ["--kwargs", "lr=0.02", "seed=1"]),
)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def make_project(where: Path) -> Path:
    """A git repo holding the example script, committed."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE, where / "train.py")
    _git(where, "init", "-q", "-b", "main")
    _git(where, "-c", "user.name=demo", "-c", "user.email=demo@localhost", "add", "train.py")
    _git(
        where,
        "-c",
        "user.name=demo",
        "-c",
        "user.email=demo@localhost",
        "commit",
        "-q",
        "-m",
        "example training script",
    )
    return where


def record_runs(repo: Path) -> None:
    for label, args in RUNS:
        print(f"  recording run ({label}): python train.py {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, "train.py", *args], cwd=repo, check=True)


def show(repo: Path) -> None:
    from florsql.engine.session import Engine

    with Engine(repo) as eng:
        for title, sql in (
            (
                "runs",
                "SELECT run_id, vid[:10] AS vid, status, lr, epochs, seed FROM runs "
                "ORDER BY tstamp",
            ),
            (
                "val_acc per epoch (SELECT lr, epoch, val_acc FROM logs)",
                "SELECT lr, epoch, round(val_acc, 4) AS val_acc FROM logs "
                "WHERE val_acc IS NOT NULL ORDER BY lr, epoch",
            ),
        ):
            print(f"\n{title}:")
            _print_table(eng.execute(sql).table)


#: The log statements today's code gains: the old runs never logged these.
NEW_STATEMENTS = (
    (
        '            flor.log("loss", loss)\n',
        '            flor.log("loss", loss)\n'
        "            grad_norm = sum(p.grad.norm() ** 2 for p in net.parameters()) ** 0.5\n"
        '            flor.log("grad_norm", grad_norm)\n',
    ),
)

HINDSIGHT_SQL = (
    "SELECT lr, epoch, round(avg(grad_norm), 4) AS avg_grad_norm, count(*) AS steps\n"
    "FROM logs WHERE lr >= 0.05 AND epoch >= 2 GROUP BY ALL ORDER BY lr, epoch"
)


def add_log_statement(repo: Path) -> None:
    """Edit train.py in the working tree, as a user would (no new run)."""
    path = repo / "train.py"
    text = path.read_text()
    for old, new in NEW_STATEMENTS:
        text = text.replace(old, new)
    path.write_text(text)
    diff = subprocess.run(
        ["git", "-C", str(repo), "diff", "--", "train.py"], capture_output=True, text=True
    ).stdout
    print("\ntoday's train.py gains a log statement that no recorded run has:\n")
    print("\n".join("    " + line for line in diff.splitlines()[4:]))


def hindsight(repo: Path) -> None:
    import time

    from florsql.engine.session import Engine
    from florsql.replay import PlanExecutor, Progress

    def progress(p: Progress) -> None:
        print(
            f"    replay: {p.tasks_done}/{p.tasks_total} tasks, "
            f"{p.iterations_done}/{p.iterations_total} epochs, {p.elapsed:.1f}s",
            flush=True,
        )

    executor = PlanExecutor(progress=progress)
    with Engine(repo, replay="auto", executor=executor) as eng:
        print(f"\nEXPLAIN {HINDSIGHT_SQL}\n")
        for line in eng.execute("EXPLAIN " + HINDSIGHT_SQL).table.column(0).to_pylist():
            print("    " + line)
        planned = eng.plan(HINDSIGHT_SQL).replay
        wall = planned.cost.wall if planned is not None else None
        print(f"\n{HINDSIGHT_SQL}\n")
        t0 = time.perf_counter()
        table = eng.execute(HINDSIGHT_SQL).table
        first = time.perf_counter() - t0
        _print_table(table)
        report = executor.last
        if report is not None:
            print(
                f"replayed {len(report.results)} task(s) in {report.seconds:.1f}s"
                + (f" (EXPLAIN's estimate {wall:.1f}s)" if wall is not None else "")
                + f"; answered in {first:.1f}s"
            )
        t0 = time.perf_counter()
        eng.execute(HINDSIGHT_SQL)
        print(f"the same query again: {time.perf_counter() - t0:.2f}s, nothing replayed")


def _print_table(table: object) -> None:
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    rows = table.to_pylist()
    cols = table.column_names
    cells = [[("" if r[c] is None else str(r[c])) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    print(f"  ({len(rows)} rows)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="florsql demo", description=__doc__)
    parser.add_argument("--dir", type=Path, help="where to create the demo repo (default: temp)")
    ns = parser.parse_args(argv)
    where = ns.dir or Path(tempfile.mkdtemp(prefix="florsql-demo-")) / "project"
    print(f"florsql demo in {where}")
    repo = make_project(where)
    record_runs(repo)
    show(repo)
    add_log_statement(repo)
    hindsight(repo)
    print(f"\nThe recorded history lives in {repo / '.florsql'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
