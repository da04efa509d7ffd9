"""The prompt: SQL highlighting, completion, history with Ctrl-R and suggestions, multi-line
input until ``;``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.output import Output
from pygments.lexers.sql import SqlLexer

from florsql.repl.completion import suggest
from florsql.repl.schema_cache import SchemaCache
from florsql.repl.statements import is_complete

__all__ = ["PROMPT", "SchemaCompleter", "history_path", "make_session"]

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
