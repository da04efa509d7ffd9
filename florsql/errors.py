"""The florsql exception hierarchy. Imports nothing of the package.

Every error florsql raises on purpose derives from :class:`FlorError`, one subclass per stage, and
carries structured fields besides its message.
"""

from __future__ import annotations

__all__ = [
    "ArgMissingWarning",
    "DamagedFileWarning",
    "FlorError",
    "FlorWarning",
    "NondeterminismWarning",
    "ParseError",
    "PlanError",
    "PropagateError",
    "RecordError",
    "RecordWarning",
    "ReplayError",
    "ReplayFailedWarning",
    "ReplayNeededError",
    "ReplayOffWarning",
    "SqlError",
    "StatementDrawWarning",
    "StoreError",
    "StoreWarning",
    "VersionError",
    "concat_messages",
    "format_position",
]


class FlorError(Exception):
    """Root of every error florsql raises on purpose."""


class RecordError(FlorError):
    """Misuse of the record API (raised at the offending call)."""


class VersionError(FlorError):
    """Code versions: not a git repository, a missing version, a failed snapshot."""


class StoreError(FlorError):
    """The durable store: unreadable segments, an unwritable folder, a locked index."""


class PropagateError(FlorError):
    """A log statement could not be placed into an old version."""


class ReplayError(FlorError):
    """A replay task failed."""


class SqlError(FlorError):
    """A query failed. ``sql`` is the user's text; ``line``/``col`` are 1-based where known."""

    def __init__(
        self,
        message: str,
        *,
        sql: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        self.message = message
        self.sql = sql
        self.line = line
        self.col = col
        text = message
        if sql is not None and line is not None and col is not None:
            text = f"{message}\n{format_position(sql, line, col)}"
        super().__init__(text)


class ParseError(SqlError):
    """The query text is not valid florsql SQL, or is not a read."""


class PlanError(SqlError):
    """The query parses but cannot be bound or planned (unknown column, bad relation...)."""


class QueryInterrupted(SqlError):
    """DuckDB stopped the query on request (``Engine.interrupt()``, a cursor's ``interrupt()``,
    a cancelled Flight SQL call). Ctrl-C in the thread that runs the query raises
    ``KeyboardInterrupt`` instead, as Python does."""


class ReplayNeededError(SqlError):
    """The query needs hindsight values that were never computed, and the front end answers
    no query with them missing (a Flight SQL server started without ``--allow-replay``)."""


class FlorWarning(UserWarning):
    """Root of florsql's warnings."""


class RecordWarning(FlorWarning):
    """Something recorded differently than asked (a value stored as its repr, a file left out)."""


class ReplayOffWarning(FlorWarning):
    """Hindsight values were not computed because replay is off."""


class ReplayFailedWarning(FlorWarning):
    """A replay task failed: the values it was to compute are NULL; the message says why."""


class StoreWarning(FlorWarning):
    """The index was rebuilt or a run folder could not be read."""


class DamagedFileWarning(StoreWarning):
    """A file of the store could not be read: what it held is skipped, the rest answers.

    Attributes:
        path: the file, relative to the repository (``.florsql/runs/<id>/segments/...``).
        skipped: what was left out because of it.
    """

    def __init__(self, message: str, path: str = "", skipped: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.skipped = skipped


class NondeterminismWarning(FlorWarning):
    """A replayed value differs from the value the run recorded."""


class StatementDrawWarning(FlorWarning):
    """Today's statements drew from a global RNG in a replay (florsql/record/rng_guard.py): a
    run of today's script trains differently after the first draw, and the values are that
    run's (the run replayed again from its start, with no checkpoint restored: slow)."""


class UnverifiedWarning(FlorWarning):
    """A replay task had no recorded value to compare its replay with."""


class ArgMissingWarning(FlorWarning):
    """A query reads an arg that some runs never recorded (their code had none), beside
    hindsight values: replay computes those runs' values with the arg's default, while their
    arg column stays NULL. The message names the default to ``coalesce`` with."""


class DataChangedWarning(FlorWarning):
    """A replay read data files (from paths git ignores) that differ from what the run read."""


def format_position(sql: str, line: int, col: int, context: int = 40) -> str:
    """Render the line of ``sql`` at 1-based ``line`` with a caret under 1-based ``col``.

    Example:
        >>> print(format_position("SELECT x\\nFROM logz", 2, 6))
          2 | FROM logz
            |      ^
    """
    lines = sql.splitlines() or [""]
    line = max(1, min(line, len(lines)))
    text = lines[line - 1]
    start = max(0, col - 1 - context)
    snippet = text[start : col - 1 + context]
    caret_at = col - 1 - start
    gutter = f"{line:>3} | "
    return f"{gutter}{snippet}\n{' ' * (len(gutter) - 2)}| {' ' * caret_at}^"


def concat_messages(messages: list[str], limit: int = 5) -> str:
    """Join failure messages, cutting the list at ``limit`` with "... and N more".

    Example:
        >>> concat_messages(["a", "b", "c"], limit=2)
        'a\\nb\\n... and 1 more'
    """
    shown = messages[:limit]
    rest = len(messages) - len(shown)
    return "\n".join(shown + ([f"... and {rest} more"] if rest else []))
