"""Stranger sweep s31: continuous training while querying.

ML engineers keep training while they query. A run records in a real subprocess that stops at
each epoch until the test opens its gate (a file), while a connection, one-shot ``florsql
query`` processes and replays (real ones, held mid-task on a file the test controls) run
beside it; the user edits today's statement while a replay runs, kills a query or the replay
service in the middle.

Oracle: a second repository recording the hand-patched script (today's statements as code,
under their own names where two statements of one name are compared), with the same runs in
the same order; every hindsight value the history answers must equal it, or be NULL with a
warning that says why. Synchronisation is on events only: a line the run prints, a file a
replay task creates, a pid gone, rows visible in the index."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import florsql
from florsql.replay import PlanExecutor
from tests.helpers import (
    make_repo,
    script_env,
    write,
)
from tests.helpers_replay import (
    Job,
    KeptWorkers,
    fetch,
    old_source,
    patched_source,
    shared_recorder,
)

TEMPLATE = """
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn
import florsql as flor

CTL = Path(r"{ctl}")


def gate(seed, epoch):
    # the test's control over a live run: print, then wait for go-SEED-EPOCH (only for a
    # run the test made live; bounded, so a lost test never leaves a run waiting forever)
    if not (CTL / f"live-{{seed}}").exists():
        return
    print(f"epoch {{epoch}}", flush=True)
    deadline = time.monotonic() + 300
    while not (CTL / f"go-{{seed}}-{{epoch}}").exists():
        assert time.monotonic() < deadline, "gate never opened"
        time.sleep(0.01)


def held(v):
    # the test's control over a replay: while CTL/hold exists, a replayed statement says it
    # entered and waits (a recording never meets it: hold is made after the runs)
    if (CTL / "hold").exists():
        (CTL / f"entered-{{os.getpid()}}").touch()
        deadline = time.monotonic() + 300
        while (CTL / "hold").exists():
            assert time.monotonic() < deadline, "hold never lifted"
            time.sleep(0.01)
    return v


torch.set_num_threads(1)
seed = flor.arg("seed", 0)
epochs = flor.arg("epochs", 3)
torch.manual_seed(seed)
X = torch.randn(36, 6)
Y = (X[:, :2].sum(dim=1) > 0).long()
net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
loss_fn = nn.CrossEntropyLoss()
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        gate(seed, epoch)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
{hindsight}
"""

#: Today's statement (history) and, in the oracle, the same value under its own name.
W0 = '        flor.log("w0", held(float(net[0].weight.sum())))  # hindsight\n'
#: The statement edited (history: still ``w0``); the oracle logs it as ``w0b``.
W0B = '        flor.log("w0", held(float(net[0].weight.sum() * 2)))  # hindsight\n'
W0B_ORACLE = '        flor.log("w0b", held(float(net[0].weight.sum() * 2)))  # hindsight\n'

SQL = "SELECT seed, epoch, w0 FROM logs"


def script(ctl: Path, *lines: str) -> str:
    return TEMPLATE.format(ctl=ctl, hindsight="".join(lines))


def release(ctl: Path, seed: int, *epochs: int) -> None:
    for e in epochs:
        (ctl / f"go-{seed}-{e}").touch()


class Live:
    """A run recording in ``python train.py --seed SEED`` that stops at each epoch's gate."""

    def __init__(self, repo: Path, ctl: Path, seed: int) -> None:
        (ctl / f"live-{seed}").touch()
        self.ctl, self.seed = ctl, seed
        env = script_env(FLORSQL_FLUSH_INTERVAL="0", FLORSQL_CHECKPOINT_PERIOD="1")
        self.proc = subprocess.Popen(
            [sys.executable, "train.py", "--seed", str(seed)],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def at(self, epoch: int) -> None:
        """Until the run prints ``epoch N`` (it waits at that epoch's gate)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == f"epoch {epoch}\n", (line, self.proc.stderr and self.proc.stderr.read())

    def go(self, *epochs: int) -> None:
        release(self.ctl, self.seed, *epochs)

    def finish(self) -> None:
        release(self.ctl, self.seed, *range(3))
        _, err = self.proc.communicate(timeout=240)
        assert self.proc.returncode == 0, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def workers() -> Iterator[KeptWorkers]:
    w = KeptWorkers(1)
    yield w
    w.shutdown()


def record(
    root: Path, ctl: Path, runs: Sequence[int], oracle_lines: Sequence[str]
) -> tuple[Path, Path]:
    """History: the old script (no statement) committed, ``runs`` recorded; oracle: the
    patched script with ``oracle_lines``, the same runs. The history's working tree keeps the
    old script (the caller writes today's)."""
    ctl.mkdir(exist_ok=True)
    old = old_source(script(ctl, W0))
    history = make_repo(root / "history", {"train.py": old})
    oracle = make_repo(root / "oracle", {"train.py": patched_source(script(ctl, *oracle_lines))})
    env = {"FLORSQL_CHECKPOINT_PERIOD": "1"}
    shared_recorder().run(
        [
            [Job(history, "train.py", ("--seed", str(s)), env) for s in runs],
            [Job(oracle, "train.py", ("--seed", str(s)), env) for s in runs],
        ]
    )
    return history, oracle


def rows(con: Any, sql: str) -> tuple[list[tuple[Any, ...]], list[str]]:
    return fetch(con, sql)


def wait_rows(con: Any, sql: str, want: int, timeout: float = 120.0) -> None:
    """Until ``sql`` (a count) answers ``want``: the live run's rows reached the disk."""
    deadline = time.monotonic() + timeout
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ((n,),) = con.execute(sql).fetchall()
        # a live run that has not flushed its first loop yet is not "killed or failed before"
        assert not caught, [str(w.message) for w in caught]
        if n == want:
            return
        assert n < want and time.monotonic() < deadline, (n, want)
        time.sleep(0.02)


def explain(con: Any, sql: str) -> str:
    return "\n".join(str(r[0]) for r in con.execute("EXPLAIN " + sql).fetchall())


def oracle_rows(oracle: Path, sql: str) -> list[tuple[Any, ...]]:
    with florsql.connect(oracle, replay="off") as con:
        got, _ = fetch(con, sql)
    return got


# --- 1. a run still recording while a hindsight query runs ------------------------------------


@pytest.mark.slow
def test_a_live_run_while_a_hindsight_query_runs_then_it_finishes(
    tmp_path: Path, workers: KeptWorkers
) -> None:
    """Runs 0 and 1 recorded; run 2 starts with the old script and trains on; the user adds
    ``w0`` to the script (after run 2 took its snapshot) and queries. Run 2's rows so far are
    visible; the hindsight query answers runs 0 and 1 exactly and run 2 either exactly or
    NULL with a warning; once run 2 ends, the same query answers all three exactly."""
    ctl = tmp_path / "ctl"
    history, oracle = record(tmp_path, ctl, [0, 1], [W0])
    shared_recorder().run(
        [[Job(oracle, "train.py", ("--seed", "2"), {"FLORSQL_CHECKPOINT_PERIOD": "1"})]]
    )
    want = oracle_rows(oracle, SQL)
    want_loss = oracle_rows(oracle, "SELECT epoch, step, loss FROM logs WHERE seed = 2")
    want_all_loss = oracle_rows(oracle, "SELECT seed, epoch, step, loss FROM logs")
    live = Live(history, ctl, 2)
    try:
        live.at(0)  # the run took its snapshot: today's edit is not its code
        write(history / "train.py", patched_source(script(ctl, W0)))
        with florsql.connect(history, replay="auto", executor=PlanExecutor(workers)) as con:
            # run 2 has written nothing but its run.json: no rows, and no word about a
            # version that "cannot compute loss" (it said the run was killed or failed)
            got, notes = fetch(con, "SELECT seed, epoch, step, loss FROM logs")
            assert got == [r for r in want_all_loss if r[0] < 2] and not notes, notes
            live.go(0)
            live.at(1)
            wait_rows(con, "SELECT count(loss) FROM logs WHERE seed = 2", 3)
            got, _ = fetch(con, "SELECT epoch, step, loss FROM logs WHERE seed = 2")
            assert got == [r for r in want_loss if r[0] == 0]
            got, notes = fetch(con, SQL)
            # runs 0 and 1 exact; run 2 is not replayed while it runs: no w0 row of its own
            # (the grain: contexts where w0 exists), and a warning naming it (was silent)
            assert got == [r for r in want if r[0] < 2]
            running = [n for n in notes if "still running" in n]
            assert len(running) == 1 and "w0 of run " in running[0], notes
            assert "not replayed, the run is still running: w0" in explain(con, SQL)
            live.finish()
            got, _ = fetch(con, SQL)
            assert got == want
    finally:
        live.kill()
