"""The Flight SQL server with the clients people use, over loopback: ADBC's DB-API, sqlalchemy-adbc
(SQLAlchemy 2), pandas, polars, and pyarrow's Flight client for the calls ADBC does not expose.

Each gap of issue 11 has its test here: prepared statements carry schemas, GetXdbcTypeInfo and
the key commands answer with the spec's schemas, unsupported calls answer UNIMPLEMENTED, column
metadata reaches ``xdbc_type_name``, browsing follows a script edit, GetSchema plans instead of
running, and tables have the type the SQLAlchemy dialects list.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import adbc_driver_flightsql.dbapi as adbc
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import sqlalchemy as sa

from florsql.flight import FlorFlightServer, ServerOptions
from florsql.flight import flight_session_pb2 as session_pb
from florsql.flight import flight_sql_pb2 as pb
from florsql.flight.backend import EngineService, open_service
from florsql.flight.limits import Limits
from florsql.flight.metadata import FOREIGN_KEYS_SCHEMA, PRIMARY_KEYS_SCHEMA
from florsql.flight.wire import pack
from florsql.flight.xdbc import XDBC_TYPE_INFO_SCHEMA
from tests.test_flight_support import EDITED, recorded_repo

LOSSES = "SELECT run_id, epoch, avg(loss) AS loss FROM logs WHERE lr > ? GROUP BY ALL ORDER BY ALL"
TYPE_NAME = b"ARROW:FLIGHT:SQL:TYPE_NAME"
#: A query DuckDB runs for a very long time (it is always cancelled).
ENDLESS = "SELECT count(*) AS n FROM range(100000000000) AS a(i) WHERE i % 7 = 3"


@contextmanager
def serving(service: EngineService, **options: Any) -> Iterator[FlorFlightServer]:
    """A server on a free loopback port over ``service`` (several may share one service)."""
    server = FlorFlightServer(service, ServerOptions("127.0.0.1", 0, **options))
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    where = tmp_path_factory.mktemp("clients")
    repo = recorded_repo(where / "proj")
    # The same history, for the test that edits the script (it must not change the other's).
    shutil.copytree(repo, where / "edited")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas: "only supports SQLAlchemy connectables"
        import florsql

        with florsql.connect(repo=str(repo)) as con:
            dbapi_frame = pd.read_sql(LOSSES, con, params=[0.15])
    service = open_service(repo)
    try:
        # As a BI deployment that browses whole tables runs it: hindsight cells never
        # computed answer NULL, and each result's schema metadata says so.
        with serving(service, replay="off") as server:
            yield {
                "repo": repo,
                "edited": where / "edited",
                "service": service,
                "server": server,
                "port": server.port,
                "uri": f"grpc://127.0.0.1:{server.port}",
                "dbapi_frame": dbapi_frame,
            }
    finally:
        service.close()


@pytest.fixture(scope="module")
def cli_uri(served: dict[str, Any]) -> Iterator[str]:
    """`florsql serve` in its own process, over a copy of the history: what users run."""
    repo = served["edited"].parent / "cli"
    shutil.copytree(served["repo"], repo)
    code = "from florsql.cli import main; main()"
    server = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--port", "0", "--repo", str(repo)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        found = re.match(r"florsql Flight SQL on grpc\+tcp://127\.0\.0\.1:(\d+) ", banner)
        assert found, banner
        yield f"grpc://127.0.0.1:{found.group(1)}"
    finally:
        server.terminate()
        server.wait(30)


def _connect(uri: str, **db_kwargs: str) -> Any:
    return adbc.connect(uri, db_kwargs=db_kwargs or None, autocommit=True)


def _flight(served: dict[str, Any]) -> flight.FlightClient:
    return flight.connect(served["uri"])


def _command(client: flight.FlightClient, cmd: Any) -> pa.Table:
    info = client.get_flight_info(flight.FlightDescriptor.for_command(pack(cmd)))
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.schema == info.schema
    return table


# -- 1. prepared statements --------------------------------------------------------------------


def test_prepare_returns_parameter_and_result_schemas(served: dict[str, Any]) -> None:
    with _connect(served["uri"]) as conn, conn.cursor() as cur:
        params = cur.adbc_prepare(LOSSES)
        result = cur.adbc_execute_schema(LOSSES.replace("?", "0.15"))
        cur.execute(LOSSES, (0.15,))
        table = cur.fetch_arrow_table()
    # The parameter's type comes from the column it is compared with (lr: DOUBLE).
    assert params == pa.schema([("parameter_1", pa.float64())])
    assert result.names == ["run_id", "epoch", "loss"] and result.types == table.schema.types
    assert result.field("loss").metadata[TYPE_NAME] == b"DOUBLE"
    assert table.num_rows == 3


def test_a_parameter_used_nowhere_typed_is_null(served: dict[str, Any]) -> None:
    with _connect(served["uri"]) as conn, conn.cursor() as cur:
        params = cur.adbc_prepare("SELECT ? AS anything")
    assert params == pa.schema([("parameter_1", pa.null())])


def _bound(cur: Any, sql: str, value: pa.Array) -> list[tuple[Any, ...]]:
    cur.execute(sql, pa.record_batch([value], names=["p"]))
    return [tuple(r) for r in cur.fetchall()]


def test_bound_arrow_values_keep_their_type(served: dict[str, Any]) -> None:
    """A parameter an ADBC client binds is read as its Arrow type: an interval with months was
    a Python tuple before, bound as the list [1, 2, 3000]; a timestamp's nanoseconds were
    dropped. DuckDB's own reading of the same value is the oracle."""
    import duckdb

    oracle = duckdb.connect()
    values = [
        pa.array([pa.scalar((1, 2, 3000), pa.month_day_nano_interval())]),
        pa.array([-90], pa.duration("s")),
        pa.array([1], pa.timestamp("ns")),
        pa.array([[pa.scalar((0, 1, 0), pa.month_day_nano_interval())]]),
    ]
    with _connect(served["uri"]) as conn, conn.cursor() as cur:
        for value in values:
            oracle.register("bound", pa.table({"p": value}))
            want = oracle.execute("SELECT CAST(p AS VARCHAR) AS v FROM bound").fetchall()
            assert _bound(cur, "SELECT CAST(? AS VARCHAR) AS v", value) == want, value.type
        for bad, message in [
            (pa.array([pa.scalar((0, 0, 1), pa.month_day_nano_interval())]), "nanoseconds"),
            (pa.array([[("a", 1)]], pa.map_(pa.string(), pa.int64())), "MAP parameter"),
        ]:
            with pytest.raises(adbc.Error, match=message):
                _bound(cur, "SELECT ? AS v", bad)


def test_prepare_plans_without_running(served: dict[str, Any]) -> None:
    # Running it would fail (run ids are not numbers); planning it does not.
    sql = "SELECT CAST(run_id AS INTEGER) AS n FROM runs"
    with _connect(served["uri"]) as conn, conn.cursor() as cur:
        assert cur.adbc_execute_schema(sql).names == ["n"]
        with pytest.raises(adbc.OperationalError, match="Could not convert"):
            cur.execute(sql)


# -- 2. metadata calls BI tools make at connect time --------------------------------------------


def test_xdbc_type_info_lists_florsqls_types(served: dict[str, Any]) -> None:
    client = _flight(served)
    table = _command(client, pb.CommandGetXdbcTypeInfo())
    assert table.schema == XDBC_TYPE_INFO_SCHEMA
    names = table.column("type_name").to_pylist()
    assert {"BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN", "TIMESTAMP"} <= set(names)
    codes = table.column("data_type").to_pylist()
    assert codes == sorted(codes)  # the spec's order: by data_type, then type_name
    only = _command(client, pb.CommandGetXdbcTypeInfo(data_type=12))
    assert only.column("type_name").to_pylist() == ["VARCHAR"]


@pytest.mark.parametrize(
    ("cmd", "schema"),
    [
        (pb.CommandGetPrimaryKeys(table="logs"), PRIMARY_KEYS_SCHEMA),
        (pb.CommandGetExportedKeys(table="logs"), FOREIGN_KEYS_SCHEMA),
        (pb.CommandGetImportedKeys(table="logs"), FOREIGN_KEYS_SCHEMA),
        (pb.CommandGetCrossReference(pk_table="runs", fk_table="logs"), FOREIGN_KEYS_SCHEMA),
    ],
)
def test_key_commands_answer_no_keys_in_the_specs_schemas(
    served: dict[str, Any], cmd: Any, schema: pa.Schema
) -> None:
    client = _flight(served)
    table = _command(client, cmd)
    assert table.schema == schema and table.num_rows == 0
    descriptor = flight.FlightDescriptor.for_command(pack(cmd))
    assert client.get_schema(descriptor).schema == schema


def test_session_options_are_read_only(served: dict[str, Any]) -> None:
    with _connect(served["uri"]) as conn:
        options = conn.adbc_connection.get_option("adbc.flight.sql.session.options")
    assert '"replay":"off"' in options and '"query_timeout":300' in options
    client = _flight(served)
    request = session_pb.SetSessionOptionsRequest()
    request.session_options["replay"].string_value = "auto"
    request.session_options["nonsense"].bool_value = True
    (raw,) = client.do_action(flight.Action("SetSessionOptions", request.SerializeToString()))
    errors = session_pb.SetSessionOptionsResult.FromString(raw.body.to_pybytes()).errors
    assert errors["replay"].value == session_pb.SetSessionOptionsResult.ERROR
    assert errors["nonsense"].value == session_pb.SetSessionOptionsResult.INVALID_NAME


@pytest.mark.parametrize("action", ["BeginTransaction", "EndSavepoint", "RenewFlightEndpoint"])
def test_unserved_actions_answer_unimplemented(served: dict[str, Any], action: str) -> None:
    with pytest.raises(pa.ArrowNotImplementedError, match=f"does not serve the action '{action}'"):
        list(_flight(served).do_action(flight.Action(action, b"")))


def test_cancel_flight_info_drops_the_waiting_result(served: dict[str, Any]) -> None:
    client = _flight(served)
    cmd = pb.CommandStatementQuery(query="SELECT * FROM logs")
    info = client.get_flight_info(flight.FlightDescriptor.for_command(pack(cmd)))
    assert served["server"].handles.counts()[1] == 1
    request = session_pb.CancelFlightInfoRequest(info=info.serialize())
    (raw,) = client.do_action(flight.Action("CancelFlightInfo", request.SerializeToString()))
    status = session_pb.CancelFlightInfoResult.FromString(raw.body.to_pybytes()).status
    assert status == session_pb.CANCEL_STATUS_CANCELLED
    assert served["server"].handles.counts()[1] == 0
    with pytest.raises(flight.FlightServerError, match="the query was cancelled"):
        client.do_get(info.endpoints[0].ticket).read_all()


@pytest.mark.parametrize(
    ("action", "body", "says"),
    [
        ("CancelFlightInfo", b"\xff\x01garbage", "not a CancelFlightInfoRequest"),
        ("CancelFlightInfo", b"", "no FlightInfo"),
        (
            "CancelFlightInfo",
            session_pb.CancelFlightInfoRequest(info=b"nonsense").SerializeToString(),
            "its info is not a serialized FlightInfo",
        ),
        ("CancelQuery", b"\xff\x01garbage", "not a protobuf Any"),
        ("CreatePreparedStatement", b"", "holds no message"),
        ("ClosePreparedStatement", pack(pb.CommandStatementQuery(query="SELECT 1")), "expected"),
        ("SetSessionOptions", b"\xff\x01garbage", "not a SetSessionOptionsRequest"),
    ],
)
def test_a_malformed_request_is_an_invalid_argument(
    served: dict[str, Any], action: str, body: bytes, says: str
) -> None:
    """A request whose body is not what the action takes is the client's mistake: gRPC
    INVALID_ARGUMENT (pyarrow raises ArrowInvalid) saying what is wrong, not
    'florsql ValueError' (UNKNOWN) or an internal error (a protobuf DecodeError)."""
    with pytest.raises(pa.ArrowInvalid, match=f"florsql MalformedRequest: {action}: .*{says}"):
        list(_flight(served).do_action(flight.Action(action, body)))
    cmd = flight.FlightDescriptor.for_command(b"\xff\x01garbage")
    with pytest.raises(pa.ArrowInvalid, match=r"MalformedRequest: .*not a protobuf Any"):
        _flight(served).get_flight_info(cmd)


def test_adbc_cancel_stops_the_query_in_duckdb(served: dict[str, Any]) -> None:
    watchdog = served["server"].watchdog
    failed: list[BaseException] = []
    with _connect(served["uri"]) as conn, conn.cursor() as cur:

        def run() -> None:
            try:
                cur.execute(ENDLESS)
            except BaseException as e:
                failed.append(e)

        worker = threading.Thread(target=run)
        worker.start()
        assert watchdog.wait_running(1, timeout=60)
        cancelled = watchdog.cancelled
        cur.adbc_cancel()
        worker.join(60)
        # The server noticed the call went away and interrupted DuckDB: no query runs on.
        assert watchdog.wait_running(0, timeout=60)
    assert not worker.is_alive() and failed
    assert watchdog.cancelled == cancelled + 1


# -- 3. column metadata ------------------------------------------------------------------------


def test_get_objects_reports_xdbc_type_names(served: dict[str, Any]) -> None:
    with _connect(served["uri"]) as conn:
        objects = conn.adbc_get_objects(table_name_filter="logs").read_all().to_pylist()
        schema = conn.adbc_get_table_schema("logs")
    (table,) = objects[0]["catalog_db_schemas"][0]["db_schema_tables"]
    types = {c["column_name"]: c["xdbc_type_name"] for c in table["table_columns"]}
    assert types["loss"] == "DOUBLE" and types["run_id"] == "VARCHAR"
    assert types["epoch"] == "BIGINT" and types["tstamp"].startswith("TIMESTAMP")
    assert None not in types.values()
    assert schema.field("loss").metadata[b"ARROW:FLIGHT:SQL:TABLE_NAME"] == b"logs"


def test_browsing_filters_ignore_case_as_sql_names_do(served: dict[str, Any]) -> None:
    """``SELECT * FROM LOGS`` and ``FROM Main.Runs`` read ``logs`` and ``runs``, but GetTables
    compared its name and schema patterns case-sensitively: ADBC's ``adbc_get_objects`` with
    ``LOGS`` or ``MAIN`` found nothing. Now patterns, the catalog and the table types (``TABLE``,
    JDBC's spelling) ignore case. The names answered are the tables' own, except for a filter
    naming one table exactly in another case: that answers the name as asked, which ADBC's
    ``adbc_get_table_schema("LOGS")`` needs (its driver compares the answered name exactly)."""

    def tables(conn: adbc.Connection, **filters: Any) -> list[str]:
        objects = conn.adbc_get_objects(depth="tables", **filters).read_all().to_pylist()
        return [
            t["table_name"]
            for c in objects
            for s in c["catalog_db_schemas"] or ()
            for t in s["db_schema_tables"] or ()
        ]

    with _connect(served["uri"]) as conn, conn.cursor() as cur:
        every = tables(conn)
        assert "logs" in every and "runs" in every
        assert tables(conn, table_name_filter="LOGS") == ["LOGS"]
        assert tables(conn, table_name_filter="Log%") == ["log_records", "logs"]
        assert tables(conn, table_name_filter="log_records") == ["log_records"]
        assert tables(conn, db_schema_filter="MAIN", table_name_filter="RUNS") == ["RUNS"]
        assert tables(conn, catalog_filter="FLORSQL", table_name_filter="r_NS") == ["runs"]
        assert tables(conn, db_schema_filter="public") == []
        assert tables(conn, table_types_filter=["TABLE"]) == every
        cur.execute("SELECT count(*) FROM FLORSQL.MAIN.LOGS")
        assert cur.fetchall()[0][0] > 0  # as SQL reads them
    client = _flight(served)
    cmd = pb.CommandGetTables(catalog="FloRSQL", table_name_filter_pattern="LOGS")
    info = client.get_flight_info(flight.FlightDescriptor.for_command(pack(cmd)))
    got = client.do_get(info.endpoints[0].ticket).read_all()
    assert got.column("table_name").to_pylist() == ["LOGS"]


def test_adbc_get_table_schema_ignores_case_as_sql_does(served: dict[str, Any]) -> None:
    """``adbc_get_table_schema("LOGS")`` failed NOT_FOUND although ``FROM LOGS`` reads logs."""
    with _connect(served["uri"]) as conn:
        own = conn.adbc_get_table_schema("logs")
        for asked in ("LOGS", "Logs", "Log_Records"):
            schema = conn.adbc_get_table_schema(asked)
            assert (
                schema.remove_metadata()
                == (
                    own if asked.lower() == "logs" else conn.adbc_get_table_schema("log_records")
                ).remove_metadata()
            )
        with pytest.raises(adbc.Error, match="NOT_FOUND"):
            conn.adbc_get_table_schema("Lo%")


def test_adbc_executemany_of_a_query_says_what_to_do(served: dict[str, Any]) -> None:
    """ADBC's ``executemany`` runs a prepared SELECT as an update; the answer was only "updates
    are not allowed", which read as if the SELECT wrote. Now it says to run execute() per row,
    and the cursor still answers queries after it."""
    with _connect(served["uri"]) as conn, conn.cursor() as cur:
        with pytest.raises(adbc.Error, match=r"executemany\(\) sends its parameter rows"):
            cur.executemany("SELECT count(*) FROM runs WHERE lr > ?", [[0.1], [0.15]])
        got = []
        for lr in (0.05, 0.15):
            cur.execute("SELECT count(*) FROM runs WHERE lr > ?", [lr])
            got.append(cur.fetchall()[0][0])
        assert got == [2, 1]


def test_result_schemas_carry_type_names(served: dict[str, Any]) -> None:
    client = _flight(served)
    cmd = pb.CommandStatementQuery(query="SELECT run_id, 1.5::DECIMAL(10,2) AS d FROM runs")
    info = client.get_flight_info(flight.FlightDescriptor.for_command(pack(cmd)))
    client.do_get(info.endpoints[0].ticket).read_all()
    d = info.schema.field("d").metadata
    assert info.schema.field("run_id").metadata[TYPE_NAME] == b"VARCHAR"
    assert d[TYPE_NAME] == b"DECIMAL(10,2)" and d[b"ARROW:FLIGHT:SQL:PRECISION"] == b"10"
    assert d[b"ARROW:FLIGHT:SQL:SCALE"] == b"2"


# -- 4. browsing follows a script edit ---------------------------------------------------------


def test_a_new_log_statement_shows_in_browsing(served: dict[str, Any]) -> None:
    repo = served["edited"]
    service = open_service(repo)
    try:
        with serving(service) as server:
            uri = f"grpc://127.0.0.1:{server.port}"
            engine = sa.create_engine(f"adbc+flightsql://127.0.0.1:{server.port}?tls=false")
            with _connect(uri) as conn:
                assert "grad_norm" not in conn.adbc_get_table_schema("logs").names
                assert "grad_norm" not in [
                    c["name"] for c in sa.inspect(engine).get_columns("logs")
                ]
                script = EDITED.lstrip("\n").replace(
                    '    flor.log("w", w)\n', '    flor.log("w", w)\n    flor.log("grad_norm", w)\n'
                )
                (repo / "train.py").write_text(script)
                assert "grad_norm" in conn.adbc_get_table_schema("logs").names
                objects = conn.adbc_get_objects(table_name_filter="logs").read_all().to_pylist()
            (table,) = objects[0]["catalog_db_schemas"][0]["db_schema_tables"]
            assert "grad_norm" in [c["column_name"] for c in table["table_columns"]]
            assert "grad_norm" in [c["name"] for c in sa.inspect(engine).get_columns("logs")]
            engine.dispose()
    finally:
        service.close()


# -- 5. GetSchema --------------------------------------------------------------------------------


def test_get_schema_plans_and_errors_in_one_line(cli_uri: str) -> None:
    client = flight.connect(cli_uri)

    def schema(sql: str) -> pa.Schema:
        cmd = pb.CommandStatementQuery(query=sql)
        return client.get_schema(flight.FlightDescriptor.for_command(pack(cmd))).schema

    # Planned, not run: running it would fail.
    assert schema("SELECT CAST(run_id AS INTEGER) AS n FROM runs").names == ["n"]
    for bad, shape in (
        ("SELECT los FROM logs", "florsql PlanError: Unknown column 'los'. Did you mean 'loss'?"),
        ("SELEC 1", "florsql ParseError: "),
    ):
        with pytest.raises(pa.ArrowException) as caught:
            schema(bad)
        message = str(caught.value)
        # pyarrow sends a GetSchema error as a Python exception; its detail repeats the line.
        first, *rest = message.splitlines()
        assert shape in first and all(line.startswith(". Detail") for line in rest), message
        assert "Traceback" not in message and ".py" not in message, message
    for action in ("BeginTransaction", "EndTransaction"):
        with pytest.raises(pa.ArrowNotImplementedError) as unserved:
            list(client.do_action(flight.Action(action, b"")))
        message = str(unserved.value)
        assert f"florsql does not serve the action '{action}'" in message
        assert "Traceback" not in message and ".py" not in message, message


# -- 6. table types and SQLAlchemy ---------------------------------------------------------------


def test_sqlalchemy_adbc_lists_tables_reads_columns_and_selects(served: dict[str, Any]) -> None:
    engine = sa.create_engine(f"adbc+flightsql://127.0.0.1:{served['port']}?tls=false")
    try:
        inspector = sa.inspect(engine)
        assert {"logs", "runs", "args", "versions"} <= set(inspector.get_table_names())
        columns = {c["name"]: c["type"] for c in inspector.get_columns("logs")}
        assert isinstance(columns["loss"], sa.Float) and isinstance(columns["epoch"], sa.BigInteger)
        assert isinstance(columns["run_id"], sa.String)
        logs = sa.Table("logs", sa.MetaData(), autoload_with=engine)
        query = (
            sa.select(logs.c.run_id, logs.c.epoch, logs.c.loss)
            .where(logs.c.epoch >= 1)
            .order_by(logs.c.run_id, logs.c.epoch, logs.c.loss)
            .limit(5)
        )
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        assert len(rows) == 5 and all(r.epoch >= 1 for r in rows)
        frame = pd.read_sql_table("logs", engine)
        assert len(frame) == 2 * 3 * 4 + 2 * 3 + 2 or len(frame) > 0
        assert {"run_id", "loss", "epoch"} <= set(frame.columns)
    finally:
        engine.dispose()


# -- 10. dataframes ------------------------------------------------------------------------------


def test_polars_and_pandas_read_over_adbc_as_over_the_dbapi(served: dict[str, Any]) -> None:
    sql = LOSSES.replace("?", "0.15")
    with _connect(served["uri"]) as conn:
        polars_frame = pl.read_database(sql, connection=conn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas: "only supports SQLAlchemy connectables"
            pandas_frame = pd.read_sql(sql, conn)  # pandas passes no params to ADBC
    want = served["dbapi_frame"]
    assert len(want) == 3
    pd.testing.assert_frame_equal(pandas_frame, want, check_exact=False, rtol=1e-12)
    assert polars_frame.to_pandas().equals(pandas_frame) or polars_frame["loss"].to_list() == (
        pytest.approx(want["loss"].to_list(), rel=1e-12)
    )


# -- 7. limits -----------------------------------------------------------------------------------


def test_statements_too_long_or_too_deep_are_refused_before_parsing(
    served: dict[str, Any],
) -> None:
    limits = Limits(max_sql_length=200, max_parse_depth=5)
    with serving(served["service"], limits=limits) as server:
        uri = f"grpc://127.0.0.1:{server.port}"
        with _connect(uri) as conn, conn.cursor() as cur:
            with pytest.raises(adbc.OperationalError, match=r"over the server's limit of 200"):
                cur.execute("SELECT 1 AS x" + " " * 300)
            with pytest.raises(adbc.OperationalError, match=r"nests parentheses 6 deep"):
                cur.execute("SELECT " + "(" * 6 + "1" + ")" * 6)
            cur.execute("SELECT " + "(" * 5 + "1" + ")" * 5 + " AS x")
            assert cur.fetchall() == [(1,)]


def test_a_query_past_the_timeout_is_cancelled(served: dict[str, Any]) -> None:
    with serving(served["service"], limits=Limits(query_timeout=0.5)) as server:
        with _connect(f"grpc://127.0.0.1:{server.port}") as conn, conn.cursor() as cur:
            with pytest.raises(adbc.OperationalError, match=r"longer than the server's limit"):
                cur.execute(ENDLESS)
            cur.execute("SELECT count(*) FROM runs")  # the server goes on serving
            assert cur.fetchall() == [(2,)]
        assert server.watchdog.running() == 0


def test_waiting_results_are_capped_and_the_client_told(served: dict[str, Any]) -> None:
    with serving(served["service"], limits=Limits(max_pending_results=2)) as server:
        client = flight.connect(f"grpc://127.0.0.1:{server.port}")
        infos = [
            client.get_flight_info(
                flight.FlightDescriptor.for_command(
                    pack(pb.CommandStatementQuery(query=f"SELECT {i} AS i"))
                )
            )
            for i in range(3)
        ]
        assert server.handles.counts()[1] == 2
        with pytest.raises(flight.FlightServerError, match="dropped before it was fetched"):
            client.do_get(infos[0].endpoints[0].ticket).read_all()
        assert client.do_get(infos[2].endpoints[0].ticket).read_all().to_pylist() == [{"i": 2}]
    # A query's rows are computed as DoGet reads them (issue 12), so none wait in memory: a
    # result of any size is served under a byte cap that only answers held whole (SHOW,
    # EXPLAIN) count against.
    with (
        serving(served["service"], limits=Limits(max_pending_bytes=1000)) as server,
        _connect(f"grpc://127.0.0.1:{server.port}") as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT range FROM range(100000)")
        assert cur.fetch_arrow_table().column("range").to_pylist() == list(range(100000))
        with pytest.raises(adbc.OperationalError, match=r"over the .* awaiting download"):
            cur.execute("EXPLAIN SELECT * FROM logs")


def test_queries_beyond_the_concurrency_limit_wait_then_are_refused(
    served: dict[str, Any],
) -> None:
    limits = Limits(max_concurrent=1, queue_timeout=0.2, query_timeout=0)
    with serving(served["service"], limits=limits) as server:
        uri = f"grpc://127.0.0.1:{server.port}"
        with _connect(uri) as busy, busy.cursor() as long_cur:
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    long_cur.execute(ENDLESS)
                except BaseException as e:
                    errors.append(e)

            worker = threading.Thread(target=run)
            worker.start()
            assert server.watchdog.wait_running(1, timeout=60)
            with (
                _connect(uri) as conn,
                conn.cursor() as cur,
                pytest.raises(adbc.Error, match=r"ServerBusy: 1 queries are running.*Unavailable"),
            ):
                cur.execute("SELECT 1")
            long_cur.adbc_cancel()
            worker.join(60)
        assert errors and server.watchdog.refused == 1
