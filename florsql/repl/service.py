"""What the REPL needs of the query engine, as a small protocol, and the values it trades.

:mod:`florsql.repl.backend` adapts the engine to :class:`ReplService`. Replay reports back
through two hooks the engine calls: ``confirm`` (the plan and its cost; return False to run
nothing) and ``progress`` (tasks, iterations, ETA).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import pyarrow as pa

__all__ = [
    "Column",
    "ConfirmHook",
    "Outcome",
    "ProgressHook",
    "ReplService",
    "ReplayEstimate",
    "ReplayMode",
    "ReplayProgress",
    "Schema",
]

ReplayMode = Literal["auto", "confirm", "off"]
REPLAY_MODES: tuple[ReplayMode, ...] = ("auto", "confirm", "off")


@dataclass(frozen=True)
class Column:
    """A column as completion and ``.schema`` show it."""

    name: str
    sql_type: str
    hindsight: bool = False


@dataclass(frozen=True)
class Schema:
    """Every relation a query can name, with its columns (``logs`` first)."""

    relations: Mapping[str, tuple[Column, ...]] = field(default_factory=dict)

    def columns(self, relation: str) -> tuple[Column, ...]:
        return self.relations.get(relation.lower(), ())

    def all_columns(self) -> tuple[Column, ...]:
        seen: dict[str, Column] = {}
        for cols in self.relations.values():
            for col in cols:
                seen.setdefault(col.name, col)
        return tuple(seen.values())


@dataclass(frozen=True)
class ReplayEstimate:
    """What a query would replay: the plan as text and its estimated cost."""

    plan: str
    seconds: float
    tasks: int = 0


class ReplayProgress(Protocol):
    """Where a running replay stands (the replay scheduler's ``Progress`` has this shape)."""

    @property
    def tasks_done(self) -> int: ...
    @property
    def tasks_total(self) -> int: ...
    @property
    def iterations_done(self) -> int: ...
    @property
    def iterations_total(self) -> int: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def eta(self) -> float | None: ...


ConfirmHook = Callable[[ReplayEstimate], bool]
ProgressHook = Callable[[ReplayProgress], None]


@dataclass(frozen=True)
class Outcome:
    """The answer to one statement: a table, or a line of text, and the warnings raised."""

    table: pa.Table | None = None
    text: str | None = None
    warnings: tuple[str, ...] = ()
    #: ``table`` is an EXPLAIN's plan (one ``plan`` column, a line a row): printed as its lines
    #: in the table and line modes, as any table in csv and json.
    plan: bool = False


class ReplService(Protocol):
    """The engine as the REPL sees it.

    ``execute`` runs on a worker thread; ``interrupt`` and ``schema`` may be called from other
    threads while it runs (the REPL's main thread, the completion refresher).
    """

    def execute(
        self,
        sql: str,
        *,
        replay: ReplayMode,
        confirm: ConfirmHook | None = None,
        progress: ProgressHook | None = None,
        params: Sequence[object] = (),
    ) -> Outcome:
        """Run one statement with its ``?`` parameters bound; raise a ``FlorError`` on
        failure, ``KeyboardInterrupt`` if interrupted, and return ``Outcome(text=...)`` when
        ``confirm`` declined."""
        ...

    def explain(self, sql: str, params: Sequence[object] = ()) -> str:
        """The replay plan and cost of a query (its ``?`` bound to ``params``), as text. Runs
        nothing."""
        ...

    def schema(self) -> Schema:
        """The relations and columns a query can name now."""
        ...

    def interrupt(self) -> None:
        """Stop the statement ``execute`` is running (from another thread)."""
        ...
