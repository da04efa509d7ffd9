"""Differential: random queries over a replayed torch history equal a full re-run's answers.

One small history, recorded once per test process: three committed versions of a torch script
(model width and StepLR schedule change; StepLR steps after the inner loop), two runs of each
with different args, checkpoints every one or two epochs. Today's version adds two statements:
``gnorm`` in the step loop and ``wnorm`` after it. Every query (hypothesis: AND/OR/NOT/IN/BETWEEN
over args, epochs and steps, ``?`` parameters, ORDER BY + LIMIT, aggregates, CTEs, sequences of
partial then wider queries on one connection) must give the same answer

- on a fresh copy of the history (replaying what this sequence needs, incrementally),
- on a copy where ``SELECT * FROM logs`` replayed everything first, and
- on plain DuckDB over the oracle's wide table: full re-runs of the hand-patched old versions,
  their rows restricted to each reference's grain (docs/sql.md: the contexts where one of the
  log names the reference names was logged).

Floats are compared exactly: replay must reproduce the re-run bit for bit.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import florsql
from florsql.dbapi import Connection
from florsql.replay import PlanExecutor
from tests.helpers import git, make_repo, write
from tests.helpers_replay import (
    Job,
    KeptWorkers,
    Recorder,
    fetch,
    normalize,
    old_source,
    patched_source,
    shared_dir,
)

TEMPLATE = """
import torch
from torch import nn
import florsql as flor

torch.set_num_threads(1)
lr = flor.arg("lr", 0.1)
seed = flor.arg("seed", 0)
epochs = flor.arg("epochs", 4)
torch.manual_seed(seed)
X = torch.randn(48, 6)
Y = (X[:, :2].sum(dim=1) > 0).long()
net = nn.Sequential(nn.Linear(6, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 2))
opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=STEP, gamma=GAMMA)
loss_fn = nn.CrossEntropyLoss()

with flor.checkpointing(model=net, optimizer=opt, scheduler=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            flor.log("gnorm", float(sum(p.grad.norm() for p in net.parameters())))  # hindsight
            opt.step()
            flor.log("loss", loss.item())
        sched.step()
        flor.log("wnorm", float(sum(p.detach().norm() for p in net.parameters())))  # hindsight
        with torch.no_grad():
            flor.log("acc", float((net(X).argmax(1) == Y).float().mean()))
"""

#: (width, StepLR step_size, gamma) per committed version, and each version's runs' args.
VERSIONS = [((8, 2, 0.5), [(0.1, 0), (0.2, 1)]),
            ((12, 2, 0.5), [(0.1, 2), (0.3, 3)]),
            ((12, 1, 0.7), [(0.2, 4), (0.3, 5)])]  # fmt: skip
PERIODS = {0: 1, 1: 2, 2: 2}  # checkpoint period of each version's runs
NAMES = ["gnorm", "wnorm", "loss", "acc"]
COLUMNS = "seed, lr, epoch, step, " + ", ".join(NAMES)


def version_text(width: int, step: int, gamma: float) -> str:
    return (
        TEMPLATE.replace("WIDTH", str(width))
        .replace("STEP", str(step))
        .replace("GAMMA", str(gamma))
    )


@dataclass
class History:
    repo: Path  # the recorded history, today's version in the working tree; never queried
    full: Connection  # a copy where SELECT * replayed everything
    oracle: duckdb.DuckDBPyConnection  # table ``wide``: the full re-runs' rows
    workers: KeptWorkers
    scratch: Path


def build_history(root: Path) -> None:
    """Record the versions (``history``) and the patched versions (``oracle``), save the
    oracle's wide table (``wide.parquet``), and replay everything in a copy (``full``)."""
    recorder = Recorder(root / "logs")
    try:
        repo = make_repo(root / "history")
        oracle_repo = make_repo(root / "oracle")
        oracle_chain: list[Job] = []
        for i, (params, runs) in enumerate(VERSIONS):
            text = version_text(*params)
            write(repo / "train.py", old_source(text))
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", f"version {i}")
            write(oracle_repo / f"v{i}.py", patched_source(text))
            env = {"FLORSQL_CHECKPOINT_PERIOD": str(PERIODS[i])}
            argvs = [("--lr", str(lr), "--seed", str(seed)) for lr, seed in runs]
            # A version's runs are recorded while it is checked out (HEAD is that commit).
            recorder.run([[Job(repo, "train.py", a, env) for a in argvs]])
            oracle_chain += [Job(oracle_repo, f"v{i}.py", a) for a in argvs]
        git(oracle_repo, "add", "-A")
        git(oracle_repo, "commit", "-q", "-m", "patched versions")
        recorder.run([oracle_chain])
    finally:
        recorder.close()
    write(repo / "train.py", patched_source(version_text(*VERSIONS[-1][0])))
    with florsql.connect(oracle_repo, replay="off") as con:
        table = con.execute(f"SELECT {COLUMNS} FROM logs").fetch_arrow_table()
    pq.write_table(table, root / "wide.parquet")
    shutil.copytree(repo, root / "full", symlinks=True)
    with florsql.connect(root / "full", replay="auto") as full:
        fetch(full, "SELECT * FROM logs")  # replays every hindsight value of every run


def _executor(workers: KeptWorkers) -> PlanExecutor:
    return PlanExecutor(workers)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[History]:
    shared = shared_dir(tmp_path_factory, worker_id, "differential", build_history)
    mine = tmp_path_factory.mktemp("differential")
    shutil.copytree(shared / "full", mine / "full", symlinks=True)
    oracle = duckdb.connect()
    oracle.execute(
        "CREATE TABLE wide AS SELECT * FROM read_parquet(?)", [str(shared / "wide.parquet")]
    )
    workers = KeptWorkers(2)
    try:
        with florsql.connect(mine / "full", replay="auto", executor=_executor(workers)) as full:
            yield History(shared / "history", full, oracle, workers, mine / "scratch")
    finally:
        workers.shutdown()


def test_replaying_everything_equals_the_full_reruns(history: History) -> None:
    got, _ = fetch(history.full, f"SELECT {COLUMNS} FROM logs")
    want = normalize(history.oracle.execute(f"SELECT {COLUMNS} FROM wide").fetchall())
    assert len(want) == 6 * 4 * (4 + 1)  # runs x epochs x (steps + the epoch's own row)
    assert got == want
