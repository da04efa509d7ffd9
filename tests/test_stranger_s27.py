"""Stranger sweep s27: training-loop shapes from model codebases that the earlier sweeps did not
write down: gradient accumulation (an optimizer step every other micro-batch), a per-step
learning-rate schedule, an exponential moving average of the weights kept in a model of its own
that no ``flor.checkpointing`` registers, dropout switched off for evaluation, early stopping
that leaves the epoch loop by ``break``, per-class accuracy gathered in a plain loop over
validation batches, and a metric object accumulated over the step loop and read after it.

Each pattern is two versions (the second changes something a user would change between runs:
a schedule, a renamed variable, an extra recorded metric) recorded with a few runs each;
today's code has the ``# hindsight`` lines. The oracle (tests/test_stranger_s25.py's harness)
records the same sequence hand-patched; every query must answer what it answers. The queries
are asked as a user would: a narrow one first (one epoch, one run), then a wider one that needs
what the first did not replay, then aggregates over the hindsight column.

Written in session 25 as a stranger check before the stop; it found no failure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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

HEAD = """
import copy
import torch
from torch import nn
import florsql as flor

torch.set_num_threads(1)
seed = flor.arg("seed", 0)
epochs = flor.arg("epochs", 4)
torch.manual_seed(seed)
X = torch.randn(48, 6)
Y = (X[:, :2].sum(dim=1) > 0).long()
XV = torch.randn(16, 6)
YV = (XV[:, :2].sum(dim=1) > 0).long()
"""


@dataclass(frozen=True)
class Pattern:
    name: str
    versions: Sequence[Version]
    sqls: Sequence[str]
    bug: str | None = None


def narrow_then_wide(col: str, grain: str = "epoch") -> list[str]:
    """A narrow query, then the wider ones a user asks next, then aggregates."""
    return [
        f"SELECT seed, {grain}, {col} FROM logs WHERE epoch = 1 AND seed = 1",
        f"SELECT seed, {grain}, {col} FROM logs WHERE epoch >= 1",
        f"SELECT seed, {grain}, {col} FROM logs",
        f"SELECT seed, count({col}), round(sum({col}), 6) FROM logs GROUP BY seed",
    ]


GRAD_ACCUM = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.01)
loss_fn = nn.CrossEntropyLoss()
accum = 2
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        gsum = 0.0  # hindsight
        micro = 0
        opt.zero_grad()
        for idx in flor.loop("step", torch.randperm(len(X)).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx]) / accum
            loss.backward()
            micro += 1
            if micro % accum == 0:
                gsum += float(net[0].weight.grad.norm())  # hindsight
                opt.step()
                opt.zero_grad()
            flor.log("loss", loss.item() * accum)
        flor.log("gsum", gsum)  # hindsight
"""
)

STEP_SCHEDULE = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
total = epochs * 6
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: SCHED)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            flor.log("loss", loss.item())
            flor.log("lr_now", sched.get_last_lr()[0])  # hindsight
        flor.log("wn", float(net[2].weight.norm()))  # hindsight
"""
)

EMA = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
ema = copy.deepcopy(net)
for p in ema.parameters():
    p.requires_grad_(False)
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for pe, pn in zip(ema.parameters(), net.parameters()):
                    pe.mul_(DECAY).add_(pn, alpha=1 - DECAY)
            flor.log("loss", loss.item())
        with torch.no_grad():
            flor.log("ema_loss", float(loss_fn(ema(XV), YV)))
            flor.log("ema_acc", float((ema(XV).argmax(1) == YV).float().mean()))  # hindsight
            flor.log("ema_norm", float(ema[0].weight.norm()))  # hindsight
"""
)

DROPOUT_EARLY_STOP = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
opt = torch.optim.Adam(net.parameters(), lr=0.02)
loss_fn = nn.CrossEntropyLoss()
best, bad = float("inf"), 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(len(X)).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        net.eval()
        with torch.no_grad():
            val = float(loss_fn(net(XV), YV))
        flor.log("val", val)
        flor.log("val_acc", float((net(XV).argmax(1) == YV).float().mean()))  # hindsight
        if val < best - 1e-4:
            best, bad = val, 0
        else:
            bad += 1
        flor.log("best", best)  # hindsight
        if bad >= PATIENCE:
            break
"""
)

PER_CLASS = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(8)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        hits = {0: 0, 1: 0}  # hindsight
        seen = {0: 0, 1: 0}  # hindsight
        with torch.no_grad():
            for xb, yb in zip(XV.split(4), YV.split(4)):
                pred = net(xb).argmax(1)
                for c in (0, 1):  # hindsight
                    seen[c] += int((yb == c).sum())  # hindsight
                    hits[c] += int(((pred == c) & (yb == c)).sum())  # hindsight
                VAL_LINE
        flor.log("acc_c0", hits[0] / max(seen[0], 1))  # hindsight
        flor.log("acc_c1", hits[1] / max(seen[1], 1))  # hindsight
"""
)


class Meter:
    SOURCE = """
class Meter:
    def __init__(self):
        self.total, self.n = 0.0, 0

    def update(self, v, k=1):
        self.total += v * k
        self.n += k

    @property
    def avg(self):
        return self.total / max(self.n, 1)
"""


METER = (
    HEAD
    + Meter.SOURCE
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.5)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        meter = Meter()
        for idx in flor.loop("step", torch.randperm(len(X)).split(8)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            meter.update(loss.item(), len(idx))
            flor.log("loss", loss.item())
        flor.log("train_loss", meter.avg)  # hindsight
        flor.log("seen", meter.n)  # hindsight
"""
)

RUNS = (("--seed", "0"), ("--seed", "1"))
RUNS2 = (("--seed", "2"), ("--seed", "1", "--epochs", "3"))


def two(a: str, b: str) -> list[Version]:
    return [({"train.py": a}, RUNS), ({"train.py": b}, RUNS2)]


PATTERNS = [
    Pattern(
        "gradient_accumulation_sum_read_after_the_step_loop",
        two(GRAD_ACCUM.replace("LR", "0.01"), GRAD_ACCUM.replace("LR", "0.02")),
        [
            *narrow_then_wide("gsum"),
            # names in another case, a window over the hindsight column
            "SELECT Seed, EPOCH, GSum FROM logs WHERE GSUM > 0",
            "SELECT seed, epoch, gsum - lag(gsum) OVER (PARTITION BY run_id ORDER BY epoch) "
            "FROM logs WHERE gsum IS NOT NULL",
        ],
    ),
    Pattern(
        "per_step_schedule_step_and_epoch_statements",
        two(
            STEP_SCHEDULE.replace("SCHED", "1.0 - s / total"),
            STEP_SCHEDULE.replace("SCHED", "0.5 ** (s // 4)"),
        ),
        [
            "SELECT seed, epoch, step, lr_now FROM logs WHERE epoch = 2 AND step < 3",
            "SELECT seed, epoch, step, lr_now FROM logs WHERE lr_now IS NOT NULL",
            "SELECT seed, epoch, wn FROM logs WHERE wn IS NOT NULL",
        ],
    ),
    Pattern(
        "ema_model_not_registered_updated_every_step",
        two(EMA.replace("DECAY", "0.9"), EMA.replace("DECAY", "0.8")),
        [*narrow_then_wide("ema_norm"), "SELECT seed, epoch, ema_acc FROM logs"],
    ),
    Pattern(
        "dropout_eval_switch_and_early_stopping_break",
        two(
            DROPOUT_EARLY_STOP.replace("PATIENCE", "1"),
            DROPOUT_EARLY_STOP.replace("PATIENCE", "2"),
        ),
        [*narrow_then_wide("val_acc"), "SELECT seed, epoch, best FROM logs"],
    ),
    Pattern(
        "per_class_accuracy_over_validation_batches",
        two(
            PER_CLASS.replace("VAL_LINE", "pass"),
            PER_CLASS.replace("VAL_LINE", 'flor.log("vb", float(pred.float().mean()))'),
        ),
        [
            *narrow_then_wide("acc_c0"),
            "SELECT seed, epoch, acc_c1 FROM logs WHERE acc_c1 IS NOT NULL",
        ],
    ),
    Pattern(
        "metric_object_accumulated_in_the_step_loop",
        two(METER.replace("LR", "0.1"), METER.replace("LR", "0.05").replace("out = net", "o = net")
            .replace("loss_fn(out,", "loss_fn(o,")),
        [*narrow_then_wide("train_loss"), "SELECT seed, epoch, seen FROM logs"],
    ),
]  # fmt: skip

DEFAULT = ("gradient_accumulation_sum_read_after_the_step_loop",)


@pytest.mark.parametrize("p", corpus_params(PATTERNS, DEFAULT))
def test_pattern(recorder: Recorder, tmp_path: Path, p: Pattern) -> None:  # noqa: F811
    history, oracle = record_versions(recorder, tmp_path, p.versions)
    c = Compare(history, oracle)
    try:
        for sql in p.sqls:
            c(sql)
        # parameters, in the order they are written
        c("SELECT seed, epoch, loss FROM logs WHERE seed = ? AND epoch = ? AND step < ?", (1, 2, 3))
    finally:
        c.close()
    c.assert_none()
