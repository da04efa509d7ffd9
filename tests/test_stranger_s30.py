"""Stranger sweep s30: training-loop shapes the earlier sweeps did not write down: an ``eval``
``flor.loop`` beside the ``step`` loop inside the epoch; ``continue`` that skips batches and a
``while`` retry loop inside the step loop; the step body inside ``try/except/finally``; a
forward hook storing activations that today's statement reads; a step of the optimizer every
``k`` micro-batches by ``(i + 1) % k == 0`` with today's statement inside that ``if``; per-step
metrics gathered in a list and summarised by ``np.percentile`` after the step loop; the global
RNG re-seeded from the epoch number; a dataclass config filled from ``argparse`` and
``flor.arg`` together; a log statement inside a function defined in the epoch loop; a log name
renamed between versions; three versions where the middle one dropped a statement that the last
restores; a clipping line today's code adds that the old version never ran; a ``for ... else``
on the step loop; a global-step budget that breaks out of the step loop.

Also: two training phases (pretraining, then fine-tuning) with a value spanning both; a change
since the previous epoch; a statement before a ``del``; a walrus in a new ``if``; ``elif``
branches; a warmup setting the learning rate by hand; the tutorial's ``for phase in ["train",
"val"]`` around one step loop; a sweep calling the checkpointed loop per setting; three flor
loops deep; ``KeyboardInterrupt`` and an exception that stops training; callback objects; a
``DataLoader`` with worker processes; a step cap by ``zip``; the step loop's iterable changed
from a tensor split to a ``DataLoader``.

Found: clipping today's code adds (``gn = clip_grad_norm_(...)`` logged) was carried into a
version that never clipped (now refused: florsql/propagate/api.py ``_in_place``); an
epoch-level statement whose only neighbour is a step loop whose iterable changed was refused
("no context"; now anchored by the loop's name: florsql/propagate/normalize.py); today's
validation loop over a ``DataLoader`` draws from the global RNG (a documented limit, a strict
xfail until session 35's gap-2 fix: today's other statements that may draw now run beside the
asked ones, tests/test_replay_companions.py).

Harness: tests/test_stranger_s25.py (the oracle records the same sequence of versions,
hand-patched). Queries are asked as a user would: a narrow one first, then wider, then
aggregates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers_replay import Recorder, corpus_params
from tests.test_stranger_s25 import (  # noqa: F401  (fixtures used by name)
    Compare,
    Version,
    record_versions,
    recorder,
    workers,
)
from tests.test_stranger_s27 import RUNS, RUNS2, narrow_then_wide
from tests.test_stranger_s29 import HEAD, Pattern, edit, run_pattern, two

NET = """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
"""

# --- 1. an eval flor.loop beside the step loop inside the epoch -----------------------------

EVAL_LOOP = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        net.eval()
        correct = 0
        with torch.no_grad():
            for vb in flor.loop("eval", torch.arange(16).split(4)):
                out = net(XV[vb])
                correct += int((out.argmax(1) == YV[vb]).sum())
                flor.log("vloss", float(loss_fn(out, YV[vb])))
                flor.log("vmax", float(out.max()))  # hindsight
        flor.log("vacc", correct / 16)  # hindsight
"""
)

# --- 2. continue skipping batches; a while retry loop inside the step loop ----------------

CONTINUE = (
    HEAD
    + NET
    + """
skipped = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(48).split(6))):
            if int(Y[idx].sum()) in (0, 6) or i == SKIP:
                skipped += 1
                continue
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("pos", int(Y[idx].sum()))  # hindsight
        flor.log("skipped", skipped)  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
"""
)

RETRY = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            tries = 0
            while True:
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                tries += 1
                if loss.item() < THR or tries >= 3:
                    break
            flor.log("loss", loss.item())
            flor.log("tries", tries)  # hindsight
        flor.log("wn", float(net[2].weight.norm()))  # hindsight
"""
)

# --- 3. the step body in try/except/finally --------------------------------------------------

TRY = (
    HEAD
    + NET
    + """
nstep = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        bad = 0
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            try:
                out = net(X[idx])
                if float(out.abs().max()) > LIM:
                    raise FloatingPointError("blow-up")
                loss = loss_fn(out, Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
                flor.log("omax", float(out.abs().max()))  # hindsight
            except FloatingPointError:
                bad += 1
                flor.log("bad_at", nstep)  # hindsight
            finally:
                nstep += 1
                flor.log("nstep", nstep)  # hindsight
        flor.log("bad", bad)  # hindsight
"""
)

# --- 4. a forward hook storing activations ---------------------------------------------------

HOOK = (
    HEAD
    + """
acts = {}


def keep(name):
    def hook(module, inp, out):
        acts[name] = out.detach()

    return hook


net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
net[1].register_forward_hook(keep("relu"))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("dead", float((acts["relu"] == 0).float().mean()))  # hindsight
        with torch.no_grad():
            net(XV)
        flor.log("v_act", float(acts["relu"].mean()))  # hindsight
"""
)

# today's code adds the hook (the old version never registered one)
HOOK_NEW = (
    HEAD
    + """
acts = {}  # hindsight


def keep(name):  # hindsight
    def hook(module, inp, out):  # hindsight
        acts[name] = out.detach()  # hindsight
    # hindsight
    return hook  # hindsight


net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
net[1].register_forward_hook(keep("relu"))  # hindsight
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("dead", float((acts["relu"] == 0).float().mean()))  # hindsight
"""
)

# --- 5. an optimizer step every k micro-batches; today's statement inside that if ----------

ACCUM_K = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.Adam(net.parameters(), lr=LR)
loss_fn = nn.CrossEntropyLoss()
k = K
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        opt.zero_grad()
        for i, idx in enumerate(flor.loop("step", torch.randperm(48).split(7))):
            loss = loss_fn(net(X[idx]), Y[idx]) / k
            loss.backward()
            if (i + 1) % k == 0:
                gn = torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                flor.log("gn", float(gn))  # hindsight
                opt.step()
                opt.zero_grad()
            flor.log("loss", loss.item() * k)
        flor.log("left", float(net[0].weight.grad.abs().sum()))  # hindsight
"""
)

# --- 6. per-step metrics in a list, summarised after the step loop ------------------------

PERCENTILE = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        losses = []  # hindsight
        for idx in flor.loop("step", torch.randperm(48).split(6)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())  # hindsight
            flor.log("loss", loss.item())
        flor.log("p90", float(np.percentile(losses, 90)))  # hindsight
        flor.log("med", float(np.median(losses)))  # hindsight
"""
)

# the list is the old version's too, kept over the whole run (never reset)
PERCENTILE_RUN = (
    HEAD
    + NET
    + """
losses = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(6)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            flor.log("loss", loss.item())
        flor.log("p90", float(np.percentile(losses, 90)))  # hindsight
        flor.log("n", len(losses))  # hindsight
"""
)

# --- 7. the global RNG re-seeded from the epoch number; dropout ---------------------------

RESEED = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        torch.manual_seed(seed * 100 + epoch)
        np.random.seed(epoch)
        perm = torch.randperm(48)
        noise = float(np.random.rand())
        for idx in flor.loop("step", perm.split(8)):
            xb = X[idx] + noise * 0.1
            loss = loss_fn(net(xb), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("draw", float(torch.rand(1)))  # hindsight
        flor.log("noise", noise)  # hindsight
        flor.log("first", int(perm[0]))  # hindsight
"""
)

# --- 8. a dataclass config from argparse and flor.arg together ----------------------------

ARGPARSE = (
    HEAD
    + """
import argparse
from dataclasses import dataclass


@dataclass
class Config:
    lr: float
    bs: int
    hidden: int = 12


parser = argparse.ArgumentParser()
parser.add_argument("--bs", type=int, default=8)
parser.add_argument("--hidden", type=int, default=HID)
args, _ = parser.parse_known_args()
cfg = Config(lr=flor.arg("lr", LR), bs=args.bs, hidden=args.hidden)
net = nn.Sequential(nn.Linear(6, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 2))
opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(cfg.bs)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("bs_seen", len(idx))  # hindsight
        flor.log("width", net[0].out_features)  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)

# --- 9. a log statement inside a function defined in the epoch loop ------------------------

NESTED_DEF = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        scale = 1.0 + epoch

        def evaluate(m):
            m.eval()
            with torch.no_grad():
                out = m(XV)
            m.train()
            acc = float((out.argmax(1) == YV).float().mean())
            flor.log("vscaled", acc * scale)  # hindsight
            return acc

        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("acc", evaluate(net))
"""
)

# --- 10. a log name renamed between versions; today's code computes the old name otherwise -

RENAMED_A = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            v = float(loss_fn(net(XV), YV))
        flor.log("val", v)
        flor.log("val_loss", v)  # hindsight
"""
)

RENAMED_B = edit(
    RENAMED_A,
    ('        flor.log("val", v)\n        flor.log("val_loss", v)  # hindsight\n',
     '        flor.log("val_loss", v)\n'
     '        flor.log("val", float((net(XV).argmax(1) == YV).float().mean()))\n'),
)  # fmt: skip

# --- 11. three versions: the middle one dropped a statement the last restores ------------

THREE_0 = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            flor.log("gnorm", float(net[0].weight.grad.norm()))
            opt.step()
            flor.log("loss", loss.item())
        flor.log("wn", float(net[0].weight.norm()))
"""
)

THREE_1 = edit(
    THREE_0,
    ('flor.log("gnorm", float(net[0].weight.grad.norm()))',
     'flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight'),
    ('flor.log("wn", float(net[0].weight.norm()))',
     'flor.log("wn", float(net[0].weight.norm()))  # hindsight'),
    ("lr=LR", "lr=LR * 0.5"),
)  # fmt: skip

# --- 12. clipping that today's code adds, which the old version never ran ----------------

CLIP_OLD = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            flor.log("gpre", float(net[0].weight.grad.norm()))  # hindsight
            opt.step()
            flor.log("loss", loss.item())
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)

CLIP_NEW = edit(
    CLIP_OLD,
    ("            flor.log(\"gpre\", float(net[0].weight.grad.norm()))  # hindsight\n",
     "            flor.log(\"gpre\", float(net[0].weight.grad.norm()))  # hindsight\n"
     "            gn = torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)\n"
     "            flor.log(\"gn\", float(gn))\n"),
)  # fmt: skip

# --- 13. for ... else on the step loop -------------------------------------------------------

FOR_ELSE = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            if loss.item() < STOP:
                break
        else:
            full = True
            flor.log("last_loss", loss.item())  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)

# --- 14. a global step budget that breaks out of the step loop ----------------------------

BUDGET = (
    HEAD
    + NET
    + """
max_steps = MAX
gstep = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            if gstep >= max_steps:
                break
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            gstep += 1
            flor.log("loss", loss.item())
            flor.log("g", gstep)  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
        flor.log("gstep", gstep)  # hindsight
"""
)

# --- 15. a global counter mutated in a helper the step loop calls -------------------------

GLOBAL_HELPER = (
    HEAD
    + NET
    + """
seen = 0
big = 0


def train_step(idx):
    global seen, big
    loss = loss_fn(net(X[idx]), Y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    seen += len(idx)
    if loss.item() > 0.7:
        big += 1
    return loss.item()


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            flor.log("loss", train_step(idx))
            flor.log("seen", seen)  # hindsight
        flor.log("big", big)  # hindsight
"""
)

# --- 16. two phases: a pretraining loop, then fine-tuning; today's value spans both -------

TWO_PHASE = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
loss_fn = nn.CrossEntropyLoss()
pre_opt = torch.optim.SGD(net.parameters(), lr=LR)
with flor.checkpointing(model=net, optimizer=pre_opt):
    for pre in flor.loop("pre", range(2)):
        for idx in torch.randperm(48).split(12):
            loss = loss_fn(net(-X[idx]), Y[idx])
            pre_opt.zero_grad()
            loss.backward()
            pre_opt.step()
        flor.log("pre_loss", loss.item())
        flor.log("pre_w", float(net[0].weight.sum()))  # hindsight
w_pre = net[0].weight.detach().clone()  # hindsight
opt = torch.optim.Adam(net.parameters(), lr=0.01)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("drift", float((net[0].weight - w_pre).norm()))  # hindsight
"""
)

# --- 17. a change since the previous epoch: today's code keeps the last epoch's weights ----

PREV_EPOCH = (
    HEAD
    + NET
    + """
prev = None  # hindsight
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if prev is not None:  # hindsight
            flor.log("dw", float((net[0].weight - prev).norm()))  # hindsight
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        prev = net[0].weight.detach().clone()  # hindsight
"""
)

# --- 18. today's statement before a del that frees the logits -------------------------------

DEL_OUT = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("omax", float(out.max()))  # hindsight
            del out, loss
        out = net(XV)
        flor.log("vmean", float(out.mean()))  # hindsight
        del out
"""
)

# --- 19. a walrus spike counter today's code adds in a new if ------------------------------

WALRUS = (
    HEAD
    + NET
    + """
spikes = 0  # hindsight
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            if (g := float(net[0].weight.grad.norm())) > THR:  # hindsight
                spikes += 1  # hindsight
            opt.step()
            flor.log("loss", loss.item())
        flor.log("spikes", spikes)  # hindsight
"""
)

# --- 20. statements in the elif branches of an epoch-level schedule -----------------------

ELIF = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        if epoch % 3 == 0:
            with torch.no_grad():
                net[2].weight.mul_(0.9)
            flor.log("shrunk", 1)
        elif epoch % 3 == 1:
            for g in opt.param_groups:
                g["lr"] *= 0.5
            flor.log("lr_now", opt.param_groups[0]["lr"])  # hindsight
        else:
            opt.zero_grad()
            flor.log("w2", float(net[2].weight.norm()))  # hindsight
        flor.log("w0", float(net[0].weight.norm()))  # hindsight
"""
)

# --- 21. a per-step warmup that sets the learning rate by hand; flor.arg as a default -------

WARMUP = (
    HEAD
    + """
def make_opt(params, lr=flor.arg("lr", LR)):
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = make_opt(net.parameters())
base = opt.param_groups[0]["lr"]
loss_fn = nn.CrossEntropyLoss()
gstep = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            gstep += 1
            for g in opt.param_groups:
                g["lr"] = base * min(1.0, gstep / 10)
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("lr_step", opt.param_groups[0]["lr"])  # hindsight
        flor.log("gstep", gstep)  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)


# --- 22. epoch-level reads of what the step loop left: its variables after it -------------

LEFT_OVER = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(48).split(BS))):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("last_i", i)  # hindsight
        flor.log("last_idx", int(idx[0]))  # hindsight
        flor.log("last_loss", loss.item())  # hindsight
        flor.log("last_out", float(out.sum()))  # hindsight
"""
)

# --- 23. batches drawn with next() from a generator that outlives the epoch -------------

GEN_STREAM = (
    HEAD
    + """
def batches(bs):
    while True:
        perm = torch.randperm(48)
        for i in range(0, 48 - bs + 1, bs):
            yield perm[i : i + bs]


net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
stream = batches(BS)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for s in flor.loop("step", range(5)):
            idx = next(stream)
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("first", int(idx[0]))  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)


# --- 24. the tutorial's phase loop: one step loop run for train and for val each epoch -----

PHASES = (
    HEAD
    + NET
    + """
data = {"train": (X, Y), "val": (XV, YV)}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for phase in ["train", "val"]:
            net.train(phase == "train")
            xs, ys = data[phase]
            running = 0.0
            for idx in flor.loop("step", torch.randperm(len(xs)).split(8)):
                with torch.set_grad_enabled(phase == "train"):
                    loss = loss_fn(net(xs[idx]), ys[idx])
                    if phase == "train":
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                running += loss.item() * len(idx)
                flor.log("loss", loss.item())
                flor.log("n", len(idx))  # hindsight
            flor.log(phase + "_loss", running / len(xs))
            flor.log("mean_loss", running / len(xs))  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)

# --- 25. a sweep in one run: the checkpointed epoch loop in a function called per setting --

SWEEP = (
    HEAD
    + """
def train(lr):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            for idx in flor.loop("step", torch.randperm(48).split(8)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
            flor.log("wn", float(net[0].weight.norm()))  # hindsight
    return net


for lr in LRS:
    model = train(lr)
    flor.log("final", float(model[2].weight.sum()))  # hindsight
"""
)


# --- 26. three flor loops deep: micro-batches inside each step ----------------------------

MICRO = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(12)):
            opt.zero_grad()
            total = 0.0
            for mb in flor.loop("micro", idx.split(SPLIT)):
                loss = loss_fn(net(X[mb]), Y[mb]) * len(mb) / len(idx)
                loss.backward()
                total += loss.item()
                flor.log("mg", float(net[0].weight.grad.norm()))  # hindsight
            opt.step()
            flor.log("loss", total)
            flor.log("wsum", float(net[0].weight.sum()))  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)

# --- 27. training inside try/except KeyboardInterrupt, a final value in finally -----------

INTERRUPT = (
    HEAD
    + NET
    + """
try:
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            for idx in flor.loop("step", torch.randperm(48).split(8)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
            flor.log("wn", float(net[0].weight.norm()))  # hindsight
except KeyboardInterrupt:
    print("interrupted")
finally:
    with torch.no_grad():
        acc = float((net(XV).argmax(1) == YV).float().mean())
    flor.log("final_acc", acc)  # hindsight
"""
)

# --- 28. a DataLoader with worker processes, shuffled by the global RNG --------------------

WORKERS_LOADER = (
    HEAD
    + """
from torch.utils.data import DataLoader, TensorDataset

net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
loader = DataLoader(TensorDataset(X, Y), batch_size=8, shuffle=True, num_workers=2)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for xb, yb in flor.loop("step", loader):
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("ysum", int(yb.sum()))  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)


# --- 29. Lightning-style callback objects called from the loops ---------------------------

CALLBACKS = (
    HEAD
    + """
class Patience:
    def __init__(self):
        self.best = float("inf")
        self.bad = 0
        self.seen = 0

    def on_step_end(self, loss):
        self.seen += 1
        flor.log("seen", self.seen)  # hindsight

    def on_epoch_end(self, net):
        with torch.no_grad():
            val = float(loss_fn(net(XV), YV))
        if val < self.best:
            self.best, self.bad = val, 0
        else:
            self.bad += 1
        flor.log("val", val)
        flor.log("best", self.best)  # hindsight
        flor.log("bad", self.bad)  # hindsight


net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
callbacks = [Patience()]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            for cb in callbacks:
                cb.on_step_end(loss.item())
        for cb in callbacks:
            cb.on_epoch_end(net)
"""
)

# --- 30. early stopping by an exception raised in the step loop, caught outside ------------

RAISE_STOP = (
    HEAD
    + NET
    + """
class StopTraining(Exception):
    pass


gstep = 0
try:
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            for idx in flor.loop("step", torch.randperm(48).split(8)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                gstep += 1
                flor.log("loss", loss.item())
                flor.log("g", gstep)  # hindsight
                if gstep >= MAX:
                    raise StopTraining()
            flor.log("wn", float(net[0].weight.norm()))  # hindsight
except StopTraining:
    pass
flor.log("stopped_at", gstep)  # hindsight
flor.log("final_w", float(net[0].weight.sum()))  # hindsight
"""
)


# --- 31. today's validation loop over a DataLoader (its iterator draws a base seed) -------

VAL_LOADER = (
    HEAD
    + """
from torch.utils.data import DataLoader, TensorDataset

net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
val_loader = DataLoader(TensorDataset(XV, YV), batch_size=8)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("w", float(net[0].weight.sum()))  # hindsight
        net.eval()
        correct = 0  # hindsight
        with torch.no_grad():  # hindsight
            for xb, yb in val_loader:  # hindsight
                correct += int((net(xb).argmax(1) == yb).sum())  # hindsight
        flor.log("vacc", correct / 16)  # hindsight
"""
)


# --- 32. the step loop's iterable changed type between versions --------------------------

ITER_A = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            xb, yb = X[idx], Y[idx]
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("bsum", float(xb.sum()))  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)

ITER_B = edit(
    ITER_A,
    ('        for idx in flor.loop("step", torch.randperm(48).split(8)):\n'
     "            xb, yb = X[idx], Y[idx]\n",
     '        for xb, yb in flor.loop("step", loader):\n'),
    ("with flor.checkpointing",
     "from torch.utils.data import DataLoader, TensorDataset\n\n"
     "loader = DataLoader(TensorDataset(X, Y), batch_size=8, shuffle=True)\n"
     "with flor.checkpointing"),
)  # fmt: skip

# --- 33. a step cap by zip(flor.loop(...), range(n)): zip draws one batch too many -------

ZIP_CAP = (
    HEAD
    + NET
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx, _ in zip(flor.loop("step", torch.randperm(48).split(6)), range(CAP)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("first", int(idx[0]))  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)


QS = ["SELECT seed, epoch, step, loss FROM logs WHERE epoch = 2"]

PATTERNS = [
    Pattern(
        "an_eval_flor_loop_beside_the_step_loop_inside_the_epoch",
        two(EVAL_LOOP.replace("LR", "0.1"), EVAL_LOOP.replace("LR", "0.05")),
        [*narrow_then_wide("vacc"), *narrow_then_wide("vmax", "eval"),
         "SELECT seed, epoch, eval, vmax, vloss FROM logs WHERE eval = 2",
         "SELECT seed, epoch, max(vmax), max(vacc) FROM logs GROUP BY seed, epoch"],
    ),
    Pattern(
        "continue_skipping_batches_with_a_run_level_counter",
        two(CONTINUE.replace("LR", "0.1").replace("SKIP", "3"),
            CONTINUE.replace("LR", "0.05").replace("SKIP", "5")),
        [*narrow_then_wide("skipped"), *narrow_then_wide("pos", "step"),
         "SELECT seed, epoch, w FROM logs WHERE w IS NOT NULL"],
    ),
    Pattern(
        "a_while_retry_loop_inside_the_step_loop",
        two(RETRY.replace("LR", "0.1").replace("THR", "0.6"),
            RETRY.replace("LR", "0.05").replace("THR", "0.5")),
        [*narrow_then_wide("tries", "step"), *narrow_then_wide("wn")],
    ),
    Pattern(
        "the_step_body_in_try_except_finally",
        two(TRY.replace("LR", "0.5").replace("LIM", "4.0"),
            TRY.replace("LR", "0.8").replace("LIM", "3.0")),
        [*narrow_then_wide("nstep", "step"), *narrow_then_wide("omax", "step"),
         "SELECT seed, epoch, step, bad_at FROM logs WHERE bad_at IS NOT NULL",
         "SELECT seed, epoch, bad FROM logs WHERE bad IS NOT NULL"],
    ),
    Pattern(
        "a_forward_hook_storing_activations_read_by_todays_statement",
        two(HOOK.replace("LR", "0.1"), HOOK.replace("LR", "0.05")),
        [*narrow_then_wide("v_act"), *narrow_then_wide("dead", "step")],
    ),
    Pattern(
        "an_optimizer_step_every_k_micro_batches_statement_inside_the_if",
        two(ACCUM_K.replace("LR", "0.01").replace("K", "2"),
            ACCUM_K.replace("LR", "0.02").replace("K", "3")),
        [*narrow_then_wide("gn", "step"), *narrow_then_wide("left")],
    ),
    Pattern(
        "per_step_losses_in_a_list_summarised_by_a_percentile",
        two(PERCENTILE.replace("LR", "0.1"), PERCENTILE.replace("LR", "0.05")),
        [*narrow_then_wide("p90"), "SELECT seed, epoch, p90, med FROM logs"],
    ),
    Pattern(
        "a_run_long_list_of_losses_summarised_each_epoch",
        two(PERCENTILE_RUN.replace("LR", "0.1"), PERCENTILE_RUN.replace("LR", "0.05")),
        [*narrow_then_wide("p90"), "SELECT seed, epoch, n FROM logs WHERE n IS NOT NULL"],
    ),
    Pattern(
        "the_global_rng_reseeded_from_the_epoch_number",
        two(RESEED.replace("LR", "0.1"), RESEED.replace("LR", "0.05")),
        [*narrow_then_wide("noise"), *narrow_then_wide("draw", "step"),
         "SELECT seed, epoch, first FROM logs WHERE first IS NOT NULL"],
    ),
    Pattern(
        "a_dataclass_config_from_argparse_and_flor_arg",
        [({"train.py": edit(ARGPARSE, ("HID", "12"), ("LR", "0.1"))},
          (("--seed", "0"), ("--seed", "1", "--bs", "12"))),
         ({"train.py": edit(ARGPARSE, ("HID", "10"), ("LR", "0.05"))},
          (("--seed", "2", "--hidden", "6"), ("--seed", "1", "--bs", "16", "--lr", "0.2")))],
        [*narrow_then_wide("width"), *narrow_then_wide("bs_seen", "step"),
         "SELECT seed, epoch, wn FROM logs WHERE wn IS NOT NULL"],
    ),
    Pattern(
        "a_log_statement_in_a_function_defined_in_the_epoch_loop",
        two(NESTED_DEF.replace("LR", "0.1"), NESTED_DEF.replace("LR", "0.05")),
        [*narrow_then_wide("vscaled"), "SELECT seed, epoch, acc, vscaled FROM logs"],
    ),
    Pattern(
        "a_log_name_renamed_and_the_old_name_computed_otherwise_today",
        [({"train.py": RENAMED_A.replace("LR", "0.1")}, RUNS),
         ({"train.py": RENAMED_B.replace("LR", "0.05")}, RUNS2)],
        [*narrow_then_wide("val_loss"), "SELECT seed, epoch, val, val_loss FROM logs"],
    ),
    Pattern(
        "three_versions_the_middle_one_dropped_what_the_last_restores",
        [({"train.py": THREE_0.replace("LR", "0.1")}, (("--seed", "0"),)),
         ({"train.py": THREE_1.replace("LR", "0.1")}, (("--seed", "1"),)),
         ({"train.py": THREE_0.replace("LR", "0.05")}, (("--seed", "2"),))],
        [*narrow_then_wide("wn"), *narrow_then_wide("gnorm", "step"), *QS],
    ),
    Pattern(
        "clipping_today_adds_that_the_old_version_never_ran",
        two(CLIP_OLD.replace("LR", "0.5"), CLIP_NEW.replace("LR", "0.5")),
        [*narrow_then_wide("gpre", "step"), *narrow_then_wide("wn"), *QS,
         "SELECT seed, epoch, step, gn, gpre FROM logs"],
    ),
    Pattern(
        "for_else_on_the_step_loop",
        two(FOR_ELSE.replace("LR", "0.1").replace("STOP", "0.3"),
            FOR_ELSE.replace("LR", "0.05").replace("STOP", "0.2")),
        [*narrow_then_wide("last_loss"), *narrow_then_wide("wn")],
    ),
    Pattern(
        "a_global_step_budget_that_breaks_out_of_the_step_loop",
        [({"train.py": BUDGET.replace("LR", "0.1").replace("MAX", "14")}, RUNS),
         ({"train.py": BUDGET.replace("LR", "0.05").replace("MAX", "20")}, RUNS2)],
        [*narrow_then_wide("gstep"), *narrow_then_wide("g", "step"),
         "SELECT seed, epoch, wn FROM logs WHERE wn IS NOT NULL"],
    ),
    Pattern(
        "a_global_counter_mutated_in_a_helper_the_step_loop_calls",
        two(GLOBAL_HELPER.replace("LR", "0.1"), GLOBAL_HELPER.replace("LR", "0.05")),
        [*narrow_then_wide("seen", "step"), *narrow_then_wide("big")],
    ),
]  # fmt: skip

PATTERNS += [
    Pattern(
        "a_pretraining_loop_then_fine_tuning_a_value_spanning_both",
        two(TWO_PHASE.replace("LR", "0.1"), TWO_PHASE.replace("LR", "0.05")),
        [*narrow_then_wide("drift"), "SELECT seed, pre, pre_w FROM logs WHERE pre_w IS NOT NULL",
         "SELECT seed, max(drift) - min(drift) FROM logs GROUP BY seed"],
    ),
    Pattern(
        "a_change_since_the_previous_epoch_kept_by_todays_code",
        two(PREV_EPOCH.replace("LR", "0.1"), PREV_EPOCH.replace("LR", "0.05")),
        [*narrow_then_wide("dw"), "SELECT seed, epoch, dw FROM logs WHERE epoch = 3"],
    ),
    Pattern(
        "todays_statement_before_a_del_that_frees_the_logits",
        two(DEL_OUT.replace("LR", "0.1"), DEL_OUT.replace("LR", "0.05")),
        [*narrow_then_wide("omax", "step"), *narrow_then_wide("vmean")],
    ),
    Pattern(
        "a_walrus_spike_counter_in_a_new_if",
        two(WALRUS.replace("LR", "0.1").replace("THR", "0.4"),
            WALRUS.replace("LR", "0.05").replace("THR", "0.4")),
        [*narrow_then_wide("spikes")],
    ),
    Pattern(
        "statements_in_the_elif_branches_of_an_epoch_schedule",
        two(ELIF.replace("LR", "0.1"), ELIF.replace("LR", "0.2")),
        [*narrow_then_wide("w0"), "SELECT seed, epoch, lr_now, w2, shrunk FROM logs"],
    ),
    Pattern(
        "a_warmup_setting_the_lr_by_hand_and_flor_arg_as_a_default",
        [({"train.py": WARMUP.replace("LR", "0.1")}, RUNS),
         ({"train.py": WARMUP.replace("LR", "0.05")},
          (("--seed", "2", "--lr", "0.2"), ("--seed", "1", "--epochs", "3")))],
        [*narrow_then_wide("lr_step", "step"), *narrow_then_wide("wn"),
         "SELECT seed, epoch, gstep FROM logs WHERE gstep IS NOT NULL"],
    ),
]  # fmt: skip

PATTERNS += [
    Pattern(
        "epoch_level_reads_of_the_step_loops_variables_after_it",
        two(LEFT_OVER.replace("LR", "0.1").replace("BS", "10"),
            LEFT_OVER.replace("LR", "0.05").replace("BS", "7")),
        [*narrow_then_wide("last_loss"),
         "SELECT seed, epoch, last_i, last_idx, last_out FROM logs WHERE last_i IS NOT NULL"],
    ),
    Pattern(
        "batches_drawn_by_next_from_a_generator_that_outlives_the_epoch",
        two(GEN_STREAM.replace("LR", "0.1").replace("BS", "8"),
            GEN_STREAM.replace("LR", "0.05").replace("BS", "12")),
        [*narrow_then_wide("wn"), *narrow_then_wide("first", "step")],
    ),
]  # fmt: skip

PATTERNS += [
    Pattern(
        "the_tutorials_phase_loop_one_step_loop_for_train_and_val",
        two(PHASES.replace("LR", "0.1"), PHASES.replace("LR", "0.05")),
        [*narrow_then_wide("wn"), *narrow_then_wide("n", "step"),
         "SELECT seed, epoch, mean_loss, train_loss, val_loss FROM logs"],
    ),
    Pattern(
        "a_sweep_in_one_run_the_epoch_loop_in_a_function_called_per_setting",
        two(SWEEP.replace("LRS", "[0.1, 0.05]"), SWEEP.replace("LRS", "[0.2, 0.02]")),
        [*narrow_then_wide("wn"), "SELECT seed, final FROM logs WHERE final IS NOT NULL"],
    ),
]  # fmt: skip

PATTERNS += [
    Pattern(
        "three_flor_loops_deep_micro_batches_inside_each_step",
        two(MICRO.replace("LR", "0.1").replace("SPLIT", "4"),
            MICRO.replace("LR", "0.05").replace("SPLIT", "6")),
        [*narrow_then_wide("wn"), *narrow_then_wide("wsum", "step"),
         "SELECT seed, epoch, step, micro, mg FROM logs WHERE epoch = 2 AND step = 1",
         "SELECT seed, epoch, count(mg), round(sum(mg), 6) FROM logs GROUP BY seed, epoch"],
    ),
    Pattern(
        "training_inside_try_except_keyboard_interrupt_a_final_value_in_finally",
        two(INTERRUPT.replace("LR", "0.1"), INTERRUPT.replace("LR", "0.05")),
        [*narrow_then_wide("wn"), "SELECT seed, final_acc FROM logs WHERE final_acc IS NOT NULL"],
    ),
    Pattern(
        "a_dataloader_with_worker_processes_shuffled_by_the_global_rng",
        two(WORKERS_LOADER.replace("LR", "0.1"), WORKERS_LOADER.replace("LR", "0.05")),
        [*narrow_then_wide("wn"), *narrow_then_wide("ysum", "step")],
    ),
]  # fmt: skip

PATTERNS += [
    Pattern(
        "lightning_style_callback_objects_called_from_the_loops",
        two(CALLBACKS.replace("LR", "0.1"), CALLBACKS.replace("LR", "0.3")),
        [*narrow_then_wide("bad"), *narrow_then_wide("seen", "step"),
         "SELECT seed, epoch, best, val FROM logs WHERE best IS NOT NULL"],
    ),
    Pattern(
        "early_stopping_by_an_exception_raised_in_the_step_loop",
        [({"train.py": RAISE_STOP.replace("LR", "0.1").replace("MAX", "15")}, RUNS),
         ({"train.py": RAISE_STOP.replace("LR", "0.05").replace("MAX", "9")}, RUNS2)],
        [*narrow_then_wide("wn"), *narrow_then_wide("g", "step"),
         "SELECT seed, stopped_at, final_w FROM logs WHERE stopped_at IS NOT NULL"],
    ),
]  # fmt: skip

PATTERNS += [
    Pattern(
        "todays_validation_loop_over_a_dataloader_draws_from_the_global_rng",
        two(VAL_LOADER.replace("LR", "0.1"), VAL_LOADER.replace("LR", "0.05")),
        [*narrow_then_wide("vacc"), *narrow_then_wide("w", "step")],
    ),
    Pattern(
        "todays_validation_loop_over_a_dataloader_with_its_own_generator",
        two(VAL_LOADER.replace("LR", "0.1").replace(
                "batch_size=8)", "batch_size=8, generator=torch.Generator())"),
            VAL_LOADER.replace("LR", "0.05").replace(
                "batch_size=8)", "batch_size=8, generator=torch.Generator())")),
        [*narrow_then_wide("vacc"), *narrow_then_wide("w", "step")],
    ),
]  # fmt: skip

PATTERNS += [
    Pattern(
        "the_step_loops_iterable_changed_type_between_versions",
        [({"train.py": ITER_A.replace("LR", "0.1")}, RUNS),
         ({"train.py": ITER_B.replace("LR", "0.05")}, RUNS2)],
        [*narrow_then_wide("wn"), *narrow_then_wide("bsum", "step")],
    ),
    Pattern(
        "a_step_cap_by_zip_that_draws_one_batch_too_many",
        two(ZIP_CAP.replace("LR", "0.1").replace("CAP", "5"),
            ZIP_CAP.replace("LR", "0.05").replace("CAP", "4")),
        [*narrow_then_wide("wn"), *narrow_then_wide("first", "step"),
         "SELECT seed, epoch, count(*) FROM logs WHERE loss IS NOT NULL GROUP BY seed, epoch"],
    ),
]  # fmt: skip

# sparser checkpoints: replay starts further back and runs whole epochs
PATTERNS += [
    replace(p, name=f"{p.name}_every_3rd_epoch", period=3)
    for p in PATTERNS
    if p.bug is None and p.name.startswith((
        "continue_skipping", "a_global_step_budget", "batches_drawn_by_next",
        "a_change_since_the_previous", "a_pretraining_loop", "a_warmup", "the_tutorials_phase",
        "a_run_long_list", "the_step_body_in_try", "epoch_level_reads", "a_step_cap_by_zip",
    ))
]  # fmt: skip

DEFAULT = ("the_step_body_in_try_except_finally",)


@pytest.mark.parametrize("p", corpus_params(PATTERNS, DEFAULT))
def test_pattern(recorder: Recorder, tmp_path: Path, p: Pattern) -> None:  # noqa: F811
    run_pattern(recorder, tmp_path, p)


# --- propagation: a hook today's code adds is refused ---------------------------------------


def test_a_forward_hook_today_adds_is_refused() -> None:
    """Today's code registers a forward hook that fills ``acts``; the log statement reads
    ``acts``: the hook's code changes it inside a function, where propagation places no code.
    Refused with that reason (never ``acts`` logged empty, never a ``KeyError``)."""
    from florsql.propagate import propagate
    from tests.helpers_replay import old_source, patched_source

    r = propagate(patched_source(HOOK_NEW), old_source(HOOK_NEW))
    assert not r.placed and len(r.failed) == 1, r
    assert "it reads acts, which today's code changes inside keep()" in r.failed[0].reason
