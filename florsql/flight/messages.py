"""Flight SQL messages on the wire: protobuf ``Any`` with the spec's type URLs."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from florsql.flight import flight_session_pb2 as session_pb
from florsql.flight import flight_sql_pb2 as pb

__all__ = ["KNOWN", "pack", "unpack"]

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
        ValueError: bytes that are not an ``Any``.

    Example:
        >>> unpack(pack(pb.CommandStatementQuery(query="SHOW RUNS"))).query
        'SHOW RUNS'
    """
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(data)
    except DecodeError as e:
        raise ValueError("a Flight SQL command must be a protobuf Any") from e
    name = wrapper.type_url.rpartition("/")[2]
    cls = KNOWN.get(name)
    if cls is None:
        raise NotImplementedError(f"florsql does not serve {name or 'this request'}")
    message = cls()
    wrapper.Unpack(message)
    return message
