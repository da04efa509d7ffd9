"""What the Flight SQL server needs of the query engine, as a small protocol.

The server never reaches into the engine's internals: it asks a :class:`QueryService` to run one
statement (on its own cursor, so that requests from several clients run at once), to describe a
statement's result columns without running it, and to list the relations a client may browse.
:mod:`florsql.flight.backend` adapts the engine to it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    from florsql.engine.exact import ExactStream

__all__ = ["QueryControl", "QueryResult", "QueryService", "ReplayMode", "TableInfo"]

ReplayMode = Literal["auto", "confirm", "off", "error"]


@dataclass(frozen=True)
class QueryResult:
    """The answer to one statement: Arrow data, DuckDB's type name of each column (when
    known) and the warnings raised while computing it. A streamed answer has its rows in
    ``stream`` (read once, then closed) and an empty ``table`` with the schema."""

    table: pa.Table
    warnings: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    stream: ExactStream | None = None
    #: stops the statement computing ``stream``'s rows, from another thread (DuckDB's
    #: interrupt of the cursor serving it); None where nothing can stop it
    interrupt: Callable[[], None] | None = None
    #: seconds of the query's time limit left for computing ``stream``'s rows after the first
    #: batch (set by the server; None: no limit)
    seconds_left: float | None = None


@dataclass(frozen=True)
class TableInfo:
    """A relation a client can browse: ``logs`` or a metadata relation.

    ``table_type`` is ``table``, lower case, as SQLite's and PostgreSQL's ADBC drivers and the
    Flight SQL reference server report it (sqlalchemy-adbc lists only tables of that type).
    """

    name: str
    schema: pa.Schema
    table_type: str = "table"
    types: tuple[str, ...] = ()


class QueryControl:
    """Cancels one running query from another thread (a timeout, a client that went away).

    The service registers how to stop what it runs (:meth:`on_cancel`); :meth:`cancel` calls
    those hooks once, and a hook registered after the cancel runs at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []
        self.reason: str | None = None

    def on_cancel(self, hook: Callable[[], None]) -> None:
        with self._lock:
            if self.reason is None:
                self._hooks.append(hook)
                return
        hook()

    def cancel(self, reason: str) -> bool:
        """Stop the query; False if it was cancelled already."""
        with self._lock:
            if self.reason is not None:
                return False
            self.reason, hooks, self._hooks = reason, self._hooks, []
        for hook in hooks:
            hook()
        return True


class QueryService(Protocol):
    """The engine as the server sees it. Every method must be safe to call from many threads."""

    def execute(
        self,
        sql: str,
        params: Sequence[object],
        *,
        replay: ReplayMode,
        control: QueryControl | None = None,
        stream: bool = False,
    ) -> QueryResult:
        """Run one read-only statement with ``?`` parameters bound; raise a ``FlorError``.
        ``stream``: a query's rows may come in :attr:`QueryResult.stream`, computed as they
        are read (planning, replay and warnings happen here all the same)."""
        ...

    def describe(self, sql: str) -> QueryResult:
        """The result columns of ``sql`` (an empty table), planned, not run."""
        ...

    def tables(self) -> Sequence[TableInfo]:
        """The relations queries may read, with their Arrow schemas."""
        ...
