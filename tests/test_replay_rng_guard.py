"""Today's statements that draw from a global RNG: the values are a run of today's script's.

The most common hindsight statement, a validation metric over a torch ``DataLoader``, draws
from torch's global generator (every ``DataLoader`` iteration takes its base seed from it). A
full run of today's script then trains differently after the first draw; a replay that restored
a recorded checkpoint after the statement followed the recorded run instead, so values matched
neither (session 33 made it warn). Each placed statement runs between ``flor._hindsight_begin``
and ``flor._hindsight_end``, which note the generators it moved (florsql/record/rng_guard.py);
since session 34 a run whose tasks saw a draw is replayed again from its start with no
checkpoint restored (``runner._from_the_start``), so every value equals a full run of today's
script (the contract's oracle), and the query says so (``StatementDrawWarning``). A line that
wraps an old one (``y = flor.log("y", net(x))`` where the run had ``y = net(x)``) draws what the
run drew: not guarded, no warning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from florsql.engine.session import Engine
from florsql.errors import StatementDrawWarning
from florsql.replay import LocalExecutor, PlanExecutor
from florsql.store.replays import from_top
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


def _values(
    repo: Path, sql: str, replay: str, workers: int = 1
) -> tuple[list[dict[str, Any]], list[Any]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        executor = PlanExecutor(LocalExecutor(workers))
        with Engine(repo, replay=replay, executor=executor) as eng:
            rows = eng.execute(sql).table.to_pylist()
    return rows, list(caught)


def _case(
    tmp_path: Path, old: str, today: str, oracle: str, sql: str, workers: int = 1
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", today)
    got, said = _values(repo, sql, "auto", workers)
    ref = make_repo(tmp_path / "o", {"train.py": oracle})
    run_script(ref, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    want, _ = _values(ref, sql, "off")
    return got, want, said


def _only(rows: list[dict[str, Any]], *names: str) -> list[tuple[Any, ...]]:
    """The hindsight columns of ``rows`` (the recorded ones beside them stay the recorded
    run's, which a run of today's script does not repeat after a draw)."""
    return [tuple(r[n] for n in names) for r in rows]


def _drew(said: list[Any], name: str, generator: str) -> bool:
    return any(
        issubclass(w.category, StatementDrawWarning)
        and name in str(w.message)
        and generator in str(w.message)
        for w in said
    )


# ~30 s: tests/test_replay_rng_guard_s35.py asks a DataLoader validation in the default run
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_validation_metric_over_a_dataloader_epoch_level(tmp_path: Path, workers: int) -> None:
    after = '        flor.log("ep_loss", loss.item())\n'
    sql = "SELECT epoch, ep_loss, val_acc FROM logs ORDER BY epoch"
    today = _add(TORCH, after, VAL)
    got, want, said = _case(tmp_path, TORCH, today, today, sql, workers)
    assert _only(got, "epoch", "val_acc") == _only(want, "epoch", "val_acc") and len(got) == 4
    assert _drew(said, "val_acc", "torch's global generator"), [str(w.message) for w in said]
    # replayed from its start: planned so since session 53 (the runner did it again after
    # tasks that skipped iterations before, and said so)
    started = [
        d
        for d in (tmp_path / "r" / ".florsql" / "replays").glob("*/*/done.json")
        if from_top(json.loads(d.read_text()).get("steps") or [])
    ]
    assert started or any("replayed again from their start" in str(w.message) for w in said)
    # the recorded trajectory (the statement made RNG-neutral by hand) is another answer
    neutral = _add(TORCH, after, NEUTRAL)
    other, _, _ = _case(tmp_path / "n", neutral, neutral, neutral, sql)
    assert _only(other, "val_acc") != _only(got, "val_acc")


@pytest.mark.slow
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
    # (before session 34 neither oracle held here: some checkpoints restored after draws)
    cols = ("epoch", "step", "w0", "val_acc")
    assert _only(got, *cols) == _only(want, *cols) and len(got) > 4
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
    got, want, said = _case(tmp_path, PYRANDOM, today, today, sql)
    cols = ("epoch", "noise", "w2") if extra else ("epoch", "noise")
    assert _only(got, *cols) == _only(want, *cols) and len(got) >= 4
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


DROPOUT = """
import torch
from torch import nn
import florsql as flor
torch.manual_seed(0)
X = torch.randn(32, 6); Y = (X.sum(1) > 0).long()
net = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.3), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(3)):
        for idx in flor.loop("step", torch.randperm(32).split(8)):
            out = net(X[idx])
            loss = nn.functional.cross_entropy(out, Y[idx])
            opt.zero_grad(); loss.backward(); opt.step()
        flor.log("ep_loss", loss.item())
"""


def test_a_line_wrapping_an_old_one_draws_what_the_run_drew(tmp_path: Path) -> None:
    """``loss = flor.log("tl", ...)`` around the old ``loss = ...`` through dropout: the run drew
    that mask too, so nothing is replayed again and nothing warns."""
    wrapped = DROPOUT.replace(
        "            loss = nn.functional.cross_entropy(out, Y[idx])",
        '            loss = flor.log("tl", nn.functional.cross_entropy(out, Y[idx]))',
    )
    assert wrapped != DROPOUT
    sql = "SELECT epoch, step, tl FROM logs WHERE tl IS NOT NULL ORDER BY epoch, step"
    got, want, said = _case(tmp_path, DROPOUT, wrapped, wrapped, sql)
    assert got == want and len(got) == 12
    assert not any(issubclass(w.category, StatementDrawWarning) for w in said)


def test_a_final_evaluation_after_the_loop_is_not_replayed_from_the_start(
    tmp_path: Path,
) -> None:
    """A draw after the outer loop (a test accuracy over a DataLoader once training ends)
    shifts nothing a checkpoint puts back: the replay from the last checkpoint is exact, and
    no run is replayed again from its start."""
    final = 'flor.log("test_acc", evaluate())\n'
    today = TORCH + final
    sql = "SELECT test_acc FROM logs WHERE test_acc IS NOT NULL"
    got, want, said = _case(tmp_path, TORCH, today, today, sql)
    assert got == want and len(got) == 1
    assert _drew(said, "test_acc", "torch")
    assert not any("replayed again from their start" in str(w.message) for w in said)
