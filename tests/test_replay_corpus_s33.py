"""Stranger sweep s33: training scripts as reference code bases lay them out, replayed and
compared with a full re-run of the hand-patched old version (the harness and oracle of
tests/test_replay_corpus_stranger.py).

Exact already: ``train_one_epoch`` in an ``engine.py`` with a torchvision-style
``MetricLogger`` (statements in the main script); a ``Trainer`` of another module counting
its steps; a registered ``LambdaLR`` whose lambda reads a dict halved on plateau;
``flor.checkpointing`` entered inside the epoch loop; early stopping by ``sys.exit``; a
validation ``flor.loop`` before the training loop; another inner loop on odd epochs; two
training loops per epoch with a statement between them; the script's helpers passing its
globals to library calls, and a callable augmenter object doing so; one name logged several
times per context; a registered dict
rebound at a milestone; one step loop entered once per dataset; runs SIGKILLed after the
epoch loop and after an epoch's step loop (nothing past the kill is invented).

Silently wrong or failing, now fixed:

- ``flor.arg`` with a list, tuple or dict default: ``run.json`` kept
  ``"Tagged('json', '[8, 4]')"`` and a replay gave the script that string (``len(widths)``
  24, ``betas[0]`` ``'T'``), or failed building the model;
- a repository module whose functions pass its own objects to library calls
  (``np.add.at(SEEN, i, 1)``, ``random.shuffle(ORDER)``, ``torch.randn(n, generator=G)``):
  the planner took the module as keeping no state, skipped the step loop and read ``SEEN``
  and ``G`` as a fresh import made them;
- losses summed with their graph over the step loop and ``total.backward()`` after it: rest
  mode restored a detached ``total``, the task failed and the failure was remembered as the
  statement's;
- ignored data under a tracked folder (``data/raw/`` beside a tracked ``data/prep.py``) was
  not linked into replay worktrees: every replay failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_replay_corpus_stranger as corpus
from tests.helpers_replay import corpus_params, hindsight_names
from tests.test_replay_corpus_stranger import (
    Case,
    StrangerHistories,
    check_fresh,
    check_partial_then_wider,
)

stranger = corpus.stranger  # the recorded histories, once per session (the same fixture)

METRIC_LOGGER = """
from collections import deque


class SmoothedValue:
    def __init__(self, window=3):
        self.deque = deque(maxlen=window)
        self.total = 0.0
        self.count = 0

    def update(self, value, n=1):
        self.deque.append(value)
        self.count += n
        self.total += value * n

    @property
    def avg(self):
        return sum(self.deque) / len(self.deque)

    @property
    def global_avg(self):
        return self.total / self.count


class MetricLogger:
    def __init__(self):
        self.meters = {}

    def update(self, **kwargs):
        for k, v in kwargs.items():
            self.meters.setdefault(k, SmoothedValue()).update(v)
"""

ENGINE = """
import florsql as flor
import torch

from utils import MetricLogger


def train_one_epoch(net, opt, loss_fn, X, Y, epoch):
    net.train()
    logger = MetricLogger()
    for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
        loss = loss_fn(net(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        logger.update(loss=loss.item(), lr=opt.param_groups[0]["lr"])
        flor.log("loss", loss.item())
    return {k: m.global_avg for k, m in logger.meters.items()}, logger


@torch.no_grad()
def evaluate(net, X, Y):
    net.eval()
    return float((net(X).argmax(1) == Y).float().mean())
"""

SAMPLING = """
import random

import numpy as np
import torch

G = torch.Generator().manual_seed(123)
ORDER = list(range(48))
SEEN = np.zeros(48, dtype=np.int64)


def jitter(x):
    return x + 0.05 * torch.randn(x.shape, generator=G)


def shuffled():
    random.shuffle(ORDER)  # in place: each epoch starts from the previous order
    return ORDER


def count(idx):
    np.add.at(SEEN, idx.numpy(), 1)
"""

PATTERNS = [
    Case(
        "train_one_epoch_in_an_engine_module_statement_in_the_main_script",
        """
from engine import evaluate, train_one_epoch

sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
history = []
with flor.checkpointing(model=net, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        stats, logger = train_one_epoch(net, opt, loss_fn, X, Y, epoch)
        sched.step()
        acc = evaluate(net, XV, YV)
        history.append(stats["loss"])
        flor.log("train_loss", stats["loss"])  # hindsight
        flor.log("recent", logger.meters["loss"].avg)  # hindsight
        flor.log("acc", acc)  # hindsight
        flor.log("n_hist", len(history))  # hindsight
""",
        {"epoch": ["train_loss", "recent", "acc", "n_hist"]},
        extra={"utils.py": METRIC_LOGGER, "engine.py": ENGINE},
        fresh=True,
    ),
    Case(
        "trainer_object_of_another_module_counts_its_steps",
        """
from trainer import Trainer

trainer = Trainer(net, opt, loss_fn)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        trainer.train_epoch(X, Y)
        val = trainer.validate(XV, YV)
        flor.log("global_step", trainer.global_step)  # hindsight
        flor.log("best", trainer.best)  # hindsight
        flor.log("last", trainer.last_loss)  # hindsight
""",
        {"epoch": ["global_step", "best", "last"]},
        extra={
            "trainer.py": """
import florsql as flor
import torch


class Trainer:
    def __init__(self, net, opt, loss_fn):
        self.net, self.opt, self.loss_fn = net, opt, loss_fn
        self.global_step = 0
        self.best = float("inf")
        self.last_loss = None

    def train_epoch(self, X, Y):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = self.loss_fn(self.net(X[idx]), Y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.global_step += 1
            self.last_loss = loss.item()
            flor.log("loss", loss.item())

    @torch.no_grad()
    def validate(self, X, Y):
        v = self.loss_fn(self.net(X), Y).item()
        self.best = min(self.best, v)
        return v
"""
        },
        fresh=True,
    ),
    Case(
        "lambda_lr_registered_its_lambda_reads_a_dict_halved_on_plateau",
        """
scale = {"f": 1.0}
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: scale["f"] * 0.9**e)
best, bad = float("inf"), 0
with flor.checkpointing(model=net, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            v = loss_fn(net(XV), 1 - YV).item()
        if v < best:
            best, bad = v, 0
        else:
            bad += 1
            scale["f"] *= 0.5
        sched.step()
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
        flor.log("bad", bad)  # hindsight
""",
        {"epoch": ["lr", "bad"]},
        fresh=True,
    ),
    Case(
        "checkpointing_block_inside_the_epoch_loop",
        """
running = 0.0
for epoch in flor.loop("epoch", range(epochs)):
    with flor.checkpointing(model=net, optimizer=opt):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            flor.log("loss", loss.item())
            flor.log("w_step", float(net[0].weight.sum()))  # hindsight
    flor.log("running", running)  # hindsight
    flor.log("w", float(net[2].weight.sum()))  # hindsight
""",
        {"epoch": ["running", "w"], "epoch, step": ["w_step"]},
        fresh=True,
    ),
    Case(
        "early_stopping_by_sys_exit_inside_the_epoch_loop",
        """
import sys

best, bad = float("inf"), 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs + 2)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            v = loss_fn(net(XV), 1 - YV).item()
        flor.log("v", v)  # hindsight
        if v < best:
            best, bad = v, 0
        else:
            bad += 1
        flor.log("bad", bad)  # hindsight
        if bad >= 2:
            sys.exit(0)
        flor.log("kept_on", epoch)  # hindsight
flor.log("final_best", best)  # hindsight
""",
        {"epoch": ["v", "bad", "kept_on"], "": ["final_best"]},
        first=1,
        fresh=True,
    ),
    Case(
        "validation_flor_loop_before_the_training_loop_in_each_epoch",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        vloss, vseen = 0.0, 0
        net.eval()
        with torch.no_grad():
            for vidx in flor.loop("vstep", torch.arange(len(XV)).split(8)):
                vloss += loss_fn(net(XV[vidx]), YV[vidx]).item() * len(vidx)
                vseen += len(vidx)
        net.train()
        flor.log("vloss_pre", vloss / vseen)  # hindsight
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("gap", loss.item() - vloss / vseen)  # hindsight
        flor.log("vloss", vloss / vseen)  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["vloss_pre", "vloss", "w"], "epoch, step": ["gap"]},
        fresh=True,
    ),
    Case(
        "a_different_inner_loop_on_even_and_odd_epochs",
        """
seen = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch % 2 == 0:
            for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen += len(idx)
                flor.log("loss", loss.item())
        else:
            for idx in flor.loop("ft_step", torch.randperm(len(XV)).split(4)):
                loss = loss_fn(net(XV[idx]), YV[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen += len(idx)
                flor.log("ft_loss", loss.item())
        flor.log("seen", seen)  # hindsight
        flor.log("last", loss.item())  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["seen", "last", "w"]},
        first=1,
        fresh=True,
    ),
    Case(
        "two_training_loops_per_epoch_a_statement_between_them",
        """
total = 0.0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            flor.log("loss", loss.item())
        flor.log("mid_w", float(net[0].weight.sum()))  # hindsight
        flor.log("mid_total", total)  # hindsight
        for idx in flor.loop("aux_step", torch.randperm(len(XV)).split(8)):
            aux = loss_fn(net(XV[idx]), 1 - YV[idx]) * 0.1
            opt.zero_grad()
            aux.backward()
            opt.step()
            total += aux.item()
            flor.log("aux_w", float(net[2].weight.sum()))  # hindsight
        flor.log("total", total)  # hindsight
""",
        {"epoch": ["mid_w", "mid_total", "total"], "epoch, aux_step": ["aux_w"]},
        fresh=True,
    ),
    Case(
        "args_with_list_tuple_and_dict_defaults",
        """
widths = flor.arg("widths", [8, 4])
betas = flor.arg("betas", (0.9, 0.99))
aug = flor.arg("aug", {"noise": 0.1, "flip": False})
body = [nn.Linear(6, widths[0]), nn.ReLU()]
for a, b in zip(widths, widths[1:]):
    body += [nn.Linear(a, b), nn.ReLU()]
net = nn.Sequential(*body, nn.Linear(widths[-1], 2))
opt = torch.optim.Adam(net.parameters(), lr=0.01, betas=betas)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            x = X[idx] + aug["noise"] * torch.randn(len(idx), 6)
            loss = loss_fn(net(x), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("depth", len(widths))  # hindsight
        flor.log("beta1", betas[1])  # hindsight
        flor.log("flip", "flip" in aug and aug["flip"])  # hindsight
        flor.log("is_tuple", isinstance(betas, tuple))  # hindsight
""",
        {"epoch": ["depth", "beta1", "flip", "is_tuple"]},
        fresh=True,
    ),
    Case(
        "module_state_changed_by_library_calls_read_by_todays_statement",
        """
import random

import numpy as np

import sampling

random.seed(seed)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        order = torch.tensor(sampling.shuffled())
        for idx in flor.loop("step", order.split(12)):
            loss = loss_fn(net(sampling.jitter(X[idx])), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sampling.count(idx)
            flor.log("loss", loss.item())
        flor.log("min_seen", int(sampling.SEEN.min()))  # hindsight
        flor.log("head", sampling.ORDER[0])  # hindsight
        flor.log("g_state", int(sampling.G.get_state().sum()))  # hindsight
""",
        {"epoch": ["min_seen", "head", "g_state"]},
        extra={"sampling.py": SAMPLING},
        fresh=True,
    ),
    Case(
        "module_state_imported_by_name_changed_by_library_calls",
        """
import random

from sampling import G, ORDER, SEEN, count, jitter, shuffled

random.seed(seed)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        order = torch.tensor(shuffled())
        for idx in flor.loop("step", order.split(12)):
            loss = loss_fn(net(jitter(X[idx])), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            count(idx)
            flor.log("loss", loss.item())
        flor.log("min_seen", int(SEEN.min()))  # hindsight
        flor.log("head", ORDER[0])  # hindsight
        flor.log("g_state", int(G.get_state().sum()))  # hindsight
""",
        {"epoch": ["min_seen", "head", "g_state"]},
        extra={"sampling.py": SAMPLING},
        fresh=True,
    ),
    Case(
        "script_helpers_pass_globals_to_library_calls",
        """
import random

import numpy as np

random.seed(seed)
G = torch.Generator().manual_seed(123)
ORDER = list(range(48))
SEEN = np.zeros(48, dtype=np.int64)


def jitter(x):
    return x + 0.05 * torch.randn(x.shape, generator=G)


def shuffled():
    random.shuffle(ORDER)
    return ORDER


def count(idx):
    np.add.at(SEEN, idx.numpy(), 1)


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        order = torch.tensor(shuffled())
        for idx in flor.loop("step", order.split(12)):
            loss = loss_fn(net(jitter(X[idx])), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            count(idx)
            flor.log("loss", loss.item())
        flor.log("min_seen", int(SEEN.min()))  # hindsight
        flor.log("head", ORDER[0])  # hindsight
        flor.log("g_state", int(G.get_state().sum()))  # hindsight
""",
        {"epoch": ["min_seen", "head", "g_state"]},
        fresh=True,
    ),
    Case(
        "one_name_logged_several_times_per_epoch_in_a_plain_for",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            for p in net.parameters():
                p.grad.clamp_(-0.5, 0.5)
                flor.log("gnorm", float(p.grad.norm()))  # hindsight
            opt.step()
            flor.log("loss", loss.item())
        wn = 0.0
        for name, p in net.named_parameters():
            wn += float(p.norm())
            flor.log("pnorm", float(p.norm()))  # hindsight
        flor.log("wn", wn)
""",
        {"epoch": ["pnorm"], "epoch, step": ["gnorm"]},
        partial=("SELECT seed, epoch, step, gnorm FROM logs WHERE epoch = 2 AND step = 1",),
    ),
    Case(
        "losses_summed_with_their_graph_over_the_step_loop_backward_after_it",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        total = 0.0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            total = total + loss * len(idx) / len(X)
            flor.log("loss", loss.item())
        opt.zero_grad()
        total.backward()
        opt.step()
        flor.log("total", total.item())  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["total", "w"]},
        fresh=True,
    ),
    Case(
        "registered_dict_rebound_to_a_new_dict_at_a_milestone",
        """
state = {"w_sum": 0.0, "phase": "warm"}
with flor.checkpointing(model=net, optimizer=opt, state=state):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            state["w_sum"] += float(net[0].weight.sum())
            flor.log("loss", loss.item())
        if epoch == 1:
            state = {"w_sum": state["w_sum"] * 0.5, "phase": "main"}
        flor.log("w_sum", state["w_sum"])  # hindsight
        flor.log("phase", state["phase"])  # hindsight
""",
        {"epoch": ["w_sum", "phase"]},
        fresh=True,
    ),
    Case(
        "one_step_loop_entered_once_per_dataset_in_each_epoch",
        """
sets = {"a": (X[:24], Y[:24]), "b": (X[24:], Y[24:])}
seen = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for name, (xs, ys) in sets.items():
            for idx in flor.loop("step", torch.randperm(len(xs)).split(8)):
                loss = loss_fn(net(xs[idx]), ys[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen += len(idx)
                flor.log("loss", loss.item())
        flor.log("w", float(net[0].weight.sum()))  # hindsight
        flor.log("seen", seen)  # hindsight
        flor.log("last", loss.item())  # hindsight
""",
        {"epoch": ["w", "seen", "last"]},
        fresh=True,
    ),
    Case(
        "a_callable_augmenter_object_draws_from_a_global_generator",
        """
import numpy as np

G = torch.Generator().manual_seed(7)
SEEN = np.zeros(48, dtype=np.int64)


class Jitter:
    def __init__(self, scale):
        self.scale = scale

    def __call__(self, x, idx):
        np.add.at(SEEN, idx.numpy(), 1)
        return x + self.scale * torch.randn(x.shape, generator=G)


aug = Jitter(0.05)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(aug(X[idx], idx)), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("min_seen", int(SEEN.min()))  # hindsight
        flor.log("g_state", int(G.get_state().sum()))  # hindsight
""",
        {"epoch": ["min_seen", "g_state"]},
        fresh=True,
    ),
]

#: known replay bugs these patterns show (each a strict xfail until fixed)
BUGS: dict[str, str] = {}
for _p in PATTERNS:
    _p.bug = BUGS.get(_p.name)
assert not set(BUGS) - {p.name for p in PATTERNS}

#: the default run (``make test``): the patterns that found a bug
DEFAULT = (  # the module-state bug is held by tests/test_replay_units.py (cheaper)
    "args_with_list_tuple_and_dict_defaults",
    "losses_summed_with_their_graph_over_the_step_loop_backward_after_it",
)
CASES = corpus_params(PATTERNS, DEFAULT)
FRESH = corpus_params([p for p in PATTERNS if p.fresh], ())


def test_s33_corpus_is_consistent() -> None:
    for p in PATTERNS:
        text = p.text + "".join(p.extra.values())
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(text)), p.name


@pytest.mark.parametrize("pattern", CASES)
def test_s33_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_partial_then_wider(pattern, stranger, tmp_path)


@pytest.mark.parametrize("pattern", FRESH)
def test_s33_fresh_store_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_fresh(pattern, stranger, tmp_path)


KILLED_AFTER_LOOP = """
import os
import sys

running = 0.0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            flor.log("loss", loss.item())
        flor.log("running", running)  # hindsight
with torch.no_grad():
    test_loss = loss_fn(net(XV), YV).item()
flor.log("test_loss", test_loss)
flor.log("before_kill", running)  # hindsight
if os.environ.get("KILL_AT") == "end":
    print("waiting", flush=True)
    sys.stdin.readline()  # the test kills the process here (SIGKILL)
flor.log("after_kill", float(net[0].weight.sum()))  # hindsight
"""


@pytest.mark.slow
def test_a_run_killed_after_its_loop_invents_nothing_past_the_kill(tmp_path: Path) -> None:
    """A run SIGKILLed in the code after its epoch loop (a final evaluation): a statement
    placed after the point it died at must not get a value a re-run killed there never logs."""
    import florsql
    from tests.helpers import make_repo, write
    from tests.helpers_replay import fetch, old_source, patched_source
    from tests.test_replay_corpus import PREAMBLE

    text = PREAMBLE + KILLED_AFTER_LOOP
    history = make_repo(tmp_path / "history", {"train.py": old_source(text)})
    oracle = make_repo(tmp_path / "oracle", {"train.py": patched_source(text)})
    env = {"KILL_AT": "end", "FLORSQL_FLUSH_INTERVAL": "0", "FLORSQL_CHECKPOINT_PERIOD": "1"}
    for repo in (history, oracle):
        _kill_when_logged(repo, env, "loss", 16)
    write(history / "train.py", patched_source(text))
    with (
        florsql.connect(history, replay="auto") as con,
        florsql.connect(oracle, replay="off") as ora,
    ):
        for sql in (
            "SELECT epoch, running FROM logs",
            "SELECT after_kill FROM logs",
            "SELECT before_kill, after_kill FROM logs",
        ):
            got, notes = fetch(con, sql)
            want, _ = fetch(ora, sql)
            invented = [r for r in got if r not in want and any(v is not None for v in r)]
            assert not invented, (sql, got, want, notes)


def _kill_when_logged(repo: Path, env: dict[str, str], name: str, rows: int) -> None:
    """Run ``train.py`` until it waits, wait until ``rows`` values of ``name`` are on disk,
    then SIGKILL it."""
    import signal
    import subprocess
    import sys
    import time

    import florsql
    from tests.helpers import script_env

    proc = subprocess.Popen(
        [sys.executable, "train.py", "--seed", "1"],
        cwd=repo,
        env=script_env(**env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
        deadline = time.monotonic() + 120  # a bound on a wait for files, not a sleep
        while True:
            with florsql.connect(repo, replay="off") as con:
                n = con.execute(f"SELECT count({name}) FROM logs").fetchall()[0][0]
            if n >= rows or time.monotonic() > deadline:
                break
        assert n >= rows, n
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)


NESTED_DATA = """
import json

import florsql as flor
from data.prep import scaled

with open("data/raw/stats.json") as f:
    scale = json.load(f)["scale"]
w = 0.0
for epoch in flor.loop("epoch", range(flor.arg("epochs", 3))):
    for step in flor.loop("step", range(3)):
        w += scaled(step + 1, scale)
        flor.log("w", w)
    flor.log("w_scaled", w / scale)  # hindsight
"""


def test_ignored_data_under_a_tracked_folder_is_reachable_by_a_replay(tmp_path: Path) -> None:
    """``data/`` is a package the repository tracks (``data/prep.py``) and ``data/raw/`` is
    ignored (the downloaded files): a replay reads ``data/raw/stats.json`` as the run did.
    Before, only top-level ignored paths were linked into a replay's worktree: the file was
    missing there and every value NULL."""
    import florsql
    from tests.helpers import make_repo, run_script, write
    from tests.helpers_replay import fetch, old_source, patched_source

    files = {
        ".gitignore": "data/raw/\n",
        "data/__init__.py": "",
        "data/prep.py": "def scaled(x, s):\n    return x * s\n",
    }
    history = make_repo(tmp_path / "history", {**files, "train.py": old_source(NESTED_DATA)})
    oracle = make_repo(tmp_path / "oracle", {**files, "train.py": patched_source(NESTED_DATA)})
    for repo in (history, oracle):
        write(repo / "data" / "raw" / "stats.json", '{"scale": 2.5}')
        run_script(repo, "train.py")
    write(history / "train.py", patched_source(NESTED_DATA))
    sql = "SELECT epoch, w_scaled FROM logs"
    with (
        florsql.connect(history, replay="auto") as con,
        florsql.connect(oracle, replay="off") as ora,
    ):
        got, notes = fetch(con, sql)
        want, _ = fetch(ora, sql)
    assert got == want and len(want) == 3, (got, want, notes)


KILLED_AFTER_STEPS = """
import os
import sys

running = 0.0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            flor.log("loss", loss.item())
        flor.log("before_kill", running)  # hindsight
        if os.environ.get("KILL_AT") == str(epoch):
            print("waiting", flush=True)
            sys.stdin.readline()  # the test kills the process here (SIGKILL)
        flor.log("after_kill", float(net[0].weight.sum()))  # hindsight
"""


@pytest.mark.slow
def test_a_run_killed_after_the_step_loop_of_an_epoch_invents_nothing_past_the_kill(
    tmp_path: Path,
) -> None:
    """A run SIGKILLed in epoch 2 after its step loop (its ``after:step`` checkpoint taken, the
    epoch never ended): a statement after the kill point has no value at epoch 2, as in a
    re-run killed there; the epochs it ended are exact."""
    import florsql
    from tests.helpers import make_repo, write
    from tests.helpers_replay import fetch, old_source, patched_source
    from tests.test_replay_corpus import PREAMBLE

    text = PREAMBLE + KILLED_AFTER_STEPS
    history = make_repo(tmp_path / "history", {"train.py": old_source(text)})
    oracle = make_repo(tmp_path / "oracle", {"train.py": patched_source(text)})
    env = {"KILL_AT": "2", "FLORSQL_FLUSH_INTERVAL": "0", "FLORSQL_CHECKPOINT_PERIOD": "1"}
    for repo in (history, oracle):
        _kill_when_logged(repo, env, "loss", 8)
    write(history / "train.py", patched_source(text))
    with (
        florsql.connect(history, replay="auto") as con,
        florsql.connect(oracle, replay="off") as ora,
    ):
        for sql in (
            "SELECT epoch, after_kill FROM logs WHERE epoch >= 2",
            "SELECT epoch, before_kill, after_kill FROM logs",
        ):
            got, notes = fetch(con, sql)
            want, _ = fetch(ora, sql)
            invented = [r for r in got if r not in want and any(v is not None for v in r[1:])]
            assert not invented, (sql, got, want, notes)
            assert [r for r in got if r[0] < 2] == [r for r in want if r[0] < 2], sql
