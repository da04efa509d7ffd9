"""Query interfaces tried as a stranger would (s34): the DB-API, ``florsql query`` and the
Flight SQL server over real recorded runs whose script logs names with spaces, dots and mixed
case, quoted and unicode text, large integers and booleans.

Oracle: DuckDB's own Python API, given the same values, over literals or over the rows of
``logs`` computed by hand from the script (its values are a function of the loop indices).

Found (each silently wrong unless said):

- The plan cache was keyed by the ``repr`` of the parameters. A ``memoryview``'s repr is its
  address, which the next memoryview reuses holding other bytes, and so is a ``datetime``'s
  whose ``tzinfo`` class has no ``repr``: the second query answered the first one's value. The
  key is now what the values bind to (florsql/plan/params.py, ``bound_key``).
- Parameters bound unlike DuckDB's Python API: -2**31 as a BIGINT and 2**63..2**64-1 as a
  HUGEINT (``bit_count(?)``, ``~?`` answered otherwise); an aware ``time`` lost its offset; an
  enum mixing in ``str`` bound its name (``'Color.RED'``), one mixing in ``int`` was written
  into the SQL as ``Num.ONE``; ``pd.NaT`` failed converting 'NaT' to INT64 and ``pd.NA`` was
  refused (both NULL in DuckDB).
- ``* LIKE 'VL%'`` (and ``* GLOB``, ``* SIMILAR TO``, negated) is a star to DuckDB but not to
  the analysis: the hindsight columns it brought were neither replayed nor warned about.
  ``COLUMNS('regex')`` matched log names with Python's ``re`` (``[[:upper:]]`` matched none).
  A positional column ``#18`` counted as no column (its hindsight values NULL, no warning) and
  ``WHERE #8 = 'sgd'`` was pushed into the replay set's query, where #8 is another column.
- ``SELECT * FROM (PIVOT logs ...) ORDER BY 1``: sqlglot cannot qualify the position over the
  pivot's ``*``; the analysis fell back to the names written and gave ``logs`` the grain of the
  USING's log (12 rows of 20).
- sqlglot drops a unary ``+``: ``DISTINCT ON (+1)`` (DuckDB: a constant, one row) became a
  position; ``DISTINCT ON (-?)`` bound to -2 was written ``- -2``, which DuckDB folds into the
  position 2.
- The Flight server answered as a "preview" (NULL hindsight cells, a metadata warning) queries
  that compute on those cells through the whole row (``WHERE l['VL2'] IS NOT NULL``: 0 rows) or
  a NATURAL JOIN.

Tried and already right: cursor.description names and type codes against DuckDB's, rowcount,
fetchone/fetchmany/fetchall/fetch_arrow_table interleaved, arraysize, executemany, errors after
close (InterfaceError), ``?`` in strings, comments and dollar quotes, in LIMIT/OFFSET, IN lists
and ``= ANY(?)``, optional-filter patterns (``? IS NULL OR epoch = ?``), quoted and mixed-case
names with spaces and dots through the DB-API, ``florsql query`` (table, csv, json), ADBC
(prepared statements, parameter schemas, Arrow-typed parameters, ``adbc_get_objects``,
``adbc_get_table_schema``), sqlalchemy-adbc Core selects and pandas/polars readers.
"""

from __future__ import annotations

import datetime
import enum
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import adbc_driver_flightsql.dbapi as adbc
import duckdb
import pyarrow as pa
import pytest

import florsql
from florsql import dbapi
from florsql.errors import ReplayOffWarning
from tests.helpers import copy_repo, make_repo, run_script
from tests.test_flight_support import running_server

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
def edited(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``repo`` whose script logs ``VL2`` too: a hindsight column its runs lack."""
    copy = copy_repo(repo, tmp_path_factory.mktemp("s34-edited") / "proj")
    train = copy / "train.py"
    train.write_text(train.read_text().replace(
        '    flor.log("CamelCase", epoch)\n',
        '    flor.log("CamelCase", epoch)\n    flor.log("VL2", epoch * 100)\n',
    ))  # fmt: skip
    assert "VL2" in train.read_text()
    return copy


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


def _flat() -> pa.Table:
    """The rows of ``logs`` (every context, metadata columns left out) computed by hand from
    TRAIN: a row per step, a row per epoch, one for the top level, per run."""
    rows: list[dict[str, Any]] = []
    for args in RUNS:
        run = {"Opt": args["Opt"], "flag": args["flag"], "lr": args["lr"]}
        for epoch in range(3):
            for step in range(2):
                rows.append(
                    {**run, "epoch": epoch, "step": step, "a.b": epoch * 10 + step,
                     "Val Loss": args["lr"] * (epoch + 1) + step}
                )  # fmt: skip
            rows.append(
                {**run, "epoch": epoch, "big": 2**62 + epoch, "CamelCase": epoch,
                 "msg": "it's \"q\" 日本 é" if epoch == 1 else None, "ok": epoch % 2 == 0}
            )  # fmt: skip
        rows.append({**run, "done": "yes"})
    schema = pa.schema(
        [("epoch", pa.int64()), ("step", pa.int64()), ("Opt", pa.string()),
         ("flag", pa.bool_()), ("lr", pa.float64()), ("a.b", pa.int64()), ("big", pa.int64()),
         ("CamelCase", pa.int64()), ("done", pa.string()), ("msg", pa.string()),
         ("ok", pa.bool_()), ("Val Loss", pa.float64())]
    )  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schema)


META = "EXCLUDE (projid, run_id, tstamp, vid, filename)"


def test_the_flat_oracle_is_the_logs_relation(con: dbapi.Connection) -> None:
    got = con.cursor().execute(f"SELECT * {META} FROM logs").fetch_arrow_table()
    assert got.schema.names == _flat().schema.names
    assert sorted(map(repr, got.to_pylist())) == sorted(map(repr, _flat().to_pylist()))


@pytest.mark.parametrize(
    "query",
    [
        'SELECT * {meta} FROM (PIVOT logs ON epoch USING first("a.b")) ORDER BY 1',
        'SELECT * {meta} FROM (PIVOT logs ON epoch USING first("a.b")) ORDER BY 2 DESC, 1',
        "SELECT count(*) FROM (SELECT * FROM (PIVOT logs ON epoch USING first(msg)) ORDER BY 1)",
    ],
)
def test_a_pivot_of_logs_under_a_positional_order_keeps_every_row(
    con: dbapi.Connection, query: str
) -> None:
    """sqlglot cannot qualify ``ORDER BY 1`` over the ``*`` of a pivot; the analysis then fell
    back to the log names written, so ``logs`` took the grain of the one log in USING: 12 rows
    of 20, the other logs' rows gone, silently."""
    oracle = duckdb.connect()
    oracle.register("logs", _flat())
    want = oracle.execute(query.format(meta="")).fetchall()
    got = _ask(con, query.format(meta=META))
    assert sorted(map(repr, got)) == sorted(map(repr, want))


STAR_PATTERNS = [
    "* LIKE 'VL%'",
    "* ILIKE 'vl%'",
    "* GLOB 'V*'",
    "* SIMILAR TO 'VL.'",
    "l.* LIKE 'VL%'",
    "(* LIKE 'VL%') AS v",
    "* NOT LIKE '%a%'",
    "COLUMNS('^[[:upper:]]L')",  # RE2's POSIX class; Python's re matched nothing
    "COLUMNS('^V[[:alnum:]]+$')",
]


@pytest.mark.parametrize("pattern", STAR_PATTERNS)
def test_a_star_filtered_by_name_needs_the_hindsight_columns_it_brings(
    edited: Path, tmp_path: Path, pattern: str
) -> None:
    """``SELECT * LIKE 'VL%' FROM logs`` is a ``*`` to DuckDB, but sqlglot parses it as
    ``Like(Star, 'VL%')``, which the analysis did not count as a star: the hindsight column it
    brought was neither replayed nor warned about, its cells NULL, silently (replay off said
    nothing, replay auto computed nothing). ``COLUMNS('regex')`` picked its log names with
    Python's ``re``, which reads ``[[:upper:]]`` as a set and so matched none: the same."""
    repo = copy_repo(edited, tmp_path / "proj")
    sql = f"SELECT {pattern} FROM logs l WHERE step IS NULL AND epoch IS NOT NULL"
    with florsql.connect(repo, replay="off") as off, pytest.warns(ReplayOffWarning, match="VL2"):
        off.cursor().execute(sql).fetchall()


def test_a_star_filtered_by_name_is_replayed_and_refused_by_a_server_that_does_not_replay(
    edited: Path, tmp_path: Path
) -> None:
    sql = "SELECT epoch, * LIKE 'VL%' FROM logs WHERE step IS NULL AND epoch IS NOT NULL"
    served = copy_repo(edited, tmp_path / "served")
    with (
        running_server(served) as server,
        adbc.connect(f"grpc://127.0.0.1:{server.port}", autocommit=True) as conn,
        conn.cursor() as cur,
        pytest.raises(adbc.OperationalError, match=r"florsql ReplayNeededError.*VL2"),
    ):
        cur.execute(sql)
    want = sorted((epoch, epoch * 100) for epoch in range(3) for _ in RUNS)
    with florsql.connect(copy_repo(edited, tmp_path / "proj")) as auto:
        assert _ask(auto, sql + " ORDER BY ALL") == want
        posix = sql.replace("* LIKE 'VL%'", "COLUMNS('^[[:upper:]]L')")
        assert _ask(auto, posix + " ORDER BY ALL") == want


def test_a_column_named_by_its_place_is_replayed_and_never_pushed(
    edited: Path, tmp_path: Path
) -> None:
    """DuckDB's ``#n`` is the n-th column of the FROM clause. The analysis saw no column in it:
    ``SELECT #18 FROM logs`` (``VL2``) answered NULL without a warning, and ``WHERE #8 =
    'sgd'`` (``Opt``) was pushed into the replay set's query, where the 8th column is another
    one (there it failed converting 'sgd' to a DOUBLE; where the types agree it picks other
    runs). In the select's own ORDER BY it is a select item's place and changes nothing."""
    with florsql.connect(copy_repo(edited, tmp_path / "off"), replay="off") as off:
        names = [d[0] for d in off.cursor().execute("SELECT * FROM logs LIMIT 0").description]
        vl2, opt = names.index("VL2") + 1, names.index("Opt") + 1
        with pytest.warns(ReplayOffWarning, match="VL2"):
            off.cursor().execute(f"SELECT epoch, #{vl2} FROM logs").fetchall()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a select item's place: no log read, no warning
            assert _ask(off, "SELECT run_id, lr FROM runs ORDER BY #2 DESC LIMIT 1")[0][1] == 0.2
    with florsql.connect(copy_repo(edited, tmp_path / "auto")) as auto:
        pushed = f"SELECT epoch, VL2 FROM logs WHERE #{opt} = 'sgd' AND VL2 IS NOT NULL"
        assert _ask(auto, pushed + " ORDER BY ALL") == [(e, e * 100) for e in range(3)]
        placed = f"SELECT epoch, #{vl2} FROM logs WHERE step IS NULL AND epoch IS NOT NULL"
        want = sorted((e, e * 100) for e in range(3) for _ in RUNS)
        assert _ask(auto, placed + " ORDER BY ALL") == want


def test_a_server_that_does_not_replay_refuses_a_preview_that_computes_on_the_whole_row(
    edited: Path, tmp_path: Path
) -> None:
    """A query whose hindsight columns it reached only through ``*`` is answered as a preview
    (NULL cells, a warning in the metadata); one that also reads the whole row, where those
    columns are (``l['VL2']``, ``struct_extract(l, 'VL2')``, ``l::VARCHAR``, ``ORDER BY l``),
    or joins on them (``NATURAL JOIN``) computed on them and was answered so too: ``WHERE
    l['VL2'] IS NOT NULL`` gave 0 rows with only the metadata warning, which no dashboard
    shows. Refused now, as a query naming the column is."""
    computing = [
        "SELECT * FROM logs l WHERE l['VL2'] IS NOT NULL LIMIT 5",
        "SELECT * FROM logs l WHERE struct_extract(l, 'VL2') > 0",
        "SELECT * FROM logs l WHERE l::VARCHAR LIKE '%VL2: 1%'",
        "SELECT * FROM logs l ORDER BY l LIMIT 1",
        "SELECT *, logs AS whole FROM logs LIMIT 1",
        "SELECT * FROM logs a NATURAL JOIN logs b LIMIT 5",  # joins on VL2 too
    ]
    served = copy_repo(edited, tmp_path / "served")
    with (
        running_server(served) as server,
        adbc.connect(f"grpc://127.0.0.1:{server.port}", autocommit=True) as conn,
    ):
        for sql in computing:
            with conn.cursor() as cur, pytest.raises(adbc.OperationalError, match="VL2"):
                cur.execute(sql)
        with conn.cursor() as cur:  # a preview still answers, saying what it left NULL
            cur.execute("SELECT l.* FROM logs l WHERE step IS NULL LIMIT 3")
            table = cur.fetch_arrow_table()
        assert table.num_rows == 3 and table.column("VL2").null_count == 3
        assert b"VL2" in (table.schema.metadata or {})[b"florsql.warnings"]


def test_an_aware_time_parameter_keeps_its_offset(con: dbapi.Connection) -> None:
    """sqlglot wrote an aware ``time`` as ``CAST('01:02:03+05:00' AS TIME)``, dropping the
    offset; DuckDB's Python API binds a ``TIME WITH TIME ZONE``. A zone without a fixed offset
    (a ``ZoneInfo``: a time has no date to find it on) is refused, naming the parameter."""
    plus5 = datetime.time(1, 2, 3, tzinfo=datetime.timezone(datetime.timedelta(hours=5)))
    sql = "SELECT ?, typeof(?), ?::VARCHAR, ? = TIMETZ '01:02:03+05:00', ? = TIME '01:02:03'"
    assert _ask(con, sql, [plus5] * 5) == duckdb.connect().execute(sql, [plus5] * 5).fetchall()
    minus = datetime.timezone(-datetime.timedelta(hours=5, minutes=30))  # DuckDB's API fails
    assert _ask(con, "SELECT ?::VARCHAR", [datetime.time(1, 2, 3, 7, tzinfo=minus)]) == [
        ("01:02:03.000007-05:30",)
    ]
    zoned = datetime.time(1, 2, 3, tzinfo=ZoneInfo("America/New_York"))
    with pytest.raises(dbapi.ProgrammingError, match=r"parameter 1: .* no fixed offset"):
        _ask(con, "SELECT ?", [zoned])


def test_pandas_missing_values_bind_as_null(con: dbapi.Connection) -> None:
    """``pd.NaT`` (a ``datetime`` whose fields are NaN) was written ``CAST('NaT' AS
    TIMESTAMP_NS)`` and failed "Could not convert string 'NaT' to INT64"; ``pd.NA`` was refused.
    DuckDB's Python API binds both as NULL; a frame's ``min()`` of an empty column is ``NaT``."""
    pd = pytest.importorskip("pandas")
    since = "coalesce(?, TIMESTAMPTZ '2000-01-01')"
    sql = f"SELECT ?, typeof(?), count(*) FROM logs WHERE tstamp > {since}"
    for missing in (pd.NaT, pd.NA):
        want = duckdb.connect().execute("SELECT ?, typeof(?)", [missing] * 2).fetchall()
        assert want == [(None, '"NULL"')]
        assert _ask(con, sql, [missing] * 3) == [(None, '"NULL"', _flat().num_rows)]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT DISTINCT ON (+1) epoch, step FROM logs WHERE step IS NOT NULL ORDER BY ALL",
        "SELECT DISTINCT ON (1) epoch, step FROM logs WHERE step IS NOT NULL ORDER BY ALL",
        "SELECT count(*) FROM logs WHERE step IS NOT NULL GROUP BY +1",
        "SELECT epoch, count(*) FROM logs WHERE step IS NOT NULL GROUP BY 1 ORDER BY +1, 1",
        "SELECT count(*) FROM logs WHERE step IS NOT NULL GROUP BY ROLLUP (+1)",
    ],
)
def test_a_unary_plus_makes_a_position_a_constant_as_in_duckdb(
    con: dbapi.Connection, query: str
) -> None:
    """sqlglot drops the ``+`` of ``+1``: ``DISTINCT ON (+1)`` (a constant to DuckDB: one row)
    became ``DISTINCT ON (1)`` (a row per epoch), silently; ``GROUP BY +1`` grouped by the
    count and failed."""
    oracle = duckdb.connect()
    oracle.register("logs", _flat())
    assert _ask(con, query) == oracle.execute(query).fetchall()


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("SELECT epoch, step FROM logs WHERE step IS NOT NULL ORDER BY -?, 1, 2", -1),
        ("SELECT DISTINCT ON (-?) epoch, step FROM logs WHERE step IS NOT NULL ORDER BY ALL", -2),
        ("SELECT DISTINCT ON ((-?)) epoch FROM logs WHERE step IS NOT NULL ORDER BY ALL", -1),
        ("SELECT count(*) FROM logs WHERE step IS NOT NULL GROUP BY -?", -1),
        ("SELECT epoch, count(*) FROM logs WHERE step IS NOT NULL GROUP BY 1, -(?) ORDER BY 1", -1),
    ],
)
def test_a_negated_parameter_is_a_constant_where_a_bare_integer_is_a_position(
    con: dbapi.Connection, query: str, value: int
) -> None:
    """``DISTINCT ON (-?)`` bound to -2 was written ``DISTINCT ON (- -2)``, which DuckDB folds
    into the integer 2, the position of ``step``: a row per step, where DuckDB (given the value
    as a parameter) reads a constant and keeps one row; ``GROUP BY -?`` grouped by the count."""
    oracle = duckdb.connect()
    oracle.register("logs", _flat())
    assert _ask(con, query, [value]) == oracle.execute(query, [value]).fetchall()


class _Opt(str, enum.Enum):  # noqa: UP042 (the mixin users write; StrEnum binds right)
    SGD = "sgd"


class _Epoch(int, enum.Enum):
    TWO = 2


class _Rate(float, enum.Enum):
    SLOW = 0.1


def test_an_enum_parameter_binds_as_the_value_it_holds(con: dbapi.Connection) -> None:
    """An enum mixing in ``str``, ``int`` or ``float`` binds as its value, as DuckDB's Python API
    binds it: ``_Opt.SGD`` was the text ``'_Opt.SGD'`` (so ``Opt = ?`` matched no row, silently),
    ``_Epoch.TWO`` was written into the SQL as ``_Epoch.TWO`` (a table not found)."""
    sql = "SELECT count(*) FROM logs WHERE Opt = ? AND epoch = ? AND lr = ?"
    want = _ask(con, sql, ["sgd", 2, 0.1])
    assert want == [(sum(1 for r in _flat().to_pylist() if r["Opt"] == "sgd" and r["epoch"] == 2),)]
    assert _ask(con, sql, [_Opt.SGD, _Epoch.TWO, _Rate.SLOW]) == want
    enums = [_Opt.SGD, _Epoch.TWO, _Rate.SLOW]
    typed = "SELECT ?, ?, ?, typeof(?), typeof(?), typeof(?)"
    assert _ask(con, typed, enums * 2) == duckdb.connect().execute(typed, enums * 2).fetchall()
