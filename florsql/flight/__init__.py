"""florsql's Arrow Flight SQL server, for BI tools and ADBC/JDBC clients.

:class:`FlorFlightServer` serves a :class:`~florsql.flight.service.QueryService`;
:func:`florsql.flight.backend.open_service` makes one from the engine.
"""

from __future__ import annotations

from florsql.flight.server import FlorFlightServer, ServerOptions
from florsql.flight.service import QueryResult, QueryService, TableInfo

__all__ = ["FlorFlightServer", "QueryResult", "QueryService", "ServerOptions", "TableInfo"]
