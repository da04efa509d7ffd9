"""The Arrow Flight SQL server: florsql's history for BI tools and ADBC/JDBC clients.

Every request runs on its own engine cursor, so clients query at once. A query runs at
``GetFlightInfo`` (its schema goes in the FlightInfo); the client's ``DoGet`` streams the result
as record batches. Metadata commands are answered at ``DoGet`` from the ticket alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf.message import Message

from florsql.errors import SqlError
from florsql.flight import flight_session_pb2 as session_pb
from florsql.flight import flight_sql_pb2 as pb
from florsql.flight import metadata
from florsql.flight.auth import BearerTokenFactory, check_binding
from florsql.flight.handles import Handles
from florsql.flight.service import QueryResult, QueryService, ReplayMode
from florsql.flight.sqlinfo import SQL_INFO_SCHEMA, sql_info_table
from florsql.flight.wire import pack, translated, unpack
from florsql.grammar import line_col, parse

__all__ = ["FlorFlightServer", "ServerOptions"]

#: Record batches on the wire: about this many bytes each (fewer, larger messages stream
#: faster), never fewer than MIN_BATCH_ROWS rows.
BATCH_BYTES = 16 << 20
MIN_BATCH_ROWS = 64 * 1024
M = TypeVar("M", bound=Message)
METADATA = (
    pb.CommandGetSqlInfo,
    pb.CommandGetCatalogs,
    pb.CommandGetDbSchemas,
    pb.CommandGetTables,
    pb.CommandGetTableTypes,
)
READ_ONLY = "florsql is read-only: updates are not allowed (use the record API to write)"


@dataclass(frozen=True)
class ServerOptions:
    """How ``florsql serve`` was started."""

    host: str = "127.0.0.1"
    port: int = 8815
    token: str | None = None
    allow_replay: bool = False

    @property
    def location(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"grpc+tcp://{host}:{self.port}"


class FlorFlightServer(flight.FlightServerBase):
    """Flight SQL over a :class:`QueryService`. ``port=0`` picks a free port (see ``.port``)."""

    def __init__(self, service: QueryService, options: ServerOptions | None = None) -> None:
        options = options or ServerOptions()
        check_binding(options.host, options.token)
        middleware = {"auth": BearerTokenFactory(options.token)} if options.token else {}
        super().__init__(options.location, middleware=middleware)
        self.service = service
        self.options = options
        self.handles = Handles()
        self.replay: ReplayMode = "auto" if options.allow_replay else "off"

    # -- queries -------------------------------------------------------------------------

    def _run(self, sql: str, params: Sequence[object]) -> QueryResult:
        check_statement(sql)
        return self.service.execute(sql, params, replay=self.replay)

    def _info(
        self, descriptor: flight.FlightDescriptor, ticket: bytes, result: QueryResult
    ) -> flight.FlightInfo:
        table = result.table
        endpoint = flight.FlightEndpoint(ticket, [])
        return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, table.nbytes)

    @translated
    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        cmd = unpack(descriptor.command)
        if isinstance(cmd, pb.CommandStatementQuery):
            result = self._run(cmd.query, [])
            handle = self.handles.park(result)
        elif isinstance(cmd, pb.CommandPreparedStatementQuery):
            prepared = self.handles.prepared(cmd.prepared_statement_handle)
            result = self._run(prepared.sql, prepared.params)
            handle = self.handles.park(result, owner=cmd.prepared_statement_handle)
        elif isinstance(cmd, METADATA):
            schema = self._metadata_schema(cmd)
            return flight.FlightInfo(
                schema, descriptor, [flight.FlightEndpoint(descriptor.command, [])], -1, -1
            )
        else:
            raise NotImplementedError(f"florsql does not serve {type(cmd).__name__}")
        ticket = pack(pb.TicketStatementQuery(statement_handle=handle))
        return self._info(descriptor, ticket, result)

    @translated
    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        cmd = unpack(descriptor.command)
        if isinstance(cmd, METADATA):
            return flight.SchemaResult(self._metadata_schema(cmd))
        if isinstance(cmd, pb.CommandStatementQuery):
            return flight.SchemaResult(self._run(cmd.query, []).table.schema)
        if isinstance(cmd, pb.CommandPreparedStatementQuery):
            prepared = self.handles.prepared(cmd.prepared_statement_handle)
            return flight.SchemaResult(self._run(prepared.sql, prepared.params).table.schema)
        raise NotImplementedError(f"florsql does not serve {type(cmd).__name__}")

    @translated
    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.RecordBatchStream:
        msg = unpack(ticket.ticket)
        if isinstance(msg, pb.TicketStatementQuery):
            table = self.handles.take(msg.statement_handle).table
        elif isinstance(msg, METADATA):
            table = self._metadata_table(msg)
        else:
            raise NotImplementedError(f"florsql does not serve {type(msg).__name__}")
        return flight.RecordBatchStream(table.to_reader(max_chunksize=batch_rows(table)))

    @translated
    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        cmd = unpack(descriptor.command)
        if isinstance(cmd, pb.CommandPreparedStatementQuery):
            handle = cmd.prepared_statement_handle
            self.handles.bind(handle, parameter_row(reader.read_all()))
            done = pb.DoPutPreparedStatementResult(prepared_statement_handle=handle)
            # Unlike commands and action results, this result travels bare, not in an Any.
            writer.write(pa.py_buffer(done.SerializeToString()))
            return
        if isinstance(cmd, pb.CommandStatementUpdate | pb.CommandPreparedStatementUpdate):
            raise SqlError(READ_ONLY)
        raise NotImplementedError(f"florsql does not serve {type(cmd).__name__}")

    # -- actions ---------------------------------------------------------------------------

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [
            ("CreatePreparedStatement", "prepare a read-only query"),
            ("ClosePreparedStatement", "release a prepared statement"),
            ("CloseSession", "end the client's session (florsql keeps no session state)"),
        ]

    @translated
    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> Iterator[flight.Result]:
        body = action.body.to_pybytes() if action.body is not None else b""
        if action.type == "CreatePreparedStatement":
            request = _expect(unpack(body), pb.ActionCreatePreparedStatementRequest)
            check_statement(request.query)
            handle = self.handles.prepare(request.query)
            result = pb.ActionCreatePreparedStatementResult(prepared_statement_handle=handle)
            return iter([flight.Result(pack(result))])
        if action.type == "ClosePreparedStatement":
            request = _expect(unpack(body), pb.ActionClosePreparedStatementRequest)
            self.handles.close(request.prepared_statement_handle)
            return iter([])
        if action.type == "CloseSession":
            closed = session_pb.CloseSessionResult(status=session_pb.CloseSessionResult.CLOSED)
            return iter([flight.Result(pack(closed))])
        raise NotImplementedError(f"florsql does not serve the action {action.type!r}")

    # -- metadata --------------------------------------------------------------------------

    def _metadata_schema(self, cmd: Message) -> pa.Schema:
        if isinstance(cmd, pb.CommandGetSqlInfo):
            return SQL_INFO_SCHEMA
        return metadata.result_schema(cmd)

    def _metadata_table(self, cmd: Message) -> pa.Table:
        if isinstance(cmd, pb.CommandGetSqlInfo):
            return sql_info_table(cmd.info)
        if isinstance(cmd, pb.CommandGetCatalogs):
            return metadata.catalogs()
        if isinstance(cmd, pb.CommandGetDbSchemas):
            return metadata.db_schemas(cmd)
        if isinstance(cmd, pb.CommandGetTables):
            return metadata.tables(cmd, self.service.tables())
        assert isinstance(cmd, pb.CommandGetTableTypes)
        return metadata.table_types(self.service.tables())


def _expect(msg: Message, cls: type[M]) -> M:
    if not isinstance(msg, cls):
        raise ValueError(f"expected {cls.DESCRIPTOR.name}, got {type(msg).__name__}")
    return msg


def check_statement(sql: str) -> None:
    """Parse ``sql`` as florsql does (refusing writes); the replay setting belongs to the server."""
    stmt = parse(sql)
    if stmt.kind == "set":
        line, col = line_col(sql, stmt.offset)
        raise SqlError(
            "SET replay is not available over Flight SQL: the server decides "
            "(start it with `florsql serve --allow-replay` to compute hindsight values)",
            sql=sql,
            line=line,
            col=col,
        )


def batch_rows(table: pa.Table) -> int:
    """Rows per streamed batch for ``table``: about :data:`BATCH_BYTES` each.

    Example:
        >>> batch_rows(pa.table({"x": list(range(10))}))
        65536
        >>> batch_rows(pa.table({"x": pa.array(range(1_000_000), pa.int64())}))
        1000000
    """
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    return max(MIN_BATCH_ROWS, min(table.num_rows, BATCH_BYTES // per_row))


def parameter_row(params: pa.Table) -> list[object]:
    """The values of the one parameter set a client bound (none for an empty batch)."""
    if params.num_rows > 1:
        raise ValueError(f"florsql runs one parameter set per query; got {params.num_rows}")
    if params.num_rows == 0:
        return []
    return [column[0].as_py() for column in params.columns]
