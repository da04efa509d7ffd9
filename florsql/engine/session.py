"""The engine: parse -> bind -> plan -> replay -> rewrite -> DuckDB -> Arrow.

One :class:`Engine` owns a repository's index (one per process, DuckDB's rule) and its
settings (``replay``). It is not thread-safe: front ends give each thread its own engine, or
serialize calls.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from florsql.engine.cache import CacheState
from florsql.engine.duck_errors import translate_duckdb_error
from florsql.engine.hook import Confirm, ReplayExecutor, default_executor
from florsql.engine.replaying import replay_if_needed
from florsql.engine.result import Result
from florsql.engine.sandbox import open_sandbox
from florsql.engine.show import show_columns, show_runs
from florsql.errors import PlanError, SqlError
from florsql.grammar import REPLAY_VALUES, Statement, parse
from florsql.plan.catalog import Catalog
from florsql.plan.explain import explain_lines
from florsql.plan.pivot import wide_select
from florsql.plan.planner import PlannedQuery, plan_query

__all__ = ["PLAN_CACHE_SIZE", "Engine"]

#: Plans kept for repeated statements; a plan is reused only while the catalog it was made
#: with is current (no new run, replay or code change since).
PLAN_CACHE_SIZE = 64


class Engine:
    """Answers florsql SQL over one repository's history.

    Args:
        repo: the git repository whose ``.florsql`` store to read.
        replay: ``"off"`` (hindsight cells NULL, with a warning), ``"auto"`` or ``"confirm"``.
        executor: runs replays; by default the one ``florsql.replay`` provides, if any.
        confirm: asked before replaying when ``replay = 'confirm'``.
        use_cache: read ``logs`` from the materialized pivot (else pivot per query).
        wait: seconds to wait for another process holding the index.

    Example:
        >>> with Engine("path/to/repo") as eng:  # doctest: +SKIP
        ...     eng.execute("SELECT run_id, avg(loss) FROM logs GROUP BY ALL").table
    """

    def __init__(
        self,
        repo: Path | str = ".",
        *,
        replay: str = "off",
        executor: ReplayExecutor | None = None,
        confirm: Confirm | None = None,
        use_cache: bool = True,
        wait: float = 0.0,
    ) -> None:
        self.repo = Path(repo).resolve()
        self.settings: dict[str, str] = {"replay": _check_replay(replay)}
        self.executor = executor if executor is not None else default_executor()
        self.confirm = confirm
        self.warn_stacklevel = 4  # warnings point at the caller of execute()
        self._box = open_sandbox(self.repo, wait=wait)
        self._cache = CacheState(self._box, self.repo, use_cache=use_cache)
        self._plans: OrderedDict[tuple[str, str], tuple[Catalog, Statement, PlannedQuery]]
        self._plans = OrderedDict()
        self.closed = False

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._box.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def interrupt(self) -> None:
        """Cancel the query running now (from another thread, e.g. on Ctrl-C)."""
        self._box.con.interrupt()

    # -- statements ----------------------------------------------------------------------------
    def catalog(self, *, refresh: bool = False) -> Catalog:
        """The catalog for the index as it is now (refreshing what changed on disk)."""
        return self._cache.current(force=refresh)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run one florsql statement and return its :class:`Result`.

        Raises:
            florsql.errors.ParseError: not valid florsql SQL, or not a read.
            florsql.errors.PlanError: an unknown column or relation, wrong parameters.
            florsql.errors.SqlError: DuckDB failed running it.
        """
        self._check_open()
        catalog = self.catalog()
        key = (sql, repr(tuple(params)))
        hit = self._plans.get(key)
        if hit is not None and hit[0] is catalog:
            self._plans.move_to_end(key)
            stmt, planned = hit[1], hit[2]
        else:
            stmt = parse(sql)
            if stmt.kind == "set":
                self.settings["replay"] = _check_replay(stmt.value or "")
                return Result.empty("set")
            if stmt.kind == "show_runs":
                return Result("show_runs", show_runs(self._box.con))
            if stmt.kind == "show_columns":
                table = show_columns(self._box.con, catalog, stmt.table or "", stmt.source)
                return Result("show_columns", table)
            planned = self._plan(stmt, catalog, params)
            self._remember(key, catalog, stmt, planned)
        if stmt.kind == "explain":
            lines = explain_lines(planned.replay, planned.sql, wide_select(catalog))
            return Result("explain", pa.table({"plan": lines}), planned.sql, planned.replay)
        planned, messages = replay_if_needed(self, stmt, planned, params)
        table, types = self._run(planned.sql, stmt)
        return Result(
            kind="select",
            table=table,
            sql=planned.sql,
            plan=planned.replay,
            warnings=tuple(text for _, text in messages),
            types=types,
            warning_records=tuple(messages),
        )

    def _remember(
        self, key: tuple[str, str], catalog: Catalog, stmt: Statement, planned: PlannedQuery
    ) -> None:
        """Keep the plan of a repeated statement while the catalog (and so the data) holds."""
        self._plans[key] = (catalog, stmt, planned)
        while len(self._plans) > PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)

    def plan(self, sql: str, params: Sequence[Any] = ()) -> PlannedQuery:
        """Plan a query (or the query of an EXPLAIN) without running anything."""
        self._check_open()
        stmt = parse(sql)
        if stmt.query is None:
            raise PlanError(f"{stmt.kind} has no query to plan", sql=sql)
        return self._plan(stmt, self.catalog(), params)

    def _plan(self, stmt: Statement, catalog: Catalog, params: Sequence[Any]) -> PlannedQuery:
        assert stmt.query is not None
        try:
            return plan_query(
                stmt.query,
                catalog=catalog,
                con=self._box.con,
                repo=self.repo,
                source=stmt.source,
                params=params,
                use_cache=self._cache.use_cache,
            )
        except SqlError:
            raise
        except Exception as e:  # a DuckDB error while computing the replay set
            if type(e).__module__.startswith(("duckdb", "_duckdb")):
                raise translate_duckdb_error(e, ran="", source=stmt.source) from e
            raise

    def _run(self, sql: str, stmt: Statement) -> tuple[pa.Table, tuple[str, ...]]:
        try:
            rel = self._box.con.sql(sql)
            return rel.to_arrow_table(), tuple(str(t) for t in rel.types)
        except Exception as e:
            if type(e).__module__.startswith(("duckdb", "_duckdb")):
                raise translate_duckdb_error(
                    e, ran=sql, source=stmt.source, offset=stmt.offset
                ) from e
            raise

    def refresh(self) -> None:
        """Re-read the store now (new runs, replayed values)."""
        self._cache.invalidate()
        self._cache.current(force=True)

    def _check_open(self) -> None:
        if self.closed:
            raise SqlError("the engine is closed")


def _check_replay(value: str) -> str:
    value = value.lower()
    if value not in REPLAY_VALUES:
        raise PlanError(f"replay must be one of {', '.join(REPLAY_VALUES)}, not {value!r}")
    return value
