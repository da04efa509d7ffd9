"""The sandbox's policy is an allow-list, whatever the spelling of a call.

Function names are drawn from DuckDB's own ``duckdb_functions()`` and put in every syntactic
position (select list, WHERE, FROM as a table function, ORDER BY, HAVING, a CTE, a subquery, a
lambda body), quoted and unquoted, schema-qualified and in method syntax. A name not on
``florsql.grammar.ALLOWED_FUNCTIONS`` is refused by :func:`florsql.grammar.parse`, which runs no
DuckDB at all; every name on the list is still accepted, and reaches DuckDB, in some form.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from florsql.engine.session import Engine
from florsql.errors import ParseError, PlanError, SqlError
from florsql.grammar import (
    ALLOWED_FUNCTIONS,
    ALLOWED_TABLE_FUNCTIONS,
    CATALOG_NAME,
    FLORSQL_FUNCTIONS,
    parse,
)
from florsql.grammar.functions import SYNTAX
from tests.helpers_sql import fixture_history


def _duckdb_function_names() -> list[str]:
    con = duckdb.connect()
    try:
        rows = con.sql("SELECT DISTINCT function_name FROM duckdb_functions()").fetchall()
    finally:
        con.close()
    return sorted(n for (n,) in rows if re.fullmatch(r"[a-z_][a-z0-9_]*", n))


NAMES = _duckdb_function_names()
#: Not on the list: neither a function, nor syntax, nor answered by florsql itself.
REFUSED = [
    n
    for n in NAMES
    if n not in ALLOWED_FUNCTIONS | SYNTAX | ALLOWED_TABLE_FUNCTIONS and n not in FLORSQL_FUNCTIONS
]
TABLE_FUNCTIONS = sorted(ALLOWED_TABLE_FUNCTIONS)

#: How a call can be written: the name, quoted or not, qualified or not, or as a method.
FORMS = [
    "{n}({a})",
    "{N}({a})",
    '"{n}"({a})',
    "main.{n}({a})",
    '"main"."{n}"({a})',
    "system.main.{n}({a})",
    "pg_catalog.{n}({a})",
    "(1).{n}({a})",
    "'x'.{n}()",
]
#: Where a call can stand.
PLACES = [
    "SELECT {c} FROM logs",
    "SELECT run_id FROM logs WHERE {c} IS NOT NULL",
    "SELECT * FROM {c}",
    "SELECT * FROM logs, {c} AS t",
    "SELECT run_id FROM logs ORDER BY {c}",
    "SELECT run_id FROM logs GROUP BY run_id HAVING {c} > 0",
    "WITH t AS (SELECT {c} AS v FROM logs) SELECT * FROM t",
    "SELECT (SELECT {c}) FROM logs",
    "SELECT * FROM (SELECT {c} FROM runs) AS s",
    "SELECT list_transform([1, 2], x -> {c}) FROM logs",
    "SELECT sum(loss) OVER (ORDER BY {c}) FROM logs",
]


def _sql(place: str, form: str, name: str, args: str) -> str:
    return place.format(c=form.format(n=name, N=name.upper(), a=args))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(REFUSED),
    form=st.sampled_from(FORMS),
    place=st.sampled_from(PLACES),
    args=st.sampled_from(["", "1", "'x'", "1, 2"]),
)
def test_every_function_not_on_the_list_is_refused_before_duckdb(
    name: str, form: str, place: str, args: str
) -> None:
    sql = _sql(place, form, name, args)
    with pytest.raises(ParseError) as info:
        parse(sql)  # the grammar alone: DuckDB never sees the text
    message = info.value.message
    # refused by name; or by another rule first (a string as a table in FROM 'x'.f()), or, for
    # a few names sqlglot cannot take as a call, as a syntax error: all before DuckDB
    assert name in message.lower() or message.startswith(("syntax error", "a string as a table")), (
        sql,
        message,
    )


def test_refusals_name_the_function_for_every_refused_name() -> None:
    """Each refused name, in its plainest form, is refused naming it (not by a syntax error),
    unless sqlglot cannot parse it as a call at all."""
    unnamed = []
    for name in REFUSED:
        for sql in (f'SELECT "{name}"(1)', f"SELECT main.{name}(1)", f"SELECT * FROM {name}(1)"):
            try:
                tree = parse(sql).tree
            except ParseError as error:
                if name not in error.message.lower():
                    unnamed.append((sql, error.message))
                continue
            # sqlglot reads `FROM show(1)` as table "show" with a column alias: no call at all
            # (the planner then refuses the unknown relation)
            assert not list(tree.find_all(exp.Func)), sql
    assert not [u for u in unnamed if not u[1].startswith("syntax error")]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    repo = fixture_history(tmp_path_factory.mktemp("fuzz") / "repo")
    with Engine(repo) as eng:
        yield eng


ARGUMENTS = ["", "1", "'a'", "1, 2", "[1, 2]", "'a', 'b'", "1, 2, 3", "x -> x"]


def _reaches_duckdb(engine: Engine, sql: str) -> bool:
    """True when florsql let ``sql`` through to DuckDB (DuckDB may still reject the arguments).

    The engine's ``on_run`` hook is called with the SQL just before DuckDB runs it.
    """
    ran: list[str] = []
    engine.on_run = ran.append
    try:
        engine.execute(sql)
    except (ParseError, PlanError):
        return False
    except SqlError:
        pass  # DuckDB's own error (a wrong argument type): it saw the call
    finally:
        engine.on_run = None
    return bool(ran)


def test_every_function_on_the_list_works_in_some_form(engine: Engine) -> None:
    refused = []
    for name in sorted(ALLOWED_FUNCTIONS):
        forms = [f"SELECT {name}({a}) FROM runs" for a in ARGUMENTS]
        forms += [f'SELECT "{name}"({a}) FROM runs' for a in ARGUMENTS]
        forms += [f"SELECT {name}({a}) OVER () FROM runs" for a in ARGUMENTS[:3]]
        if not any(_reaches_duckdb(engine, sql) for sql in forms):
            refused.append(name)
    assert not refused


@pytest.mark.parametrize("name", TABLE_FUNCTIONS)
def test_allowed_table_functions_work_quoted_and_qualified(engine: Engine, name: str) -> None:
    arg = "[1, 2, 3]" if name == "unnest" else "1, 3"
    for form in (f"{name}({arg})", f'"{name}"({arg})'):
        rows = engine.execute(f"SELECT count(*) FROM {form}").table.column(0)[0].as_py()
        assert rows == (2 if name == "range" else 3)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT \"current_setting\"('secret_directory')",
        "SELECT \"write_log\"('x')",
        'SELECT "setseed"(0.5)',
        "SELECT \"nextval\"('s')",
        "SELECT main.write_log('x')",
        "SELECT system.main.nextval('s')",
        "SELECT 0.5.setseed()",
        "SELECT 'secret_directory'.current_setting()",
        "SELECT * FROM duckdb_settings()",
        'SELECT * FROM "duckdb_settings"()',
        "SELECT * FROM main.duckdb_databases()",
        "SELECT getvariable('x')",
        "SELECT * FROM logs WHERE lr > (SELECT count(*) FROM duckdb_tables())",
    ],
)
def test_the_spellings_of_the_issue_are_refused(engine: Engine, sql: str) -> None:
    ran: list[str] = []
    engine.on_run = ran.append
    try:
        with pytest.raises(ParseError, match=r"function \w+ "):
            engine.execute(sql)
    finally:
        engine.on_run = None
    assert not ran


@pytest.mark.parametrize(
    "relation",
    [
        "pg_settings",
        "pg_catalog.pg_settings",
        "duckdb_databases",
        "duckdb_settings",
        "duckdb_tables",
        "main.duckdb_views",
        "sqlite_master",
        "run_meta",
        "__flor_names",
        "ingested",
        "meta",
        "flor.main.__flor_names",
        "information_schema.views",
        "system.information_schema.tables",
    ],
)
def test_relations_other_than_florsqls_are_unknown(engine: Engine, relation: str) -> None:
    with pytest.raises(PlanError, match=r"^Unknown relation"):
        engine.execute(f"SELECT * FROM {relation}")


def test_information_schema_lists_florsqls_relations_only(engine: Engine) -> None:
    catalog = engine.catalog()
    tables = engine.execute(
        "SELECT table_catalog, table_schema, table_name FROM information_schema.tables"
    ).table.to_pylist()
    names = [t["table_name"] for t in tables]
    assert names == ["logs", *catalog.relations]
    assert {(t["table_catalog"], t["table_schema"]) for t in tables} == {(CATALOG_NAME, "main")}
    columns = engine.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'logs' ORDER BY ordinal_position"
    ).table.to_pylist()
    assert [c["column_name"] for c in columns] == list(catalog.names())
    for relation in catalog.relations:
        listed = engine.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [relation],
        ).table.column(0)
        assert listed.to_pylist() == list(
            engine.execute(f"FROM {relation} LIMIT 0").table.schema.names
        )
    schemata = engine.execute("SELECT * FROM information_schema.schemata").table.to_pylist()
    assert schemata == [{"catalog_name": CATALOG_NAME, "schema_name": "main"}]
    # Flight SQL's GetTables browses the same relations with the same columns
    from florsql.flight.backend import EngineService

    flight = {t.name: t.schema.names for t in EngineService(engine).tables()}
    assert sorted(flight) == sorted(names)
    for name, cols in flight.items():
        listed = engine.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [name],
        ).table.column(0)
        assert listed.to_pylist() == cols, name


def test_version_and_catalog_name_are_florsqls(engine: Engine) -> None:
    from importlib.metadata import version

    row = engine.execute(
        "SELECT version(), duckdb_version(), current_database(), current_catalog, current_schema()"
    ).table.to_pylist()[0]
    assert row == {
        '"version"()': f"florsql {version('florsql')}",  # DuckDB's own name for it
        "duckdb_version()": f"v{duckdb.__version__}",
        "current_database()": CATALOG_NAME,
        "current_catalog": CATALOG_NAME,
        "current_schema()": "main",
    }
    # Flight SQL's GetCatalogs gives the same name
    from florsql.flight import metadata

    assert metadata.catalogs().column("catalog_name").to_pylist() == [CATALOG_NAME]
    # the catalog name qualifies florsql's relations, as a client reading it would write them
    count = engine.execute(f"SELECT count(*) FROM {CATALOG_NAME}.main.runs").table
    assert count.column(0)[0].as_py() == 4


def test_no_answer_names_the_index_path(engine: Engine, tmp_path: Path) -> None:
    """What DuckDB would tell (duckdb_databases shows the index's absolute path) stays out."""
    store = str(engine.repo)
    for sql in (
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM information_schema.columns",
        "SELECT * FROM information_schema.schemata",
        "SELECT current_database(), version()",
    ):
        text = str(engine.execute(sql).table.to_pylist())
        assert store not in text and "index" not in text.replace("ctx_path", ""), sql


@pytest.mark.parametrize("view", ["tables", "columns", "schemata"])
def test_show_columns_of_information_schema(engine: Engine, view: str) -> None:
    shown = engine.execute(f"SHOW COLUMNS FROM information_schema.{view}").table
    rows = engine.execute(f"SELECT * FROM information_schema.{view} LIMIT 0").table
    assert shown.column("column_name").to_pylist() == rows.schema.names
