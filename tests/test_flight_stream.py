"""Flight results computed as DoGet reads them (issue 12): the same rows and types as the
in-process answer, a snapshot that holds while the store changes, abandoned and cancelled
results that give their DuckDB cursor back, and an error met mid-stream in the one shape of
errors. Real server, real clients (pyarrow Flight and ADBC), real repositories."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as adbc
import pyarrow.flight as flight
import pytest

from florsql.flight import flight_sql_pb2 as pb
from florsql.flight.backend import open_service
from florsql.flight.limits import Limits
from florsql.flight.server import FlorFlightServer, ServerOptions
from florsql.flight.wire import pack
from tests.helpers_sql import write_bulk_run
from tests.test_flight_clients import serving
from tests.test_flight_support import recorded_repo

#: Every DuckDB type whose Arrow export florsql rewrites (florsql.engine.exact), over enough
#: rows for several batches.
EXOTIC = (
    "SELECT i, i::HUGEINT * 17014118346046923173168730371 AS h, [i::UHUGEINT] AS l, "
    "i::BIT AS b, {'a': i::HUGEINT} AS st, MAP {i::UHUGEINT: 1} AS m, "
    "TIMETZ '12:00:00+05:30' AS tz, 10::BIGNUM ** 50 AS bn FROM range(300000) t(i)"
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recorded_repo(tmp_path_factory.mktemp("stream") / "proj")


@pytest.fixture
def service(repo: Path, tmp_path: Path) -> Iterator[Any]:
    copy = tmp_path / "proj"
    shutil.copytree(repo, copy)
    svc = open_service(copy)
    try:
        yield svc
    finally:
        svc.close()


def _info(client: flight.FlightClient, sql: str) -> flight.FlightInfo:
    cmd = flight.FlightDescriptor.for_command(pack(pb.CommandStatementQuery(query=sql)))
    return client.get_flight_info(cmd)


def _cursors(service: Any) -> int:
    return len(service.engine._box._cursors)


def test_streamed_rows_equal_the_in_process_answer(service: Any) -> None:
    want = service.engine.execute(EXOTIC).table  # the engine's own answer, held whole
    with serving(service) as server:
        client = flight.connect(f"grpc://127.0.0.1:{server.port}")
        info = _info(client, EXOTIC)
        got = client.do_get(info.endpoints[0].ticket).read_all()
        client.close()
    assert got.schema.remove_metadata() == want.schema.remove_metadata()
    assert [f.metadata for f in want.schema] == [
        {k: v for k, v in (f.metadata or {}).items() if k == b"florsql.type"} for f in got.schema
    ]
    assert got.equals(want.cast(got.schema)) and got.num_rows == 300000


def test_a_result_reads_the_store_as_it_was_when_it_was_asked(service: Any) -> None:
    """GetFlightInfo pins the data: a run recorded (and the index refreshed) before DoGet is
    not in the rows, and the schema stays the FlightInfo's; a new query sees it."""
    sql = "SELECT run_id, count(*) AS n FROM logs GROUP BY run_id ORDER BY run_id"
    with serving(service) as server:
        client = flight.connect(f"grpc://127.0.0.1:{server.port}")
        before = _info(client, sql)
        write_bulk_run(service.engine.repo, "zz_later", {"lr": 0.3}, epochs=2, steps=3, seed=1)
        service.engine.refresh()
        old = client.do_get(before.endpoints[0].ticket).read_all()
        new = client.do_get(_info(client, sql).endpoints[0].ticket).read_all()
        client.close()
    assert old.schema == before.schema
    assert "zz_later" not in old.column("run_id").to_pylist()
    assert new.column("run_id").to_pylist() == [*old.column("run_id").to_pylist(), "zz_later"]


def test_results_never_read_give_their_cursors_back(service: Any) -> None:
    big = "SELECT range FROM range(1000000)"
    baseline = _cursors(service)
    with serving(service, limits=Limits(max_pending_results=2)) as server:
        client = flight.connect(f"grpc://127.0.0.1:{server.port}")
        infos = [_info(client, big) for _ in range(5)]
        # two wait for their DoGet, each on its cursor; the three pushed out gave theirs back
        assert server.handles.counts()[1] == 2 and _cursors(service) == baseline + 2
        with pytest.raises(flight.FlightServerError, match="dropped before it was fetched"):
            client.do_get(infos[0].endpoints[0].ticket).read_all()
        request = pb.ActionCancelQueryRequest(info=infos[3].serialize())
        list(client.do_action(flight.Action("CancelQuery", pack(request))))
        assert _cursors(service) == baseline + 1
        # a read stopped half-way and cancelled: the cursor goes back with the stream (a
        # client that stops reading and does not cancel: the next test)
        reader = client.do_get(infos[4].endpoints[0].ticket)
        reader.read_chunk()
        reader.cancel()
        client.close()
    assert _cursors(service) == baseline


def test_an_error_met_while_the_rows_are_read_is_a_clear_error(service: Any) -> None:
    """Division by zero at row 500,000: GetFlightInfo binds the query (fine), DoGet meets the
    error after sending rows; the ADBC client gets florsql's one-line error, and the server
    answers the next query."""
    sql = "SELECT range // (range - 500000) AS x FROM range(1000000)"
    with (
        serving(service) as server,
        adbc.connect(f"grpc://127.0.0.1:{server.port}", autocommit=True) as conn,
        conn.cursor() as cur,
    ):
        with pytest.raises(adbc.Error, match=r"florsql SqlError: .*Division by zero"):
            cur.execute(sql)
            cur.fetch_arrow_table()
        cur.execute("SELECT 42 AS x")
        assert cur.fetchall() == [(42,)]
        with pytest.raises(adbc.Error, match=r"florsql PlanError: Unknown column 'nope'"):
            cur.execute("SELECT nope FROM logs")  # a binding error still comes at once


def test_rows_computed_after_the_first_batch_are_under_the_query_timeout(service: Any) -> None:
    """A filter whose first batch comes at once (the first 122,880 numbers) and whose next
    needs the rest of 10^11 numbers: GetFlightInfo answers within the limit, and DoGet's
    computing is cancelled at the limit with florsql's error (before, rows after the first
    batch ran with no limit, here for hours, holding a DuckDB cursor and a core). The cursor
    goes back and the server answers the next query."""
    sql = "SELECT i FROM range(100000000000) t(i) WHERE i < 200000 OR i % 1000000007 = 999"
    baseline = _cursors(service)
    with serving(service, limits=Limits(query_timeout=5)) as server:
        client = flight.connect(f"grpc://127.0.0.1:{server.port}")
        info = _info(client, sql)  # binds, and computes the first batch
        reader = client.do_get(info.endpoints[0].ticket)
        with pytest.raises(flight.FlightError, match=r"longer than the server's limit of 5 s"):
            reader.read_all()
        ticket = _info(client, "SELECT 42 AS x").endpoints[0].ticket
        assert client.do_get(ticket).read_all().to_pylist() == [{"x": 42}]
        client.close()
        assert server.watchdog.wait_running(0, timeout=60)
    assert _cursors(service) == baseline


def test_a_client_that_stops_reading_does_not_hold_the_server_open(service: Any) -> None:
    """A client that reads one batch of a large result and then neither reads on nor cancels
    keeps the DoGet waiting in gRPC's flow control, where nothing of the server's can stop it:
    shutdown (Ctrl-C of ``florsql serve``) waited for it forever (it hung a CI run). Now it
    waits ``grace`` seconds, says so, and returns; the call ends once the client cancels."""
    server = FlorFlightServer(service, ServerOptions("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    client = flight.connect(f"grpc://127.0.0.1:{server.port}")
    sql = "SELECT range AS i FROM range(20000000)"  # 160 MB: past any flow-control window
    reader = client.do_get(_info(client, sql).endpoints[0].ticket)
    reader.read_chunk()
    assert server.shutdown(grace=1) is False
    reader.cancel()
    client.close()
    thread.join(60)
    assert not thread.is_alive()
