"""The REPL's settings, as data: each with its values, default and help (``.help`` lists them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from florsql.repl.service import ReplayMode

__all__ = ["MODES", "SETTINGS", "Setting", "Settings"]

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
