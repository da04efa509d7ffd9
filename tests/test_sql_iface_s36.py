"""Query interfaces tried as a stranger would (s36).

Oracle: DuckDB's own Python API over a flat table of the rows of ``logs``
(``tests.test_sql_iface_s34._flat``, computed by hand from the script), or what PEP 249 and
Arrow Flight SQL specify.

Found (each silently wrong unless said):

- ``struct_pack(camelcase)`` keyed its field ``camelcase``, as written, where DuckDB keys it by
  the column's own name, ``CamelCase`` (``to_json`` of it, ``s['CamelCase']`` answered
  otherwise); sqlglot rewrote the call as the literal ``{'camelcase': camelcase}``. So was
  ``struct_pack(x + 1)`` (DuckDB refuses it) answered ``{'_0': ...}``, ``struct_pack(COLUMNS(*))``
  keyed every field ``_0``, and ``struct_pack(a, b)::STRUCT(x INT, y INT)`` written ``ROW(a,
  b)::...``, cast by place where DuckDB casts a struct by name and refuses names that differ.
- A select item that expands a star and expanded to one column (``* ILIKE 'camelcase'``,
  ``* LIKE '%.%'``, ``* SIMILAR TO``, ``* GLOB``, ``t.* ILIKE``, ``COLUMNS('C.*') * 2``) was
  named by its text, ``(* ~~* 'camelcase')``, where DuckDB names the column ``CamelCase``
  (``pandas.read_sql`` gave a frame with that column name). So was an ``unnest`` of a struct of
  one field (DuckDB names the column by the field: ``unnest({'Val Loss': x})`` is ``Val Loss``).
- sqlglot rewrote calls into other questions: ``date_trunc(month, ts)`` (and ``datetrunc``,
  ``date_diff``, ``datediff``) read the column ``month`` as the part ``'MONTH'`` (another column
  failed: 'extract specifier "U" not recognized'); ``date_add(d, 3)`` became ``d + INTERVAL 3
  DAY``, a TIMESTAMP where DuckDB answers a DATE (an INTERVAL column failed); ``log2(x)`` became
  ``LOG(2, x)``, other last bits (``log2(5)``: 2.3219280948873626, DuckDB 2.321928094887362).
  They now reach DuckDB as written (``grammar/dialect.py``, ``AS_WRITTEN``).
- An INTERVAL of more than 292 years of microseconds (``INTERVAL 3000000 HOUR``,
  ``to_seconds(12345678901)``) wrapped around in DuckDB's Arrow export (int64 nanoseconds): the
  DB-API answered -88,504 days, ``fetch_arrow_table`` and Flight -7.6e18 ns. A top-level column
  now has its whole days moved to the days; inside a list or struct it still wraps (strict xfail).
- A VARIANT came out of the DB-API as its encoded bytes (``{'metadata': b'..', 'value': b'..'}``)
  where DuckDB's API gives the value (``'abc'``, ``[1, 2]``, ``Decimal('2.5')``).
- Not silent: a MAP whose keys are nested (``histogram([epoch])``, ``MAP {[1]: 2}``) failed with
  ``TypeError: unhashable type: 'list'`` in the DB-API and a traceback in ``florsql query``
  (DuckDB's API: ``{'key': [[1]], 'value': [2]}``); ``x = ALL(list)``/``SOME(list)`` was refused
  as "function all is not one of the functions florsql allows"; ``?1`` (DuckDB's and SQLite's
  numbered parameter) was a "syntax error near '1'" (now refused by name, as ``$1``); ``florsql
  query -`` did not read stdin; shell completion inserted a column named ``left``, ``by``,
  ``join`` (DuckDB's type_function keywords) unquoted, a syntax error.
- The shell and ``florsql query`` (table, csv; json for floats) wrote a FLOAT as its double
  (``0.10000000149011612``; DuckDB ``0.1``) and fractions of a second with six digits
  (``01:02:03.500000``, in intervals too; DuckDB ``01:02:03.5``): ``--format csv`` now equals
  DuckDB's ``COPY ... TO`` CSV for every type tried.
- Not wrong, slow: CSV output read each line back from the whole output written so far (10,000
  rows 0.86 s, 30,000 5.6 s, 300,000 about 3 minutes of CPU); now linear (300,000 in 5 s on a
  loaded machine).

Tried and right: ``pandas.read_sql`` with ``params`` and ``read_sql_query`` with ``chunksize``
(100k rows), ``polars.read_database`` with ``execute_options`` and ``iter_batches``; cursor reuse,
``executemany``, ``nextset`` (None after a query, ProgrammingError after SET), ``rowcount`` and
``description`` after SET/EXPLAIN/SHOW RUNS/an error/an empty result, closing a connection twice,
PEP 249 type objects against every ``description`` type code; threads sharing one connection
(a cursor each, and one shared cursor: 6x30 queries, every answer right; florsql claims
``threadsafety = 1``, which holds; level 2 would too, the engine serialises a connection's
statements). SET/PRAGMA/BEGIN/COMMIT/ATTACH/LOAD/CALL/SUMMARIZE/DESCRIBE and two statements in
one execute refused clearly; ``SET replay`` spelled every way. Flight SQL through ADBC: parameters
of every Python type (int as BIGINT, timedelta as a microsecond INTERVAL, as documented),
prepared statements reused with other parameters, parameter schemas, ``adbc_execute_schema`` and
its column metadata (IS_CASE_SENSITIVE 1 for VARCHAR), GetInfo, GetObjects with catalog/schema/
table patterns (``%``, ``_``, an escaped ``_``, any case), table types, GetXdbcTypeInfo with a
data type filter, GetSqlInfo's values (null ordering, identifier case) against DuckDB, a
1M-row result (row count, sum, last value), 300k rows through ``fetchall``, a client closing its
cursor mid-stream,
``adbc_cancel`` of a running query (CANCELLED in 1.5 s, the server answering next), three
clients at once, errors as OperationalError with florsql's one line. ``florsql query``: formats,
exit codes (1 error, 2 bad option), comments and ``;``. The shell through a pipe: ``;`` inside
strings, E-strings, dollar quotes, comments and nested comments, multi-line statements,
dot-commands (``.tables``, ``.schema``, ``.mode``, ``.explain``, unknown ones), exit status.
Names differing only in case are refused by the record API within a run; ``Loss`` is read by
``loss``, ``"LOSS"``, ``l.Loss``, in USING, NATURAL JOIN, PIVOT/UNPIVOT, EXCLUDE/REPLACE/RENAME,
``COLUMNS([...])``, ``struct_extract``, QUALIFY, DISTINCT ON; names with dots, spaces and
unicode likewise. ``?`` in window frames, CASE, IN lists, LIKE ESCAPE, QUALIFY, HAVING, table
functions, lambdas, list comprehensions, struct and map literals, FETCH, lag/ntile arguments.
About 280 scalar expressions, 85 aggregate/window/join/set-operation shapes and a fuzz of 3,300
calls of every allowed function over typed literals against DuckDB. Left as they are (refusals or
answers where DuckDB refuses, none silent): ``MAP {}::MAP(INT, INT)`` and ``ROW(1, 2) < ROW(1,
3)`` are syntax errors; ``reduce``/``apply``/``filter`` with a lambda and ``5!`` fail to parse;
``unlist`` is not allowed; ``initcap``, ``position(a, b)``, ``BETWEEN SYMMETRIC``, ``bool_and``
of integers and arrow lambdas (``x -> x + 1``, deprecated in DuckDB 2) are answered where DuckDB
refuses them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

import florsql
from florsql import dbapi
from tests.helpers import make_repo, run_script
from tests.test_sql_iface_s34 import TRAIN, _flat


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("s36") / "proj", {"train.py": TRAIN})
    run_script(repo, "train.py")
    run_script(repo, "train.py", "--lr", "0.2", "--Opt", "ad'am", "--flag")
    return repo


@pytest.fixture(scope="module")
def con(repo: Path) -> Iterator[dbapi.Connection]:
    with florsql.connect(repo) as connection:
        yield connection


@pytest.fixture(scope="module")
def oracle() -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    db.register("logs", _flat())
    return db


def _answer(run: Any) -> Any:
    """(names, rows), or the kind of failure: florsql's and DuckDB's error classes differ."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cur = run()
            return [d[0] for d in cur.description], cur.fetchall()
    except (duckdb.Error, florsql.Error):
        return "error"


def _same(con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, sql: str) -> None:
    want = _answer(lambda: oracle.execute(sql))
    got = _answer(lambda: con.cursor().execute(sql))
    assert got == want, sql


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT struct_pack(camelcase) AS s FROM logs WHERE camelcase IS NOT NULL ORDER BY 1",
        'SELECT struct_pack("CAMELCASE", logs."a.B") FROM logs WHERE epoch > 0 ORDER BY ALL',
        "SELECT to_json(struct_pack(camelcase, k := epoch)) FROM logs WHERE ok ORDER BY 1",
        "SELECT struct_pack(camelcase)['CamelCase'] FROM logs WHERE ok ORDER BY 1",
        "SELECT struct_pack(camelcase + 1) FROM logs",  # DuckDB refuses it
        "SELECT struct_pack(camelcase, epoch)::STRUCT(a INT, b INT) FROM logs",  # ditto
        "SELECT struct_pack(COLUMNS('Camel.*')) FROM logs WHERE ok ORDER BY 1",
        "SELECT struct_pack(k := camelcase) FROM logs WHERE ok ORDER BY 1",
    ],
)
def test_struct_pack_keys_a_field_by_the_columns_own_name(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, sql: str
) -> None:
    """sqlglot wrote ``struct_pack(camelcase)`` as ``{'camelcase': camelcase}``."""
    _same(con, oracle, sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * ILIKE 'camelcase' FROM logs WHERE ok ORDER BY 1",
        "SELECT * LIKE '%.%' FROM logs WHERE step = 1 ORDER BY 1",
        "SELECT * SIMILAR TO 'C.*' FROM logs WHERE ok ORDER BY 1",
        "SELECT * GLOB 'Val*' FROM logs WHERE step = 1 ORDER BY 1",
        "SELECT l.* ILIKE 'camelcase' FROM logs l WHERE ok ORDER BY 1",
        "SELECT COLUMNS('C.*') * 2 FROM logs WHERE ok ORDER BY 1",
        "SELECT COLUMNS(lambda c: c = 'CamelCase') + 1 FROM logs WHERE ok ORDER BY 1",
        "SELECT epoch ** 2, * ILIKE 'camelcase' FROM logs WHERE ok ORDER BY 1",
        "SELECT max(COLUMNS('C.*')), list(epoch ORDER BY epoch) FROM logs WHERE ok",
        "SELECT unnest(struct_pack(camelcase)) FROM logs WHERE ok ORDER BY 1",
        "SELECT epoch + 1, UNNEST({'Val Loss': \"val loss\"}) FROM logs WHERE step = 1"
        " ORDER BY ALL",
        "SELECT unnest([{'k': camelcase}], recursive := true) FROM logs WHERE ok ORDER BY 1",
        "SELECT unnest([camelcase]), unnest(struct_pack(big)) FROM logs WHERE ok ORDER BY 1",
        "SELECT * ILIKE 'camelcase', COLUMNS('big') FROM logs WHERE ok ORDER BY 1",
    ],
)
def test_an_expanding_item_of_one_column_is_named_by_the_column(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, sql: str
) -> None:
    """``SELECT * ILIKE 'camelcase'`` was named ``(* ~~* 'camelcase')`` (DuckDB: CamelCase),
    ``unnest(struct_pack(camelcase))`` ``unnest(struct_pack(camelcase))``."""
    _same(con, oracle, sql)


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT count(*) FROM logs WHERE epoch = ALL([1])", []),
        ("SELECT count(*) FROM logs WHERE epoch < ALL(?)", [[1, 2]]),
        ('SELECT count(*) FROM logs WHERE "Opt" <> ALL(?)', [["sgd"]]),
        ("SELECT count(*) FROM logs WHERE epoch = SOME([1, 2])", []),
        ("SELECT count(*) FROM logs WHERE camelcase >= some(?)", [[1, 2]]),
        ("SELECT count(*) FROM logs WHERE epoch = ALL([NULL, 1])", []),
        ("SELECT count(*) FROM logs WHERE epoch = ALL([])", []),
    ],
)
def test_a_comparison_with_all_or_some_of_a_list(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, sql: str, params: list[Any]
) -> None:
    """``x = ALL(list)`` was refused: "function all is not one of the functions florsql allows"."""
    want = oracle.execute(sql, params).fetchall()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert con.cursor().execute(sql, params).fetchall() == want, sql


def test_completion_writes_every_keyword_named_column_so_duckdb_reads_it() -> None:
    """A log named ``left``, ``by`` or ``join`` (DuckDB's type_function keywords) was completed
    bare: ``SELECT left FROM logs`` is a syntax error to DuckDB."""
    from florsql.repl.completion import identifier, suggest
    from florsql.repl.service import Column, Schema

    db = duckdb.connect()
    keywords = [k for (k,) in db.execute("SELECT keyword_name FROM duckdb_keywords()").fetchall()]
    unread = []
    for k in keywords:
        quoted = '"' + k + '"'
        try:
            db.execute(f"SELECT {identifier(k)}, t.{identifier(k)} FROM (SELECT 1 AS {quoted}) t")
        except duckdb.Error:
            unread.append(k)
    assert unread == []
    schema = Schema({"logs": (Column("left", "DOUBLE"), Column("by", "BIGINT"))})
    assert suggest("SELECT lef", schema)[0].text == '"left"'
    assert [s.text for s in suggest("SELECT logs.b", schema)] == ['"by"']


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT date_trunc(month, TIMESTAMP '2020-05-17 10:11') FROM (SELECT 'year' AS month)",
        "SELECT datetrunc(\"day\", DATE '2020-05-17') FROM (SELECT 'month' AS day)",
        "SELECT date_diff(year, DATE '2020-01-01', DATE '2021-03-01')"
        " FROM (SELECT 'month' AS year)",
        "SELECT datediff(u, DATE '2020-01-01', DATE '2021-03-01')"
        " FROM (VALUES ('day'), ('year')) t(u) ORDER BY 1",
        "SELECT date_trunc(u, TIMESTAMP '2020-05-17 10:11') FROM (VALUES ('hour'), ('year')) t(u)"
        " ORDER BY 1",
        "SELECT date_trunc('week', DATE '2020-05-17'), date_trunc('MS', TIMESTAMP '2020-01-01')",
        "SELECT date_add(DATE '2020-01-31', 3), typeof(date_add(DATE '2020-01-31', 3))",
        "SELECT date_add(d, i) FROM (SELECT DATE '2020-01-31' AS d, INTERVAL 1 MONTH AS i)",
        "SELECT x, log2(x), log10(x) FROM range(1, 300) t(x) ORDER BY 1",
        "SELECT epoch, log2(camelcase + 5), log10(big) FROM logs WHERE ok ORDER BY ALL",
    ],
)
def test_date_parts_and_logs_are_the_calls_written(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, sql: str
) -> None:
    """sqlglot read ``date_trunc(month, ts)`` as the part 'MONTH' (DuckDB reads the column),
    wrote ``date_add(d, 3)`` as ``d + INTERVAL 3 DAY`` (a TIMESTAMP; DuckDB: a DATE) and
    ``log2(x)`` as ``LOG(2, x)`` (``log2(5)``: 2.3219280948873626, DuckDB 2.321928094887362)."""
    _same(con, oracle, sql)


MAPS = (
    "SELECT MAP {[1]: 2, [3]: 4} AS m, MAP {(1, 'a'): 1} AS n, MAP {{'a': 'x y'}: [1]} AS o,"
    " NULL::MAP(INT[], INT) AS p, MAP {[1]::INT[1]: 'v'} AS q, [MAP {[1]: 2}] AS l,"
    " MAP {union_value(k := 1): 2} AS u, MAP {'0101'::BIT: 1} AS b"
)


def test_a_map_with_nested_keys_is_fetched_as_duckdb_gives_it(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Fetching a MAP whose keys are lists or structs failed with ``TypeError: unhashable type:
    'list'`` (``SELECT histogram([1, 2])``), also in ``florsql query``; DuckDB's API gives
    ``{'key': [...], 'value': [...]}`` and prints ``{[1]=2, [3]=4}``."""
    from click.testing import CliRunner

    from florsql.cli import main

    assert con.cursor().execute(MAPS).fetchall() == duckdb.connect().execute(MAPS).fetchall()
    _same(con, oracle, "SELECT histogram([epoch]), histogram({'s': step}) FROM logs WHERE ok")
    repo = make_repo(tmp_path / "other", {"a.py": "x = 1\n"})  # `con` holds the fixture's index
    shown = CliRunner().invoke(main, ["query", "--repo", str(repo), MAPS])
    assert shown.exit_code == 0, shown.output
    assert "{[1]=2, [3]=4}  {(1, a)=1}  {{'a': x y}=[1]}  NULL  {[1]=v}" in shown.output
    as_json = CliRunner().invoke(main, ["query", "--repo", str(repo), MAPS, "--format", "json"])
    assert '"m": {"[1]": 2, "[3]": 4}, "n": {"(1, a)": 1}, "o": {"{\'a\': x y}": [1]}' in (
        as_json.output
    )


LONG_INTERVALS = (
    "SELECT INTERVAL 3000000 HOUR AS a, to_seconds(12345678901::BIGINT) AS b,"
    " -to_seconds(12345678901::BIGINT) + INTERVAL 3 MONTH AS c, INTERVAL 36 HOUR AS d,"
    " to_microseconds(9223372036854775) AS e, to_microseconds(-9223372036854776) AS f,"
    " NULL::INTERVAL AS g"
)


def test_an_interval_past_292_years_of_microseconds_keeps_its_length(
    con: dbapi.Connection,
) -> None:
    """DuckDB's Arrow export writes an interval's microseconds as int64 nanoseconds, which wrap
    past 292 years: ``INTERVAL 3000000 HOUR`` came out of the DB-API as -88,504 days and some
    seconds, of ``fetch_arrow_table`` (and Flight) as -7,646,744,073,709,551,616 ns."""
    sql = LONG_INTERVALS.replace(" + INTERVAL 3 MONTH", "")  # a timedelta holds no months
    assert con.cursor().execute(sql).fetchall() == duckdb.connect().execute(sql).fetchall()
    got = con.cursor().execute(LONG_INTERVALS).fetch_arrow_table()
    db = duckdb.connect()
    db.register("got", got)
    names = got.column_names
    same = ", ".join(f"got.{n} IS NOT DISTINCT FROM want.{n}" for n in names)
    assert db.execute(f"SELECT {same} FROM got, ({LONG_INTERVALS}) want").fetchall() == [
        (True,) * len(names)
    ]
    assert got.column("d").to_pylist()[0].nanoseconds == 36 * 3600 * 10**9  # as DuckDB has it


@pytest.mark.xfail(
    strict=True,
    reason="an interval inside a list or struct still wraps: [INTERVAL 3000000 HOUR] is "
    "[timedelta(days=-88504, seconds=1526, microseconds=290448)] (DuckDB: 125000 days)",
)
def test_an_interval_inside_a_list_past_292_years(con: dbapi.Connection) -> None:
    sql = "SELECT [INTERVAL 3000000 HOUR], {'i': to_seconds(12345678901::BIGINT)}"
    assert con.cursor().execute(sql).fetchall() == duckdb.connect().execute(sql).fetchall()


def test_a_variant_is_fetched_as_duckdb_gives_it(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection
) -> None:
    """A VARIANT came out of the DB-API as its encoded bytes, ``{'metadata': b'\\x01\\x00\\x00',
    'value': b'\\rabc'}`` for ``'abc'::VARIANT`` (DuckDB's API: ``'abc'``)."""
    _same(
        con,
        oracle,
        "SELECT 'abc'::VARIANT AS v, [1, 2]::VARIANT AS w, {'a': 1.5}::VARIANT AS s,"
        " NULL::VARIANT AS n, [2.5::VARIANT, 'x'::VARIANT] AS l",
    )
    _same(con, oracle, 'SELECT variant_group_array("a.b" ORDER BY "a.b") FROM logs WHERE step = 1')
    _same(con, oracle, "SELECT msg::VARIANT, epoch FROM logs WHERE ok IS NOT NULL ORDER BY ALL")


@pytest.mark.parametrize(
    "sql", ["SELECT ?1", "SELECT ?2, ?1", "SELECT epoch FROM logs WHERE epoch = ?1 LIMIT ?2"]
)
def test_a_numbered_question_mark_is_refused_by_name(con: dbapi.Connection, sql: str) -> None:
    """``?1`` (DuckDB's and SQLite's numbered parameter) failed "syntax error near '1'"."""
    with pytest.raises(florsql.ProgrammingError, match=r"the placeholder \?\d is not supported"):
        con.cursor().execute(sql, [1, 2][: sql.count("?")])


TIMES = (
    "SELECT TIMESTAMP '2020-01-01 01:02:03.5' AS ts, TIMESTAMPTZ '2020-01-01 01:02:03.25-03:30'"
    " AS tz, TIME '01:02:03.120' AS t, TIMESTAMP '2020-01-01 01:02:03.000001' AS us,"
    " TIMESTAMP_MS '2020-01-01 01:02:03.5' AS ms, [TIMESTAMP '2020-01-01 00:00:00.1'] AS l,"
    " TIMESTAMP '2020-01-01 01:02:00' AS whole, '01:02:03.5+01'::TIMETZ AS ttz"
)


VALUES_CSV = (
    "SELECT 1e-5::DOUBLE AS a, 1e16::DOUBLE AS b, 0.1::FLOAT AS d, 12345678901234567::DOUBLE AS f,"
    " 1234567890.0123456789::DECIMAL(38,10) AS i,"
    " '3f5b1b9e-1b0e-4a7a-8a63-7a8f3c6f0a11'::UUID AS j, 'x'::ENUM('x', 'y') AS k,"
    " '0101'::BIT AS l, INTERVAL '1 year 2 months 3 days 04:05:06.5' AS m,"
    " DATE '-0044-03-15' AS n, 'infinity'::DATE AS o, MAP {'a': [1, 2]} AS q,"
    " {'k': 'it''s', 'n': NULL} AS r, [['a', NULL], []] AS s, '{\"a\": [1, \"x\"]}'::JSON AS t,"
    " 'line\nbreak, \"q\"' AS v, 170141183460469231731687303715884105727::HUGEINT AS x,"
    " [1.5::DECIMAL(3,1), NULL] AS z, (1, 'a') AS tup, [1, 2]::INT[2] AS arr, 'NULL' AS sn,"
    " -0.0::FLOAT AS nzf, 'nan'::FLOAT AS nanf, 1e38::FLOAT AS bigf, -334609.625::FLOAT AS tie,"
    " [2.5e-7::FLOAT] AS sf, TIME '24:00:00' AS t24, -INTERVAL 90.25 SECOND AS ineg"
)


def _csv_is_copy_to(tmp_path: Path, sql: str) -> Any:
    """Assert ``florsql query --format csv`` of ``sql`` is DuckDB's ``COPY ... TO`` CSV of it
    (the documented oracle); return a runner of ``florsql query`` of ``sql`` with more options."""
    from click.testing import CliRunner

    from florsql.cli import main

    repo = make_repo(tmp_path / "other", {"a.py": "x = 1\n"})
    out = tmp_path / "want.csv"
    duckdb.connect().execute(f"COPY ({sql}) TO '{out}' (HEADER)")

    def query(*options: str) -> Any:
        return CliRunner().invoke(main, ["query", "--repo", str(repo), sql, *options])

    got = query("--format", "csv")
    assert got.exit_code == 0, got.output
    assert got.output == out.read_text()
    return query


def test_florsql_query_csv_is_duckdbs_copy_to_csv(tmp_path: Path) -> None:
    """``--format csv`` wrote a FLOAT as its double (``0.10000000149011612``, DuckDB: ``0.1``)
    and an interval's fraction of a second with six digits (``04:05:06.500000``, DuckDB:
    ``04:05:06.5``); DuckDB's ``COPY ... TO`` CSV is the documented oracle."""
    query = _csv_is_copy_to(tmp_path, VALUES_CSV)
    as_json = query("--format=json")
    assert '"d": 0.1,' in as_json.output and '"sf": [2.5e-07]' in as_json.output


def test_florsql_query_writes_a_fraction_of_a_second_as_duckdb_does(tmp_path: Path) -> None:
    """``--format csv`` and the table wrote ``01:02:03.500000`` where DuckDB's text (and its
    ``COPY ... TO`` CSV, the documented oracle) is ``01:02:03.5``."""
    query = _csv_is_copy_to(tmp_path, TIMES)
    table = query()
    assert "2020-01-01 01:02:03.5  " in table.output and "01:02:03.12  " in table.output


def test_florsql_query_reads_the_statement_from_stdin_given_a_dash(tmp_path: Path) -> None:
    """``florsql query -`` failed "syntax error near '-'"; it reads the statement from stdin."""
    from click.testing import CliRunner

    from florsql.cli import main

    repo = make_repo(tmp_path / "other", {"a.py": "x = 1\n"})
    sql = "SELECT 'a;b' AS x, -- a comment; here\n 2 AS y;\n"
    got = CliRunner().invoke(main, ["query", "--repo", str(repo), "-", "--format=csv"], input=sql)
    assert (got.exit_code, got.output) == (0, "x,y\na;b,2\n")


def test_csv_of_many_rows_is_written_line_by_line() -> None:
    """Each CSV line was read back from the whole output written so far: 10,000 rows took
    0.86 s, 30,000 5.6 s, 300,000 minutes (``florsql query --format csv``, the shell's csv).
    Now each line is written through a buffer of its own (time linear in the rows; no timed
    assert here: the brief keeps timings in benchmarks/). Every line is the row's."""
    from florsql.engine.exact import run_exact
    from florsql.repl.render import render_csv

    db = duckdb.connect()
    table, _ = run_exact(db, "SELECT i AS n, '' AS e, 'a,b' AS s FROM range(32000) t(i)")
    lines = render_csv(table).split("\n")
    assert len(lines) == 32001 and lines[0] == "n,e,s"
    # an empty string quoted (NULL is bare), as DuckDB's COPY TO csv writes it
    assert [lines[1], lines[-1]] == ['0,"","a,b"', '31999,"","a,b"']
