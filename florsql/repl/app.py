"""``florsql`` with no command: the interactive session on a terminal."""

from __future__ import annotations

from pathlib import Path

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output, create_output

from florsql.repl.prompt import PROMPT, history_path, make_session
from florsql.repl.schema_cache import SchemaCache
from florsql.repl.service import ReplService
from florsql.repl.settings import Settings
from florsql.repl.shell import Shell

__all__ = ["TerminalEcho", "run_repl"]

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
