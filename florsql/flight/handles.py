"""Server-side state behind opaque handles: prepared statements and results awaiting DoGet.

A query runs at GetFlightInfo (the result's schema goes in the FlightInfo); its table waits here
until the client's DoGet takes it, or until it expires. All methods are thread-safe.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from florsql.flight.service import QueryResult

__all__ = ["Handles", "Prepared"]


@dataclass
class Prepared:
    """A prepared statement: its SQL and the parameter values bound by the last DoPut."""

    sql: str
    params: list[object] = field(default_factory=list)
    used: float = field(default_factory=time.monotonic)


@dataclass
class _Parked:
    result: QueryResult
    owner: bytes | None
    parked: float = field(default_factory=time.monotonic)


class Handles:
    """Prepared statements and parked results, each behind a random handle."""

    def __init__(self, ttl: float = 600.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._prepared: dict[bytes, Prepared] = {}
        self._parked: dict[bytes, _Parked] = {}

    def prepare(self, sql: str) -> bytes:
        handle = secrets.token_bytes(16)
        with self._lock:
            self._sweep()
            self._prepared[handle] = Prepared(sql)
        return handle

    def prepared(self, handle: bytes) -> Prepared:
        with self._lock:
            found = self._prepared.get(handle)
            if found is None:
                raise ValueError("unknown or closed prepared statement handle")
            found.used = time.monotonic()
            return found

    def bind(self, handle: bytes, params: Sequence[object]) -> None:
        self.prepared(handle).params = list(params)

    def close(self, handle: bytes) -> None:
        with self._lock:
            self._prepared.pop(handle, None)
            for key in [k for k, p in self._parked.items() if p.owner == handle]:
                del self._parked[key]

    def park(self, result: QueryResult, owner: bytes | None = None) -> bytes:
        """Keep ``result`` for one DoGet; the handle goes in the ticket."""
        handle = secrets.token_bytes(16)
        with self._lock:
            self._sweep()
            self._parked[handle] = _Parked(result, owner)
        return handle

    def take(self, handle: bytes) -> QueryResult:
        with self._lock:
            parked = self._parked.pop(handle, None)
        if parked is None:
            raise ValueError("unknown or expired result ticket (each ticket can be read once)")
        return parked.result

    def counts(self) -> tuple[int, int]:
        """(prepared statements, parked results) now held."""
        with self._lock:
            return len(self._prepared), len(self._parked)

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, p in self._parked.items() if now - p.parked > self.ttl]:
            del self._parked[key]
        for key in [k for k, p in self._prepared.items() if now - p.used > self.ttl]:
            del self._prepared[key]
