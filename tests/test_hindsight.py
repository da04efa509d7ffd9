"""Hindsight end to end: today's code has new log statements; SQL over old runs replays them."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from florsql.engine.session import Engine
from florsql.replay import LocalExecutor, PlanExecutor
from florsql.store.replays import replays_dir
from tests.helpers import copy_repo, git, make_repo, run_script, write
from tests.replay_scripts import OLD, PATCHED

Oracle = dict[tuple[float, str, int | None, int | None], object]


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    """Full re-runs of the hand-patched old version: what every replayed value must equal."""
    repo = make_repo(tmp_path_factory.mktemp("oracle") / "o", {"train.py": PATCHED})
    for lr in ("0.1", "0.3"):
        run_script(repo, "train.py", "--lr", lr)
    with Engine(repo) as eng:
        rows = eng.execute(
            "SELECT lr, epoch, step, grad_norm, wnorm, lr_now, final_w FROM logs"
        ).table.to_pylist()
    out: Oracle = {}
    for r in rows:
        for name in ("grad_norm", "wnorm", "lr_now", "final_w"):
            if r[name] is not None:
                out[(r["lr"], name, r["epoch"], r["step"])] = r[name]
    return out


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """Two recorded runs of OLD; then the user edits train.py (no new run)."""
    repo = make_repo(tmp_path / "h", {"train.py": OLD})
    for lr in ("0.1", "0.3"):
        run_script(repo, "train.py", "--lr", lr, FLORSQL_CHECKPOINT_PERIOD="2")
    write(repo / "train.py", PATCHED)
    return repo


def _engine(repo: Path, mode: str = "auto") -> Engine:
    return Engine(repo, replay=mode, executor=PlanExecutor(LocalExecutor(2)))


def _tasks(repo: Path) -> int:
    return len(list(replays_dir(repo).glob("*/*/done.json")))


def test_filtered_epoch_level_query_replays_only_what_it_needs(
    history: Path, oracle: Oracle
) -> None:
    status = git(history, "status", "--porcelain")
    with _engine(history) as eng:
        sql = "SELECT lr, epoch, wnorm FROM logs WHERE lr >= 0.2 AND epoch >= 3 ORDER BY epoch"
        rows = eng.execute(sql).table.to_pylist()
        assert [(r["lr"], r["epoch"]) for r in rows] == [(0.3, 3), (0.3, 4), (0.3, 5)]
        for r in rows:
            assert r["wnorm"] == oracle[(0.3, "wnorm", r["epoch"], None)]
        n = _tasks(history)
        assert n >= 1
        # A second identical query replays nothing.
        again = eng.execute(sql).table.to_pylist()
        assert again == rows and _tasks(history) == n
        # Pushdown is real: nothing was computed for runs or epochs the WHERE excluded.
        eng.execute("SET replay = 'off'")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            every = eng.execute("SELECT lr, epoch, wnorm FROM logs").table.to_pylist()
        have = {(r["lr"], r["epoch"]) for r in every if r["wnorm"] is not None}
        assert have == {(0.3, 3), (0.3, 4), (0.3, 5)}
    assert git(history, "status", "--porcelain") == status


def test_step_level_and_top_level_statements(history: Path, oracle: Oracle) -> None:
    with _engine(history) as eng:
        rows = eng.execute(
            "SELECT lr, epoch, step, grad_norm FROM logs WHERE epoch = 4 ORDER BY lr, step"
        ).table.to_pylist()
        assert len(rows) == 2 * 6
        for r in rows:
            assert r["grad_norm"] == oracle[(r["lr"], "grad_norm", 4, r["step"])]
        finals = eng.execute("SELECT lr, final_w FROM logs ORDER BY lr").table.to_pylist()
        assert [(r["lr"], r["final_w"]) for r in finals] == [
            (lr, oracle[(lr, "final_w", None, None)]) for lr in (0.1, 0.3)
        ]


def test_replay_off_warns_and_leaves_nulls(history: Path) -> None:
    with _engine(history, "off") as eng, pytest.warns(Warning, match="replay is off"):
        rows = eng.execute("SELECT epoch, wnorm FROM logs").table.to_pylist()
    # The planner gives no row where no value exists yet (row grain follows logged values).
    assert all(r["wnorm"] is None for r in rows)
    assert _tasks(history) == 0


HELPER_RELATIONS = (
    "__flor_ctx",
    "__flor_cover",
    "__flor_chains",
    "__flor_times",
    "__flor_open",
    "__flor_names",
)


def _helpers(eng: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every helper relation's rows, sorted (the engine's own, as its queries read them)."""
    eng.catalog()  # current
    con = eng._cache.box.admin
    return {
        name: sorted(con.execute(f"SELECT * FROM flor.main.{name}").fetchall(), key=repr)
        for name in HELPER_RELATIONS
    }


def _rebuilt(repo: Path, where: Path) -> dict[str, list[tuple[object, ...]]]:
    """The helper relations a fresh engine builds in full, on a copy of ``repo`` whose index is
    rebuilt from the store's files."""
    copy = copy_repo(repo, where)
    for name in ("index.duckdb", "index.duckdb.wal"):
        (copy / ".florsql" / name).unlink(missing_ok=True)
    with Engine(copy, replay="off") as fresh:
        return _helpers(fresh)


@pytest.mark.slow
def test_helper_relations_after_replays_equal_a_full_rebuild(history: Path, tmp_path: Path) -> None:
    """After a replay only replayed values are new, and the engine rebuilds only the relations
    that read them; what it then holds equals a full rebuild. A new recorded run after that
    rebuilds everything (also compared)."""
    with _engine(history) as eng:
        before = _helpers(eng)
        eng.execute("SELECT lr, epoch, wnorm FROM logs WHERE epoch >= 3")
        eng.execute("SELECT lr, epoch, step, grad_norm FROM logs WHERE epoch = 1")
        after = _helpers(eng)
    assert after["__flor_cover"] != before["__flor_cover"]  # the replays are in
    assert _rebuilt(history, tmp_path / "a") == after
    with _engine(history) as eng:
        _helpers(eng)
        run_script(history, "train.py", "--lr", "0.2", FLORSQL_CHECKPOINT_PERIOD="2")
        eng.execute("SELECT lr, epoch, wnorm FROM logs WHERE epoch = 0")  # replays the new run
        grown = _helpers(eng)
    assert grown["__flor_ctx"] != after["__flor_ctx"]  # the new run's contexts
    assert _rebuilt(history, tmp_path / "b") == grown
