"""Stranger sweep s36 (h3): training-loop patterns from model code bases that the corpus did
not hold yet, replayed and compared with a full re-run of the hand-patched old version (the
harness and oracle of tests/test_replay_corpus_stranger.py; runs with their own command lines,
``ArgCase`` of tests/test_replay_corpus_s35.py).

Exact already: YOLOv5's ``ModelEMA`` (an ``updates`` counter warming a lambda decay up, the
EMA module registered, the helper itself not: it does not pickle); a ``Trainer`` drawing its
noise from ``self.rng = np.random.default_rng(seed)`` with the step loop in a method, today's
statements reading only; fairseq's ``EpochBatchIterator`` (the epoch counter and the
iterations in the iterator object, reseeded per epoch); detectron2's infinite
``TrainingSampler`` (a generator of its own) behind a ``DataLoader`` iterated once across
epochs by ``next(it)``, five batches a round so epochs straddle its passes; an outer
``flor.loop`` over a shuffling ``DataLoader`` of meta-learning tasks; a Hugging Face style
``TrainerState`` dataclass (``global_step``, ``log_history``, ``best_metric``) with run-level
statements after the loop; timm's ``step_update(num_updates=...)`` scheduler (not a torch
scheduler); ``--lr``/``--wd`` read by ``argparse`` and not ``flor.arg``, two runs with their
own; today's statement inside the model's ``forward``; activation checkpointing
(``torch.utils.checkpoint``) with dropout inside the checkpointed block; a
``WeightedRandomSampler`` with its own generator reweighted in place from per-example losses;
a ``defaultdict(list)`` of metrics never cleared, summarised per epoch and after the loop;
``global global_step`` in a function of the script; a running input normaliser whose buffers
are ``None`` until the first batch; last epoch's model deep-copied as a consistency teacher;
a registered ``train_state`` dict holding the numpy and torch generators the loop draws from
by their own names; today's ``next(iter(val_loader))`` on a validation loader shuffling with an
inline ``generator=torch.Generator()`` that the old evaluation iterates too (exact before as
well, but through verification: the old ``val_first`` disagreed, so every task was recomputed
in full under two misleading NondeterminismWarnings; now a StatementDrawWarning names
``val_loader.generator`` and the run replays from its start).

Silently wrong or failing, now fixed:

- a script module counting in a private attribute (``self._samples_seen += len(x)`` in
  ``forward``), read by today's statement after the step loop: private attributes were left
  out of the checkpoint (0 at every epoch; a full re-run 48, 96, 144, 192);
- a registered model masking its inputs from its own ``self.rng = np.random.default_rng(seed)``,
  the old version logging only the learning rate: generators on a module were left out, so a
  task from a checkpoint drew other masks (``gn`` at epoch 3, step 0: 0.1962, a full re-run
  0.2304; no warning). A ``torch.Generator`` for stochastic depth (``DropPath``) was the same,
  caught there by verification because the old version logged the loss (recomputed in full
  under a NondeterminismWarning: exact, slow);
- timm's ``Lookahead`` registered as the optimizer (its ``param_groups`` are its base
  optimizer's, its ``load_state_dict`` the base's): a restore kept the wrapper's group dicts and
  left the base new ones, so the base stepped one set while the script read the other
  (``lookahead_step`` 10 at every later step; a full re-run 11, 12, ...); a scheduler made on
  the wrapper would have set a learning rate the base never read;
- today's ``sub = trainer.rng.sample(...)`` where the old code draws its augmentation from
  ``trainer.rng`` (a ``random.Random`` on a trainer object): the RNG guard watched the
  generators a frame names, not those its objects hold, so a task from a later checkpoint drew
  from the recorded generator (``val_sub`` at epoch 1: 0.6687, a run of today's script 0.6444,
  under a NondeterminismWarning only); now a StatementDrawWarning and a replay from the start;
- an augmenter registered with a ``state_dict`` of its probability only (not its
  ``random.Random`` nor its count): ``applied`` 0 at every epoch, and other step losses, where
  the old version logged only the probability;
- gradients clamped by ``p.register_hook(...)`` from epoch 1 on: parameter hooks were not part
  of the checkpoint's structure, so a task from a later checkpoint trained unclamped (the
  largest gradient at epoch 3, step 0: 0.1178, a full re-run 0.05);
- a hand-written Adam keeping its step count in ``self._t`` (a private attribute of a script's
  optimizer, left out as a module's was);
- today's ``net(XV)`` in training mode, where a ``DropPath`` submodule draws from its own
  ``torch.Generator``: the guard did not look into submodules (``train_mode_val`` at epoch 1:
  0.5093, a run of today's script 0.5196, under a NondeterminismWarning only).

Every pattern is exact now. ``BUGS`` names each failing pattern's bug (a strict xfail until
fixed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import test_replay_corpus_stranger as corpus
from tests.helpers_replay import (
    corpus_params,
    hindsight_names,
)
from tests.test_replay_corpus_s35 import ArgCase
from tests.test_replay_corpus_s35 import Histories as ArgHistories
from tests.test_replay_corpus_stranger import Case

pytestmark = pytest.mark.slow

STEP = """
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
"""

PATTERNS = [
    ArgCase(
        "yolov5_model_ema_with_an_updates_counter_and_a_lambda_decay",
        """
import copy
import math


class ModelEMA:
    # YOLOv5's: the decay warms up with the number of updates; a lambda (does not pickle)
    def __init__(self, model, decay=0.9, tau=5):
        self.ema = copy.deepcopy(model).eval()
        self.updates = 0
        self.decay = lambda x: decay * (1 - math.exp(-x / tau))
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def update(self, model):
        with torch.no_grad():
            self.updates += 1
            d = self.decay(self.updates)
            msd = model.state_dict()
            for k, v in self.ema.state_dict().items():
                if v.dtype.is_floating_point:
                    v *= d
                    v += (1 - d) * msd[k].detach()


ema = ModelEMA(net)
with flor.checkpointing(model=net, optimizer=opt, ema=ema.ema):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update(net)
            flor.log("loss", loss.item())
            flor.log("ema_d", ema.decay(ema.updates))  # hindsight
        with torch.no_grad():
            flor.log("val", float(loss_fn(net(XV), YV)))
            flor.log("ema_val", float(loss_fn(ema.ema(XV), YV)))  # hindsight
        flor.log("updates", ema.updates)  # hindsight
""",
        {"epoch": ["ema_val", "updates"], "epoch, step": ["ema_d"]},
        partial=("SELECT seed, epoch, ema_val FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "registered_model_masking_inputs_from_its_own_numpy_default_rng",
        """
import numpy as np


class Masked(nn.Module):
    # random feature masking (MAE-like) drawn from the model's own numpy generator
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
        self.rng = np.random.default_rng(seed)

    def forward(self, x):
        if self.training:
            keep = torch.from_numpy((self.rng.random(x.shape[1]) > 0.3).astype("float32"))
            x = x * keep
        return self.body(x)


net = Masked()
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
with flor.checkpointing(model=net, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        flor.log("lr", sched.get_last_lr()[0])  # all the old version logged
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("gn", float(net.body[0].weight.grad.norm()))  # hindsight
        sched.step()
        net.eval()
        flor.log("val", float(loss_fn(net(XV), YV).detach()))  # hindsight
""",
        {"epoch": ["val"], "epoch, step": ["gn"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, step, gn FROM logs WHERE epoch = 3",),
        fresh=True,
    ),
    ArgCase(
        "registered_model_drop_path_from_its_own_torch_generator",
        """


class DropPath(nn.Module):
    # stochastic depth with a generator of its own (reproducible masks)
    def __init__(self, p):
        super().__init__()
        self.p = p
        self.gen = torch.Generator().manual_seed(1234 + seed)

    def forward(self, x):
        if not self.training:
            return x
        keep = (torch.rand(x.shape[0], 1, generator=self.gen) >= self.p).float()
        return x * keep / (1 - self.p)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.drop = DropPath(0.3)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.fc2(h + self.drop(h))


net = Net()
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("w_step", float(net.fc1.weight.sum()))  # hindsight
        net.eval()
        flor.log("w", float(net.fc2.weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "epoch, step": ["w_step"]},
        partial=("SELECT seed, epoch, w FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "registered_model_counting_samples_in_a_private_attribute",
        """


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
        self._samples_seen = 0  # read by nothing the old version logs

    def forward(self, x):
        if self.training:
            self._samples_seen += len(x)
        return self.body(x)


net = Net()
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12 + epoch)):
"""
        + STEP
        + """
            flor.log("loss", loss.item())
        flor.log("seen", net._samples_seen)  # hindsight
""",
        {"epoch": ["seen"]},
        partial=("SELECT seed, epoch, seen FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "trainer_random_Random_as_self_rng_todays_statement_draws_from_it",
        """
import random


class Trainer:
    def __init__(self, net, opt):
        self.net, self.opt = net, opt
        self.rng = random.Random(seed)

    def step(self, idx):
        x = X[idx]
        if self.rng.random() < 0.5:  # a flip augmentation
            x = -x
        loss = loss_fn(self.net(x), Y[idx])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss


trainer = Trainer(net, opt)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = trainer.step(idx)
            flor.log("loss", loss.item())
        sub = trainer.rng.sample(range(len(XV)), 8)  # hindsight
        with torch.no_grad():  # hindsight
            flor.log("val_sub", float(loss_fn(net(XV[sub]), YV[sub])))  # hindsight
""",
        {"epoch": ["val_sub"]},
        # the recorded loss is not today's script's after the first draw: hindsight only
        old_query="SELECT seed, epoch, val_sub FROM logs WHERE epoch = 3",
        partial=("SELECT seed, epoch, val_sub FROM logs WHERE epoch = 1",),
        fresh=True,
    ),
    ArgCase(
        "trainer_numpy_default_rng_as_self_rng_old_code_draws_today_reads",
        """
import numpy as np


class Trainer:
    def __init__(self, net, opt):
        self.net, self.opt = net, opt
        self.rng = np.random.default_rng(seed)
        self.step_count = 0

    def train_epoch(self, epoch):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            noise = torch.from_numpy(self.rng.normal(0, 0.1, (len(idx), 6)).astype("float32"))
            loss = loss_fn(self.net(X[idx] + noise), Y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.step_count += 1
            flor.log("loss", loss.item())
            flor.log("noise_sum", float(noise.sum()))  # hindsight


trainer = Trainer(net, opt)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        trainer.train_epoch(epoch)
        flor.log("steps", trainer.step_count)  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["steps", "w"], "epoch, step": ["noise_sum"]},
        partial=("SELECT seed, epoch, steps, w FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "fairseq_epoch_batch_iterator_counting_epochs_and_iterations",
        """
import numpy as np


class EpochBatchIterator:
    # fairseq's shape: the iterator object owns the epoch counter and reseeds per epoch
    def __init__(self, n, bs, seed):
        self.n, self.bs, self.seed = n, bs, seed
        self.epoch = 0
        self.iterations_in_epoch = 0

    def next_epoch_itr(self, shuffle=True):
        self.epoch += 1
        self.iterations_in_epoch = 0
        rs = np.random.RandomState(self.seed + self.epoch)
        order = rs.permutation(self.n) if shuffle else np.arange(self.n)
        return self._batches(order)

    def _batches(self, order):
        for i in range(0, self.n, self.bs):
            self.iterations_in_epoch += 1
            yield torch.from_numpy(order[i : i + self.bs])


epoch_itr = EpochBatchIterator(len(X), 12, seed)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        itr = epoch_itr.next_epoch_itr(shuffle=epoch > 0)
        for idx in flor.loop("step", itr):
"""
        + STEP
        + """
            flor.log("loss", loss.item())
            flor.log("it", epoch_itr.iterations_in_epoch)  # hindsight
        flor.log("ep", epoch_itr.epoch)  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["ep", "w"], "epoch, step": ["it"]},
        partial=("SELECT seed, epoch, ep, w FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "detectron2_infinite_training_sampler_iterated_once_across_epochs",
        """


class TrainingSampler(torch.utils.data.Sampler):
    # detectron2's: an endless stream of permutations from a generator of its own
    def __init__(self, size, seed):
        self._size, self._seed = size, seed

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            yield from torch.randperm(self._size, generator=g).tolist()


ds = torch.utils.data.TensorDataset(X, Y)
loader = torch.utils.data.DataLoader(ds, batch_size=12, sampler=TrainingSampler(len(ds), seed))
it = iter(loader)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i in flor.loop("step", range(5)):  # 5 batches a round: epochs straddle passes
            xb, yb = next(it)
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("xb_sum", float(xb.sum()))  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "epoch, step": ["xb_sum"]},
        partial=("SELECT seed, epoch, w FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "outer_flor_loop_over_a_shuffling_dataloader_of_tasks",
        """
XT, YT = X.view(8, 6, 6), Y.view(8, 6)
tasks = torch.utils.data.DataLoader(torch.arange(8), batch_size=1, shuffle=True)
with flor.checkpointing(model=net, optimizer=opt):
    for tid in flor.loop("epoch", tasks):  # meta-learning: one episode per task
        xs, ys = XT[tid[0]], YT[tid[0]]
        for k in flor.loop("step", range(3)):
            loss = loss_fn(net(xs), ys)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("tid_k", int(tid[0]) * 10 + k)  # hindsight
        flor.log("tid", int(tid[0]))  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["tid", "w"], "epoch, step": ["tid_k"]},
        first=5,
        partial=("SELECT seed, epoch, w FROM logs WHERE epoch = 6",),
    ),
    ArgCase(
        "hf_trainer_state_with_a_log_history_and_a_best_metric",
        """
from dataclasses import dataclass, field


@dataclass
class TrainerState:
    global_step: int = 0
    epoch: float = 0.0
    log_history: list = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None


state = TrainerState()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
"""
        + STEP
        + """
            state.global_step += 1
            state.epoch = epoch + (i + 1) / 4
            if state.global_step % 3 == 0:
                state.log_history.append({"loss": loss.item(), "step": state.global_step})
            flor.log("loss", loss.item())
            flor.log("gs", state.global_step)  # hindsight
        with torch.no_grad():
            metric = float(loss_fn(net(XV), YV))
        state.log_history.append({"eval_loss": metric, "epoch": state.epoch})
        if state.best_metric is None or metric < state.best_metric:
            state.best_metric, state.best_step = metric, state.global_step
        flor.log("n_hist", len(state.log_history))  # hindsight
        train_logs = [h for h in state.log_history if "loss" in h]  # hindsight
        flor.log("last_train", train_logs[-1]["loss"])  # hindsight
flor.log("best_step", state.best_step)  # hindsight
flor.log("best", state.best_metric)  # hindsight
""",
        {"epoch": ["n_hist", "last_train"], "epoch, step": ["gs"], "": ["best_step", "best"]},
        partial=("SELECT seed, epoch, last_train FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "timm_style_scheduler_stepped_by_num_updates",
        """
import math


class CosineLRScheduler:
    # timm's shape: not a torch scheduler; step_update(num_updates) sets the groups' lr
    def __init__(self, optimizer, t_initial, warmup_t, lr_min=0.01):
        self.optimizer = optimizer
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.t_initial, self.warmup_t, self.lr_min = t_initial, warmup_t, lr_min

    def _get_lr(self, t):
        if t < self.warmup_t:
            return [b * (t + 1) / self.warmup_t for b in self.base]
        c = 1 + math.cos(math.pi * (t - self.warmup_t) / (self.t_initial - self.warmup_t))
        return [self.lr_min + 0.5 * (b - self.lr_min) * c for b in self.base]

    def step_update(self, num_updates):
        for g, lr in zip(self.optimizer.param_groups, self._get_lr(num_updates)):
            g["lr"] = lr


sched = CosineLRScheduler(opt, t_initial=16, warmup_t=5)
num_updates = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            num_updates += 1
            sched.step_update(num_updates=num_updates)
            flor.log("loss", loss.item())
            flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
        flor.log("num_updates", num_updates)  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["num_updates", "w"], "epoch, step": ["lr"]},
        partial=("SELECT seed, epoch, step, lr FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "argparse_learning_rate_not_through_flor_arg",
        """
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--wd", type=float, default=0.0)
args, _ = parser.parse_known_args()
opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.wd)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("loss", loss.item())
            flor.log("lr_wd", args.lr * 1000 + args.wd)  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "epoch, step": ["lr_wd"]},
        argvs=(
            ("--seed", "0", "--lr", "0.3", "--wd", "0.01"),
            ("--seed", "1", "--lr", "0.05"),
        ),
        partial=("SELECT seed, epoch, w FROM logs WHERE seed = 1 AND epoch = 3",),
    ),
    ArgCase(
        "statement_inside_the_models_forward",
        """


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        flor.log("h_mean", float(h.mean()))  # hindsight
        return self.fc2(h)


net = Net()
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("loss", loss.item())
        flor.log("w", float(net.fc1.weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "epoch, step": ["h_mean"]},
        partial=("SELECT seed, epoch, step, h_mean FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "activation_checkpointing_with_dropout_inside_the_checkpointed_block",
        """
from torch.utils.checkpoint import checkpoint


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        # recomputed in backward with the RNG state of the forward pass
        return self.head(checkpoint(self.block, x, use_reentrant=False))


net = Net()
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("loss", loss.item())
            flor.log("gn", float(net.block[0].weight.grad.norm()))  # hindsight
        flor.log("w", float(net.head.weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "epoch, step": ["gn"]},
        partial=("SELECT seed, epoch, step, gn FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "weighted_random_sampler_reweighted_from_per_example_losses",
        """
import torch.nn.functional as F

g = torch.Generator().manual_seed(seed)
sampler = torch.utils.data.WeightedRandomSampler(
    torch.ones(len(X)), num_samples=len(X), replacement=True, generator=g
)
ds = torch.utils.data.TensorDataset(X, Y, torch.arange(len(X)))
loader = torch.utils.data.DataLoader(ds, batch_size=12, sampler=sampler)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for xb, yb, ib in flor.loop("step", loader):
            per = F.cross_entropy(net(xb), yb, reduction="none")
            loss = per.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sampler.weights[ib] = per.detach().double() + 0.1  # hard examples drawn more
            flor.log("loss", loss.item())
            flor.log("ib_sum", int(ib.sum()))  # hindsight
        flor.log("wsum", float(sampler.weights.sum()))  # hindsight
""",
        {"epoch": ["wsum"], "epoch, step": ["ib_sum"]},
        partial=("SELECT seed, epoch, wsum FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "timm_lookahead_wrapping_adamw_registered_as_the_optimizer",
        """
from collections import OrderedDict, defaultdict


class Lookahead(torch.optim.Optimizer):
    # timm's: slow weights in the base optimizer's state, counters in its param groups
    def __init__(self, base_optimizer, alpha=0.5, k=3):
        defaults = dict(lookahead_alpha=alpha, lookahead_k=k, lookahead_step=0)
        self._optimizer_step_pre_hooks = OrderedDict()  # what Optimizer.step's wrapper reads
        self._optimizer_step_post_hooks = OrderedDict()
        self._base_optimizer = base_optimizer
        self.param_groups = base_optimizer.param_groups
        self.defaults = base_optimizer.defaults
        self.defaults.update(defaults)
        self.state = defaultdict(dict)
        for name, default in defaults.items():
            for group in self._base_optimizer.param_groups:
                group.setdefault(name, default)

    @torch.no_grad()
    def update_slow(self, group):
        for fast_p in group["params"]:
            if fast_p.grad is None:
                continue
            param_state = self._base_optimizer.state[fast_p]
            if "lookahead_slow_buff" not in param_state:
                param_state["lookahead_slow_buff"] = torch.empty_like(fast_p)
                param_state["lookahead_slow_buff"].copy_(fast_p)
            slow = param_state["lookahead_slow_buff"]
            slow.add_(fast_p - slow, alpha=group["lookahead_alpha"])
            fast_p.copy_(slow)

    def step(self, closure=None):
        loss = self._base_optimizer.step(closure)
        for group in self._base_optimizer.param_groups:
            group["lookahead_step"] += 1
            if group["lookahead_step"] % group["lookahead_k"] == 0:
                self.update_slow(group)
        return loss

    def state_dict(self):
        return self._base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self._base_optimizer.load_state_dict(state_dict)
        self.param_groups = self._base_optimizer.param_groups


opt = Lookahead(torch.optim.AdamW(net.parameters(), lr=0.02, weight_decay=0.05))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(10)):
"""
        + STEP
        + """
            flor.log("loss", loss.item())
            flor.log("la_step", opt.param_groups[0]["lookahead_step"])  # hindsight
        slow = opt._base_optimizer.state[net[0].weight]["lookahead_slow_buff"]  # hindsight
        flor.log("slow", float(slow.sum()))  # hindsight
""",
        {"epoch": ["slow"], "epoch, step": ["la_step"]},
        partial=("SELECT seed, epoch, slow FROM logs WHERE epoch = 3",),
        fresh=True,
    ),
    ArgCase(
        "metrics_defaultdict_of_lists_never_cleared_summarised_per_epoch",
        """
from collections import defaultdict

import numpy as np

history = defaultdict(list)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            history["loss"].append(loss.item())
            history["acc"].append(float((out.argmax(1) == Y[idx]).float().mean()))
            flor.log("loss", loss.item())
        flor.log("loss_ma", float(np.mean(history["loss"][-6:])))  # hindsight
        flor.log("acc_all", float(np.mean(history["acc"])))  # hindsight
        flor.log("n", len(history["loss"]))  # hindsight
flor.log("best_acc", max(history["acc"]))  # hindsight
""",
        {"epoch": ["loss_ma", "acc_all", "n"], "": ["best_acc"]},
        partial=("SELECT seed, epoch, loss_ma FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "global_step_in_a_module_function_by_the_global_statement",
        """
global_step = 0


def train_step(idx):
    global global_step
    loss = loss_fn(net(X[idx]), Y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    global_step += 1
    return loss


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(11 + epoch)):
            loss = train_step(idx)
            flor.log("loss", loss.item())
        flor.log("global_step", global_step)  # hindsight
""",
        {"epoch": ["global_step"]},
        partial=("SELECT seed, epoch, global_step FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "registered_augmenter_whose_state_dict_leaves_out_its_generator",
        """
import random


class Jitter:
    # the augmenter's state_dict keeps its schedule, not its generator nor its count
    def __init__(self, p):
        self.p = p
        self.rng = random.Random(seed)
        self.applied = 0

    def __call__(self, x):
        if self.rng.random() < self.p:
            self.applied += 1
            return x + 0.1
        return x

    def state_dict(self):
        return {"p": self.p}

    def load_state_dict(self, state):
        self.p = state["p"]


aug = Jitter(0.5)
with flor.checkpointing(model=net, optimizer=opt, aug=aug):
    for epoch in flor.loop("epoch", range(epochs)):
        flor.log("p", aug.p)  # all the old version logged
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(aug(X[idx])), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("step_loss", loss.item())  # hindsight
        aug.p *= 0.8
        flor.log("applied", aug.applied)  # hindsight
""",
        {"epoch": ["applied"], "epoch, step": ["step_loss"]},
        old_query="SELECT seed, epoch, p FROM logs",
        partial=("SELECT seed, epoch, step, step_loss FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "input_normaliser_whose_buffers_are_none_until_the_first_batch",
        """


class RunningNorm(nn.Module):
    # running input statistics, registered as None buffers and made at the first batch
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", None)
        self.register_buffer("count", None)

    def forward(self, x):
        if self.training:
            if self.mean is None:
                self.mean = x.mean(0).detach().clone()
                self.count = torch.tensor(len(x))
            else:
                n = self.count + len(x)
                self.mean = self.mean + (x.mean(0).detach() - self.mean) * len(x) / n
                self.count = n
        return x - self.mean


net = nn.Sequential(RunningNorm(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("loss", loss.item())
        flor.log("mean", float(net[0].mean.sum()))  # hindsight
        flor.log("count", int(net[0].count))  # hindsight
""",
        {"epoch": ["mean", "count"]},
        partial=("SELECT seed, epoch, mean FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "gradient_clamp_hooks_on_the_parameters_registered_after_warmup",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:  # warm-up over: clamp every gradient from now on
            for p in net.parameters():
                p.register_hook(lambda g: g.clamp(-0.05, 0.05))
        flor.log("lr", opt.param_groups[0]["lr"])  # all the old version logged
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("gmax", float(net[0].weight.grad.abs().max()))  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "epoch, step": ["gmax"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, step, gmax FROM logs WHERE epoch = 3",),
        fresh=True,
    ),
    ArgCase(
        "previous_epoch_snapshot_as_a_consistency_teacher",
        """
import copy

prev = None
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            if prev is not None:  # stay close to last epoch's model
                with torch.no_grad():
                    target = prev(X[idx]).softmax(1)
                loss = loss + 0.5 * (out.softmax(1) - target).pow(2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        prev = copy.deepcopy(net).eval()
        flor.log("prev_w", float(prev[0].weight.sum()))  # hindsight
""",
        {"epoch": ["prev_w"]},
        partial=("SELECT seed, epoch, prev_w FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "registered_train_state_dict_holding_the_generator_the_loop_draws_from",
        """
import numpy as np

rng = np.random.default_rng(seed)
g = torch.Generator().manual_seed(seed)
train_state = {"rng": rng, "gens": [g], "seen": 0}  # resumable state, as a dict
with flor.checkpointing(model=net, optimizer=opt, train_state=train_state):
    for epoch in flor.loop("epoch", range(epochs)):
        flor.log("lr", opt.param_groups[0]["lr"])  # all the old version logged
        for idx in flor.loop("step", torch.randperm(len(X), generator=g).split(12)):
            noise = torch.from_numpy(rng.normal(0, 0.1, (len(idx), 6)).astype("float32"))
            loss = loss_fn(net(X[idx] + noise), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            train_state["seen"] += len(idx)
            flor.log("noise", float(noise.sum()))  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "epoch, step": ["noise"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, step, noise FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "hand_written_adam_keeping_its_step_count_in_a_private_attribute",
        """


class MyAdam(torch.optim.Optimizer):
    # bias correction by a step count kept on the optimizer, not in its per-parameter state
    def __init__(self, params, lr=0.05, betas=(0.9, 0.99)):
        super().__init__(params, dict(lr=lr, betas=betas))
        self._t = 0

    @torch.no_grad()
    def step(self):
        self._t += 1
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
                st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                m_hat = st["m"] / (1 - b1**self._t)
                v_hat = st["v"] / (1 - b2**self._t)
                p.sub_(group["lr"] * m_hat / (v_hat.sqrt() + 1e-8))


opt = MyAdam(net.parameters())
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        flor.log("lr", opt.param_groups[0]["lr"])  # all the old version logged
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("step_loss", loss.item())  # hindsight
        flor.log("t", opt._t)  # hindsight
""",
        {"epoch": ["t"], "epoch, step": ["step_loss"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, step, step_loss FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "todays_statement_runs_the_model_in_training_mode_drawing_from_a_submodules_generator",
        """


class DropPath(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p
        self.gen = torch.Generator().manual_seed(99 + seed)

    def forward(self, x):
        if not self.training:
            return x
        keep = (torch.rand(x.shape[0], 1, generator=self.gen) >= self.p).float()
        return x * keep / (1 - self.p)


net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), DropPath(0.3), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("loss", loss.item())
        with torch.no_grad():  # hindsight
            flor.log("train_mode_val", float(loss_fn(net(XV), YV)))  # hindsight
""",
        {"epoch": ["train_mode_val"]},
        # the recorded loss is not today's script's after the first draw: hindsight only
        old_query="SELECT seed, epoch, train_mode_val FROM logs WHERE epoch = 3",
        partial=("SELECT seed, epoch, train_mode_val FROM logs WHERE epoch = 1",),
    ),
    ArgCase(
        "todays_statement_takes_one_batch_of_a_validation_loader_with_an_inline_generator",
        """
val_loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(XV, YV),
    batch_size=4,
    shuffle=True,
    generator=torch.Generator().manual_seed(7),
)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("loss", loss.item())
        xb, yb = next(iter(val_loader))  # hindsight
        flor.log("first_val_y", int(yb.sum()) * 100 + int(xb.argmax()))  # hindsight
        with torch.no_grad():
            firsts = [int(vx.argmax()) for vx, _ in val_loader]  # the old evaluation
        flor.log("val_first", firsts[0])
""",
        {"epoch": ["first_val_y"]},
        # the recorded val_first is not today's script's after the first draw: hindsight only
        old_query="SELECT seed, epoch, first_val_y FROM logs WHERE epoch = 3",
        partial=("SELECT seed, epoch, first_val_y FROM logs WHERE epoch = 1",),
    ),
]

BUGS: dict[str, str] = {}
for _p in PATTERNS:
    _p.bug = BUGS.get(_p.name)
assert not set(BUGS) - {p.name for p in PATTERNS}
CASES = corpus_params(PATTERNS, [p.name for p in PATTERNS])
FRESH = corpus_params([p for p in PATTERNS if p.fresh], [p.name for p in PATTERNS if p.fresh])


def test_s36_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


class Histories(ArgHistories):
    prefix = "s36"


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Histories]:
    h = Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", CASES)
def test_s36_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_partial_then_wider(pattern, histories, tmp_path)


@pytest.mark.parametrize("pattern", FRESH)
def test_s36_fresh_store_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_fresh(pattern, histories, tmp_path)
