"""The Arrow Flight SQL server: florsql's history for BI tools and ADBC/JDBC clients.

Every request runs on its own engine cursor, so clients query at once. A query runs at
``GetFlightInfo`` (its schema goes in the FlightInfo); the client's ``DoGet`` streams the result
as record batches. ``CreatePreparedStatement`` and ``GetSchema`` plan a query without running it.
Metadata commands are answered at ``DoGet`` from the ticket alone. The limits of
:mod:`florsql.flight.limits` bound what one client can take.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf.message import DecodeError, Message

from florsql.errors import FlorError, PlanError, ReplayNeededError, SqlError
from florsql.flight import flight_session_pb2 as session_pb
from florsql.flight import flight_sql_pb2 as pb
from florsql.flight import metadata
from florsql.flight.auth import BearerTokenFactory, check_binding
from florsql.flight.handles import Handles
from florsql.flight.limits import Limits, QueryCancelled, Watchdog, check_sql
from florsql.flight.params import parameter_schema, parameter_value
from florsql.flight.service import QueryControl, QueryResult, QueryService, ReplayMode
from florsql.flight.sqlinfo import SQL_INFO_SCHEMA, sql_info_table
from florsql.flight.wire import (
    MalformedRequest,
    describe,
    pack,
    to_flight_error,
    translated,
    unpack,
)
from florsql.flight.xdbc import annotate
from florsql.grammar import line_col, parse

if TYPE_CHECKING:
    from florsql.engine.exact import ExactStream

__all__ = ["FlorFlightServer", "ServerOptions"]

log = logging.getLogger("florsql.flight")

#: Record batches on the wire: at most this many bytes of Arrow data each (a batch of one row
#: may be larger). ADBC's Go driver (Python, R, C) refuses a gRPC message over 16 MiB, and a
#: message is its batch plus headers and padding: half that keeps well clear. DuckDB's usual
#: chunks of 122,880 rows stay whole up to 68 bytes a row; batch size barely changes speed.
BATCH_BYTES = 8 << 20
M = TypeVar("M", bound=Message)
METADATA = (
    pb.CommandGetSqlInfo,
    pb.CommandGetCatalogs,
    pb.CommandGetDbSchemas,
    pb.CommandGetTables,
    pb.CommandGetTableTypes,
    pb.CommandGetXdbcTypeInfo,
    pb.CommandGetPrimaryKeys,
    pb.CommandGetExportedKeys,
    pb.CommandGetImportedKeys,
    pb.CommandGetCrossReference,
)
REPLAY_NEEDED = (
    "this server does not replay: ask only for recorded columns, or have it started with "
    "`florsql serve --allow-replay` (compute them) or `--replay off` (answer them as NULL)"
)
#: The schema metadata key of a result's warnings (a JSON list of strings), on the schema of
#: the FlightInfo and of the streamed batches: how a client learns that cells are NULL because
#: their values were not computed, that a replay failed, or that replayed values differ.
WARNINGS_KEY = b"florsql.warnings"
READ_ONLY = "florsql is read-only: updates are not allowed (use the record API to write)"


#: Seconds :meth:`FlorFlightServer.shutdown` waits for running calls.
SHUTDOWN_GRACE = 10.0


@dataclass(frozen=True)
class ServerOptions:
    """How ``florsql serve`` was started."""

    host: str = "127.0.0.1"
    port: int = 8815
    token: str | None = None
    allow_replay: bool = False
    limits: Limits = field(default_factory=Limits)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    #: ``off``: answer missing hindsight values as NULL (each result says so in its schema's
    #: ``florsql.warnings``); ``error`` refuses such a query; ``auto`` replays. Unset: ``auto``
    #: with ``allow_replay``, else ``error``.
    replay: ReplayMode | None = None

    @property
    def replay_mode(self) -> ReplayMode:
        if self.replay is not None:
            return self.replay
        return "auto" if self.allow_replay else "error"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def location(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'grpc+tls' if self.tls else 'grpc+tcp'}://{host}:{self.port}"


def _certificates(options: ServerOptions) -> list[flight.CertKeyPair]:
    if options.tls_cert is None and options.tls_key is None:
        return []
    if options.tls_cert is None or options.tls_key is None:
        raise FlorError("TLS needs both --tls-cert and --tls-key")
    try:
        cert, key = Path(options.tls_cert).read_bytes(), Path(options.tls_key).read_bytes()
    except OSError as e:
        raise FlorError(f"cannot read the TLS certificate or key {e.filename}: {e.strerror}") from e
    return [flight.CertKeyPair(cert, key)]


class FlorFlightServer(flight.FlightServerBase):
    """Flight SQL over a :class:`QueryService`. ``port=0`` picks a free port (see ``.port``)."""

    def __init__(self, service: QueryService, options: ServerOptions | None = None) -> None:
        options = options or ServerOptions()
        check_binding(options.host, options.token, tls=options.tls, insecure=options.insecure)
        middleware = {"auth": BearerTokenFactory(options.token)} if options.token else {}
        super().__init__(
            options.location, middleware=middleware, tls_certificates=_certificates(options)
        )
        self.service = service
        self.options = options
        self.limits = options.limits
        self.handles = Handles(
            max_results=self.limits.max_pending_results,
            max_bytes=self.limits.max_pending_bytes,
        )
        self.watchdog = Watchdog(self.limits)
        self.replay: ReplayMode = options.replay_mode

    def shutdown(self, grace: float = SHUTDOWN_GRACE) -> bool:
        """Stop serving: new calls are refused, and running ones are waited for up to
        ``grace`` seconds. False if some were still running then: a client that stopped
        reading a result without cancelling it keeps its DoGet waiting in gRPC's flow control
        for as long as the client lives (no call of the server's can stop it), so the server
        is left to end with the process. Before session 37, ``florsql serve`` waited for such
        a client forever after Ctrl-C."""
        self.watchdog.stop()
        done = threading.Event()

        def stop() -> None:
            try:
                super(FlorFlightServer, self).shutdown()
            finally:
                done.set()

        threading.Thread(target=stop, name="florsql-shutdown", daemon=True).start()
        if done.wait(grace):
            return True
        log.warning(
            "calls still ran %g s after the server began to stop (a client that stopped "
            "reading a result without cancelling it); stopping without them",
            grace,
        )
        return False

    # -- queries -------------------------------------------------------------------------

    def _run(
        self,
        context: flight.ServerCallContext,
        sql: str,
        params: Sequence[object],
        *,
        stream: bool = False,
    ) -> QueryResult:
        check_sql(sql, self.limits)
        check_statement(sql)
        with self.watchdog.admit(gone=context.is_cancelled) as control:
            admitted = time.monotonic()
            try:
                result = self.service.execute(
                    sql, params, replay=self.replay, control=control, stream=stream
                )
            except ReplayNeededError as error:
                raise ReplayNeededError(f"{error.message}; {REPLAY_NEEDED}") from None
            except Exception as error:
                raise _cancelled(control) or error from None
            if control.reason is not None:
                if result.stream is not None:
                    result.stream.close()
                raise QueryCancelled(control.reason)
            timeout = self.limits.query_timeout
            if result.stream is not None and timeout > 0:
                left = max(0.0, timeout - (time.monotonic() - admitted))
                result = dataclasses.replace(result, seconds_left=left)
            return with_warnings(result)

    def _describe(self, sql: str) -> QueryResult:
        check_sql(sql, self.limits)
        check_statement(sql)
        return self.service.describe(sql)

    def _info(
        self, descriptor: flight.FlightDescriptor, ticket: bytes, result: QueryResult
    ) -> flight.FlightInfo:
        table = result.table
        endpoint = flight.FlightEndpoint(ticket, [])
        schema = annotate(table.schema, result.types)
        if result.stream is not None:  # computed as DoGet reads it: its size is not known
            return flight.FlightInfo(schema, descriptor, [endpoint], -1, -1)
        return flight.FlightInfo(schema, descriptor, [endpoint], table.num_rows, table.nbytes)

    @translated
    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        cmd = unpack(descriptor.command)
        if isinstance(cmd, pb.CommandStatementQuery):
            result = self._run(context, cmd.query, [], stream=True)
            handle = self.handles.park(result)
        elif isinstance(cmd, pb.CommandPreparedStatementQuery):
            prepared = self.handles.prepared(cmd.prepared_statement_handle)
            result = self._run(context, prepared.sql, prepared.params, stream=True)
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

    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        try:
            return self._get_schema(descriptor)
        except Exception as error:
            # pyarrow passes a Flight error raised in get_schema on as a Python exception
            # (with its traceback, which `florsql serve` keeps out): send the one-line message
            # as the exception's whole text. gRPC status UNKNOWN, UNIMPLEMENTED as elsewhere.
            if isinstance(error, NotImplementedError):
                raise NotImplementedError(describe(error)) from None
            if isinstance(error, MalformedRequest):
                raise pa.ArrowInvalid(describe(error)) from None  # INVALID_ARGUMENT
            text = str(error) if isinstance(error, flight.FlightError) else describe(error)
            raise RuntimeError(text.split("\n")[0]) from None

    def _get_schema(self, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        cmd = unpack(descriptor.command)
        if isinstance(cmd, METADATA):
            return flight.SchemaResult(self._metadata_schema(cmd))
        if isinstance(cmd, pb.CommandStatementQuery):
            sql = cmd.query
        elif isinstance(cmd, pb.CommandPreparedStatementQuery):
            sql = self.handles.prepared(cmd.prepared_statement_handle).sql
        else:
            raise NotImplementedError(f"florsql does not serve {type(cmd).__name__}")
        described = self._describe(sql)
        return flight.SchemaResult(annotate(described.table.schema, described.types))

    @translated
    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.RecordBatchStream:
        msg = unpack(ticket.ticket)
        if isinstance(msg, pb.TicketStatementQuery):
            result = self.handles.take(msg.statement_handle)
            if result.stream is not None:
                rows = result.stream
                pace = _Pace(self.watchdog, context.is_cancelled, result)
                # a reader, not a GeneratorStream: that one sends no dictionaries (ENUM columns)
                # before the first batch, which ADBC's reader refuses
                reader = pa.RecordBatchReader.from_batches(rows.schema, _wire_stream(rows, pace))
                return flight.RecordBatchStream(reader)
            table = result.table
        elif isinstance(msg, METADATA):
            table = self._metadata_table(msg)
        else:
            raise NotImplementedError(f"florsql does not serve {type(msg).__name__}")
        return flight.RecordBatchStream(wire_batches(table))

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
        if isinstance(cmd, pb.CommandPreparedStatementUpdate):
            # ADBC's executemany() binds its parameter rows to a prepared statement and runs it
            # as an update, whatever the statement: a SELECT too
            raise SqlError(
                f"{READ_ONLY}; a prepared query runs once per execute(): executemany() sends its "
                "parameter rows as an update, so run the query with execute() for each row"
            )
        if isinstance(cmd, pb.CommandStatementUpdate):
            raise SqlError(READ_ONLY)
        raise NotImplementedError(f"florsql does not serve {type(cmd).__name__}")

    # -- actions ---------------------------------------------------------------------------

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [
            ("CreatePreparedStatement", "prepare a read-only query (planned, not run)"),
            ("ClosePreparedStatement", "release a prepared statement"),
            ("CancelFlightInfo", "drop a result that will not be fetched"),
            ("CancelQuery", "drop a result that will not be fetched (deprecated form)"),
            ("GetSessionOptions", "the server's settings (read-only)"),
            ("SetSessionOptions", "refused: the server's settings are fixed when it starts"),
            ("CloseSession", "end the client's session (florsql keeps no session state)"),
        ]

    @translated
    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> Iterator[flight.Result]:
        body = action.body.to_pybytes() if action.body is not None else b""
        try:
            return self._action(action.type, body)
        except MalformedRequest as error:
            raise MalformedRequest(f"{action.type}: {error}") from None

    def _action(self, kind: str, body: bytes) -> Iterator[flight.Result]:
        if kind == "CreatePreparedStatement":
            request = _expect(unpack(body), pb.ActionCreatePreparedStatementRequest)
            described = self._describe(request.query)
            handle = self.handles.prepare(request.query)
            result = pb.ActionCreatePreparedStatementResult(
                prepared_statement_handle=handle,
                dataset_schema=annotate(described.table.schema, described.types)
                .serialize()
                .to_pybytes(),
                parameter_schema=self._parameter_schema(request.query).serialize().to_pybytes(),
            )
            return iter([flight.Result(pack(result))])
        if kind == "ClosePreparedStatement":
            request_close = _expect(unpack(body), pb.ActionClosePreparedStatementRequest)
            self.handles.close(request_close.prepared_statement_handle)
            return iter([])
        if kind == "CloseSession":
            closed = session_pb.CloseSessionResult(status=session_pb.CloseSessionResult.CLOSED)
            return iter([flight.Result(pack(closed))])
        if kind == "CancelFlightInfo":
            info = _parse(session_pb.CancelFlightInfoRequest, body).info
            if not info:
                raise MalformedRequest("the request holds no FlightInfo (its info is empty)")
            status = (
                session_pb.CANCEL_STATUS_CANCELLED
                if self._cancel(info)
                else session_pb.CANCEL_STATUS_NOT_CANCELLABLE
            )
            done = session_pb.CancelFlightInfoResult(status=status)  # bare: a plain Flight action
            return iter([flight.Result(done.SerializeToString())])
        if kind == "CancelQuery":
            request_cancel = _expect(unpack(body), pb.ActionCancelQueryRequest)
            answer = pb.ActionCancelQueryResult(
                result=pb.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED
                if self._cancel(request_cancel.info)
                else pb.ActionCancelQueryResult.CANCEL_RESULT_NOT_CANCELLABLE
            )
            return iter([flight.Result(pack(answer))])
        if kind == "GetSessionOptions":
            options = session_pb.GetSessionOptionsResult()
            for name, value in self._session_options().items():
                if isinstance(value, str):
                    options.session_options[name].string_value = value
                else:
                    options.session_options[name].double_value = float(value)
            return iter([flight.Result(options.SerializeToString())])
        if kind == "SetSessionOptions":
            wanted = _parse(session_pb.SetSessionOptionsRequest, body)
            known = self._session_options()
            answer_set = session_pb.SetSessionOptionsResult()
            for name in wanted.session_options:
                error = answer_set.errors[name]
                error.value = (
                    session_pb.SetSessionOptionsResult.ERROR  # fixed when the server starts
                    if name in known
                    else session_pb.SetSessionOptionsResult.INVALID_NAME
                )
            return iter([flight.Result(answer_set.SerializeToString())])
        raise NotImplementedError(f"florsql does not serve the action {kind!r}")

    def _cancel(self, serialized_info: bytes) -> bool:
        """Drop the parked results of a FlightInfo. A query still running is cancelled by
        cancelling its GetFlightInfo call (the server notices the call went away)."""
        try:
            info = flight.FlightInfo.deserialize(serialized_info)
        except Exception as e:
            raise MalformedRequest(
                "its info is not a serialized FlightInfo (send the FlightInfo that "
                "GetFlightInfo answered for the query)"
            ) from e
        found = False
        for endpoint in info.endpoints:
            try:
                ticket = unpack(endpoint.ticket.ticket)
            except (NotImplementedError, MalformedRequest):
                continue
            if isinstance(ticket, pb.TicketStatementQuery):
                found = self.handles.cancel(ticket.statement_handle) or found
        return found

    def _session_options(self) -> dict[str, str | float]:
        limits = self.limits
        return {
            "replay": self.replay,
            "query_timeout": limits.query_timeout,
            "max_concurrent_queries": limits.max_concurrent,
            "max_pending_results": limits.max_pending_results,
            "max_pending_bytes": limits.max_pending_bytes,
            "max_sql_length": limits.max_sql_length,
            "memory_limit": limits.memory_limit,
            "threads": limits.threads,
        }

    def _parameter_schema(self, sql: str) -> pa.Schema:
        stmt = parse(sql)
        if stmt.query is None:
            return pa.schema([])
        return parameter_schema(stmt.query, {t.name: t.schema for t in self.service.tables()})

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
        if isinstance(cmd, pb.CommandGetXdbcTypeInfo):
            return metadata.xdbc_type_info(cmd)
        if isinstance(cmd, pb.CommandGetTableTypes):
            return metadata.table_types(self.service.tables())
        return metadata.result_schema(cmd).empty_table()  # no keys: florsql has no constraints


def _cancelled(control: QueryControl) -> QueryCancelled | None:
    return QueryCancelled(control.reason) if control.reason is not None else None


def _expect(msg: Message, cls: type[M]) -> M:
    if not isinstance(msg, cls):
        raise MalformedRequest(f"expected {cls.__name__}, got {type(msg).__name__}")
    return msg


def _parse(cls: type[M], body: bytes) -> M:
    """A bare (not ``Any``-wrapped) request message, as Flight's own actions send them."""
    try:
        return cls.FromString(body)
    except DecodeError as e:
        raise MalformedRequest(f"the request body is not a {cls.__name__}") from e


def check_statement(sql: str) -> None:
    """Parse ``sql`` as florsql does (refusing writes); the replay setting belongs to the server."""
    stmt = parse(sql)
    if stmt.kind == "set":
        line, col = line_col(sql, stmt.offset)
        what = "SET executor" if "executor" in sql.lower() else "SET replay"
        raise SqlError(
            f"{what} is not available over Flight SQL: the server decides "
            "(start it with `florsql serve --allow-replay [--executor ...]` to compute "
            "hindsight values)",
            sql=sql,
            line=line,
            col=col,
        )


def with_warnings(result: QueryResult) -> QueryResult:
    """``result`` with its warnings in its table's schema metadata (:data:`WARNINGS_KEY`)."""
    if not result.warnings:
        return result
    metadata = dict(result.table.schema.metadata or {})
    metadata[WARNINGS_KEY] = json.dumps(list(result.warnings)).encode()
    table = result.table.replace_schema_metadata(metadata)
    stream = result.stream.with_metadata(metadata) if result.stream is not None else None
    return dataclasses.replace(result, table=table, stream=stream)


class _Pace:
    """The server's limits on computing a streamed result's rows, batch by batch, as DoGet
    reads them: each batch DuckDB computes runs under the watchdog, cancelled (DuckDB
    interrupted) once the query's time limit is spent or its client went away. Only the time
    computing counts, from what GetFlightInfo left (:attr:`QueryResult.seconds_left`): a client
    reading a large result slowly is not cut off, a filter that matches rarely over a huge
    input is (before, rows after the first batch ran with no limit)."""

    def __init__(self, watchdog: Watchdog, gone: Callable[[], bool], result: QueryResult) -> None:
        self.watchdog = watchdog
        self.gone = gone
        self.interrupt = result.interrupt
        self.left = result.seconds_left

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        control = QueryControl()
        stop = self.interrupt
        if stop is not None:
            # the watchdog calls this under its lock: the interrupt runs on its own thread
            control.on_cancel(
                lambda: threading.Thread(target=stop, name="florsql-stop", daemon=True).start()
            )
        start = time.monotonic()
        deadline = start + self.left if self.left is not None else None
        try:
            with self.watchdog.watch(control, deadline, self.gone):
                yield
        except Exception:
            if control.reason is not None:
                raise QueryCancelled(control.reason) from None
            raise
        finally:
            if self.left is not None:
                self.left = max(0.0, self.left - (time.monotonic() - start))
        if control.reason is not None:  # the batch came; the limit was reached meanwhile
            raise QueryCancelled(control.reason)


def _wire_stream(
    rows: ExactStream,
    pace: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
    limit: int = BATCH_BYTES,
) -> Iterator[pa.RecordBatch]:
    """The batches of ``rows`` as DoGet sends them: each of at most ``limit`` bytes (as
    :func:`wire_batches` cuts a table), each computed under ``pace`` (:class:`_Pace`: the
    query's time limit and cancellation); ``rows`` is closed when the client stops reading
    (DoGet's generator closed) or the rows end."""
    try:
        batches = iter(rows)
        while True:
            with pace():
                batch = next(batches, None)
            if batch is None:
                return
            if batch.num_rows <= 1 or batch.nbytes <= limit:
                yield batch
                continue
            yield from wire_batches(pa.Table.from_batches([batch]), limit)
    except Exception as error:  # DuckDB failed computing a row: the one shape of errors
        raise to_flight_error(error) from None
    finally:
        rows.close()


def wire_batches(table: pa.Table, limit: int = BATCH_BYTES) -> pa.RecordBatchReader:
    """``table`` as record batches of at most ``limit`` bytes each (a single row may be more):
    its own chunks, each split in equal slices where it is larger. Slices share the table's
    memory; the IPC writer sends only the part of each buffer a slice covers.

    Example:
        >>> t = pa.table({"x": pa.array(range(1000), pa.int64())})  # 8,000 bytes
        >>> [b.num_rows for b in wire_batches(t, limit=3000)]
        [334, 334, 332]
    """
    batches: list[pa.RecordBatch] = []
    pending = table.to_batches()
    pending.reverse()
    while pending:
        batch = pending.pop()
        if batch.num_rows <= 1 or batch.nbytes <= limit:
            batches.append(batch)
            continue
        # equal slices by the average row; a slice still too large (skewed strings) splits again
        parts = -(-batch.nbytes // limit)
        step = -(-batch.num_rows // parts)
        starts = range(0, batch.num_rows, step)
        pending.extend(batch.slice(start, step) for start in reversed(starts))
    return pa.RecordBatchReader.from_batches(table.schema, batches)


def parameter_row(params: pa.Table) -> list[object]:
    """The values of the one parameter set a client bound (none for an empty batch), each as
    exact as its Arrow type (:func:`florsql.flight.params.parameter_value`)."""
    if params.num_rows > 1:
        raise PlanError(
            f"florsql runs one parameter set per query; got {params.num_rows} rows of "
            "parameters: execute the query once per row"
        )
    if params.num_rows == 0:
        return []
    return [
        parameter_value(column[0], number) for number, column in enumerate(params.columns, start=1)
    ]
