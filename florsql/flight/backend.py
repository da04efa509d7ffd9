"""The engine as the Flight server's :class:`~florsql.flight.service.QueryService`.

Every request runs on its own engine cursor (:meth:`florsql.engine.Engine.cursor`), so requests
from several clients plan and run in DuckDB at the same time. What must be exclusive the engine
makes exclusive itself: rebuilding its helper relations after the store changed, and a replay
(``--allow-replay``), which runs alone. Results are materialized Arrow tables, so streaming them
to clients (DoGet) runs in parallel too. The replay setting comes from the server, per request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from florsql.engine import Engine
from florsql.flight.service import QueryResult, ReplayMode, TableInfo

__all__ = ["EngineService", "open_service"]

log = logging.getLogger("florsql.flight")


class EngineService:
    """Serves one repository through an :class:`~florsql.engine.Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tables_lock = threading.Lock()  # the browsing cache only
        self._tables: tuple[object, list[TableInfo]] | None = None

    def execute(self, sql: str, params: Sequence[object], *, replay: ReplayMode) -> QueryResult:
        # The result carries its warnings; the server logs them instead of raising them.
        with self.engine.cursor(replay=replay, warn=False) as cursor:
            result = cursor.execute(sql, list(params))
        for message in result.warnings:
            log.warning("%s", message)
        return QueryResult(result.table, tuple(result.warnings))

    def tables(self) -> Sequence[TableInfo]:
        """``logs`` and every metadata relation, typed as a ``SELECT *`` over each returns."""
        catalog = self.engine.catalog()
        key = catalog.generation if catalog.generation is not None else catalog
        with self._tables_lock:
            if self._tables is not None and self._tables[0] == key:
                return self._tables[1]
        names = ["logs", *catalog.relations]
        infos = [TableInfo(name, self._schema(name)) for name in names]
        with self._tables_lock:
            self._tables = (key, infos)
        return infos

    def _schema(self, relation: str) -> pa.Schema:
        return self.execute(f"SELECT * FROM {relation} LIMIT 0", (), replay="off").table.schema

    def close(self) -> None:
        self.engine.close()


def open_service(repo: Path | str, *, wait: float = 0.0) -> EngineService:
    """An engine over ``repo``'s store, for :class:`~florsql.flight.server.FlorFlightServer`."""
    return EngineService(Engine(repo, replay="off", wait=wait))
