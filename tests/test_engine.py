"""The engine: real recordings, the replay hook and settings, warnings, the sandbox, refresh."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import florsql
import florsql.errors
from florsql.engine import Engine, ReplayOutcome
from florsql.errors import FlorWarning, ParseError, ReplayOffWarning, StoreError
from florsql.plan.replay_plan import ReplayPlan
from tests.helpers import run_script, write
from tests.helpers_sql import RunBuilder, fixture_history


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return fixture_history(tmp_path / "repo")


class FakeExecutor:
    """Records the plans it is given; computes nothing."""

    def __init__(self) -> None:
        self.plans: list[ReplayPlan] = []

    def run(self, plan: ReplayPlan, *, repo: Path) -> ReplayOutcome:
        self.plans.append(plan)
        return ReplayOutcome(tasks=plan.cost.tasks, failures=("task 1: boom",))


def test_real_recordings_answer_sql(tiny_repo: Path) -> None:
    run_script(tiny_repo, "train.py", "--lr", "0.2", FLORSQL_CHECKPOINT_PERIOD="1")
    run_script(tiny_repo, "train.py", "--epochs", "2")
    with Engine(tiny_repo) as eng:
        rows = eng.execute(
            "SELECT lr, epochs, count(loss) AS n, count(DISTINCT epoch) AS e FROM logs "
            "GROUP BY ALL ORDER BY lr"
        ).table.to_pylist()
        assert rows == [
            {"lr": 0.1, "epochs": 2, "n": 8, "e": 2},
            {"lr": 0.2, "epochs": 3, "n": 12, "e": 3},
        ]
        done = eng.execute("SELECT done, epoch FROM logs WHERE done IS NOT NULL").table
        assert done.to_pylist() == [{"done": "yes", "epoch": None}] * 2
        (n,) = eng.execute("SELECT count(*) FROM checkpoints").table.column(0).to_pylist()
        assert n == 0  # the tiny script registers nothing to checkpoint
    frame = florsql.dataframe("lr", "loss", repo=tiny_repo)
    assert frame.column_names == ["projid", "tstamp", "filename", "epoch", "step", "lr", "loss"]
    assert frame.num_rows == 20 and frame.column("projid").to_pylist()[0] == "proj"


def test_dataframe_of_epoch_names_drops_unused_loops(repo: Path) -> None:
    frame = florsql.dataframe("acc", repo=repo)
    assert frame.column_names == ["projid", "tstamp", "filename", "epoch", "acc"]
    assert frame.num_rows == 12
    args = florsql.dataframe("lr", "opt", repo=repo)
    assert args.column_names == ["projid", "tstamp", "filename", "lr", "opt"]
    assert args.column("lr").to_pylist() == [0.1, 0.2, 0.3, None]


def test_dataframe_of_a_name_given_twice_or_a_fixed_column(repo: Path) -> None:
    """A name given twice (in any case), or one of the columns every frame has (``tstamp``),
    is one column: a KeyError from pyarrow escaped before."""
    frame = florsql.dataframe("acc", "ACC", "tstamp", "acc", repo=repo)
    assert frame.column_names == ["projid", "tstamp", "filename", "epoch", "acc"]
    assert frame == florsql.dataframe("acc", repo=repo)


def test_replay_off_warns_with_what_replay_would_compute(repo: Path) -> None:
    with Engine(repo) as eng, pytest.warns(ReplayOffWarning) as caught:
        result = eng.execute("SELECT epoch, val FROM logs WHERE lr = 0.1")
    text = str(caught[0].message)
    assert text.startswith("replay is off: hindsight values not computed (NULL): val for 1 run(s)")
    assert "4 outer iteration(s)" in text and "SET replay = 'auto'" in text
    assert result.warnings == (text,) and result.table.num_rows == 0


def test_no_warning_when_nothing_is_missing(repo: Path) -> None:
    with Engine(repo) as eng, warnings.catch_warnings():
        warnings.simplefilter("error")
        eng.execute("SELECT epoch, avg(loss) FROM logs GROUP BY ALL")


def test_set_replay_and_the_hook(repo: Path) -> None:
    fake = FakeExecutor()
    with Engine(repo, executor=fake) as eng:
        assert eng.execute("SET replay = 'auto'").rowcount == -1
        assert eng.settings["replay"] == "auto"
        with pytest.warns(FlorWarning) as caught:
            eng.execute("SELECT grad FROM logs WHERE lr = 0.2 AND epoch = 1")
        assert len(fake.plans) == 1
        assert fake.plans[0].replay_set() == {"r2": {"grad": (1,)}}
        assert any("1 replay task(s) failed" in str(w.message) for w in caught)
        with pytest.raises(ParseError):
            eng.execute("SET replay = 'sometimes'")


def test_confirm_mode_asks_first(repo: Path) -> None:
    fake = FakeExecutor()
    asked: list[ReplayPlan] = []

    def no(plan: ReplayPlan) -> bool:
        asked.append(plan)
        return False

    with Engine(repo, replay="confirm", executor=fake, confirm=no) as eng:
        with pytest.warns(ReplayOffWarning, match="replay was not confirmed"):
            eng.execute("SELECT val FROM logs WHERE epoch = 0")
        assert len(asked) == 1 and fake.plans == []
        eng.confirm = lambda plan: True
        with pytest.warns(FlorWarning):
            eng.execute("SELECT val FROM logs WHERE epoch = 0")
        assert len(fake.plans) == 1


def test_queries_cannot_reach_files_even_past_the_grammar(repo: Path) -> None:
    with Engine(repo) as eng:
        con = eng._box.con
        for sql in (
            "SELECT * FROM read_csv('/etc/passwd')",
            "COPY (SELECT 1) TO '/tmp/florsql-leak.csv'",
            "ATTACH '/tmp/florsql-other.duckdb' AS o",
            "SET enable_external_access = true",
        ):
            with pytest.raises(Exception, match=r"disabled|locked|Permission"):
                con.execute(sql)
        secret = [1, 2, 3]  # noqa: F841 - a Python variable a replacement scan would find
        with pytest.raises(Exception, match="secret"):
            con.sql("SELECT * FROM secret").fetchall()
        assert not Path("/tmp/florsql-leak.csv").exists()


def test_new_runs_and_code_changes_are_seen_without_reopening(repo: Path) -> None:
    with Engine(repo) as eng:
        assert "newname" not in eng.catalog().names()
        b = RunBuilder("r9", {"lr": 0.9, "opt": "sgd"})
        with b.loop("epoch", 0):
            b.log("acc", 0.99)
        b.write(repo)
        (n,) = eng.execute("SELECT count(*) FROM runs").table.column(0).to_pylist()
        assert n == 5
        write(repo / "train.py", "import florsql as flor\nflor.log('newname', 1)\n")
        column = eng.catalog().column("newname")
        assert column is not None and column.hindsight
        assert eng.catalog().column("grad") is None  # gone from the current code


def test_one_engine_per_index(repo: Path) -> None:
    with Engine(repo), pytest.raises(StoreError, match="in use"):
        Engine(repo)


def test_cache_and_live_pivots_agree(repo: Path) -> None:
    sql = "SELECT run_id, epoch, step, loss, acc, final FROM logs ORDER BY ALL"
    with Engine(repo, use_cache=True) as eng:
        cached = eng.execute(sql).table
    with Engine(repo, use_cache=False) as eng:
        live = eng.execute(sql).table
        plan_sql = eng.plan(sql).sql
    assert cached.equals(live)
    assert "arg_max_null" in plan_sql and "__flor_wide" not in plan_sql


def test_dataframe_as_pandas_needs_pandas(repo: Path) -> None:
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(florsql.errors.PlanError, match="pandas"):
            florsql.dataframe("acc", repo=repo, as_pandas=True)
    else:
        frame = florsql.dataframe("acc", repo=repo, as_pandas=True)
        assert list(frame.columns) == ["projid", "tstamp", "filename", "epoch", "acc"]


def test_parameters_bind_in_text_order_where_before_limit(repo: Path) -> None:
    # SQLAlchemy sends `... WHERE x >= ? LIMIT ?`; sqlglot's tree puts LIMIT first.
    sql = "SELECT x FROM (VALUES (1), (2), (3)) AS t(x) WHERE x >= ? ORDER BY x LIMIT ?"
    with Engine(repo) as engine:
        assert engine.execute(sql, [2, 1]).table.column("x").to_pylist() == [2]
        assert engine.execute(sql, [1, 2]).table.column("x").to_pylist() == [1, 2]
