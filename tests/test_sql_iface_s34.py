"""Query interfaces tried as a stranger would (s34): the DB-API, ``florsql query`` and the
Flight SQL server over real recorded runs whose script logs names with spaces, dots and mixed
case, quoted and unicode text, large integers and booleans.

Oracle: DuckDB's own Python API, given the same values, over literals or over the rows of
``logs`` computed by hand from the script (its values are a function of the loop indices).

Found: the engine's plan cache was keyed by the ``repr`` of the parameters. A ``memoryview``'s
repr is its address, which the next memoryview reuses holding other bytes, and so is a
``datetime``'s whose ``tzinfo`` class has no ``repr`` of its own: the second query answered with
the first one's value (``SELECT ?`` bound to ``memoryview(b'B')`` answered ``b'A'``; a count
of runs after a time at UTC+1 counted those after the same time at UTC+0), silently. The key is
now the SQL text of the literals the values bind to (florsql/plan/params.py, ``bound_key``).
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

import florsql
from florsql import dbapi
from tests.helpers import make_repo, run_script

#: The stranger's script: names a SQL writer must quote, values that are easy to round.
TRAIN = """
import florsql as flor
lr = flor.arg("lr", 0.1)
opt = flor.arg("Opt", "sgd")
flag = flor.arg("flag", False)
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(2)):
        flor.log("Val Loss", lr * (epoch + 1) + step)
        flor.log("a.b", epoch * 10 + step)
    flor.log("msg", "it's \\"q\\" 日本 é" if epoch == 1 else None)
    flor.log("big", 2**62 + epoch)
    flor.log("ok", epoch % 2 == 0)
    flor.log("CamelCase", epoch)
flor.log("done", "yes")
"""

#: The arguments of the recorded runs.
RUNS = [
    {"lr": 0.1, "Opt": "sgd", "flag": False},
    {"lr": 0.2, "Opt": "ad'am", "flag": True},
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("s34") / "proj", {"train.py": TRAIN})
    run_script(repo, "train.py")
    run_script(repo, "train.py", "--lr", "0.2", "--Opt", "ad'am", "--flag")
    return repo


@pytest.fixture(scope="module")
def con(repo: Path) -> Iterator[dbapi.Connection]:
    with florsql.connect(repo) as connection:
        yield connection


def _ask(con: dbapi.Connection, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return con.cursor().execute(sql, params).fetchall()


class _Offset(datetime.tzinfo):
    """A fixed offset whose class has no ``repr`` of its own (``<... object at 0x...>``)."""

    def __init__(self, hours: int) -> None:
        self.hours = hours

    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(hours=self.hours)

    def dst(self, dt: datetime.datetime | None) -> None:
        return None


def test_values_whose_repr_is_an_address_are_not_answered_from_another_values_plan(
    con: dbapi.Connection,
) -> None:
    oracle = duckdb.connect()
    for i in range(4):  # each memoryview may lie where the previous one lay
        view = memoryview(bytes([65 + i]))
        assert _ask(con, "SELECT ?", [view]) == oracle.execute("SELECT ?", [view]).fetchall()
        del view
    recorded = [t for (t,) in _ask(con, "SELECT DISTINCT tstamp FROM logs ORDER BY 1")]
    assert len(recorded) == 2
    first = recorded[0]
    for hours in (0, 1, -1, 2):
        naive = first.astimezone(datetime.UTC).replace(tzinfo=None)
        when = naive.replace(tzinfo=_Offset(hours))  # the same clock reading, another offset
        want = sum(t > when for t in recorded)
        got = _ask(con, "SELECT count(DISTINCT run_id) FROM logs WHERE tstamp > ?", [when])
        assert got == [(want,)], hours
        del when


@pytest.mark.parametrize(
    "value",
    [2**31 - 1, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1],
)
def test_an_int_parameter_has_the_type_duckdbs_python_api_gives_it(
    con: dbapi.Connection, value: int
) -> None:
    """-2**31 was bound as the literal ``-2147483648``, the negation of a BIGINT, and 2**63 to
    2**64 - 1 as HUGEINT literals, where DuckDB binds an INTEGER and a UBIGINT: ``bit_count(?)``
    of -2**31 answered 33 (not 1), ``~?`` of 2**63 -2**63 - 1 (not 2**63 - 1)."""
    sql = "SELECT ?, typeof(?), bit_count(?), ~?"
    want = duckdb.connect().execute(sql, [value] * 4).fetchall()
    assert _ask(con, sql, [value] * 4) == want
