"""The REPL shell's behaviour against a scripted service: dot-commands, SET replay, errors,
confirmation before long replays, progress, Ctrl-C, output files; and the prompt itself driven
through a pipe."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from florsql.errors import ParseError
from florsql.repl import Settings, run_repl
from florsql.repl.background import SchemaCache
from florsql.repl.service import (
    Column,
    ConfirmHook,
    Outcome,
    ProgressHook,
    ReplayEstimate,
    ReplayMode,
    Schema,
)
from florsql.repl.shell import Shell


@dataclass
class Recorder:
    """An Echo that keeps what the shell said."""

    answers: list[bool] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)
    #: set when the shell's main thread shows a statement's progress: it is waiting on it
    shown: threading.Event = field(default_factory=threading.Event)

    def out(self, text: str) -> None:
        self.lines.append(("out", text))

    def warn(self, text: str) -> None:
        self.lines.append(("warn", text))

    def error(self, text: str) -> None:
        self.lines.append(("error", text))

    def status(self, line: str | None) -> None:
        if line is not None:
            self.lines.append(("status", line))
            self.shown.set()

    def ask(self, question: str) -> bool:
        self.lines.append(("ask", question))
        return self.answers.pop(0)


PROGRESS = SimpleNamespace(
    tasks_done=0, tasks_total=2, iterations_done=0, iterations_total=6, elapsed=0.1, eta=None
)


@dataclass
class Scripted:
    """A ReplService whose statements behave as the test says."""

    estimate: float = 0.0
    calls: list[tuple[str, ReplayMode]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def execute(
        self,
        sql: str,
        *,
        replay: ReplayMode,
        confirm: ConfirmHook | None = None,
        progress: ProgressHook | None = None,
        params: Sequence[object] = (),
    ) -> Outcome:
        self.calls.append((sql, replay))
        if sql.startswith(("SLOW", "BUSY")) and progress is not None:
            progress(PROGRESS)  # the shell shows it: the statement is running
        if sql.startswith("SLOW"):
            if not self.stop.wait(60):
                return Outcome(text="never cancelled")
            raise KeyboardInterrupt
        if sql.startswith("BUSY"):  # Python work that ignores interrupt(), as a replay's wait
            while True:
                time.sleep(0.01)
        if sql.startswith("BAD"):
            raise ParseError("syntax error near 'BAD'", sql=sql, line=1, col=1)
        if sql.startswith("HINDSIGHT"):
            go = confirm is None or confirm(ReplayEstimate("Replay plan: 2 run(s)", self.estimate))
            if progress is not None and go:
                progress(SimpleNamespace(tasks_done=1, tasks_total=2, iterations_done=3,
                                         iterations_total=6, elapsed=0.5, eta=0.5))  # fmt: skip
                time.sleep(0.15)  # the main thread draws the bar meanwhile
            note = () if go else ("replay was not confirmed",)
            return Outcome(table=pa.table({"g": [1.0 if go else None]}), warnings=note)
        return Outcome(table=pa.table({"x": [1, 2]}))

    def explain(self, sql: str) -> str:
        return f"Replay plan for {sql}"

    def schema(self) -> Schema:
        return Schema({"logs": (Column("loss", "DOUBLE"), Column("g", "NULL", True))})

    def interrupt(self) -> None:
        self.stop.set()


def _shell(**kw: object) -> tuple[Shell, Scripted, Recorder]:
    service, echo = Scripted(**kw), Recorder()  # type: ignore[arg-type]
    return Shell(service, echo, Settings()), service, echo


def test_queries_print_tables_and_dot_commands_change_settings(tmp_path: Path) -> None:
    shell, service, echo = _shell()
    assert shell.handle("SELECT x FROM logs;")
    assert echo.lines[-1] == ("out", "x\n-\n1\n2\n(2 rows)")
    assert shell.handle(".mode csv") and shell.handle(".timer on")
    assert shell.handle("SELECT 1; SELECT 2;")
    assert [c[0] for c in service.calls[-2:]] == ["SELECT 1", "SELECT 2"]
    assert echo.lines[-2] == ("out", "x\n1\n2") and echo.lines[-1][1].startswith("Time: ")
    out = tmp_path / "out.csv"
    assert shell.handle(f".output {out}") and shell.handle("SELECT 3;") and shell.handle(".output")
    assert out.read_text() == "x\n1\n2\n"
    assert shell.handle(".explain SELECT g FROM logs")
    assert echo.lines[-1] == ("out", "Replay plan for SELECT g FROM logs")
    assert shell.handle(".schema logs")
    assert echo.lines[-1][1].splitlines()[1:3] == ['logs,loss,DOUBLE,""', "logs,g,NULL,hindsight"]
    assert not shell.handle(".quit")


def test_set_replay_is_the_sessions_setting() -> None:
    shell, service, echo = _shell()
    shell.handle("SET replay = 'off';")
    assert shell.settings.replay == "off" and echo.lines[-1] == ("out", "replay = off")
    shell.handle("SELECT 1;")
    assert service.calls[-1] == ("SELECT 1", "off")
    shell.handle(".replay auto")
    shell.handle("SELECT 2;")
    assert service.calls[-1] == ("SELECT 2", "auto")


def test_errors_print_and_the_session_goes_on() -> None:
    shell, service, echo = _shell()
    assert shell.handle("BAD; SELECT 1;")
    assert echo.lines[-1][0] == "error" and echo.lines[-1][1].startswith("syntax error near 'BAD'")
    assert [c[0] for c in service.calls] == ["BAD"]  # the rest of the submission is dropped
    assert shell.handle("SET threads = 4;")
    assert echo.lines[-1][1].startswith("SET of DuckDB options is not allowed")
    assert shell.handle(".mode xml") and echo.lines[-1] == (
        "error",
        "usage: .mode table|csv|json|line",
    )
    assert shell.handle("SELECT 1;") and echo.lines[-1][0] == "out"


def test_short_replays_run_long_ones_ask_first() -> None:
    shell, _, echo = _shell(estimate=3.0)
    shell.handle("HINDSIGHT;")
    assert not [kind for kind, _ in echo.lines if kind == "ask"]
    bars = [t for k, t in echo.lines if k == "status" and t.startswith("replaying")]
    # The report said 0.5s elapsed, 0.5s left; the line's clock goes on from there.
    assert bars and all(
        b.startswith("replaying [############............] 1/2 tasks, 3/6 iterations, ")
        for b in bars
    )
    elapsed = [float(b.split(", ")[2].removesuffix("s elapsed")) for b in bars]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0.5
    shell, _, echo = _shell(estimate=120.0)
    echo.answers = [False]
    shell.handle("HINDSIGHT;")
    asked = [text for kind, text in echo.lines if kind == "ask"]
    assert asked == [
        "Replay plan: 2 run(s)\nThis query replays old runs, estimated 2m00s. Run it? [y/N] "
    ]
    assert ("warn", "warning: replay was not confirmed") in echo.lines
    assert echo.lines[-1] == ("out", "g\n----\nNULL\n(1 row)")  # a null-typed column
    echo.answers = [True]
    shell.handle("HINDSIGHT;")
    assert echo.lines[-1] == ("out", "  g\n---\n1.0\n(1 row)")


def _ctrl_c_once_running(echo: Recorder) -> None:
    """Ctrl-C, once the shell's main thread shows the statement running (inside the wait
    that handles it: a fixed timer could fire before it, or after, under load)."""

    def press() -> None:
        if echo.shown.wait(60):
            _thread.interrupt_main()

    threading.Thread(target=press, daemon=True).start()


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Ctrl-C as a terminal's shell starts Python: ``_thread.interrupt_main`` raises
    KeyboardInterrupt only under Python's own SIGINT handler (it does nothing under SIG_IGN or
    SIG_DFL), and a pytest worker may have had its handler changed by an earlier test (both
    Ctrl-C tests once hung there, in a loaded full-suite run, never alone)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("default_sigint")
def test_ctrl_c_cancels_the_statement_and_keeps_the_session() -> None:
    shell, service, echo = _shell()
    _ctrl_c_once_running(echo)
    assert shell.handle("SLOW;")
    assert service.stop.is_set() and echo.lines[-1] == ("error", "cancelled")
    assert shell.handle("SELECT 1;") and echo.lines[-1][0] == "out"


@pytest.mark.usefixtures("default_sigint")
def test_ctrl_c_stops_python_work_in_the_statement_too() -> None:
    shell, _, echo = _shell()
    _ctrl_c_once_running(echo)
    assert shell.handle("BUSY;")
    assert echo.lines[-1] == ("error", "cancelled")
    assert not [t for t in threading.enumerate() if t.name == "florsql-query" and t.is_alive()]


def test_schema_cache_refreshes_in_the_background() -> None:
    gate = threading.Event()
    versions = iter([Schema({"logs": (Column("a", "BIGINT"),)}), Schema({"runs": ()})])

    def load() -> Schema:
        gate.wait(5)
        return next(versions)

    cache = SchemaCache(load)
    thread = cache.refresh_async()
    assert cache.schema == Schema() and cache.refresh_async() is thread  # one at a time
    gate.set()
    thread.join(5)
    assert list(cache.schema.relations) == ["logs"]
    cache.refresh_async().join(5)
    assert list(cache.schema.relations) == ["runs"]


def test_the_prompt_reads_multi_line_sql_and_dot_commands(tmp_path: Path) -> None:
    service = Scripted()
    history = tmp_path / "data" / "history"
    with create_pipe_input() as pipe:
        pipe.send_text("SELECT x\r")  # Enter before ';' continues the statement
        pipe.send_text("FROM logs;\r")
        pipe.send_text(".mode json\r")
        pipe.send_text("SELECT 2;\r")
        pipe.send_text(".quit\r")
        run_repl(service, history=history, input=pipe, output=DummyOutput())
    assert [c[0] for c in service.calls] == ["SELECT x\nFROM logs", "SELECT 2"]
    assert "\n+SELECT x\n+FROM logs;\n" in history.read_text()


def test_ctrl_d_ends_the_session(tmp_path: Path) -> None:
    service = Scripted()
    with create_pipe_input() as pipe:
        pipe.send_text("SELECT 1;\r\x04")
        run_repl(service, history=tmp_path / "h", input=pipe, output=DummyOutput())
    assert service.calls == [("SELECT 1", "confirm")]


@pytest.mark.parametrize("xdg", [True])
def test_history_lives_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xdg: bool
) -> None:
    from florsql.repl.app import history_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert history_path() == tmp_path / "xdg" / "florsql" / "history"
