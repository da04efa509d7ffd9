"""After a replay, the materialized pivot is updated in place (the contexts that gained values
re-pivoted, the columns of new names added) instead of rebuilt; what it holds must be what a
full pivot of the same records holds, and what queries answer must be what a fresh engine
(which pivots everything) answers.

Real recorded runs and real replays, in steps a user takes: a partial hindsight query, a wider
one, a new name, a name whose new values include None (it gains a presence column: the pivot
must be rebuilt, as it must when today's statement changes), then the statement edited.
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
from pathlib import Path

import pytest

from florsql.engine.session import Engine
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import make_repo, run_script, write

OLD = """
import florsql as flor

seed = flor.arg("seed", 0)
w = float(seed)
with flor.checkpointing(state=None):
    for epoch in flor.loop("epoch", range(4)):
        for step in flor.loop("step", range(3)):
            w = w * 0.9 + step
            flor.log("loss", w)
"""

NEW = OLD.replace(
    '            flor.log("loss", w)\n',
    '            flor.log("loss", w)\n'
    '            flor.log("twice", w * 2)\n'
    '        flor.log("half", None if epoch % 2 else int(w) // 2)\n'
    "        # odd\n",
)


_copies = itertools.count()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    for seed in ("1", "2"):
        run_script(repo, "train.py", "--seed", seed)
    write(repo / "train.py", NEW)
    return repo


def _full_equals_table(eng: Engine) -> None:
    """The pivot table holds what a full pivot of the same records holds (compared by name)."""
    cache = eng._cache
    con = cache.box.admin
    assert cache.catalog is not None
    from florsql.plan.pivot import wide_select

    con.execute(f"CREATE OR REPLACE TABLE flor.main.__check AS {wide_select(cache.catalog)}")
    cols = [d[0] for d in con.execute("SELECT * FROM flor.main.__check LIMIT 0").description]
    have = [d[0] for d in con.execute("SELECT * FROM flor.main.__flor_wide LIMIT 0").description]
    assert sorted(cols) == sorted(have)
    sel = ", ".join(f'"{c}"' for c in cols)
    for a, b in (("__check", "__flor_wide"), ("__flor_wide", "__check")):
        (n,) = con.execute(  # type: ignore[misc]
            f"SELECT count(*) FROM (SELECT {sel} FROM flor.main.{a} "
            f"EXCEPT ALL SELECT {sel} FROM flor.main.{b})"
        ).fetchone()
        assert n == 0, f"{n} row(s) of {a} are not in {b}"
    con.execute("DROP TABLE flor.main.__check")
    _helpers_equal_a_rebuild(eng)


def _helpers_equal_a_rebuild(eng: Engine) -> None:
    """``__flor_cover`` and ``__flor_names`` (updated with a replay's new values, or kept
    across an edit, :func:`florsql.plan.stats._code_tables_since`) hold what building them from
    every record holds."""
    from florsql.plan.stats import _tables, cover_select, names_select

    con = eng._cache.box.admin
    tables = _tables(con, eng._cache.box.index_db)
    src = f'"{eng._cache.box.index_db}".main.'
    checks = {
        "__flor_cover": cover_select(tables, "flor.main.", src),
        "__flor_names": names_select("flor.main."),
    }
    for table, select in checks.items():
        con.execute(f"CREATE OR REPLACE TABLE flor.main.__check AS {select}")
        for a, b in (("__check", table), (table, "__check")):
            (n,) = con.execute(  # type: ignore[misc]
                f"SELECT count(*) FROM (SELECT * FROM flor.main.{a} "
                f"EXCEPT ALL SELECT * FROM flor.main.{b})"
            ).fetchone()
            assert n == 0, f"{table}: {n} row(s) of {a} are not in {b}"
        con.execute("DROP TABLE flor.main.__check")


def _as_fresh_engine_answers(eng: Engine, repo: Path, sql: str) -> list[dict[str, object]]:
    """What ``eng`` answers equals what an engine answers that builds its index and pivot
    afresh from a copy of the recorded and replayed folders."""
    got = eng.execute(sql).table.to_pylist()
    copy = repo.parent / f"fresh{next(_copies)}"

    def skipped(folder: str, names: list[str]) -> list[str]:
        return [
            n
            for n in names
            if (n.startswith(("index.", "query.", "replay")) and (Path(folder).name == ".florsql"))
            or stat.S_ISSOCK(os.lstat(os.path.join(folder, n)).st_mode)
        ]

    shutil.copytree(repo, copy, symlinks=True, ignore=skipped)
    shutil.copytree(repo / ".florsql" / "replays", copy / ".florsql" / "replays")
    with Engine(copy, replay="off") as fresh:
        assert fresh.execute(sql).table.to_pylist() == got
    return got


def test_a_replay_updates_the_pivot_and_it_equals_a_full_pivot(repo: Path) -> None:
    every = "SELECT * FROM logs ORDER BY seed, epoch, step"
    with Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(1))) as eng:
        eng.execute("SELECT count(*) FROM logs")
        assert eng._cache.wide_how == "full"

        # A partial query: a new name in some contexts; the pivot gains its column.
        rows = eng.execute(
            "SELECT seed, epoch, step, twice FROM logs WHERE epoch >= 2 AND seed = 2"
        ).table.to_pylist()
        assert len(rows) == 6 and all(r["twice"] is not None for r in rows)
        assert eng._cache.wide_how == "delta"
        _full_equals_table(eng)
        _as_fresh_engine_answers(eng, repo, every)

        # The wider query: the column is there; the other contexts gain values.
        rows = eng.execute("SELECT seed, epoch, step, twice FROM logs").table.to_pylist()
        assert len(rows) == 24 and all(r["twice"] is not None for r in rows)
        assert eng._cache.wide_how == "delta"
        _full_equals_table(eng)
        _as_fresh_engine_answers(eng, repo, every)

        # The wider query replayed whole runs: 'half' came with it (new columns, and new
        # rows: the epoch contexts held no record).
        assert eng._cache.wide_how == "delta"
        half = eng.execute("SELECT seed, epoch, half FROM logs ORDER BY seed, epoch").table
        assert half.column("half").to_pylist().count(None) == 4

        # A new statement: the edit changes nothing the pivot holds (no rebuild); its first
        # values are numbers only.
        write(
            repo / "train.py",
            NEW.replace("# odd", 'flor.log("odd", epoch if epoch == 0 else None)'),
        )
        eng.execute("SELECT count(*) FROM logs")
        assert eng._cache.wide_how == "delta"
        rows = eng.execute("SELECT seed, epoch, odd FROM logs WHERE epoch = 0").table.to_pylist()
        assert [r["odd"] for r in rows] == [0, 0]
        assert eng._cache.wide_how == "delta"
        _full_equals_table(eng)
        _as_fresh_engine_answers(eng, repo, every)

        # Then where it logged None: the name gains a presence column, which rows the replay
        # did not touch need too: rebuilt in full.
        rows = eng.execute("SELECT seed, epoch, odd FROM logs").table.to_pylist()
        assert len(rows) == 8
        assert eng._cache.wide_how == "full"
        _full_equals_table(eng)
        _as_fresh_engine_answers(eng, repo, every)

        # Today's statement changes: the replayed values of the old one no longer count
        # (rebuilt in full); the new ones replayed are then added.
        write(repo / "train.py", NEW.replace("w * 2", "w * 3"))
        eng.execute("SELECT count(*) FROM logs")
        assert eng._cache.wide_how == "full"
        rows = eng.execute("SELECT seed, epoch, step, loss, twice FROM logs").table.to_pylist()
        assert all(r["twice"] == pytest.approx(3 * r["loss"]) for r in rows)
        _full_equals_table(eng)
        _as_fresh_engine_answers(eng, repo, every)
