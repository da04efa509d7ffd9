"""The query engine: parse -> bind -> plan -> replay -> rewrite -> DuckDB -> Arrow."""

from __future__ import annotations

from florsql.engine.hook import Confirm, ReplayExecutor, ReplayOutcome
from florsql.engine.result import Result
from florsql.engine.session import Engine, EngineCursor, store_root

__all__ = [
    "Confirm",
    "Engine",
    "EngineCursor",
    "ReplayExecutor",
    "ReplayOutcome",
    "Result",
    "store_root",
]
