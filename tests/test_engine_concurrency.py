"""Engine cursors from several threads: shared helper relations, real overlap, exclusive rebuilds
and replays, thread-safe plan caching, the read-write lock itself."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from florsql.engine import Engine, EngineCursor, ReplayOutcome
from florsql.engine.rwlock import RWLock
from florsql.plan.replay_plan import ReplayPlan
from tests.helpers_sql import RunBuilder, fixture_history

WAIT = 30.0  # seconds a barrier or event waits before the test fails instead of hanging
PROBE = "SELECT 'probe' AS tag, run_id, count(loss) AS n FROM logs GROUP BY ALL ORDER BY run_id"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return fixture_history(tmp_path / "repo")


def _threads(n: int, target: Callable[[int], None]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)


def test_cursors_run_queries_at_the_same_time(repo: Path) -> None:
    n = 3
    barrier = threading.Barrier(n, timeout=WAIT)
    with Engine(repo) as eng:
        expected = eng.execute(PROBE).table
        # Each query waits in the hook (after planning, before DuckDB) until all n arrived:
        # run one at a time, the barrier would break instead.

        def meet(sql: str) -> None:
            if "'probe'" in sql:
                barrier.wait()

        eng.on_run = meet
        tables: dict[int, object] = {}
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                with eng.cursor() as cur:
                    tables[i] = cur.execute(PROBE).table
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        _join(_threads(n, work))
        assert errors == []
        assert all(t == expected for t in tables.values()) and len(tables) == n
        assert eng.peak_active >= n and eng.active == 0


def test_every_cursor_sees_the_same_helper_relations_and_the_index_file_has_none(
    repo: Path,
) -> None:
    with Engine(repo) as eng, eng.cursor() as a, eng.cursor() as b:
        eng.catalog()
        counts = [
            c.con.execute("SELECT count(*) FROM __flor_wide").fetchall()
            + c.con.execute("SELECT count(*) FROM all_log_records").fetchall()
            for c in (a, b)
        ]
        assert counts[0] == counts[1] and counts[0][0][0] > 0
        where = a.con.execute(
            "SELECT DISTINCT database_name FROM duckdb_tables() WHERE table_name LIKE '__flor%'"
        ).fetchall()
        assert where == [("flor",)]
        temp = a.con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchall()
        assert temp == [(0,)]


def test_a_cursor_keeps_the_lockdown(repo: Path) -> None:
    with Engine(repo) as eng, eng.cursor() as cur:
        for sql in (
            "SELECT * FROM read_csv('/etc/passwd')",
            "ATTACH '/tmp/florsql-other.duckdb' AS o",
            "SET enable_external_access = true",
            "SET python_enable_replacements = true",
        ):
            with pytest.raises(Exception, match=r"disabled|locked|Permission|configuration"):
                cur.con.execute(sql)
        secret = [1, 2, 3]  # noqa: F841 - a Python variable a replacement scan would find
        with pytest.raises(Exception, match="secret"):
            cur.con.sql("SELECT * FROM secret").fetchall()


def test_a_refresh_waits_for_running_queries(repo: Path) -> None:
    started, release = threading.Event(), threading.Event()
    sql = "SELECT 'held' AS tag, count(*) AS n FROM runs"
    with Engine(repo) as eng:
        before = eng.execute(sql).table.column("n").to_pylist()

        def hold(run_sql: str) -> None:
            if "'held'" in run_sql:
                started.set()
                assert release.wait(WAIT)

        eng.on_run = hold
        out: dict[str, object] = {}
        reader = threading.Thread(
            target=lambda: out.setdefault("n", eng.cursor().execute(sql).table), daemon=True
        )
        reader.start()
        assert started.wait(WAIT)
        b = RunBuilder("r9", {"lr": 0.9, "opt": "sgd"})
        with b.loop("epoch", 0):
            b.log("acc", 0.99)
        b.write(repo)
        refresher = threading.Thread(target=eng.refresh, daemon=True)
        refresher.start()
        refresher.join(0.5)
        assert refresher.is_alive()  # the rebuild waits for the reader holding the lock
        eng.on_run = None
        release.set()
        _join([reader, refresher])
        assert out["n"].column("n").to_pylist() == before  # type: ignore[attr-defined]
        after = eng.execute(sql).table.column("n").to_pylist()
        assert after == [before[0] + 1]


def test_queries_and_refreshes_interleave_without_errors(repo: Path) -> None:
    sql = "SELECT run_id, count(acc) AS n FROM logs GROUP BY ALL ORDER BY ALL"
    errors: list[BaseException] = []
    seen: list[int] = []
    with Engine(repo) as eng:
        first = eng.execute(sql).table.num_rows

        def work(i: int) -> None:
            try:
                with eng.cursor() as cur:
                    for _ in range(8):
                        seen.append(cur.execute(sql).table.num_rows)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = _threads(3, work)
        for k in range(3):
            b = RunBuilder(f"n{k}", {"lr": 0.5 + k, "opt": "sgd"})
            with b.loop("epoch", 0):
                b.log("acc", 0.5)
            b.write(repo)
            eng.refresh()
        _join(threads)
        assert errors == []
        assert len(seen) == 24 and first <= min(seen) and max(seen) <= first + 3
        assert eng.execute(sql).table.num_rows == first + 3


class BlockingExecutor:
    """Records the plans it is given and how many queries ran beside it."""

    def __init__(self, engine_ref: list[Engine]) -> None:
        self.plans: list[ReplayPlan] = []
        self.beside: list[int] = []
        self.engine_ref = engine_ref

    def run(self, plan: ReplayPlan, *, repo: Path) -> ReplayOutcome:
        self.plans.append(plan)
        self.beside.append(self.engine_ref[0].active)
        return ReplayOutcome(tasks=plan.cost.tasks)


def test_a_replay_runs_alone(repo: Path) -> None:
    ref: list[Engine] = []
    executor = BlockingExecutor(ref)
    started, release = threading.Event(), threading.Event()
    with Engine(repo, executor=executor) as eng:
        ref.append(eng)

        def hold(sql: str) -> None:
            if "'held'" in sql:
                started.set()
                assert release.wait(WAIT)

        eng.on_run = hold
        reader = threading.Thread(
            target=lambda: eng.cursor().execute("SELECT 'held' AS tag, count(*) FROM runs"),
            daemon=True,
        )
        reader.start()
        assert started.wait(WAIT)

        def replay() -> None:
            with pytest.warns(Warning):
                eng.cursor(replay="auto").execute("SELECT grad FROM logs WHERE lr = 0.2")

        replayer = threading.Thread(target=replay, daemon=True)
        replayer.start()
        replayer.join(0.5)
        assert replayer.is_alive() and executor.plans == []  # waits for the reader
        release.set()
        _join([reader, replayer])
        assert len(executor.plans) == 1 and executor.beside == [1]  # only its own query


def test_settings_belong_to_the_cursor(repo: Path) -> None:
    with Engine(repo) as eng:
        cur = eng.cursor()
        assert isinstance(cur, EngineCursor) and cur.settings["replay"] == "off"
        cur.execute("SET replay = 'auto'")
        assert cur.settings["replay"] == "auto" and eng.settings["replay"] == "off"
        assert eng.cursor(replay="confirm").settings["replay"] == "confirm"
        cur.close()
        with pytest.raises(Exception, match="closed"):
            cur.execute("SELECT 1")


def test_warn_false_collects_warnings_without_raising(repo: Path) -> None:
    import warnings

    with Engine(repo) as eng, eng.cursor(warn=False) as cur, warnings.catch_warnings():
        warnings.simplefilter("error")
        result = cur.execute("SELECT epoch, val FROM logs WHERE lr = 0.1")
        assert result.warnings and result.warnings[0].startswith("replay is off")


def test_the_plan_cache_is_shared_and_safe(repo: Path) -> None:
    sql = "SELECT run_id, avg(loss) AS l FROM logs WHERE lr > ? GROUP BY ALL ORDER BY ALL"
    with Engine(repo) as eng:
        want = {p: eng.execute(sql, [p]).table for p in (0.0, 0.15, 0.25)}
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                with eng.cursor() as cur:
                    for k in range(10):
                        p = (0.0, 0.15, 0.25)[(i + k) % 3]
                        assert cur.execute(sql, [p]).table == want[p]
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        _join(_threads(4, work))
        assert errors == []


def test_progress_is_the_executors(repo: Path) -> None:
    class WithProgress:
        progress = None

        def run(self, plan: ReplayPlan, *, repo: Path) -> ReplayOutcome:
            return ReplayOutcome()

    executor = WithProgress()
    with Engine(repo, executor=executor) as eng:
        hook = print
        eng.progress = hook
        assert executor.progress is hook and eng.progress is hook


def test_interrupt_stops_a_cursor_query(repo: Path) -> None:
    slow = "SELECT count(*) FROM range(100000000000) a WHERE a.range % 7 = 3"
    with Engine(repo) as eng, eng.cursor() as cur:
        out: list[BaseException] = []

        def run(i: int) -> None:
            try:
                cur.execute(slow)
            except BaseException as e:
                out.append(e)

        started = threading.Event()
        eng.on_run = lambda sql: started.set()
        (t,) = _threads(1, run)
        assert started.wait(WAIT)
        while t.is_alive():
            eng.interrupt()
            t.join(0.05)
        assert out and "interrupt" in str(out[0]).lower()
        assert eng.active == 0


# -- the lock itself ---------------------------------------------------------------------------


def test_rwlock_readers_share_and_writers_exclude() -> None:
    lock = RWLock()
    inside = threading.Barrier(2, timeout=WAIT)

    def reader(i: int) -> None:
        with lock.read():
            inside.wait()  # both readers inside at once, or the barrier breaks

    _join(_threads(2, reader))
    got: list[str] = []

    def late_reader(i: int) -> None:
        with lock.read():
            got.append("read")

    with lock.write():
        (t,) = _threads(1, late_reader)
        t.join(0.2)
        assert t.is_alive() and got == []  # no reader while the writer holds it
    _join([t])
    assert got == ["read"]


def test_rwlock_writer_goes_before_later_readers_and_reentrance() -> None:
    lock = RWLock()
    order: list[str] = []
    go = threading.Event()

    def writer(i: int) -> None:
        with lock.write():
            order.append("w")
            with lock.read():  # a writer may read
                assert go.wait(WAIT)

    def late_reader(i: int) -> None:
        with lock.read():
            order.append("r")

    with lock.read():
        (w,) = _threads(1, writer)
        while not lock._writers_waiting:
            threading.Event().wait(0.01)
        (r,) = _threads(1, late_reader)
        r.join(0.2)
        assert order == []  # the late reader waits behind the waiting writer
        with lock.read():  # but a thread already reading may read again
            pass
        with pytest.raises(RuntimeError, match="reader cannot take the write lock"), lock.write():
            pass
    go.set()
    _join([w, r])
    assert order == ["w", "r"]
