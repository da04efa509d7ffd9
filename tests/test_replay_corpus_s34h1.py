"""Stranger sweep s34 (h1): training scripts laid out as model code bases lay them out, replayed
and compared with a full re-run of the hand-patched old version (the harness and oracle of
tests/test_replay_corpus_stranger.py).

Exact already: a ``DataLoader`` whose two worker processes restart each epoch, seeded by a
``worker_init_fn`` from the loader's own generator; ``flor.loop("step", enumerate(loader))``
over a ``DistributedSampler`` with ``set_epoch`` from ``range(start_epoch, ...)``; gradient
accumulation under a DDP-like wrapper's ``no_sync()`` with the clipped norm logged; an
``IterableDataset`` sharded over two workers with a shuffle buffer; early stopping on a
``ReduceLROnPlateau`` with a deep-copied best state loaded after the loop; statements at every
grain in an ``engine.py`` and the main script; k-fold cross validation with a fresh model per
fold; pretraining and fine-tuning loops in functions with run-level statements in ``main``
between and after them (the whole run, from the top); a registered
``CosineAnnealingWarmRestarts`` stepped fractionally per step under a bf16 ``torch.autocast``
with a registered EMA ``AveragedModel``; a persistent validation loader iterated after the
step loop (no task starts at a checkpoint since the fix below: its base seed is drawn once per
run); the best epoch saved to a file per seed and reloaded after the loop, and to one file the
next run overwrites (exact through verification, which sees the old statement after the load
disagree and replays from the top, with a DataChangedWarning).

Silently wrong or failing, now fixed:

- a ``DataLoader`` with ``persistent_workers=True``: its workers keep their RNGs (a dataset's
  random augmentation, a ``worker_init_fn``'s numpy seed) from epoch to epoch, and a task
  starting at a checkpoint started new ones seeded elsewhere: per-step values silently wrong
  where no old statement depended on them (else fixed up by verification under a misleading
  "skipped an inner loop" warning). Now a capture miss, and read from the script for runs
  recorded before;
- statements after the epoch loop in ``main()`` with the step loop in a ``train_one_epoch``
  defined above it: the planner took the step loop for the outer one, planned no task, and the
  values stayed NULL ("still missing after replay");
- a statement reading ``nonlocal global_step`` in a ``train_one_epoch`` nested in ``main``:
  propagation looked the name up among the module's and refused it, failing the query;
- a config file tracked in the repository, changed between versions, read by an absolute
  path into the checkout (``--config $PWD/configs/base.json``): every replay read today's file
  (an old version's batch size and learning rate, silently; a shape mismatch where the width
  changed);
- a script that asks git for its commit (``git rev-parse HEAD``, ``git log -1``) to log it:
  the task's git found the user's repository around the worktree and answered today's HEAD for
  every old run, silently.

``BUGS`` names each failing pattern's bug (a strict xfail until fixed)."""

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

NOISY = """
import numpy as np
from torch.utils.data import DataLoader, Dataset, RandomSampler


class Noisy(Dataset):
    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        noise = torch.from_numpy(np.random.normal(0, 0.1, 6).astype("float32"))
        return X[i] + noise + 0.01 * torch.randn(6), Y[i]


def seed_worker(worker_id):
    np.random.seed(torch.initial_seed() % 2**32)

"""

PATTERNS = [
    Case(
        "persistent_loader_workers_draw_augmentation_noise",
        NOISY
        + """
g = torch.Generator().manual_seed(seed)
loader = DataLoader(
    Noisy(),
    batch_size=12,
    sampler=RandomSampler(range(len(X)), generator=g),
    num_workers=2,
    persistent_workers=True,
    worker_init_fn=seed_worker,
)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for x, y in flor.loop("step", loader):
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("x_sum", float(x.sum()))  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"], "epoch, step": ["x_sum"]},
        partial=("SELECT seed, epoch, step, x_sum FROM logs WHERE epoch = 2 AND step >= 2",),
    ),
    Case(
        "persistent_loader_workers_old_code_logs_nothing_the_noise_changes",
        NOISY
        + """
loader = DataLoader(
    Noisy(), batch_size=12, shuffle=True, num_workers=2, persistent_workers=True,
    worker_init_fn=seed_worker,
)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for x, y in flor.loop("step", loader):
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("bs", len(y))
            flor.log("x_sum", float(x.sum()))  # hindsight
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"], "epoch, step": ["x_sum"]},
        old_query="SELECT seed, epoch, step, bs FROM logs",
        partial=("SELECT seed, epoch, step, x_sum FROM logs WHERE epoch = 2 AND step >= 2",),
    ),
    Case(
        "loader_workers_restarted_each_epoch_seeded_from_the_loaders_generator",
        NOISY
        + """
loader = DataLoader(
    Noisy(),
    batch_size=12,
    shuffle=True,
    num_workers=2,
    worker_init_fn=seed_worker,
    generator=torch.Generator().manual_seed(seed + 100),
)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for x, y in flor.loop("step", loader):
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("x_sum", float(x.sum()))  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"], "epoch, step": ["x_sum"]},
        partial=("SELECT seed, epoch, step, x_sum FROM logs WHERE epoch = 2 AND step >= 2",),
    ),
    Case(
        "step_loop_over_enumerate_of_a_loader_from_a_start_epoch",
        """
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

start_epoch = flor.arg("start_epoch", 1)
ds = TensorDataset(X, Y)
sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=seed)
loader = DataLoader(ds, batch_size=12, sampler=sampler)
gstep = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(start_epoch, epochs + 1)):
        sampler.set_epoch(epoch)
        for i, (x, y) in flor.loop("step", enumerate(loader)):
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            gstep += 1
            flor.log("loss", loss.item())
            flor.log("i_gstep", i * 1000 + gstep)  # hindsight
            flor.log("y0", int(y[0]))  # hindsight
        flor.log("last_i", i)  # hindsight
        flor.log("gstep", gstep)  # hindsight
""",
        {"epoch": ["last_i", "gstep"], "epoch, step": ["i_gstep", "y0"]},
        partial=("SELECT seed, epoch, step, y0 FROM logs WHERE epoch = 3 AND step >= 2",),
        fresh=True,
    ),
    Case(
        "main_with_argparse_defaults_from_flor_arg_and_train_one_epoch_in_the_script",
        """
import argparse


def train_one_epoch(model, optimizer, epoch, clip):
    model.train()
    total, n = 0.0, 0
    for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
        loss = loss_fn(model(X[idx]), Y[idx])
        optimizer.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        total += loss.item() * len(idx)
        n += len(idx)
        flor.log("loss", loss.item())
        flor.log("grad_norm", float(norm))  # hindsight
    flor.log("train_n", n)  # hindsight
    return total / n


@torch.no_grad()
def evaluate(model):
    model.eval()
    return loss_fn(model(XV), YV).item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=flor.arg("lr", 0.2))
    parser.add_argument("--clip", type=float, default=flor.arg("clip", 0.5))
    args, _ = parser.parse_known_args()
    for g in opt.param_groups:
        g["lr"] = args.lr
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    best = float("inf")
    with flor.checkpointing(model=net, optimizer=opt, plateau=plateau):
        for epoch in flor.loop("epoch", range(epochs)):
            train_loss = train_one_epoch(net, opt, epoch, args.clip)
            val = evaluate(net)
            plateau.step(val)
            best = min(best, val)
            flor.log("val", val)
            flor.log("train_loss", train_loss)  # hindsight
            flor.log("cur_lr", opt.param_groups[0]["lr"])  # hindsight
            flor.log("bad_epochs", plateau.num_bad_epochs)  # hindsight
    flor.log("best", best)  # hindsight
    flor.log("final_lr", opt.param_groups[0]["lr"])  # hindsight


if __name__ == "__main__":
    main()
""",
        {
            "epoch": ["train_n", "train_loss", "cur_lr", "bad_epochs"],
            "epoch, step": ["grad_norm"],
            "": ["best", "final_lr"],
        },
        old_query="SELECT seed, epoch, val FROM logs",
        partial=("SELECT seed, epoch, step, grad_norm FROM logs WHERE epoch = 2 AND step >= 2",),
        fresh=True,
    ),
    Case(
        "gradient_accumulation_under_a_no_sync_context_of_a_wrapper",
        """
import contextlib


class Replicated(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module
        self.require_sync = True
        self.syncs = 0

    @contextlib.contextmanager
    def no_sync(self):
        old = self.require_sync
        self.require_sync = False
        try:
            yield
        finally:
            self.require_sync = old

    def forward(self, x):
        if self.require_sync:
            self.syncs += 1
        return self.module(x)


model = Replicated(net)
accum = 2
with flor.checkpointing(model=model, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(8))):
            last = (i + 1) % accum == 0
            ctx = contextlib.nullcontext() if last else model.no_sync()
            with ctx:
                loss = loss_fn(model(X[idx]), Y[idx]) / accum
                loss.backward()
            flor.log("loss", loss.item())
            flor.log("synced", int(model.require_sync))  # hindsight
            if last:
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad()
                flor.log("clip_norm", float(norm))  # hindsight
        flor.log("syncs", model.syncs)  # hindsight
""",
        {"epoch": ["syncs"], "epoch, step": ["synced", "clip_norm"]},
        period=2,
    ),
    Case(
        "train_one_epoch_nested_in_main_counts_a_nonlocal_global_step",
        """
def main():
    global_step = 0
    seen = []

    def train_one_epoch(epoch):
        nonlocal global_step
        total = 0.0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            global_step += 1
            seen.append(len(idx))
            total += loss.item()
            flor.log("loss", loss.item())
            flor.log("gstep_step", global_step)  # hindsight
        return total

    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            total = train_one_epoch(epoch)
            flor.log("total", total)  # hindsight
            flor.log("gstep", global_step)  # hindsight
    flor.log("final_gstep", global_step)  # hindsight
    flor.log("n_seen", sum(seen))  # hindsight
    return {"w": float(net[0].weight.sum()), "steps": global_step}


if __name__ == "__main__":
    results = main()
    flor.log("result_w", results["w"])  # hindsight
    flor.log("result_steps", results["steps"])  # hindsight
""",
        {
            "epoch": ["total", "gstep"],
            "epoch, step": ["gstep_step"],
            "": ["final_gstep", "n_seen", "result_w", "result_steps"],
        },
        period=2,
        fresh=True,
    ),
    Case(
        "iterable_dataset_sharded_across_two_workers_with_a_shuffle_buffer",
        """
import math
import random

from torch.utils.data import DataLoader, IterableDataset, get_worker_info


class Stream(IterableDataset):
    def __init__(self, n, seed):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        per = math.ceil(self.n / nw)
        rng = random.Random(self.seed * 1000 + self.epoch * 10 + wid)
        buf = []
        for i in range(wid * per, min(self.n, (wid + 1) * per)):
            buf.append(i)
            if len(buf) == 6:
                yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf


ds = Stream(len(X), seed)
loader = DataLoader(ds, batch_size=8, num_workers=2)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        ds.set_epoch(epoch)
        for idx in flor.loop("step", loader):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("idx_sum", int(idx.sum()))  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"], "epoch, step": ["idx_sum"]},
        period=2,
    ),
    Case(
        "persistent_loaders_made_by_a_factory_function",
        NOISY
        + """

def make_loaders(batch_size):
    train = DataLoader(
        Noisy(), batch_size=batch_size, shuffle=True, num_workers=2,
        persistent_workers=True, worker_init_fn=seed_worker,
    )
    return train, [(XV, YV)]


train_loader, val_loader = make_loaders(12)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for x, y in flor.loop("step", train_loader):
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("bs", len(y))
            flor.log("x_sum", float(x.sum()))  # hindsight
        with torch.no_grad():
            val = sum(loss_fn(net(xv), yv).item() for xv, yv in val_loader)
        flor.log("val_loss", val)  # hindsight
""",
        {"epoch": ["val_loss"], "epoch, step": ["x_sum"]},
        old_query="SELECT seed, epoch, step, bs FROM logs",
        partial=("SELECT seed, epoch, step, x_sum FROM logs WHERE epoch = 2 AND step >= 2",),
    ),
    Case(
        "early_stopping_on_plateau_best_state_loaded_after_the_loop",
        """
import copy

YV = 1 - YV  # validation loss rises after a while: patience runs out
plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
best_val, best_state, best_epoch, bad = float("inf"), None, -1, 0
with flor.checkpointing(model=net, optimizer=opt, plateau=plateau):
    for epoch in flor.loop("epoch", range(epochs + 3)):
        net.train()
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        net.eval()
        with torch.no_grad():
            val = loss_fn(net(XV), YV).item()
        plateau.step(val)
        flor.log("val", val)
        if val < best_val:
            best_val, best_epoch, bad = val, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            bad += 1
        flor.log("lr_now", opt.param_groups[0]["lr"])  # hindsight
        flor.log("best_epoch", best_epoch)  # hindsight
        if bad >= 2:
            break
net.load_state_dict(best_state)
with torch.no_grad():
    test_loss = loss_fn(net(X), Y).item()
flor.log("test_loss", test_loss)  # hindsight
flor.log("stopped", epoch)  # hindsight
""",
        {"epoch": ["lr_now", "best_epoch"], "": ["test_loss", "stopped"]},
        old_query="SELECT seed, epoch, val FROM logs",
        first=1,
        seeds=(0, 2),
    ),
    Case(
        "statements_at_every_grain_in_an_engine_module_and_the_main_script",
        """
from engine import evaluate, train_one_epoch


def main():
    history = []
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            total = train_one_epoch(net, opt, loss_fn, X, Y, 1.0)
            history.append(total)
            flor.log("val", evaluate(net, XV, YV))
            flor.log("hist_len", len(history))  # hindsight
    flor.log("hist_sum", sum(history))  # hindsight


if __name__ == "__main__":
    main()
""",
        {"epoch": ["ep_total", "hist_len", "evals"], "epoch, step": ["gn"], "": ["hist_sum"]},
        extra={
            "engine.py": """
import florsql as flor
import torch

EVALS = [0]


def train_one_epoch(net, opt, loss_fn, X, Y, clip):
    net.train()
    total = 0.0
    for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
        loss = loss_fn(net(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        total += loss.item()
        flor.log("loss", loss.item())
        flor.log("gn", float(gn))  # hindsight
    flor.log("ep_total", total)  # hindsight
    return total


@torch.no_grad()
def evaluate(net, X, Y):
    net.eval()
    EVALS[0] += 1
    flor.log("evals", EVALS[0])  # hindsight
    return float((net(X).argmax(1) == Y).float().mean())
"""
        },
        old_query="SELECT seed, epoch, val FROM logs",
        partial=("SELECT seed, epoch, step, gn FROM logs WHERE epoch = 2 AND step >= 2",),
        fresh=True,
    ),
    Case(
        "k_fold_cross_validation_a_fresh_model_per_fold",
        """
def make_model():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


folds = torch.arange(len(X)).chunk(3)
scores = []
for fold in flor.loop("fold", range(3)):
    val_idx = folds[fold]
    tr_idx = torch.cat([f for k, f in enumerate(folds) if k != fold])
    net = make_model()
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            perm = tr_idx[torch.randperm(len(tr_idx))]
            for idx in flor.loop("step", perm.split(8)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
            flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
    with torch.no_grad():
        acc = float((net(X[val_idx]).argmax(1) == Y[val_idx]).float().mean())
    scores.append(acc)
    flor.log("fold_acc", acc)  # hindsight
    flor.log("n_scores", len(scores))  # hindsight
flor.log("cv_mean", sum(scores) / len(scores))  # hindsight
""",
        {
            "fold": ["fold_acc", "n_scores"],
            "fold, epoch": ["w_sum"],
            "": ["cv_mean"],
        },
        old_query="SELECT seed, fold, epoch, step, loss FROM logs",
        partial=(
            "SELECT seed, fold, epoch, w_sum FROM logs WHERE fold = 1 AND epoch >= 2",
            "SELECT seed, fold, fold_acc FROM logs WHERE fold >= 1",
        ),
        first=1,
    ),
    Case(
        "best_epoch_file_saved_on_disk_reloaded_after_the_loop",
        """
import os

os.makedirs("ckpt", exist_ok=True)
best_val, best_epoch = float("inf"), -1
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            val = loss_fn(net(XV), YV).item()
        if val < best_val:
            best_val, best_epoch = val, epoch
            torch.save(net.state_dict(), f"ckpt/seed{seed}_best.pt")
        flor.log("best_epoch", best_epoch)  # hindsight
net.load_state_dict(torch.load(f"ckpt/seed{seed}_best.pt"))
with torch.no_grad():
    flor.log("test_loss", loss_fn(net(XV), YV).item())
    flor.log("best_w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["best_epoch"], "": ["best_w"]},
        extra={".gitignore": "ckpt/\n"},
        seeds=(0, 1),
        period=2,
    ),
    Case(
        "best_file_shared_by_the_seeds_overwritten_by_the_next_run",
        """
YV = 1 - YV  # validation loss rises: the best stays epoch 0's, saved before the next run's
import os

os.makedirs("ckpt", exist_ok=True)
best_val = float("inf")
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            val = loss_fn(net(XV), YV).item()
        if val < best_val:
            best_val = val
            torch.save(net.state_dict(), "ckpt/best.pt")
net.load_state_dict(torch.load("ckpt/best.pt"))
with torch.no_grad():
    flor.log("test_loss", loss_fn(net(XV), YV).item())
    flor.log("best_w", float(net[0].weight.sum()))  # hindsight
""",
        {"": ["best_w"]},
        extra={".gitignore": "ckpt/\n"},
        seeds=(0, 1),
        period=2,
    ),
    Case(
        "persistent_validation_loader_iterated_after_the_step_loop",
        """
from torch.utils.data import DataLoader, TensorDataset

val_loader = DataLoader(
    TensorDataset(XV, YV), batch_size=8, num_workers=2, persistent_workers=True
)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        correct = 0
        with torch.no_grad():
            for xv, yv in val_loader:  # its first iteration draws a base seed, once
                correct += int((net(xv).argmax(1) == yv).sum())
        flor.log("val_acc", correct / len(XV))  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["val_acc", "w_sum"]},
        period=2,
        fresh=True,
    ),
    Case(
        "registered_warm_restarts_stepped_fractionally_bf16_autocast_and_an_ema_model",
        """
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2)
ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9))
with flor.checkpointing(model=net, optimizer=opt, sched=sched, ema=ema):
    for epoch in flor.loop("epoch", range(epochs)):
        batches = torch.randperm(len(X)).split(12)
        for i, idx in enumerate(flor.loop("step", batches)):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = net(X[idx])
            loss = loss_fn(out.float(), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step(epoch + i / len(batches))
            ema.update_parameters(net)
            flor.log("loss", loss.item())
            flor.log("lr_step", sched.get_last_lr()[0])  # hindsight
            flor.log("out_dtype", str(out.dtype))  # hindsight
        flor.log("ema_w", float(ema.module[0].weight.sum()))  # hindsight
        flor.log("n_avg", int(ema.n_averaged))  # hindsight
with torch.no_grad():
    val = loss_fn(ema(XV), YV).item()
flor.log("ema_val", val)  # hindsight
""",
        {"epoch": ["ema_w", "n_avg"], "epoch, step": ["lr_step", "out_dtype"], "": ["ema_val"]},
        period=2,
    ),
    Case(
        "pretrain_and_finetune_functions_then_run_level_statements_in_main",
        """
def pretrain(stats):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            stats["pre"] += 1
            flor.log("loss", loss.item())


def finetune(stats):
    for g in opt.param_groups:
        g["lr"] = 0.05
    for ft in flor.loop("ft_epoch", range(2)):
        for idx in flor.loop("ft_step", torch.randperm(len(XV)).split(4)):
            loss = loss_fn(net(XV[idx]), YV[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            stats["ft"] += 1
            flor.log("ft_loss", loss.item())


def main():
    stats = {"pre": 0, "ft": 0}
    with flor.checkpointing(model=net, optimizer=opt):
        pretrain(stats)
    flor.log("after_pre_w", float(net[0].weight.sum()))  # hindsight
    with flor.checkpointing(model=net, optimizer=opt):
        finetune(stats)
    flor.log("steps", stats["pre"] * 100 + stats["ft"])  # hindsight
    flor.log("final_w", float(net[0].weight.sum()))  # hindsight


if __name__ == "__main__":
    main()
""",
        {"": ["after_pre_w", "steps", "final_w"]},
        period=2,
        fresh=True,
    ),
]

#: known replay bugs these patterns show (each a strict xfail until fixed)
BUGS: dict[str, str] = {}
for _p in PATTERNS:
    _p.bug = BUGS.get(_p.name)
assert not set(BUGS) - {p.name for p in PATTERNS}

#: the default run (``make test``): the patterns that found a bug
DEFAULT = ("main_with_argparse_defaults_from_flor_arg_and_train_one_epoch_in_the_script",)
CASES = corpus_params(PATTERNS, DEFAULT)
FRESH = corpus_params([p for p in PATTERNS if p.fresh], ())


def test_s34h1_corpus_is_consistent() -> None:
    for p in PATTERNS:
        text = p.text + "".join(p.extra.values())
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(text)), p.name


@pytest.mark.parametrize("pattern", CASES)
def test_s34h1_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_partial_then_wider(pattern, stranger, tmp_path)


@pytest.mark.parametrize("pattern", FRESH)
def test_s34h1_fresh_store_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_fresh(pattern, stranger, tmp_path)


# --- a config file tracked in the repository, changed between versions ------------------------

CONFIG_SCRIPT = """
import json
import os

import torch
from torch import nn
import florsql as flor

torch.set_num_threads(1)
seed = flor.arg("seed", 0)
config = flor.arg("config", "configs/base.json")
with open(config) as f:
    cfg = json.load(f)
torch.manual_seed(seed)
X = torch.randn(48, 6)
Y = (X[:, :2].sum(dim=1) > 0).long()
net = nn.Sequential(nn.Linear(6, cfg["hidden"]), nn.ReLU(), nn.Linear(cfg["hidden"], 2))
opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(cfg["epochs"])):
        for idx in flor.loop("step", torch.randperm(len(X)).split(cfg["bs"])):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("bs", len(idx))  # hindsight
        flor.log("hidden", cfg["hidden"])  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
flor.log("cfg_lr", cfg["lr"])  # hindsight
"""

CONFIGS = [
    '{"hidden": 8, "lr": 0.2, "bs": 12, "epochs": 3}\n',
    '{"hidden": 6, "lr": 0.1, "bs": 16, "epochs": 3}\n',
    '{"hidden": 6, "lr": 0.05, "bs": 8, "epochs": 2}\n',
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "absolute",
    [pytest.param(False, id="relative"), pytest.param(True, id="absolute")],
)
def test_a_config_file_changed_between_versions_is_read_as_each_version_had_it(
    tmp_path: Path, absolute: bool
) -> None:
    """``configs/base.json``, tracked, changes in each of three versions (the script does
    not); each run reads it at start, by a relative path or by an absolute one into the
    checkout (``--config $PWD/configs/base.json``, as a launcher writes it). Each run's
    hindsight values are its own version's: a re-run of that version, hand-patched."""
    from tests.helpers import git, make_repo, write
    from tests.helpers_replay import Job, Recorder, old_source, patched_source
    from tests.test_stranger_s25 import compare

    history = make_repo(tmp_path / "history")
    oracle = make_repo(tmp_path / "oracle")
    recorder = Recorder(tmp_path / "runlogs")
    try:
        for i, config in enumerate(CONFIGS):
            for repo, conv in ((history, old_source), (oracle, patched_source)):
                write(repo / "train.py", conv(CONFIG_SCRIPT))
                write(repo / "configs" / "base.json", config)
                git(repo, "add", "-A")
                git(repo, "commit", "-q", "-m", f"version {i}")

            def argv(repo: Path, seed: int) -> tuple[str, ...]:
                path = str(repo / "configs" / "base.json") if absolute else "configs/base.json"
                return ("--seed", str(seed), "--config", path)

            recorder.run(
                [
                    [Job(history, "train.py", argv(history, s), {}) for s in (0, 1)],
                    [Job(oracle, "train.py", argv(oracle, s), {}) for s in (0, 1)],
                ]
            )
    finally:
        recorder.close()
    write(history / "train.py", patched_source(CONFIG_SCRIPT))
    compare(
        history,
        oracle,
        [
            "SELECT seed, epoch, step, bs FROM logs WHERE epoch = 1",
            "SELECT seed, epoch, hidden, w_sum FROM logs WHERE epoch >= 1",
            "SELECT seed, epoch, step, loss, bs FROM logs",
            "SELECT seed, epoch, hidden, w_sum FROM logs",
            "SELECT seed, cfg_lr FROM logs WHERE cfg_lr IS NOT NULL",
        ],
    )


GIT_SHA_SCRIPT = """
import subprocess

import florsql as flor

sha = subprocess.check_output(["git", "rev-parse", "HEAD"], text=True).strip()
subject = subprocess.check_output(["git", "log", "-1", "--format=%s"], text=True).strip()
total = 0
for epoch in flor.loop("epoch", range(3)):
    total += epoch
    flor.log("total", total)
    flor.log("sha", sha[:12])  # hindsight
    flor.log("subject", subject)  # hindsight
"""


def test_git_in_a_replay_answers_the_commit_the_run_had(tmp_path: Path) -> None:
    """A script that asks git for its commit (to log it, as many do): today's statement logs
    it for runs of two older commits. Each run's replay gets its own commit (run.json's
    ``head``), not the checkout's HEAD of today (before: today's, for every run, silently);
    the user's repository gets no registered worktree and its status stays clean."""
    import florsql
    from tests.helpers import git, make_repo, write
    from tests.helpers_replay import Job, Recorder, fetch, old_source, patched_source

    repo = make_repo(tmp_path / "repo", {"train.py": old_source(GIT_SHA_SCRIPT)})
    recorder = Recorder(tmp_path / "runlogs")
    heads = []
    try:
        for i in range(2):
            if i:
                write(repo / "train.py", old_source(GIT_SHA_SCRIPT).replace("range(3)", "range(2)"))
                git(repo, "commit", "-qam", f"version {i}")
            heads.append(git(repo, "rev-parse", "HEAD").strip())
            recorder.run([[Job(repo, "train.py", (), {})]])
    finally:
        recorder.close()
    write(repo / "train.py", patched_source(GIT_SHA_SCRIPT))
    git(repo, "commit", "-qam", "today")
    today = git(repo, "rev-parse", "HEAD").strip()
    with florsql.connect(repo, replay="auto") as con:
        rows, notes = fetch(con, "SELECT tstamp, epoch, sha, subject FROM logs ORDER BY tstamp")
    by_run: dict[object, set[tuple[str, str]]] = {}
    for tstamp, _, sha, subject in rows:
        by_run.setdefault(tstamp, set()).add((sha, subject))
    got = [by_run[t] for t in sorted(by_run)]
    assert got == [{(heads[0][:12], "initial")}, {(heads[1][:12], "version 1")}], (got, notes)
    assert today[:12] not in str(rows)
    assert git(repo, "worktree", "list").count("\n") <= 1
    assert git(repo, "status", "--porcelain", "--untracked-files=no").strip() == ""
