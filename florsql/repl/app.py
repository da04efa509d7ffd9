"""``florsql`` with no command: the interactive session on a terminal.

The prompt highlights SQL (pygments), completes from the schema cache, keeps history in the
user's data dir (Ctrl-R searches it, suggestions come from it) and reads until ``;``.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.output import Output, create_output
from pygments.lexers.sql import SqlLexer

from florsql.repl.background import SchemaCache
from florsql.repl.completion import suggest
from florsql.repl.dotcommands import Settings
from florsql.repl.service import ReplService
from florsql.repl.shell import Shell
from florsql.repl.statements import is_complete

__all__ = [
    "PROMPT",
    "PlainEcho",
    "SchemaCompleter",
    "TerminalEcho",
    "history_path",
    "make_session",
    "run_repl",
    "run_script",
    "settle_heap",
]

PROMPT = "florsql> "
CONTINUATION = "     ...> "


def history_path() -> Path:
    """``history`` in the user's data dir (``$XDG_DATA_HOME/florsql`` on Linux)."""
    from platformdirs import user_data_path

    return user_data_path("florsql", appauthor=False) / "history"


class SchemaCompleter(Completer):
    """prompt_toolkit's face of :func:`florsql.repl.completion.suggest`."""

    def __init__(self, cache: SchemaCache) -> None:
        self.cache = cache

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        for s in suggest(document.text_before_cursor, self.cache.schema):
            yield Completion(s.text, start_position=-s.replace, display_meta=s.meta)


def _history(path: Path | None) -> History:
    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()  # a read-only home: keep history for this session only
    return FileHistory(str(path))


def make_session(
    cache: SchemaCache,
    history: Path | None,
    input: Input | None = None,
    output: Output | None = None,
) -> PromptSession[str]:
    """A prompt session: Enter submits complete input and breaks the line otherwise."""
    session: PromptSession[str] = PromptSession(
        lexer=PygmentsLexer(SqlLexer),
        completer=SchemaCompleter(cache),
        complete_while_typing=True,
        history=_history(history),
        auto_suggest=AutoSuggestFromHistory(),
        enable_history_search=False,  # Ctrl-R searches; Up walks the history
        prompt_continuation=lambda width, line, wrap: CONTINUATION[-width:].rjust(width),
        input=input,
        output=output,
    )
    session.multiline = Condition(lambda: not is_complete(session.default_buffer.text))
    return session


BANNER = "florsql: SQL over your training runs. End statements with ';'. .help for commands."


class TerminalEcho:
    """The shell's words on a prompt_toolkit output: errors red, warnings yellow."""

    def __init__(self, output: Output, input: Input | None = None) -> None:
        self.output = output
        self.input = input
        self._status = False

    def _print(self, text: str, style: str = "") -> None:
        self.status(None)
        print_formatted_text(FormattedText([(style, text)]), output=self.output)

    def out(self, text: str) -> None:
        self._print(text)

    def warn(self, text: str) -> None:
        self._print(text, "ansiyellow")

    def error(self, text: str) -> None:
        self._print(text, "ansired")

    def status(self, line: str | None) -> None:
        """A transient line (the progress bar), redrawn in place; None clears it."""
        if line is None and not self._status:
            return
        self.output.write_raw("\r")
        self.output.erase_end_of_line()
        if line is not None:
            self.output.write_raw(line)
        self.output.flush()
        self._status = line is not None

    def ask(self, question: str) -> bool:
        session: PromptSession[str] = PromptSession(input=self.input, output=self.output)
        try:
            answer = session.prompt(question)
        except (KeyboardInterrupt, EOFError):
            return False
        return answer.strip().lower() in ("y", "yes")


def settle_heap() -> None:
    """Move what start-up allocated (engine, DuckDB, Arrow modules and objects) out of the garbage
    collector's reach, so that a full collection never stalls a keystroke for tens of ms."""
    gc.collect()
    gc.freeze()


def run_repl(
    service: ReplService,
    *,
    settings: Settings | None = None,
    history: Path | None = None,
    input: Input | None = None,
    output: Output | None = None,
) -> None:
    """Read statements until ``.quit`` or Ctrl-D; Ctrl-C clears the line or cancels a query."""
    output = output or create_output()
    cache = SchemaCache(service.schema)
    session = make_session(cache, history if history is not None else history_path(), input, output)
    shell = Shell(service, TerminalEcho(output, input), settings)
    shell.on_change = cache.refresh_async
    cache.refresh_async()
    settle_heap()
    shell.echo.out(BANNER)
    while True:
        try:
            text = session.prompt(PROMPT)
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt drops the line being typed
        except EOFError:
            break
        if not shell.handle(text):
            break


class PlainEcho:
    """The shell's words when input is piped in: results to stdout, the rest to stderr."""

    def __init__(self) -> None:
        self.failed = False

    def out(self, text: str) -> None:
        print(text)

    def warn(self, text: str) -> None:
        print(text, file=sys.stderr)

    def error(self, text: str) -> None:
        self.failed = True
        print(text, file=sys.stderr)

    def status(self, line: str | None) -> None:
        """No progress bar without a terminal."""

    def ask(self, question: str) -> bool:
        return True  # nobody to ask: replay = 'confirm' runs, as in every prompt-less front end


def run_script(service: ReplService, text: str, settings: Settings | None = None) -> bool:
    """Run piped input (SQL ending in ``;`` and dot-commands) as the shell would; False if any
    statement failed. A last statement without ``;`` runs too."""
    echo = PlainEcho()
    shell = Shell(service, echo, settings)
    pending = ""
    for line in text.splitlines(keepends=True):
        pending += line
        if pending.strip() and is_complete(pending):
            if not shell.handle(pending):
                return not echo.failed
            pending = ""
    if pending.strip():
        shell.handle(pending)
    return not echo.failed
