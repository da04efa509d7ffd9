"""A corpus of training-loop patterns, each replayed and compared with a full re-run.

For each pattern: the old version of a small seeded torch script is committed and recorded
(checkpoints every ``period`` epochs), then today's version adds ``flor.log`` statements (the
``# hindsight`` lines) in the working tree. Queries over the history replay them through the
DB-API (``replay="auto"``); the oracle is a full re-run of the hand-patched old version in its own
repository. Answers must be equal, floats bit for bit: first partial queries (``epoch >= 2``, so
replay starts from a checkpoint), then the wider ones that replay the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers_replay import (
    KeptWorkers,
    Mismatches,
    Recorded,
    Recorder,
    copy_recorded,
    hindsight_names,
    record_pair,
    shared_dir,
)

PREAMBLE = """
import torch
from torch import nn
import florsql as flor

torch.set_num_threads(1)
seed = flor.arg("seed", 0)
epochs = flor.arg("epochs", 4)
torch.manual_seed(seed)
X = torch.randn(48, 6)
Y = (X[:, :2].sum(dim=1) > 0).long()
XV = torch.randn(16, 6)
YV = (XV[:, :2].sum(dim=1) > 0).long()
net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
"""


@dataclass
class Pattern:
    name: str
    body: str  # appended to PREAMBLE; ``# hindsight`` lines are today's additions
    #: hindsight names per row grain: "epoch", "epoch, step" (or another inner loop), "" (run)
    levels: dict[str, list[str]]
    seeds: tuple[int, ...] = (0,)
    period: int = 1
    old_query: str = "SELECT seed, epoch, step, loss FROM logs"
    first: int = 2  # the partial queries ask for epoch >= first

    @property
    def text(self) -> str:
        return PREAMBLE + self.body


PATTERNS = [
    Pattern(
        "dropout_in_evaluation",
        """
net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("zeros", int((out == 0).sum()))  # hindsight
        with torch.no_grad():
            noisy = net(XV)
            flor.log("noisy_acc", float((noisy.argmax(1) == YV).float().mean()))
        flor.log("noisy_sum", float(noisy.sum()))  # hindsight
""",
        {"epoch": ["noisy_sum"], "epoch, step": ["zeros"]},
    ),
    Pattern(
        "step_lr_after_inner_loop",
        """
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
with flor.checkpointing(model=net, optimizer=opt, scheduler=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("lr_step", opt.param_groups[0]["lr"])  # hindsight
        sched.step()
        flor.log("lr_after", sched.get_last_lr()[0])  # hindsight
        flor.log("w_norm", float(net[2].weight.norm()))  # hindsight
flor.log("final_w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["lr_after", "w_norm"], "epoch, step": ["lr_step"], "": ["final_w"]},
        period=2,
    ),
]


def test_corpus_is_consistent() -> None:
    """Each pattern's query levels name exactly its hindsight statements."""
    for p in PATTERNS:
        declared = sorted(n for names in p.levels.values() for n in names)
        assert declared == sorted(hindsight_names(p.text)), p.name


def queries(p: Pattern) -> tuple[list[str], list[str]]:
    """Partial queries (``epoch >= first``) and wide ones, per row grain."""
    partial, wide = [], []
    for keys, names in p.levels.items():
        cols = ", ".join(["seed", *([keys] if keys else []), *names])
        wide.append(f"SELECT {cols} FROM logs")
        if keys:
            partial.append(f"SELECT {cols} FROM logs WHERE epoch >= {p.first}")
    return partial, wide


class Histories:
    """Each pattern's recorded pair, recorded once per session (shared by xdist workers)."""

    def __init__(self, factory: pytest.TempPathFactory, worker_id: str) -> None:
        self.factory = factory
        self.worker_id = worker_id
        self._recorder: Recorder | None = None
        self.workers = KeptWorkers(2)

    def get(self, p: Pattern, dest: Path) -> Recorded:
        """A private copy of ``p``'s history and oracle in ``dest``."""

        def build(path: Path) -> None:
            if self._recorder is None:
                self._recorder = Recorder(self.factory.mktemp("runlogs"))
            runs = [("--seed", str(s)) for s in p.seeds]
            record_pair(self._recorder, path, p.text, runs, period=p.period)

        path = shared_dir(self.factory, self.worker_id, f"corpus-{p.name}", build)
        return copy_recorded(Recorded(path / "history", path / "oracle"), dest)

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
        self.workers.shutdown()


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Histories]:
    h = Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.name)
def test_fresh_store_replays_like_a_full_rerun(
    pattern: Pattern, histories: Histories, tmp_path: Path
) -> None:
    """Wide queries on a fresh store replay from the top (or checkpoints) what they need."""
    rec = histories.get(pattern, tmp_path)
    found = Mismatches()
    with found.session(rec, "fresh", histories.workers) as check:
        check(pattern.old_query)  # the hand-patched statements change nothing logged before
        for sql in queries(pattern)[1]:
            check(sql)
    found.assert_none()
