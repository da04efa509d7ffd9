"""Today's statements that draw from a global RNG leave a replay on the recorded trajectory.

The most common hindsight statement, a validation metric over a torch ``DataLoader``, draws
from torch's global generator (every ``DataLoader`` iteration takes its base seed from it).
Before, a replay ran the old code after such a statement on the moved RNG: a later iteration
replayed in full shuffled its data differently from the recording, so its values were neither
the recorded run's nor a run of today's script's, and an epoch-level query said nothing either
way. Now each placed statement runs between ``flor._hindsight_begin`` and
``flor._hindsight_end``, which put the global RNGs back as they were (florsql/record/rng_guard.py),
and the query warns (``StatementDrawWarning``).

The oracle: a full run of today's script with the statement made RNG-neutral by hand (the
RNG's state saved before it and set back after it), which is what the replay computes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from florsql.engine.session import Engine
from florsql.errors import NondeterminismWarning, StatementDrawWarning
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


def test_later_iterations_replayed_in_full_stay_on_the_recorded_trajectory(
    tmp_path: Path,
) -> None:
    # A step-level statement too: the replay runs every step loop in full, after the
    # epoch-level statement's draw; before, the next epoch's shuffle moved (a different w0, a
    # NondeterminismWarning at best).
    after = '        flor.log("ep_loss", loss.item())\n'
    step = '            flor.log("loss", loss.item())\n'
    today = _add(_add(TORCH, after, VAL), step, GRAD)
    oracle = _add(_add(TORCH, after, NEUTRAL), step, GRAD)
    sql = "SELECT epoch, step, loss, w0, val_acc FROM logs ORDER BY epoch, step"
    got, want, said = _case(tmp_path, TORCH, today, oracle, sql)
    assert got == want and len(got) > 4
    assert not any(issubclass(w.category, NondeterminismWarning) for w in said)
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
    oracle = _add(_add(PYRANDOM, after, NOISE_NEUTRAL), step, extra)
    got, want, said = _case(tmp_path, PYRANDOM, today, oracle, sql)
    assert got == want and len(got) >= 4
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
