"""Several ADBC clients at once: each request runs on its own engine cursor, overlapping."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as adbc
import pyarrow as pa

from tests.test_flight_support import recorded_repo, running_server, same_table

WAIT = 30.0
#: A query that takes a measurable time in DuckDB (a cross join over `range`) and reads logs.
HEAVY = (
    "SELECT 'overlap' AS tag, (SELECT count(*) FROM logs) AS rows, count(*) AS pairs "
    "FROM range(3000) a, range(3000) b WHERE (a.range * 7 + b.range) % 13 = 0"
)


def _fetch(uri: str, sql: str) -> pa.Table:
    with adbc.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def test_clients_run_at_the_same_time_each_on_its_own_cursor(tmp_path: Path) -> None:
    n = 3
    repo = recorded_repo(tmp_path / "proj")
    with running_server(repo) as server:
        uri = f"grpc://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
        engine = server.service.engine  # type: ignore[attr-defined]
        alone = _fetch(uri, HEAVY)
        # Every heavy request waits in the engine's on_run hook (planned, about to run in
        # DuckDB) until all n arrived: were requests served one at a time, it would break.
        barrier = threading.Barrier(n, timeout=WAIT)
        spans: list[tuple[float, float]] = []
        engine.on_run = lambda sql: barrier.wait() if "'overlap'" in sql else None
        results: list[pa.Table] = []
        errors: list[BaseException] = []

        def client() -> None:
            try:
                start = time.perf_counter()
                results.append(_fetch(uri, HEAVY))
                spans.append((start, time.perf_counter()))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * WAIT)
        engine.on_run = None
        assert errors == [] and len(results) == n
        assert all(same_table(r, alone) for r in results)
        assert engine.peak_active >= n and engine.active == 0
        # The request spans overlap (each ended after the last one started): by structure.
        assert max(s for s, _ in spans) < min(e for _, e in spans)
        assert server.handles.counts() == (0, 0)  # type: ignore[attr-defined]


def test_browsing_and_querying_at_once(tmp_path: Path) -> None:
    repo = recorded_repo(tmp_path / "proj")
    with running_server(repo) as server:
        uri = f"grpc://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
        errors: list[BaseException] = []
        counts: list[int] = []

        def browse() -> None:
            try:
                with adbc.connect(uri, autocommit=True) as conn:
                    for _ in range(3):
                        objects: Any = conn.adbc_get_objects().read_all()
                        counts.append(objects.num_rows)
                        conn.adbc_get_table_schema("logs")
            except BaseException as e:  # pragma: no cover
                errors.append(e)

        def query() -> None:
            try:
                for _ in range(3):
                    counts.append(_fetch(uri, "SELECT count(*) FROM logs").num_rows)
            except BaseException as e:  # pragma: no cover
                errors.append(e)

        threads = [threading.Thread(target=f, daemon=True) for f in (browse, query, browse)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * WAIT)
        assert errors == [] and len(counts) == 9
