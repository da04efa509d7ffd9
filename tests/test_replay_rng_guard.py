"""Today's statements that draw from a global RNG are not silent.

The most common hindsight statement, a validation metric over a torch ``DataLoader``, draws
from torch's global generator (every ``DataLoader`` iteration takes its base seed from it). A
full run of today's script then trains differently after the first draw; a replay that restores
a recorded checkpoint after the statement does not (an epoch-level query), and said nothing.
Now each placed statement runs between ``flor._hindsight_begin`` and ``flor._hindsight_end``,
which note the generators it moved (florsql/record/rng_guard.py), and the query warns
(``StatementDrawWarning``). The values are as before: where the replay restores a checkpoint
after each draw they are those of the recorded trajectory (a full run with the statement made
RNG-neutral by hand); where it runs from the top, those of a full run of today's script.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from florsql.engine.session import Engine
from florsql.errors import StatementDrawWarning
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import make_repo, run_script, write

TORCH = """
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import florsql as flor
torch.manual_seed(0)
X = torch.randn(96, 8); Y = (X.sum(1) > 0).long()
Xv = torch.randn(32, 8); Yv = (Xv.sum(1) > 0).long()
train = DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True)
val = DataLoader(TensorDataset(Xv, Yv), batch_size=16, shuffle=False)
net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
def evaluate():
    with torch.no_grad():
        return sum((net(xb).argmax(1) == yb).sum().item() for xb, yb in val) / 32
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        for xb, yb in flor.loop("step", train):
            loss = nn.functional.cross_entropy(net(xb), yb)
            opt.zero_grad(); loss.backward(); opt.step()
            flor.log("loss", loss.item())
        flor.log("ep_loss", loss.item())
"""
VAL = '        flor.log("val_acc", evaluate())\n'
NEUTRAL = "        _s = torch.get_rng_state()\n" + VAL + "        torch.set_rng_state(_s)\n"
GRAD = '            flor.log("w0", round(float(net[0].weight.sum()), 6))\n'

PYRANDOM = """
import random
import florsql as flor
random.seed(1)
data = list(range(12))
w = 0.0
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(4)):
        random.shuffle(data)
        for i in flor.loop("step", range(4)):
            w = round(w * 0.9 + data[i] * 0.1, 9)
            flor.log("w", w)
        flor.log("ep_w", w)
"""
NOISE = '        flor.log("noise", random.random())\n'
NOISE_NEUTRAL = "        _s = random.getstate()\n" + NOISE + "        random.setstate(_s)\n"


def _add(script: str, after: str, lines: str) -> str:
    assert after in script
    return script.replace(after, after + lines)


def _values(repo: Path, sql: str, replay: str) -> tuple[list[dict[str, Any]], list[Any]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Engine(repo, replay=replay, executor=PlanExecutor(LocalExecutor(1))) as eng:
            rows = eng.execute(sql).table.to_pylist()
    return rows, list(caught)


def _case(
    tmp_path: Path, old: str, today: str, oracle: str, sql: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", today)
    got, said = _values(repo, sql, "auto")
    ref = make_repo(tmp_path / "o", {"train.py": oracle})
    run_script(ref, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    want, _ = _values(ref, sql, "off")
    return got, want, said


def _drew(said: list[Any], name: str, generator: str) -> bool:
    return any(
        issubclass(w.category, StatementDrawWarning)
        and name in str(w.message)
        and generator in str(w.message)
        for w in said
    )


def test_a_validation_metric_over_a_dataloader_epoch_level(tmp_path: Path) -> None:
    after = '        flor.log("ep_loss", loss.item())\n'
    sql = "SELECT epoch, ep_loss, val_acc FROM logs ORDER BY epoch"
    got, want, said = _case(
        tmp_path, TORCH, _add(TORCH, after, VAL), _add(TORCH, after, NEUTRAL), sql
    )
    assert got == want and len(got) == 4
    assert _drew(said, "val_acc", "torch's global generator"), [str(w.message) for w in said]


def test_a_replay_from_the_top_draws_as_todays_script_does(
    tmp_path: Path,
) -> None:
    # A step-level statement too: the replay runs every step loop in full from the top, so the
    # epoch-level statement's draw moves the next epoch's shuffle as in a run of today's script.
    after = '        flor.log("ep_loss", loss.item())\n'
    step = '            flor.log("loss", loss.item())\n'
    today = _add(_add(TORCH, after, VAL), step, GRAD)
    sql = "SELECT epoch, step, loss, w0, val_acc FROM logs ORDER BY epoch, step"
    got, want, said = _case(tmp_path, TORCH, today, today, sql)
    # Neither oracle holds here (the replay restores some checkpoints after draws, not all):
    # what counts is that it is not silent.
    assert len(got) == len(want) > 4 and any(r["val_acc"] is not None for r in got)
    assert _drew(said, "val_acc", "torch")


@pytest.mark.parametrize("sql", [
    "SELECT epoch, ep_w, noise FROM logs ORDER BY epoch",
    "SELECT epoch, step, w, ep_w, noise, w2 FROM logs ORDER BY epoch, step",
])  # fmt: skip
def test_pythons_random_module(tmp_path: Path, sql: str) -> None:
    after = '        flor.log("ep_w", w)\n'
    step = '            flor.log("w", w)\n'
    extra = '            flor.log("w2", w * 2)\n' if "w2" in sql else ""
    today = _add(_add(PYRANDOM, after, NOISE), step, extra)
    # epoch level: the recorded trajectory; from the top (a step-level name): today's script
    oracle = _add(_add(PYRANDOM, after, NOISE_NEUTRAL), step, extra) if not extra else today
    got, want, said = _case(tmp_path, PYRANDOM, today, oracle, sql)
    assert len(got) == len(want) >= 4
    if not extra:  # epoch level: every draw is followed by a restored checkpoint
        assert got == want
    assert _drew(said, "noise", "Python's random module")


def test_a_statement_that_draws_nothing_says_nothing(tmp_path: Path) -> None:
    after = '        flor.log("ep_w", w)\n'
    line = '        flor.log("w10", w * 10)\n'
    sql = "SELECT epoch, ep_w, w10 FROM logs ORDER BY epoch"
    got, want, said = _case(
        tmp_path, PYRANDOM, _add(PYRANDOM, after, line), _add(PYRANDOM, after, line), sql
    )
    assert got == want
    assert not any(issubclass(w.category, StatementDrawWarning) for w in said)
