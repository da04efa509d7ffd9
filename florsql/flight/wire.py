"""What travels on the wire: Flight SQL messages as protobuf ``Any`` with the spec's type URLs,
and the one shape every error takes, so clients and tools see the same thing.

Every error a request meets leaves the server as a Flight error whose message is one line::

    florsql ParseError: syntax error near 'FORM': unexpected token (line 1, column 10)

with gRPC status ``UNKNOWN`` (Flight's "failed"; ADBC raises ``OperationalError``) for errors of
the request, ``INVALID_ARGUMENT`` for a request whose bytes are not the message it must hold
(:class:`MalformedRequest`; pyarrow raises ``ArrowInvalid``), ``UNIMPLEMENTED`` for a command or
action florsql does not serve, ``UNAVAILABLE`` when the server is busy
(:class:`florsql.flight.limits.ServerBusy`), ``INTERNAL`` for a bug, ``UNAUTHENTICATED`` for a
missing or wrong token. The same
fields travel as JSON in the error's ``extra_info`` for clients that want them structured.
pyarrow's ``ArrowInvalid`` gives ``INVALID_ARGUMENT`` but carries no ``extra_info`` and appends
the server's Python traceback to its detail (``florsql serve`` keeps that out, as for
``UNIMPLEMENTED``), so it is used for malformed requests only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from florsql.errors import FlorError, SqlError
from florsql.flight import flight_session_pb2 as session_pb
from florsql.flight import flight_sql_pb2 as pb

__all__ = [
    "KNOWN",
    "MalformedRequest",
    "describe",
    "details",
    "pack",
    "to_flight_error",
    "translated",
    "unpack",
]

TYPE_PREFIX = "type.googleapis.com/"

#: Every message the server reads, by full protobuf name.
KNOWN: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
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
        pb.ActionCancelQueryRequest,
        pb.CommandStatementQuery,
        pb.CommandStatementUpdate,
        pb.TicketStatementQuery,
        pb.ActionCreatePreparedStatementRequest,
        pb.ActionClosePreparedStatementRequest,
        pb.CommandPreparedStatementQuery,
        pb.CommandPreparedStatementUpdate,
        session_pb.CloseSessionRequest,
    )
}


class MalformedRequest(FlorError):
    """A request whose bytes are not the message it must hold: the client's mistake (gRPC
    ``INVALID_ARGUMENT``). The message says which request and what is wrong."""


def pack(message: Message) -> bytes:
    """``message`` wrapped in an ``Any`` and serialized.

    Example:
        >>> pack(pb.CommandGetCatalogs())[2:50]
        b'type.googleapis.com/arrow.flight.protocol.sql.Co'
    """
    wrapper = any_pb2.Any()
    wrapper.Pack(message, type_url_prefix=TYPE_PREFIX)
    return wrapper.SerializeToString()


def unpack(data: bytes) -> Message:
    """The message inside serialized ``Any`` bytes.

    Raises:
        NotImplementedError: a message type florsql does not serve (gRPC UNIMPLEMENTED).
        MalformedRequest: bytes that are not an ``Any``, or an empty one.

    Example:
        >>> unpack(pack(pb.CommandStatementQuery(query="SHOW RUNS"))).query
        'SHOW RUNS'
    """
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(data)
    except DecodeError as e:
        raise MalformedRequest(
            "the request is not a protobuf Any holding a Flight SQL message"
        ) from e
    name = wrapper.type_url.rpartition("/")[2]
    if not name:
        raise MalformedRequest("the request holds no message (an empty protobuf Any)")
    cls = KNOWN.get(name)
    if cls is None:
        raise NotImplementedError(f"florsql does not serve {name or 'this request'}")
    message = cls()
    wrapper.Unpack(message)
    return message


# -- errors -------------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def describe(error: BaseException) -> str:
    """The one-line message of an error as a client sees it.

    Example:
        >>> describe(SqlError("unknown column 'gradnorm'", sql="SELECT gradnorm", line=1, col=8))
        "florsql SqlError: unknown column 'gradnorm' (line 1, column 8)"
    """
    if isinstance(error, SqlError):
        where = f" (line {error.line}, column {error.col})" if error.line and error.col else ""
        return f"florsql {type(error).__name__}: {error.message}{where}"
    if isinstance(error, FlorError | ValueError | NotImplementedError):
        return f"florsql {type(error).__name__}: {error}"
    return f"florsql internal error: {type(error).__name__}: {error}"


def details(error: BaseException) -> bytes:
    """The error's fields as JSON (the Flight error's ``extra_info``)."""
    fields: dict[str, object] = {"error": type(error).__name__, "message": str(error)}
    if isinstance(error, SqlError):
        fields.update(message=error.message, line=error.line, col=error.col)
    return json.dumps(fields).encode()


def to_flight_error(error: Exception) -> Exception:
    """The exception a handler raises so pyarrow sends ``error`` in the one shape."""
    if isinstance(error, flight.FlightError):
        return error
    if isinstance(error, MalformedRequest):
        return pa.ArrowInvalid(describe(error))  # INVALID_ARGUMENT
    if isinstance(error, NotImplementedError):
        # pyarrow sends a Python NotImplementedError as gRPC UNIMPLEMENTED (no Flight error
        # class maps to it); `florsql serve` keeps the Python traceback pyarrow would add to
        # its detail out (sys.tracebacklimit = 0).
        return NotImplementedError(describe(error))
    if isinstance(error, FlorError | ValueError):
        return flight.FlightServerError(describe(error), extra_info=details(error))
    return flight.FlightInternalError(describe(error), extra_info=details(error))


def translated(handler: Callable[P, R]) -> Callable[P, R]:
    """Wrap a server handler so that every error leaves it in the one shape."""

    @functools.wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return handler(*args, **kwargs)
        except Exception as error:
            raise to_flight_error(error) from None

    return wrapper
