"""What the engine returns for a statement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from florsql.plan.replay_plan import ReplayPlan

if TYPE_CHECKING:
    from florsql.engine.exact import ExactStream

__all__ = ["Result", "StatementKind"]

StatementKind = Literal["select", "explain", "show_runs", "show_columns", "set"]


@dataclass(frozen=True)
class Result:
    """One statement's outcome.

    Attributes:
        kind: the statement kind (``select``, ``explain``, ``show_runs``, ``show_columns``,
            ``set``).
        table: the rows, as Arrow (an empty table with no columns for ``SET``).
        sql: the DuckDB SQL that ran (None for SET and SHOW).
        plan: the replay plan of a query (what replay computed, or would have).
        warnings: the message of each warning raised running it (also sent to
            ``warnings.warn``); ``warning_records`` pairs each with its category.
        types: DuckDB type names of the columns, where DuckDB produced the table.
        stream: a query's rows as they are computed, where the caller asked for a stream
            (``Engine.execute(..., stream=True)``); ``table`` is then empty, with the schema.
    """

    kind: StatementKind
    table: pa.Table
    sql: str | None = None
    plan: ReplayPlan | None = None
    warnings: tuple[str, ...] = field(default=())
    types: tuple[str, ...] = field(default=())
    warning_records: tuple[tuple[type[Warning], str], ...] = field(default=())
    stream: ExactStream | None = None

    @property
    def rowcount(self) -> int:
        """Rows returned; -1 for a statement that returns none (``SET``) and for a stream
        (not known until it is read)."""
        return -1 if self.kind == "set" or self.stream is not None else self.table.num_rows

    @classmethod
    def empty(cls, kind: StatementKind) -> Result:
        return cls(kind=kind, table=pa.table({}))
