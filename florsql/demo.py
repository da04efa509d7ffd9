"""``make demo`` / ``florsql demo``: record a few runs of the example torch script and show them.

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
    from florsql.store.index import Index

    with Index.open(repo) as ix:
        ix.refresh()
        queries = {
            "runs": "SELECT run_id, vid[:10] AS vid, status, lr, epochs, seed FROM runs "
            "ORDER BY tstamp",
            "loops (iterations and wall time)": "SELECT loop_name, count(*) AS iterations, "
            "round(sum(seconds), 3) AS seconds FROM loops GROUP BY ALL ORDER BY 1",
            "val_acc per epoch": """SELECT r.lr, p.iteration AS epoch,
                round(l.value_float, 4) AS val_acc
                FROM log_records l JOIN ctx_path p USING (run_id, ctx_id) JOIN runs r
                USING (run_id) WHERE l.name = 'val_acc' ORDER BY r.tstamp, epoch""",
            "checkpoints": "SELECT count(*) AS files, sum(bytes) AS bytes, "
            "round(sum(copy_seconds) * 1000, 2) AS copy_ms FROM checkpoints",
        }
        for title, sql in queries.items():
            print(f"\n{title}:")
            ix.con.sql(sql).show()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="florsql demo", description=__doc__)
    parser.add_argument("--dir", type=Path, help="where to create the demo repo (default: temp)")
    ns = parser.parse_args(argv)
    where = ns.dir or Path(tempfile.mkdtemp(prefix="florsql-demo-")) / "project"
    print(f"florsql demo in {where}")
    repo = make_project(where)
    record_runs(repo)
    show(repo)
    print(f"\nThe recorded history lives in {repo / '.florsql'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
