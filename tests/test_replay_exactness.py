"""Replay exactness by construction, checked at run time: saved locals, modes, verification.

Each test records a small torch history (the old version) and its oracle (a full re-run of the
hand-patched old version), then asks through the DB-API as a user would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import florsql
from florsql.errors import NondeterminismWarning
from tests.helpers_replay import Recorder, copy_recorded, fetch, query, record_pair

PREAMBLE = """
import torch
from torch import nn
import florsql as flor

torch.set_num_threads(1)
torch.manual_seed(flor.arg("seed", 0))
X = torch.randn(36, 5)
Y = (X[:, 0] > 0).long()
net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()
"""

#: Training inside a function: the saved locals go back into a function's frame.
IN_A_FUNCTION = (
    PREAMBLE
    + """
def main():
    global_step = 0
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(4)):
            running, seen = 0.0, 0
            for i in flor.loop("step", range(3)):
                x, y = X[i * 12:(i + 1) * 12], Y[i * 12:(i + 1) * 12]
                loss = loss_fn(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                running += loss.item() * len(y)
                seen += len(y)
                global_step += 1
            flor.log("acc", running)
            flor.log("epoch_loss", running / seen)  # hindsight
            flor.log("last", loss.item())  # hindsight
            flor.log("gs", global_step)  # hindsight
    flor.log("final_gs", global_step)  # hindsight


main()
"""
)

#: State florsql does not save: a global of another module of the repository, changed by the
#: loop through that module's function (modules count as code, never saved).
HIDDEN_STATE = (
    PREAMBLE
    + """
import counter

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        for i in flor.loop("step", range(3)):
            counter.bump()
            loss = loss_fn(net(X), Y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        flor.log("n", counter.n)
        flor.log("m", counter.n * 10 + float(net[0].weight.sum()))  # hindsight
"""
)
#: The module changes its global through ``globals()``, which the planner's analysis of the
#: repository's modules (florsql.code.effects.module_state) does not see: only verification can
#: tell. (``global n; n += 1`` is seen: replay then runs those loops, never rest mode.)
HIDDEN_MODULE = {"counter.py": 'n = 0\n\n\ndef bump():\n    globals()["n"] += 1\n'}


#: A trainer class, as many codebases have: the state lives on ``self``.
TRAINER_CLASS = (
    PREAMBLE
    + """
class Trainer:
    def __init__(self):
        self.model, self.opt = net, opt
        self.batches = [(X[i:i + 12], Y[i:i + 12]) for i in range(0, 36, 12)]
        self.step_count = 0
        self.history = []

    def train_epoch(self):
        total = 0.0
        for x, y in flor.loop("step", self.batches):
            loss = loss_fn(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.step_count += 1
            total += loss.item()
        flor.log("last_loss", loss.item())  # hindsight
        return total / len(self.batches)

    def fit(self):
        with flor.checkpointing(model=self.model, optimizer=self.opt):
            for epoch in flor.loop("epoch", range(4)):
                avg = self.train_epoch()
                self.history.append(avg)
                flor.log("avg", avg)
                flor.log("steps", self.step_count)  # hindsight
                flor.log("best", min(self.history))  # hindsight


Trainer().fit()
"""
)


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    rec = Recorder(tmp_path_factory.mktemp("logs"))
    try:
        yield rec
    finally:
        rec.close()


def _explain(repo: Path, sql: str) -> str:
    with florsql.connect(repo, replay="off") as con:
        return "\n".join(r[0] for r in con.execute("EXPLAIN " + sql).fetchall())


SQL = "SELECT epoch, epoch_loss, last, gs FROM logs WHERE epoch_loss IS NOT NULL"


def test_locals_saved_in_a_function_frame_make_rest_mode_exact(
    recorder: Recorder, tmp_path: Path
) -> None:
    rec = record_pair(recorder, tmp_path, IN_A_FUNCTION, [["--seed", "1"]])
    text = _explain(rec.history, SQL)
    assert "rest: " in text and "captured" in text, text
    want = query(rec.oracle, SQL, replay="off")
    assert len(want) == 4
    assert query(rec.history, SQL + " AND epoch >= 2") == [r for r in want if r[0] >= 2]
    assert query(rec.history, SQL) == want  # the wider query replays the rest
    final = "SELECT final_gs FROM logs WHERE final_gs IS NOT NULL"
    assert query(rec.history, final) == query(rec.oracle, final, replay="off") == [(12,)]


def test_runs_recorded_without_saved_locals_replay_in_full(
    recorder: Recorder, tmp_path: Path
) -> None:
    rec = record_pair(recorder, tmp_path / "a", IN_A_FUNCTION, [["--seed", "2"]])
    old = copy_recorded(rec, tmp_path / "b")
    for manifest in (old.history / ".florsql" / "runs").glob("*/checkpoints/manifest.jsonl"):
        lines = [json.loads(x) for x in manifest.read_text().splitlines()]
        manifest.write_text("".join(json.dumps({**d, "restores": {}}) + "\n" for d in lines))
    text = _explain(old.history, SQL + " AND epoch = 3")
    assert "not captured" in text and "rest: " not in text, text
    assert query(old.history, SQL) == query(rec.oracle, SQL, replay="off")


def test_a_rest_replay_that_disagrees_is_redone_in_full(recorder: Recorder, tmp_path: Path) -> None:
    rec = record_pair(recorder, tmp_path, HIDDEN_STATE, [["--seed", "3"]], extra=HIDDEN_MODULE)
    sql = "SELECT epoch, m FROM logs WHERE m IS NOT NULL"
    assert "rest: " in _explain(rec.history, sql + " AND epoch = 2")
    with florsql.connect(rec.history, replay="auto") as con:
        got, notes = fetch(con, sql + " AND epoch = 2")
    assert got == [r for r in query(rec.oracle, sql, replay="off") if r[0] == 2]
    warned = [n for n in notes if n.startswith(NondeterminismWarning.__name__)]
    assert any("recomputed in full" in n and "n at epoch=2" in n for n in warned), notes
    rejected = list((rec.history / ".florsql" / "replays").glob("*/*/rejected.json"))
    assert len(rejected) == 1  # the rest task's values never reached the index


def test_a_trainer_class_replays_like_a_full_rerun(recorder: Recorder, tmp_path: Path) -> None:
    rec = record_pair(recorder, tmp_path, TRAINER_CLASS, [["--seed", "4"]])
    epoch_sql = "SELECT epoch, steps, best FROM logs WHERE steps IS NOT NULL"
    assert "rest: " in _explain(rec.history, epoch_sql + " AND epoch = 3")
    want = query(rec.oracle, epoch_sql, replay="off")
    assert query(rec.history, epoch_sql + " AND epoch >= 2") == [r for r in want if r[0] >= 2]
    assert query(rec.history, epoch_sql) == want
    last = "SELECT epoch, last_loss FROM logs WHERE last_loss IS NOT NULL"
    assert query(rec.history, last) == query(rec.oracle, last, replay="off")
