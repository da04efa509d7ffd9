"""Replay tasks use the run's recorded torch thread counts, and never oversubscribe the cores.

A run recorded with torch set to 1 intra-op and 1 inter-op thread (by the recording's
environment, which the replay does not have: torch's default is every core) gains a statement
that logs torch's thread counts; its replay, forked from the warm worker or started cold, must
see the recorded counts, and EXPLAIN says how many tasks run at once (cores // 1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from florsql.engine import Engine
from florsql.plan.tasks import at_once
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import copy_repo, make_repo, run_dirs, run_script, write

OLD = """
import os
import torch
import florsql as flor

if os.environ.get("PIN_THREADS"):
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)

w = torch.zeros(4)
with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(2)):
            w += 1
            flor.log("loss", float(w.sum()))
        flor.log("acc", float(w.mean()))
flor.commit()
"""

NEW = OLD.replace(
    '        flor.log("acc", float(w.mean()))\n',
    '        flor.log("acc", float(w.mean()))\n'
    '        flor.log("intra", torch.get_num_threads())\n'
    '        flor.log("inter", torch.get_num_interop_threads())\n',
)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("threads") / "repo", {"train.py": OLD})
    run_script(repo, "train.py", PIN_THREADS="1")
    write(repo / "train.py", NEW)
    return repo


def _recorded(repo: Path) -> tuple[int, int]:
    (run,) = run_dirs(repo)
    doc = json.loads((run / "run.json").read_text())
    return doc["torch_num_threads"], doc["torch_num_interop_threads"]


def _copy(history: Path, dest: Path) -> Path:

    copy_repo(history, dest)
    return dest


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_tasks_replay_with_the_recorded_thread_counts(
    history: Path, tmp_path: Path, warm: bool
) -> None:
    repo = _copy(history, tmp_path / "repo")
    intra, inter = _recorded(repo)
    assert (intra, inter) == (1, 1)
    executor = PlanExecutor(LocalExecutor(4, warm=warm))
    with Engine(repo, replay="auto", executor=executor) as eng:
        rows = eng.execute("SELECT epoch, intra, inter FROM logs ORDER BY epoch").table.to_pylist()
    assert [(r["intra"], r["inter"]) for r in rows] == [(intra, inter)] * 3


def test_explain_says_how_many_tasks_run_at_once(history: Path, tmp_path: Path) -> None:
    repo = _copy(history, tmp_path / "repo")
    cores = os.cpu_count() or 1
    executor = PlanExecutor(LocalExecutor(8))
    with Engine(repo, replay="off", executor=executor) as eng:
        lines = eng.execute("EXPLAIN SELECT epoch, intra FROM logs").table.column(0).to_pylist()
        plan = eng.plan("SELECT epoch, intra FROM logs").replay
    want = f"{at_once(1, cores)} task(s) at once (1 thread each, {cores} core"
    assert any(want in line and "est. wall time" in line for line in lines), lines
    cost = plan.cost
    assert cost.threads == 1 and cost.at_once == min(8, cores) and cost.warm is False
    # the wall time counts the warm worker's start (not running yet): more than the longest task
    assert cost.wall > max(c.seconds for r in plan.runs() for c in r.chunks)
