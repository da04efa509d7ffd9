"""What the Flight SQL server needs of the query engine, as a small protocol.

The server never reaches into the engine's internals: it asks a :class:`QueryService` to run one
statement (on its own cursor, so that requests from several clients run at once) and to list the
relations a client may browse. :mod:`florsql.flight.backend` adapts the engine to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import pyarrow as pa

__all__ = ["QueryResult", "QueryService", "ReplayMode", "TableInfo"]

ReplayMode = Literal["auto", "confirm", "off"]


@dataclass(frozen=True)
class QueryResult:
    """The answer to one statement: Arrow data and the warnings raised while computing it."""

    table: pa.Table
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableInfo:
    """A relation a client can browse: ``logs`` or a metadata relation."""

    name: str
    schema: pa.Schema
    table_type: str = "TABLE"


class QueryService(Protocol):
    """The engine as the server sees it. Every method must be safe to call from many threads."""

    def execute(self, sql: str, params: Sequence[object], *, replay: ReplayMode) -> QueryResult:
        """Run one read-only statement with ``?`` parameters bound; raise a ``FlorError``."""
        ...

    def tables(self) -> Sequence[TableInfo]:
        """The relations queries may read, with their Arrow schemas."""
        ...
