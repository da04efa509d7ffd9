"""Stranger sweep s32b: today's code adds something that changes training state next to a new
hindsight log statement, in histories of two versions.

Tried, each first at propagate level (``propagate(new, old)``), then end to end where the
placement carries code that touches training state:

- learning rate: a new ``sched.step()`` in the step loop; ``for g in opt.param_groups: g["lr"]
  = ...``; ``opt.param_groups[0].update(lr=...)`` (through an alias too); a ``LambdaLR``, a
  ``LinearLR`` warmup or an ``ExponentialLR`` made today on the old optimizer; ``setattr``;
  a helper defined today that changes its argument (``def decay(o): o.param_groups[0]["lr"]
  *= 0.9``), called for its value or as a statement; ``getattr`` and ``next(iter(...))``;
- gradient clipping new today (``clip_grad_norm_`` on ``net.parameters()``, on a list or a
  comprehension of them, imported by name, inside the log call; ``clip_grad_value_`` with the
  norm logged after it);
- freezing (``p.requires_grad = False``, ``requires_grad_(False)``), ``torch.nn.init.*_``
  re-inits (in a new ``if``, through an alias, over ``named_parameters()``),
  ``net.apply(reset)``;
- an EMA (``AveragedModel(net)`` with ``update_parameters(net)``; a ``deepcopy`` updated by
  hand in a ``for pe, p in zip(...)`` loop); ``loss = loss * scale``; augmentation drawing
  from the global RNG; ``torch.manual_seed``; ``zero_grad(set_to_none=True)``; a step count
  kept in an old dict and in a new one.

Found (fixed here, florsql/propagate/api.py, slice.py, source.py):

- a learning-rate scheduler made today on the old optimizer was carried with its steps
  (``warm = LambdaLR(opt, ...)``, ``warm.step()``): it sets the learning rate as it is made
  and at each step, so the replayed runs trained at other rates than the recorded ones, from
  their checkpoints, silently. Refused now;
- a helper defined today that changes its argument, called with an old object (``lr =
  decay(opt)``), was carried with its definition, silently. Refused now;
- ``ps = list(net.parameters())`` or ``[p for p in net.parameters() ...]`` then
  ``clip_grad_norm_(ps, 1.0)``: the list was taken as today's own object, and the clipping
  carried, silently. Refused now (the in-place rule follows aliases as the store rule does);
- a method that changes its receiver used for its value (``net2 = net.apply(reset)``) was
  carried, silently. Refused now;
- ``setattr(opt, "lr_scale", 0.5)`` was not seen as a store: the log statement reading
  ``opt.lr_scale`` went in alone and would raise in the old version. It travels now, as
  ``opt.lr_scale = 0.5`` does; ``setattr(net, "training", False)`` is refused as the store;
- the in-place refusal named builtins among what it changes (``'net', 'float'``).

Fixed in session 31 (a strict xfail until then): an in-place change through an alias
(``p = next(iter(net.parameters())); p.data.mul_(0.5)``, then ``flor.log("p", float(p.sum()))``)
was left out of the slice, because the log statement was taken to read ``p.sum`` only: the
statement went in with what binds ``p`` and logged the un-halved weights, silently. A method
called on a name reads all of it now (``slice.read_paths``), the change travels, and is
refused as a change of the old ``net``. The EMA copy updated in ``for pe, p in
zip(ema.parameters(), net.parameters()): pe.mul_(...)`` was a second such case; the s32
sweep's ``slice.changes`` carries it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from florsql.propagate import propagate
from florsql.store.replays import replays_dir
from tests.helpers_replay import Recorder, fetch
from tests.test_stranger_s25 import (  # noqa: F401  (fixtures used by name)
    Compare,
    record_versions,
    recorder,
    workers,
)
from tests.test_stranger_s29 import HEAD, two

OLD = """import torch
from torch import nn
import florsql as flor

torch.manual_seed(0)
X = torch.randn(48, 6)
Y = (X[:, :2].sum(dim=1) > 0).long()
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
loss_fn = nn.CrossEntropyLoss()
state = {"step": 0}
PRE
with flor.checkpointing(model=net, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(4)):
        EPOCHTOP
        for idx in flor.loop("step", torch.randperm(48).split(12)):
            xb, yb = X[idx], Y[idx]
            STEPTOP
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            MID
            opt.step()
            flor.log("loss", loss.item())
            STEP
        sched.step()
        EPOCH
"""

_INDENT = {"PRE": 0, "EPOCHTOP": 8, "EPOCH": 8}


def make(**code: str) -> str:
    """``OLD`` with each marker given (``pre``, ``epochtop``, ``steptop``, ``mid``, ``step``,
    ``epoch``) replaced by that code, the others dropped."""
    text = OLD
    for mark in ("PRE", "EPOCHTOP", "STEPTOP", "MID", "STEP", "EPOCH"):
        pad = " " * _INDENT.get(mark, 12)
        body = textwrap.dedent(code.get(mark.lower(), "")).strip("\n")
        text = text.replace(f"{pad}{mark}\n", textwrap.indent(body, pad) + "\n" if body else "")
    return text


REFUSED = [
    # a scheduler made today on the old optimizer, stepped, its learning rate logged
    (
        "lambda_lr",
        {
            "pre": "warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: min(1.0, (e + 1) / 3))",
            "epoch": 'warm.step()\nflor.log("lr", warm.get_last_lr()[0])',
        },
        "a learning-rate scheduler made on it",
    ),
    # made only (a warmup sets the learning rate as it is made)
    (
        "linear_warmup",
        {
            "pre": "warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=3)",
            "epoch": 'flor.log("lr", warm.get_last_lr()[0])',
        },
        "a learning-rate scheduler made on it",
    ),
    (
        "imported_by_name",
        {
            "pre": "from torch.optim.lr_scheduler import ExponentialLR\n"
            "sch2 = ExponentialLR(opt, 0.9)",
            "epoch": 'sch2.step()\nflor.log("lr", sch2.get_last_lr()[0])',
        },
        "a learning-rate scheduler made on it",
    ),
    # a helper defined today that changes its argument, called with the old optimizer
    (
        "helper_changes_its_argument",
        {
            "pre": "def decay(o):\n    o.param_groups[0]['lr'] *= 0.9\n"
            "    return o.param_groups[0]['lr']",
            "epoch": 'lr = decay(opt)\nflor.log("lr", lr)',
        },
        "today's decay() changes its argument",
    ),
    (
        "helper_calls_a_method_of_its_argument",
        {
            "pre": "def bump(s):\n    s.step()\n    return s.get_last_lr()[0]",
            "epoch": 'lr = bump(sched)\nflor.log("lr", lr)',
        },
        "today's bump() changes its argument",
    ),
    # clipping through a list of the old parameters made by today's code
    (
        "clip_through_a_list",
        {
            "mid": "ps = list(net.parameters())\n"
            'gn = torch.nn.utils.clip_grad_norm_(ps, 1.0)\nflor.log("gn", float(gn))'
        },
        "'ps', a part of what the old version holds,",
    ),
    (
        "clip_through_a_comprehension",
        {
            "mid": "ps = [p for p in net.parameters() if p.grad is not None]\n"
            'gn = torch.nn.utils.clip_grad_norm_(ps, 1.0)\nflor.log("gn", float(gn))'
        },
        "'ps', a part of what the old version holds,",
    ),
    # a method that changes its receiver, used for its value
    (
        "apply_for_its_value",
        {
            "epochtop": "net2 = net.apply(lambda m: m.reset_parameters() "
            'if hasattr(m, "reset_parameters") else None)\n'
            'flor.log("w", float(net2[0].weight.sum()))'
        },
        "changes 'net' (net.apply(",
    ),
    (
        "hook_for_its_value",
        {
            "pre": "acts = []",
            "epoch": "h = net[0].register_forward_hook(lambda m, i, o: acts.append(o))\n"
            'flor.log("nh", h.id)',
        },
        "changes 'net' (net[0].register_forward_hook(",
    ),
    # setattr of an attribute PyTorch reads
    (
        "setattr_training",
        {"epoch": 'setattr(net, "training", False)\nflor.log("t", net.training)'},
        "changes 'net' in place (net.training)",
    ),
]


@pytest.mark.parametrize(("new", "why"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_carried_code_that_changes_training_state_is_refused(new: dict[str, str], why: str) -> None:
    """Before session 30 each was placed with its carried code: the replayed old runs trained
    otherwise than the recorded ones, from the recorded runs' checkpoints, silently."""
    r = propagate(make(**new), make())
    assert not r.placed, r.source
    (f,) = r.failed
    assert why in f.reason and "would not be the one recorded" in f.reason, f.reason


PLACED = [
    # reads only: a list of the parameters, a helper that reads its argument, a schedule
    # function of the epoch, a new list changed by a method
    (
        "list_read",
        {"epoch": 'ps = list(net.parameters())\nflor.log("n", sum(float(p.norm()) for p in ps))'},
    ),
    (
        "helper_reads",
        {
            "pre": "def total(m):\n    return sum(float(p.sum()) for p in m.parameters())",
            "epoch": 't = total(net)\nflor.log("t", t)',
        },
    ),
    (
        "schedule_of_the_epoch",
        {
            "pre": "def lr_schedule(e):\n    return 0.1 * 0.9 ** e",
            "epoch": 'flor.log("lr_s", lr_schedule(epoch))',
        },
    ),
    (
        "new_list_appended",
        {"epoch": 'vals = list(state.values())\nvals.append(1)\nflor.log("n", len(vals))'},
    ),
    # an attribute today's code sets with setattr, the old code never names
    ("setattr_own", {"epoch": 'setattr(opt, "lr_scale", 0.5)\nflor.log("s", opt.lr_scale)'}),
    # an EMA made and updated by today's code (AveragedModel copies the model)
    (
        "averaged_model",
        {
            "pre": "ema = torch.optim.swa_utils.AveragedModel(net)",
            "step": "ema.update_parameters(net)",
            "epoch": 'flor.log("ema_w", float(ema.module[0].weight.sum()))',
        },
    ),
]


@pytest.mark.parametrize("new", [p[1] for p in PLACED], ids=[p[0] for p in PLACED])
def test_reading_or_changing_only_today_s_objects_is_placed(new: dict[str, str]) -> None:
    r = propagate(make(**new), make())
    assert not r.failed, r.failed
    assert len(r.placed) == 1


def test_setattr_travels_as_an_attribute_store_does() -> None:
    """Before session 30 ``setattr(opt, "lr_scale", 0.5)`` was not seen: ``flor.log("s",
    opt.lr_scale)`` went in alone, and would raise AttributeError in the old version."""
    r = propagate(make(epoch='setattr(opt, "lr_scale", 0.5)\nflor.log("s", opt.lr_scale)'), make())
    (p,) = r.placed
    assert p.carried == ('setattr(opt, "lr_scale", 0.5)',)


def test_an_in_place_refusal_names_no_builtin() -> None:
    new = make(
        mid='gn = torch.nn.utils.clip_grad_norm_(net.parameters(), float("inf"))\n'
        'flor.log("gn", float(gn))'
    )
    (f,) = propagate(new, make()).failed
    assert "changes 'net' in place" in f.reason and "'float'" not in f.reason, f.reason


EMA_BY_HAND = {
    "pre": "import copy\nema = copy.deepcopy(net)",
    "step": "with torch.no_grad():\n"
    "    for pe, p in zip(ema.parameters(), net.parameters()):\n"
    "        pe.mul_(0.9).add_(p, alpha=0.1)",
    "epoch": 'flor.log("ema_w", float(ema[0].weight.sum()))',
}


def test_today_s_ema_updated_by_hand_travels_with_the_statement() -> None:
    """The hand-written EMA update over ``zip(ema.parameters(), net.parameters())`` changes
    ``ema`` (today's own copy), and travels with the statement that reads it (the s32 sweep
    fixed ``slice.changes``: until then the statement went in with ``ema``'s binding alone and
    logged the starting copy, silently)."""
    r = propagate(make(**EMA_BY_HAND), make())
    assert not r.failed, r.failed
    (p,) = r.placed
    assert any("pe.mul_(0.9)" in c for c in p.carried), p.carried


def test_an_in_place_change_through_an_alias_is_seen_by_the_slice() -> None:
    new = make(
        epoch='p = next(iter(net.parameters()))\np.data.mul_(0.5)\nflor.log("p", float(p.sum()))'
    )
    r = propagate(new, make())
    assert not r.placed, r.source
    (f,) = r.failed
    assert "p.data.mul_(0.5)" in f.reason and "in place" in f.reason, f.reason


def test_a_method_of_today_s_own_object_reads_its_in_place_changes() -> None:
    """The rule that fixed the alias: a log statement calling ``w.norm()`` reads all of ``w``,
    so today's in-place change of a tensor only today's code binds travels with it, and the
    value is the one today's code logs."""
    new = make(
        epoch='w = net[0].weight.detach().clone()\nw.data.mul_(0.5)\nflor.log("w", float(w.norm()))'
    )
    r = propagate(new, make())
    assert not r.failed, r.failed
    (p,) = r.placed
    assert any("w.data.mul_(0.5)" in c for c in p.carried), p.carried


# --- end to end: recorded runs, replay, the oracle ---------------------------------------------

TRAIN = """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
ema = torch.optim.swa_utils.AveragedModel(net)  # hindsight
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            ema.update_parameters(net)  # hindsight
        flor.log("ema_w", float(ema.module[0].weight.sum()))  # hindsight
"""


@pytest.mark.slow
def test_an_averaged_model_today_s_code_keeps_replays_as_the_oracle(
    recorder: Recorder,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An EMA made and updated by today's code only (``AveragedModel`` copies the model, and
    ``update_parameters(net)`` changes only the copy): placed with its update in the step loop;
    its value at each epoch equals the hand-patched versions', and the old code's own ``loss``
    is unchanged."""
    text = HEAD + TRAIN
    history, oracle = record_versions(recorder, tmp_path, two(text, text.replace("0.1,", "0.05,")))
    c = Compare(history, oracle)
    try:
        c("SELECT seed, epochs, epoch, ema_w FROM logs WHERE epoch = 2")
        c("SELECT seed, epochs, epoch, ema_w FROM logs WHERE ema_w IS NOT NULL")
        c("SELECT seed, epochs, epoch, step, loss FROM logs WHERE loss IS NOT NULL")
    finally:
        c.close()
    c.assert_none()


NOISE = "".join(ln for ln in TRAIN.splitlines(True) if "ema" not in ln).replace(
    "            loss = loss_fn(net(X[idx]), Y[idx])\n",
    "            noise = torch.randn_like(X[idx]) * 0.1  # hindsight\n"
    '            flor.log("noise", float(noise.abs().mean()))  # hindsight\n'
    "            loss = loss_fn(net(X[idx]), Y[idx])\n",
)


@pytest.mark.slow
def test_augmentation_drawn_from_the_global_rng_today_is_not_silent(
    recorder: Recorder,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Today's code draws noise from the global RNG before the forward pass (dropout draws
    after it): carried into the old versions, it moves every later draw, so the replayed runs
    cannot be the recorded ones. The replay says so: a ``StatementDrawWarning`` names ``noise``
    (since session 34 the runs are replayed from their start, a run of today's script); the old
    ``loss``, recomputed after the draw, departs from the recording by design, kept in each
    task's ``done.json`` (``departed``), not warned of as nondeterminism (session 35)."""
    text = HEAD + NOISE
    history, _ = record_versions(recorder, tmp_path, two(text, text.replace("0.1,", "0.05,")))
    import florsql

    con = florsql.connect(history, replay="auto")
    try:
        rows, notes = fetch(con, "SELECT seed, epochs, epoch, step, noise FROM logs")
    finally:
        con.close()
    assert rows and all(r[-1] is not None for r in rows), rows[:4]
    assert any("StatementDrawWarning" in n and "noise" in n for n in notes), notes
    done = [json.loads(p.read_text()) for p in replays_dir(history).glob("*/*/done.json")]
    assert done and all("loss" in str(d.get("departed")) for d in done), done
