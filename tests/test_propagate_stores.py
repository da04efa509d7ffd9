"""New code that stores into what the old version holds, through an attribute or a subscript.

Found in session 30: today's step loop halves the learning rate (``opt.param_groups[0]["lr"]
*= 0.5``) and logs it. Propagation carried the halving into every older version with the log
statement: the replayed runs trained with another learning rate than the ones recorded, from
checkpoints that were the recorded runs', and the values logged were neither the recorded run's
learning rate nor what a full re-run of the patched version logs; silently. The same held for
``net.weight.data *= 0.99`` and for a config key the old code reads (``cfg["lr"] = ...``). Such a
statement is now refused, as an in-place call is (``clip_grad_norm_``): the column is NULL for
those versions, with a warning that names the statement. An attribute or a key that is today's
own (``self.ep_loss = 0.0``, ``stats["gn"] = gn``) is no obstacle: no old code reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from florsql.propagate import propagate
from tests.helpers_replay import Recorder, fetch
from tests.test_stranger_s25 import (  # noqa: F401  (fixtures used by name)
    Compare,
    record_versions,
    recorder,
    workers,
)
from tests.test_stranger_s29 import HEAD, two

OLD = """import torch
import florsql as flor

import logging

log = logging.getLogger("train")
cfg = {"lr": 0.1, "clip": 1.0}
stats = {"seen": 0}
net = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"])


class Trainer:
    def __init__(self, net):
        self.net = net

    def fit(self):
        with flor.checkpointing(model=self.net, optimizer=opt):
            for epoch in flor.loop("epoch", range(4)):
                for s in flor.loop("step", range(3)):
                    loss = self.net(torch.ones(2)).sum()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    stats["seen"] += 1
                    flor.log("loss", loss.item())
                INNER
                flor.log("done", epoch)


Trainer(net).fit()
"""

# the same loop at module level
TOP = (
    OLD.split("class Trainer")[0]
    + """self = type("Trainer", (), {})()
self.net = net
"""
    + "\n".join(
        line[8:]
        for line in OLD.split("    def fit(self):\n")[1].split("\n\nTrainer(net)")[0].splitlines()
    )
    + "\n"
)

STEP_ANCHOR = '                    flor.log("loss", loss.item())\n'


def _indent(code: str, by: int) -> str:
    """``code`` (lines separated by ``;`` or newlines, nested by 4 spaces) indented ``by``."""
    lines = [ln for part in code.split("; ") for ln in part.split("\n")]
    return "".join(f"{' ' * by}{ln}\n" for ln in lines)


def _new(step: str = "", after: str = "", top: bool = False) -> str:
    """Today's version: ``step`` after the step loop's log, ``after`` after the step loop."""
    text, cut = (TOP, 8) if top else (OLD, 0)
    if step:
        text = text.replace(STEP_ANCHOR[cut:], STEP_ANCHOR[cut:] + _indent(step, 20 - cut))
    inner = " " * (16 - cut) + "INNER\n"
    return text.replace(
        inner, _indent(after, 16 - cut) if after else inner.replace("INNER", "pass")
    )


REFUSED = [
    # the learning rate changed where the old run never changed it, then logged
    ('opt.param_groups[0]["lr"] *= 0.5; flor.log("lr", opt.param_groups[0]["lr"])', "", "opt"),
    ("", 'opt.param_groups[0]["lr"] = 0.01; flor.log("lr", opt.param_groups[0]["lr"])', "opt"),
    # the model's weights changed through .data
    ('net.weight.data *= 0.99; flor.log("w", net.weight.sum().item())', "", "net"),
    (
        'self.net.bias.data = self.net.bias.data * 0; flor.log("b", float(self.net.bias))',
        "",
        "self",
    ),
    # a key the old code reads
    ("", 'cfg["lr"] = cfg["lr"] / 2; flor.log("lr", cfg["lr"])', "cfg"),
    # an update inside a new compound statement carried whole
    (
        'if s == 2:\n    opt.param_groups[0]["lr"] *= 0.5; '
        'flor.log("lr", opt.param_groups[0]["lr"])',
        "",
        "opt",
    ),
    # an attribute a library object has, even where today's file also sets it itself
    ('net.training = False; flor.log("tr", net.training)', "", "net"),
    # through a name today's code binds to a part of an old object
    ('g = opt.param_groups[0]; g["lr"] *= 0.5; flor.log("lr", g["lr"])', "", "'g', a part"),
    (
        "",
        'for g in opt.param_groups:\n    g["lr"] *= 0.5\n    lr = g["lr"]; flor.log("lr", lr)',
        "'g', a part",
    ),
    # a method of an old object called by a new compound statement that travels whole
    (
        "if s == 2:\n    best = loss.item()\n    opt.zero_grad()\nelse:\n    best = 0.0; "
        'flor.log("best", best)',
        "",
        "opt",
    ),
]


@pytest.mark.parametrize("top", [False, True], ids=["in_a_method", "at_module_level"])
@pytest.mark.parametrize(("step", "after", "root"), REFUSED)
def test_a_carried_store_into_an_old_object_is_refused(
    step: str, after: str, root: str, top: bool
) -> None:
    r = propagate(_new(step, after, top), _new(top=top))
    assert not r.placed, r.source
    assert len(r.failed) == 1, r.failed
    reason = r.failed[0].reason
    want = root if root.startswith("'") else repr(root)
    assert f"changes {want}" in reason and "would not be the one recorded" in reason, reason


PLACED = [
    # an attribute today's code gives the trainer (the old file never names it)
    ("self.tot = getattr(self, 'tot', 0.0) + loss.item(); flor.log(\"tot\", self.tot)", ""),
    # a key the old file never spells, in an old dict
    ('stats["gn"] = float(net.weight.grad.norm()); flor.log("gn", stats["gn"])', ""),
    # an object today's code makes
    ('m = {"x": 0}; m["x"] += loss.item(); flor.log("x", m["x"])', ""),
    # the learning rate read, not changed
    ('flor.log("lr", opt.param_groups[0]["lr"])', ""),
    # a new compound statement that travels whole, writing out through a logger
    (
        "if s == 2:\n    best = loss.item()\n    log.info(best)\nelse:\n    best = 0.0; "
        'flor.log("best", best)',
        "",
    ),
    # an object made by today's code, changed by a method
    ('seen = []; seen.append(loss.item()); flor.log("n", len(seen))', ""),
]


@pytest.mark.parametrize("top", [False, True], ids=["in_a_method", "at_module_level"])
@pytest.mark.parametrize(("step", "after"), PLACED)
def test_a_store_into_what_only_today_has_is_placed(step: str, after: str, top: bool) -> None:
    r = propagate(_new(step, after, top), _new(top=top))
    assert not r.failed, r.failed
    assert len(r.placed) == 1


def test_a_store_the_old_version_makes_too_is_no_obstacle() -> None:
    """The old version halves the learning rate as well: today's statement reads it after the
    old halving, which is not carried (it is old code)."""
    old = _new('opt.param_groups[0]["lr"] *= 0.5')
    new = _new('opt.param_groups[0]["lr"] *= 0.5; flor.log("lr", opt.param_groups[0]["lr"])')
    r = propagate(new, old)
    assert [p.name for p in r.placed] == ["lr"] and not r.failed
    assert r.placed[0].carried == ()


# --- end to end: recorded runs, replay, the oracle ---------------------------------------------

NET = """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
DECAY        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""

A = HEAD + NET.replace("DECAY", "")
B = HEAD + NET.replace(
    "DECAY",
    '            opt.param_groups[0]["lr"] *= 0.9\n'
    '            flor.log("lr", opt.param_groups[0]["lr"])  # hindsight\n',
)


@pytest.mark.slow
def test_a_learning_rate_decay_today_is_not_carried_into_a_version_without_it(
    recorder: Recorder,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Version A trains at a fixed learning rate; version B decays it every step, and today's
    B logs it. A's runs get NULL for ``lr``, with a warning that names the decay (before session
    30: the decay was carried into A, whose replayed runs then trained at another rate from A's
    checkpoints, silently). B's runs, and ``wn`` in every run, equal the hand-patched oracle's."""
    history, oracle = record_versions(recorder, tmp_path, two(A, B))
    c = Compare(history, oracle)
    problems: list[str] = []
    try:
        c("SELECT seed, epochs, epoch, wn FROM logs WHERE wn IS NOT NULL")
        sql = "SELECT seed, epochs, epoch, step, lr FROM logs WHERE step IS NOT NULL"
        want, _ = fetch(c.oracle, sql)
        got, notes = fetch(c.history, sql)
        older = {(0, 4), (1, 4)}  # (seed, epochs) of A's runs
        assert len(got) == len(want) > 0
        for row in got:
            if (row[0], row[1]) in older:
                if row[-1] is not None:
                    problems.append(f"want NULL for A's run, got {row}")
            elif row not in want:
                problems.append(f"B's row {row} is not the oracle's")
        if not any("lr" in n and "changes 'opt' in place" in n for n in notes):
            problems.append(f"NULL without a warning naming the decay: {notes}")
    finally:
        c.close()
    c.items += problems
    c.assert_none()


# --- a module's mode switched by new code before today's statement ----------------------------

EVAL_OLD = """import torch
import florsql as flor

net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
XV = torch.ones(3, 2)


def evaluate(m):
    with torch.no_grad():
        return float(m(XV).sum())


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        net.train()
        for s in flor.loop("step", range(3)):
            loss = net(torch.ones(2)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        MID
        print(epoch)
"""

MODE_CARRIED = [
    # a whole evaluation block today's code added, in evaluation mode, then back to training
    "net.eval()\nwith torch.no_grad():\n    val = net(XV).sum().item()\nnet.train()\n"
    'flor.log("val", val)',
    # switched back after the statement, or never (the next epoch's net.train() does)
    'net.eval()\nval = evaluate(net)\nflor.log("val", val)\nnet.train()',
    'net.eval()\nval = evaluate(net)\nflor.log("val", val)',
    'net.train(False)\nflor.log("val", evaluate(net))\nnet.train(True)',
    'net.eval()\nwith torch.no_grad():\n    flor.log("h", float(net[0](XV).sum()))\nnet.train()',
]


@pytest.mark.parametrize("mid", MODE_CARRIED)
def test_a_mode_switch_today_s_code_added_travels_between_a_save_and_a_restore(mid: str) -> None:
    """Before session 30 the statement went in alone, and computed in training mode (dropout
    on) where today's code computes in evaluation mode: another value, silently. Now the switch
    travels with it, after ``flor._save_modes(net)``, and ``flor._restore_modes(net)`` follows
    the log statement: every submodule's flag as the old run had it, so the old run goes on as
    recorded (dropout in evaluation mode draws nothing from the RNG)."""
    new = EVAL_OLD.replace("MID", mid.replace("\n", "\n" + " " * 8))
    r = propagate(new, EVAL_OLD.replace("        MID\n", ""))
    assert not r.failed, r.failed
    (p,) = r.placed
    switch = mid.split("\n")[0]
    assert p.carried[0] == switch
    tail = r.source.split('flor.log("loss", loss.item())\n')[1]
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    assert lines[:2] == ["flor._save_modes(net)", switch], tail
    log_at = next(
        k for k, ln in enumerate(lines) if ln.startswith("flor.log(") or "flor.log(" in ln
    )
    assert "flor._restore_modes(net)" in lines[log_at + 1 :][:1], tail
    assert lines[-1] == "print(epoch)" and "net.train()" not in lines, tail


def test_a_mode_switch_apart_from_what_runs_the_module_is_refused() -> None:
    """The switch and the evaluation would go in at different places, old code between them
    (here the old step loop): that code would run in evaluation mode. Refused, naming the
    switch."""
    new = EVAL_OLD.replace("        net.train()\n", "        net.train()\n        net.eval()\n")
    new = new.replace("MID", 'flor.log("val", evaluate(net))')
    r = propagate(new, EVAL_OLD.replace("        MID\n", ""))
    assert not r.placed, r.source
    (f,) = r.failed
    assert "which today's code switches to evaluation mode before it (net.eval()" in f.reason
    assert "old code running between them" in f.reason, f.reason


MODE_PLACED = [
    # parameters read, not the forward pass: the mode does not matter
    'net.eval()\nflor.log("wn", float(net[0].weight.norm()))\nnet.train()',
    # the old version switches too: nothing new
    None,
]


@pytest.mark.parametrize("mid", MODE_PLACED)
def test_a_mode_switch_that_does_not_matter_or_is_old_is_no_obstacle(mid: str | None) -> None:
    if mid is None:  # the old version has the evaluation block; today's code logs inside it
        block = "net.eval()\nval = evaluate(net)\nnet.train()"
        old = EVAL_OLD.replace("MID", block.replace("\n", "\n" + " " * 8))
        new = old.replace(
            "val = evaluate(net)\n", 'val = evaluate(net)\n        flor.log("val", val)\n'
        )
    else:
        new = EVAL_OLD.replace("MID", mid.replace("\n", "\n" + " " * 8))
        old = EVAL_OLD.replace("        MID\n", "")
    r = propagate(new, old)
    assert not r.failed, r.failed
    (p,) = r.placed
    assert "_save_modes" not in r.source and p.carried == ()


DROPOUT = """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.5), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(48).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        net.eval()  # hindsight
        with torch.no_grad():  # hindsight
            val = float(loss_fn(net(XV), YV))  # hindsight
        flor.log("val", val)  # hindsight
        net.train()  # hindsight
        print(epoch)
"""


@pytest.mark.slow
def test_an_evaluation_block_today_s_code_added_replays_in_evaluation_mode(
    recorder: Recorder,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Two versions without any evaluation; today's code evaluates each epoch in evaluation
    mode (dropout off). ``val`` replays between ``flor._save_modes(net)`` and its restore and
    equals the hand-patched versions' (before session 30: computed with dropout on, which also
    drew from the RNG, silently); the old code's own ``loss`` is unchanged."""
    text = HEAD + DROPOUT
    history, oracle = record_versions(recorder, tmp_path, two(text, text.replace("0.1", "0.05")))
    c = Compare(history, oracle)
    try:
        c("SELECT seed, epochs, epoch, val FROM logs WHERE epoch = 1")
        c("SELECT seed, epochs, epoch, val FROM logs WHERE val IS NOT NULL")
        c("SELECT seed, epochs, epoch, step, loss FROM logs WHERE loss IS NOT NULL")
    finally:
        c.close()
    c.assert_none()


def test_the_restore_puts_back_each_submodule_s_own_mode() -> None:
    """A model trained with its batch norm frozen in evaluation mode keeps it frozen: the
    restore is every submodule's flag as it was, not ``net.train()``."""
    import torch

    import florsql as flor
    from florsql.errors import RecordError

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2), torch.nn.Dropout())
    net.train()
    net[1].eval()
    before = [m.training for m in net.modules()]
    flor._save_modes(net)
    net.eval()
    assert not any(m.training for m in net.modules())
    flor._restore_modes(net)
    assert [m.training for m in net.modules()] == before == [True, True, False, True]
    with pytest.raises(RecordError, match="no mode of this Sequential was saved"):
        flor._restore_modes(net)
    with pytest.raises(RecordError, match="neither modules\\(\\) nor a training flag"):
        flor._save_modes(object())


@pytest.mark.parametrize(
    "mid",
    [
        # the log statement inside the new block
        "if epoch % 2 == 0:\n    net.eval()\n    with torch.no_grad():\n"
        '        val = float(net(XV).sum())\n    flor.log("val", val)\n    net.train()',
        # after it
        "if epoch % 2 == 0:\n    net.eval()\n    val = evaluate(net)\n    net.train()\n"
        'else:\n    val = None\nflor.log("val", val)',
    ],
)
def test_a_new_block_that_switches_a_mode_travels_between_a_save_and_a_restore(mid: str) -> None:
    """A new ``if`` that travels whole (for the ``val`` it binds, or around the log statement)
    with a mode switch inside: the save goes before the block, the restore after the log
    statement (before session 30: refused as a method call on an old object)."""
    new = EVAL_OLD.replace("MID", mid.replace("\n", "\n" + " " * 8))
    r = propagate(new, EVAL_OLD.replace("        MID\n", ""))
    assert not r.failed, r.failed
    tail = r.source.split('flor.log("loss", loss.item())\n')[1]
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    assert lines[0] == "flor._save_modes(net)" and lines[1] == "if epoch % 2 == 0:", tail
    assert lines[-2:] == ["flor._restore_modes(net)", "print(epoch)"], tail


@pytest.mark.parametrize(
    ("mid", "reason"),
    [
        # the value logged is the previous iteration's, computed after the switch
        (
            'net.eval()\nflor.log("h", h)\nh = float(net(XV).sum())\nnet.train()',
            "code after the log statement travels with it (the loop's tail)",
        ),
        (
            'flor.log("h", h)\nnet.eval()\nh = float(net(XV).sum())\nnet.train()',
            "which today's code switches to evaluation mode before it (net.eval()",
        ),
    ],
)
def test_a_mode_switch_around_a_loop_s_tail_is_refused(mid: str, reason: str) -> None:
    """Today's statement logs what the end of the previous iteration computed in evaluation
    mode: that tail travels, and it would run after the restore, or with a switch nothing
    restores (before session 30 the tail went in without the switch, and computed with
    dropout on, silently)."""
    old = EVAL_OLD.replace("XV = torch.ones(3, 2)", "XV = torch.ones(3, 2)\nh = 0.0")
    new = old.replace("MID", mid.replace("\n", "\n" + " " * 8))
    r = propagate(new, old.replace("        MID\n", ""))
    assert not r.placed, r.source
    (f,) = r.failed
    assert reason in f.reason, f.reason


OUTER_OLD = """import torch
import florsql as flor

net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
XV = torch.ones(3, 2)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        for s in flor.loop("step", range(3)):
            loss = net(torch.ones(2)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            v0 = net(XV).mean().item()
        print(epoch)
"""


def test_a_mode_switch_outside_the_block_the_statement_goes_into_is_refused() -> None:
    """Today's ``net.eval()`` before an old ``with torch.no_grad():`` block, today's statement
    inside it: the switch cannot go in without the old ``v0`` computing in evaluation mode too,
    and without it the statement computes with dropout on (before session 30: placed, silently)."""
    new = OUTER_OLD.replace(
        "        with torch.no_grad():\n            v0 = net(XV).mean().item()\n",
        "        net.eval()\n        with torch.no_grad():\n"
        "            v0 = net(XV).mean().item()\n"
        '            flor.log("val", net(XV).sum().item())\n        net.train()\n',
    )
    r = propagate(new, OUTER_OLD)
    assert not r.placed, r.source
    (f,) = r.failed
    assert "outside the block today's statement goes into" in f.reason, f.reason


def test_a_switch_back_to_training_where_the_old_version_never_leaves_it_is_no_obstacle() -> None:
    """Today's code puts ``net.train()`` at the top of each epoch (it evaluates at the end); the
    old version never switched a mode, so its modules were always in training mode: a step-level
    statement that runs ``net`` is placed, without the switch. Where the old version does switch
    to evaluation somewhere, the same statement is refused."""
    new = OUTER_OLD.replace(
        '    for epoch in flor.loop("epoch", range(4)):\n',
        '    for epoch in flor.loop("epoch", range(4)):\n        net.train()\n',
    ).replace(
        '            flor.log("loss", loss.item())\n',
        '            flor.log("loss", loss.item())\n'
        '            flor.log("out", net(XV).sum().item())\n',
    )
    r = propagate(new, OUTER_OLD)
    assert not r.failed, r.failed
    assert "net.train()" not in r.source and "_save_modes" not in r.source
    old_evals = OUTER_OLD.replace(
        "        print(epoch)\n", "        net.eval()\n        print(epoch)\n"
    )
    new_evals = new.replace("        print(epoch)\n", "        net.eval()\n        print(epoch)\n")
    r = propagate(new_evals, old_evals)
    assert not r.placed and "switches to training mode" in r.failed[0].reason, r.failed
