"""Stranger sweep s29: training scripts shaped as people write them that the earlier sweeps did
not write down: the loops inside ``def train(cfg)`` called under ``if __name__ == "__main__":``
with a ``random_split`` of a ``TensorDataset`` behind a shuffling ``DataLoader``; a GRU trained
by truncated back-propagation with its hidden state carried across steps; augmentation drawn
from a legacy ``numpy.random.RandomState``, a ``random.Random`` and the global ``random``;
k-fold cross-validation (a ``fold`` loop around the checkpointed ``epoch`` loop, the model
rebuilt per fold); ``ReduceLROnPlateau`` on a validation loss with early stopping and the best
weights restored for a run-level value; a Trainer class whose step helper is a closure over the
epoch; lines reordered and renamed between versions; a ``return`` wrapped in ``flor.log``.

Harness: tests/test_stranger_s25.py (the oracle records the same sequence of versions,
hand-patched). Queries are asked as a user would: a narrow one first, then wider, then
aggregates, self-joins, windows, ``ORDER BY ... LIMIT`` and ``?`` parameters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_replay import Recorder, corpus_params
from tests.test_stranger_s25 import (  # noqa: F401  (fixtures used by name)
    Compare,
    Version,
    record_versions,
    recorder,
    workers,
)
from tests.test_stranger_s27 import HEAD as S27_HEAD
from tests.test_stranger_s27 import RUNS, RUNS2, narrow_then_wide

HEAD = S27_HEAD + "import random\nimport numpy as np\n"

Query = str | tuple[str, Sequence[Any], bool]  # sql, or (sql, params, ordered)


@dataclass(frozen=True)
class Pattern:
    name: str
    versions: Sequence[Version]
    sqls: Sequence[Query]
    bug: str | None = None
    period: int = 1  # FLORSQL_CHECKPOINT_PERIOD of the recordings
    commit: bool = True  # False: versions after the first are working-tree edits when run


def edit(text: str, *pairs: tuple[str, str]) -> str:
    """``text`` with each anchor (which must occur exactly once) replaced."""
    for old, new in pairs:
        assert text.count(old) == 1, (old, text.count(old))
        text = text.replace(old, new)
    return text


def two(a: str, b: str) -> list[Version]:
    return [({"train.py": a}, RUNS), ({"train.py": b}, RUNS2)]


# --- 1. def train(cfg) under a main guard; random_split + shuffling DataLoader ---------------

TRAIN_FN = (
    HEAD
    + """
from types import SimpleNamespace
from torch.utils.data import DataLoader, TensorDataset, random_split


def train(cfg):
    g = torch.Generator().manual_seed(cfg.seed)
    tr, va = random_split(TensorDataset(X, Y), [36, 12], generator=g)
    loader = DataLoader(tr, batch_size=cfg.bs, shuffle=True, generator=g, drop_last=DROP)
    xv = torch.stack([va[i][0] for i in range(len(va))])
    yv = torch.stack([va[i][1] for i in range(len(va))])
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    loss_fn = nn.CrossEntropyLoss()
    with flor.checkpointing(model=net, optimizer=opt, sched=sched):
        for epoch in flor.loop("epoch", range(cfg.epochs)):
            net.train()
            for xb, yb in flor.loop("step", loader):
                loss = loss_fn(net(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
                flor.log("bsum", float(xb.sum()))  # hindsight
            sched.step()
            net.eval()
            with torch.no_grad():
                pv = net(xv)
            flor.log("val_acc", float((pv.argmax(1) == yv).float().mean()))  # hindsight
            flor.log("lr", sched.get_last_lr()[0])  # hindsight
    return net


if __name__ == "__main__":
    cfg = SimpleNamespace(seed=seed, epochs=epochs, bs=flor.arg("bs", 8), lr=LRATE)
    model = train(cfg)
    flor.log("final_w", float(model[0].weight.sum()))  # hindsight
"""
)

# --- 2. GRU, truncated BPTT: hidden state carried across steps, detached -------------------

GRU = (
    HEAD
    + """
S = torch.randn(4, 96, 3)
T = S.cumsum(1)[:, :, :1] * 0.1
rnn = nn.GRU(3, 8, batch_first=True)
head = nn.Linear(8, 1)
opt = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=LR)
mse = nn.MSELoss()
INIT_OUTER
with flor.checkpointing(rnn=rnn, head=head, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        INIT_INNER
        for t in flor.loop("step", range(0, 96, 16)):
            out, h = rnn(S[:, t : t + 16], h)
            loss = mse(head(out), T[:, t : t + 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
            h = h.detach()
            flor.log("loss", loss.item())
            flor.log("hn", float(h.norm()))  # hindsight
        flor.log("h_end", float(h.abs().mean()))  # hindsight
        flor.log("w_ih", float(rnn.weight_ih_l0.sum()))  # hindsight
"""
)

GRU_RESET = ("", "h = torch.zeros(1, 4, 8)")


def decay(f: str) -> tuple[str, str]:
    return ("h = torch.zeros(1, 4, 8)", f"h = h * {f}")


def gru(lr: str, init: tuple[str, str]) -> str:
    return edit(GRU, ("LR", lr), ("INIT_OUTER", init[0]), ("INIT_INNER", init[1]))


GRU_SQLS = [
    *narrow_then_wide("h_end"),
    *narrow_then_wide("hn", "step"),
    "SELECT seed, epoch, w_ih FROM logs WHERE w_ih IS NOT NULL",
]

# --- 3. augmentation from RandomState, random.Random and the global random ----------------

AUGMENT = (
    HEAD
    + """
rs = np.random.RandomState(seed)
rnd = random.Random(seed)
random.seed(seed)
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        order = rs.permutation(48)
        for i in flor.loop("step", range(0, 48, 8)):
            idx = torch.from_numpy(order[i : i + 8].copy())
            xb, yb = X[idx], Y[idx]
            flipped = rnd.random() < 0.5
            if flipped:
                xb, yb = -xb, 1 - yb
            scale = float(rs.uniform(0.8, 1.2))
            xb = xb * scale + random.gauss(0.0, 0.05)
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("scale", scale)  # hindsight
            flor.log("flipped", int(flipped))  # hindsight
        flor.log("rs_pos", int(rs.get_state()[2]))  # hindsight
        flor.log("rnd_pos", rnd.getstate()[1][-1])  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
"""
)

# --- 4. k-fold: a fold loop around the checkpointed epoch loop, model rebuilt per fold -----

KFOLD = (
    HEAD
    + """
folds = torch.arange(48).chunk(3)
loss_fn = nn.CrossEntropyLoss()
for fold in flor.loop("fold", range(3)):
    vi = folds[fold]
    ti = torch.cat([f for k, f in enumerate(folds) if k != fold])
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            for idx in flor.loop("step", ti[torch.randperm(len(ti))].split(8)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
                flor.log("gn", float(net[0].weight.grad.norm()))  # hindsight
            with torch.no_grad():
                out = net(X[vi])
                flor.log("val", float(loss_fn(out, Y[vi])))
                flor.log("vacc", float((out.argmax(1) == Y[vi]).float().mean()))  # hindsight
    flor.log("fold_w", float(net[0].weight.norm()))  # hindsight
"""
)

# --- 5. ReduceLROnPlateau on val loss, early stopping, best weights restored ---------------

PLATEAU = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
opt = torch.optim.AdamW(net.parameters(), lr=0.05, weight_decay=0.01)
sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
loss_fn = nn.CrossEntropyLoss()
best, bad, best_state = float("inf"), 0, None
with flor.checkpointing(model=net, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        net.eval()
        with torch.no_grad():
            val = float(loss_fn(net(XV), YV))
        sched.step(val)
        flor.log("val", val)
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
        flor.log("bad_epochs", sched.num_bad_epochs)  # hindsight
        if val < best:
            best, bad = val, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            bad += 1
            if bad >= PATIENCE:
                break
net.load_state_dict(best_state)
net.eval()
with torch.no_grad():
    pred = net(XV).argmax(1)
flor.log("final_acc", float((pred == YV).float().mean()))  # hindsight
flor.log("best", best)  # hindsight
"""
)

# --- 6. Trainer class; the step helper is a closure over the epoch's scale ----------------

TRAINER = (
    HEAD
    + """
class Trainer:
    def __init__(self, net, lr):
        self.net = net
        self.opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=4)
        self.loss_fn = nn.CrossEntropyLoss()
        self.steps = 0

    def train_epoch(self, epoch):
        scale = 1.0 / (epoch + 1)

        def one_step(idx):
            loss = self.loss_fn(self.net(X[idx]), Y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.steps += 1
            flor.log("scaled", loss.item() * scale)  # hindsight
            return loss.item()

        total = 0.0
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            total += one_step(idx)
        return total

    def evaluate(self):
        self.net.eval()
        with torch.no_grad():
            pred = self.net(XV).argmax(1)
        self.net.train()
        flor.log("acc0", float((pred[YV == 0] == 0).float().mean()))  # hindsight
        flor.log("acc1", float((pred[YV == 1] == 1).float().mean()))  # hindsight
        return float((pred == YV).float().mean())

    def fit(self, epochs):
        with flor.checkpointing(model=self.net, optimizer=self.opt, sched=self.sched):
            for epoch in flor.loop("epoch", range(epochs)):
                tl = self.train_epoch(epoch)
                self.sched.step()
                flor.log("train_loss", tl)
                flor.log("acc", self.evaluate())
                flor.log("steps", self.steps)  # hindsight


Trainer(nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2)), LRATE).fit(epochs)
"""
)

# --- 7. lines reordered and renamed between versions -------------------------------------

REORDER_A = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            loss.backward()
            flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
            flor.log("pmax", float(out.max()))  # hindsight
            opt.step()
            opt.zero_grad()
            flor.log("loss", loss.item())
        flor.log("wn", float(net[2].weight.norm()))  # hindsight
"""
)

REORDER_B = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            opt.zero_grad()
            logits = net(X[idx])
            batch_loss = loss_fn(logits, Y[idx])
            batch_loss.backward()
            flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
            flor.log("pmax", float(logits.max()))  # hindsight
            opt.step()
            flor.log("loss", batch_loss.item())
        flor.log("wn", float(net[2].weight.norm()))  # hindsight
"""
)

NO_GRAD_WRAP = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR)
loss_fn = crit = nn.CrossEntropyLoss()
history = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        net.eval()
        with torch.no_grad():
            v = flor.log("val", float(crit(net(XV), YV)))  # hindsight: v = float(crit(net(XV), YV))
        net.train()
        history.append(v)
        flor.log("best_val", min(history))
"""
)

# --- 9. a return wrapped in flor.log, in a helper called per epoch --------------------------

RETURN_WRAP = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR)
loss_fn = crit = nn.CrossEntropyLoss()


def evaluate(m):
    with torch.no_grad():
        return flor.log("vl", float(crit(m(XV), YV)))  # hindsight: return float(crit(m(XV), YV))


history = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        history.append(evaluate(net))
        flor.log("best_vl", min(history))  # hindsight
"""
)

# --- 10. Adam's moments read after the step loop; a loader shuffled by the global RNG ------

ADAM_STATE = (
    HEAD
    + """
from torch.utils.data import DataLoader, TensorDataset

net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.25), nn.Linear(16, 2))
opt = torch.optim.Adam(net.parameters(), lr=LR, betas=(0.9, 0.99))
loss_fn = nn.CrossEntropyLoss()
loader = DataLoader(TensorDataset(X, Y), batch_size=BS, shuffle=True)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for xb, yb in flor.loop("step", loader):
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        st = opt.state[net[0].weight]  # hindsight
        flor.log("m_norm", float(st["exp_avg"].norm()))  # hindsight
        flor.log("v_max", float(st["exp_avg_sq"].max()))  # hindsight
        flor.log("adam_t", int(st["step"]))  # hindsight
        with torch.no_grad():
            logits = net[3](net[1](net[0](XV)))
        flor.log("hist", logits.argmax(1).bincount(minlength=2).tolist())  # hindsight
        flor.log("improved", bool(loss.item() < 0.5))  # hindsight
        flor.log("phase", "warm" if epoch < 2 else "main")  # hindsight
"""
)

# --- 11. a hyperparameter added in the second version, read by today's statement -----------

NEW_ARG_A = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
wd = flor.arg("wd", 0.0)  # hindsight
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        sq = float(sum((p**2).sum() for p in net.parameters()))
        flor.log("decay_term", wd * sq)  # hindsight
"""
)

NEW_ARG_B = edit(
    NEW_ARG_A,
    ('wd = flor.arg("wd", 0.0)  # hindsight', 'wd = flor.arg("wd", 0.0)'),
    ("momentum=0.9)", "momentum=0.9, weight_decay=wd)"),
)

# --- 12. gradients accumulated across the epoch boundary (a global micro-batch counter) ----

GRAD_CARRY = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
micro = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx]) / 4
            loss.backward()
            micro += 1
            if micro % 4 == 0:
                opt.step()
                opt.zero_grad(set_to_none=False)
            flor.log("loss", loss.item())
        flor.log("pending", float(net[0].weight.grad.abs().sum()))  # hindsight
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
"""
)

# --- 13. tied weights; per-group learning rates from a LambdaLR with one lambda a group ------

TIED = (
    HEAD
    + """
TOK = torch.randint(0, 10, (48, 5))
emb = nn.Embedding(10, 8)
dec = nn.Linear(8, 10, bias=False)
dec.weight = emb.weight
body = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
model = nn.ModuleDict({"emb": emb, "body": body, "dec": dec})
opt = torch.optim.SGD(
    [{"params": emb.parameters(), "lr": LRATE}, {"params": body.parameters(), "lr": 0.05}],
    momentum=0.9,
)
sched = torch.optim.lr_scheduler.LambdaLR(opt, [lambda e: 0.9**e, lambda e: 1.0 / (1 + e)])
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=model, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(12)):
            x = TOK[idx]
            logits = model["dec"](model["body"](model["emb"](x[:, :-1])))
            loss = loss_fn(logits.reshape(-1, 10), x[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("tied", bool(dec.weight.data_ptr() == emb.weight.data_ptr()))  # hindsight
        sched.step()
        flor.log("lr0", opt.param_groups[0]["lr"])  # hindsight
        flor.log("lr1", opt.param_groups[1]["lr"])  # hindsight
        flor.log("dec_w", float(dec.weight.sum()))  # hindsight
"""
)

# --- 14. a Lookahead optimizer written in the script (no state_dict), registered -----------

LOOKAHEAD = (
    HEAD
    + """
class Lookahead:
    def __init__(self, base, k=3, alpha=0.5):
        self.base, self.k, self.alpha, self.n = base, k, alpha, 0
        self.params = [p for g in base.param_groups for p in g["params"]]
        self.slow = [p.detach().clone() for p in self.params]

    def zero_grad(self):
        self.base.zero_grad()

    def step(self):
        self.base.step()
        self.n += 1
        if self.n % self.k == 0:
            with torch.no_grad():
                for s, p in zip(self.slow, self.params):
                    s.add_(p - s, alpha=self.alpha)
                    p.copy_(s)


net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = Lookahead(torch.optim.Adam(net.parameters(), lr=LR), k=K)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("w_step", float(net[0].weight.sum()))  # hindsight
        flor.log("slow_norm", float(opt.slow[0].norm()))  # hindsight
        flor.log("n", opt.n)  # hindsight
        flor.log("same", bool(opt.params[0] is net[0].weight))  # hindsight
"""
)

# --- 15. a committed data file and a model module both changed in the second version -------

MODULE_TRAIN = """
import numpy as np
import torch
from torch import nn
import florsql as flor
from model import Net

torch.set_num_threads(1)
seed = flor.arg("seed", 0)
epochs = flor.arg("epochs", 4)
torch.manual_seed(seed)
D = torch.tensor(np.loadtxt("data.csv", delimiter=","), dtype=torch.float32)
X, Y = D[:, :-1], D[:, -1].long()
net = Net()
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("h_mean", float(net.hidden(X[idx]).mean()))  # hindsight
        flor.log("fc1", float(net.fc1.weight.norm()))  # hindsight
"""

MODULE_NET = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, WIDTH)
        self.fc2 = nn.Linear(WIDTH, 2)

    def hidden(self, x):
        return ACT(self.fc1(x))

    def forward(self, x):
        return self.fc2(self.hidden(x))
"""


def module_net(width: str, act: str) -> str:
    text = MODULE_NET.replace("WIDTH", width).replace("ACT", act)
    return text.replace("from torch import nn", "import torch\nfrom torch import nn")


def data_csv(seed: int, n: int) -> str:
    import random as _random

    rnd = _random.Random(seed)
    rows = []
    for _ in range(n):
        xs = [round(rnd.uniform(-1, 1), 3) for _ in range(4)]
        rows.append(",".join(map(str, [*xs, int(xs[0] + xs[1] > 0)])))
    return "\n".join(rows) + "\n"


JOINS: list[Query] = [
    # the step and epoch statements together: a self-join, a CTE, a window, ORDER BY ... LIMIT
    "SELECT a.seed, a.epoch, a.wn, b.wn FROM logs a JOIN logs b ON a.run_id = b.run_id "
    "AND a.epoch = b.epoch + 1 WHERE a.wn IS NOT NULL AND b.wn IS NOT NULL",
    "WITH s AS (SELECT run_id, epoch, max(gnorm) AS g FROM logs GROUP BY run_id, epoch) "
    "SELECT l.seed, l.epoch, s.g, l.wn FROM logs l JOIN s ON l.run_id = s.run_id "
    "AND l.epoch = s.epoch WHERE l.wn IS NOT NULL",
    "SELECT seed, epoch, wn - lag(wn) OVER (PARTITION BY run_id ORDER BY epoch) FROM logs "
    "WHERE wn IS NOT NULL",
    ("SELECT seed, epoch, step, gnorm FROM logs WHERE gnorm IS NOT NULL "
     "ORDER BY gnorm DESC, seed, epoch, step LIMIT 3", (), True),
    ("SELECT epoch, round(avg(gnorm), 9) FROM logs WHERE seed = ? AND epoch < ? "
     "GROUP BY epoch ORDER BY epoch", (2, 3), True),
    "SELECT seed, epoch, max(gnorm), max(wn) FROM logs GROUP BY seed, epoch",
    "SELECT seed, epoch FROM logs WHERE gnorm > 0.4",
    "SELECT seed, epoch, pmax FROM logs WHERE pmax > (SELECT avg(pmax) FROM logs)",
]  # fmt: skip

PATTERNS = [
    Pattern(
        "train_function_under_a_main_guard_random_split_and_a_shuffling_loader",
        two(
            edit(TRAIN_FN, ("DROP", "False"), ("LRATE", "0.01")),
            edit(TRAIN_FN, ("DROP", "True"), ("LRATE", "0.02")),
        ),
        [*narrow_then_wide("val_acc"), *narrow_then_wide("bsum", "step"),
         "SELECT seed, epoch, lr FROM logs WHERE lr IS NOT NULL",
         "SELECT seed, final_w FROM logs WHERE final_w IS NOT NULL"],
    ),
    Pattern(
        "gru_hidden_state_carried_across_steps_by_truncated_bptt",
        two(gru("0.01", GRU_RESET), gru("0.02", GRU_RESET)),
        GRU_SQLS,
    ),
    Pattern(
        "gru_hidden_state_carried_across_epochs_and_decayed",
        two(gru("0.01", decay("0.5")), gru("0.02", decay("0.25"))),
        GRU_SQLS,
    ),
    Pattern(
        "gru_hidden_reset_rewritten_as_a_decay_in_the_second_version",
        two(gru("0.01", GRU_RESET), gru("0.02", decay("0.5"))),
        GRU_SQLS,
        bug="needless refusal: h_end (after the step loop, which binds h) is NULL for the first "
        "version: 'cannot tell its place among old statements that today's code lacks or "
        "rewrote (h)' (florsql/propagate/api.py _in_gap, from _slice_slots: today's "
        "`h = h * 0.5` before the step loop is taken as a slice of the statement and the old "
        "`h = torch.zeros(1, 4, 8)` it rewrote touches h)",
    ),
    Pattern(
        "augmentation_from_a_random_state_a_random_instance_and_the_global_random",
        two(AUGMENT.replace("LR", "0.1"), AUGMENT.replace("LR", "0.05")),
        [*narrow_then_wide("w"), *narrow_then_wide("scale", "step"),
         "SELECT seed, epoch, rs_pos, rnd_pos FROM logs WHERE rs_pos IS NOT NULL",
         "SELECT seed, epoch, sum(flipped) FROM logs GROUP BY seed, epoch"],
    ),
    Pattern(
        "k_fold_loop_around_the_checkpointed_epoch_loop_model_rebuilt_per_fold",
        two(KFOLD.replace("LR", "0.1"), KFOLD.replace("LR", "0.05")),
        ["SELECT seed, fold, epoch, vacc FROM logs WHERE fold = 1 AND epoch = 1 AND seed = 1",
         "SELECT seed, fold, epoch, vacc FROM logs WHERE fold = 2",
         "SELECT seed, fold, epoch, vacc FROM logs",
         "SELECT seed, fold, fold_w FROM logs WHERE fold_w IS NOT NULL",
         "SELECT seed, fold, epoch, step, gn FROM logs WHERE fold = 2 AND epoch = 1",
         "SELECT seed, fold, count(gn), round(sum(gn), 6) FROM logs GROUP BY seed, fold"],
    ),
    Pattern(
        "plateau_on_validation_early_stopping_and_best_weights_restored",
        [({"train.py": PLATEAU.replace("PATIENCE", "2")},
          (("--seed", "0", "--epochs", "7"), ("--seed", "1", "--epochs", "7"))),
         ({"train.py": PLATEAU.replace("PATIENCE", "1")},
          (("--seed", "2", "--epochs", "7"), ("--seed", "1", "--epochs", "5")))],
        [*narrow_then_wide("lr"), "SELECT seed, epoch, bad_epochs FROM logs",
         "SELECT seed, final_acc, best FROM logs WHERE final_acc IS NOT NULL",
         "SELECT seed, max(epoch), min(lr) FROM logs GROUP BY seed"],
    ),
    Pattern(
        "trainer_class_with_a_step_closure_over_the_epoch",
        two(TRAINER.replace("LRATE", "0.1"), TRAINER.replace("LRATE", "0.05")),
        [*narrow_then_wide("acc1"), *narrow_then_wide("scaled", "step"),
         "SELECT seed, epoch, steps, acc0 FROM logs WHERE steps IS NOT NULL"],
    ),
    Pattern(
        "train_function_in_three_versions_run_before_committing",
        [({"train.py": edit(TRAIN_FN, ("DROP", "False"), ("LRATE", "0.01"))}, RUNS),
         ({"train.py": edit(TRAIN_FN, ("DROP", "True"), ("LRATE", "0.01"))}, (("--seed", "2"),)),
         ({"train.py": edit(TRAIN_FN, ("DROP", "True"), ("LRATE", "0.03"))},
          (("--seed", "3", "--bs", "12"),))],
        [*narrow_then_wide("val_acc"),
         "SELECT seed FROM runs WHERE EXISTS (SELECT 1 FROM logs l WHERE l.run_id = "
         "runs.run_id AND l.val_acc > 0.7)",
         "SELECT DISTINCT seed FROM logs WHERE bsum > 0",
         ("SELECT seed, epoch, val_acc FROM logs WHERE val_acc IS NOT NULL "
          "ORDER BY seed, epoch, val_acc LIMIT 6", (), True),
         "SELECT seed, epoch, step, bsum FROM logs"],
        commit=False,
    ),
    Pattern(
        "lines_reordered_and_renamed_in_the_second_version",
        [({"train.py": REORDER_A}, RUNS), ({"train.py": REORDER_B}, (("--seed", "2"),))],
        [*narrow_then_wide("gnorm", "step"), *JOINS],
    ),
    Pattern(
        "a_return_wrapped_in_flor_log_inside_an_evaluate_helper",
        two(RETURN_WRAP.replace("LR", "0.1"), RETURN_WRAP.replace("LR", "0.2")),
        [*narrow_then_wide("vl"), "SELECT seed, epoch, best_vl, vl FROM logs"],
    ),
    Pattern(
        "an_assignment_wrapped_in_flor_log_alone_in_a_no_grad_block",
        two(NO_GRAD_WRAP.replace("LR", "0.1"), NO_GRAD_WRAP.replace("LR", "0.2")),
        [*narrow_then_wide("val"), "SELECT seed, epoch, best_val, val FROM logs"],
    ),
]  # fmt: skip

PATTERNS += [
    Pattern(
        "adam_moments_read_after_the_step_loop_and_a_globally_shuffled_loader",
        two(edit(ADAM_STATE, ("LR", "0.01"), ("BS", "8")),
            edit(ADAM_STATE, ("LR", "0.02"), ("BS", "12"))),
        [*narrow_then_wide("m_norm"), "SELECT seed, epoch, adam_t, v_max FROM logs",
         "SELECT seed, epoch, hist, improved, phase FROM logs WHERE phase IS NOT NULL",
         "SELECT phase, count(phase), sum(CASE WHEN improved THEN 1 ELSE 0 END) FROM logs "
         "GROUP BY phase"],
    ),
    Pattern(
        "a_hyperparameter_added_in_the_second_version_read_by_todays_statement",
        [({"train.py": NEW_ARG_A}, RUNS),
         ({"train.py": NEW_ARG_B}, (("--seed", "2", "--wd", "0.01"), ("--seed", "1")))],
        [*narrow_then_wide("decay_term"),
         "SELECT seed, epoch, decay_term FROM logs WHERE decay_term > 0"],
    ),
    Pattern(
        "the_column_of_an_arg_added_in_the_second_version_for_the_first_versions_runs",
        [({"train.py": NEW_ARG_A}, RUNS),
         ({"train.py": NEW_ARG_B}, (("--seed", "2", "--wd", "0.01"), ("--seed", "1")))],
        ["SELECT seed, wd, max(decay_term) FROM logs GROUP BY seed, wd",
         "SELECT seed, epoch, decay_term FROM logs WHERE wd = 0.0"],
        bug="silent gap: replay computes decay_term of the first version's runs with wd's "
        "default (0.0, as a re-run would: florsql/record/replay_mode.py ReplayRun.arg), but "
        "their wd column stays NULL (args come from the recording only), so `WHERE wd = 0.0` "
        "drops them and `GROUP BY wd` puts them under NULL (an ArgMissingWarning says so and "
        "names coalesce(wd, 0.0): tests/test_arg_gaps.py); a full re-run records wd = 0.0",
    ),
]  # fmt: skip

# sparser checkpoints: replay starts further back and runs whole epochs
PATTERNS += [
    replace(p, name=f"{p.name}_every_3rd_epoch", period=3)
    for p in PATTERNS
    if p.bug is None and p.name.startswith(("train_function", "gru_hidden_state_carried_across_e",
                                             "augmentation", "k_fold", "plateau", "trainer"))
]  # fmt: skip

SHAPES: list[Query] = [
    # asked on a fresh store, each one replaying only part of what the next needs
    ("SELECT seed, epoch, wn FROM logs WHERE wn IS NOT NULL ORDER BY seed, epoch LIMIT ?",
     (3,), True),
    ("SELECT seed, epoch, step, gnorm FROM logs WHERE seed IN (?, ?) AND step = ?", (0, 2, 1),
     False),
    ("SELECT seed, epoch, wn FROM logs WHERE wn IS NOT NULL ORDER BY wn, seed LIMIT 3 OFFSET 2",
     (), True),
    "SELECT seed, epoch, step, gnorm FROM logs WHERE gnorm IS NOT NULL "
    "QUALIFY row_number() OVER (PARTITION BY run_id, epoch ORDER BY gnorm DESC) = 1",
    "SELECT seed, epoch FROM logs GROUP BY seed, epoch HAVING max(gnorm) > 0.3",
    "SELECT seed, epoch, step, "
    "round(sum(gnorm) OVER (PARTITION BY run_id, epoch ORDER BY step), 9) "
    "FROM logs WHERE gnorm IS NOT NULL",
    "SELECT seed, epoch, wn AS v FROM logs WHERE wn IS NOT NULL UNION ALL "
    "SELECT seed, epoch, gnorm FROM logs WHERE gnorm IS NOT NULL AND step = 0",
    "SELECT seed, epoch, CASE WHEN pmax > 1 THEN 'hi' ELSE 'lo' END, count(*) FROM logs "
    "WHERE pmax IS NOT NULL GROUP BY ALL",
]  # fmt: skip

PATTERNS += [
    Pattern(
        "sql_shapes_asked_first_over_reordered_versions",
        [({"train.py": REORDER_A}, RUNS), ({"train.py": REORDER_B}, (("--seed", "2"),))],
        SHAPES,
    ),
    Pattern(
        "gradients_accumulated_across_the_epoch_boundary",
        two(GRAD_CARRY.replace("LR", "0.1"), GRAD_CARRY.replace("LR", "0.05")),
        [*narrow_then_wide("wn"), *narrow_then_wide("pending")],
    ),
    Pattern(
        "tied_embedding_and_decoder_weights_per_group_lambda_lr",
        two(TIED.replace("LRATE", "0.1"), TIED.replace("LRATE", "0.2")),
        [*narrow_then_wide("dec_w"), "SELECT seed, epoch, lr0, lr1 FROM logs",
         "SELECT seed, epoch, step, tied FROM logs WHERE epoch = 2"],
    ),
]  # fmt: skip

PATTERNS += [
    Pattern(
        "lookahead_optimizer_class_of_the_script_registered_without_a_state_dict",
        two(edit(LOOKAHEAD, ("LR", "0.01"), ("K", "4")),
            edit(LOOKAHEAD, ("LR", "0.02"), ("K", "5"))),
        [*narrow_then_wide("slow_norm"), *narrow_then_wide("w_step", "step"),
         "SELECT seed, epoch, n, same FROM logs"],
    ),
]  # fmt: skip

PATTERNS += [
    Pattern(
        "a_committed_data_file_and_a_model_module_changed_in_the_second_version",
        [({"train.py": MODULE_TRAIN, "data.csv": data_csv(1, 40),
           "model.py": module_net("8", "torch.relu")}, RUNS),
         ({"train.py": MODULE_TRAIN, "data.csv": data_csv(2, 48),
           "model.py": module_net("12", "torch.tanh")}, RUNS2)],
        [*narrow_then_wide("fc1"), *narrow_then_wide("h_mean", "step")],
    ),
]  # fmt: skip

# one checkpoint per run (the first epoch's): every replay runs from there
PATTERNS += [
    replace(p, name=f"{p.name}_one_checkpoint", period=10)
    for p in PATTERNS
    if p.name.startswith(("lookahead", "gradients_accumulated", "tied", "adam_moments"))
    and p.period == 1
]

DEFAULT: tuple[str, ...] = ()  # every pattern runs in the slow suite (CI runs it)


def run_pattern(recorder: Recorder, tmp_path: Path, p: Pattern) -> None:  # noqa: F811
    """Record ``p``'s versions and its oracle, then ask each of its queries of both: every
    answer must be the oracle's (the s29 and s30 sweeps)."""
    history, oracle = record_versions(
        recorder, tmp_path, p.versions, period=p.period, commit=p.commit
    )
    c = Compare(history, oracle)
    try:
        for q in p.sqls:
            if isinstance(q, str):
                c(q)
            else:
                sql, params, ordered = q
                c(sql, params, ordered=ordered)
    finally:
        c.close()
    c.assert_none()


@pytest.mark.parametrize("p", corpus_params(PATTERNS, DEFAULT))
def test_pattern(recorder: Recorder, tmp_path: Path, p: Pattern) -> None:  # noqa: F811
    run_pattern(recorder, tmp_path, p)


WRAP_OLD = """import florsql as flor
import torch
XV = torch.ones(3)
net = torch.nn.Identity()
hist = []


def evaluate(m):
    with torch.no_grad():
        return float(m(XV).sum())


for epoch in flor.loop("epoch", range(3)):
    for t in flor.loop("step", range(4)):
        flor.log("loss", 1)
    hist.append(evaluate(net))
    with torch.no_grad():
        v = float(net(XV).mean())
    hist.append(v)
"""


@pytest.mark.parametrize(
    ("old_line", "new_line"),
    [
        ("return float(m(XV).sum())", 'return flor.log("vl", float(m(XV).sum()))'),
        ("v = float(net(XV).mean())", 'v = flor.log("vl", float(net(XV).mean()))'),
    ],
    ids=["return-in-a-helper", "assignment-in-the-epoch-loop"],
)
def test_a_wrapped_line_alone_in_its_block_replaces_its_old_line(
    old_line: str, new_line: str
) -> None:
    """A log statement wrapped around the one line of its block (``with torch.no_grad():``)
    has no neighbours to align: its place is the old line it stands for (before, refused: "no
    context" in a helper, "the old version has the block around it elsewhere" in a loop)."""
    from florsql.propagate import propagate

    new = edit(WRAP_OLD, (old_line, new_line))
    result = propagate(new, WRAP_OLD, ["vl"])
    assert not result.failed, result.failed
    assert result.source == new


def test_a_wrapped_line_alone_in_its_block_is_refused_where_the_old_line_is_twice() -> None:
    """Two old blocks of the same chain hold the line it stands for: which one it wraps cannot
    be told from the block, which has nothing else; refused, never placed twice or guessed."""
    from florsql.propagate import propagate

    old = edit(WRAP_OLD, ("    hist.append(v)\n", "    hist.append(v)\n    with torch.no_grad():\n"
                          "        v = float(net(XV).mean())\n"))  # fmt: skip
    new = edit(
        old,
        ("    hist.append(v)\n    with torch.no_grad():\n        v = float(net(XV).mean())\n",
         "    hist.append(v)\n    with torch.no_grad():\n"
         '        v = flor.log("vl", float(net(XV).mean()))\n'),
    )  # fmt: skip
    result = propagate(new, old, ["vl"])
    assert not result.placed and result.failed
    assert result.source == old
