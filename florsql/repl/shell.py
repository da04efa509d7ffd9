"""The REPL's loop: read, run on a worker thread (Ctrl-C cancels it), print.

Statements and dot-commands run on a worker thread so the main thread stays free for Ctrl-C,
confirmations and the progress bar. Library errors print in red and the session goes on.
"""

from __future__ import annotations

import ctypes
import functools
import re
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import pyarrow as pa

from florsql.errors import FlorError
from florsql.grammar import parse
from florsql.repl.background import Bridge
from florsql.repl.dotcommands import DotContext, Reply, Settings, run_dot
from florsql.repl.render import confirm_text, duration, progress_line, render, render_outcome
from florsql.repl.service import REPLAY_MODES, Outcome, ReplService
from florsql.repl.statements import is_dot_command, split_statements

__all__ = ["Cancelled", "Echo", "Shell"]

T = TypeVar("T")
CANCEL_WAIT = 10.0
_SET = re.compile(r"\s*set\b", re.I)


def _interrupt_thread(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt in ``thread``, as Ctrl-C does in the main thread: the statement
    (and a replay it started, which cleans up its workers on KeyboardInterrupt) stops at its
    next Python instruction."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
        )


class Cancelled(Exception):
    """The user pressed Ctrl-C while a statement ran."""


class Echo(Protocol):
    """Where the shell's words go: the terminal, or a test's recorder."""

    def out(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def status(self, line: str | None) -> None: ...
    def ask(self, question: str) -> bool: ...


class Shell:
    """One REPL session's state and behaviour, without the prompt (see :func:`run_repl`)."""

    def __init__(self, service: ReplService, echo: Echo, settings: Settings | None = None) -> None:
        self.service = service
        self.echo = echo
        self.settings = settings or Settings()
        self.bridge = Bridge(self.settings.confirm_seconds)
        self.on_change: Callable[[], object] = lambda: None  # e.g. refresh completion

    def handle(self, text: str) -> bool:
        """Run one submission; False when the session should end."""
        stripped = text.strip()
        if stripped.lower() in ("quit", "exit", "quit;", "exit;"):
            return False
        if not stripped:
            return True
        if is_dot_command(stripped):
            ctx = DotContext(self.settings, self.service)
            reply = self._guarded(lambda: self._call(lambda: run_dot(ctx, stripped)))
            return not (reply is not None and reply.quit)
        for statement in split_statements(stripped):
            if self._guarded(functools.partial(self._statement, statement)) is None:
                break
        self.on_change()
        return True

    def _statement(self, sql: str) -> Reply:
        if _SET.match(sql):
            stmt = parse(sql)
            mode = next((m for m in REPLAY_MODES if m == stmt.value), None)
            if stmt.kind == "set" and mode is not None:
                self.settings.replay = mode
                return Reply(f"replay = {mode}")
        started = time.perf_counter()
        outcome = self._execute(sql)
        for message in outcome.warnings:
            self.echo.warn(f"warning: {message}")
        elapsed = time.perf_counter() - started
        footer = f"Time: {duration(elapsed)}" if self.settings.timer else None
        if outcome.plan:  # EXPLAIN: its lines, or a `plan` column in csv and json
            return Reply(render_outcome(outcome, self.settings.mode, None), footer=footer)
        return Reply(outcome.text, outcome.table, footer=footer)

    def _execute(self, sql: str) -> Outcome:
        self.bridge.threshold = self.settings.confirm_seconds
        confirm = self.bridge.confirm if self.settings.replay == "confirm" else None
        progress = self.bridge.start()
        return self._call(
            lambda: self.service.execute(
                sql, replay=self.settings.replay, confirm=confirm, progress=progress
            )
        )

    def _guarded(self, action: Callable[[], Reply]) -> Reply | None:
        """Run ``action``, printing what it returns; None after an error or Ctrl-C."""
        try:
            reply = action()
        except Cancelled:
            self.echo.error("cancelled")
            return None
        except FlorError as e:
            self.echo.error(str(e))
            return None
        except Exception as e:  # a bug must not end the session
            self.echo.error(f"internal error: {type(e).__name__}: {e}")
            return None
        if reply.text is not None or reply.table is not None:
            self._show(reply.text, reply.table)
        if reply.footer is not None:
            self.echo.out(reply.footer)
        return Reply(quit=reply.quit)

    def _show(self, text: str | None, table: pa.Table | None) -> None:
        pieces = [text] if text else []
        if table is not None:
            limit = None if self.settings.output else self.settings.row_limit
            pieces.append(render(table, self.settings.mode, limit))
        if not pieces:
            return
        if self.settings.output is not None:
            with self.settings.output.open("a") as f:
                f.write("\n".join(pieces) + "\n")
        else:
            self.echo.out("\n".join(pieces))

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a worker thread; serve its questions and progress until it ends."""
        box: list[T] = []
        failure: list[BaseException] = []

        def work() -> None:
            try:
                box.append(fn())
            except BaseException as e:
                failure.append(e)

        worker = threading.Thread(target=work, name="florsql-query", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.05)
                self._serve()
        except KeyboardInterrupt:
            self.service.interrupt()  # stops DuckDB
            self.bridge.decline_all()
            _interrupt_thread(worker)  # stops Python work there, a replay's wait included
            worker.join(CANCEL_WAIT)
            raise Cancelled() from None
        finally:
            self.echo.status(None)
        if failure:
            raise failure[0]
        return box[0]

    def _serve(self) -> None:
        question = self.bridge.next_question()
        if question is not None:
            self.echo.status(None)
            question.answer = self.echo.ask(confirm_text(question.estimate))
            question.answered.set()
        progress = self.bridge.new_progress()
        if progress is not None:
            self.echo.status(progress_line(progress))
