"""``florsql query`` with ``?`` parameters (``--param/-p``, in order) and EXPLAIN in every
``--format``, run as users run it: a ``florsql`` process. The DB-API is the oracle for what the
same values bind to."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import florsql
from tests.helpers import script_env
from tests.test_flight_support import recorded_repo

#: The replay service (and its query host) stay out: each command is its own process.
ALONE = {"FLORSQL_REPLAY_SERVICE": "0", "FLORSQL_QUERY_HOST": "0"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield recorded_repo(tmp_path_factory.mktemp("cli-params") / "proj")


def florsql_query(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from florsql.cli import main; main()", "query", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=script_env(**ALONE),
        timeout=300,
    )


def db_api(repo: Path, sql: str, params: list[object]) -> list[dict[str, object]]:
    with florsql.connect(repo=str(repo)) as con:
        cur = con.cursor()
        cur.execute(sql, params)
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_each_param_binds_the_next_placeholder_as_the_db_api_binds_its_value(
    repo: Path,
) -> None:
    sql = (
        "SELECT ? AS a, typeof(?) AS ta, ? AS b, typeof(?) AS tb, ? AS c, ? IS NULL AS d, "
        "? AS e, typeof(?) AS te, typeof(?) AS tf, ? AS g, typeof(?) AS tg"
    )
    texts = ["1", "1", "0.5", "0.5", "true", "null", "abc", '"1"', "2020-01-01", "[1, 2]"]
    texts.append("[1, 2]")
    values: list[object] = [1, 1, 0.5, 0.5, True, None, "abc", "1", "2020-01-01", [1, 2], [1, 2]]
    done = florsql_query(repo, sql, *[a for t in texts for a in ("-p", t)], "--format", "json")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    (row,) = json.loads(done.stdout)
    assert row == {
        "a": 1,
        "ta": "INTEGER",
        "b": 0.5,
        "tb": "DOUBLE",
        "c": True,
        "d": True,
        "e": "abc",
        "te": "VARCHAR",
        "tf": "VARCHAR",
        "g": [1, 2],
        "tg": "INTEGER[]",
    }
    assert db_api(repo, sql, values) == [row]


def test_params_restrict_a_query_of_logs_in_order(repo: Path) -> None:
    sql = (
        "SELECT lr, epoch, count(*) AS n FROM logs WHERE lr > ? AND epoch IN (?, ?) "
        "AND loss IS NOT NULL GROUP BY ALL ORDER BY ALL"
    )
    done = florsql_query(repo, sql, "-p", "0.15", "--param", "2", "-p", "0", "--format", "csv")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout == "lr,epoch,n\n0.2,0,4\n0.2,2,4\n"
    rows = db_api(repo, sql, [0.15, 2, 0])
    assert [f"{r['lr']},{r['epoch']},{r['n']}" for r in rows] == done.stdout.split()[1:]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("SELECT ? AS a",), "Error: the query has 1 parameter(s) (?), 0 value(s) given\n"),
        (("SELECT 1 AS a", "-p", "1"), "Error: the query has 0 parameter(s) (?), 1 value(s) given"),
        (("SELECT ? AS a", "-p", '{"k": 1}'), "Error: "),
    ],
)
def test_a_wrong_number_or_kind_of_params_is_one_error_line(
    repo: Path, args: tuple[str, ...], message: str
) -> None:
    done = florsql_query(repo, *args)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr


EXPLAIN = "EXPLAIN SELECT epoch, avg(w2) AS w2 FROM logs WHERE lr > ? GROUP BY ALL"


def test_explain_honours_the_format(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EXPLAIN printed its plain lines whatever --format said; now csv and json get a table of
    one ``plan`` column (a line a row), as the DB-API returns it, and table keeps the lines.
    The DB-API side runs as the commands do, without the replay service: EXPLAIN's wall time
    counts a service another test of this module left running as warm, and the commands'
    private worker as cold."""
    for name, value in ALONE.items():
        monkeypatch.setenv(name, value)
    with florsql.connect(repo=str(repo)) as con:
        cur = con.cursor()
        cur.execute(EXPLAIN, [0.15])
        assert [d[0] for d in cur.description or ()] == ["plan"]
        lines = [str(r[0]) for r in cur.fetchall()]
    assert lines[0].startswith("Replay plan: 1 run(s)")
    as_csv = florsql_query(repo, EXPLAIN, "-p", "0.15", "--format", "csv")
    assert (as_csv.returncode, as_csv.stderr) == (0, ""), as_csv.stderr
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [["plan"], *[[x] for x in lines]]
    as_json = florsql_query(repo, EXPLAIN, "-p", "0.15", "--format", "json")
    assert json.loads(as_json.stdout) == [{"plan": x} for x in lines]
    as_table = florsql_query(repo, EXPLAIN, "-p", "0.15")
    assert as_table.stdout.splitlines() == lines
