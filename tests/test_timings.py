"""This machine's replay timings (florsql.replay.timings): the warm worker's measured start and
the task-estimate factor, kept per user and used by EXPLAIN where the constants or the
repository's own tasks would not say (a slower machine's cold replay took twice the
estimate)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from florsql.engine.session import Engine
from florsql.plan.tasks import WORKER_START_S
from florsql.replay import LocalExecutor, PlanExecutor, timings
from tests.helpers import make_repo, run_script, write

SCRIPT = """
import florsql as flor
state = {"w": 0.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(2)):
            state["w"] += 1
        flor.log("w", state["w"])
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    file = tmp_path / "cache" / "timings.json"
    monkeypatch.setenv("FLORSQL_TIMINGS", str(file))
    monkeypatch.setattr(timings, "_load", lambda: 0.0)  # an idle machine, unless a test says
    return file


def test_the_median_of_the_newest_measurements(cache: Path) -> None:
    assert timings.recent("worker_start") is None
    for v in (9.0, 1.0, 2.0, 3.0, 4.0, 5.0):  # the oldest falls out
        timings.note("worker_start", v)
    assert timings.recent("worker_start") == 3.0
    assert json.loads(cache.read_text())["worker_start"] == {
        __import__("sys").executable: [1.0, 2.0, 3.0, 4.0, 5.0]
    }
    assert timings.recent("worker_start", "/another/python") is None
    timings.note("worker_start", -1.0)  # nonsense is not kept
    timings.note("worker_start", float("nan"))
    assert timings.recent("worker_start") == 3.0


def test_measurements_are_kept_as_on_an_idle_machine_and_read_at_the_load_now(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start-up measured while the machine was busy (load 3 on 2 cores: twice as slow) is
    kept at its idle time, and read back at the load of the moment: before session 31, start-ups
    measured under load an hour before made an idle machine's EXPLAIN say 1.6-1.8x the time its
    cold replay took."""
    assert timings.slowdown(0.0, 1) == 1.0  # idle
    monkeypatch.setattr(timings.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(timings, "_load", lambda: 3.0)
    timings.note("worker_start", 3.0)
    assert json.loads(cache.read_text())["worker_start"] == {__import__("sys").executable: [1.5]}
    assert timings.recent("worker_start") == 3.0  # still that busy
    monkeypatch.setattr(timings, "_load", lambda: 0.1)
    assert timings.recent("worker_start") == 1.5  # idle now
    monkeypatch.setattr(timings, "_load", lambda: None)  # a system without a load average
    assert timings.recent("worker_start") == 1.5
    assert timings.slowdown(float("nan"), 2) == 1.0


def test_a_cache_that_cannot_be_read_or_written_is_ignored(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert timings.recent("task_factor") is None
    timings.note("task_factor", 1.5)  # replaced by a good one
    assert timings.recent("task_factor") == 1.5
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("FLORSQL_TIMINGS", str(blocker / "sub" / "timings.json"))
    timings.note("task_factor", 2.0)  # its folder cannot be made: nothing raised
    assert timings.recent("task_factor") is None
    monkeypatch.setenv("FLORSQL_TIMINGS", "off")
    assert timings.path() is None and timings.recent("task_factor") is None
    timings.note("task_factor", 2.0)


def test_default_place_is_the_users_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLORSQL_TIMINGS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert timings.path() == tmp_path / "florsql" / "timings.json"


def _explain(eng: Engine, sql: str) -> str:
    table = eng.execute("EXPLAIN " + sql).table
    return "\n".join(str(v) for col in table.columns for v in col.to_pylist())


def _history(root: Path, name: str) -> Path:
    repo = make_repo(root / name, {"train.py": SCRIPT})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", SCRIPT + '        flor.log("w2", state["w"] * 2)\n')
    return repo


def test_explain_counts_the_measured_worker_start_and_this_machines_factor(
    cache: Path, tmp_path: Path
) -> None:
    """A cold plan's wall time counts the constant until a warm worker has started on this
    machine, then the measured start; a repository without replay tasks of its own scales its
    task estimates by this machine's recent factor (what the replays' tasks took against
    their estimates)."""
    sql = "SELECT epoch, w2 FROM logs"
    first = _history(tmp_path, "a")
    executor = PlanExecutor(LocalExecutor(1))
    try:
        with Engine(first, replay="auto", executor=executor) as eng:
            cost = eng.plan(sql).replay.cost
            assert (cost.start, cost.start_measured) == (WORKER_START_S, False)
            assert "warm worker start included (1.6 s, not yet measured here)" in _explain(eng, sql)
            eng.execute(sql)  # starts the executor's warm worker: its start is noted
    finally:
        executor.close()
    measured = timings.recent("worker_start")
    assert measured is not None and measured > 0
    # The replay wrote down how long its tasks took against their estimates.
    factor = timings.recent("task_factor")
    assert factor is not None and factor > 0
    second = _history(tmp_path, "b")
    executor = PlanExecutor(LocalExecutor(1))
    try:
        with Engine(second, replay="auto", executor=executor) as eng:
            plan = eng.plan(sql).replay
            assert (plan.cost.start, plan.cost.start_measured) == (round(measured, 3), True)
            assert plan.cost.machine_scale and plan.cost.scaled_from == 0
            assert plan.cost.scale == round(min(3.0, max(1 / 3, factor)), 3)
            text = _explain(eng, sql)
            assert "measured on this machine" in text
            assert "what recent replays on this machine took" in text
    finally:
        executor.close()
    assert os.path.exists(cache)


def test_fresh_interpreter_tasks_calibrate_their_start_not_the_task_factor(
    cache: Path, tmp_path: Path
) -> None:
    """A task that starts an interpreter spends most of its time starting it (and the script's
    imports): counted in the task factor, one such task against a 0.1 s estimate pushed the
    factor to its bound and every later estimate on the machine to three times its replay.
    Its start-up is noted apart (``cold_start``) and counted per task in the next estimate for
    such an executor; its time is not this repository's calibration either."""
    sql = "SELECT epoch, w2 FROM logs"
    repo = _history(tmp_path, "cold")
    with Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(1, warm=False))) as eng:
        eng.execute(sql)
        done = [
            json.loads(p.read_text()) for p in (repo / ".florsql" / "replays").glob("*/*/done.json")
        ]
        assert done and all(d["timings"]["forked"] is False for d in done)
        seconds = eng.execute("SELECT task_seconds FROM replays").table.to_pylist()
    assert seconds and all(r["task_seconds"] is None for r in seconds)
    assert timings.recent("task_factor") is None  # nothing forked: no factor
    cold = timings.recent("cold_start")
    phases = done[0]["timings"]
    assert cold == round(phases["start"] + phases["setup"] + phases["module"], 4)
    again = _history(tmp_path, "cold2")
    with Engine(again, replay="off", executor=PlanExecutor(LocalExecutor(1, warm=False))) as eng:
        cost = eng.plan(sql).replay.cost
        assert (cost.forks, cost.start, cost.start_measured) == (False, round(cold, 3), True)
        assert "an interpreter per task, its start included in each" in _explain(eng, sql)
