"""The engine: parse -> bind -> plan -> replay -> rewrite -> DuckDB -> Arrow.

One :class:`Engine` owns a repository's index (one per process, DuckDB's rule) and its
settings (``replay``). Threads query it at once through cursors (:meth:`Engine.cursor`): each
cursor is its own DuckDB connection to the same instance, and all of them read the same helper
relations and materialized pivot (tables of the attached in-memory database ``flor``, see
:mod:`florsql.engine.sandbox`).

Concurrency: a read-write lock (:class:`~florsql.engine.rwlock.RWLock`). Queries hold it shared
while they plan and run; rebuilding the helper relations (a refresh that found new data, a
changed script) and a replay (the executor, the refresh after it and the query it served) hold
it exclusively, so a rebuild never races a running query and replays run one at a time. The plan
cache has its own small lock. :meth:`Engine.execute` without a cursor uses the engine's own
connection, one statement at a time (it is what the REPL, CLI and DB-API use).
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from florsql.engine import names as result_names
from florsql.engine.cache import CacheState
from florsql.engine.duck_errors import translate_duckdb_error
from florsql.engine.exact import ExactStream, run_exact, stream_exact, type_name
from florsql.engine.hook import Confirm, ReplayExecutor, default_executor, executor_from
from florsql.engine.read_warnings import (
    UNSTORED_SAID,
    arg_gaps,
    edited_reads,
    mixed_reads,
    stored_mismatches,
    unexecuted_reads,
    unstored_reads,
)
from florsql.engine.replay_decision import (
    Messages,
    replay_if_needed,
    unstored_lines,
    wants_replay,
    warn,
)
from florsql.engine.result import Result
from florsql.engine.rwlock import RWLock
from florsql.engine.sandbox import open_sandbox
from florsql.engine.show import SHOW_RUNS_SQL, show_columns_sql
from florsql.errors import (
    ArgMissingWarning,
    DamagedFileWarning,
    FlorError,
    FlorWarning,
    NondeterminismWarning,
    PlanError,
    QueryInterrupted,
    SqlError,
    StoreError,
)
from florsql.fold import fold
from florsql.grammar import REPLAY_VALUES, Statement, parse
from florsql.plan.catalog import Catalog
from florsql.plan.explain import explain_lines
from florsql.plan.params import bound_key
from florsql.plan.pivot import wide_select
from florsql.plan.planner import PlannedQuery, plan_query
from florsql.plan.replay_plan import ReplayPlan
from florsql.plan.rewrite import public_name
from florsql.plan.tasks import CALIBRATION_BOUNDS, calibration, with_executor
from florsql.store.layout import store_dir
from florsql.store.rows import strings_array

if TYPE_CHECKING:
    import duckdb

__all__ = ["PLAN_CACHE_SIZE", "Engine", "EngineCursor", "RunHook"]

#: Plans kept for repeated statements; a plan is reused only while the catalog it was made
#: with is current (no new run, replay or code change since).
PLAN_CACHE_SIZE = 64

#: Called with the SQL DuckDB is about to run for a query (see :attr:`Engine.on_run`).
RunHook = Callable[[str], None]
#: A statement and the SQL text of the literals its parameters bind to (bound_key).
PlanKey = tuple[str, tuple[str, ...]]


def store_root(repo: Path | str) -> Path:
    """The folder whose store (``.florsql``) a front end opened on ``repo`` reads: ``repo``
    itself when it holds one, else the top of the git work tree around it (so a notebook in
    ``project/notebooks`` reads the project's runs, as ``florsql query`` there does). Nothing is
    created outside a git repository: a folder in none, holding no store, is refused.

    Example:
        >>> store_root("project/notebooks")  # doctest: +SKIP
        PosixPath('/home/me/project')
    """
    path = Path(repo).resolve()
    if not path.is_dir():  # never create a store (and its parents) where none can be
        what = "is not a folder" if path.exists() else "does not exist"
        raise StoreError(f"{repo} {what}: pass the path of your project's git repository")
    if store_dir(path).is_dir():
        return path
    from florsql.versions import find_repo_root

    try:
        return find_repo_root(path)
    except FlorError as e:
        raise StoreError(
            f"{repo} holds no florsql store (.florsql) and is not inside a git repository: "
            "pass the path of your project's git repository (where your runs were recorded)"
        ) from e


class Engine:
    """Answers florsql SQL over one repository's history.

    Args:
        repo: the git repository whose ``.florsql`` store to read.
        replay: ``"off"`` (hindsight cells NULL, with a warning), ``"auto"`` or ``"confirm"``.
        executor: runs replays; by default the one ``florsql.replay`` provides, if any; or
            ``'local'``, ``'ray'``, ``'ray://HOST:PORT'`` (as ``SET executor``).
        confirm: asked before replaying when ``replay = 'confirm'``.
        use_cache: read ``logs`` from the materialized pivot (else pivot per query).
        wait: seconds to wait for another process holding the index.
        duckdb_settings: DuckDB settings for the instance (``memory_limit``, ``threads``),
            applied before the configuration is locked.

    Attributes:
        on_run: an observability hook, None by default: called on the querying thread with the
            SQL DuckDB is about to run, after planning (and after any replay), while the query
            holds its lock (shared, or exclusive after a replay). For tracing and timing; it
            must not call back into the engine. An exception it raises fails the query.
        active: queries running now; ``peak_active``: the most that ever ran at once.

    Example:
        >>> with Engine("path/to/repo") as eng:  # doctest: +SKIP
        ...     eng.execute("SELECT run_id, avg(loss) FROM logs GROUP BY ALL").table
        >>> with eng.cursor() as cur:  # one per thread  # doctest: +SKIP
        ...     cur.execute("SELECT count(*) FROM logs").table
    """

    def __init__(
        self,
        repo: Path | str = ".",
        *,
        replay: str = "off",
        executor: ReplayExecutor | str | None = None,
        confirm: Confirm | None = None,
        use_cache: bool = True,
        wait: float = 0.0,
        duckdb_settings: dict[str, str] | None = None,
    ) -> None:
        self.repo = store_root(repo)
        self.settings: dict[str, str] = {"replay": _check_replay(replay)}
        if isinstance(executor, str):
            executor = executor_from(executor)
        self.executor = executor if executor is not None else default_executor()
        self.confirm = confirm
        self.warn_stacklevel = 5  # warnings point at the caller of execute()
        self.on_run: RunHook | None = None
        self.active = 0
        self.peak_active = 0
        self._box = open_sandbox(self.repo, wait=wait, settings=duckdb_settings)
        self._cache = CacheState(self._box, self.repo, use_cache=use_cache)
        self._plans: OrderedDict[PlanKey, tuple[Catalog, Statement, PlannedQuery]]
        self._plans = OrderedDict()
        self._rw = RWLock()
        self._plans_lock = threading.Lock()
        #: the log names with values from replays that disagreed, per catalog (stored_mismatches)
        self._mismatch_memo: dict[int, tuple[Catalog, dict[str, tuple[int, str]]]] = {}
        self._unstored_memo: dict[int, tuple[Catalog, dict[str, tuple[int, int]]]] = {}
        self._mixed_memo: dict[int, tuple[Catalog, dict[str, tuple[int, int, str, int, bool]]]] = {}
        self._unexecuted_memo: dict[int, tuple[Catalog, dict[str, tuple[int, str, str]]]] = {}
        self._edited_memo: dict[str, tuple[Catalog, list[str]]] = {}
        self._own = threading.Lock()  # the engine's own connection: one statement at a time
        self._count = threading.Lock()
        self.closed = False
        self._prewarmed = False

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the index; waits for the queries running now (new ones fail)."""
        if not self.closed:
            self.closed = True
            with self._rw.write():
                self._box.close()
            stop = getattr(self.executor, "close", None)
            if callable(stop):
                stop()  # the replay executor's warm worker, if any

    def set_executor(self, value: str) -> None:
        """Replay on ``'local'`` processes, ``'ray'`` or ``'ray://HOST:PORT'`` from now on, for
        every cursor of this engine (``SET executor``); the previous executor is closed.

        Raises:
            florsql.errors.PlanError: an unknown value; ReplayError: Ray missing or unreachable.
        """
        new = executor_from(value)
        old, self.executor = self.executor, new
        self._prewarmed = False  # the next query that may replay warms the new one up
        stop = getattr(old, "close", None)
        if callable(stop) and old is not new:
            stop()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def interrupt(self) -> None:
        """Cancel the queries running now, on every cursor (from another thread, e.g. on
        Ctrl-C). :meth:`EngineCursor.interrupt` cancels one cursor's only."""
        self._box.interrupt_all()

    def cursor(self, *, replay: str | None = None, warn: bool = True) -> EngineCursor:
        """A cursor for one thread: its own DuckDB connection, its own ``replay`` setting
        (the engine's unless given); cursors of one engine run queries at the same time.
        With ``warn=False`` its results carry their warnings but none is raised (servers log
        them; :func:`warnings.catch_warnings` is not safe across threads)."""
        self._check_open()
        settings = dict(self.settings)
        if replay is not None:
            settings["replay"] = _check_replay(replay, (*REPLAY_VALUES, "error"))
        return EngineCursor(self, self._box.cursor(), settings, warn=warn)

    @property
    def progress(self) -> Callable[[Any], None] | None:
        """The replay executor's progress callback (None without an executor that reports
        progress); setting it sets the executor's, e.g. ``florsql.replay.PlanExecutor``'s."""
        return getattr(self.executor, "progress", None)

    @progress.setter
    def progress(self, hook: Callable[[Any], None] | None) -> None:
        if self.executor is not None and hasattr(self.executor, "progress"):
            self.executor.progress = hook

    # -- statements ----------------------------------------------------------------------------
    def catalog(self, *, refresh: bool = False) -> Catalog:
        """The catalog for the index as it is now (refreshing what changed on disk)."""
        self._check_open()
        with self._reading(force=refresh) as catalog:
            self._prewarm(catalog, self.settings["replay"])
            return catalog

    def _prewarm(self, catalog: Catalog, mode: str) -> None:
        """Start replay workers early (while the user types, or while a query is planned and
        its statements propagated) once some hindsight column exists: a session that never
        can replay never starts them."""
        if self._prewarmed or mode in ("off", "error") or not catalog.hindsight_names():
            return
        self._prewarmed = True
        prewarm = getattr(self.executor, "prewarm", None)
        if callable(prewarm):
            prewarm(self.repo)

    def execute(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        cursor: EngineCursor | None = None,
        stream: bool = False,
    ) -> Result:
        """Run one florsql statement and return its :class:`Result`.

        Without ``cursor``, on the engine's own connection (one statement at a time, with the
        engine's settings); with one, on that cursor's connection and settings.

        ``stream`` (with a ``cursor`` only): a query's rows are not computed here but as the
        caller reads :attr:`Result.stream` (its ``table`` is empty, with the schema); planning,
        replay and warnings happen here as without it. The cursor runs nothing else until the
        stream is closed (:meth:`florsql.engine.exact.ExactStream.close`). Other statements
        (SHOW, EXPLAIN, SET) answer as without it.

        Raises:
            florsql.errors.ParseError: not valid florsql SQL, or not a read.
            florsql.errors.PlanError: an unknown column or relation, wrong parameters.
            florsql.errors.SqlError: DuckDB failed running it.
        """
        self._check_open()
        if cursor is not None:
            quiet = not cursor.warn
            with _unforeseen(sql):
                result = self._execute(
                    sql, params, cursor.con, cursor.settings, quiet=quiet, stream=stream
                )
            return self._with_damage(result, quiet=quiet)
        with self._own, _unforeseen(sql):
            result = self._execute(sql, params, self._box.con, self.settings)
        return self._with_damage(result, quiet=False)

    def _with_damage(self, result: Result, *, quiet: bool) -> Result:
        """Add a warning per damaged store file the refreshes met since the last statement
        (each file once per index): the answer came from the rest."""
        damage = self._cache.take_damage()
        if not damage:
            return result
        records: list[tuple[type[Warning], str]] = []
        for text, path, skipped in damage:
            records.append((DamagedFileWarning, text))
            if not quiet:
                warning = DamagedFileWarning(text, path, skipped)
                warnings.warn(warning, stacklevel=self.warn_stacklevel - 2)
        return dataclasses.replace(
            result,
            warnings=(*(t for _, t in records), *result.warnings),
            warning_records=(*records, *result.warning_records),
        )

    def _execute(
        self,
        sql: str,
        params: Sequence[Any],
        con: duckdb.DuckDBPyConnection,
        settings: dict[str, str],
        *,
        quiet: bool = False,
        stream: bool = False,
    ) -> Result:
        bound = bound_key(params)  # what the values bind to, not their repr (a memoryview's is
        key = None if bound is None else (sql, bound)  # its address, reused by the next one)
        with self._reading() as catalog, self._counted():
            with self._plans_lock:
                hit = None if key is None else self._plans.get(key)
                if key is not None and hit is not None and hit[0] is catalog:
                    self._plans.move_to_end(key)
            if hit is not None and hit[0] is catalog:
                stmt, planned = hit[1], hit[2]
            else:
                stmt = parse(sql)
                if stmt.kind == "set" and stmt.setting == "executor":
                    self.set_executor(stmt.value or "")
                    return Result.empty("set")
                if stmt.kind == "set":
                    settings["replay"] = _check_replay(stmt.value or "")
                    return Result.empty("set")
                if stmt.kind == "show_runs":  # run as a query: its types are DuckDB's
                    table, types = self._run(con, SHOW_RUNS_SQL, stmt)
                    return Result("show_runs", table, types=types)
                if stmt.kind == "show_columns":
                    sql = show_columns_sql(catalog, stmt.table or "", stmt.source)
                    table, types = self._run(con, sql, stmt)
                    return Result("show_columns", table, types=types)
                if stmt.kind == "select" and _may_need(stmt, catalog):
                    self._prewarm(catalog, settings["replay"])  # overlaps the planning
                planned = self._plan(stmt, catalog, params, con)
                if key is not None:
                    self._remember(key, catalog, stmt, planned)
            if stmt.kind == "explain":
                replay = self._costed(planned.replay, con)
                # what the query would warn of its recorded values too (sweep Z F6: "nothing to
                # replay (every value the query reads exists)" over NULL gaps of runs that
                # recorded a name with another statement)
                edited = (
                    edited_reads(con, catalog, stmt.query, self.repo, self._edited_memo)
                    if stmt.query is not None
                    else []
                )
                lines = explain_lines(replay, planned.sql, wide_select(catalog), edited)
                plan = pa.table({"plan": strings_array(lines)})  # not pa.array: no pandas import
                return Result("explain", plan, planned.sql, replay)
            mode = settings["replay"]
            if not wants_replay(self, planned, mode):
                planned, messages = replay_if_needed(
                    self,
                    planned,
                    mode=mode,
                    replan=lambda: planned,
                    quiet=quiet,
                    known=lambda names: _valued(con, names),
                )
                return self._answer(con, stmt, planned, messages, stream=stream)
        # A replay: alone (no query runs while the executor writes and the index refreshes).
        with self._rw.write(), self._counted():

            def replan() -> PlannedQuery:
                self._refresh()
                return self._plan(stmt, self._cache.current(), params, con)

            current = self._cache.current()
            if current is not catalog:  # the store changed since: plan against what is there
                planned = self._plan(stmt, current, params, con)
            planned, messages = replay_if_needed(
                self,
                planned,
                mode=mode,
                replan=replan,
                quiet=quiet,
                known=lambda names: _valued(con, names),
                unstored=lambda plans: unstored_lines(con, self._cache.current(), plans),
            )
            return self._answer(con, stmt, planned, messages, stream=stream)

    def _answer(
        self,
        con: duckdb.DuckDBPyConnection,
        stmt: Statement,
        planned: PlannedQuery,
        messages: Messages,
        *,
        stream: bool = False,
    ) -> Result:
        if self.on_run is not None:
            self.on_run(planned.sql)
        catalog = self._cache.catalog
        if catalog is not None and stmt.query is not None:
            for text in arg_gaps(con, catalog, stmt.query, self.repo, stmt.source):
                warn(self, messages, text, ArgMissingWarning)
            if not any(c is NondeterminismWarning for c, _ in messages):  # said it just now
                for text in stored_mismatches(con, catalog, stmt.query, self._mismatch_memo):
                    warn(self, messages, text, NondeterminismWarning)
            for text in edited_reads(con, catalog, stmt.query, self.repo, self._edited_memo):
                warn(self, messages, text, FlorWarning)
            if not any(UNSTORED_SAID in m for _, m in messages):  # (said it just now)
                for text in unstored_reads(con, catalog, stmt.query, self._unstored_memo):
                    warn(self, messages, text, FlorWarning)
            for text in mixed_reads(con, catalog, stmt.query, self._mixed_memo):
                warn(self, messages, text, FlorWarning)
            for text in unexecuted_reads(con, catalog, stmt.query, self._unexecuted_memo):
                warn(self, messages, text, FlorWarning)
        rows = None
        if stream:
            rows, types = self._stream(con, planned.sql, stmt)
            table = rows.empty
        else:
            table, types = self._run(con, planned.sql, stmt)
        return Result(
            kind="select",
            table=table,
            sql=planned.sql,
            plan=planned.replay,
            warnings=tuple(text for _, text in messages),
            types=types,
            warning_records=tuple(messages),
            stream=rows,
        )

    def _remember(
        self, key: PlanKey, catalog: Catalog, stmt: Statement, planned: PlannedQuery
    ) -> None:
        """Keep the plan of a repeated statement while the catalog (and so the data) holds."""
        with self._plans_lock:
            self._plans[key] = (catalog, stmt, planned)
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)

    def describe(self, sql: str, *, cursor: EngineCursor) -> Result:
        """The columns a statement would answer, as an empty table and DuckDB's type names:
        a query is planned (``?`` parameters as NULL) and DuckDB binds it under ``LIMIT 0``,
        so nothing is replayed and no row is computed. Other statements (SHOW, EXPLAIN) run,
        as they are cheap."""
        self._check_open()
        stmt = parse(sql)
        if stmt.kind != "select" or stmt.query is None:
            return self.execute(sql, cursor=cursor)
        nulls = [None] * sum(1 for p in stmt.query.find_all(exp.Placeholder) if p.this is None)
        with self._reading() as catalog, self._counted():
            planned = self._plan(stmt, catalog, nulls, cursor.con)
            table, types = self._run(
                cursor.con, f"SELECT * FROM ({planned.sql}) AS __flor_describe LIMIT 0", stmt
            )
        return Result("select", table, planned.sql, planned.replay, types=types)

    def plan(self, sql: str, params: Sequence[Any] = ()) -> PlannedQuery:
        """Plan a query (or the query of an EXPLAIN) without running anything."""
        self._check_open()
        stmt = parse(sql)
        if stmt.query is None:
            raise PlanError(f"{stmt.kind} has no query to plan", sql=sql)
        with self._own, self._reading() as catalog:
            planned = self._plan(stmt, catalog, params, self._box.con)
            replay = self._costed(planned.replay, self._box.con)
        return dataclasses.replace(planned, replay=replay)

    def _costed(self, plan: ReplayPlan, con: duckdb.DuckDBPyConnection) -> ReplayPlan:
        """``plan`` with its wall time for this engine's executor, as it is now: whether its
        warm worker already runs, and how many workers it allows (executors that say); its
        tasks' estimates calibrated by how long this repository's recent tasks took against
        theirs (:func:`florsql.plan.tasks.calibration`)."""
        describe = getattr(self.executor, "capacity", None)
        if plan.empty or not callable(describe):
            return plan
        note = getattr(self.executor, "note_repository", None)
        if callable(note):
            note(self.repo)
        cap = describe()
        if not isinstance(cap, dict):
            return plan
        from florsql.replay import timings

        scale = calibration(con)
        machine = False
        if not scale[1]:  # too few tasks here: this machine's recent replays say
            recent = timings.recent("task_factor")
            if recent is not None:
                low, high = CALIBRATION_BOUNDS
                scale, machine = (round(min(high, max(low, recent)), 3), 0), True
        start = cap.get("start_s")
        return with_executor(
            plan,
            warm=cap.get("warm"),
            workers=cap.get("workers"),
            forks=bool(cap.get("forks", True)),
            scale=scale,
            start=float(start) if isinstance(start, (int, float)) else None,
            machine_scale=machine,
        )

    def _plan(
        self,
        stmt: Statement,
        catalog: Catalog,
        params: Sequence[Any],
        con: duckdb.DuckDBPyConnection,
    ) -> PlannedQuery:
        assert stmt.query is not None
        try:
            return plan_query(
                stmt.query,
                catalog=catalog,
                con=con,
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

    def _run(
        self, con: duckdb.DuckDBPyConnection, sql: str, stmt: Statement
    ) -> tuple[pa.Table, tuple[str, ...]]:
        pressed: list[bool] = []
        try:
            with _ctrl_c_interrupts(con, pressed):
                table, types = run_exact(con, sql)
        except Exception as e:
            if pressed:
                raise KeyboardInterrupt from None
            failure = _failure(e, sql, stmt)
            if failure is not None:
                raise failure from e
            raise
        if pressed:  # Ctrl-C came as the query ended
            raise KeyboardInterrupt
        names = [public_name(n) for n in table.column_names]
        if stmt.source:  # unaliased expressions named as DuckDB names the query as written
            names = result_names.apply(names, result_names.written_names(con, stmt.source))
        if names != table.column_names:
            table = table.rename_columns(names)
        return table, tuple(type_name(t) for t in types)

    def _stream(
        self, con: duckdb.DuckDBPyConnection, sql: str, stmt: Statement
    ) -> tuple[ExactStream, tuple[str, ...]]:
        """:meth:`_run` as a stream (:func:`florsql.engine.exact.stream_exact`): the same
        names, types and errors, the rows computed as they are read."""

        def translate(e: Exception) -> Exception:
            if _interrupted(e):
                return QueryInterrupted(
                    "the query was interrupted while its rows were read; run it again",
                    sql=stmt.source,
                )
            return translate_duckdb_error(e, ran=sql, source=stmt.source, offset=stmt.offset)

        def rename(columns: list[str]) -> list[str]:
            names = [public_name(n) for n in columns]
            if stmt.source:
                names = result_names.apply(names, result_names.written_names(con, stmt.source))
            return names

        try:
            rows, types = stream_exact(con, sql, rename=rename, translate=translate)
        except Exception as e:
            failure = _failure(e, sql, stmt)
            if failure is not None:
                raise failure from e
            raise
        return rows, tuple(type_name(t) for t in types)

    def refresh(self) -> None:
        """Re-read the store now (new runs, replayed values); waits for running queries."""
        self._check_open()
        with self._rw.write():
            self._refresh()

    def _refresh(self) -> None:
        self._cache.invalidate()
        self._cache.current(force=True)

    @contextmanager
    def _reading(self, *, force: bool = False) -> Iterator[Catalog]:
        """Hold the lock shared, with the catalog the helper relations were built for;
        rebuilding first (exclusively) when the store changed."""
        while True:
            if force or self._cache.stale():
                with self._rw.write():
                    self._check_open()
                    self._cache.current(force=force)
                force = False
            with self._rw.read():
                self._check_open()
                catalog = self._cache.catalog
                if catalog is not None and (self._cache.wide_built or not self._cache.use_cache):
                    yield catalog
                    return

    @contextmanager
    def _counted(self) -> Iterator[None]:
        with self._count:
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
        try:
            yield
        finally:
            with self._count:
                self.active -= 1

    def _check_open(self) -> None:
        if self.closed:
            raise SqlError("the engine is closed")


def _valued(con: duckdb.DuckDBPyConnection, names: list[str]) -> set[str]:
    """Of ``names``, those (in lower case) with a recorded or counted replayed value."""
    rows = con.execute(
        "SELECT DISTINCT name FROM __flor_cover WHERE list_contains(?, name)",
        [[fold(n) for n in names]],
    ).fetchall()
    return {r[0] for r in rows}


class EngineCursor:
    """One thread's connection to an :class:`Engine` (from :meth:`Engine.cursor`).

    Not shared between threads; any number of cursors of one engine run queries at once.
    ``SET replay = ...`` through a cursor changes that cursor's setting only.
    """

    def __init__(
        self,
        engine: Engine,
        con: duckdb.DuckDBPyConnection,
        settings: dict[str, str],
        *,
        warn: bool = True,
    ) -> None:
        self.engine = engine
        self.con = con
        self.settings = settings
        self.warn = warn
        self.closed = False

    def execute(self, sql: str, params: Sequence[Any] = (), *, stream: bool = False) -> Result:
        """Run one statement on this cursor (see :meth:`Engine.execute`)."""
        if self.closed:
            raise SqlError("the cursor is closed")
        return self.engine.execute(sql, params, cursor=self, stream=stream)

    def describe(self, sql: str) -> Result:
        """The columns ``sql`` would answer, planned and not run (see :meth:`Engine.describe`)."""
        if self.closed:
            raise SqlError("the cursor is closed")
        return self.engine.describe(sql, cursor=self)

    def interrupt(self) -> None:
        """Cancel this cursor's running query (from another thread)."""
        if not self.closed:
            self.con.interrupt()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.engine.closed:
                self.engine._box.release(self.con)

    def __enter__(self) -> EngineCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _unforeseen(sql: str) -> Iterator[None]:
    """An error florsql did not foresee still reaches users as a florsql error (its cause kept;
    the DB-API raises it as ``InternalError``), never as a bare traceback of an internal part."""
    try:
        yield
    except (FlorError, Warning):
        raise
    except Exception as e:
        message = (
            f"florsql failed on this query ({type(e).__name__}: {e}); this is a florsql bug: "
            "please report it with the query"
        )
        raise SqlError(message, sql=sql) from e


def _may_need(stmt: Statement, catalog: Catalog) -> bool:
    """Whether a statement names a hindsight column (or reads every column with ``*``)."""
    hindsight = {fold(n) for n in catalog.hindsight_names()}
    if not hindsight or stmt.query is None:
        return False
    for node in stmt.query.find_all(exp.Column, exp.Star):
        if isinstance(node, exp.Star) or fold(node.name) in hindsight:
            return True
    return False


def _check_replay(value: str, allowed: tuple[str, ...] = REPLAY_VALUES) -> str:
    """``value`` as a replay mode. ``error`` (answer no query whose hindsight values are
    missing) is a server's choice, not one a client can ``SET``."""
    if not isinstance(value, str):  # ``replay=None``: an AttributeError before session 44
        raise PlanError(
            f"replay must be one of {', '.join(REPLAY_VALUES)} (a string), not {value!r}"
        )
    value = value.lower()
    if value not in allowed:
        raise PlanError(f"replay must be one of {', '.join(REPLAY_VALUES)}, not {value!r}")
    return value


def _failure(error: Exception, sql: str, stmt: Statement) -> Exception | None:
    """The florsql error to raise for ``error``, raised running ``sql`` for ``stmt`` (None:
    not DuckDB's; raise it as it is)."""
    if _interrupted(error):
        return QueryInterrupted(
            "the query was interrupted (Engine.interrupt(), a cursor's interrupt() or a "
            "cancelled call); run it again to answer it",
            sql=stmt.source,
        )
    if type(error).__module__.startswith(("duckdb", "_duckdb")):
        return translate_duckdb_error(error, ran=sql, source=stmt.source, offset=stmt.offset)
    return None


def _interrupted(error: Exception) -> bool:
    """DuckDB's answer to an interrupt: ``InterruptException``, or (DuckDB 2.0 fetching Arrow) a
    plain ``RuntimeError('Query interrupted')``."""
    import duckdb

    if isinstance(error, duckdb.InterruptException):
        return True
    return type(error) is RuntimeError and str(error).startswith("Query interrupted")


@contextmanager
def _ctrl_c_interrupts(con: duckdb.DuckDBPyConnection, pressed: list[bool]) -> Iterator[None]:
    """While DuckDB runs a query of the main thread, Ctrl-C (SIGINT) interrupts it at once and
    notes it in ``pressed`` (the caller raises ``KeyboardInterrupt``). DuckDB's own check waits
    for a query over a database file to end: a 20 s query went on for 20 s after Ctrl-C, then
    failed as 'Query interrupted', which the DB-API called a florsql bug. Only where Python's
    default handler is installed: a front end with its own (the shell, the server) keeps it."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def handler(signum: int, frame: object) -> None:
        pressed.append(True)
        con.interrupt()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
