"""Placeholders of other drivers' styles are refused by name, at their column, saying what
florsql takes (positional ``?``), from ``florsql query`` and from the DB-API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import florsql
from florsql import dbapi
from florsql.cli import main
from florsql.grammar.placeholders import ACCEPTED
from tests.helpers import make_repo
from tests.helpers_sql import fixture_history

#: (query, the placeholder as written, its 1-based line and column)
CASES = [
    ("SELECT :x", ":x", 1, 8),  # the issue: before, "syntax error near 'SELECT'" at column 1
    ("SELECT * FROM logs WHERE lr > :lr", ":lr", 1, 31),
    ("SELECT * FROM logs WHERE lr > :1", ":1", 1, 31),
    ("SELECT * FROM logs WHERE lr > %(lr)s", "%(lr)s", 1, 31),
    ("SELECT * FROM logs WHERE lr > %s AND epoch = 1", "%s", 1, 31),
    ("SELECT * FROM logs\nWHERE lr > $lr", "$lr", 2, 12),
    ("SELECT * FROM logs WHERE lr > $1", "$1", 1, 31),
    ("SELECT run_id FROM logs WHERE lr >= @lr AND", "@lr", 1, 37),  # not SQL, so a parameter
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_history(make_repo(tmp_path_factory.mktemp("params") / "repo"))


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dbapi.Connection]:
    with florsql.connect(fixture_history(tmp_path_factory.mktemp("dbapi") / "repo")) as c:
        yield c


@pytest.mark.parametrize(("sql", "written", "line", "col"), CASES)
def test_db_api_names_the_placeholder(
    con: dbapi.Connection, sql: str, written: str, line: int, col: int
) -> None:
    with pytest.raises(dbapi.ProgrammingError) as info:
        con.execute(sql)
    error = info.value
    assert error.message == f"the placeholder {written} is not supported: {ACCEPTED}"
    assert (error.line, error.col) == (line, col)


def test_cli_one_shot_names_the_placeholder(repo: Path) -> None:
    result = CliRunner().invoke(main, ["query", "SELECT :x", "--repo", str(repo)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: the placeholder :x is not supported: {ACCEPTED} (line 1, column 8)\n"
    )
    args = ["query", "SELECT * FROM logs WHERE lr > %(lr)s", "--repo", str(repo)]
    pct = CliRunner().invoke(main, args)
    assert "the placeholder %(lr)s is not supported" in pct.stderr
    assert pct.stderr.endswith("(line 1, column 31)\n")


def test_at_sign_is_absolute_value_and_an_unknown_name_says_so(con: dbapi.Connection) -> None:
    """``@x`` is DuckDB's ``abs(x)``: valid over a column, explained over an unknown name."""
    assert con.execute("SELECT @lr AS a FROM runs WHERE run_id = 'r1'").fetchall() == [(0.1,)]
    with pytest.raises(dbapi.ProgrammingError) as info:
        con.execute("SELECT run_id FROM logs WHERE lr >= @min_lr")
    assert "@min_lr is DuckDB's absolute value of min_lr, not a parameter" in str(info.value)
    assert ACCEPTED in str(info.value)


def test_a_mapping_of_parameters_is_refused_by_name(con: dbapi.Connection) -> None:
    with pytest.raises(dbapi.ProgrammingError) as info:
        con.execute("SELECT * FROM logs WHERE lr > ?", {"lr": 0.1})
    assert (
        str(info.value) == f"named parameters (lr) are not supported: {ACCEPTED} (a list or tuple)"
    )
    assert con.execute("SELECT count(*) FROM logs WHERE lr > ?", [0.15]).fetchone() == (34,)


def test_slices_and_struct_keys_are_no_placeholders(con: dbapi.Connection) -> None:
    row = con.execute("SELECT [1, 2, 3][2:3] AS s, {'a': 1} AS t").fetchone()
    assert row == ([2, 3], {"a": 1})


@pytest.mark.parametrize("sql", ["%0", "%", "SELECT %(", "SELECT %(x", "SELECT %(x)", ":", "$"])
def test_cut_short_placeholders_are_syntax_errors(sql: str) -> None:
    """Found by tests/test_grammar_hypothesis.py: `%0` raised an IndexError."""
    from florsql.errors import ParseError
    from florsql.grammar import parse

    with pytest.raises(ParseError):
        parse(sql)
