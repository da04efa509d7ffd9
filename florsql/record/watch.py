"""The audit hook that sees every ``open`` of a recording process (see :mod:`.inputs`).

Kept apart and free of imports beyond ``os`` and ``sys``: it is installed when the record API is
imported (so data read before a script's first record call is seen too), and ``import florsql``
stays light.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["WATCH", "OpenWatch"]

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class OpenWatch:
    """The audit hook: remembers paths opened for reading and for writing, nothing more.

    Audit hooks cannot be removed; :meth:`stop` makes this one return at once. The hook never
    raises (an exception there would fail the ``open`` it audits).
    """

    #: At most this many paths are kept per set (a long-lived process opens many files).
    LIMIT = 50_000

    def __init__(self) -> None:
        self.read: set[str] = set()  # absolute paths
        self.written: set[str] = set()
        self.active = True
        self._raw: set[tuple[str, bool]] = set()  # as given, to skip repeated opens cheaply

    def install(self) -> None:
        # A plain function, not a bound method: it runs for every audit event of the process
        # (a few per training step with torch), so the common case is one comparison.
        opened = self._opened

        def hook(event: str, args: tuple[Any, ...]) -> None:
            if event == "open":
                opened(args)

        sys.addaudithook(hook)

    def stop(self) -> None:
        self.active = False

    def _opened(self, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        try:
            path, mode, flags = args
            if not isinstance(path, str):
                if not isinstance(path, bytes):
                    return  # a file descriptor: the path was seen when it was opened
                path = os.fsdecode(path)
            # os.open gives flags only; open() and io.open_code a mode string.
            writing = bool(flags & _WRITE_FLAGS) if mode is None else any(c in mode for c in "wax+")
            key = (path, writing)
            if key in self._raw or len(self._raw) >= self.LIMIT:
                return
            self._raw.add(key)
            if not os.path.isabs(path):  # relative to the cwd of the open, not of the commit
                path = os.path.join(os.getcwd(), path)
            (self.written if writing else self.read).add(os.path.normpath(path))
        except Exception:
            return

    def snapshot(self) -> tuple[set[str], set[str]]:
        """Absolute normalized paths read and written so far."""
        return set(self.read), set(self.written)


#: This process's watch.
WATCH = OpenWatch()
WATCH.install()
