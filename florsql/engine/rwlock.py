"""A read-write lock: queries share it, rebuilds of the helper relations take it alone.

Readers (queries on their cursors) run together; a writer (a refresh that rebuilds the helper
relations, a replay) waits for the readers in flight to finish and holds back new ones while it
waits, so a steady stream of queries cannot starve it. Both sides are reentrant in the thread
that holds them (a writer may also read), but a reader cannot become a writer: release the read
lock first (:meth:`RWLock.write` raises instead of deadlocking).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RWLock"]


class RWLock:
    """Shared (``read``) or exclusive (``write``) access, writers first.

    Example:
        >>> lock = RWLock()
        >>> with lock.read(), lock.read():
        ...     lock.readers
        1
        >>> with lock.write(), lock.read():
        ...     lock.writing
        True
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers: dict[int, int] = {}  # thread id -> depth
        self._writer: int | None = None
        self._write_depth = 0
        self._writers_waiting = 0

    @property
    def readers(self) -> int:
        """Threads holding the lock shared now."""
        return len(self._readers)

    @property
    def writing(self) -> bool:
        """Whether a thread holds the lock exclusively now."""
        return self._writer is not None

    @contextmanager
    def read(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._write_depth += 1
            elif me in self._readers:
                self._readers[me] += 1
            else:
                while self._writer is not None or self._writers_waiting:
                    self._cond.wait()
                self._readers[me] = 1
        try:
            yield
        finally:
            with self._cond:
                if self._writer == me:
                    self._write_depth -= 1
                else:
                    self._readers[me] -= 1
                    if not self._readers[me]:
                        del self._readers[me]
                        self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._write_depth += 1
            else:
                if me in self._readers:
                    raise RuntimeError("a reader cannot take the write lock; release it first")
                self._writers_waiting += 1
                try:
                    while self._writer is not None or self._readers:
                        self._cond.wait()
                finally:
                    self._writers_waiting -= 1
                self._writer = me
                self._write_depth = 1
        try:
            yield
        finally:
            with self._cond:
                self._write_depth -= 1
                if not self._write_depth:
                    self._writer = None
                    self._cond.notify_all()
