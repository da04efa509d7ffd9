"""The DuckDB index: incremental, idempotent, one owner at a time, rebuildable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from florsql.errors import StoreError
from florsql.store.index import Index
from tests.helpers import run_script

QUERIES = [
    "SELECT * FROM runs ORDER BY run_id",
    "SELECT * EXCLUDE (first_run, last_run) FROM versions ORDER BY vid",
    "SELECT * FROM args ORDER BY run_id, name",
    "SELECT * FROM loops ORDER BY run_id, ctx_id",
    "SELECT * FROM ctx_path ORDER BY run_id, ctx_id, depth",
    "SELECT * FROM log_records ORDER BY run_id, seq",
    "SELECT * FROM checkpoints ORDER BY run_id, loop_name, iteration",
]


def _answers(repo: Path) -> list[list[tuple[object, ...]]]:
    with Index.open(repo) as ix:
        ix.refresh()
        return [ix.con.sql(q).fetchall() for q in QUERIES]


def test_refresh_is_incremental_and_idempotent(tiny_repo: Path) -> None:
    run_script(tiny_repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    with Index.open(tiny_repo) as ix:
        first = ix.refresh()
        assert first.new_segments >= 1 and first.new_rows > 0
        again = ix.refresh()
        assert (again.new_segments, again.new_rows) == (0, 0)
        n = ix.con.sql("SELECT count(*) FROM log_records").fetchall()[0][0]
    run_script(tiny_repo, "train.py", "--lr", "0.2")
    with Index.open(tiny_repo) as ix:
        second = ix.refresh()
        assert second.runs == 2 and second.new_segments >= 1
        assert ix.con.sql("SELECT count(*) FROM log_records").fetchall()[0][0] == 2 * n
        lrs = ix.con.sql("SELECT lr FROM runs ORDER BY lr").fetchall()
        assert lrs == [(0.1,), (0.2,)]


def test_deleting_the_index_rebuilds_the_same_answers(tiny_repo: Path) -> None:
    run_script(tiny_repo, "train.py")
    run_script(tiny_repo, "train.py", "--epochs", "2")
    before = _answers(tiny_repo)
    (tiny_repo / ".florsql" / "index.duckdb").unlink()
    assert _answers(tiny_repo) == before


def test_a_second_opener_gets_a_clear_error(tiny_repo: Path) -> None:
    run_script(tiny_repo, "train.py")
    with Index.open(tiny_repo):
        code = (
            "import sys; from florsql.store.index import Index\n"
            "try:\n    Index.open(sys.argv[1])\nexcept Exception as e:\n"
            "    print(type(e).__name__, e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tiny_repo)], capture_output=True, text=True
        )
        assert out.stdout.startswith("StoreError") and "in use by another process" in out.stdout
    with Index.open(tiny_repo, wait=5):  # released: the next opener gets it
        pass


def test_in_process_second_opener_waits_then_fails(tiny_repo: Path) -> None:
    with Index.open(tiny_repo), pytest.raises(StoreError, match="wait=SECONDS"):
        Index.open(tiny_repo, wait=0.2)


def test_corrupt_index_is_rebuilt(tiny_repo: Path) -> None:
    run_script(tiny_repo, "train.py")
    before = _answers(tiny_repo)
    (tiny_repo / ".florsql" / "index.duckdb").write_bytes(b"not a database" * 100)
    with pytest.warns(Warning, match="rebuilding"):
        after = _answers(tiny_repo)
    assert after == before


def test_an_index_made_by_other_schema_code_is_brought_up_to_date(tiny_repo: Path) -> None:
    """Opening an index made by this very code runs no DDL; one made by other code (an older
    florsql with the same schema version) gets this code's tables and views, with its data;
    one of another schema version is rebuilt from the run files."""
    run_script(tiny_repo, "train.py")
    before = _answers(tiny_repo)
    with Index.open(tiny_repo) as ix:
        ix.con.execute("DROP VIEW versions")
        ix.con.execute("UPDATE meta SET value = 'older code' WHERE key = 'ddl'")
    assert _answers(tiny_repo) == before  # the view is back
    with Index.open(tiny_repo) as ix:
        ix.con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        ix.con.execute("DELETE FROM log_records")
    assert _answers(tiny_repo) == before  # rebuilt: the rows are back
    with Index.open(tiny_repo) as ix:
        ix.con.execute("UPDATE meta SET value = 'not a number' WHERE key = 'schema_version'")
    assert _answers(tiny_repo) == before
