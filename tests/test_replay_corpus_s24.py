"""Training scripts as ML engineers write them, replayed and compared with a full re-run of the
hand-patched old version (the harness and oracle of tests/test_replay_corpus_stranger.py).

The outer ``flor.loop`` wrapped by ``enumerate``/``zip`` or iterating a ``zip``; datasets,
samplers and ``collate_fn`` functions of the script whose state a ``DataLoader`` changes; an
unregistered loss module counting in its ``forward``; closures keeping counts in a list cell;
numpy arrays aliased or filled per epoch; ``+=`` on a list through an alias; per-layer
statements in a plain ``for``; gradient clipping, a custom and a disabled ``GradScaler``; a
registered ``SequentialLR``; weight decay set per epoch and plain attributes on the optimizer;
``_foreach`` EMA tensors; BatchNorm and spectral norm; a ``Trainer`` class; a dataclass config
mutated at a milestone; gradient-accumulation remainders flushed after the step loop; a stop
flag breaking both loops; SWA with ``update_bn``; ``random.Random`` inside a callable augmenter;
``next()`` on a ``DataLoader`` iterator refilled on ``StopIteration``; a test-time-augmentation
loop; objects other than modules and optimizers given to ``flor.checkpointing`` (generators, a
deque, a ``random.Random``, a dict whose list a name aliases) and non-plain attributes on
modules (a ``Counter``, a ``set``); state a module's ``forward`` changes outside the module. The
``min_*`` patterns are the smallest forms of what failed when the corpus was written (fixed
since); ``BUGS`` names a failing pattern's bug (a strict xfail until fixed). Patterns that
pass pin what replay gets right: a functools.partial train step over a state dict, a list of
bound-method callbacks, zip/enumerate around the outer loop."""

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

PATTERNS = [
    Case(
        "outer_loop_enumerated_from_one",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for n_epoch, epoch in enumerate(flor.loop("epoch", range(epochs)), start=1):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("n_epoch", n_epoch)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["n_epoch", "w_sum"]},
        fresh=True,
    ),
    Case(
        "outer_loop_zipped_with_a_list_of_learning_rates",
        """
lrs = [0.2, 0.1, 0.05, 0.02, 0.01]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch, lr in zip(flor.loop("epoch", range(epochs)), lrs):
        for g in opt.param_groups:
            g["lr"] = lr
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("lr", lr)  # hindsight
        flor.log("opt_lr", opt.param_groups[0]["lr"])  # hindsight
""",
        {"epoch": ["lr", "opt_lr"]},
        fresh=True,
    ),
    Case(
        "flor_loop_over_a_zip_of_epochs_and_learning_rates",
        """
lrs = [0.2, 0.1, 0.05, 0.02, 0.01]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch, lr in flor.loop("epoch", zip(range(epochs), lrs)):
        for g in opt.param_groups:
            g["lr"] = lr
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("lr", lr)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["lr", "w_sum"]},
    ),
    Case(
        "dataset_counts_and_augments_in_getitem_behind_a_dataloader",
        """
import numpy as np
from torch.utils.data import DataLoader, Dataset


class Jittered(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y
        self.rng = np.random.default_rng(0)
        self.reads = 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.reads += 1
        noise = torch.from_numpy(self.rng.normal(0, 0.05, 6).astype("float32"))
        return self.x[i] + noise, self.y[i]


ds = Jittered(X, Y)
g = torch.Generator().manual_seed(seed)
loader = DataLoader(ds, batch_size=12, shuffle=True, generator=g)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for xb, yb in flor.loop("step", loader):
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("reads", ds.reads)  # hindsight
        flor.log("rng_pos", int(ds.rng.bit_generator.state["state"]["state"] % 100003))  # hindsight
""",
        {"epoch": ["reads", "rng_pos"]},
        fresh=True,
    ),
    Case(
        "collate_fn_counts_batches_into_a_global_dict",
        """
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.dataloader import default_collate

seen = {"batches": 0, "rows": 0}


def collate(items):
    seen["batches"] += 1
    seen["rows"] += len(items)
    return default_collate(items)


g = torch.Generator().manual_seed(seed)
loader = DataLoader(
    TensorDataset(X, Y), batch_size=12, shuffle=True, generator=g, collate_fn=collate
)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for xb, yb in flor.loop("step", loader):
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("batches", seen["batches"])  # hindsight
        flor.log("rows", seen["rows"])  # hindsight
""",
        {"epoch": ["batches", "rows"]},
    ),
    Case(
        "sampler_class_with_set_epoch_counts_its_passes",
        """
from torch.utils.data import DataLoader, Sampler, TensorDataset


class EpochSampler(Sampler):
    def __init__(self, n, seed):
        self.n, self.seed, self.epoch, self.passes = n, seed, 0, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        self.passes += 1
        g = torch.Generator().manual_seed(self.seed * 100 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self):
        return self.n


sampler = EpochSampler(len(X), seed)
loader = DataLoader(TensorDataset(X, Y), batch_size=12, sampler=sampler)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        sampler.set_epoch(epoch)
        for xb, yb in flor.loop("step", loader):
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("passes", sampler.passes)  # hindsight
        flor.log("sampler_epoch", sampler.epoch)  # hindsight
""",
        {"epoch": ["passes", "sampler_epoch"]},
        fresh=True,
    ),
    Case(
        "weighted_random_sampler_with_its_own_generator",
        """
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

g = torch.Generator().manual_seed(seed)
weights = torch.where(Y == 1, 2.0, 1.0).double()
sampler = WeightedRandomSampler(weights, num_samples=48, replacement=True, generator=g)
loader = DataLoader(TensorDataset(X, Y), batch_size=12, sampler=sampler)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for xb, yb in flor.loop("step", loader):
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("pos", int(yb.sum()))  # hindsight
        flor.log("g_state", int(g.get_state().long().sum()))  # hindsight
""",
        {"epoch": ["g_state"], "epoch, step": ["pos"]},
        partial=("SELECT seed, epoch, step, pos FROM logs WHERE epoch = 3",),
    ),
    Case(
        "unregistered_loss_module_counts_in_its_forward",
        """
class CountingLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.ce = nn.CrossEntropyLoss()
        self.register_buffer("class_seen", torch.zeros(2))
        self.calls = 0

    def forward(self, out, y):
        self.calls += 1
        self.class_seen += torch.bincount(y, minlength=2).float()
        return self.ce(out, y)


crit = CountingLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = crit(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("crit_calls", crit.calls)  # hindsight
        flor.log("class1_seen", float(crit.class_seen[1]))  # hindsight
""",
        {"epoch": ["crit_calls", "class1_seen"]},
        fresh=True,
    ),
    Case(
        "closure_keeps_its_counts_in_a_list_cell",
        """
def make_tracker():
    box = [0, 0.0]

    def add(v):
        box[0] += 1
        box[1] += v

    def read():
        return tuple(box)

    return add, read


add, read = make_tracker()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            add(loss.item())
            flor.log("loss", loss.item())
        flor.log("tracked_n", read()[0])  # hindsight
        flor.log("tracked_sum", read()[1])  # hindsight
""",
        {"epoch": ["tracked_n", "tracked_sum"]},
        fresh=True,
    ),
    Case(
        "numpy_confusion_matrix_held_by_a_dict",
        """
import numpy as np

conf = np.zeros((2, 2), dtype=np.int64)
metrics = {"conf": conf}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            np.add.at(conf, (Y[idx].numpy(), out.argmax(1).numpy()), 1)
            flor.log("loss", loss.item())
        flor.log("trace", int(metrics["conf"].trace()))  # hindsight
        flor.log("total", int(conf.sum()))  # hindsight
""",
        {"epoch": ["trace", "total"]},
        fresh=True,
    ),
    Case(
        "numpy_history_preallocated_and_filled_per_epoch",
        """
import numpy as np

hist = np.zeros((epochs, 2))
W = torch.zeros(epochs, 8)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        tot = 0.0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item()
            flor.log("loss", loss.item())
        hist[epoch, 0] = tot
        hist[epoch, 1] = float(net[0].weight.norm())
        W[epoch] = net[0].weight.detach().sum(1)
        flor.log("hist_sum", float(hist[: epoch + 1].sum()))  # hindsight
        flor.log("w_rows", float(W[: epoch + 1].sum()))  # hindsight
""",
        {"epoch": ["hist_sum", "w_rows"]},
        period=2,
    ),
    Case(
        "history_list_extended_with_plus_equals_through_an_alias",
        """
history = {"train": [], "val": []}
train_hist = history["train"]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            train_hist += [loss.item()]
            flor.log("loss", loss.item())
        history["val"].append(loss_fn(net(XV), YV).item())
        flor.log("n_train", len(history["train"]))  # hindsight
        flor.log("train_sum", sum(history["train"]))  # hindsight
        flor.log("n_val", len(history["val"]))  # hindsight
""",
        {"epoch": ["n_train", "train_sum", "n_val"]},
        fresh=True,
    ),
    Case(
        "per_layer_norms_logged_in_a_plain_for_over_named_parameters",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        total = 0.0
        for name, p in net.named_parameters():
            total += float(p.detach().norm())
            flor.log("pnorm", float(p.detach().norm()))  # hindsight
        flor.log("total_norm", total)  # hindsight
""",
        {"epoch": ["pnorm", "total_norm"]},
    ),
    Case(
        "grad_value_clipping_and_max_norm_kept_across_epochs",
        """
max_gn, n_big = 0.0, 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            gn = torch.stack([p.grad.norm() for p in net.parameters()]).norm()
            torch.nn.utils.clip_grad_value_(net.parameters(), 0.05)
            max_gn = max(max_gn, float(gn))
            n_big += int(gn > 0.3)
            opt.step()
            flor.log("loss", loss.item())
            flor.log("gn", float(gn))  # hindsight
        flor.log("max_gn", max_gn)  # hindsight
        flor.log("n_big", n_big)  # hindsight
        flor.log("gmax", float(max(p.grad.abs().max() for p in net.parameters())))  # hindsight
""",
        {"epoch": ["max_gn", "n_big", "gmax"], "epoch, step": ["gn"]},
        partial=("SELECT seed, epoch, max_gn, n_big FROM logs WHERE epoch = 3",),
    ),
    Case(
        "custom_dynamic_loss_scaler_unregistered",
        """
class LossScaler:
    def __init__(self, scale=16.0, interval=3):
        self.scale, self.interval, self.good, self.skipped = scale, interval, 0, 0

    def update(self, ok):
        if ok:
            self.good += 1
            if self.good % self.interval == 0:
                self.scale *= 2.0
        else:
            self.scale /= 2.0
            self.skipped += 1


scaler = LossScaler()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            (loss * scaler.scale).backward()
            for p in net.parameters():
                p.grad /= scaler.scale
            ok = float(torch.stack([p.grad.norm() for p in net.parameters()]).norm()) < 0.5
            if ok:
                opt.step()
            scaler.update(ok)
            flor.log("loss", loss.item())
        flor.log("scale", scaler.scale)  # hindsight
        flor.log("skipped", scaler.skipped)  # hindsight
""",
        {"epoch": ["scale", "skipped"]},
        period=2,
        fresh=True,
    ),
    Case(
        "disabled_grad_scaler_registered",
        """
scaler = torch.amp.GradScaler("cpu", enabled=False)
with flor.checkpointing(model=net, optimizer=opt, scaler=scaler):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            gn = torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            flor.log("loss", loss.item())
        flor.log("scale", scaler.get_scale())  # hindsight
        flor.log("gn_last", float(gn))  # hindsight
""",
        {"epoch": ["scale", "gn_last"]},
    ),
    Case(
        "weight_decay_raised_each_epoch_through_param_groups",
        """
opt = torch.optim.AdamW(net.parameters(), lr=0.01, weight_decay=0.0)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for g in opt.param_groups:
            g["weight_decay"] = 0.05 * (epoch + 1)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("wd", opt.param_groups[0]["weight_decay"])  # hindsight
        flor.log("w_norm", float(net[0].weight.norm()))  # hindsight
        flor.log("adam_step", float(opt.state[net[0].weight]["step"]))  # hindsight
        flor.log("exp_avg_sq", float(opt.state[net[0].weight]["exp_avg_sq"].sum()))  # hindsight
""",
        {"epoch": ["wd", "w_norm", "adam_step", "exp_avg_sq"]},
    ),
    Case(
        "ema_tensors_kept_by_foreach_ops_one_aliased_by_name",
        """
ema_params = [p.detach().clone() for p in net.parameters()]
ema_w0 = ema_params[0]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                torch._foreach_mul_(ema_params, 0.9)
                torch._foreach_add_(ema_params, list(net.parameters()), alpha=0.1)
            flor.log("loss", loss.item())
        flor.log("ema_sum", float(sum(t.sum() for t in ema_params)))  # hindsight
        flor.log("ema_w0", float(ema_w0.sum()))  # hindsight
""",
        {"epoch": ["ema_sum", "ema_w0"]},
        fresh=True,
    ),
    Case(
        "batchnorm_running_stats_and_eval_for_validation",
        """
net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
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
            flor.log("bn_mean_step", float(net[1].running_mean.sum()))  # hindsight
        flor.log("bn_var", float(net[1].running_var.sum()))  # hindsight
        flor.log("bn_batches", int(net[1].num_batches_tracked))  # hindsight
        net.eval()
        with torch.no_grad():
            val = loss_fn(net(XV), YV).item()
        flor.log("val", val)
        flor.log("eval_after_val", int(not net.training))  # hindsight
""",
        {"epoch": ["bn_var", "bn_batches", "eval_after_val"], "epoch, step": ["bn_mean_step"]},
        old_query="SELECT seed, epoch, val FROM logs",
    ),
]

PATTERNS += [
    Case(
        "trainer_with_train_epoch_and_validate_methods",
        """
class Trainer:
    def __init__(self, net, opt):
        self.net, self.opt = net, opt
        self.global_step = 0
        self.best = float("inf")
        self.history = []

    def train_epoch(self):
        total = 0.0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(self.net(X[idx]), Y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.global_step += 1
            total += loss.item()
            flor.log("loss", loss.item())
        return total / 4

    def validate(self):
        with torch.no_grad():
            v = loss_fn(self.net(XV), YV).item()
        self.best = min(self.best, v)
        flor.log("val_in_method", v)  # hindsight
        return v

    def fit(self, epochs):
        with flor.checkpointing(model=self.net, optimizer=self.opt):
            for epoch in flor.loop("epoch", range(epochs)):
                tr = self.train_epoch()
                val = self.validate()
                self.history.append((tr, val))
                flor.log("gstep", self.global_step)  # hindsight
                flor.log("best", self.best)  # hindsight
                flor.log("n_hist", len(self.history))  # hindsight


Trainer(net, opt).fit(epochs)
""",
        {"epoch": ["val_in_method", "gstep", "best", "n_hist"]},
        fresh=True,
    ),
    Case(
        "dataclass_config_mutated_at_a_milestone",
        """
from dataclasses import dataclass, field


@dataclass
class Config:
    lr: float = 0.2
    accum: int = 1
    milestones: list = field(default_factory=lambda: [2])
    bumps: int = 0


cfg = Config()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch in cfg.milestones:
            cfg.lr *= 0.1
            cfg.accum = 2
            cfg.bumps += 1
        for g in opt.param_groups:
            g["lr"] = cfg.lr
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
            loss = loss_fn(net(X[idx]), Y[idx]) / cfg.accum
            loss.backward()
            if (i + 1) % cfg.accum == 0:
                opt.step()
                opt.zero_grad()
            flor.log("loss", loss.item())
        flor.log("cfg_lr", cfg.lr)  # hindsight
        flor.log("cfg_accum", cfg.accum)  # hindsight
        flor.log("bumps", cfg.bumps)  # hindsight
""",
        {"epoch": ["cfg_lr", "cfg_accum", "bumps"]},
        first=3,
    ),
    Case(
        "remainder_of_grad_accumulation_flushed_after_the_step_loop",
        """
flushed = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        accum = 2 if epoch < 2 else 3
        opt.zero_grad()
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
            loss = loss_fn(net(X[idx]), Y[idx]) / accum
            loss.backward()
            if (i + 1) % accum == 0:
                opt.step()
                opt.zero_grad()
            flor.log("loss", loss.item())
        g0 = net[0].weight.grad
        flor.log("pending_grad", 0.0 if g0 is None else float(g0.abs().sum()))  # hindsight
        if (i + 1) % accum != 0:
            opt.step()
            opt.zero_grad()
            flushed += 1
        flor.log("flushed", flushed)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["pending_grad", "flushed", "w_sum"]},
        fresh=True,
    ),
    Case(
        "mixed_step_and_epoch_names_under_if_else_in_one_query",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i % 2 == 0:
                flor.log("even_loss", loss.item())  # hindsight
                flor.log("loss", loss.item())
            else:
                flor.log("odd_gnorm", float(net[0].weight.grad.norm()))  # hindsight
                flor.log("loss", loss.item())
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"], "epoch, step": ["even_loss", "odd_gnorm"]},
        partial=(
            "SELECT seed, epoch, step, odd_gnorm, w_sum FROM logs WHERE epoch >= 1",
            "SELECT seed, epoch, w_sum, even_loss FROM logs WHERE epoch = 0",
        ),
    ),
    Case(
        "break_both_loops_through_a_stop_flag_at_a_step_budget",
        """
global_step, stop = 0, False
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs + 2)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            global_step += 1
            flor.log("loss", loss.item())
            if global_step >= 14:
                stop = True
                break
        flor.log("gs", global_step)  # hindsight
        flor.log("last_loss", loss.item())  # hindsight
        if stop:
            break
flor.log("final_gs", global_step)  # hindsight
flor.log("final_epoch", epoch)  # hindsight
""",
        {"epoch": ["gs", "last_loss"], "": ["final_gs", "final_epoch"]},
        fresh=True,
    ),
    Case(
        "step_loop_over_dict_items_enumerated_from_one",
        """
shards = {f"s{i}": (X[i * 12 : (i + 1) * 12], Y[i * 12 : (i + 1) * 12]) for i in range(4)}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for k, (name, (xb, yb)) in enumerate(flor.loop("step", shards.items()), start=1):
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("k_name", f"{k}:{name}")  # hindsight
        flor.log("last_name", name)  # hindsight
        flor.log("last_k", k)  # hindsight
""",
        {"epoch": ["last_name", "last_k"], "epoch, step": ["k_name"]},
    ),
    Case(
        "swa_registered_then_update_bn_after_training",
        """
from torch.optim.swa_utils import AveragedModel, update_bn

net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
swa = AveragedModel(net)
with flor.checkpointing(model=net, optimizer=opt, swa=swa):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        if epoch >= 1:
            swa.update_parameters(net)
        flor.log("n_avg", int(swa.n_averaged))  # hindsight
update_bn([X[i : i + 12] for i in range(0, 48, 12)], swa)
flor.log("swa_bn_mean", float(swa.module[1].running_mean.sum()))  # hindsight
flor.log("swa_val", loss_fn(swa(XV), YV).item())  # hindsight
""",
        {"epoch": ["n_avg"], "": ["swa_bn_mean", "swa_val"]},
        fresh=True,
    ),
    Case(
        "augmenter_object_with_a_random_instance_called_per_batch",
        """
import random


class Augment:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.flips = 0

    def __call__(self, x):
        if self.rng.random() < 0.5:
            self.flips += 1
            return -x
        return x


aug = Augment(seed)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            x = aug(X[idx])
            loss = loss_fn(net(x), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("flips", aug.flips)  # hindsight
        flor.log("rng_state", aug.rng.getstate()[1][5])  # hindsight
""",
        {"epoch": ["flips", "rng_state"]},
        fresh=True,
    ),
    Case(
        "deque_of_grad_norm_tensors_as_a_moving_window",
        """
from collections import deque

window = deque(maxlen=3)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            window.append(net[0].weight.grad.norm().detach())
            opt.step()
            flor.log("loss", loss.item())
        flor.log("win_mean", float(torch.stack(list(window)).mean()))  # hindsight
        flor.log("win_len", len(window))  # hindsight
        flor.log("win_max", window.maxlen)  # hindsight
""",
        {"epoch": ["win_mean", "win_len", "win_max"]},
    ),
    Case(
        "target_noise_drawn_from_the_global_rng_per_epoch",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        flip = torch.rand(len(Y)) < 0.1
        Yn = torch.where(flip, 1 - Y, Y)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            x = X[idx] + 0.05 * torch.randn(len(idx), 6)
            loss = loss_fn(net(x), Yn[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("n_flipped", int(flip.sum()))  # hindsight
        flor.log("rng_sum", int(torch.get_rng_state()[:64].long().sum()))  # hindsight
        flor.log("x_last", float(x.sum()))  # hindsight
""",
        {"epoch": ["n_flipped", "rng_sum", "x_last"]},
        seeds=(0, 1),
    ),
    Case(
        "while_loop_pulls_batches_with_next_until_stop_iteration",
        """
from torch.utils.data import DataLoader, TensorDataset

g = torch.Generator().manual_seed(seed)
loader = DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True, generator=g)
it = iter(loader)
refills = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for step in flor.loop("step", range(4)):
            try:
                xb, yb = next(it)
            except StopIteration:
                it = iter(loader)
                refills += 1
                xb, yb = next(it)
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("refills", refills)  # hindsight
        flor.log("yb_sum", int(yb.sum()))  # hindsight
""",
        {"epoch": ["refills", "yb_sum"]},
        fresh=True,
    ),
    Case(
        "early_stopping_counter_in_a_class_with_state_dict_registered",
        """
YV = 1 - YV


class EarlyStopper:
    def __init__(self, patience):
        self.patience, self.best, self.bad, self.calls = patience, float("inf"), 0, 0

    def step(self, v):
        self.calls += 1
        if v < self.best:
            self.best, self.bad = v, 0
        else:
            self.bad += 1
        return self.bad >= self.patience

    def state_dict(self):
        return {"best": self.best, "bad": self.bad, "calls": self.calls}

    def load_state_dict(self, s):
        self.best, self.bad, self.calls = s["best"], s["bad"], s["calls"]


stopper = EarlyStopper(2)
with flor.checkpointing(model=net, optimizer=opt, stopper=stopper):
    for epoch in flor.loop("epoch", range(epochs + 4)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            v = loss_fn(net(XV), YV).item()
        flor.log("bad", stopper.bad)  # hindsight
        if stopper.step(v):
            break
        flor.log("best", stopper.best)  # hindsight
flor.log("calls", stopper.calls)  # hindsight
""",
        {"epoch": ["bad", "best"], "": ["calls"]},
        first=1,
        fresh=True,
    ),
]

PATTERNS += [
    Case(
        "plain_attribute_and_custom_group_key_on_the_registered_optimizer",
        """
opt.steps_taken = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            opt.steps_taken += 1
            opt.param_groups[0]["seen"] = opt.param_groups[0].get("seen", 0) + len(idx)
            flor.log("loss", loss.item())
        flor.log("steps_taken", opt.steps_taken)  # hindsight
        flor.log("group_seen", opt.param_groups[0]["seen"])  # hindsight
""",
        {"epoch": ["steps_taken", "group_seen"]},
        fresh=True,
    ),
    Case(
        "torch_and_numpy_generators_registered_in_checkpointing",
        """
import numpy as np

g = torch.Generator().manual_seed(seed)
rng = np.random.default_rng(seed)
with flor.checkpointing(model=net, optimizer=opt, g=g, rng=rng):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X), generator=g).split(12)):
            x = X[idx] * float(rng.uniform(0.9, 1.1))
            loss = loss_fn(net(x), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("g_sum", int(g.get_state().long().sum()))  # hindsight
        flor.log("rng_pos", int(rng.bit_generator.state["state"]["state"] % 100003))  # hindsight
""",
        {"epoch": ["g_sum", "rng_pos"]},
    ),
    Case(
        "sequential_lr_registered_warmup_then_cosine_per_step",
        """
warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5)
cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=11)
sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[5])
with flor.checkpointing(model=net, optimizer=opt, scheduler=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            flor.log("loss", loss.item())
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
        flor.log("cos_last", cos.last_epoch)  # hindsight
""",
        {"epoch": ["lr", "cos_last"]},
        fresh=True,
    ),
    Case(
        "per_step_losses_written_into_a_preallocated_tensor_and_a_view",
        """
losses = torch.zeros(epochs * 4)
first_epoch = losses[:4]
gstep = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[gstep] = loss.detach()
            gstep += 1
            flor.log("loss", loss.item())
        flor.log("losses_sum", float(losses[:gstep].sum()))  # hindsight
        flor.log("first_epoch_sum", float(first_epoch.sum()))  # hindsight
""",
        {"epoch": ["losses_sum", "first_epoch_sum"]},
        fresh=True,
    ),
    Case(
        "loop_variable_rebound_one_based_in_the_body",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        epoch += 1
        for step in flor.loop("step", range(4)):
            idx = torch.arange(step * 12, step * 12 + 12)
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            flor.log("loss", loss.item())
            flor.log("disp_step", epoch * 100 + step)  # hindsight
        flor.log("disp_epoch", epoch)  # hindsight
""",
        {"epoch": ["disp_epoch"], "epoch, step": ["disp_step"]},
    ),
    Case(
        "batches_skipped_by_a_try_except_inside_the_step_loop",
        """
skipped = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            try:
                if int(idx[0]) % 5 == 0:
                    raise RuntimeError("bad batch")
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
            except RuntimeError as err:
                skipped.append((epoch, str(err)))
                continue
            flor.log("ok_first", int(idx[0]))  # hindsight
        flor.log("n_skipped", len(skipped))  # hindsight
        flor.log("last_err", skipped[-1][1] if skipped else None)  # hindsight
""",
        {"epoch": ["n_skipped", "last_err"], "epoch, step": ["ok_first"]},
        seeds=(0, 1),
    ),
    Case(
        "spectral_norm_layer_updates_its_vectors_in_forward",
        """
net = nn.Sequential(nn.utils.spectral_norm(nn.Linear(6, 8)), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("u_sum", float(net[0].weight_u.sum()))  # hindsight
        flor.log("w_orig", float(net[0].weight_orig.sum()))  # hindsight
""",
        {"epoch": ["u_sum", "w_orig"]},
    ),
    Case(
        "test_time_augmentation_loop_draws_from_the_global_rng",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        probs = torch.zeros(len(XV), 2)
        with torch.no_grad():
            for k in flor.loop("tta", range(3)):
                xa = XV + 0.1 * torch.randn_like(XV)
                probs += net(xa).softmax(1)
                flor.log("tta_sum", float(xa.sum()))  # hindsight
        acc = (probs.argmax(1) == YV).float().mean().item()
        flor.log("acc", acc)
        flor.log("probs_max", float(probs.max()))  # hindsight
""",
        {"epoch": ["probs_max"], "epoch, tta": ["tta_sum"]},
        old_query="SELECT seed, epoch, acc FROM logs",
        partial=("SELECT seed, epoch, tta, tta_sum FROM logs WHERE epoch = 3",),
    ),
]

PATTERNS += [
    Case(
        "sampler_class_counts_its_passes_without_set_epoch",
        """
from torch.utils.data import DataLoader, Sampler, TensorDataset


class Shuffled(Sampler):
    def __init__(self, n, seed):
        self.n, self.g, self.passes = n, torch.Generator().manual_seed(seed), 0

    def __iter__(self):
        self.passes += 1
        return iter(torch.randperm(self.n, generator=self.g).tolist())

    def __len__(self):
        return self.n


sampler = Shuffled(len(X), seed)
loader = DataLoader(TensorDataset(X, Y), batch_size=12, sampler=sampler)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for xb, yb in flor.loop("step", loader):
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("yb_sum", int(yb.sum()))  # hindsight
        flor.log("passes", sampler.passes)  # hindsight
""",
        {"epoch": ["passes"], "epoch, step": ["yb_sum"]},
        partial=("SELECT seed, epoch, step, yb_sum FROM logs WHERE epoch = 3",),
        fresh=True,
    ),
    Case(
        "label_counter_and_seen_ids_stashed_on_the_registered_model",
        """
from collections import Counter

net.label_counts = Counter()
net.seen_ids = set()
net.steps = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(10)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            net.label_counts.update(Y[idx].tolist())
            net.seen_ids.update(idx.tolist())
            net.steps += 1
            flor.log("loss", loss.item())
        flor.log("ones", net.label_counts[1])  # hindsight
        flor.log("n_seen", len(net.seen_ids))  # hindsight
        flor.log("model_steps", net.steps)  # hindsight
""",
        {"epoch": ["ones", "n_seen", "model_steps"]},
        fresh=True,
    ),
    Case(
        "min_set_attribute_on_the_registered_model",
        """
net.seen = set()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            net.seen.add((epoch, int(idx[0])))
            flor.log("loss", loss.item())
        flor.log("n_seen", len(net.seen))  # hindsight
""",
        {"epoch": ["n_seen"]},
    ),
    Case(
        "registered_history_dict_with_a_list_aliased_by_name",
        """
history = {"train": [], "val": []}
train_log = history["train"]
with flor.checkpointing(model=net, optimizer=opt, history=history):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            train_log.append(loss.item())
            flor.log("loss", loss.item())
            flor.log("n_alias", len(train_log))  # hindsight
        history["val"].append(loss_fn(net(XV), YV).item())
        flor.log("n_train", len(history["train"]))  # hindsight
        flor.log("n_val", len(history["val"]))  # hindsight
""",
        {"epoch": ["n_train", "n_val"], "epoch, step": ["n_alias"]},
        partial=("SELECT seed, epoch, step, n_alias, n_train FROM logs WHERE epoch >= 2",),
    ),
    Case(
        "min_registered_dict_whose_list_a_name_appends_to",
        """
history = {"train": []}
train_log = history["train"]
with flor.checkpointing(model=net, optimizer=opt, history=history):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            train_log.append(loss.item())
            flor.log("loss", loss.item())
            flor.log("n_hist", len(history["train"]))  # hindsight
""",
        {"epoch, step": ["n_hist"]},
    ),
    Case(
        "min_set_attribute_on_an_unregistered_loss_module",
        """
class TrackedLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def forward(self, out, y):
        self.seen.add(int(y.sum()))
        return nn.functional.cross_entropy(out, y)


crit = TrackedLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = crit(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("n_sums", len(crit.seen))  # hindsight
""",
        {"epoch": ["n_sums"]},
    ),
    Case(
        "min_deque_in_a_dict_appended_through_a_name",
        """
from collections import deque

windows = {"loss": deque(maxlen=3), "gnorm": deque(maxlen=3)}
loss_window = windows["loss"]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_window.append(loss.item())
            flor.log("loss", loss.item())
        flor.log("win_loss", sum(windows["loss"]) / max(1, len(windows["loss"])))  # hindsight
        flor.log("win_len", len(loss_window))  # hindsight
""",
        {"epoch": ["win_loss", "win_len"]},
        fresh=True,
    ),
    Case(
        "forward_counts_into_a_class_attribute_and_a_global",
        """
n_rows = 0


class Net(nn.Module):
    forwards = 0

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x):
        global n_rows
        Net.forwards += 1
        n_rows += len(x)
        return self.body(x)


net = Net()
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("forwards", Net.forwards)  # hindsight
        flor.log("n_rows", n_rows)  # hindsight
""",
        {"epoch": ["forwards", "n_rows"]},
        fresh=True,
    ),
    Case(
        "min_global_counted_in_a_modules_forward",
        """
n_rows = 0


class Net(nn.Sequential):
    def forward(self, x):
        global n_rows
        n_rows += len(x)
        return super().forward(x)


net = Net(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("n_rows", n_rows)  # hindsight
""",
        {"epoch": ["n_rows"]},
    ),
    Case(
        "train_step_bound_to_its_state_with_functools_partial",
        """
import functools


def train_step(state, x, y):
    loss = loss_fn(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    state["steps"] += 1
    state["seen"] += len(y)
    return loss.item()


state = {"steps": 0, "seen": 0}
step = functools.partial(train_step, state)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = step(X[idx], Y[idx])
            flor.log("loss", loss)
        flor.log("steps", state["steps"])  # hindsight
        flor.log("seen", state["seen"])  # hindsight
""",
        {"epoch": ["steps", "seen"]},
        fresh=True,
    ),
    Case(
        "callbacks_list_of_bound_methods_called_per_step",
        """
class Meter:
    def __init__(self):
        self.n, self.total = 0, 0.0

    def update(self, v):
        self.n += 1
        self.total += v


meter = Meter()
callbacks = [meter.update]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            for cb in callbacks:
                cb(loss.item())
            flor.log("loss", loss.item())
        flor.log("meter_n", meter.n)  # hindsight
        flor.log("meter_total", meter.total)  # hindsight
""",
        {"epoch": ["meter_n", "meter_total"]},
        fresh=True,
    ),
    Case(
        "min_dataset_counting_in_getitem_behind_a_dataloader",
        """
from torch.utils.data import DataLoader, Dataset


class Counted(Dataset):
    def __init__(self):
        self.reads = 0

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        self.reads += 1
        return X[i], Y[i]


ds = Counted()
loader = DataLoader(ds, batch_size=12)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for xb, yb in flor.loop("step", loader):
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("reads", ds.reads)  # hindsight
""",
        {"epoch": ["reads"]},
        fresh=True,
    ),
    Case(
        "min_numpy_array_changed_in_place_while_a_dict_holds_it",
        """
import numpy as np

acc = np.zeros(1)
box = {"acc": acc}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            acc[0] += 1
            flor.log("loss", loss.item())
        flor.log("boxed", float(box["acc"][0]))  # hindsight
""",
        {"epoch": ["boxed"]},
        fresh=True,
    ),
    Case(
        "min_tensor_in_a_list_changed_in_place_while_a_name_holds_it",
        """
kept = [torch.zeros(())]
ema = kept[0]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            kept[0].add_(loss.detach())
            flor.log("loss", loss.item())
        flor.log("ema", float(ema))  # hindsight
""",
        {"epoch": ["ema"]},
        fresh=True,
    ),
    Case(
        "min_plain_attribute_on_the_registered_optimizer",
        """
opt.steps_taken = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            opt.steps_taken += 1
            flor.log("loss", loss.item())
        flor.log("steps_taken", opt.steps_taken)  # hindsight
""",
        {"epoch": ["steps_taken"]},
        fresh=True,
    ),
    Case(
        "min_torch_generator_registered",
        """
g = torch.Generator().manual_seed(seed)
with flor.checkpointing(model=net, optimizer=opt, g=g):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X), generator=g).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("g_sum", int(g.get_state().long().sum()))  # hindsight
""",
        {"epoch": ["g_sum"]},
    ),
    Case(
        "min_numpy_generator_registered",
        """
import numpy as np

rng = np.random.default_rng(seed)
with flor.checkpointing(model=net, optimizer=opt, rng=rng):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            x = X[idx] * float(rng.uniform(0.9, 1.1))
            loss = loss_fn(net(x), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("rng_pos", int(rng.bit_generator.state["state"]["state"] % 100003))  # hindsight
""",
        {"epoch": ["rng_pos"]},
    ),
    Case(
        "min_python_random_instance_registered",
        """
import random

rnd = random.Random(seed)
with flor.checkpointing(model=net, optimizer=opt, rnd=rnd):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            x = -X[idx] if rnd.random() < 0.5 else X[idx]
            loss = loss_fn(net(x), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("x_sum", float(x.sum()))  # hindsight
        flor.log("rnd_state", rnd.getstate()[1][7])  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["rnd_state", "w_sum"], "epoch, step": ["x_sum"]},
        partial=("SELECT seed, epoch, step, x_sum FROM logs WHERE epoch = 3",),
        fresh=True,
    ),
    Case(
        "min_deque_registered",
        """
from collections import deque

recent = deque(maxlen=3)
with flor.checkpointing(model=net, optimizer=opt, recent=recent):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            recent.append(loss.item())
            flor.log("loss", loss.item())
        flor.log("recent_mean", sum(recent) / len(recent))  # hindsight
""",
        {"epoch": ["recent_mean"]},
    ),
]

#: known replay bugs these patterns show (each a strict xfail until fixed)
#: known replay bugs these patterns show (each a strict xfail until fixed). The 22 patterns the
#: sweep found failing (9 kinds: a DataLoader's dataset and sampler state, numpy arrays and
#: deques and tensors in lists under aliases, optimizer attributes, registered generators,
#: deques, Random and dicts, non-plain module attributes, a module's forward changing globals)
#: replay exactly since REPLAY_RULES 6
BUGS: dict[str, str] = {}
for _p in PATTERNS:
    _p.bug = BUGS.get(_p.name)
assert not set(BUGS) - {p.name for p in PATTERNS}

#: the default run (``make test``); every other pattern runs with ``make test-slow``
DEFAULT = (
    "min_tensor_in_a_list_changed_in_place_while_a_name_holds_it",
    "min_torch_generator_registered",
)
CASES = corpus_params(PATTERNS, DEFAULT)
FRESH = corpus_params(
    [p for p in PATTERNS if p.fresh], [p.name for p in PATTERNS if p.fresh and p.name in DEFAULT]
)


def test_s24_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


@pytest.mark.parametrize("pattern", CASES)
def test_s24_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_partial_then_wider(pattern, stranger, tmp_path)


@pytest.mark.parametrize("pattern", FRESH)
def test_s24_fresh_store_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_fresh(pattern, stranger, tmp_path)
