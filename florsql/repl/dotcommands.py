"""Dot-commands and the settings they change: parsed from one line, dispatched through a
registry (as litecli's specials); the settings are data (name, default, help).

Each handler takes the session's :class:`DotContext` and the parsed :class:`DotCall`, changes
settings or asks the service, and returns a :class:`Reply` for the front end to print.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa

from florsql.errors import FlorError
from florsql.repl.service import REPLAY_MODES, ReplayMode, ReplService

__all__ = [
    "MODES",
    "REGISTRY",
    "SETTINGS",
    "DotCall",
    "DotCommand",
    "DotContext",
    "Reply",
    "Setting",
    "Settings",
    "parse_dot",
    "run_dot",
    "setting_value",
]

MODES = ("table", "csv", "json", "line")


@dataclass(frozen=True)
class Setting:
    """One documented setting."""

    name: str
    default: str
    help: str


SETTINGS = (
    Setting("mode", "table", "how results print: table, csv, json or line"),
    Setting("timer", "off", "print each statement's wall time"),
    Setting("replay", "confirm", "compute hindsight values: auto, confirm (ask first) or off"),
    Setting("output", "stdout", "where results go: stdout or a file (appended)"),
    Setting("row_limit", "100", "rows a table shows; the count is always printed"),
    Setting("confirm_seconds", "10", "with replay = confirm, ask before replays estimated longer"),
)


@dataclass
class Settings:
    """The session's current settings."""

    mode: str = "table"
    timer: bool = False
    replay: ReplayMode = "confirm"
    output: Path | None = None
    row_limit: int = 100
    confirm_seconds: float = 10.0


ArgKind = Literal["relation", "sql", "file", "choice"] | None


@dataclass(frozen=True)
class DotCall:
    """A parsed dot-command line: ``.mode csv`` -> name ``.mode``, args ``("csv",)``."""

    name: str
    args: tuple[str, ...] = ()
    rest: str = ""  # the argument text as typed (``.explain`` takes SQL)


@dataclass(frozen=True)
class Reply:
    """What a dot-command gives back to print."""

    text: str | None = None
    table: pa.Table | None = None
    quit: bool = False
    footer: str | None = None  # printed on the screen after the result (the timer)


@dataclass
class DotContext:
    settings: Settings
    service: ReplService


Handler = Callable[[DotContext, DotCall], Reply]


@dataclass(frozen=True)
class DotCommand:
    """A registered dot-command; ``choices``/``arg`` drive completion."""

    name: str
    usage: str
    help: str
    handler: Handler
    arg: ArgKind = None
    choices: tuple[str, ...] = field(default=())


REGISTRY: dict[str, DotCommand] = {}


def dot_command(
    usage: str, help: str, arg: ArgKind = None, choices: tuple[str, ...] = ()
) -> Callable[[Handler], Handler]:
    """Register a handler under the first word of ``usage``."""

    def register(handler: Handler) -> Handler:
        name = usage.split()[0]
        REGISTRY[name] = DotCommand(name, usage, help, handler, arg, choices)
        return handler

    return register


def parse_dot(line: str) -> DotCall:
    """Split a dot-command line; quotes group words (``.output 'my file.txt'``).

    Example:
        >>> call = parse_dot(".explain SELECT avg(loss) FROM logs")
        >>> call.name, call.args[:2], call.rest
        ('.explain', ('SELECT', 'avg(loss)'), 'SELECT avg(loss) FROM logs')
        >>> parse_dot(".MODE csv;").args
        ('csv',)
    """
    text = line.strip().rstrip(";").strip()
    name, _, rest = text.partition(" ")
    rest = rest.strip()
    try:
        args = tuple(shlex.split(rest))
    except ValueError:
        args = tuple(rest.split())
    return DotCall(name.lower(), args, rest)


def run_dot(ctx: DotContext, line: str) -> Reply:
    """Parse and run one dot-command line."""
    call = parse_dot(line)
    command = REGISTRY.get(call.name)
    if command is None:
        raise FlorError(f"unknown command {call.name}; .help lists the commands")
    return command.handler(ctx, call)


def _one_of(call: DotCall, choices: tuple[str, ...], usage: str) -> str:
    if len(call.args) != 1 or call.args[0].lower() not in choices:
        raise FlorError(f"usage: {usage}")
    return call.args[0].lower()


@dot_command(".help", "show the commands and keys")
def _help(ctx: DotContext, call: DotCall) -> Reply:
    width = max(len(c.usage) for c in REGISTRY.values())
    lines = [f"{c.usage:<{width}}  {c.help}" for c in REGISTRY.values()]
    lines += ["", "SQL ends with ';' (Enter adds a line until then); dot-commands end at Enter."]
    lines += ["Tab completes, Ctrl-R searches history, Ctrl-C cancels, Ctrl-D exits.", ""]
    lines += ["Settings now:"]
    lines += [f"  {s.name} = {setting_value(ctx.settings, s.name)}  ({s.help})" for s in SETTINGS]
    return Reply("\n".join(lines))


def setting_value(settings: Settings, name: str) -> str:
    """A setting's current value as ``.help`` shows it.

    Example:
        >>> setting_value(Settings(), "timer"), setting_value(Settings(), "output")
        ('off', 'stdout')
    """
    value = getattr(settings, name)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "stdout"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dot_command(".tables", "list the relations a query can read")
def _tables(ctx: DotContext, call: DotCall) -> Reply:
    return Reply("\n".join(ctx.service.schema().relations))


@dot_command(".schema [TABLE]", "columns and types (hindsight columns marked)", arg="relation")
def _schema(ctx: DotContext, call: DotCall) -> Reply:
    schema = ctx.service.schema()
    names = [a.lower() for a in call.args] or list(schema.relations)
    unknown = [n for n in names if n not in schema.relations]
    if unknown:
        raise FlorError(f"no relation named {unknown[0]!r}; .tables lists them")
    rows = [
        (rel, c.name, c.sql_type, "hindsight" if c.hindsight else "")
        for rel in names
        for c in schema.columns(rel)
    ]
    table = pa.table(
        {k: [r[i] for r in rows] for i, k in enumerate(("table", "column", "type", "note"))}
    )
    return Reply(table=table)


@dot_command(".runs", "the recorded runs (SHOW RUNS)")
def _runs(ctx: DotContext, call: DotCall) -> Reply:
    outcome = ctx.service.execute("SHOW RUNS", replay="off")
    return Reply(outcome.text, outcome.table)


@dot_command(".explain SQL", "the replay plan and cost of a query; runs nothing", arg="sql")
def _explain(ctx: DotContext, call: DotCall) -> Reply:
    if not call.rest:
        raise FlorError("usage: .explain SQL")
    return Reply(ctx.service.explain(call.rest))


@dot_command(".mode table|csv|json|line", "how results print", arg="choice", choices=MODES)
def _mode(ctx: DotContext, call: DotCall) -> Reply:
    ctx.settings.mode = _one_of(call, MODES, ".mode table|csv|json|line")
    return Reply()


@dot_command(".timer on|off", "print each statement's time", arg="choice", choices=("on", "off"))
def _timer(ctx: DotContext, call: DotCall) -> Reply:
    ctx.settings.timer = _one_of(call, ("on", "off"), ".timer on|off") == "on"
    return Reply()


@dot_command(
    ".replay auto|confirm|off",
    "compute hindsight values always, after asking, or never",
    arg="choice",
    choices=REPLAY_MODES,
)
def _replay(ctx: DotContext, call: DotCall) -> Reply:
    value = _one_of(call, REPLAY_MODES, ".replay auto|confirm|off")
    ctx.settings.replay = next(m for m in REPLAY_MODES if m == value)
    return Reply()


@dot_command(".output [FILE]", "append results to FILE; no FILE: back to the screen", arg="file")
def _output(ctx: DotContext, call: DotCall) -> Reply:
    if not call.args or call.args[0] in ("stdout", "-"):
        ctx.settings.output = None
        return Reply()
    path = Path(call.rest if len(call.args) > 1 else call.args[0]).expanduser()
    try:
        path.open("a").close()
    except OSError as e:
        raise FlorError(f"cannot write {path}: {e.strerror}") from e
    ctx.settings.output = path
    return Reply()


@dot_command(".quit", "leave (Ctrl-D also does)")
def _quit(ctx: DotContext, call: DotCall) -> Reply:
    return Reply(quit=True)
