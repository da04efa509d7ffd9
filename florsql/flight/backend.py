"""The engine as the Flight server's :class:`~florsql.flight.service.QueryService`.

Every request runs on its own engine cursor (:meth:`florsql.engine.Engine.cursor`), so requests
from several clients plan and run in DuckDB at the same time. What must be exclusive the engine
makes exclusive itself: rebuilding its helper relations after the store changed, and a replay
(``--allow-replay``), which runs alone. A query's rows are computed as its client reads them
(DoGet), on the request's cursor, which goes back when the stream is read or dropped. The
replay setting comes from the server, per request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from florsql.engine import Engine
from florsql.engine.replay_decision import REFUSED_HERE, SET_REPLAY_HINT
from florsql.flight.service import QueryControl, QueryResult, ReplayMode, TableInfo

__all__ = ["EngineService", "open_service"]

log = logging.getLogger("florsql.flight")

SERVER_HINT = "a server started with --allow-replay computes them"
#: Seconds between attempts to stop a cancelled statement, until it returns.
STOP_RETRY = 0.1


class EngineService:
    """Serves one repository through an :class:`~florsql.engine.Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tables_lock = threading.Lock()  # the browsing cache only
        self._tables: tuple[object, list[TableInfo]] | None = None

    def execute(
        self,
        sql: str,
        params: Sequence[object],
        *,
        replay: ReplayMode,
        control: QueryControl | None = None,
        stream: bool = False,
    ) -> QueryResult:
        # The result carries its warnings; the server logs them instead of raising them.
        finished = threading.Event()
        cursor = self.engine.cursor(replay=replay, warn=False)
        try:

            def stop() -> None:
                # Until the statement returns: an interrupt that comes before DuckDB runs the
                # query, or before a replay's workers start, would otherwise be lost.
                while not finished.is_set():
                    with contextlib.suppress(Exception):  # the statement may end meanwhile
                        cursor.interrupt()
                        if replay != "off":
                            self._stop_replay()
                    finished.wait(STOP_RETRY)

            if control is not None:
                control.on_cancel(
                    lambda: threading.Thread(target=stop, name="florsql-stop", daemon=True).start()
                )
            try:
                result = cursor.execute(sql, list(params), stream=stream)
                if result.stream is not None:
                    # the rows up to the first batch (all of an aggregate's or a sort's work)
                    # are computed now, under the query's timeout and cancellation
                    result.stream.prefetch()
            finally:
                finished.set()
        except BaseException:
            cursor.close()
            raise
        if result.stream is not None:  # the cursor serves the stream until it is closed
            result.stream.on_close(cursor.close)
        else:
            cursor.close()
        # Clients cannot SET replay here: the server's operator decides.
        messages = tuple(
            m.replace(SET_REPLAY_HINT, SERVER_HINT).replace(
                REFUSED_HERE, "this server does not replay"
            )
            for m in result.warnings
        )
        for message in messages:
            log.warning("%s", message)
        interrupt = cursor.interrupt if result.stream is not None else None
        return QueryResult(result.table, messages, result.types, result.stream, interrupt)

    def _stop_replay(self) -> None:
        # Replays run one at a time (the engine holds its write lock), so the executor's
        # running tasks are this query's.
        stop = getattr(self.engine.executor, "interrupt", None)
        if callable(stop):
            stop()

    def describe(self, sql: str) -> QueryResult:
        with self.engine.cursor(replay="off", warn=False) as cursor:
            result = cursor.describe(sql)
        return QueryResult(result.table.schema.empty_table(), (), result.types)

    def tables(self) -> Sequence[TableInfo]:
        """``logs`` and every metadata relation, typed as a ``SELECT *`` over each returns.

        Cached while the engine's catalog is the same object: the engine builds a new one when
        the store changes and when a script with runs changes (a new ``flor.log`` there is a
        new hindsight column), so browsing sees what queries see.
        """
        catalog = self.engine.catalog()
        with self._tables_lock:
            if self._tables is not None and self._tables[0] is catalog:
                return self._tables[1]
        names = ["logs", *catalog.relations]
        infos = []
        for name in names:
            described = self.describe(f"SELECT * FROM {name}")
            infos.append(TableInfo(name, described.table.schema, types=described.types))
        with self._tables_lock:
            self._tables = (catalog, infos)
        return infos

    def close(self) -> None:
        self.engine.close()


def open_service(
    repo: Path | str, *, wait: float = 0.0, duckdb_settings: dict[str, str] | None = None
) -> EngineService:
    """An engine over ``repo``'s store, for :class:`~florsql.flight.server.FlorFlightServer`."""
    return EngineService(Engine(repo, replay="off", wait=wait, duckdb_settings=duckdb_settings))
