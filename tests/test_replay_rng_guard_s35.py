"""The RNG guard around today's statements where their code leaves early (session 35).

A placed piece that is a compound statement (a new ``if`` around today's statement, carried
whole) or a simple one that jumps (``return flor.log(...)``) may leave through ``continue``,
``break``, ``return`` or ``raise``. The guard's end call after it was then skipped, so a draw
from a global RNG in it went unnoticed: the run was not replayed again from its start, and the
values after a restored checkpoint followed the recorded run, not today's script (silently).
Each case compares the hindsight columns with a full run of today's script (the old code
draws from all three generators, which the checkpoints capture, but logs nothing drawn, so
verification has nothing to catch: before session 35 the values
were the recorded generator's, silently).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from florsql.errors import StatementDrawWarning
from tests.test_replay_rng_guard import _add, _case, _drew, _only

SCRIPT = """
import random
import numpy as np
import torch
import florsql as flor
random.seed(1); np.random.seed(1); torch.manual_seed(1)
w = 0.0
def upd(w, x):
    return round(w * 0.9 + x * 0.1, 9)
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(4)):
        jitter = (random.random(), np.random.rand(), torch.rand(1))  # logged by no one
        for i in flor.loop("step", range(4)):
            w = upd(w, epoch + i)
            flor.log("w", w)
        flor.log("ep_w", w)
"""
STEP = '            flor.log("w", w)\n'

CASES = {
    "continue": (
        STEP,
        "            if i == 1:\n"
        '                flor.log("noise", random.random())\n'
        "                continue\n",
    ),
    "break": (
        STEP,
        "            if i == 2:\n"
        '                flor.log("noise", float(np.random.rand()))\n'
        "                break\n",
    ),
    "with_continue": (
        STEP,
        "            with torch.no_grad():\n"
        '                flor.log("noise", float(torch.rand(1)))\n'
        "                continue\n",
    ),
    "return": (
        "def upd(w, x):\n",
        '    if x > 3:\n        flor.log("noise", random.random())\n        return w\n',
    ),
}


@pytest.mark.parametrize("case", [
    "continue",
    pytest.param("break", marks=pytest.mark.slow),
    pytest.param("with_continue", marks=pytest.mark.slow),
    pytest.param("return", marks=pytest.mark.slow),
])  # fmt: skip
def test_a_draw_in_a_piece_left_early_is_noticed(tmp_path: Path, case: str) -> None:
    after, lines = CASES[case]
    today = _add(SCRIPT, after, lines)
    sql = "SELECT epoch, step, noise, w FROM logs WHERE epoch >= 2 ORDER BY epoch, step"
    cols = ("epoch", "step", "noise")
    got, want, said = _case(tmp_path, SCRIPT, today, today, sql)
    # (rows a ``break`` cut from today's run stay the recorded run's, without noise)
    got, want = (_only([r for r in rows if r["noise"] is not None], *cols) for rows in (got, want))
    assert got == want and len(got) >= 2, (got, want)
    assert _drew(said, "noise", "")


def test_the_guard_of_a_jump_or_a_block_ends_in_a_finally() -> None:
    """``guarded`` keeps a piece's text (a triple-quoted string in it as it was) one level
    deeper in a ``try`` whose ``finally`` ends the guard; a simple statement that does not
    jump keeps its line, joined by ``;``."""
    from florsql.propagate.model import Placement, Propagation, guarded

    old = "import florsql as flor\ndef f(y):\n    return y\n"
    new = (
        "import florsql as flor\ndef f(y):\n"
        "    a = y + 1\n"
        "    if y:\n"
        '        flor.log("t", """x\n  y""")\n'
        '        return flor.log("r", y)\n'
        '    return flor.log("z", y)\n'
        "    return y\n"
    )
    prop = Propagation(
        old,
        new,
        (
            Placement("a", 3, 3, (), pieces=((3, 3),)),
            Placement("t", 5, 5, (), pieces=((4, 7),)),
            Placement("z", 8, 8, (), pieces=((8, 8),)),
        ),
    )
    g = guarded(prop)
    begin, end = '__import__("florsql")._hindsight_begin', '__import__("florsql")._hindsight_end'
    lines = g.source.splitlines()
    assert lines[2] == f"    {begin}('a'); a = y + 1; {end}('a')"
    assert lines[3:13] == [
        f"    {begin}('t')",
        "    try:",
        "        if y:",
        '            flor.log("t", """x',
        '  y""")',
        '            return flor.log("r", y)',
        "    finally:",
        f"        {end}('t')",
        f"    {begin}('z')",
        "    try:",
    ]
    assert lines[13:16] == [
        '        return flor.log("z", y)',
        "    finally:",
        f"        {end}('z')",
    ]
    assert [p.pieces for p in g.placed] == [((3, 3),), ((6, 9),), ((14, 14),)]
    compile(g.source, "train.py", "exec")


@pytest.mark.slow
@pytest.mark.parametrize("sql", [
    "SELECT epoch, step, w0 FROM logs WHERE epoch >= 2 AND step = 5 ORDER BY epoch, step",
    "SELECT epoch, step, w0, val_acc FROM logs WHERE epoch >= 2 AND step = 5 ORDER BY epoch",
])  # fmt: skip
def test_a_statement_replayed_without_another_that_draws(tmp_path: Path, sql: str) -> None:
    """A replay places only the statements of the names the query needs (``val_acc`` is not
    needed where ``step = 5``: its rows have no step); ``w0`` followed the recorded run, not
    today's script, whose validation loop over a DataLoader draws from torch's generator
    every epoch (before session 35's gap-2 fix: ``w0`` at epoch 2 step 5 -3.783543 replayed,
    -3.77595 in a run of today's script, no warning). Today's other statements the version
    lacks now run beside it (tests/test_replay_companions.py)."""
    from tests.test_replay_rng_guard import GRAD, TORCH, VAL

    today = _add(_add(TORCH, '        flor.log("ep_loss", loss.item())\n', VAL),
                 '            flor.log("loss", loss.item())\n', GRAD)  # fmt: skip
    got, want, said = _case(tmp_path, TORCH, today, today, sql)
    assert _only(got, "epoch", "step", "w0") == _only(want, "epoch", "step", "w0") and got
    assert _drew(said, "val_acc", "torch"), [str(w.message) for w in said]


@pytest.mark.slow
def test_a_task_from_the_top_that_drew_warns_of_no_nondeterminism(tmp_path: Path) -> None:
    """A run whose one task ran from the top already is not replayed again, but its old
    statements depart from the recording after the draw all the same: by design, as in a run
    replayed from its start (``departed``). Before session 35 they raised a
    ``NondeterminismWarning`` ("ep_loss at epoch=1 was 0.5976 when recorded and 0.5837 in
    replay") beside exact values."""
    from florsql.errors import NondeterminismWarning
    from tests.test_replay_rng_guard import GRAD, TORCH, VAL

    today = _add(_add(TORCH, '        flor.log("ep_loss", loss.item())\n', VAL),
                 '            flor.log("loss", loss.item())\n', GRAD)  # fmt: skip
    sql = "SELECT epoch, step, w0, val_acc FROM logs WHERE epoch >= 2 ORDER BY epoch, step"
    got, want, said = _case(tmp_path, TORCH, today, today, sql)
    cols = ("epoch", "step", "w0", "val_acc")
    assert _only(got, *cols) == _only(want, *cols) and len(got) > 4
    assert _drew(said, "val_acc", "torch")
    assert not [w for w in said if issubclass(w.category, NondeterminismWarning)], [
        str(w.message) for w in said
    ]


OBJECTS = """
import random
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import florsql as flor
torch.manual_seed(0); random.seed(0); np.random.seed(0)
rng = np.random.default_rng(0)
prng = random.Random(3)
g = torch.Generator().manual_seed(5)
X = torch.randn(64, 6); Y = (X.sum(1) > 0).long()
train = DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True, generator=g)
net = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.3), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        net.train()
        scale = 1.0 + 0.01 * float(rng.normal()) + 0.01 * prng.random()
        for xb, yb in flor.loop("step", train):
            loss = nn.functional.cross_entropy(net(xb * scale), yb)
            opt.zero_grad(); loss.backward(); opt.step()
        flor.log("ep_loss", round(loss.item(), 6))
"""
EP_LOSS = '        flor.log("ep_loss", round(loss.item(), 6))\n'


@pytest.mark.parametrize("name, line, said_as", [
    ("nz", '        flor.log("nz", round(float(rng.normal()), 6))\n', "rng (a Generator"),
    pytest.param("pr", '        flor.log("pr", round(prng.random(), 6))\n', "prng (a Random",
                 marks=pytest.mark.slow),
])  # fmt: skip
def test_a_draw_from_a_generator_object_the_old_code_draws_from(
    tmp_path: Path, name: str, line: str, said_as: str
) -> None:
    """``rng.normal()`` where the loop draws from ``rng`` (a numpy ``Generator``; a
    ``random.Random(3)``): the next epoch's ``scale`` moves in a run of today's script. Before
    session 35 the guard watched only the global RNGs: ``nz`` at epochs 2, 3 replayed
    0.1049, -0.535669 against 0.361595, 0.947081 in today's script (``pr``: 0.60392, 0.62572
    against 0.065529, 0.837469), with no warning."""
    today = _add(OBJECTS, EP_LOSS, line)
    sql = f"SELECT epoch, ep_loss, {name} FROM logs WHERE epoch >= 2 ORDER BY epoch"
    got, want, said = _case(tmp_path, OBJECTS, today, today, sql)
    assert _only(got, "epoch", name) == _only(want, "epoch", name) and len(got) == 2
    assert _drew(said, name, said_as), [str(w.message) for w in said]


@pytest.mark.slow
def test_a_generator_todays_code_makes_is_its_own(tmp_path: Path) -> None:
    """``vg = torch.Generator().manual_seed(1)`` carried to the top with the statement drawing
    from it: the old code never draws from ``vg``, so nothing warns (the piece before the
    script's first ``flor`` call is guarded too, and marks ``vg`` as today's)."""
    made = "g = torch.Generator().manual_seed(5)\n"
    today = _add(
        _add(
            OBJECTS,
            EP_LOSS,
            '        flor.log("vn", round(float(torch.rand(1, generator=vg)), 6))\n',
        ),
        made,
        "vg = torch.Generator().manual_seed(1)\n",
    )
    sql = "SELECT epoch, ep_loss, vn FROM logs WHERE epoch >= 2 ORDER BY epoch"
    got, want, said = _case(tmp_path, OBJECTS, today, today, sql)
    assert _only(got, "epoch", "vn") == _only(want, "epoch", "vn") and len(got) == 2
    assert not any(issubclass(w.category, StatementDrawWarning) for w in said)


CAUGHT = """
import math
import random
import florsql as flor
random.seed(1)
w = 0.0
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(4)):
        jitter = random.random()
        for i in flor.loop("step", range(3)):
            w = round(w * 0.9 + (epoch + i) * 0.1, 9)
            try:
                flor.log("w", w)
            except ValueError:
                pass
        flor.log("ep_w", w)
"""


@pytest.mark.slow
def test_a_statement_that_raises_after_drawing_caught_by_the_old_code(tmp_path: Path) -> None:
    """Today's ``flor.log("noise", random.random() + math.sqrt(-1))`` in the old ``try`` draws,
    then raises; the old code catches it, so the guard's end never runs. The next begin of
    that name in the same frame ends it first: the draw counts, and the run is replayed from
    its start, so ``j`` (the old ``jitter``, drawn at each epoch's start after the statement's
    draws of the epoch before) is today's script's."""
    today = _add(
        _add(CAUGHT, '                flor.log("w", w)\n',
             '                flor.log("noise", random.random() + math.sqrt(-1))\n'),
        '        flor.log("ep_w", w)\n',
        '        flor.log("j", round(jitter, 9))\n',
    )  # fmt: skip
    sql = "SELECT epoch, ep_w, j, noise FROM logs WHERE epoch >= 2 ORDER BY epoch"
    got, want, said = _case(tmp_path, CAUGHT, today, today, sql)
    assert _only(got, "epoch", "j") == _only(want, "epoch", "j") and len(got) == 2
    assert _drew(said, "noise", "Python's random module"), [str(w.message) for w in said]


def test_the_guard_ends_what_an_exception_left_and_not_a_recursion() -> None:
    """:class:`RngGuard` in one process, on Python's own generator: a piece begun again in
    the same frame with no end between (an exception the old code caught) is ended first and
    its draw counts; a recursion's outer piece stays open until its own end."""
    import random
    import sys

    from florsql.record.rng_guard import RngGuard

    guard = RngGuard()
    here = sys._getframe()
    guard.begin("a", here)
    random.random()  # then the statement raised: no end
    guard.begin("a", here)
    guard.end("a", here)
    assert guard.moved == {"a": {"python"}}

    guard = RngGuard()

    def piece(depth: int) -> None:
        guard.begin("r", sys._getframe())
        if depth:
            piece(depth - 1)
        else:
            assert guard.moved == {}  # the outer pieces are still open
        guard.end("r", sys._getframe())

    guard.begin("r", here)
    random.random()
    piece(2)
    assert guard.moved == {}
    guard.end("r", here)
    assert guard.moved == {"r": {"python"}}


class _Trainer:
    def __init__(self) -> None:
        import random

        import numpy as np
        import torch

        self.rng = random.Random(0)
        self.np_rng = np.random.default_rng(0)
        self.gen = torch.Generator().manual_seed(0)


def test_the_guard_sees_a_generator_held_as_an_attribute() -> None:
    """``sub = trainer.rng.sample(range(16), 8)`` where the old code draws its augmentation
    from ``trainer.rng`` (s36): the guard compared only the generators a frame names, so the
    draw went unnoticed and a task from a later checkpoint drew from the recorded generator
    (``val_sub`` at epoch 1: 0.6687, a run of today's script 0.6444, with a
    NondeterminismWarning only). One attribute down is watched now, named ``trainer.rng``."""
    import sys

    import torch

    from florsql.record.rng_guard import RngGuard

    trainer = _Trainer()
    here = sys._getframe()
    guard = RngGuard()
    guard.begin("sub", here)
    trainer.rng.sample(range(16), 8)
    trainer.np_rng.normal()
    torch.rand(1, generator=trainer.gen)
    guard.end("sub", here)
    assert {m.split(" ")[0] for m in guard.moved["sub"]} == {
        "trainer.rng",
        "trainer.np_rng",
        "trainer.gen",
    }
    guard.begin("read", here)
    float(trainer.rng.getstate()[1][0])
    guard.end("read", here)
    assert "read" not in guard.moved


def test_the_guard_sees_a_generator_a_submodule_holds() -> None:
    """Today's ``net(XV)`` in training mode where a ``DropPath`` submodule draws its masks from
    its own ``torch.Generator`` (s36): ``train_mode_val`` at epoch 1 was 0.5093 for a run of
    today's script's 0.5196, under a NondeterminismWarning only. A model's submodules are
    looked into (once per model: where their generators are)."""
    import sys

    import torch

    from florsql.record.rng_guard import RngGuard

    class Drop(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gen = torch.Generator().manual_seed(0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * (torch.rand(x.shape, generator=self.gen) > 0.5)

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(Drop()))
    here = sys._getframe()
    guard = RngGuard()
    guard.begin("val", here)
    net(torch.ones(3, 2))
    guard.end("val", here)
    assert [m.split(" ")[0] for m in guard.moved["val"]] == ["net.1.0.gen"]
    net.eval()
    guard.begin("eval", here)
    net[0](torch.ones(3, 2))
    guard.end("eval", here)
    assert "eval" not in guard.moved
