"""The engine as the REPL's :class:`~florsql.repl.service.ReplService`.

The engine is not thread-safe: statements (worker thread) and schema refreshes (completion's
background thread) take turns on a lock; only :meth:`interrupt` goes around it, to stop the
statement that holds it.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

from florsql.engine import Engine
from florsql.errors import FlorWarning, SqlError, format_position
from florsql.plan.explain import explain_lines
from florsql.plan.replay_plan import ReplayPlan
from florsql.repl.render import render_outcome
from florsql.repl.service import (
    Column,
    ConfirmHook,
    Outcome,
    ProgressHook,
    ReplayEstimate,
    ReplayMode,
    Schema,
)

__all__ = ["EngineReplService", "estimate", "open_service"]


def estimate(plan: ReplayPlan) -> ReplayEstimate:
    """What the confirmation shows: the plan's EXPLAIN lines (without the SQL) and its cost."""
    lines = explain_lines(plan, "")
    if "DuckDB SQL:" in lines:
        lines = lines[: lines.index("DuckDB SQL:")]
    return ReplayEstimate("\n".join(lines), plan.cost.seconds, plan.cost.tasks)


#: What :meth:`EngineReplService.explain` puts before the user's query.
_EXPLAIN = "EXPLAIN "


class EngineReplService:
    """Serves a REPL session from one :class:`~florsql.engine.Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    def execute(
        self,
        sql: str,
        *,
        replay: ReplayMode,
        confirm: ConfirmHook | None = None,
        progress: ProgressHook | None = None,
        params: Sequence[object] = (),
    ) -> Outcome:
        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", FlorWarning)  # the outcome carries them
            self.engine.settings["replay"] = replay
            self.engine.confirm = (lambda plan: confirm(estimate(plan))) if confirm else None
            self._wire_progress(progress)
            result = self.engine.execute(sql, params)
        if result.kind == "set":
            return Outcome(text=f"replay = {self.engine.settings['replay']}")
        if result.kind == "explain":
            return Outcome(table=result.table, plan=True)
        return Outcome(table=result.table, warnings=tuple(result.warnings))

    def _wire_progress(self, progress: ProgressHook | None) -> None:
        # The replay executor reports progress; the engine hands it over as its `executor`
        # (an engine-level hook, where one exists, wins).
        for target in (self.engine, getattr(self.engine, "executor", None)):
            if target is not None and hasattr(target, "progress"):
                target.progress = progress
                return

    def explain(self, sql: str, params: Sequence[object] = ()) -> str:
        text = sql.rstrip().rstrip(";")
        try:
            outcome = self.execute(f"{_EXPLAIN}{text}", replay="off", params=params)
        except SqlError as e:
            # placed in the user's text, not in the EXPLAIN this method put before it
            # (session 50: ``florsql explain`` placed an unknown column 8 columns right)
            if e.line == 1 and e.col is not None and e.col > len(_EXPLAIN):
                e.col -= len(_EXPLAIN)
            if e.sql is not None and e.sql.startswith(_EXPLAIN):
                e.sql = e.sql[len(_EXPLAIN) :]
            if e.sql is not None and e.line is not None and e.col is not None:
                e.args = (f"{e.message}\n{format_position(e.sql, e.line, e.col)}",)
            raise
        return render_outcome(outcome, "table") or ""

    def schema(self) -> Schema:
        with self._lock:
            catalog = self.engine.catalog()
        logs = tuple(Column(c.name, c.sql_type, c.hindsight) for c in catalog.columns)
        relations = {"logs": logs}
        for name, columns in catalog.relations.items():
            relations[name] = tuple(Column(n, t) for n, t in columns.items())
        return Schema(relations)

    def interrupt(self) -> None:
        self.engine.interrupt()  # DuckDB, on every cursor
        # A replay's tasks too: the worker thread waits on them, and would see Ctrl-C only
        # when the next one finished.
        stop = getattr(self.engine.executor, "interrupt", None)
        if callable(stop):
            stop()

    def close(self) -> None:
        self.engine.close()


def open_service(repo: Path | str, *, wait: float = 0.0) -> EngineReplService:
    """An engine over ``repo``'s store for :func:`florsql.repl.run_repl`."""
    return EngineReplService(Engine(repo, replay="confirm", wait=wait))
