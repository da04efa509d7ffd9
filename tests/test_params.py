"""``?`` parameters: bound by their place in the text, each value an exact literal of its type.

The property test is differential: a generated query with ``?`` in WHERE, HAVING, LIMIT, OFFSET,
CTEs, subqueries and UNION branches gives the same rows as the same query with the values
written in as literals, both run by the engine over a real (on-disk, ingested) history.
"""

from __future__ import annotations

import decimal
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from florsql.engine import Engine
from florsql.errors import PlanError
from tests.helpers_sql import fixture_history


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    repo = fixture_history(tmp_path_factory.mktemp("params") / "repo")
    with Engine(repo) as eng:
        yield eng


def rows(engine: Engine, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return engine.execute(sql, params).table.to_pylist()


def test_limit_after_where_binds_in_text_order(engine: Engine) -> None:
    got = rows(
        engine, "SELECT run_id, lr FROM runs WHERE lr >= ? ORDER BY run_id LIMIT ?", [0.1, 2]
    )
    assert got == [{"run_id": "r1", "lr": 0.1}, {"run_id": "r2", "lr": 0.2}]


def test_cte_parameter_comes_first(engine: Engine) -> None:
    sql = "WITH r AS (SELECT * FROM runs WHERE lr > ?) SELECT run_id FROM r WHERE lr < ?"
    assert rows(engine, sql, [0.1, 0.3]) == [{"run_id": "r2"}]


def test_sqlalchemy_select_where_limit_offset(engine: Engine) -> None:
    """The text and parameter order SQLAlchemy produces for a qmark driver."""
    logs = sa.Table("logs", sa.MetaData(), sa.Column("run_id"), sa.Column("lr"), sa.Column("loss"))
    query = (
        sa.select(logs.c.run_id, logs.c.loss)
        .where(logs.c.lr >= 0.2)
        .order_by(logs.c.run_id, logs.c.loss)
        .limit(3)
        .offset(1)
    )
    compiled = query.compile(dialect=sqlite.dialect())
    assert "LIMIT ? OFFSET ?" in compiled.string
    params = [compiled.params[name] for name in compiled.positiontup or []]
    got = [(r["run_id"], r["loss"]) for r in rows(engine, compiled.string, params)]
    assert got == [("r2", 0.0), ("r2", 0.0), ("r2", 0.0)]  # 3 rows after the first of r2


def test_parameter_with_a_cast(engine: Engine) -> None:
    assert rows(engine, "SELECT ?::VARCHAR AS a, ? AS b", [1.5, 2]) == [{"a": "1.5", "b": 2}]


@pytest.mark.parametrize(
    ("value", "sql_type", "shown"),
    [
        (float("nan"), "DOUBLE", "nan"),
        (float("inf"), "DOUBLE", "inf"),
        (float("-inf"), "DOUBLE", "-inf"),
        (0.1, "DOUBLE", "0.1"),
        (0.30000000000000004, "DOUBLE", "0.30000000000000004"),
        (np.float64(0.3), "DOUBLE", "0.3"),
        (np.float32(0.1), "FLOAT", "0.1"),
        (np.int64(3), "BIGINT", "3"),
        (np.int32(-3), "INTEGER", "-3"),
        (np.uint8(200), "UTINYINT", "200"),
        (np.bool_(True), "BOOLEAN", "true"),
        (True, "BOOLEAN", "true"),
        (decimal.Decimal("1.25"), "DECIMAL(3,2)", "1.25"),
        (2**100, "HUGEINT", str(2**100)),
        ("it's", "VARCHAR", "it's"),
    ],
)
def test_values_bind_as_their_own_type(
    engine: Engine, value: Any, sql_type: str, shown: str
) -> None:
    got = rows(engine, "SELECT typeof(?) AS t, CAST(? AS VARCHAR) AS v", [value, value])
    assert got == [{"t": sql_type, "v": shown}]


@pytest.mark.parametrize(
    "text",
    ["1", "-0", "1E+2", "0E+3", "1.0E+1", "12345678901234567890123456789012345678", "0.5",
     "10.50", "-1.5E-3", "0E-2", "0.000", "-12.345"],
)  # fmt: skip
def test_decimals_bind_as_duckdbs_api_binds_them(engine: Engine, text: str) -> None:
    """A Decimal is a DECIMAL of its own digits, as DuckDB's Python API binds it (the oracle):
    an integral one (``Decimal('1')``) was an INTEGER (or a HUGEINT) before, and came back as
    an ``int``."""
    import duckdb

    value = decimal.Decimal(text)
    sql = "SELECT ? AS v, typeof(?) AS t"
    want = duckdb.connect().execute(sql, [value, value]).fetchall()
    got = [tuple(r.values()) for r in rows(engine, sql, [value, value])]
    assert got == want and type(got[0][0]) is decimal.Decimal


NS_2020, NS_1969 = "2020-01-01 00:00:00.000000001", "1969-12-31 23:59:59.999999999"


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (np.datetime64("2020-01-01T00:00:00.000000001"), f"TIMESTAMP_NS '{NS_2020}'"),
        (np.datetime64("1969-12-31T23:59:59.999999999"), f"TIMESTAMP_NS '{NS_1969}'"),
        (np.datetime64("2020-01-01T00:00:00.000001000"), "TIMESTAMP '2020-01-01 00:00:00.000001'"),
        (np.datetime64("NaT"), "NULL"),
        (np.timedelta64(5000, "ns"), "INTERVAL 5 MICROSECONDS"),
        (np.timedelta64(3, "M"), "INTERVAL 3 MONTHS"),
        (np.timedelta64(2, "Y"), "INTERVAL 2 YEARS"),
    ],
)  # fmt: skip
def test_numpy_times_bind_as_times_not_numbers(engine: Engine, value: Any, literal: str) -> None:
    """``item()`` of a nanosecond datetime64 (or a timedelta64 of ns, months or years) is a
    plain integer: it bound as a BIGINT (DuckDB's own API does the same). The oracle is
    DuckDB's reading of the literal the value stands for."""
    import duckdb

    sql = "SELECT CAST(? AS VARCHAR) AS v, typeof(?) AS t"
    want = duckdb.connect().execute(f"SELECT CAST({literal} AS VARCHAR), typeof({literal})")
    assert [tuple(r.values()) for r in rows(engine, sql, [value, value])] == want.fetchall()


def test_times_below_the_microsecond_bind_exactly_or_are_refused(engine: Engine) -> None:
    import pandas as pd

    got = rows(
        engine, "SELECT CAST(? AS VARCHAR) AS v", [pd.Timestamp("2020-01-01 00:00:00.000000001")]
    )
    assert got == [{"v": "2020-01-01 00:00:00.000000001"}]  # was cut to the microsecond
    for value in (np.timedelta64(5, "ns"), pd.Timedelta(1, "ns"), pd.Timestamp(1, tz="UTC")):
        with pytest.raises(PlanError, match=r"parameter 1: .*(nanoseconds|microsecond)"):
            rows(engine, "SELECT ?", [value])


def test_floats_bind_exactly(engine: Engine) -> None:
    values = [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -0.0, np.float32(1 / 3)]
    got = rows(engine, "SELECT " + ", ".join(f"? AS c{i}" for i in range(len(values))), values)
    assert [got[0][f"c{i}"] for i in range(len(values))] == [float(v) for v in values]
    nan, inf = rows(engine, "SELECT ? AS a, ? AS b", [float("nan"), float("inf")])[0].values()
    assert math.isnan(nan) and inf == math.inf


def test_unbindable_values_say_which_parameter(engine: Engine) -> None:
    with pytest.raises(PlanError, match=r"parameter 2: cannot bind a value of type object"):
        rows(engine, "SELECT ?, ?", [1, object()])
    with pytest.raises(PlanError, match=r"parameter 1: the integer .* beyond"):
        rows(engine, "SELECT ?", [10**40])


# -- property: bound == inlined ---------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """A ``?`` in a generated query, with its value."""

    value: Any


Fragment = list[str | Slot]


def render(fragment: Fragment, inline: bool) -> tuple[str, list[Any]]:
    text, params = [], []
    for part in fragment:
        if isinstance(part, Slot):
            text.append(_literal(part.value) if inline else "?")
            params.append(part.value)
        else:
            text.append(part)
    return "".join(text), ([] if inline else params)


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


floats = st.sampled_from([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0])
small = st.integers(0, 4)
run_ids = st.sampled_from(["r1", "r2", "r3", "r4", "rx"])


@st.composite
def predicate(draw: st.DrawFn) -> Fragment:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return ["lr ", draw(st.sampled_from([">", ">=", "<", "<=", "="])), " ", Slot(draw(floats))]
    if choice == 1:
        return ["step < ", Slot(draw(small))]
    if choice == 2:
        return ["run_id <> ", Slot(draw(run_ids))]
    if choice == 3:
        return ["epoch BETWEEN ", Slot(draw(small)), " AND ", Slot(draw(small))]
    if choice == 4:
        return ["run_id IN (SELECT run_id FROM runs WHERE lr < ", Slot(draw(floats)), ")"]
    return ["coalesce(loss, ", Slot(draw(floats)), ") <= ", Slot(draw(floats))]


@st.composite
def where(draw: st.DrawFn) -> Fragment:
    parts = draw(st.lists(predicate(), min_size=1, max_size=3))
    out: Fragment = [" WHERE "]
    for i, part in enumerate(parts):
        if i:
            out.append(draw(st.sampled_from([" AND ", " OR "])))
        out += ["(", *part, ")"]
    return out


@st.composite
def core(draw: st.DrawFn, source: str = "logs") -> Fragment:
    """A SELECT of (run_id, x) rows, grouped or not."""
    filtered = draw(where()) if draw(st.booleans()) else []
    if draw(st.booleans()):
        having: Fragment = []
        if draw(st.booleans()):
            having = [" HAVING count(*) > ", Slot(draw(st.integers(0, 12)))]
        return [
            "SELECT run_id, count(*) AS x FROM ",
            source,
            *filtered,
            " GROUP BY run_id",
            *having,
        ]
    return ["SELECT run_id, coalesce(loss, -1) + ", Slot(draw(small)), " AS x FROM ", source,
            *filtered]  # fmt: skip


@st.composite
def query(draw: st.DrawFn) -> Fragment:
    body: Fragment
    head: Fragment = []
    source = "logs"
    if draw(st.booleans()):  # a CTE with its own parameters, read by the body
        head = ["WITH c AS (SELECT * FROM logs", *draw(where()), ") "]
        source = "c"
    body = draw(core(source))
    if draw(st.booleans()):
        body = ["(", *body, ") ", draw(st.sampled_from(["UNION ALL", "UNION", "EXCEPT"])), " (",
                *draw(core(source)), ")"]  # fmt: skip
    body = ["SELECT * FROM (", *head, *body, ") q"]
    if draw(st.booleans()):
        body += [" WHERE x >= ", Slot(draw(small))]
    body.append(" ORDER BY ALL")
    if draw(st.booleans()):
        body += [" LIMIT ", Slot(draw(st.integers(0, 8)))]
        if draw(st.booleans()):
            body += [" OFFSET ", Slot(draw(small))]
    return body


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(query())
def test_bound_parameters_give_the_rows_of_inlined_literals(
    engine: Engine, fragment: Fragment
) -> None:
    bound_sql, params = render(fragment, inline=False)
    inlined_sql, _ = render(fragment, inline=True)
    assert rows(engine, bound_sql, params) == rows(engine, inlined_sql), (bound_sql, params)
