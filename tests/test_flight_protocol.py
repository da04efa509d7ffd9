"""Flight SQL pieces without a server: the spec's result schemas, filters, SqlInfo, messages,
handles, the binding rule and the error shape."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from florsql.errors import FlorError, ParseError, PlanError, StoreError
from florsql.flight import flight_sql_pb2 as pb
from florsql.flight import metadata
from florsql.flight.auth import check_binding, is_loopback
from florsql.flight.handles import Handles
from florsql.flight.server import check_statement, parameter_row
from florsql.flight.service import QueryResult, TableInfo
from florsql.flight.sqlinfo import sql_info_table
from florsql.flight.wire import pack, to_flight_error, unpack


def test_result_schemas_are_the_specs() -> None:
    s = pa.utf8()
    assert pa.schema([pa.field("catalog_name", s, False)]) == metadata.CATALOGS_SCHEMA
    assert (
        pa.schema([pa.field("catalog_name", s), pa.field("db_schema_name", s, False)])
        == metadata.DB_SCHEMAS_SCHEMA
    )
    tables = [
        pa.field("catalog_name", s),
        pa.field("db_schema_name", s),
        pa.field("table_name", s, False),
        pa.field("table_type", s, False),
    ]
    assert pa.schema(tables) == metadata.TABLES_SCHEMA
    assert (
        pa.schema([*tables, pa.field("table_schema", pa.binary(), False)])
        == metadata.TABLES_SCHEMA_WITH_SCHEMA
    )
    assert pa.schema([pa.field("table_type", s, False)]) == metadata.TABLE_TYPES_SCHEMA
    info = sql_info_table([]).schema
    assert info.field("info_name") == pa.field("info_name", pa.uint32(), False)
    value = info.field("value").type
    assert value.mode == "dense" and [f.name for f in value] == [
        "string_value", "bool_value", "bigint_value", "int32_bitmask", "string_list",
        "int32_to_int32_list_map",
    ]  # fmt: skip
    assert [f.type for f in value] == [
        pa.utf8(), pa.bool_(), pa.int64(), pa.int32(), pa.list_(pa.utf8()),
        pa.map_(pa.int32(), pa.list_(pa.int32())),
    ]  # fmt: skip


def test_sql_info_answers_what_is_asked() -> None:
    table = sql_info_table([0, 3, 504, 508, 9999])
    assert table.to_pylist() == [
        {"info_name": 0, "value": "florsql"},
        {"info_name": 3, "value": True},
        {"info_name": 504, "value": '"'},
        {"info_name": 508, "value": ["EXPLAIN", "SHOW RUNS", "SHOW COLUMNS", "SET REPLAY"]},
    ]
    assert sql_info_table().num_rows > 20


INFOS = [TableInfo("logs", pa.schema([("loss", pa.float64())])), TableInfo("runs", pa.schema([]))]


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, ["logs", "runs"]),
        ({"table_name_filter_pattern": "l%"}, ["logs"]),
        ({"table_name_filter_pattern": "r_ns"}, ["runs"]),
        ({"db_schema_filter_pattern": "main"}, ["logs", "runs"]),
        ({"db_schema_filter_pattern": "public"}, []),
        ({"catalog": "florsql"}, ["logs", "runs"]),
        ({"catalog": ""}, []),
        ({"catalog": "other"}, []),
        ({"table_types": ["VIEW"]}, []),
        ({"table_name_filter_pattern": "LOGS"}, ["LOGS"]),  # ignoring case, named as asked
        ({"table_name_filter_pattern": "LO%"}, ["logs"]),  # a wildcard: own names
        ({"table_name_filter_pattern": "R_NS"}, ["runs"]),
        ({"db_schema_filter_pattern": "MAIN"}, ["logs", "runs"]),
        ({"catalog": "FLORSQL"}, ["logs", "runs"]),
        ({"table_types": ["TABLE"]}, ["logs", "runs"]),
    ],
)
def test_get_tables_filters(kwargs: dict[str, object], names: list[str]) -> None:
    table = metadata.tables(pb.CommandGetTables(**kwargs), INFOS)  # type: ignore[arg-type]
    assert table.column("table_name").to_pylist() == names


def test_get_tables_serializes_schemas_as_ipc() -> None:
    table = metadata.tables(pb.CommandGetTables(include_schema=True), INFOS)
    raw = table.column("table_schema")[0].as_py()
    assert pa.ipc.read_schema(pa.py_buffer(raw)) == INFOS[0].schema
    assert table.column("db_schema_name").to_pylist() == ["main", "main"]


def test_messages_round_trip_with_spec_type_urls() -> None:
    from google.protobuf import any_pb2

    raw = pack(pb.CommandGetTables(include_schema=True))
    wrapper = any_pb2.Any.FromString(raw)
    assert wrapper.type_url == "type.googleapis.com/arrow.flight.protocol.sql.CommandGetTables"
    assert unpack(raw) == pb.CommandGetTables(include_schema=True)
    other = any_pb2.Any(
        type_url="type.googleapis.com/arrow.flight.protocol.sql.CommandStatementSubstraitPlan"
    )
    with pytest.raises(NotImplementedError, match="CommandStatementSubstraitPlan"):
        unpack(other.SerializeToString())


def test_handles_bind_take_once_close_and_expire() -> None:
    handles = Handles(ttl=0.05)
    h = handles.prepare("SELECT ?")
    handles.bind(h, [1])
    assert handles.prepared(h).params == [1]
    ticket = handles.park(QueryResult(pa.table({"x": [1]})), owner=h)
    assert handles.take(ticket).table.num_rows == 1
    with pytest.raises(ValueError, match="read once"):
        handles.take(ticket)
    handles.park(QueryResult(pa.table({"x": [1]})), owner=h)
    handles.close(h)
    assert handles.counts() == (0, 0)
    handles.park(QueryResult(pa.table({})))
    time.sleep(0.1)
    handles.prepare("SELECT 1")  # sweeps what expired
    assert handles.counts() == (1, 0)


def test_parameters_come_one_row_at_a_time() -> None:
    assert parameter_row(pa.table({"a": [0.1], "b": ["x"]})) == [0.1, "x"]
    assert parameter_row(pa.table({})) == []
    with pytest.raises(PlanError, match="one parameter set per query; got 2 rows of parameters: "):
        parameter_row(pa.table({"a": [1, 2]}))


def test_only_loopback_may_go_without_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    check_binding("127.0.0.1", None)
    check_binding("0.0.0.0", "t", tls=True)
    check_binding("0.0.0.0", "t", insecure=True)
    with pytest.raises(FlorError, match=r"refusing to serve on 0\.0\.0\.0 without a token"):
        check_binding("0.0.0.0", None, tls=True)


def test_off_loopback_tls_is_required_unless_insecure_is_said() -> None:
    with pytest.raises(
        FlorError, match=r"refusing to serve on 10\.1\.2\.3 without TLS.*--insecure"
    ):
        check_binding("10.1.2.3", "t")
    with pytest.raises(FlorError, match="must not be empty"):
        check_binding("127.0.0.1", " ")


def test_statements_are_checked_before_they_reach_the_engine() -> None:
    check_statement("SHOW RUNS")
    with pytest.raises(ParseError, match="read-only"):
        check_statement("INSERT INTO runs VALUES (1)")
    with pytest.raises(FlorError, match="SET replay is not available"):
        check_statement("SET replay TO auto")


def test_the_one_error_shape() -> None:
    err = to_flight_error(
        ParseError("syntax error near 'FORM'", sql="SELECT 1 FORM", line=1, col=10)
    )
    assert isinstance(err, flight.FlightServerError)
    assert str(err) == "florsql ParseError: syntax error near 'FORM' (line 1, column 10)"
    assert json.loads(err.extra_info) == {
        "error": "ParseError", "message": "syntax error near 'FORM'", "line": 1, "col": 10,
    }  # fmt: skip
    err = to_flight_error(StoreError("the index is locked"))
    assert str(err) == "florsql StoreError: the index is locked"
    err = to_flight_error(ZeroDivisionError("division by zero"))
    assert isinstance(err, flight.FlightInternalError)
    assert str(err) == "florsql internal error: ZeroDivisionError: division by zero"


def test_doctests() -> None:
    import doctest

    from florsql.flight import auth, server, sqlinfo, wire

    for module in (auth, metadata, server, sqlinfo, wire):
        assert doctest.testmod(module).failed == 0, module.__name__
