"""Crash safety: kill -9 at several points, and four runs recording at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from florsql.store.index import Index
from tests.helpers import script_env, write

SLOW = """
import sys, time
import florsql as flor
run = flor.arg("run", 0)
for epoch in flor.loop("epoch", range(1000)):
    print(epoch, flush=True)  # epoch started: every earlier epoch has ended and been flushed
    for step in flor.loop("step", range(5)):
        flor.log("v", run * 100000 + epoch * 10 + step)
    flor.log("e", epoch)
    time.sleep(0.15)  # the next epoch's "training"
"""


def _wait_for_epochs(proc: subprocess.Popen[str], n: int) -> None:
    assert proc.stdout is not None
    for _ in range(n):
        line = proc.stdout.readline()
        assert line, "the script ended early"


def _wait_for_segments(repo: Path, n: int, timeout: float = 60.0) -> None:
    """Until ``n`` segment files of the run are in place (an event, polled; a hang guard)."""
    deadline = time.monotonic() + timeout
    while len(list(repo.glob(".florsql/runs/*/segments/[0-9]*"))) < n:
        assert time.monotonic() < deadline, f"{n} segment files never appeared"
        time.sleep(0.005)


@pytest.mark.parametrize("kill_after", [1, 2, 5])
def test_kill_9_keeps_every_finished_iteration(tiny_repo: Path, kill_after: int) -> None:
    write(tiny_repo / "slow.py", SLOW)
    proc = subprocess.Popen(
        [sys.executable, "slow.py"],
        cwd=tiny_repo,
        stdout=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    _wait_for_epochs(proc, kill_after + 1)
    # Each finished epoch (0.15 s apart, over the 0.1 s flush interval) is one segment file,
    # renamed into place by the writer thread: kill once the first kill_after are there.
    _wait_for_segments(tiny_repo, kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with Index.open(tiny_repo) as ix:
        ix.refresh()
        assert ix.con.sql("SELECT status FROM runs").fetchall() == [("killed",)]
        epochs = ix.con.sql(
            "SELECT value_int FROM log_records WHERE name = 'e' ORDER BY seq"
        ).fetchall()
        assert [e[0] for e in epochs][:kill_after] == list(range(kill_after))
        done = len(epochs)
        vs = ix.con.sql("SELECT value_int FROM log_records WHERE name = 'v' ORDER BY seq")
        assert [v[0] for v in vs.fetchall()] == [e * 10 + s for e in range(done) for s in range(5)]
        loops = ix.con.sql(
            "SELECT count(*) FROM loops WHERE loop_name = 'epoch' AND seconds IS NOT NULL"
        ).fetchall()
        assert loops[0][0] == done


def test_four_concurrent_runs_lose_and_mix_nothing(tiny_repo: Path) -> None:
    write(tiny_repo / "slow.py", SLOW.replace("range(1000)", "range(6)").replace("0.15", "0.01"))
    procs = [
        subprocess.Popen(
            [sys.executable, "slow.py", "--run", str(r)],
            cwd=tiny_repo,
            env=script_env(),
            stdout=subprocess.DEVNULL,
        )
        for r in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    with Index.open(tiny_repo) as ix:
        ix.refresh()
        runs = ix.con.sql("SELECT run_id, run, status FROM runs ORDER BY run").fetchall()
        assert [(r[1], r[2]) for r in runs] == [(i, "finished") for i in range(4)]
        assert len({r[0] for r in runs}) == 4
        vids = ix.con.sql("SELECT DISTINCT vid FROM runs").fetchall()
        assert len(vids) == 1
        for run_id, run, _ in runs:
            vs = ix.con.execute(
                "SELECT value_int FROM log_records WHERE run_id = ? AND name = 'v' ORDER BY seq",
                [run_id],
            ).fetchall()
            assert [v[0] for v in vs] == [
                run * 100000 + e * 10 + s for e in range(6) for s in range(5)
            ]
