"""Replay under faults: the query process killed mid-replay, and nondeterministic old code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from florsql.engine.session import Engine
from florsql.errors import NondeterminismWarning
from florsql.replay import LocalExecutor, PlanExecutor
from florsql.store.replays import replays_dir
from tests.helpers import (
    make_repo,
    pid_alive,
    run_script,
    script_env,
    service_task_pids,
    wait_gone,
    write,
)

SLOW = """
import time
import florsql as flor
run = flor.arg("run", 0)
state = {"w": float(run)}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(6)):
        for step in flor.loop("step", range(2)):
            state["w"] += 0.5
        time.sleep(0.15)
        flor.log("w", state["w"])
"""

QUERY = """
import sys
from florsql.engine.session import Engine
from florsql.replay import LocalExecutor, PlanExecutor
with Engine(sys.argv[1], replay="auto", executor=PlanExecutor(LocalExecutor(1))) as eng:
    eng.execute("SELECT run, epoch, w2 FROM logs")
print("finished")
"""


def _running_tasks(repo: Path) -> list[int]:
    return [pid for pid in service_task_pids(repo) if pid_alive(pid)]


def _wait_tasks_gone(repo: Path) -> None:
    assert service_task_pids(repo), "the replay ran no task through the replay service"
    for pid in service_task_pids(repo):
        wait_gone(pid)


def _done(repo: Path) -> list[Path]:
    return sorted(replays_dir(repo).glob("*/*/done.json"))


def _replaying_query(tmp_path: Path) -> tuple[Path, subprocess.Popen[str]]:
    """Four recorded runs, a new statement in today's script, and a query process replaying
    them one task at a time, returned once its first task has finished."""
    repo = make_repo(tmp_path / "r", {"train.py": SLOW})
    for run in range(4):
        run_script(repo, "train.py", "--run", str(run), FLORSQL_CHECKPOINT_PERIOD="1")
    write(
        repo / "train.py",
        SLOW.replace(
            'flor.log("w", state["w"])',
            'flor.log("w", state["w"])\n        flor.log("w2", state["w"] * 2)',
        ),
    )
    write(tmp_path / "query.py", QUERY)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "query.py"), str(repo)],
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not _done(repo) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not _done(repo):
        ended = proc.poll() is not None
        if not ended:
            proc.kill()
        out, err = proc.communicate(timeout=30)
        how = f"exited {proc.returncode}" if ended else "still running after 120 s (killed)"
        raise AssertionError(f"no replay task finished; the query {how}:\n{out}\n{err[-3000:]}")
    return repo, proc


def test_kill_9_of_the_query_leaves_nothing_half_visible(tmp_path: Path) -> None:
    repo, proc = _replaying_query(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    # The replay service saw the connection close and killed the query's tasks: once every
    # task process it forked is gone, nothing can finish a task any more.
    _wait_tasks_gone(repo)
    finished = len(_done(repo))
    assert not _running_tasks(repo), "replay tasks went on after the query died"
    assert finished < 4
    with Engine(repo, replay="off") as eng, pytest.warns(Warning):
        rows = eng.execute("SELECT run, epoch, w2 FROM logs WHERE w2 IS NOT NULL").table
    runs_with_values = set(rows.column("run").to_pylist())
    assert len(runs_with_values) == finished  # whole tasks only: every epoch or none
    assert rows.num_rows == 6 * finished
    # The same query later replays only what is missing.
    with Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(2))) as eng:
        table = eng.execute("SELECT run, epoch, w, w2 FROM logs").table.to_pylist()
    assert len(_done(repo)) == 4
    assert len(table) == 24 and all(r["w2"] == 2 * r["w"] for r in table)


def test_ctrl_c_stops_the_replay_and_its_workers(tmp_path: Path) -> None:
    repo, proc = _replaying_query(tmp_path)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    _wait_tasks_gone(repo)  # the query killed them before it exited; no sleep needed
    finished = len(_done(repo))
    assert finished < 4 and not _running_tasks(repo), "replay tasks went on after Ctrl-C"


def test_nondeterministic_old_code_is_reported(tmp_path: Path) -> None:
    script = """
import time
import florsql as flor
state = {"w": 0.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(3)):
            state["w"] += 1
            flor.log("clock", time.perf_counter_ns())
"""
    repo = make_repo(tmp_path / "nd", {"train.py": script})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", script + '            flor.log("w_now", state["w"])\n')
    executor = PlanExecutor(LocalExecutor(1))
    with (
        Engine(repo, replay="auto", executor=executor) as eng,
        pytest.warns(NondeterminismWarning, match="clock") as said,
    ):
        rows = eng.execute(
            "SELECT epoch, step, w_now FROM logs WHERE epoch = 1 ORDER BY step"
        ).table
    assert rows.column("w_now").to_pylist() == [4, 5, 6]
    # It names what can make a replay depart, not only "nondeterminism".
    causes = [str(w.message) for w in said if "Causes:" in str(w.message)]
    assert causes and "not registered in flor.checkpointing" in causes[0], causes
    # Every later read of those values says so again (the replay's warning came only once),
    # in a new engine too; a query that reads no such value does not.
    with Engine(repo, replay="off") as eng:
        with pytest.warns(NondeterminismWarning, match=r"values of w_now for 1 run\(s\)"):
            result = eng.execute("SELECT step, w_now FROM logs WHERE epoch = 1 ORDER BY step")
        assert result.table.column("w_now").to_pylist() == [4, 5, 6]
        assert any("disagreed with the recording" in w for w in result.warnings)
        with pytest.warns(NondeterminismWarning):
            eng.execute("SELECT * FROM logs WHERE epoch = 1")
        with warnings.catch_warnings():
            warnings.simplefilter("error", NondeterminismWarning)
            eng.execute("SELECT epoch, step, clock FROM logs WHERE epoch = 1")
        (mismatch,) = (
            eng.execute("SELECT mismatch FROM replays WHERE mismatch IS NOT NULL")
            .table.column("mismatch")
            .to_pylist()
        )
        assert "clock" in mismatch
