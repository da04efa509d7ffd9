"""What one client may ask of the server: the limits of ``florsql serve`` and their checks.

- a statement's length and nesting depth are checked before it is parsed (parsing a huge or
  deeply nested text costs seconds of CPU and gigabytes);
- at most ``max_concurrent`` queries run at once; others wait up to ``queue_timeout`` seconds
  for a slot, then are refused (gRPC ``UNAVAILABLE``: retry later);
- a query running longer than ``query_timeout`` is cancelled (DuckDB interrupted, a replay's
  workers killed), and so is one whose client went away; a streamed result's rows count too:
  the time DuckDB spends computing them as DoGet reads them, not the time spent waiting for
  the client to read;
- results awaiting download are capped (:class:`florsql.flight.handles.Handles`);
- DuckDB gets ``memory_limit`` and ``threads``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow.flight as flight

from florsql.errors import FlorError
from florsql.flight.service import QueryControl

__all__ = ["Limits", "QueryCancelled", "ServerBusy", "Watchdog", "check_sql", "nesting_depth"]


@dataclass(frozen=True)
class Limits:
    """The server's limits; 0 turns a time limit off."""

    query_timeout: float = 300.0
    max_concurrent: int = 8
    queue_timeout: float = 30.0
    max_pending_results: int = 64
    max_pending_bytes: int = 1 << 30
    max_sql_length: int = 100_000
    max_parse_depth: int = 64
    memory_limit: str = "4GB"
    threads: int = 4

    def duckdb_settings(self) -> dict[str, str]:
        return {"memory_limit": self.memory_limit, "threads": str(self.threads)}


class QueryCancelled(FlorError):
    """The server stopped a query: it ran too long, or its client cancelled or went away."""


class ServerBusy(flight.FlightUnavailableError):
    """Too many queries at once (gRPC UNAVAILABLE: try again later)."""


def nesting_depth(sql: str) -> int:
    """The deepest parenthesis nesting outside quotes and comments.

    Example:
        >>> nesting_depth("SELECT (1 + (2)) FROM t WHERE x = '(((('"), nesting_depth("")
        (2, 0)
    """
    depth = deepest = 0
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = sql.find(ch, i + 1)
            i = n if end < 0 else end + 1
            continue
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def check_sql(sql: str, limits: Limits) -> None:
    """Refuse a statement longer or more deeply nested than the limits allow."""
    if len(sql) > limits.max_sql_length:
        raise FlorError(
            f"the statement is {len(sql)} characters long, over the server's limit of "
            f"{limits.max_sql_length} (--max-sql-length)"
        )
    depth = nesting_depth(sql)
    if depth > limits.max_parse_depth:
        raise FlorError(
            f"the statement nests parentheses {depth} deep, over the server's limit of "
            f"{limits.max_parse_depth} (--max-parse-depth)"
        )


@dataclass
class _Running:
    control: QueryControl
    deadline: float | None
    gone: Callable[[], bool]


class Watchdog:
    """Admits queries (at most ``max_concurrent`` at once) and cancels those that run past
    their deadline or whose client went away. One daemon thread checks every ``tick`` s."""

    def __init__(self, limits: Limits, tick: float = 0.05) -> None:
        self.limits = limits
        self.tick = tick
        self._slots = threading.BoundedSemaphore(max(1, limits.max_concurrent))
        self._lock = threading.Condition()
        self._running: dict[int, _Running] = {}
        self._ids = itertools.count()
        self._stopped = False
        self.refused = 0
        self.cancelled = 0
        self._thread = threading.Thread(target=self._loop, name="florsql-watchdog", daemon=True)
        self._thread.start()

    @contextmanager
    def admit(self, gone: Callable[[], bool] = lambda: False) -> Iterator[QueryControl]:
        """A slot for one query, and its :class:`QueryControl`.

        Raises:
            ServerBusy: no slot freed within ``queue_timeout`` seconds.
        """
        if not self._slots.acquire(timeout=max(0.0, self.limits.queue_timeout)):
            with self._lock:
                self.refused += 1
            raise ServerBusy(
                f"florsql ServerBusy: {self.limits.max_concurrent} queries are running "
                f"(--max-concurrent-queries) and none finished within "
                f"{self.limits.queue_timeout:g} s; try again later"
            )
        control = QueryControl()
        timeout = self.limits.query_timeout
        deadline = time.monotonic() + timeout if timeout > 0 else None
        try:
            with self.watch(control, deadline, gone):
                yield control
        finally:
            self._slots.release()

    @contextmanager
    def watch(
        self,
        control: QueryControl,
        deadline: float | None,
        gone: Callable[[], bool] = lambda: False,
    ) -> Iterator[None]:
        """Cancel ``control`` at ``deadline`` (``time.monotonic()``; None: never) or once
        ``gone()`` says its client went away, until the block ends. Takes no slot: a streamed
        result's rows are computed under this, batch by batch, as its client reads them."""
        key = next(self._ids)
        try:
            with self._lock:
                self._running[key] = _Running(control, deadline, gone)
                self._lock.notify_all()
            yield
        finally:
            with self._lock:
                del self._running[key]
                self._lock.notify_all()

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def wait_running(self, count: int, timeout: float) -> bool:
        """Wait until exactly ``count`` queries run (for tests and tools)."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._running) == count, timeout)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                self._lock.wait(self.tick)
                now = time.monotonic()
                due = []
                for r in self._running.values():
                    if r.control.reason is not None:
                        continue
                    if r.deadline is not None and now >= r.deadline:
                        due.append((r.control, self._timeout_message()))
                    elif _safe(r.gone):
                        due.append((r.control, "the client cancelled the query or went away"))
            for control, reason in due:
                # Counted under the lock the query's exit takes: one waiting for the query to
                # end (wait_running) then sees the count (it read 0 once, in a loaded CI run).
                # The cancel hooks only start a thread: nothing waits on this lock meanwhile.
                with self._lock:
                    if control.cancel(reason):
                        self.cancelled += 1

    def _timeout_message(self) -> str:
        return (
            f"the query ran longer than the server's limit of {self.limits.query_timeout:g} s "
            "(--query-timeout) and was cancelled"
        )


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        return False
