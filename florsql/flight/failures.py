"""The one shape every error takes on the wire, so clients and tools see the same thing.

Every error a request meets leaves the server as a Flight error whose message is one line::

    florsql ParseError: syntax error near 'FORM': unexpected token (line 1, column 10)

with gRPC status ``UNKNOWN`` (Flight's "failed"; ADBC raises ``OperationalError``) for errors of
the request, ``INTERNAL`` for a bug, ``UNAUTHENTICATED`` for a missing or wrong token. The same
fields travel as JSON in the error's ``extra_info`` for clients that want them structured.
pyarrow's own ``ArrowInvalid`` would give ``INVALID_ARGUMENT`` but appends the server's Python
traceback to the message, so it is never used.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import pyarrow.flight as flight

from florsql.errors import FlorError, SqlError

__all__ = ["describe", "details", "to_flight_error", "translated"]

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
    if isinstance(error, FlorError | ValueError | NotImplementedError):
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
