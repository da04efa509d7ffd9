"""Questions a newcomer asks, answered exactly: florsql's answer against DuckDB's over the same
rows materialized as a plain table (the oracle), and the names runs may share across scripts."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from florsql.engine import Engine
from tests.helpers_sql import BASE_TIME, RunBuilder


def _shared_names_history(repo: Path) -> Path:
    """``a.py`` takes an arg ``x`` and loops over ``step``; ``b.py`` logs values named ``x`` and
    ``step`` (a run cannot log its own arg's name, but another script's runs can)."""
    a = RunBuilder("r1", {"x": 5}, filename="a.py", tstamp=BASE_TIME)
    with a.loop("step", 0):
        a.log("acc", 0.5)
    a.write(repo)
    b = RunBuilder("r2", {}, filename="b.py", tstamp=BASE_TIME.replace(hour=1))
    with b.loop("epoch", 0):
        b.log("x", 100)
        b.log("step", 7)
    b.write(repo)
    return repo


@pytest.mark.xfail(
    strict=True,
    reason="a log name that is an arg (or a loop) of other scripts' runs: logs keeps only the "
    "arg/loop column, so the logged values read as NULL (they are in log_records)",
)
def test_a_log_named_like_another_scripts_arg_keeps_its_values(tmp_path: Path) -> None:
    repo = _shared_names_history(tmp_path / "repo")
    with Engine(repo) as eng, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = eng.execute("SELECT run_id, x, step FROM logs ORDER BY run_id").table.to_pylist()
        records = eng.execute("SELECT name, value_int FROM log_records ORDER BY name").table
    assert records.to_pylist() == [
        {"name": "acc", "value_int": None},
        {"name": "step", "value_int": 7},
        {"name": "x", "value_int": 100},
    ]
    assert {"run_id": "r2", "x": 100, "step": 7} in rows


def test_show_columns_counts_replayed_runs_as_having_the_column(tmp_path: Path) -> None:
    """After a replay computed ``w2`` for both runs, SHOW COLUMNS said ``runs_with`` 2 and
    ``runs_lacking`` 2 (of 2 runs): the lacking count ignored replayed values. Now a run lacks a
    column when it has no value of it, recorded or replayed; the column stays a hindsight one."""
    import florsql
    from tests.test_flight_support import recorded_repo

    repo = recorded_repo(tmp_path / "proj")
    with florsql.connect(repo, replay="auto") as con:
        before = {r[0]: r for r in con.execute("SHOW COLUMNS FROM logs").fetchall()}
        assert before["w2"][3:7] == (True, [], 0, 2)  # hindsight, versions, with, lacking
        assert con.execute("SELECT count(w2) FROM logs").fetchall() == [(6,)]
        after = {r[0]: r for r in con.execute("SHOW COLUMNS FROM logs").fetchall()}
        plan = [r[0] for r in con.execute("EXPLAIN SELECT w2 FROM logs").fetchall()]
    # EXPLAIN counts the runs that did not record it (it said they "lack it", replayed or not)
    assert plan[:2] == [
        "Replay plan: nothing to replay (every value the query reads exists)",
        "  hindsight columns: w2 (2 run(s) did not record it)",
    ]
    assert after["w2"][3] is True and after["w2"][5:7] == (2, 0)
    assert after["loss"][5:7] == (2, 0)
