"""Recording in the environment users have (pandas and polars installed): every way a script
ends writes what it logged, promptly and quietly (issue 10, "Recording in the environments
users have")."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from florsql.store.index import Index
from tests.helpers import make_repo, run_dirs, run_script, write


@pytest.fixture(autouse=True)
def _pandas_installed() -> None:
    # The failure this file guards against needs pandas importable, as users have it.
    assert importlib.util.find_spec("pandas") is not None
    assert importlib.util.find_spec("polars") is not None


def _logs(repo: Path) -> list[tuple[object, ...]]:
    with Index.open(repo) as ix:
        ix.refresh()
        return ix.con.sql(
            "SELECT name, vtype, coalesce(value_int::VARCHAR, value_float::VARCHAR, value_str) "
            "FROM log_records ORDER BY seq"
        ).fetchall()


def _status(repo: Path) -> str:
    (run,) = run_dirs(repo)
    return str(json.loads((run / "run.json").read_text())["status"])


def test_two_line_script_writes_its_value_and_exits_quietly(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p", {"s.py": 'import florsql as flor\nflor.log("acc", 0.9)\n'})
    proc = run_script(repo, "s.py")  # run_script's timeout guards against a hang
    assert proc.stderr == ""
    assert _logs(repo) == [("acc", "float", "0.9")]
    assert _status(repo) == "finished"


def test_script_that_logs_only_at_its_end(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    write(
        repo / "evaluate.py",
        """
        import florsql as flor
        total = sum(i * i for i in range(100_000))  # the evaluation
        flor.log("acc", 0.75)
        flor.log("n", 3)
        flor.log("label", "final")
        flor.log("per_class", [0.5, 1.0])
        flor.log("flag", True)
        flor.log("big", 2**70)
        flor.log("none", None)
        """,
    )
    proc = run_script(repo, "evaluate.py")
    assert proc.stderr == ""
    assert _logs(repo) == [
        ("acc", "float", "0.75"),
        ("n", "int", "3"),
        ("label", "str", "final"),
        ("per_class", "json", "[0.5, 1.0]"),
        ("flag", "bool", "1"),
        ("big", "str", str(2**70)),
        ("none", "null", None),
    ]


def test_script_that_raises_keeps_its_values(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    write(
        repo / "boom.py",
        """
        import florsql as flor
        for epoch in flor.loop("epoch", range(3)):
            flor.log("loss", 1.0 / (epoch + 1))
        flor.log("last", 7)
        raise ValueError("diverged")
        """,
    )
    proc = run_script(repo, "boom.py", check=False)
    assert proc.returncode == 1
    # Only the script's own traceback: nothing from florsql or its writer thread.
    assert proc.stderr.startswith("Traceback") and proc.stderr.endswith("ValueError: diverged\n")
    assert "florsql" not in proc.stderr
    assert _logs(repo) == [
        ("loss", "float", "1.0"),
        ("loss", "float", "0.5"),
        ("loss", "float", str(1.0 / 3)),
        ("last", "int", "7"),
    ]
    assert _status(repo) == "failed"


def test_script_that_calls_sys_exit_keeps_its_values(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    write(
        repo / "early.py",
        """
        import sys
        import florsql as flor
        flor.log("acc", 0.5)
        sys.exit(3)
        """,
    )
    proc = run_script(repo, "early.py", check=False)
    assert proc.returncode == 3 and proc.stderr == ""
    assert _logs(repo) == [("acc", "float", "0.5")]


def test_no_pandas_import_in_a_recorded_script(tmp_path: Path) -> None:
    """pyarrow imports pandas at a process's first ``pa.array``: recording never calls it."""
    repo = make_repo(tmp_path / "p")
    write(
        repo / "train.py",
        """
        import atexit, sys
        # Registered before florsql's own exit handler, so it runs after it (atexit is LIFO):
        # it sees the process after the last flush.
        atexit.register(lambda: print("pandas" in sys.modules, "polars" in sys.modules))
        import florsql as flor
        for epoch in flor.loop("epoch", range(3)):
            for step in flor.loop("step", range(50)):
                flor.log("loss", step / 7)
                flor.log("i", step)
                flor.log("tag", "x")
            flor.log("val", [epoch])
        flor.log("acc", 0.5)
        """,
    )
    proc = run_script(repo, "train.py", FLORSQL_FLUSH_INTERVAL="0")
    assert proc.stdout == "False False\n" and proc.stderr == ""
    assert len(_logs(repo)) == 3 * (50 * 3 + 1) + 1


def test_a_writer_that_cannot_finish_is_left_and_what_is_lost_said(tmp_path: Path) -> None:
    """A store that hangs (here: the checkpoint manifest is a FIFO nobody reads, as a hung
    network mount would) bounds the exit wait and names what was not written, in one line;
    the logged values, written on their own thread, are not held behind it."""
    repo = make_repo(tmp_path / "p")
    write(
        repo / "stuck.py",
        """
        import os
        import florsql as flor
        from florsql.record.api import current_run
        flor.log("first", 1)
        flor.commit()
        run = current_run()
        (run.path / "checkpoints").mkdir()
        os.mkfifo(run.path / "checkpoints" / "manifest.jsonl")
        state = {"w": 0}
        with flor.checkpointing(state=state):
            for epoch in flor.loop("epoch", range(3)):
                state["w"] += 1
                flor.log("x", epoch)
        """,
    )
    # 5 s, not 1: the timeout also bounds flor.commit()'s wait for "first", which a loaded
    # machine can stall past 1 s (seen once, when a segment writer process started there)
    proc = run_script(repo, "stuck.py", check=False, FLORSQL_EXIT_TIMEOUT="5")
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    # The logged values go their own way (not behind the hung checkpoint): only it is lost.
    assert lines[0].startswith("florsql: 1 checkpoint of run "), proc.stderr
    assert "logged values" not in lines[0] and "FLORSQL_EXIT_TIMEOUT" in lines[0]
    (run,) = run_dirs(repo)
    (run / "checkpoints" / "manifest.jsonl").unlink()  # the FIFO would hang the index too
    assert _logs(repo) == [("first", "int", "1")] + [("x", "int", str(e)) for e in range(3)]
