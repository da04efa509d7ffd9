"""The schema completion reads, refreshed on a background thread so typing never waits."""

from __future__ import annotations

import threading
from collections.abc import Callable

from florsql.repl.service import Schema

__all__ = ["SchemaCache"]


class SchemaCache:
    """Holds the latest :class:`Schema`; :meth:`refresh_async` reloads it off the main thread."""

    def __init__(self, load: Callable[[], Schema]) -> None:
        self._load = load
        self._schema = Schema()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None

    @property
    def schema(self) -> Schema:
        return self._schema

    def refresh(self) -> None:
        """Reload now; on failure keep the schema we had (completion is a convenience)."""
        try:
            schema = self._load()
        except Exception as e:  # the engine's error is shown when the user runs a query
            self.error = e
            return
        self._schema, self.error = schema, None

    def refresh_async(self) -> threading.Thread:
        """Reload on a daemon thread, unless a reload is already running; return that thread."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self.refresh, name="florsql-schema", daemon=True
                )
                self._thread.start()
            return self._thread
