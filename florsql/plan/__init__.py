"""Planning: catalog and binding, pushdown, the replay set, the rewrite (``docs/sql.md``).

The replay plan's dataclasses import nothing heavy (replay workers import them); the planner
itself (sqlglot, libcst, DuckDB helpers) loads on first use.
"""

from __future__ import annotations

from typing import Any

from florsql.plan.replay_plan import (
    CheckpointRef,
    Chunk,
    Cost,
    InnerRestriction,
    IterationNeed,
    ReplayPlan,
    RunReplay,
    VersionReplay,
)

__all__ = [
    "RULES",
    "Catalog",
    "CheckpointRef",
    "Chunk",
    "Cost",
    "InnerRestriction",
    "IterationNeed",
    "PlannedQuery",
    "ReplayPlan",
    "RunReplay",
    "VersionReplay",
    "build_catalog",
    "plan_query",
]

_LAZY = {
    "RULES": "florsql.plan.planner",
    "PlannedQuery": "florsql.plan.planner",
    "plan_query": "florsql.plan.planner",
    "Catalog": "florsql.plan.catalog",
    "build_catalog": "florsql.plan.catalog",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'florsql.plan' has no attribute {name!r}")
