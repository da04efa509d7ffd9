"""Server-side state behind opaque handles: prepared statements and results awaiting DoGet.

A query is planned (and replayed) at GetFlightInfo (the result's schema goes in the FlightInfo);
its result waits here until the client's DoGet takes it, until it expires, or until newer
results push it out: at most ``max_results`` results and ``max_bytes`` bytes wait at once, and
the oldest are dropped first. A streamed result (rows computed as DoGet reads them) counts
against ``max_results`` only, and a dropped one stops its DuckDB query and gives its cursor
back. A client whose result was dropped is told so at DoGet. All methods are thread-safe.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from florsql.errors import FlorError
from florsql.flight.service import QueryResult

__all__ = ["Handles", "Prepared", "ResultDropped"]

#: How many dropped tickets are remembered, to tell their clients why.
REMEMBER_DROPPED = 1024


class ResultDropped(FlorError):
    """A result was dropped before the client fetched it."""


@dataclass
class Prepared:
    """A prepared statement: its SQL, its parameter count, the values bound by the last DoPut."""

    sql: str
    params: list[object] = field(default_factory=list)
    used: float = field(default_factory=time.monotonic)


@dataclass
class _Parked:
    result: QueryResult
    owner: bytes | None
    nbytes: int
    parked: float = field(default_factory=time.monotonic)


class Handles:
    """Prepared statements and parked results, each behind a random handle."""

    def __init__(
        self, ttl: float = 600.0, *, max_results: int = 64, max_bytes: int = 1 << 30
    ) -> None:
        self.ttl = ttl
        self.max_results = max_results
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._prepared: dict[bytes, Prepared] = {}
        self._parked: OrderedDict[bytes, _Parked] = OrderedDict()
        self._bytes = 0
        self._dropped: OrderedDict[bytes, str] = OrderedDict()
        self.dropped_count = 0

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
                self._unpark(key, None)

    def park(self, result: QueryResult, owner: bytes | None = None) -> bytes:
        """Keep ``result`` for one DoGet; the handle goes in the ticket.

        Raises:
            ResultDropped: the result alone is larger than all results may be together.
        """
        nbytes = _nbytes(result.table) if result.stream is None else 0
        if nbytes > self.max_bytes:
            raise ResultDropped(
                f"the result is {_mb(nbytes)}, over the {_mb(self.max_bytes)} the server keeps "
                "for results awaiting download (--max-pending-bytes): select fewer rows or "
                "columns (LIMIT, WHERE, aggregates)"
            )
        handle = secrets.token_bytes(16)
        with self._lock:
            self._sweep()
            self._parked[handle] = _Parked(result, owner, nbytes)
            self._bytes += nbytes
            while len(self._parked) > self.max_results or self._bytes > self.max_bytes:
                oldest = next(iter(self._parked))
                self._unpark(
                    oldest,
                    f"the result was dropped before it was fetched: the server keeps at most "
                    f"{self.max_results} results and {_mb(self.max_bytes)} awaiting download "
                    "(--max-pending-results, --max-pending-bytes), oldest dropped first; "
                    "run the query again and fetch its result at once",
                )
        return handle

    def take(self, handle: bytes) -> QueryResult:
        with self._lock:
            parked = self._parked.get(handle)
            if parked is not None:
                self._unpark(handle, None, taken=True)
            reason = self._dropped.pop(handle, None)
        if parked is not None:
            return parked.result
        if reason is not None:
            raise ResultDropped(reason)
        raise ValueError("unknown or expired result ticket (each ticket can be read once)")

    def cancel(self, handle: bytes) -> bool:
        """Drop a result nobody will fetch (CancelFlightInfo); False if it is not here."""
        with self._lock:
            if handle not in self._parked:
                return False
            self._unpark(handle, "the query was cancelled (CancelFlightInfo)")
            return True

    def counts(self) -> tuple[int, int]:
        """(prepared statements, parked results) now held."""
        with self._lock:
            return len(self._prepared), len(self._parked)

    def pending_bytes(self) -> int:
        """Bytes of the results now awaiting download."""
        with self._lock:
            return self._bytes

    def _unpark(self, handle: bytes, reason: str | None, *, taken: bool = False) -> None:
        parked = self._parked.pop(handle)
        self._bytes -= parked.nbytes
        if not taken and parked.result.stream is not None:
            parked.result.stream.close()  # nobody will read it: stop DuckDB, free the cursor
        if reason is not None:
            self.dropped_count += 1
            self._dropped[handle] = reason
            while len(self._dropped) > REMEMBER_DROPPED:
                self._dropped.popitem(last=False)

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, p in self._parked.items() if now - p.parked > self.ttl]:
            self._unpark(key, "the result expired before it was fetched")
        for key in [k for k, p in self._prepared.items() if now - p.used > self.ttl]:
            del self._prepared[key]


def _nbytes(table: pa.Table) -> int:
    try:
        return int(table.get_total_buffer_size())
    except (AttributeError, TypeError):  # pragma: no cover - older pyarrow
        return int(table.nbytes)


def _mb(n: int) -> str:
    """Bytes in MiB for messages.

    Example:
        >>> _mb(3 << 20), _mb(1 << 30)
        ('3 MiB', '1024 MiB')
    """
    return f"{n / (1 << 20):.0f} MiB"
