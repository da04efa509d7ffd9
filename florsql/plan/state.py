"""The state that flows through the planner's rules (each rule reads it and adds its part)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from florsql.plan.bind import Binding, Reference
from florsql.plan.catalog import Catalog
from florsql.plan.relax import Relaxed
from florsql.plan.replay_plan import RememberedFailure, ReplayPlan, Unreached

if TYPE_CHECKING:
    import duckdb

__all__ = ["NeedRow", "PlanState"]


@dataclass(frozen=True)
class NeedRow:
    """One (name, run, outer iteration) the replay set holds, as computed in DuckDB."""

    name: str
    run_id: str
    vid: str
    filename: str
    outer_loop: str | None
    outer_iteration: int | None
    chain: str
    inner_loop: str | None
    inner_iterations: tuple[int, ...]
    inner_total: int


@dataclass
class PlanState:
    """What the rules share. ``tree`` is the user's query; rules never print or execute it."""

    tree: exp.Expr
    source: str
    catalog: Catalog
    con: duckdb.DuckDBPyConnection
    repo: Path
    params: Sequence[Any] = ()
    use_cache: bool = True
    binding: Binding | None = None
    pushed: dict[int, Relaxed] = field(default_factory=dict)
    filterable: dict[int, bool] = field(default_factory=dict)
    limit_runs: set[str] | None = None
    needs: list[NeedRow] = field(default_factory=list)
    unplaceable: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: (vid, script) -> {name: why propagation cannot place it there}
    unplaced: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    #: (vid, script) -> {name: why}: today's statements that may draw and cannot be placed
    #: there, so its replays run without them (:attr:`Patched.lost`)
    lost: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    #: (version, script) -> needed names whose placed texts may draw in some iterations only
    #: (:attr:`Patched.uneven`)
    uneven: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    #: (version, script) -> needed names calling functions this version defines otherwise
    #: than today (:attr:`Patched.edited`)
    edited: dict[tuple[str, str], dict[str, tuple[str, ...]]] = field(default_factory=dict)
    failures: list[RememberedFailure] = field(default_factory=list)
    #: hindsight name -> runs left out of the replay set: they ran today's very file
    #: (:func:`florsql.plan.replay_set._without_today_s_code`)
    ran_today: dict[str, set[str]] = field(default_factory=dict)
    unreached: list[Unreached] = field(default_factory=list)
    plan: ReplayPlan = field(default_factory=ReplayPlan)
    ctes: dict[int, str] = field(default_factory=dict)
    sql: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def references(self) -> list[Reference]:
        return self.binding.references if self.binding is not None else []

    def hindsight_names(self) -> dict[int, tuple[str, ...]]:
        """Per reference: the hindsight names it reads (all of them for ``SELECT *``)."""
        hindsight = self.catalog.hindsight_names()
        out = {}
        for ref in self.references:
            names = hindsight if ref.names is None else [n for n in hindsight if n in ref.names]
            if names:
                out[ref.ref_id] = tuple(names)
        return out
