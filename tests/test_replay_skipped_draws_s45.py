"""A draw of today's code in iterations a task skips is seen, and values stored before a draw
was seen stop counting once it is.

Session 44's note left it open: today's epoch-level ``if epoch % 2 == 1: vi =
random.sample(...)`` beside a value logged every epoch. A query for epoch 2 restored the
checkpoint after epoch 1 and ran epoch 2 alone; the guard never ran the draw of epoch 1, so
epoch 2 followed the recorded generator where a run of today's script had drawn (``w0``
-2.521895 for -2.48527), silently. Now a task that skips iterations while today's placed
texts may draw in some iterations and not in others (``pieces_uneven``: a branch around a
call) has its run replayed from its start, unless a replay of the same code from its start saw
no draw that far (``runner._unseen``). And where a later replay sees a draw (a helper whose
own branch draws, which no text analysis of today's statement sees), earlier tasks of the
same code that skipped iterations are set aside (``runner._stale``: ``rejected.json``, their
rows ``rejected`` in the index), their iterations stored again from the start: the second
query served the first's -2.521895 for epoch 2 before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import florsql
from florsql.propagate.identity import pieces_uneven
from florsql.store.replays import from_top
from tests.helpers import make_repo, run_script, write

OLD = """import random
import torch
from torch import nn
import florsql as flor

torch.set_num_threads(1)
seed = flor.arg("seed", 0)
torch.manual_seed(seed)
random.seed(seed)
X = torch.randn(64, 8)
Y = (X[:, :2].sum(1) > 0).long()
net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
order = list(range(64))


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(5)):
        random.shuffle(order)
        for b in flor.loop("step", range(8)):
            idx = order[b * 8 : (b + 1) * 8]
            loss = loss_fn(net(X[idx] + 0.05 * torch.randn(8, 8)), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
#@
        flor.log("lr", opt.param_groups[0]["lr"])
"""
GATED = """        if epoch % 2 == 1:
            vi = random.sample(range(64), 8)
            flor.log("probe", sum(vi))
        flor.log("w0", round(net[0].weight.sum().item(), 6))
"""
HELPER = """        h = net[0].weight
        flor.log("probe", round(getattr(torch, "dropout")(h, 0.5, epoch % 2 == 1).sum().item(), 6))
        flor.log("w0", round(net[0].weight.sum().item(), 6))
"""
ENV = {"FLORSQL_CHECKPOINT_PERIOD": "1", "PYTHONHASHSEED": "0"}
SQL = "SELECT seed, epoch, w0, probe FROM logs WHERE w0 IS NOT NULL ORDER BY 1, 2"


def _repos(tmp_path: Path, new: str) -> tuple[Path, list[tuple]]:
    repo = make_repo(tmp_path / "r", {"train.py": OLD.replace("#@\n", "")})
    oracle = make_repo(tmp_path / "o", {"train.py": OLD.replace("#@\n", new)})
    for seed in ("0", "1"):
        run_script(repo, "train.py", "--seed", seed, **ENV)
        run_script(oracle, "train.py", "--seed", seed, **ENV)
    write(repo / "train.py", OLD.replace("#@\n", new))
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(SQL).fetchall()
    return repo, want


@pytest.mark.filterwarnings("ignore::florsql.errors.StatementDrawWarning")
def test_a_draw_only_in_iterations_the_task_skips(tmp_path: Path) -> None:
    repo, want = _repos(tmp_path, GATED)
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        at2 = cur.execute(
            "SELECT seed, epoch, w0, probe FROM logs WHERE epoch = 2 ORDER BY 1"
        ).fetchall()
        assert at2 == [r for r in want if r[1] == 2]
        assert cur.execute(SQL).fetchall() == want


@pytest.mark.filterwarnings("ignore::florsql.errors.StatementDrawWarning")
def test_values_stored_before_a_draw_was_seen_stop_counting(tmp_path: Path) -> None:
    repo, want = _repos(tmp_path, HELPER)
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        # the helper's branch is the old code's: today's line branches nowhere, but calls
        # what may draw (session 48), so since session 53 the planner replays the run from its
        # start (it restored the checkpoint after epoch 1 before, missed the draw, and the
        # runner replayed the run again from its start, setting that task aside)
        cur.execute("SELECT seed, epoch, w0 FROM logs WHERE epoch = 2").fetchall()
        w0 = "SELECT seed, epoch, w0 FROM logs WHERE w0 IS NOT NULL ORDER BY 1, 2"
        assert cur.execute(w0).fetchall() == [r[:3] for r in want]
        assert cur.execute(
            "SELECT seed, epoch, w0, probe FROM logs WHERE epoch = 2 ORDER BY 1"
        ).fetchall() == [r for r in want if r[1] == 2]
    aside = list((repo / ".florsql" / "replays").glob("*/*/rejected.json"))
    started = [
        d
        for d in (repo / ".florsql" / "replays").glob("*/*/done.json")
        if from_top(json.loads(d.read_text()).get("steps") or [])
    ]
    assert aside or started, "the first query's tasks were set aside, or ran from the start"


def test_which_placed_texts_are_uneven() -> None:
    head = "import florsql as flor\nwith flor.checkpointing():\n"
    head += "    for e in flor.loop('epoch', range(4)):\n"
    gated = head + "        if e % 2:\n            flor.log('v', f(e))\n"
    assert pieces_uneven(gated, ((4, 5),)) == "gated"
    with_else = gated + "        else:\n            g()\n"
    assert pieces_uneven(with_else, ((4, 7),)) == "uneven"
    # since session 48 a call that may draw, unbranched, may draw in some iterations only
    # (library code branches too: dropout whose p the loop anneals to 0; sweep P)
    steady = head + "        flor.log('v', f(e))\n"
    assert pieces_uneven(steady, ((4, 4),)) == "uneven"
    steady_quiet = head + "        flor.log('v', abs(e) + len(str(e)))\n"
    assert pieces_uneven(steady_quiet, ((4, 4),)) is None
    quiet = head + "        if e % 2:\n            flor.log('v', e * 2)\n"
    assert pieces_uneven(quiet, ((4, 5),)) is None
    after = head + "        pass\n    if e:\n        flor.log('v', f(e))\n"
    assert pieces_uneven(after, ((5, 6),)) is None  # after the loop: every task runs it
    early = head + "        for x in xs:\n            if x:\n                break\n"
    early += "            flor.log('v', f(x))\n"
    assert pieces_uneven(early, ((4, 7),)) == "uneven"
    helper = "import florsql as flor\ndef h(e):\n    if e:\n        flor.log('v', f(e))\n"
    assert pieces_uneven(helper, ((3, 4),)) == "gated"
