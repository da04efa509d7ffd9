"""The PEP 249 connection: one engine (and so one index) per connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from florsql.dbapi import exceptions as exc
from florsql.dbapi.cursor import Cursor
from florsql.engine import Confirm, Engine, ReplayExecutor
from florsql.errors import FlorError

__all__ = ["Connection", "connect"]


class Connection:
    """A connection to one repository's florsql store.

    Read-only: :meth:`commit` and :meth:`rollback` do nothing. Closing it releases the index
    (another process may then open it). The PEP 249 exception classes are attributes too.

    Example:
        >>> import florsql
        >>> with florsql.connect(repo) as con:  # doctest: +SKIP
        ...     con.execute("SELECT count(*) FROM runs").fetchone()
        (3,)
    """

    Warning = exc.Warning
    Error = exc.Error
    InterfaceError = exc.InterfaceError
    DatabaseError = exc.DatabaseError
    DataError = exc.DataError
    OperationalError = exc.OperationalError
    IntegrityError = exc.IntegrityError
    InternalError = exc.InternalError
    ProgrammingError = exc.ProgrammingError
    NotSupportedError = exc.NotSupportedError

    def __init__(self, engine: Engine) -> None:
        self.engine: Engine | None = engine
        engine.warn_stacklevel += 1  # warnings point at the caller of Cursor.execute

    def cursor(self) -> Cursor:
        self._check()
        return Cursor(self)

    def execute(self, operation: str, parameters: Any = None) -> Cursor:
        """A new cursor that ran ``operation`` (sqlite3-style shortcut)."""
        return self.cursor().execute(operation, parameters)

    def commit(self) -> None:
        """Nothing to commit: florsql is read-only."""
        self._check()

    def rollback(self) -> None:
        """Nothing to roll back: florsql is read-only."""
        self._check()

    def close(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            engine.close()

    @property
    def closed(self) -> bool:
        return self.engine is None

    @property
    def replay(self) -> str:
        """The ``replay`` setting (``SET replay = ...`` changes it)."""
        return self._engine().settings["replay"]

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _engine(self) -> Engine:
        if self.engine is None:
            raise exc.InterfaceError("the connection is closed")
        return self.engine

    def _check(self) -> None:
        self._engine()


def connect(
    repo: Path | str = ".",
    *,
    replay: str = "auto",
    executor: ReplayExecutor | str | None = None,
    confirm: Confirm | None = None,
    wait: float = 0.0,
) -> Connection:
    """Open a DB-API connection to the florsql store of ``repo``.

    Args:
        repo: the git repository (its ``.florsql`` folder holds the runs).
        replay: ``"auto"`` (the default: a query naming a hindsight column computes it),
            ``"confirm"`` or ``"off"`` (``SET replay`` changes it later).
        executor: runs replays (default: the one ``florsql.replay`` provides, if any), or
            ``'local'``, ``'ray'``, ``'ray://HOST:PORT'`` as ``SET executor`` takes.
        confirm: asked before replaying when ``replay = 'confirm'``.
        wait: seconds to wait while another process holds the index.

    Raises:
        florsql.dbapi.OperationalError: the index is held by another process.

    Example:
        >>> import florsql
        >>> con = florsql.connect("path/to/repo")  # doctest: +SKIP
        >>> con.execute("SELECT lr, max(acc) FROM logs GROUP BY lr").fetchall()  # doctest: +SKIP
    """
    import os

    if not isinstance(repo, str | os.PathLike):  # before s37 a bare TypeError from os.fspath
        raise exc.ProgrammingError(
            f"connect() takes the repository's path (a str or a Path), not {type(repo).__name__}"
        )
    try:
        engine = Engine(repo, replay=replay, executor=executor, confirm=confirm, wait=wait)
    except FlorError as e:
        raise exc.wrap_error(e) from e
    return Connection(engine)
