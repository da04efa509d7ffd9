"""The Flight SQL server with the real ADBC client, over real recorded runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as adbc
import pyarrow as pa
import pytest

from tests.test_flight_support import (
    TOKEN,
    in_process,
    recorded_repo,
    running_server,
    same_table,
)

PLAIN = "SELECT run_id, lr, epoch, step, loss FROM logs ORDER BY ALL"
PARAMS = "SELECT lr, epoch, avg(loss) AS loss FROM logs WHERE lr > ? AND epoch >= ? GROUP BY ALL ORDER BY ALL"  # noqa: E501
QUERIES: list[tuple[str, tuple[object, ...]]] = [
    (PLAIN, ()),
    (PARAMS, (0.15, 1)),
    ("SELECT * FROM logs LIMIT 0", ()),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    repo = recorded_repo(tmp_path_factory.mktemp("flight") / "proj")
    expected = in_process(repo, QUERIES)  # before the server takes the index
    with running_server(repo) as server:
        yield {"repo": repo, "server": server, "expected": expected, "uri": _uri(server)}


def _uri(server: Any) -> str:
    return f"grpc://127.0.0.1:{server.port}"


def _connect(uri: str, token: str | None = None) -> Any:
    kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {token}"} if token else {}
    return adbc.connect(uri, db_kwargs=kwargs, autocommit=True)


def _fetch(
    uri: str, sql: str, params: tuple[object, ...] = (), token: str | None = None
) -> pa.Table:
    with _connect(uri, token) as conn, conn.cursor() as cur:
        cur.execute(sql, params or None)
        return cur.fetch_arrow_table()


def test_a_plain_query_equals_the_in_process_answer(served: dict[str, Any]) -> None:
    table = _fetch(served["uri"], PLAIN)
    assert table.num_rows == 2 * 3 * 4 and table.column_names == [
        "run_id",
        "lr",
        "epoch",
        "step",
        "loss",
    ]
    assert same_table(table, served["expected"][0])


def test_a_parameterized_query_binds_through_doput(served: dict[str, Any]) -> None:
    table = _fetch(served["uri"], PARAMS, (0.15, 1))
    assert table.column("lr").to_pylist() == [0.2, 0.2]
    assert same_table(table, served["expected"][1])


def test_parameters_keep_their_arrow_types(served: dict[str, Any]) -> None:
    """An ``int64`` parameter (ADBC's type for a Python int) bound as an INTEGER literal when
    its value fit one, so ``? * ?`` overflowed INT32 where the client's BIGINTs do not. Each
    fixed-width number is now its Arrow type's DuckDB type, also inside a list."""
    sql = "SELECT ? * ? AS p, typeof(?) AS t, ? AS l"
    table = _fetch(served["uri"], sql, (2**31 - 1, 2, 1, [1, 2]))
    assert table.to_pylist() == [{"p": 4294967294, "t": "BIGINT", "l": [1, 2]}]
    assert table.schema.field("l").type == pa.list_(pa.int64())
    batch = pa.record_batch(
        [
            pa.array([1], pa.int8()),
            pa.array([2**64 - 1], pa.uint64()),
            pa.array([0.1], pa.float32()),
        ],
        names=["a", "b", "c"],
    )
    with _connect(served["uri"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT typeof(?) AS a, ? AS b, ? AS c", batch)
        got = cur.fetch_arrow_table()
    assert got.column("a").to_pylist() == ["TINYINT"]
    assert got.column("b").to_pylist() == [2**64 - 1] and got.schema.field("b").type == pa.uint64()
    assert got.schema.field("c").type == pa.float32()
    assert got.column("c").to_pylist() == pa.array([0.1], pa.float32()).to_pylist()


def test_metadata_for_bi_tools(served: dict[str, Any]) -> None:
    with _connect(served["uri"]) as conn:
        info = conn.adbc_get_info()
        objects = conn.adbc_get_objects().read_all().to_pylist()
        logs_schema = conn.adbc_get_table_schema("logs")
        types = conn.adbc_get_table_types()
    assert info["vendor_name"] == "florsql" and info["vendor_arrow_version"] == pa.__version__
    assert [c["catalog_name"] for c in objects] == ["florsql"]
    (schema,) = objects[0]["catalog_db_schemas"]
    tables = {t["table_name"]: t for t in schema["db_schema_tables"]}
    assert schema["db_schema_name"] == "main"
    assert {
        "logs",
        "runs",
        "args",
        "versions",
        "loops",
        "checkpoints",
        "replays",
        "log_records",
    } <= set(tables)
    columns = [c["column_name"] for c in tables["logs"]["table_columns"]]
    assert columns[:5] == ["projid", "run_id", "tstamp", "vid", "filename"] and "w2" in columns
    assert logs_schema == served["expected"][2].schema
    assert types == ["table"]


def test_a_query_needing_a_replay_is_refused_without_allow_replay(
    served: dict[str, Any],
) -> None:
    """The client is told, in the one error shape, rather than given NULLs without a word."""
    with pytest.raises(adbc.OperationalError) as caught:
        _fetch(served["uri"], "SELECT run_id, epoch, w, w2 FROM logs ORDER BY ALL")
    message = str(caught.value)
    assert message.startswith(
        "UNKNOWN: [FlightSQL] florsql ReplayNeededError: the query needs hindsight values "
        "that were never computed (w2 for 2 run(s); "
    ), message
    assert "started with `florsql serve --allow-replay` (compute them) or `--replay off`" in (
        message
    )
    # Recorded columns, and the schema of a query with hindsight ones, still answer.
    assert _fetch(served["uri"], "SELECT count(w) AS n FROM logs").column("n").to_pylist() == [6]
    with _connect(served["uri"]) as conn, conn.cursor() as cur:
        assert "w2" in cur.adbc_execute_schema("SELECT w2 FROM logs").names


#: What BI tools send to preview a table: Superset's SQL Lab (its select_star), DBeaver's data
#: tab (the rows are capped by the JDBC driver, not in the SQL), a hand-written look.
PREVIEWS = [
    "SELECT * \nFROM main.logs\nLIMIT 100",
    "SELECT * FROM florsql.main.logs",
    "SELECT l.* FROM logs AS l WHERE epoch >= 1 ORDER BY run_id, epoch LIMIT 5",
    "SELECT * EXCLUDE (tstamp) FROM logs",
]


@pytest.mark.parametrize("sql", PREVIEWS)
def test_a_preview_answers_hindsight_columns_it_did_not_name_as_null(
    served: dict[str, Any], sql: str
) -> None:
    """A server that does not replay (the default) answers a `SELECT *` preview: the hindsight
    columns it reaches only through `*` are NULL (their advertised type), and the result's
    `florsql.warnings` says so and how to get them. It refused the whole preview before."""
    table = _fetch(served["uri"], sql)
    assert table.num_rows > 0 and table.column("w2").null_count == table.num_rows
    assert table.column("w").null_count < table.num_rows  # recorded values answer
    (warning,) = json.loads(table.schema.metadata[b"florsql.warnings"])
    assert warning.startswith(
        "this server does not replay: hindsight values never computed are NULL: w2 for "
    ), warning
    assert "name the column" in warning and "--allow-replay" in warning, warning


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT *, w2 FROM logs",
        "SELECT * FROM logs WHERE w2 > 0",
        "SELECT * FROM logs ORDER BY w2",
        "SELECT count(*) FROM (SELECT * FROM logs)",
        "SELECT * FROM (SELECT * FROM logs) LIMIT 3",
        "SELECT * FROM logs WHERE epoch IN (SELECT epoch FROM logs WHERE w2 > 0)",
        "SELECT * FROM logs ORDER BY 9 DESC LIMIT 2",  # by position: may be w2
        "SELECT * FROM logs ORDER BY ALL",
        "SELECT DISTINCT * FROM logs",
        "SELECT * FROM logs GROUP BY ALL",
        "SELECT *, count(*) OVER () AS n FROM logs",  # counts rows w2 may make
    ],
)
def test_a_query_naming_or_computing_on_a_hindsight_column_is_still_refused(
    served: dict[str, Any], sql: str
) -> None:
    with pytest.raises(adbc.OperationalError, match="florsql ReplayNeededError"):
        _fetch(served["uri"], sql)


def test_replay_off_answers_null_and_says_so_in_the_schema(tmp_path: Path) -> None:
    repo = recorded_repo(tmp_path / "proj")
    with running_server(repo, replay="off") as server:
        table = _fetch(_uri(server), "SELECT run_id, epoch, w, w2 FROM logs ORDER BY ALL")
        plain = _fetch(_uri(server), "SELECT run_id, w FROM logs")
    assert table.num_rows == 6 and table.column("w2").null_count == 6
    (warning,) = json.loads(table.schema.metadata[b"florsql.warnings"])
    assert warning.startswith(
        "replay is off: hindsight values not computed (NULL): w2 for 2 run(s)"
    ), warning
    assert warning.endswith("; a server started with --allow-replay computes them"), warning
    assert plain.schema.metadata is None or b"florsql.warnings" not in plain.schema.metadata


ERROR_SHAPE = (
    "UNKNOWN: [FlightSQL] florsql ParseError: {message} (line {line}, column {col}). "
    "Detail: Failed (Unknown; Prepare)"
)


@pytest.mark.parametrize(
    ("sql", "message", "col"),
    [
        ("DROP TABLE runs", "florsql is read-only: DROP TABLE is not allowed (queries may only "
         "read; use the record API to write)", 1),
        ("SELECT * FROM read_csv('/etc/passwd')",
         "function read_csv reads files and is not allowed in florsql queries", 15),
    ],
)  # fmt: skip
def test_writes_and_file_functions_are_refused_in_one_error_shape(
    served: dict[str, Any], sql: str, message: str, col: int
) -> None:
    with pytest.raises(adbc.OperationalError) as caught:
        _fetch(served["uri"], sql)
    assert str(caught.value) == ERROR_SHAPE.format(message=message, line=1, col=col)


def test_set_replay_belongs_to_the_server(served: dict[str, Any]) -> None:
    with pytest.raises(adbc.OperationalError, match="SET replay is not available over Flight SQL"):
        _fetch(served["uri"], "SET replay = 'auto'")


def test_clients_query_at_once(served: dict[str, Any]) -> None:
    results: dict[int, list[pa.Table]] = {}

    def client(i: int) -> None:
        with _connect(served["uri"]) as conn:
            results[i] = []
            for _ in range(3):
                with conn.cursor() as cur:
                    cur.execute(PARAMS if i % 2 else PLAIN, (0.15, 1) if i % 2 else None)
                    results[i].append(cur.fetch_arrow_table())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [0, 1, 2, 3]
    for i, tables in results.items():
        want = served["expected"][i % 2]
        assert all(same_table(t, want) for t in tables)


def test_statements_and_results_are_released(served: dict[str, Any]) -> None:
    _fetch(served["uri"], PLAIN)
    assert served["server"].handles.counts() == (0, 0)


def test_results_stream_as_record_batches(served: dict[str, Any]) -> None:
    from pyarrow import flight

    from florsql.flight import flight_sql_pb2 as pb
    from florsql.flight.wire import pack

    client = flight.connect(served["uri"])
    sql = "SELECT range AS i, repeat('x', 100) AS s FROM range(400000)"  # ~45 MB
    cmd = pb.CommandStatementQuery(query=sql)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(pack(cmd)))
    # computed as DoGet reads them (issue 12): the size is not known at GetFlightInfo
    assert (info.total_records, info.total_bytes) == (-1, -1) and info.schema.names == ["i", "s"]
    reader = client.do_get(info.endpoints[0].ticket)
    batches = [chunk.data for chunk in reader]
    assert len(batches) > 1 and sum(b.num_rows for b in batches) == 400000
    assert all(b.schema == info.schema for b in batches)
    assert [i for b in batches for i in b.column("i").to_pylist()] == list(range(400000))
    client.close()


def test_large_chunks_reach_adbc_in_messages_it_accepts(served: dict[str, Any]) -> None:
    # DuckDB hands over chunks of ~120k rows: here ~26 MB each. ADBC's Go driver refuses a
    # gRPC message over 16 MiB ("received message larger than max"), which batches sized to
    # 16 MB of data (and no fewer than 64k rows) overstepped once headers were added.
    sql = "SELECT range AS i, repeat('x', 200) AS s FROM range(130000) ORDER BY i"
    table = _fetch(served["uri"], sql)
    assert table.num_rows == 130000 and table.column_names == ["i", "s"]
    assert table.column("i").to_pylist() == list(range(130000))
    assert table.column("s").unique().to_pylist() == ["x" * 200]


def test_wide_rows_stream_as_batches_under_the_message_limit() -> None:
    from florsql.flight.server import BATCH_BYTES, wire_batches

    # one chunk of 40k rows of 1 kB (and a few rows of 1 MB: slices split again where the
    # average row misleads), as a client receives it: every batch under the limit, the rows
    # unchanged and in order, no copy of the data
    big = ["y" * (1 << 20)] * 8
    table = pa.table({"n": pa.array(range(40008), pa.int64()), "s": big + ["z" * 1000] * 40000})
    batches = list(wire_batches(table))
    assert all(b.nbytes <= BATCH_BYTES for b in batches) and len(batches) > 4
    assert pa.Table.from_batches(batches).equals(table)
    assert wire_batches(table.slice(0, 0)).read_all().equals(table.slice(0, 0))


def test_a_token_is_required_when_set(tmp_path: Path) -> None:
    repo = recorded_repo(tmp_path / "proj")
    with running_server(repo, token=TOKEN) as server:
        uri = _uri(server)
        counted = _fetch(uri, "SELECT count(*) AS n FROM runs", token=TOKEN)
        assert counted.column("n").to_pylist() == [2]
        for token in (None, "wrong"):
            with pytest.raises(adbc.Error, match="UNAUTHENTICATED") as caught:
                _fetch(uri, "SELECT 1", token=token)
            assert "a valid bearer token is required" in str(caught.value)


def test_allow_replay_computes_hindsight_values(tmp_path: Path) -> None:
    repo = recorded_repo(tmp_path / "proj")
    with running_server(repo, allow_replay=True) as server:
        table = _fetch(_uri(server), "SELECT run_id, epoch, w, w2 FROM logs ORDER BY ALL")
    assert table.num_rows == 6 and table.column("w2").null_count == 0


def test_florsql_serve_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    import re
    import signal
    import subprocess
    import sys

    repo = recorded_repo(tmp_path / "proj")
    code = "from florsql.cli import main; main()"
    server = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--port", "0", "--repo", str(repo)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        found = re.match(
            r"florsql Flight SQL on grpc\+tcp://127\.0\.0\.1:(\d+) \(read-only", banner
        )
        assert found, banner
        table = _fetch(f"grpc://127.0.0.1:{found.group(1)}", "SELECT count(*) AS n FROM runs")
        assert table.column("n").to_pylist() == [2]
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
    finally:
        if server.poll() is None:
            server.kill()
