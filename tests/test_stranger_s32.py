"""Stranger sweep s32: evaluation code, in histories of two versions, that the earlier sweeps did
not write down: a confusion matrix and per-class accuracy counted inside the old evaluation
block (``net.eval()`` ... ``net.train()``); ``correct += ...`` in the old loop over validation
batches, logged after it; a new ``@torch.no_grad()`` ``evaluate(model, loader)`` returning a
tuple; a statement inside the old loop over a shuffling validation ``DataLoader``; a
``torch.no_grad()`` block inside a new ``if epoch % 2 == 0:``; ``torch.inference_mode()`` in the
old evaluation block; a BatchNorm model with today's statement inside the old evaluation block;
an exponential moving average of the weights and an ``AveragedModel``, both new today and
evaluated; early-stopping state (``best``, ``bad``) new today. At propagate level also: the mode
switch in a block around today's statement, through an alias, a loop over ``net.modules()``,
``net.apply``; the EMA written as ``zip``, ``enumerate``, ``state_dict().items()``, ``lerp_``.

Found (session 30):

- Today's ``net.eval()`` new in the epoch body, with today's ``va = ...`` added inside the old
  ``with torch.no_grad():`` block after it (the old version evaluated with dropout on): placed,
  and ``va`` computed in training mode, silently. The s30 rule (florsql/propagate/slice.py
  ``_mode_switch``) looked at the statement's own block only; it now looks at every block around
  it up to its function, sees the switch made by a loop over ``net.modules()``, ``net.apply(...)``
  and through an alias (``m = net; m.eval()``), and refuses.
- Today's EMA model (``ema = copy.deepcopy(net)``, updated in the step loop by ``for pe, pn in
  zip(ema.parameters(), net.parameters()): pe.mul_(d).add_(pn, ...)``) evaluated after the step
  loop: the update was not carried (the slice saw it change ``pe``, not ``ema``), and
  ``ema_acc`` was the accuracy of the untrained copy, silently. A loop over parts of an object
  changing them in place now changes that object (``slice.changes``), and a loop target over
  parts of today's own objects only (element by element through ``zip``/``enumerate``) is no
  old object (``api._in_place``, ``api._Owners``): carried, exact. The replay's plan had the
  same blind spot (florsql/code/effects.py): a step loop updating an EMA through its
  parameters did not change ``ema``, so a statement reading it skipped the step loop and read
  the EMA as the script made it, also where the old code kept the EMA itself; fixed.
- Today's ``evaluate()`` helper (``va = ...; flor.log("va", va); net.train()``), called after
  the step loop: its body was aligned with the whole old epoch body, its ``net.train()`` (or a
  first ``net.train(False)``) matched the old ``net.train()`` at the top of the epoch, and
  ``va`` went before the step loop: the accuracy before each epoch's training (here with a
  misleading NondeterminismWarning, as its dropout draws changed the replayed training;
  silent for a model without dropout). Now a helper's statement must go where the helper is
  called, or is refused saying where it pointed (``api._off_its_call``).

A new ``evaluate(net, ...)`` that switches ``net`` to evaluation mode and never back, in a
script that never calls ``net.train()`` (the patched re-run would train every later epoch with
dropout off while replay restores the recorded weights: silently different), was a strict xfail
here; it is refused since the merge with the s32b rule for helpers that change their argument
(``test_a_new_evaluate_helper_that_leaves_the_model_in_evaluation_mode_is_refused``).

Every other pattern is exact. Harness: tests/test_stranger_s25.py (the oracle records the same
sequence of versions, hand-patched). Queries are asked as a user would: a narrow one first,
then wider, then aggregates."""

from __future__ import annotations

from pathlib import Path

import pytest

import florsql
from florsql.dbapi.exceptions import ReplayError
from florsql.propagate import propagate
from tests.helpers_replay import Recorder, corpus_params, fetch
from tests.test_stranger_s25 import (  # noqa: F401  (fixtures used by name)
    Compare,
    Version,
    record_versions,
    recorder,
    workers,
)
from tests.test_stranger_s27 import narrow_then_wide
from tests.test_stranger_s29 import HEAD, Pattern, run_pattern, two


def kw(text: str, lr: str, **subs: str) -> str:
    out = text.replace("lr=LR", f"lr={lr}")
    for k, v in subs.items():
        out = out.replace(k, v)
    return out


NET = """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
"""

LOOP = """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
"""

# --- 1. a confusion matrix counted inside the old evaluation block -------------------------

CONFUSION = (
    HEAD
    + NET
    + LOOP
    + """\
        net.eval()
        with torch.no_grad():
            out = net(XV)
            vl = float(loss_fn(out, YV))
            pred = out.argmax(1)  # hindsight
            conf = torch.zeros(2, 2)  # hindsight
            for t, p in zip(YV.tolist(), pred.tolist()):  # hindsight
                conf[t, p] += 1  # hindsight
        flor.log("vl", vl)
        flor.log("conf", conf.tolist())  # hindsight
        flor.log("acc1", float(conf[1, 1] / conf[1].sum().clamp(min=1)))  # hindsight
        net.train()
"""
)

# --- 2. correct counted in the old loop over validation batches (a plain loop) -------------

VAL_LOOP = (
    HEAD
    + NET
    + """
from torch.utils.data import DataLoader, TensorDataset

val_loader = DataLoader(TensorDataset(XV, YV), batch_size=VBS, shuffle=False)
"""
    + LOOP
    + """\
        net.eval()
        vl = 0.0
        correct = 0  # hindsight
        with torch.no_grad():
            for xb, yb in val_loader:
                out = net(xb)
                vl += float(loss_fn(out, yb)) * len(yb)
                correct += int((out.argmax(1) == yb).sum())  # hindsight
        flor.log("vl", vl / 16)
        flor.log("vacc", correct / 16)  # hindsight
"""
)

# --- 3. a new @torch.no_grad() evaluate(model, loader) returning a tuple -------------------

EVAL_HELPER = (
    HEAD
    + NET
    + """
val_batches = list(zip(XV.split(4), YV.split(4)))


@torch.no_grad()  # hindsight
def evaluate(model, loader):  # hindsight
    model.eval()  # hindsight
    tot, n, correct = 0.0, 0, 0  # hindsight
    for xb, yb in loader:  # hindsight
        out = model(xb)  # hindsight
        tot += float(loss_fn(out, yb)) * len(yb)  # hindsight
        correct += int((out.argmax(1) == yb).sum())  # hindsight
        n += len(yb)  # hindsight
    model.train()  # hindsight
    return tot / n, correct / n  # hindsight

"""
    + LOOP
    + """\
        vl, va = evaluate(net, val_batches)  # hindsight
        flor.log("vl", vl)  # hindsight
        flor.log("va", va)  # hindsight
        flor.log("wn", float(net[0].weight.norm()))
"""
)

# the same helper leaving the model in evaluation mode, where neither version switches back
EVAL_LEFT = EVAL_HELPER.replace("    model.train()  # hindsight\n", "").replace(
    "        net.train()\n", ""
)

# --- 4. today's statement inside the old loop over a shuffling validation DataLoader -------

SHUFFLED_VAL = (
    HEAD
    + NET
    + """
from torch.utils.data import DataLoader, TensorDataset

vg = torch.Generator().manual_seed(seed + 11)
val_loader = DataLoader(TensorDataset(XV, YV), batch_size=4, shuffle=True, generator=vg)
"""
    + LOOP
    + """\
        net.eval()
        vl = 0.0
        with torch.no_grad():
            for xb, yb in val_loader:
                vl += float(loss_fn(net(xb), yb))
                flor.log("vb0", float(xb[0, 0]))  # hindsight
        flor.log("vl", vl)
"""
)

# --- 5. torch.no_grad() nested in a new if; inference_mode in the old evaluation block ------

EVERY_OTHER = (
    HEAD
    + NET.replace("nn.Dropout(0.3), ", "")
    + LOOP
    + """\
        if epoch % 2 == 0:  # hindsight
            with torch.no_grad():  # hindsight
                va = float((net(XV).argmax(1) == YV).float().mean())  # hindsight
            flor.log("va", va)  # hindsight
        flor.log("wn", float(net[0].weight.norm()))
"""
)

INFERENCE = (
    HEAD
    + NET
    + LOOP
    + """\
        net.eval()
        with torch.inference_mode():
            out = net(XV)
            vl = float(loss_fn(out, YV))
        flor.log("vl", vl)
        flor.log("va", float((out.argmax(1) == YV).float().mean()))  # hindsight
        flor.log("vmax", float(out.max()))  # hindsight
"""
)

# --- 6. BatchNorm: today's statement inside the old evaluation block ------------------------

BN_EVAL = (
    HEAD
    + NET.replace("nn.Dropout(0.3)", "nn.BatchNorm1d(12, momentum=MOM)")
    + LOOP
    + """\
        flor.log("rm", float(net[2].running_mean.abs().sum()))  # hindsight
        net.eval()
        with torch.no_grad():
            vl = float(loss_fn(net(XV), YV))
        flor.log("vl", vl)
        flor.log("va", float((net(XV).argmax(1) == YV).float().mean()))  # hindsight
        net.train()
"""
)

# --- 7. an EMA of the weights and an AveragedModel, new today, evaluated --------------------

EMA = (
    HEAD
    + NET
    + """
ema = copy.deepcopy(net)  # hindsight
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():  # hindsight
                for pe, pn in zip(ema.parameters(), net.parameters()):  # hindsight
                    pe.mul_(DECAY).add_(pn, alpha=1 - DECAY)  # hindsight
            flor.log("loss", loss.item())
        ema.eval()  # hindsight
        with torch.no_grad():  # hindsight
            ea = float((ema(XV).argmax(1) == YV).float().mean())  # hindsight
        flor.log("ema_acc", ea)  # hindsight
        flor.log("ema_w", float(ema[0].weight.sum()))  # hindsight
"""
)

# the old code keeps the EMA, updated by a zip over the parameters, and reads it only after
# training; today's statement reads it every epoch
OLD_EMA = (
    HEAD
    + NET
    + """
ema = copy.deepcopy(net)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for pe, pn in zip(ema.parameters(), net.parameters()):
                    pe.mul_(DECAY).add_(pn, alpha=1 - DECAY)
            flor.log("loss", loss.item())
        flor.log("ema_w", float(ema[0].weight.sum()))  # hindsight
ema.eval()
with torch.no_grad():
    flor.log("final_ema_acc", float((ema(XV).argmax(1) == YV).float().mean()))
"""
)

SWA = (
    HEAD
    + NET
    + """
from torch.optim.swa_utils import AveragedModel

swa = AveragedModel(net)  # hindsight
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        swa.update_parameters(net)  # hindsight
        swa.eval()  # hindsight
        with torch.no_grad():  # hindsight
            sa = float((swa(XV).argmax(1) == YV).float().mean())  # hindsight
        flor.log("swa_acc", sa)  # hindsight
"""
)

# --- 8. early-stopping state new today ------------------------------------------------------

EARLY = (
    HEAD
    + NET
    + "best, bad = float('inf'), 0  # hindsight\n"
    + LOOP
    + """\
        net.eval()
        with torch.no_grad():
            vl = float(loss_fn(net(XV), YV))
        flor.log("vl", vl)
        net.train()
        if vl < best - 1e-4:  # hindsight
            best, bad = vl, 0  # hindsight
        else:  # hindsight
            bad += 1  # hindsight
        flor.log("best", best)  # hindsight
        flor.log("bad", bad)  # hindsight
"""
)

PATTERNS = [
    Pattern(
        "a_confusion_matrix_counted_inside_the_old_evaluation_block",
        two(kw(CONFUSION, "0.1"), kw(CONFUSION, "0.05")),
        [*narrow_then_wide("acc1"), "SELECT seed, epoch, conf FROM logs WHERE conf IS NOT NULL"],
    ),
    Pattern(
        "correct_counted_in_the_old_loop_over_validation_batches",
        two(kw(VAL_LOOP, "0.1", VBS="4"), kw(VAL_LOOP, "0.05", VBS="8")),
        [*narrow_then_wide("vacc")],
    ),
    Pattern(
        "a_new_no_grad_evaluate_helper_returning_a_tuple",
        two(kw(EVAL_HELPER, "0.1"), kw(EVAL_HELPER, "0.05")),
        [*narrow_then_wide("va"), "SELECT seed, epoch, vl, va, wn FROM logs WHERE vl IS NOT NULL"],
    ),
    Pattern(
        "a_statement_inside_the_old_loop_over_a_shuffling_validation_loader",
        two(kw(SHUFFLED_VAL, "0.1"), kw(SHUFFLED_VAL, "0.05")),
        ["SELECT seed, epoch, vb0 FROM logs WHERE epoch = 1 AND seed = 1 AND vb0 IS NOT NULL",
         "SELECT seed, epoch, vb0 FROM logs WHERE vb0 IS NOT NULL",
         "SELECT seed, count(vb0), round(sum(vb0), 6) FROM logs GROUP BY seed"],
    ),
    Pattern(
        "no_grad_nested_in_a_new_if_every_other_epoch",
        two(kw(EVERY_OTHER, "0.1"), kw(EVERY_OTHER, "0.05")),
        [*narrow_then_wide("va")],
    ),
    Pattern(
        "inference_mode_in_the_old_evaluation_block",
        two(kw(INFERENCE, "0.1"), kw(INFERENCE, "0.05")),
        [*narrow_then_wide("va"), "SELECT seed, epoch, vmax FROM logs WHERE vmax IS NOT NULL"],
    ),
    Pattern(
        "batchnorm_statement_inside_the_old_evaluation_block",
        two(kw(BN_EVAL, "0.1", MOM="0.1"), kw(BN_EVAL, "0.05", MOM="0.3")),
        [*narrow_then_wide("va"), *narrow_then_wide("rm")],
    ),
    Pattern(
        "an_ema_of_the_weights_new_today_updated_by_a_zip_over_parameters",
        two(kw(EMA, "0.1", DECAY="0.9"), kw(EMA, "0.05", DECAY="0.9")),
        [*narrow_then_wide("ema_acc"), *narrow_then_wide("ema_w")],
    ),
    Pattern(
        "an_ema_the_old_code_updates_by_a_zip_read_by_todays_statement_only",
        two(kw(OLD_EMA, "0.1", DECAY="0.9"), kw(OLD_EMA, "0.05", DECAY="0.8")),
        [*narrow_then_wide("ema_w")],
    ),
    Pattern(
        "an_averaged_model_new_today_evaluated_each_epoch",
        two(kw(SWA, "0.1"), kw(SWA, "0.05")),
        [*narrow_then_wide("swa_acc")],
    ),
    Pattern(
        "early_stopping_state_new_today",
        two(kw(EARLY, "0.1"), kw(EARLY, "0.05")),
        [*narrow_then_wide("bad"), "SELECT seed, epoch, best, bad FROM logs WHERE bad > 0"],
    ),
]  # fmt: skip

DEFAULT = ("an_ema_the_old_code_updates_by_a_zip_read_by_todays_statement_only",)


@pytest.mark.parametrize("p", corpus_params(PATTERNS, DEFAULT))
def test_pattern(recorder: Recorder, tmp_path: Path, p: Pattern) -> None:  # noqa: F811
    run_pattern(recorder, tmp_path, p)


# --- at propagate level (no torch, milliseconds) ----------------------------------------------

PROP = """import torch
from torch import nn
import copy
import florsql as flor

X = torch.randn(48, 6)
Y = (X[:, 0] > 0).long()
XV = torch.randn(16, 6)
YV = (XV[:, 0] > 0).long()
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()
ema = copy.deepcopy(net)  # hindsight
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(3)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            STEP
            flor.log("loss", loss.item())
EPOCH
"""


def prop(epoch: str, step: str = "pass") -> tuple[str, str]:
    """(today's text, the old one): ``# hindsight`` lines are today's only."""
    from tests.helpers_replay import old_source, patched_source

    body = "".join(f"        {ln}\n" for ln in epoch.strip("\n").splitlines())
    text = PROP.replace("EPOCH\n", body).replace("STEP", step.replace("\n", "\n            "))
    return patched_source(text), old_source(text)


H = "  # hindsight"
VA = "float((net(XV).argmax(1) == YV).float().mean())"

SWITCHED = {
    # net.eval() new in the epoch body, today's value added inside the old no_grad block
    "in_the_old_no_grad_block": f"""
net.eval(){H}
with torch.no_grad():
    vl = float(loss_fn(net(XV), YV))
    va = {VA}{H}
    flor.log("va", va){H}
flor.log("vl", vl)
net.train(){H}
""",
    # the same, logged after the block
    "logged_after_the_old_no_grad_block": f"""
net.eval(){H}
with torch.no_grad():
    vl = float(loss_fn(net(XV), YV))
    va = {VA}{H}
flor.log("vl", vl)
flor.log("va", va){H}
net.train(){H}
""",
    # inside the old loop over validation batches
    "in_the_old_loop_over_validation_batches": f"""
net.eval(){H}
for xb, yb in zip(XV.split(4), YV.split(4)):
    vl = float(loss_fn(net(xb), yb))
    flor.log("vb", float(net(xb).max())){H}
net.train(){H}
""",
    "through_an_alias": f"""
m = net{H}
m.eval(){H}
flor.log("va", {VA}){H}
m.train(){H}
""",
    "by_a_loop_over_its_modules": f"""
for mod in net.modules():{H}
    mod.eval(){H}
flor.log("va", {VA}){H}
net.train(){H}
""",
    "by_apply": f"""
net.apply(lambda mod: mod.eval()){H}
flor.log("va", {VA}){H}
net.train(){H}
""",
}


@pytest.mark.parametrize("epoch", SWITCHED.values(), ids=SWITCHED.keys())
def test_a_mode_switch_today_makes_before_the_statement_is_refused(epoch: str) -> None:
    """Today's code switches ``net`` to evaluation mode before the statement, which runs it;
    the old version never switched (its evaluation ran with dropout on). Until session 30 the
    switch was looked for in the statement's own block only, as a plain ``net.eval()``: the
    statement was placed, and computed in training mode, silently."""
    new, old = prop(epoch)
    r = propagate(new, old)
    assert not r.placed, r.source
    assert r.failed and all("switches to evaluation mode" in f.reason for f in r.failed), r.failed
    assert r.source == old


KEPT = {
    # the old version has the evaluation block: today's statement inside it is placed
    "inside_the_old_evaluation_block": f"""
net.eval()
with torch.no_grad():
    out = net(XV)
    vl = float(loss_fn(out, YV))
    pred = out.argmax(1){H}
    conf = torch.zeros(2, 2){H}
    for t, p in zip(YV.tolist(), pred.tolist()):{H}
        conf[t, p] += 1{H}
flor.log("vl", vl)
flor.log("conf", conf.tolist()){H}
net.train()
""",
    # a switch after the statement, or of another module, is no obstacle
    "a_switch_after_it": f"""
flor.log("va", {VA}){H}
net.eval()
with torch.no_grad():
    vl = float(loss_fn(net(XV), YV))
flor.log("vl", vl)
net.train()
""",
    "reading_parameters_only": f"""
net.eval(){H}
with torch.no_grad():
    vl = float(loss_fn(net(XV), YV))
flor.log("vl", vl)
flor.log("wn", float(net[0].weight.norm())){H}
net.train(){H}
""",
}


@pytest.mark.parametrize("epoch", KEPT.values(), ids=KEPT.keys())
def test_an_evaluation_the_old_version_has_is_no_obstacle(epoch: str) -> None:
    new, old = prop(epoch)
    r = propagate(new, old)
    assert r.placed and not r.failed, r.failed


EMA_UPDATES = {
    "zip": "for pe, pn in zip(ema.parameters(), net.parameters()):\n"
    "    pe.mul_(0.9).add_(pn, alpha=0.1)",
    "enumerate": "for i, pe in enumerate(ema.parameters()):\n    pe.mul_(0.9)",
    "state_dict_items": "for k, v in ema.state_dict().items():\n"
    "    v.copy_(v * 0.9 + net.state_dict()[k] * 0.1)",
    "lerp": "for pe, pn in zip(ema.parameters(), net.parameters()):\n    pe.lerp_(pn, 0.1)",
}


@pytest.mark.parametrize("update", EMA_UPDATES.values(), ids=EMA_UPDATES.keys())
def test_todays_ema_update_over_its_parameters_travels_with_the_statement(update: str) -> None:
    """Today's ``ema`` is changed in the step loop through a loop over its parameters; an
    epoch-level statement evaluating it needs that update. Until session 30 the slice saw the
    loop change ``pe`` (or ``v``), not ``ema``: the update stayed behind, and the untrained copy
    was evaluated, silently."""
    step = "with torch.no_grad():  # hindsight\n" + "".join(
        f"    {ln}  # hindsight\n" for ln in update.splitlines()
    )
    new, old = prop(
        f'with torch.no_grad():{H}\n    ea = float(ema(XV).max()){H}\nflor.log("ea", ea){H}',
        step.rstrip("\n"),
    )
    r = propagate(new, old)
    assert not r.failed, r.failed
    assert update.splitlines()[-1].strip() in r.source, r.source


def test_a_loop_over_parameters_that_may_change_the_old_model_is_still_refused() -> None:
    """A loop target bound to a tuple of both models' parameters may be the old model's."""
    update = "for pe in zip(ema.parameters(), net.parameters()):\n    pe[1].mul_(0.9)"
    step = "with torch.no_grad():  # hindsight\n" + "".join(
        f"    {ln}  # hindsight\n" for ln in update.splitlines()
    )
    new, old = prop(f'flor.log("ea", float(ema[0].weight.sum())){H}', step.rstrip("\n"))
    r = propagate(new, old)
    assert not r.placed, r.source
    assert r.failed and "in place" in r.failed[0].reason, r.failed


def test_a_loop_changing_the_old_model_only_does_not_travel_for_todays_ema() -> None:
    """Element by element through ``zip``: ``pn`` is the old model's, ``pe`` today's EMA's;
    the loop changes ``net`` only, so a statement reading ``ema`` does not take it along (and
    is not refused for it)."""
    update = "for pn, pe in zip(net.parameters(), ema.parameters()):\n    pn.mul_(0.9).add_(pe)"
    step = "with torch.no_grad():  # hindsight\n" + "".join(
        f"    {ln}  # hindsight\n" for ln in update.splitlines()
    )
    new, old = prop(f'flor.log("ea", float(ema[0].weight.sum())){H}', step.rstrip("\n"))
    r = propagate(new, old)
    assert r.placed and not r.failed, r.failed
    assert "pn.mul_" not in r.source


def test_a_loop_over_an_objects_parameters_changes_that_object_for_replay() -> None:
    """florsql/code/effects.py: the step loop changes ``ema`` where it changes the parameters
    it gives (``for pe, pn in zip(ema.parameters(), net.parameters()): pe.mul_(...)``). Before
    session 30 it did not, so a replay skipping the step loop (rest mode) read ``ema`` as the
    script made it, never updated, where no checkpoint held it: silently wrong."""
    from florsql.code.effects import analyze_source

    for update in EMA_UPDATES.values():
        src = PROP.replace("  # hindsight", "").replace("EPOCH\n", "")
        src = src.replace("STEP", update.replace("\n", "\n            "))
        (step,) = analyze_source(src).named("step")
        assert "ema" in step.changed, (update, sorted(step.changed))


# --- end to end: the refusal is loud -----------------------------------------------------------

SWITCH_AROUND = (
    HEAD
    + NET
    + LOOP
    + """\
        net.eval()  # hindsight
        with torch.no_grad():
            vl = float(loss_fn(net(XV), YV))
            va = float((net(XV).argmax(1) == YV).float().mean())  # hindsight
        flor.log("vl", vl)
        flor.log("va", va)  # hindsight
        net.train()  # hindsight
"""
)


@pytest.mark.slow
def test_a_switch_around_the_old_no_grad_block_is_refused_with_its_reason(
    recorder: Recorder,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Today's code switches ``net`` to evaluation mode around the old ``with torch.no_grad():``
    block and computes ``va`` inside it; the recorded versions evaluated with dropout on. Until
    session 30 ``va`` was placed in them without the switch and computed with dropout on:
    every value differed from the hand-patched re-run's, silently. Now no version can take
    it, and the query fails saying why, per version."""
    history, _ = record_versions(
        recorder, tmp_path, two(kw(SWITCH_AROUND, "0.1"), kw(SWITCH_AROUND, "0.05"))
    )
    con = florsql.connect(history, replay="auto")
    try:
        for sql in (
            "SELECT seed, epoch, va FROM logs WHERE va IS NOT NULL",
            "SELECT seed, epoch, vl, va FROM logs WHERE vl IS NOT NULL",
        ):
            with pytest.raises(ReplayError, match="va: it runs net, which today's code switches"):
                fetch(con, sql)
    finally:
        con.close()


# --- a log statement inside a helper today's code added, called after the step loop -----------

NEW_HELPER = (
    HEAD
    + NET
    + """

def evaluate():  # hindsight
    va = float((net(XV).argmax(1) == YV).float().mean())  # hindsight
    flor.log("va", va)  # hindsight
    net.train()  # hindsight

"""
    + LOOP
    + """\
        net.eval()  # hindsight
        evaluate()  # hindsight
        flor.log("wn", float(net[0].weight.norm()))
"""
)

HELPER_BODIES = {
    # its last line matches the old net.train() at the top of the epoch
    "a_train_call_last": (
        "def evaluate():\n    va = VA\n    flor.log('va', va)\n    net.train()\n",
        "net.eval()\nevaluate()",
    ),
    # its first line matches the old net.train(): train(False) reads like it
    "a_train_false_call_first": (
        "def evaluate():\n    net.train(False)\n    va = VA\n    flor.log('va', va)\n",
        "evaluate()",
    ),
}


@pytest.mark.parametrize(("helper", "call"), HELPER_BODIES.values(), ids=HELPER_BODIES.keys())
def test_a_statement_in_a_new_helper_goes_where_the_helper_is_called(
    helper: str, call: str
) -> None:
    """Today's code adds ``evaluate()`` and calls it after the step loop; its statements were
    aligned with the whole old epoch body, and an accidental neighbour (its ``net.train()``, or
    ``net.train(False)``, beside the old ``net.train()`` at the top of the epoch) put ``va``
    before the step loop: the accuracy before training (until session 30). The place
    must be where the helper is called; none there: refused, saying where it pointed."""
    from tests.helpers_replay import old_source, patched_source

    lines = "".join(f"{ln}{H}\n" for ln in helper.replace("VA", VA).splitlines())
    text = (
        PROP.replace("ema = copy.deepcopy(net)  # hindsight\n", "")
        .replace("with flor.checkpointing", f"{lines}\n\nwith flor.checkpointing")
        .replace("            STEP\n", "")
        .replace(
            "        for idx in flor.loop", "        net.train()\n        for idx in flor.loop"
        )
        .replace("EPOCH\n", "".join(f"        {ln}{H}\n" for ln in call.splitlines()))
    )
    r = propagate(patched_source(text), old_source(text))
    assert not r.placed, r.source
    assert r.failed and "it is in evaluate(), which today's code calls" in r.failed[0].reason


def test_a_helper_extracted_today_still_takes_its_statement_among_the_inline_lines() -> None:
    """The case helpers are matched for: the old version has the step inline, today's calls
    ``train_step(xb, yb)`` in its place; the statement goes among the old inline lines."""
    old = (
        PROP.replace("ema = copy.deepcopy(net)  # hindsight\n", "")
        .replace("            STEP\n", "")
        .replace("EPOCH\n", "")
    )
    new = old.replace(
        "with flor.checkpointing",
        "def train_step(xb, yb):\n    loss = loss_fn(net(xb), yb)\n    opt.zero_grad()\n"
        "    loss.backward()\n    flor.log('gn', float(net[0].weight.grad.norm()))\n"
        "    opt.step()\n    return loss\n\n\nwith flor.checkpointing",
    ).replace(
        "            loss = loss_fn(net(X[idx]), Y[idx])\n            opt.zero_grad()\n"
        "            loss.backward()\n            opt.step()\n",
        "            loss = train_step(X[idx], Y[idx])\n",
    )
    r = propagate(new, old)
    assert not r.failed, r.failed
    lines = r.source.splitlines()
    at = next(i for i, ln in enumerate(lines) if "'gn'" in ln)
    assert "loss.backward()" in lines[at - 1] and "opt.step()" in lines[at + 1], r.source


@pytest.mark.slow
def test_a_statement_in_a_new_helper_called_after_the_step_loop_is_refused(
    recorder: Recorder,  # noqa: F811
    tmp_path: Path,
) -> None:
    """End to end: ``va`` in today's ``evaluate()`` (called after the step loop, after today's
    ``net.eval()``) went before the step loop of the recorded versions: the accuracy before
    each epoch's training, in training mode (its dropout draws changed the replayed training,
    so a NondeterminismWarning blamed the old code). Now the query fails saying where the
    helper is called and where its neighbours pointed."""
    history, _ = record_versions(
        recorder, tmp_path, two(kw(NEW_HELPER, "0.1"), kw(NEW_HELPER, "0.05"))
    )
    con = florsql.connect(history, replay="auto")
    try:
        with pytest.raises(ReplayError, match=r"va: it is in evaluate\(\), which today's code"):
            fetch(con, "SELECT seed, epoch, va FROM logs")
    finally:
        con.close()


def test_a_new_evaluate_helper_that_leaves_the_model_in_evaluation_mode_is_refused() -> None:
    """Today's ``evaluate(net, ...)`` switches ``net`` to evaluation mode and never back, and
    neither version calls ``net.train()``: in a full re-run of the patched version every epoch
    after the first would train with dropout off, while replay restores the recorded weights
    at each checkpoint, silently (a strict xfail until the s32b rule for helpers that change
    their argument was merged). Refused, naming the switch. A helper that switches back before
    its one return, where the old version never leaves training mode, is placed
    (``a_new_no_grad_evaluate_helper_returning_a_tuple``)."""
    from florsql.propagate import propagate
    from tests.helpers_replay import old_source, patched_source

    text = kw(EVAL_LEFT, "0.1")
    r = propagate(patched_source(text), old_source(text))
    assert not r.placed and r.failed
    assert all(
        "today's evaluate() changes its argument, 'model.eval()'" in f.reason for f in r.failed
    )
