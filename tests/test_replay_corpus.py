"""A corpus of training-loop patterns, each replayed and compared with a full re-run.

For each pattern: the old version of a small seeded torch script is committed and recorded
(checkpoints every ``period`` epochs), then today's version adds ``flor.log`` statements (the
``# hindsight`` lines) in the working tree. Queries over the history replay them through the
DB-API (``replay="auto"``); the oracle is a full re-run of the hand-patched old version in its own
repository. Answers must be equal, floats bit for bit: first partial queries (``epoch >= 2``, so
replay starts from a checkpoint), then the wider ones that replay the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers_replay import (
    KeptWorkers,
    Mismatches,
    Recorded,
    Recorder,
    copy_recorded,
    corpus_params,
    hindsight_names,
    record_pair,
    shared_dir,
)

PREAMBLE = """
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
net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
"""


@dataclass
class Pattern:
    name: str
    body: str  # appended to PREAMBLE; ``# hindsight`` lines are today's additions
    #: hindsight names per row grain: "epoch", "epoch, step" (or another inner loop), "" (run)
    levels: dict[str, list[str]]
    seeds: tuple[int, ...] = (0,)
    period: int = 1
    old_query: str = "SELECT seed, epoch, step, loss FROM logs"
    first: int = 2  # the partial queries ask for epoch >= first
    bug: str | None = None  # a known replay bug this pattern shows (strict xfail until fixed)

    @property
    def text(self) -> str:
        return PREAMBLE + self.body


PATTERNS = [
    Pattern(
        "accumulators_after_loop",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        running, seen = 0.0, 0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            x, y = X[idx], Y[idx]
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item() * len(y)
            seen += len(y)
            flor.log("loss", loss.item())
            flor.log("seen_so_far", seen)  # hindsight
        flor.log("epoch_loss", running / seen)  # hindsight
        flor.log("seen", seen)  # hindsight
""",
        {"epoch": ["epoch_loss", "seen"], "epoch, step": ["seen_so_far"]},
        seeds=(0, 1),
    ),
    Pattern(
        "loop_variable_after_loop",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("logit_mean", float(out.mean()))  # hindsight
        flor.log("last_loss", loss.item())  # hindsight
        flor.log("last_first_idx", int(idx[0]))  # hindsight
""",
        {"epoch": ["last_loss", "last_first_idx"], "epoch, step": ["logit_mean"]},
    ),
    Pattern(
        "global_step_across_epochs",
        """
global_step = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            global_step += 1
            flor.log("loss", loss.item())
            flor.log("gs", global_step)  # hindsight
        flor.log("global_step", global_step)  # hindsight
flor.log("total_steps", global_step)  # hindsight
""",
        {"epoch": ["global_step"], "epoch, step": ["gs"], "": ["total_steps"]},
        seeds=(0, 1),
        period=2,
    ),
    Pattern(
        "best_so_far_across_epochs",
        """
YV = 1 - YV  # flipped labels: validation loss rises, so the best stays early and patience grows
best, best_epoch, patience = float("inf"), -1, 0
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
        if val < best:
            best, best_epoch, patience = val, epoch, 0
        else:
            patience += 1
        flor.log("val", val)
        flor.log("best", best)  # hindsight
        flor.log("best_epoch", best_epoch)  # hindsight
        flor.log("patience", patience)  # hindsight
flor.log("final_best", best)  # hindsight
""",
        {"epoch": ["best", "best_epoch", "patience"], "": ["final_best"]},
        period=2,
    ),
    Pattern(
        "validation_second_inner_loop",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        correct, vloss = 0, 0.0
        with torch.no_grad():
            for vidx in flor.loop("vstep", torch.arange(len(XV)).split(8)):
                out = net(XV[vidx])
                vloss += loss_fn(out, YV[vidx]).item()
                correct += int((out.argmax(1) == YV[vidx]).sum())
                flor.log("vbatch_loss", loss_fn(out, YV[vidx]).item())  # hindsight
        flor.log("val_acc", correct / len(XV))  # hindsight
        flor.log("val_loss", vloss)  # hindsight
        flor.log("after_train_loss", loss.item())  # hindsight
""",
        {"epoch": ["val_acc", "val_loss", "after_train_loss"], "epoch, vstep": ["vbatch_loss"]},
    ),
    Pattern(
        "gradient_accumulation",
        """
k = 3
updates = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        opt.zero_grad()
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(6))):
            loss = loss_fn(net(X[idx]), Y[idx]) / k
            loss.backward()
            flor.log("loss", loss.item())
            if (i + 1) % k == 0:
                flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
                opt.step()
                opt.zero_grad()
                updates += 1
        flor.log("updates", updates)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["updates", "w_sum"], "epoch, step": ["gnorm"]},
    ),
    Pattern(
        "gradients_read_after_loop",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        opt.zero_grad()
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(6))):
            loss = loss_fn(net(X[idx]), Y[idx]) / 3
            loss.backward()
            flor.log("loss", loss.item())
            if (i + 1) % 3 == 0:
                opt.step()
                opt.zero_grad()
        # the gradient the last two batches left behind: not part of any state_dict
        flor.log("pending_grad", float(net[0].weight.grad.abs().sum()))  # hindsight
""",
        {"epoch": ["pending_grad"]},
    ),
    Pattern(
        "break_and_continue",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        used = 0
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(6))):
            if i % 3 == 1:
                continue
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            used += 1
            flor.log("loss", loss.item())
            flor.log("used_so_far", used)  # hindsight
            if i >= 3 + epoch:
                break
        flor.log("stopped_at", i)  # hindsight
        flor.log("used", used)  # hindsight
""",
        {"epoch": ["stopped_at", "used"], "epoch, step": ["used_so_far"]},
    ),
    Pattern(
        "helper_function_owns_inner_loop",
        """
def train_epoch(epoch):
    total, n = 0.0, 0
    for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
        loss = loss_fn(net(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
        n += 1
        flor.log("loss", loss.item())
        flor.log("sq_loss", loss.item() ** 2)  # hindsight
    return total / n


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        avg = train_epoch(epoch)
        flor.log("avg_loss", avg)  # hindsight
""",
        {"epoch": ["avg_loss"], "epoch, step": ["sq_loss"]},
    ),
    Pattern(
        "ema_of_weights",
        """
ema = [p.detach().clone() for p in net.parameters()]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for e, p in zip(ema, net.parameters()):
                    e.mul_(0.9).add_(p.detach(), alpha=0.1)
            flor.log("loss", loss.item())
            flor.log("ema_step", float(ema[0].sum()))  # hindsight
        flor.log("ema_norm", float(sum(e.norm() for e in ema)))  # hindsight
""",
        {"epoch": ["ema_norm"], "epoch, step": ["ema_step"]},
        period=2,
    ),
    Pattern(
        "reduce_lr_on_plateau",
        """
sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
with flor.checkpointing(model=net, optimizer=opt, scheduler=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        running = 0.0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            flor.log("loss", loss.item())
            flor.log("lr_in_step", opt.param_groups[0]["lr"])  # hindsight
        sched.step(running)
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
        flor.log("plateau_best", float(sched.best))  # hindsight
""",
        {"epoch": ["lr", "plateau_best"], "epoch, step": ["lr_in_step"]},
        seeds=(0, 1),
    ),
    Pattern(
        "dropout_in_evaluation",
        """
net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("zeros", int((out == 0).sum()))  # hindsight
        with torch.no_grad():
            noisy = net(XV)
            flor.log("noisy_acc", float((noisy.argmax(1) == YV).float().mean()))
        flor.log("noisy_sum", float(noisy.sum()))  # hindsight
""",
        {"epoch": ["noisy_sum"], "epoch, step": ["zeros"]},
    ),
    Pattern(
        "generator_loader_own_rng",
        """
g = torch.Generator().manual_seed(seed + 7)


def batches(bs):
    perm = torch.randperm(len(X), generator=g)
    for i in range(0, len(X), bs):
        idx = perm[i : i + bs]
        yield X[idx], Y[idx]


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for x, y in flor.loop("step", batches(12)):
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("y_sum", int(y.sum()))  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"], "epoch, step": ["y_sum"]},
        period=2,
    ),
    Pattern(
        "history_list_and_metrics_dict",
        """
history = []
metrics = {"seen": 0, "sum": 0.0}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            metrics["seen"] += len(idx)
            metrics["sum"] += loss.item() * len(idx)
            flor.log("loss", loss.item())
            flor.log("running_mean", metrics["sum"] / metrics["seen"])  # hindsight
        history.append(metrics["sum"] / metrics["seen"])
        flor.log("hist_len", len(history))  # hindsight
        flor.log("hist_min", min(history))  # hindsight
        flor.log("seen_total", metrics["seen"])  # hindsight
""",
        {"epoch": ["hist_len", "hist_min", "seen_total"], "epoch, step": ["running_mean"]},
        period=2,
    ),
    Pattern(
        "trainer_class_attributes",
        """
class Trainer:
    def __init__(self):
        self.global_step = 0
        self.best = float("inf")

    def fit_epoch(self):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.global_step += 1
            self.best = min(self.best, loss.item())
            flor.log("loss", loss.item())
            flor.log("trainer_step", self.global_step)  # hindsight


trainer = Trainer()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        trainer.fit_epoch()
        flor.log("trainer_steps", trainer.global_step)  # hindsight
        flor.log("trainer_best", trainer.best)  # hindsight
""",
        {"epoch": ["trainer_steps", "trainer_best"], "epoch, step": ["trainer_step"]},
        period=2,
    ),
    Pattern(
        "early_stopping_breaks_outer_loop",
        """
YV = 1 - YV  # flipped labels: validation loss rises, so patience runs out
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
            val = loss_fn(net(XV), YV).item()
        bad = 0 if val < best else bad + 1
        best = min(best, val)
        flor.log("bad_epochs", bad)  # hindsight
        if bad >= 3:
            break
flor.log("stopped_epoch", epoch)  # hindsight
flor.log("stop_best", best)  # hindsight
""",
        {"epoch": ["bad_epochs"], "": ["stopped_epoch", "stop_best"]},
    ),
    Pattern(
        "step_lr_after_inner_loop",
        """
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
with flor.checkpointing(model=net, optimizer=opt, scheduler=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("lr_step", opt.param_groups[0]["lr"])  # hindsight
        sched.step()
        flor.log("lr_after", sched.get_last_lr()[0])  # hindsight
        flor.log("w_norm", float(net[2].weight.norm()))  # hindsight
flor.log("final_w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["lr_after", "w_norm"], "epoch, step": ["lr_step"], "": ["final_w"]},
        period=2,
    ),
    Pattern(
        "set_of_seen_ids",
        """
seen_ids = set()  # set.add mutates: the step loop changes seen_ids
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen_ids.add(int(idx[0]) % 7)
            flor.log("loss", loss.item())
        flor.log("n_seen", len(seen_ids))  # hindsight
        flor.log("sum_seen", sum(seen_ids))  # hindsight
""",
        {"epoch": ["n_seen", "sum_seen"]},
    ),
    Pattern(
        "helper_and_hook_mutate_globals",
        """
stats = {"n": 0, "total": 0.0}
acts = {}


def track(v):
    stats["n"] += 1
    stats["total"] += v


def keep_hidden(module, inputs, output):  # a forward hook: runs inside net(...)
    acts["hidden"] = output.detach()


net[1].register_forward_hook(keep_hidden)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            track(loss.item())
            flor.log("loss", loss.item())
        flor.log("avg_so_far", stats["total"] / stats["n"])  # hindsight
        flor.log("n_tracked", stats["n"])  # hindsight
        flor.log("hidden_mean", float(acts["hidden"].mean()))  # hindsight
""",
        {"epoch": ["avg_so_far", "n_tracked", "hidden_mean"]},
        period=2,
    ),
    Pattern(
        "nonlocal_counter_closure",
        """
def main():
    count, total = 0, 0.0

    def bump(v):
        nonlocal count, total
        count += 1
        total += v

    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                bump(loss.item())
                flor.log("loss", loss.item())
            flor.log("count", count)  # hindsight
            flor.log("mean", total / count)  # hindsight


main()
""",
        {"epoch": ["count", "mean"]},
        period=2,
    ),
    Pattern(
        "exception_ends_inner_loop",
        """
class Diverged(Exception):
    pass


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        outcome = "ok"
        try:
            for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
                if epoch == 1 and i == 2:
                    raise Diverged(i)
        except Diverged as e:
            outcome = "diverged"
            flor.log("diverged_at", e.args[0])  # hindsight
        flor.log("outcome", outcome)  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["diverged_at", "outcome", "w"]},
    ),
    Pattern(
        "for_else_after_break",
        """
completed = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            if epoch % 2 == 1 and i == 1:
                break
        else:
            completed += 1
        flor.log("completed", completed)  # hindsight
""",
        {"epoch": ["completed"]},
    ),
    Pattern(
        "exception_leaves_outer_loop_caught",
        """
class Stop(Exception):
    pass


try:
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
                if epoch == 2 and i == 1:
                    raise Stop()
            flor.log("w", float(net[0].weight.sum()))  # hindsight
except Stop:
    pass
flor.log("final_w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "": ["final_w"]},
    ),
    Pattern(
        "meter_aliased_in_a_dict",
        """
class AverageMeter:
    def __init__(self):
        self.sum, self.count = 0.0, 0

    def update(self, v, n=1):
        self.sum += v * n
        self.count += n


train_meter = AverageMeter()
meters = {"loss": train_meter}  # the loop updates meters["loss"]; the log reads train_meter
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            meters["loss"].update(loss.item(), len(idx))
            flor.log("loss", loss.item())
        flor.log("meter_avg", train_meter.sum / train_meter.count)  # hindsight
        flor.log("meter_n", train_meter.count)  # hindsight
""",
        {"epoch": ["meter_avg", "meter_n"]},
        period=2,
    ),
    Pattern(
        "class_attribute_counters",
        """
class Stats:
    steps = 0
    seen = []


def bump():
    Stats.steps += 1


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            bump()
            Stats.seen.append(int(idx[0]))
            flor.log("loss", loss.item())
        flor.log("class_steps", Stats.steps)  # hindsight
        flor.log("class_seen", sum(Stats.seen))  # hindsight
""",
        {"epoch": ["class_steps", "class_seen"]},
        period=2,
    ),
    Pattern(
        "function_attribute_counters",
        """
def bump():
    bump.n += 1


bump.n = 0


def track(v):
    track.calls.append(v)


track.calls = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            bump()
            track(int(idx[0]))
            flor.log("loss", loss.item())
        flor.log("fn_n", bump.n)  # hindsight
        flor.log("fn_calls", sum(track.calls))  # hindsight
""",
        {"epoch": ["fn_n", "fn_calls"]},
        period=2,
    ),
    Pattern(
        "progress_wrapper_left_by_break",
        """
class Progress:  # what tqdm does: it holds the flor.loop it wraps, past a break
    def __init__(self, it):
        self.it, self.n = it, 0

    def __iter__(self):
        for x in self.it:
            self.n += 1
            yield x


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        pbar = Progress(flor.loop("step", torch.randperm(len(X)).split(12)))
        for i, idx in enumerate(pbar):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            if i == 2:
                break
        flor.log("pbar_n", pbar.n)  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["pbar_n", "w"]},
    ),
    Pattern(
        "progress_wrapper_then_validation_loop",
        """
class Progress:
    def __init__(self, it):
        self.it, self.n = it, 0

    def __iter__(self):
        for x in self.it:
            self.n += 1
            yield x


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        pbar = Progress(flor.loop("step", torch.randperm(len(X)).split(12)))
        for i, idx in enumerate(pbar):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            if i == 1 + epoch % 2:
                break
        with torch.no_grad():
            for vidx in flor.loop("vstep", torch.arange(len(XV)).split(8)):
                out = net(XV[vidx])
                flor.log("vloss", loss_fn(out, YV[vidx]).item())  # hindsight
        flor.log("pbar_n", pbar.n)  # hindsight
""",
        {"epoch, vstep": ["vloss"], "epoch": ["pbar_n"]},
    ),
    Pattern(
        "progress_wrapper_on_the_outer_loop_left_by_break",
        """
class Progress:
    def __init__(self, it):
        self.it, self.n = it, 0

    def __iter__(self):
        for x in self.it:
            self.n += 1
            yield x


with flor.checkpointing(model=net, optimizer=opt):
    pbar = Progress(flor.loop("epoch", range(epochs)))
    for epoch in pbar:
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("w", float(net[0].weight.sum()))  # hindsight
        if epoch == epochs - 2:
            break
flor.log("final_w", float(net[0].weight.sum()))  # hindsight
flor.log("epochs_seen", pbar.n)  # hindsight
""",
        {"epoch": ["w"], "": ["final_w", "epochs_seen"]},
    ),
    Pattern(
        "closure_dataclass_and_random_instance",
        """
import copy
import random
from dataclasses import dataclass


@dataclass
class Config:
    lr: float = 0.2
    seen: int = 0


cfg = Config()
rng = random.Random(seed)  # the statement reads a copy: it must not draw
hist = []
record = lambda v: hist.append(v)  # a lambda closing over a list: not a def
scale = __import__("functools").partial(pow, 2.0)  # a partial of a builtin: picklable
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            cfg.seen += len(idx)
            record(scale(-loss.item()) + rng.random())
            flor.log("loss", loss.item())
        cfg.lr *= 0.9
        for g in opt.param_groups:
            g["lr"] = cfg.lr
        flor.log("hist_sum", sum(hist))  # hindsight
        flor.log("hist_n", len(hist))  # hindsight
        flor.log("cfg_seen", cfg.seen)  # hindsight
        flor.log("rng_next", copy.deepcopy(rng).random())  # hindsight
""",
        {"epoch": ["hist_sum", "hist_n", "cfg_seen", "rng_next"]},
        period=2,
    ),
    Pattern(
        "warmup_from_global_counter_and_reseeded_dropout",
        """
import copy
import itertools

net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
noise = itertools.cycle([0.0, 0.01, -0.02])
gstep, warm = 0, 6
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        torch.manual_seed(100 + epoch)  # re-seeded per epoch: dropout masks
        for idx, eps in zip(flor.loop("step", torch.randperm(len(X)).split(12)), noise):
            lr = 0.2 * min(1.0, (gstep + 1) / warm)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = loss_fn(net(X[idx] + eps), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            gstep += 1
            flor.log("loss", loss.item())
            flor.log("lr_step", lr)  # hindsight
        flor.log("gstep", gstep)  # hindsight
        flor.log("next_eps", next(copy.deepcopy(noise)))  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["gstep", "next_eps", "w"], "epoch, step": ["lr_step"]},
        period=2,
    ),
    Pattern(
        "generator_pipeline_and_patience",
        """
def batches():
    perm_seed = 0
    while True:
        g = torch.Generator().manual_seed(perm_seed)
        for idx in torch.randperm(len(X), generator=g).split(12):
            yield idx
        perm_seed += 1


stream = batches()  # one generator across epochs: its position is state
YV = 1 - YV
best, bad, stopped = float("inf"), 0, -1
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs + 2)):
        for step in flor.loop("step", range(3)):
            idx = next(stream)
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            val = loss_fn(net(XV), YV).item()
        if val < best - 1e-4:
            best, bad = val, 0
        else:
            bad += 1
        flor.log("val", val)
        flor.log("bad", bad)  # hindsight
        flor.log("last_idx", int(idx[0]))  # hindsight
        if bad >= 2:
            stopped = epoch
            break
flor.log("stopped", stopped)  # hindsight
flor.log("best", best)  # hindsight
""",
        {"epoch": ["bad", "last_idx"], "": ["stopped", "best"]},
    ),
    Pattern(
        "lambda_hook_and_lambda_closure",
        """
acts, hist = {}, []
net[1].register_forward_hook(lambda m, i, o: acts.update(relu=float(o.mean())))
record = lambda v: hist.append(v)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            record(loss.item())
            flor.log("loss", loss.item())
        flor.log("relu_mean", acts["relu"])  # hindsight
        flor.log("hist_sum", sum(hist))  # hindsight
""",
        {"epoch": ["relu_mean", "hist_sum"]},
        period=2,
    ),
    Pattern(
        "deque_counter_slots_defaultdict_tensor",
        """
import itertools
from collections import defaultdict, deque


class Meter:
    __slots__ = ("total", "n")

    def __init__(self):
        self.total, self.n = 0.0, 0


meter = Meter()
meters = {"train": meter}  # the loop updates meters["train"]; the log reads meter
window = deque(maxlen=3)
ids = itertools.count()
counts = defaultdict(int)
acc = torch.zeros(())
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            m = meters["train"]
            m.total += loss.item()
            m.n += 1
            window.append(loss.item())
            counts[int(Y[idx].sum()) % 3] += 1
            acc += loss.detach()
            last_id = next(ids)
            flor.log("loss", loss.item())
        flor.log("meter_avg", meter.total / meter.n)  # hindsight
        flor.log("window", sum(window))  # hindsight
        flor.log("last_id", last_id)  # hindsight
        flor.log("counts", sorted(counts.items()))  # hindsight
        flor.log("acc", float(acc))  # hindsight
""",
        {"epoch": ["meter_avg", "window", "last_id", "counts", "acc"]},
        period=2,
    ),
]


#: the default run's patterns (``make test``): each one a bug was found and fixed with; the
#: others run in ``make test-all`` (CI runs both)
DEFAULT = (
    "set_of_seen_ids",
    "exception_ends_inner_loop",
    "progress_wrapper_then_validation_loop",
    "warmup_from_global_counter_and_reseeded_dropout",
    "deque_counter_slots_defaultdict_tensor",
)
CASES = corpus_params(PATTERNS, DEFAULT)
#: a fresh store (no partial query first): a few patterns by default
FRESH = corpus_params(
    PATTERNS,
    (
        "accumulators_after_loop",
        "generator_pipeline_and_patience",
    ),
)


def test_corpus_is_consistent() -> None:
    """Each pattern's query levels name exactly its hindsight statements."""
    for p in PATTERNS:
        declared = sorted(n for names in p.levels.values() for n in names)
        assert declared == sorted(hindsight_names(p.text)), p.name


def queries(p: Pattern) -> tuple[list[str], list[str]]:
    """Partial queries (``epoch >= first``) and wide ones, per row grain."""
    partial, wide = [], []
    for keys, names in p.levels.items():
        cols = ", ".join(["seed", *([keys] if keys else []), *names])
        wide.append(f"SELECT {cols} FROM logs")
        if keys:
            partial.append(f"SELECT {cols} FROM logs WHERE epoch >= {p.first}")
    return partial, wide


class Histories:
    """Each pattern's recorded pair, recorded once per session (shared by xdist workers)."""

    def __init__(self, factory: pytest.TempPathFactory, worker_id: str) -> None:
        self.factory = factory
        self.worker_id = worker_id
        self._recorder: Recorder | None = None
        self.workers = KeptWorkers(2)

    def get(self, p: Pattern, dest: Path) -> Recorded:
        """A private copy of ``p``'s history and oracle in ``dest``."""

        def build(path: Path) -> None:
            if self._recorder is None:
                self._recorder = Recorder(self.factory.mktemp("runlogs"))
            runs = [("--seed", str(s)) for s in p.seeds]
            record_pair(self._recorder, path, p.text, runs, period=p.period)

        path = shared_dir(self.factory, self.worker_id, f"corpus-{p.name}", build)
        return copy_recorded(Recorded(path / "history", path / "oracle"), dest)

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
        self.workers.shutdown()


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Histories]:
    h = Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", FRESH)
def test_fresh_store_replays_like_a_full_rerun(
    pattern: Pattern, histories: Histories, tmp_path: Path
) -> None:
    """Wide queries on a fresh store replay from the top (or checkpoints) what they need."""
    rec = histories.get(pattern, tmp_path)
    found = Mismatches()
    with found.session(rec, "fresh", histories.workers) as check:
        check(pattern.old_query)  # the hand-patched statements change nothing logged before
        for sql in queries(pattern)[1]:
            check(sql)
    found.assert_none()


@pytest.mark.parametrize("pattern", CASES)
def test_partial_then_wider_replays_like_a_full_rerun(
    pattern: Pattern, histories: Histories, tmp_path: Path
) -> None:
    """Partial queries first (replay starts from a checkpoint), then wider ones replay the
    rest."""
    rec = histories.get(pattern, tmp_path)
    found = Mismatches()
    with found.session(rec, "partial, then wider", histories.workers) as check:
        partial, wide = queries(pattern)
        for sql in partial + wide:
            check(sql)
    found.assert_none()
