"""Who may connect: loopback by default, a bearer token required anywhere else."""

from __future__ import annotations

import hmac
import ipaddress

import pyarrow.flight as flight

from florsql.errors import FlorError

__all__ = ["BearerTokenFactory", "check_binding", "is_loopback"]

UNAUTHENTICATED = (
    "florsql: a valid bearer token is required (header 'authorization: Bearer <token>')"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_binding(
    host: str, token: str | None, *, tls: bool = False, insecure: bool = False
) -> None:
    """Refuse to serve beyond this machine without a token, or without TLS unless the user
    said ``--insecure`` (the token would cross the network in clear)."""
    if token is not None and not token.strip():
        raise FlorError("the --token must not be empty")
    if is_loopback(host):
        return
    if token is None:
        raise FlorError(
            f"refusing to serve on {host} without a token: anyone who can reach it could read "
            "your runs; pass --token TOKEN (clients send 'authorization: Bearer TOKEN') "
            "or bind to 127.0.0.1"
        )
    if not tls and not insecure:
        raise FlorError(
            f"refusing to serve on {host} without TLS: the token would cross the network in "
            "clear; pass --tls-cert CERT.pem --tls-key KEY.pem, or --insecure on a network "
            "you trust"
        )


class _Accepted(flight.ServerMiddleware):
    pass


class BearerTokenFactory(flight.ServerMiddlewareFactory):
    """Reject every call whose ``authorization`` header is not ``Bearer <token>``."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._expected = f"Bearer {token}".encode()

    def start_call(
        self, info: flight.CallInfo, headers: dict[str, list[str]]
    ) -> flight.ServerMiddleware:
        for key, values in headers.items():
            if key.lower() != "authorization":
                continue
            if any(hmac.compare_digest(v.encode(), self._expected) for v in values):
                return _Accepted()
        raise flight.FlightUnauthenticatedError(UNAUTHENTICATED)
