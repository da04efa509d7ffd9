"""More training scripts as a stranger writes them, replayed and compared with a full re-run of
the hand-patched old version (same harness and oracle as tests/test_replay_corpus_stranger.py).

State hidden where the change sets or the saved state do not look: a counting decorator's
wrapper, a class-level mutable default, a mutable default argument, ``functools.partial`` and a
bound ``list.append``, an ``lru_cache``'s statistics, a tensor accumulated in place while a dict
holds it, a meter reached through an accessor function, a dataset caching in ``__getitem__``, a
``with`` counter inside the step loop, a property that counts its reads, a file or
``io.StringIO`` written per step, an unregistered object whose ``state_dict()`` leaves a field
out, ``net.state_dict()`` kept without a copy. The model or optimizer changed in an earlier
epoch than the one a task starts at: ``requires_grad_`` cleared, a hook registered,
``add_param_group``, pruning, a submodule swapped, a module or scheduler assigned over ``None``.
Loops consumed in other ways: a generator helper owning the step loop under ``list()``, a list
comprehension and a generator expression over the step loop, ``zip``/``islice`` caps, an
infinite generator left by ``break``, an outer ``flor.loop`` over ``dict.items()``, a numpy
array, an adaptive generator, or a list the body extends. Statements a user adds today: run-level
ones before the loops and after everything, under ``if epoch % 2``, in ``finally``, with a new
import, helper or ``with`` block, names made by f-strings, before the step loop reading the
previous epoch. The ``min_*`` patterns are the smallest forms of the failures; ``BUGS`` names
each failing pattern's bug (a strict xfail until fixed)."""

from __future__ import annotations

from dataclasses import replace
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
        "counting_decorator_wraps_the_train_step",
        """
import functools


def counted(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        wrapper.calls += 1
        return f(*args, **kwargs)

    wrapper.calls = 0
    return wrapper


@counted
def train_step(x, y):
    loss = loss_fn(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = train_step(X[idx], Y[idx])
            flor.log("loss", loss)
        flor.log("calls", train_step.calls)  # hindsight
""",
        {"epoch": ["calls"]},
        fresh=True,
    ),
    Case(
        "class_level_mutable_default_shared_by_instances",
        """
class Meter:
    history = []  # the classic slip: shared by every instance, grows across epochs

    def __init__(self):
        self.total, self.n = 0.0, 0

    def update(self, v):
        self.total += v
        self.n += 1
        self.history.append(v)


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        meter = Meter()
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            meter.update(loss.item())
            flor.log("loss", loss.item())
        flor.log("mean", meter.total / meter.n)  # hindsight
        flor.log("hist_len", len(meter.history))  # hindsight
        flor.log("hist_sum", sum(meter.history))  # hindsight
""",
        {"epoch": ["mean", "hist_len", "hist_sum"]},
    ),
    Case(
        "mutable_default_argument_keeps_a_history",
        """
def record(v, hist=[]):
    hist.append(v)
    return len(hist), sum(hist) / len(hist)


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            n, avg = record(loss.item())
            flor.log("loss", loss.item())
        flor.log("n", n)  # hindsight
        flor.log("avg", avg)  # hindsight
""",
        {"epoch": ["n", "avg"]},
        partial=("SELECT seed, epoch, n FROM logs WHERE epoch = 3",),
    ),
    Case(
        "partial_and_bound_append_over_global_lists",
        """
import functools


def append_to(store, v):
    store.append(v)


losses, norms = [], []
log_loss = functools.partial(append_to, losses)
push_norm = norms.append
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            push_norm(float(net[0].weight.grad.norm()))
            opt.step()
            log_loss(loss.item())
            flor.log("loss", loss.item())
        flor.log("n_losses", len(losses))  # hindsight
        flor.log("norm_sum", sum(norms))  # hindsight
flor.log("all_losses", sum(losses))  # hindsight
""",
        {"epoch": ["n_losses", "norm_sum"], "": ["all_losses"]},
    ),
    Case(
        "lru_cache_statistics_read_after_the_step_loop",
        """
import functools


@functools.lru_cache(maxsize=2)
def mask_for(bs):
    return torch.ones(bs)


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12 if epoch % 2 else 10)):
            w = mask_for(len(idx))
            loss = (nn.functional.cross_entropy(net(X[idx]), Y[idx], reduction="none") * w).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        info = mask_for.cache_info()  # hindsight
        flor.log("hits", info.hits)  # hindsight
        flor.log("misses", info.misses)  # hindsight
""",
        {"epoch": ["hits", "misses"]},
    ),
    Case(
        "tensor_accumulated_in_place_while_a_dict_holds_it",
        """
total = torch.zeros(())
count = torch.zeros(())
stats = {"total": total, "count": count}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach()
            count.add_(1)
            flor.log("loss", loss.item())
        flor.log("dict_total", float(stats["total"]))  # hindsight
        flor.log("dict_count", float(stats["count"]))  # hindsight
        flor.log("total", float(total))  # hindsight
""",
        {"epoch": ["dict_total", "dict_count", "total"]},
        fresh=True,
    ),
    Case(
        "first_layer_frozen_from_epoch_one",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            net[0].requires_grad_(False)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("w0", float(net[0].weight.sum()))  # hindsight
        flor.log("trainable", sum(p.requires_grad for p in net.parameters()))  # hindsight
""",
        {"epoch": ["trainable"], "epoch, step": ["w0"]},
    ),
    Case(
        "param_group_added_mid_training",
        """
head = nn.Linear(2, 2)
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            opt.add_param_group({"params": head.parameters(), "lr": 0.05})
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            if epoch >= 1:
                out = head(out)
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("groups", len(opt.param_groups))  # hindsight
        flor.log("head_w", float(head.weight.sum()))  # hindsight
""",
        {"epoch": ["groups", "head_w"]},
    ),
    Case(
        "forward_hook_registered_at_epoch_one_counts_calls",
        """
fwd_calls = 0


def count_calls(module, inputs, output):
    global fwd_calls
    fwd_calls += 1


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            handle = net[0].register_forward_hook(count_calls)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("calls_so_far", fwd_calls)  # hindsight
        flor.log("fwd_calls", fwd_calls)  # hindsight
""",
        {"epoch": ["fwd_calls"], "epoch, step": ["calls_so_far"]},
        partial=("SELECT seed, epoch, step, calls_so_far FROM logs WHERE epoch = 3",),
    ),
    Case(
        "optimizer_switched_from_adam_to_sgd",
        """
opt = torch.optim.Adam(net.parameters(), lr=0.01)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 2:
            opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("w0", float(net[0].weight.sum()))  # hindsight
        flor.log("opt_kind", type(opt).__name__)  # hindsight
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
""",
        {"epoch": ["opt_kind", "lr"], "epoch, step": ["w0"]},
        partial=("SELECT seed, epoch, step, w0 FROM logs WHERE epoch = 3",),
    ),
    Case(
        "loss_function_replaced_with_label_smoothing",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("plain_ce", nn.CrossEntropyLoss()(net(X[idx]), Y[idx]).item())  # hindsight
        flor.log("smoothing", loss_fn.label_smoothing)  # hindsight
""",
        {"epoch": ["smoothing"], "epoch, step": ["plain_ce"]},
        partial=("SELECT seed, epoch, step, plain_ce FROM logs WHERE epoch = 3",),
    ),
    Case(
        "dropout_rate_lowered_at_epoch_one",
        """
net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            net[2].p = 0.1
        net.train()
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("w0", float(net[0].weight.sum()))  # hindsight
        flor.log("p", net[2].p)  # hindsight
""",
        {"epoch": ["p"], "epoch, step": ["w0"]},
        partial=("SELECT seed, epoch, step, w0 FROM logs WHERE epoch = 3",),
    ),
    Case(
        "teacher_copied_every_other_epoch_starts_as_none",
        """
import copy

teacher = None
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            if teacher is not None:
                with torch.no_grad():
                    soft = teacher(X[idx]).softmax(1)
                kl = nn.functional.kl_div(out.log_softmax(1), soft, reduction="batchmean")
                loss = loss + 0.5 * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        if epoch % 2 == 0:
            teacher = copy.deepcopy(net)
        flor.log("teacher_w", float(teacher[0].weight.sum()))  # hindsight
        flor.log("has_teacher", teacher is not None)  # hindsight
""",
        {"epoch": ["teacher_w", "has_teacher"]},
        period=2,
        fresh=True,
    ),
    Case(
        "running_mean_coroutine_fed_with_send",
        """
def averager():
    total, n, avg = 0.0, 0, None
    while True:
        v = yield avg
        total += v
        n += 1
        avg = total / n


avg = averager()
next(avg)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running = avg.send(loss.item())
            flor.log("loss", loss.item())
        flor.log("running", running)  # hindsight
        flor.log("running_now", avg.send(0.0))  # hindsight
""",
        {"epoch": ["running", "running_now"]},
    ),
    Case(
        "global_step_from_itertools_count",
        """
import itertools

steps = itertools.count()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            gs = next(steps)
            for g in opt.param_groups:
                g["lr"] = 0.2 / (1 + 0.1 * gs)
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("gs", gs)  # hindsight
        flor.log("last_gs", gs)  # hindsight
        flor.log("peek", repr(steps))  # hindsight
""",
        {"epoch": ["last_gs", "peek"], "epoch, step": ["gs"]},
        period=2,
    ),
    Case(
        "run_level_statements_before_loops_and_after_everything",
        """
n_params = sum(p.numel() for p in net.parameters())
cfg = {"lr": opt.param_groups[0]["lr"], "epochs": epochs, "seed": seed}
flor.log("cfg", cfg)  # hindsight
flor.log("n_params", n_params)  # hindsight
flor.log("x_mean", float(X.mean()))  # hindsight
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
with torch.no_grad():
    acc = float((net(XV).argmax(1) == YV).float().mean())
flor.log("final_acc", acc)  # hindsight
flor.log("summary", {"acc": acc, "epochs": epochs, "w": float(net[0].weight.sum())})  # hindsight
""",
        {"": ["cfg", "n_params", "x_mean", "final_acc", "summary"]},
        seeds=(0, 1),
        fresh=True,
    ),
    Case(
        "statements_under_even_epoch_and_even_step_branches",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        seen = 0
        for step, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12)), start=1):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(idx)
            flor.log("loss", loss.item())
            if step % 2 == 0:
                flor.log("even_loss", loss.item())
                flor.log("even_step_seen", seen)  # hindsight
        if epoch % 2 == 0:
            with torch.no_grad():
                val = loss_fn(net(XV), YV).item()
            flor.log("val", val)  # hindsight
        else:
            val = None
            flor.log("odd_step", step)  # hindsight
""",
        {"epoch": ["val", "odd_step"], "epoch, step": ["even_step_seen"]},
        partial=("SELECT seed, epoch, val, odd_step FROM logs WHERE epoch = 1",),
    ),
    Case(
        "outer_flor_loop_over_dict_items",
        """
phases = {"warm": 0.05, "main": 0.2, "cool": 0.02, "tail": 0.01}
seen = 0
with flor.checkpointing(model=net, optimizer=opt):
    for phase, lr in flor.loop("epoch", phases.items()):
        for g in opt.param_groups:
            g["lr"] = lr
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += 1
            flor.log("loss", loss.item())
            flor.log("phase_step", f"{phase}:{seen}")  # hindsight
        flor.log("phase", phase)  # hindsight
        flor.log("seen", seen)  # hindsight
""",
        {"epoch": ["phase", "seen"], "epoch, step": ["phase_step"]},
        period=2,
    ),
    Case(
        "infinite_batch_generator_left_by_break",
        """
def batches(g):
    while True:
        for idx in torch.randperm(len(X), generator=g).split(12):
            yield idx


g = torch.Generator().manual_seed(seed + 7)
stream = batches(g)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for step, idx in enumerate(flor.loop("step", stream)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("first", int(idx[0]))  # hindsight
            if step == 2:
                break
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"], "epoch, step": ["first"]},
    ),
    Case(
        "walrus_in_a_comprehension_binds_the_last_grad_max",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            maxes = [(gmax := float(p.grad.abs().max())) for p in net.parameters()]
            opt.step()
            flor.log("loss", loss.item())
        flor.log("gmax", gmax)  # hindsight
        flor.log("maxes", sum(maxes))  # hindsight
""",
        {"epoch": ["gmax", "maxes"]},
        fresh=True,
    ),
    Case(
        "match_statement_captures_the_batch",
        """
batches = [{"x": X[i : i + 12], "y": Y[i : i + 12]} for i in range(0, 48, 12)]
batches[1] = (X[12:24], Y[12:24])
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for batch in flor.loop("step", batches):
            match batch:
                case {"x": xb, "y": yb}:
                    kind = "dict"
                case (xb, yb):
                    kind = "tuple"
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("last_kind", kind)  # hindsight
        flor.log("last_xb", float(xb.sum()))  # hindsight
""",
        {"epoch": ["last_kind", "last_xb"]},
    ),
    Case(
        "meters_reached_through_an_accessor_function",
        """
class Meter:
    def __init__(self):
        self.total, self.n = 0.0, 0

    def update(self, v):
        self.total += v
        self.n += 1


meters = {"train": Meter(), "grad": Meter()}


def meter(name):
    return meters[name]


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            meter("train").update(loss.item())
            [m.update(1.0) for m in [meters["grad"]]]
            flor.log("loss", loss.item())
        flor.log("train_avg", meters["train"].total / meters["train"].n)  # hindsight
        flor.log("grad_n", meters["grad"].n)  # hindsight
""",
        {"epoch": ["train_avg", "grad_n"]},
        fresh=True,
    ),
    Case(
        "scheduler_created_lazily_after_warmup",
        """
sched = None
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        if sched is not None:
            sched.step()
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
""",
        {"epoch": ["lr"]},
    ),
    Case(
        "pruned_at_epoch_two_then_fine_tuned",
        """
from torch.nn.utils import prune

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            prune.l1_unstructured(net[0], "weight", amount=0.5)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("zeros", int((net[0].weight == 0).sum()))  # hindsight
""",
        {"epoch": ["zeros"]},
    ),
    Case(
        "activation_hook_registered_late_fills_a_dict",
        """
acts = {}


def keep(name):
    def hook(module, inputs, output):
        acts[name] = float(output.detach().abs().mean())

    return hook


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            net[1].register_forward_hook(keep("relu"))
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("relu_act", acts.get("relu", -1.0))  # hindsight
        flor.log("n_acts", len(acts))  # hindsight
""",
        {"epoch": ["n_acts"], "epoch, step": ["relu_act"]},
        partial=("SELECT seed, epoch, step, relu_act FROM logs WHERE epoch = 3",),
    ),
    Case(
        "a_text_log_file_written_each_step",
        """
logf = open("train_log.txt", "w")
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            print(f"{epoch} {loss.item():.4f}", file=logf)
            flor.log("loss", loss.item())
        logf.flush()
        flor.log("log_bytes", logf.tell())  # hindsight
logf.close()
""",
        {"epoch": ["log_bytes"]},
    ),
    Case(
        "noise_from_an_unregistered_generator_inside_a_helper",
        """
g = torch.Generator().manual_seed(123)


def noisy(x):
    return x + 0.05 * torch.randn(x.shape, generator=g)


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(noisy(X[idx])), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("g_state", int(g.get_state().sum()))  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["g_state", "w_sum"]},
        period=2,
    ),
    Case(
        "an_evaluate_helper_leaves_the_model_in_eval_mode",
        """
net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)


@torch.no_grad()
def evaluate(xs, ys):
    net.eval()  # forgets to set train() back: later epochs train without dropout
    return float((net(xs).argmax(1) == ys).float().mean())


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("training_before_eval", net.training)  # hindsight
        acc = evaluate(XV, YV)
        flor.log("acc", acc)  # hindsight
        flor.log("train_acc", evaluate(X, Y))  # hindsight
""",
        {"epoch": ["training_before_eval", "acc", "train_acc"]},
    ),
    Case(
        "steps_per_epoch_capped_by_zip_and_islice",
        """
import itertools

max_steps = 3
seen = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in zip(range(max_steps), flor.loop("step", torch.randperm(len(X)).split(12))):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += 1
            flor.log("loss", loss.item())
            flor.log("i", i)  # hindsight
        for vidx in itertools.islice(flor.loop("val", torch.arange(len(XV)).split(4)), 2):
            with torch.no_grad():
                flor.log("v", float(net(XV[vidx]).sum()))
            flor.log("vfirst", int(vidx[0]))  # hindsight
        flor.log("seen", seen)  # hindsight
        flor.log("last_i", i)  # hindsight
""",
        {"epoch": ["seen", "last_i"], "epoch, step": ["i"], "epoch, val": ["vfirst"]},
        old_query="SELECT seed, epoch, step, loss, val, v FROM logs",
        fresh=True,
    ),
    Case(
        "callable_metric_objects_accumulate_when_called",
        """
class Accuracy:  # torchmetrics style: calling it updates its state, compute() reads it
    def __init__(self):
        self.correct, self.total = 0, 0

    def __call__(self, logits, y):
        c = int((logits.argmax(1) == y).sum())
        self.correct += c
        self.total += len(y)
        return c / len(y)

    def compute(self):
        return self.correct / self.total

    def reset(self):
        self.correct, self.total = 0, 0


class CountingLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, out, y):
        self.calls += 1
        return nn.functional.cross_entropy(out, y)


acc = Accuracy()
crit = CountingLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        acc.reset()
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = crit(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            batch_acc = acc(out, Y[idx])
            flor.log("loss", loss.item())
        flor.log("epoch_acc", acc.compute())  # hindsight
        flor.log("crit_calls", crit.calls)  # hindsight
""",
        {"epoch": ["epoch_acc", "crit_calls"]},
        fresh=True,
    ),
    Case(
        "train_step_called_through_a_dispatch_table",
        """
counts = {"train": 0}
n_updates = 0


def train_step(x, y):
    global n_updates
    loss = loss_fn(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    n_updates += 1
    counts["train"] += 1
    return loss.item()


handlers = {"train": train_step}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = handlers["train"](X[idx], Y[idx])
            flor.log("loss", loss)
        flor.log("n_updates", n_updates)  # hindsight
        flor.log("count", counts["train"])  # hindsight
""",
        {"epoch": ["n_updates", "count"]},
        fresh=True,
    ),
    Case(
        "state_set_through_setattr_and_operator_setitem",
        """
import operator
from types import SimpleNamespace

state = SimpleNamespace(last_loss=None, steps=0)
board = {}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            setattr(state, "last_loss", loss.item())
            operator.setitem(board, "steps", board.get("steps", 0) + 1)
            flor.log("loss", loss.item())
        flor.log("state_last", state.last_loss)  # hindsight
        flor.log("board_steps", board["steps"])  # hindsight
""",
        {"epoch": ["state_last", "board_steps"]},
    ),
    Case(
        "heapq_top_k_and_ordered_dict_lru",
        """
import heapq
from collections import OrderedDict

worst = []  # the 3 largest losses so far
recent = OrderedDict()  # the last 5 batches' first index, most recent last
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            heapq.heappush(worst, (loss.item(), epoch))
            if len(worst) > 3:
                heapq.heappop(worst)
            key = int(idx[0])
            recent[key] = loss.item()
            recent.move_to_end(key)
            while len(recent) > 5:
                recent.popitem(last=False)
            flor.log("loss", loss.item())
        flor.log("worst", [round(v, 6) for v, _ in sorted(worst)])  # hindsight
        flor.log("recent_keys", list(recent))  # hindsight
""",
        {"epoch": ["worst", "recent_keys"]},
        period=2,
    ),
    Case(
        "per_step_tensors_stacked_after_the_loop",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        preds, losses = [], []
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            preds.append(out.detach().argmax(1))
            losses.append(loss.detach())
            flor.log("loss", loss.item())
        flor.log("pred_ones", int(torch.cat(preds).sum()))  # hindsight
        flor.log("loss_std", float(torch.stack(losses).std()))  # hindsight
""",
        {"epoch": ["pred_ones", "loss_std"]},
    ),
    Case(
        "multistep_and_chained_schedulers_unregistered",
        """
s1 = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 3], gamma=0.5)
s2 = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
chain = torch.optim.lr_scheduler.ChainedScheduler([s1, s2])
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("lr_step", opt.param_groups[0]["lr"])  # hindsight
        chain.step()
        flor.log("lr", chain.get_last_lr()[0])  # hindsight
        flor.log("s1_epoch", s1.last_epoch)  # hindsight
""",
        {"epoch": ["lr", "s1_epoch"], "epoch, step": ["lr_step"]},
        period=2,
    ),
    Case(
        "dataclass_train_state_mutated_by_helpers",
        """
from dataclasses import dataclass, field


@dataclass
class TrainState:
    step: int = 0
    best: float = float("inf")
    losses: list = field(default_factory=list)


def update(st: TrainState, v: float) -> None:
    st.step += 1
    st.losses.append(v)
    if v < st.best:
        st.best = v


ts = TrainState()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            update(ts, loss.item())
            flor.log("loss", loss.item())
        flor.log("ts_step", ts.step)  # hindsight
        flor.log("ts_best", ts.best)  # hindsight
        flor.log("ts_n", len(ts.losses))  # hindsight
""",
        {"epoch": ["ts_step", "ts_best", "ts_n"]},
    ),
    Case(
        "a_generator_helper_owns_the_step_loop_and_yields_losses",
        """
def run_epoch(epoch):
    total = 0.0
    for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
        loss = loss_fn(net(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
        flor.log("total_so_far", total)  # hindsight
        yield loss.item()


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        epoch_losses = list(run_epoch(epoch))
        for v in epoch_losses:
            flor.log("loss", v)
        flor.log("n", len(epoch_losses))  # hindsight
        flor.log("mean", sum(epoch_losses) / len(epoch_losses))  # hindsight
""",
        {"epoch": ["n", "mean"], "epoch, step": ["total_so_far"]},
        old_query="SELECT seed, epoch, loss FROM logs",
    ),
    Case(
        "a_generator_helper_owns_the_step_loop_losses_kept_across_epochs",
        """
def run_epoch():
    for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
        loss = loss_fn(net(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        flor.log("loss", loss.item())
        yield loss.item()


all_losses = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        epoch_losses = list(run_epoch())
        all_losses += epoch_losses
        flor.log("n_all", len(all_losses))  # hindsight
""",
        {"epoch": ["n_all"]},
    ),
    Case(
        "inputs_jittered_in_place_under_a_tensor_dataset",
        """
from torch.utils.data import DataLoader, TensorDataset

loader = DataLoader(TensorDataset(X, Y), batch_size=12, shuffle=False)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        X += 0.05 * torch.randn_like(X)  # in place: the dataset holds the same tensor
        for xb, yb in flor.loop("step", loader):
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("xb_sum", float(xb.sum()))  # hindsight
        flor.log("x_sum", float(X.sum()))  # hindsight
""",
        {"epoch": ["x_sum"], "epoch, step": ["xb_sum"]},
        partial=("SELECT seed, epoch, step, xb_sum FROM logs WHERE epoch = 3",),
    ),
    Case(
        "one_helper_runs_train_and_val_loops_named_by_its_argument",
        """
def run(phase, xs, ys, train):
    total = 0.0
    net.train(train)
    for idx in flor.loop(phase, torch.arange(len(xs)).split(8)):
        with torch.set_grad_enabled(train):
            loss = loss_fn(net(xs[idx]), ys[idx])
        if train:
            opt.zero_grad()
            loss.backward()
            opt.step()
        total += loss.item()
        flor.log(phase + "_loss", loss.item())
        flor.log("running", total)  # hindsight
    return total


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        tr = run("train", X, Y, True)
        va = run("val", XV, YV, False)
        flor.log("tr", tr)  # hindsight
        flor.log("va", va)  # hindsight
""",
        {"epoch": ["tr", "va"], "epoch, train": ["running"], "epoch, val": ["running"]},
        old_query="SELECT seed, epoch, train, val, train_loss, val_loss FROM logs",
    ),
    Case(
        "query_shapes_over_a_global_step_and_a_running_sum",
        """
gs, running = 0, 0.0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            gs += 1
            running += loss.item()
            flor.log("loss", loss.item())
            flor.log("gs", gs)  # hindsight
            flor.log("running", running)  # hindsight
        flor.log("w", float(net[2].weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "epoch, step": ["gs", "running"]},
        period=3,
        partial=(
            "SELECT seed, epoch, step, gs FROM logs WHERE epoch = 1 AND step < 2",
            "SELECT seed, epoch, step, running FROM logs WHERE step = 3 AND epoch IN (0, 3)",
            "SELECT epoch, max(gs) AS m, sum(running) AS r FROM logs GROUP BY epoch",
            "SELECT seed, epoch, step, gs, w FROM logs WHERE epoch >= 1 AND step < 2",
            "SELECT seed, epoch, w FROM logs WHERE w > -100 AND epoch = 2",
        ),
        first=1,
    ),
    Case(
        "statements_in_a_finally_after_the_loops",
        """
try:
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
            flor.log("epoch_w", float(net[0].weight.sum()))  # hindsight
finally:
    print("training ended")
    flor.log("final_loss", loss.item())  # hindsight
    flor.log("epochs_run", epoch + 1)  # hindsight
""",
        {"epoch": ["epoch_w"], "": ["final_loss", "epochs_run"]},
        fresh=True,
    ),
    Case(
        "best_state_dict_kept_without_a_copy_aliases_the_live_weights",
        """
YV = 1 - YV  # validation loss rises: the best stays at epoch 0
best_val, best_state = float("inf"), None
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("best_w_step", best_state and float(best_state["0.weight"].sum()))  # hindsight
        with torch.no_grad():
            val = loss_fn(net(XV), YV).item()
        flor.log("val", val)
        if val < best_val:
            best_val, best_state = val, net.state_dict()  # no copy: tracks the live weights
        flor.log("best_w", float(best_state["0.weight"].sum()))  # hindsight
""",
        {"epoch": ["best_w"], "epoch, step": ["best_w_step"]},
        partial=("SELECT seed, epoch, step, best_w_step FROM logs WHERE epoch = 3",),
        fresh=True,
    ),
    Case(
        "names_made_with_f_strings_per_param_group",
        """
opt = torch.optim.SGD(
    [{"params": net[0].parameters(), "lr": 0.2}, {"params": net[2].parameters(), "lr": 0.05}],
    momentum=0.9,
)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
with flor.checkpointing(model=net, optimizer=opt, scheduler=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        sched.step()
        for i, g in enumerate(opt.param_groups):  # hindsight
            flor.log(f"lr{i}", g["lr"])  # hindsight
""",
        {"epoch": ["lr0", "lr1"]},
    ),
    Case(
        "epoch_list_extended_while_it_is_iterated",
        """
plan = list(range(3))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", plan):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        if epoch == 1:
            plan.append(10)  # one more epoch, numbered 10
        flor.log("epoch_value", epoch)  # hindsight
        flor.log("plan_len", len(plan))  # hindsight
""",
        {"epoch": ["epoch_value", "plan_len"]},
        fresh=True,
    ),
    Case(
        "statement_before_the_step_loop_reads_the_previous_epoch",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        flor.log("prev_loss", loss.item() if epoch > 0 else None)  # hindsight
        flor.log("prev_first", int(idx[0]) if epoch > 0 else None)  # hindsight
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
""",
        {"epoch": ["prev_loss", "prev_first"]},
        period=2,
        partial=("SELECT seed, epoch, prev_loss FROM logs WHERE epoch = 3",),
    ),
    Case(
        "custom_stopper_whose_state_dict_leaves_out_its_history",
        """
class Stopper:
    def __init__(self, patience):
        self.patience, self.best, self.bad, self.history = patience, float("inf"), 0, []

    def step(self, v):
        self.history.append(v)
        if v < self.best:
            self.best, self.bad = v, 0
        else:
            self.bad += 1
        return self.bad >= self.patience

    def state_dict(self):  # what the user wanted to resume from; history left out
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, d):
        self.best, self.bad = d["best"], d["bad"]


stopper = Stopper(patience=10)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            stopper.step(loss.item())
        flor.log("n_history", len(stopper.history))  # hindsight
        flor.log("bad", stopper.bad)  # hindsight
""",
        {"epoch": ["n_history", "bad"]},
    ),
    Case(
        "lines_printed_to_a_string_buffer_and_an_aliased_history",
        """
import io

buf = io.StringIO()
history = []
h = history  # the loop appends through the alias
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            print(f"{loss.item():.4f}", file=buf)
            h.append(loss.item())
        flor.log("buf_lines", len(buf.getvalue().splitlines()))  # hindsight
        flor.log("history_len", len(history))  # hindsight
""",
        {"epoch": ["buf_lines", "history_len"]},
    ),
    Case(
        "plain_tensor_attribute_on_the_registered_model",
        """
net.class_counts = torch.zeros(2)  # not a buffer: a plain tensor attribute
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            net.class_counts += torch.bincount(Y[idx], minlength=2)
        flor.log("counts", net.class_counts.tolist())  # hindsight
""",
        {"epoch": ["counts"]},
    ),
    Case(
        "step_loop_empty_in_some_epochs",
        """
n_batches = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        batches = [] if epoch % 2 else torch.randperm(len(X)).split(12)
        for idx in flor.loop("step", batches):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            n_batches += 1
        flor.log("n_batches", n_batches)  # hindsight
        flor.log("last_idx0", int(idx[0]))  # hindsight
""",
        {"epoch": ["n_batches", "last_idx0"]},
        fresh=True,
    ),
    Case(
        "step_loop_written_as_a_list_comprehension",
        """
def train_step(idx):
    loss = loss_fn(net(X[idx]), Y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    flor.log("loss", loss.item())
    return loss.item()


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        losses = [train_step(idx) for idx in flor.loop("step", torch.randperm(len(X)).split(12))]
        flor.log("n", len(losses))  # hindsight
        flor.log("mean", sum(losses) / len(losses))  # hindsight
""",
        {"epoch": ["n", "mean"]},
        fresh=True,
    ),
    Case(
        "step_loop_summed_as_a_generator_expression",
        """
def train_step(idx):
    loss = loss_fn(net(X[idx]), Y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    flor.log("loss", loss.item())
    return loss.item()


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        total = sum(train_step(idx) for idx in flor.loop("step", torch.randperm(len(X)).split(12)))
        flor.log("total", total)  # hindsight
""",
        {"epoch": ["total"]},
        fresh=True,
    ),
    Case(
        "a_new_import_added_today",
        """
import math  # hindsight

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("log_loss", math.log(loss.item()))  # hindsight
""",
        {"epoch, step": ["log_loss"]},
    ),
    Case(
        "a_new_helper_function_added_today",
        """
def accuracy(logits, y):  # hindsight
    return float((logits.argmax(1) == y).float().mean())  # hindsight


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("val_acc", accuracy(net(XV), YV))  # hindsight
""",
        {"epoch": ["val_acc"]},
    ),
    Case(
        "a_new_no_grad_block_around_todays_statement",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():  # hindsight
            flor.log("val_loss", loss_fn(net(XV), YV).item())  # hindsight
""",
        {"epoch": ["val_loss"]},
    ),
    Case(
        "a_meter_class_defined_inside_main",
        """
def main():
    class Meter:
        def __init__(self):
            self.n, self.total = 0, 0.0

        def add(self, v):
            self.n += 1
            self.total += v

    meter = Meter()
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                meter.add(loss.item())
                flor.log("loss", loss.item())
            flor.log("meter_n", meter.n)  # hindsight
            flor.log("meter_avg", meter.total / meter.n)  # hindsight


main()
""",
        {"epoch": ["meter_n", "meter_avg"]},
        period=2,
    ),
    Case(
        "activation_swapped_in_the_registered_model_at_epoch_one",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            net[1] = nn.LeakyReLU(0.1)  # no parameters: the state_dict is unchanged
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            val = loss_fn(net(XV), YV).item()
            flor.log("val_loss", val)  # hindsight
        flor.log("act", type(net[1]).__name__)  # hindsight
""",
        {"epoch": ["val_loss", "act"]},
    ),
    Case(
        "batchnorm_put_in_eval_mode_from_epoch_one",
        """
net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            net[1].eval()  # freeze the running statistics from here on
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("bn_training", net[1].training)  # hindsight
        flor.log("bn_mean", float(net[1].running_mean.sum()))  # hindsight
""",
        {"epoch": ["bn_training", "bn_mean"]},
        partial=("SELECT seed, epoch, bn_training FROM logs WHERE epoch = 3",),
    ),
    Case(
        "rolled_back_to_a_copy_of_the_best_model_at_epoch_two",
        """
import copy

YV = 1 - YV  # validation loss rises: the best stays at epoch 0
best_val, best = float("inf"), copy.deepcopy(net)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("w0", float(net[0].weight.sum()))  # hindsight
        with torch.no_grad():
            val = loss_fn(net(XV), YV).item()
        flor.log("val", val)
        if val < best_val:
            best_val, best = val, copy.deepcopy(net)
        elif epoch == 1:  # diverging: start again from the best, with a smaller step
            net = copy.deepcopy(best)
            opt = torch.optim.SGD(net.parameters(), lr=0.05)
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
""",
        {"epoch": ["w_sum", "lr"], "epoch, step": ["w0"]},
        old_query="SELECT seed, epoch, step, loss, val FROM logs",
        partial=("SELECT seed, epoch, step, w0 FROM logs WHERE epoch = 3",),
    ),
    Case(
        "reseeded_each_epoch_with_gradient_checkpointing_and_a_reinit",
        """
from torch.utils.checkpoint import checkpoint

net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)


def init_last(m):
    if m is net[3]:
        nn.init.normal_(m.weight, std=0.01)
        nn.init.zeros_(m.bias)


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        torch.manual_seed(100 + epoch)
        if epoch == 2:
            net.apply(init_last)  # re-initialise the head
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            h = checkpoint(net[:3], X[idx], use_reentrant=False)
            loss = loss_fn(net[3](h), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("h_sum", float(h.sum()))  # hindsight
        flor.log("head_w", float(net[3].weight.sum()))  # hindsight
        flor.log("epoch_seed", 100 + epoch)  # hindsight
""",
        {"epoch": ["head_w", "epoch_seed"], "epoch, step": ["h_sum"]},
        partial=("SELECT seed, epoch, step, h_sum FROM logs WHERE epoch = 3 AND step < 2",),
        fresh=True,
    ),
    Case(
        "outer_loop_over_a_numpy_array_inner_over_a_tensor",
        """
import numpy as np

lrs = np.geomspace(0.2, 0.01, epochs)
with flor.checkpointing(model=net, optimizer=opt):
    for lr in flor.loop("epoch", lrs):
        for g in opt.param_groups:
            g["lr"] = float(lr)
        for b in flor.loop("step", torch.arange(4)):
            idx = torch.arange(12) + 12 * int(b)
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("b", int(b))  # hindsight
        flor.log("lr", float(lr))  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["lr", "w"], "epoch, step": ["b"]},
        period=2,
    ),
    Case(
        "only_the_epoch_loop_is_flor_and_a_layer_is_frozen_at_epoch_one",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            net[0].requires_grad_(False)
        total = 0.0
        for idx in torch.randperm(len(X)).split(12):  # a plain loop: end checkpoints only
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        flor.log("train_loss", total)
        flor.log("w_sum", float(net[2].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"]},
        old_query="SELECT seed, epoch, train_loss FROM logs",
        partial=("SELECT seed, epoch, w_sum FROM logs WHERE epoch = 3",),
    ),
    Case(
        "outer_loop_over_a_generator_that_adapts_the_lr_from_validation",
        """
YV = 1 - YV  # validation loss rises: the schedule halves the lr
val_hist = []


def schedule():
    lr = 0.2
    for e in range(epochs):
        if len(val_hist) >= 2 and val_hist[-1] > val_hist[-2]:
            lr *= 0.5
        yield e, lr


with flor.checkpointing(model=net, optimizer=opt):
    for epoch, lr in flor.loop("epoch", schedule()):
        for g in opt.param_groups:
            g["lr"] = lr
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            val_hist.append(loss_fn(net(XV), YV).item())
        flor.log("val", val_hist[-1])
        flor.log("lr", lr)  # hindsight
""",
        {"epoch": ["lr"]},
        old_query="SELECT seed, epoch, step, loss, val FROM logs",
        fresh=True,
    ),
    Case(
        "a_dataset_caching_items_in_getitem",
        """
class CachedSet:  # loads an item on first access and keeps it: a common lazy dataset
    def __init__(self, xs, ys):
        self.xs, self.ys, self.cache, self.loads = xs, ys, {}, 0

    def __len__(self):
        return len(self.xs)

    def __getitem__(self, i):
        if i not in self.cache:
            self.loads += 1
            self.cache[i] = (self.xs[i] * 1.0, self.ys[i])
        return self.cache[i]


ds = CachedSet(X, Y)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for b in flor.loop("step", range(epoch + 1)):  # more of the data each epoch
            xb, yb = ds[b]
            loss = loss_fn(net(xb[None]), yb[None])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("cached", len(ds.cache))  # hindsight
        flor.log("loads", ds.loads)  # hindsight
""",
        {"epoch": ["cached", "loads"]},
        fresh=True,
    ),
    Case(
        "a_step_counter_kept_by_a_with_statement",
        """
class Section:  # counts the steps run inside it
    def __init__(self):
        self.entered, self.exited = 0, 0

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        self.exited += 1
        return False


section = Section()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            with section:
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            flor.log("loss", loss.item())
        flor.log("sections", section.exited)  # hindsight
""",
        {"epoch": ["sections"]},
        fresh=True,
    ),
    Case(
        "a_property_that_counts_its_reads",
        """
class Warmup:  # each read of .lr advances the warmup by one step
    def __init__(self, base, steps):
        self.base, self.steps, self.t = base, steps, 0

    @property
    def lr(self):
        self.t += 1
        return self.base * min(1.0, self.t / self.steps)


warm = Warmup(0.2, 10)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            for g in opt.param_groups:
                g["lr"] = warm.lr
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("warm_t", warm.t)  # hindsight
""",
        {"epoch": ["warm_t"]},
        fresh=True,
    ),
    Case(
        "entries_deleted_with_del_in_the_step_loop",
        """
pending = {i: None for i in range(48)}  # examples not yet seen
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)[:2]):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            for i in idx.tolist():
                if i in pending:
                    del pending[i]
        flor.log("pending", len(pending))  # hindsight
""",
        {"epoch": ["pending"]},
        fresh=True,
    ),
    Case(
        "for_targets_that_are_attributes_and_a_walrus_in_an_if",
        """
class Tracker:
    pass


tr = Tracker()
tr.step = -1
n = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for tr.step, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            if (n := n + 1) % 3 == 0:
                flor.log("every_third", loss.item())
        flor.log("tr_step", tr.step)  # hindsight
        flor.log("n", n)  # hindsight
""",
        {"epoch": ["tr_step", "n"]},
        fresh=True,
    ),
    Case(
        "a_global_written_through_globals",
        """
last_loss = None
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            globals()["last_loss"] = loss.item()
        flor.log("last_loss", last_loss)  # hindsight
""",
        {"epoch": ["last_loss"]},
        fresh=True,
    ),
    Case(
        "step_loop_mapped_by_map_and_list",
        """
def train_step(idx):
    loss = loss_fn(net(X[idx]), Y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    flor.log("loss", loss.item())
    return loss.item()


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        losses = list(map(train_step, flor.loop("step", torch.randperm(len(X)).split(12))))
        flor.log("n", len(losses))  # hindsight
        flor.log("mean", sum(losses) / len(losses))  # hindsight
""",
        {"epoch": ["n", "mean"]},
        fresh=True,
    ),
    Case(
        "carried_state_over_the_16_mib_limit",
        """
XB = torch.randn(300_000, 6)
bank = []  # 9.6 MB a epoch: past 16 MiB from epoch 1 on
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            bank.append(net[0](XB))
        flor.log("bank_mean", float(torch.cat(bank).mean()))  # hindsight
        flor.log("bank_len", len(bank))  # hindsight
""",
        {"epoch": ["bank_mean", "bank_len"]},
        period=1,
    ),
    Case(
        "one_fit_function_called_for_two_phases",
        """
seen = 0


def fit(n, lr):
    global seen
    for g in opt.param_groups:
        g["lr"] = lr
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(n)):
            for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen += 1
                flor.log("loss", loss.item())
                flor.log("seen_step", seen)  # hindsight
            flor.log("w", float(net[0].weight.sum()))  # hindsight
            flor.log("seen", seen)  # hindsight


fit(2, 0.2)
fit(3, 0.05)
flor.log("total_seen", seen)  # hindsight
""",
        {"epoch": ["w", "seen"], "epoch, step": ["seen_step"], "": ["total_seen"]},
        first=1,
        fresh=True,
    ),
    Case(
        "a_learning_rate_sweep_inside_one_run",
        """
def make():
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    return m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)


for trial in flor.loop("trial", range(2)):
    lr = [0.2, 0.05][trial]
    net, opt = make()
    for g in opt.param_groups:
        g["lr"] = lr
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(3)):
            for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
            flor.log("w", float(net[0].weight.sum()))  # hindsight
    flor.log("trial_lr", lr)  # hindsight
""",
        {"trial, epoch": ["w"], "trial": ["trial_lr"]},
        old_query="SELECT seed, trial, epoch, step, loss FROM logs",
        partial=(
            "SELECT seed, trial, epoch, w FROM logs WHERE epoch >= 1",
            "SELECT seed, trial, epoch, w FROM logs WHERE trial = 1 AND epoch = 2",
        ),
        fresh=True,
    ),
    Case(
        "pretrain_and_finetune_share_the_step_loop_name",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("g", float(net[0].weight.grad.norm()))  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
for g in opt.param_groups:
    g["lr"] = 0.05
with flor.checkpointing(model=net, optimizer=opt):
    for ft in flor.loop("ft_epoch", range(3)):
        for idx in flor.loop("step", torch.randperm(len(XV)).split(4)):
            loss = loss_fn(net(XV[idx]), YV[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("ft_loss", loss.item())
            flor.log("g", float(net[0].weight.grad.norm()))  # hindsight
        flor.log("ft_w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "epoch, step": ["g"], "ft_epoch": ["ft_w"], "ft_epoch, step": ["g"]},
        old_query="SELECT seed, epoch, ft_epoch, step, loss, ft_loss FROM logs",
        partial=("SELECT seed, ft_epoch, step, g FROM logs WHERE ft_epoch = 2",),
        fresh=True,
    ),
    Case(
        "one_name_logged_per_step_and_per_epoch",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        correct = 0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            c = int((out.argmax(1) == Y[idx]).sum())
            correct += c
            flor.log("acc", c / len(idx))  # hindsight
        flor.log("acc", correct / len(X))  # hindsight
""",
        {"epoch": ["acc"], "epoch, step": ["acc"]},
        partial=("SELECT seed, epoch, step, acc FROM logs WHERE epoch = 1 AND step IS NULL",),
    ),
    # -- minimal forms of the failures above --
    Case(
        "min_lru_cache_hits",
        """
import functools


@functools.lru_cache(maxsize=None)
def ones(n):
    return torch.ones(n)


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]) * ones(2), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("hits", ones.cache_info().hits)  # hindsight
""",
        {"epoch": ["hits"]},
    ),
    Case(
        "min_tensor_accumulator_aliased_in_a_dict",
        """
total = torch.zeros(())
stats = {"total": total}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            total += loss.detach()
        flor.log("dict_total", float(stats["total"]))  # hindsight
""",
        {"epoch": ["dict_total"]},
    ),
    Case(
        "min_requires_grad_cleared_at_epoch_one",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            net[0].requires_grad_(False)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("frozen", not net[0].weight.requires_grad)  # hindsight
""",
        {"epoch": ["frozen"]},
    ),
    Case(
        "min_add_param_group_at_epoch_one",
        """
extra = nn.Parameter(torch.zeros(2))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            opt.add_param_group({"params": [extra]})
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("groups", len(opt.param_groups))  # hindsight
""",
        {"epoch": ["groups"]},
    ),
    Case(
        "min_forward_hook_registered_at_epoch_one",
        """
calls = [0]


def count(module, inputs, output):
    calls[0] += 1


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            net.register_forward_hook(count)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("calls", calls[0])  # hindsight
""",
        {"epoch, step": ["calls"]},
        partial=("SELECT seed, epoch, step, calls FROM logs WHERE epoch = 3",),
    ),
    Case(
        "min_module_assigned_over_none_in_the_loop",
        """
import copy

teacher = None
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        if epoch == 0:
            teacher = copy.deepcopy(net)
        flor.log("teacher_w", float(teacher[0].weight.sum()))  # hindsight
""",
        {"epoch": ["teacher_w"]},
    ),
    Case(
        "min_meter_reached_through_a_function",
        """
class Meter:
    def __init__(self):
        self.n = 0

    def update(self):
        self.n += 1


meters = {"train": Meter()}


def meter(name):
    return meters[name]


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            meter("train").update()
        flor.log("n", meters["train"].n)  # hindsight
""",
        {"epoch": ["n"]},
    ),
    Case(
        "min_meter_updated_in_a_list_comprehension",
        """
class Meter:
    def __init__(self):
        self.n = 0

    def update(self):
        self.n += 1


meters = [Meter(), Meter()]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            [m.update() for m in meters]
        flor.log("n", meters[0].n)  # hindsight
""",
        {"epoch": ["n"]},
    ),
    Case(
        "min_file_written_with_write",
        """
logf = open("train_log.txt", "w")
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            logf.write("step\\n")
        flor.log("pos", logf.tell())  # hindsight
""",
        {"epoch": ["pos"]},
    ),
    Case(
        "min_state_dict_alias_assigned_in_the_loop",
        """
snap = None
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("snap_w", None if snap is None else float(snap["0.weight"].sum()))  # hindsight
        if epoch == 0:
            snap = net.state_dict()  # no copy: its tensors are the live parameters
""",
        {"epoch, step": ["snap_w"]},
        partial=("SELECT seed, epoch, step, snap_w FROM logs WHERE epoch = 3",),
    ),
    Case(
        "min_string_buffer_written",
        """
import io

buf = io.StringIO()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            buf.write("x")
        flor.log("buf_len", len(buf.getvalue()))  # hindsight
""",
        {"epoch": ["buf_len"]},
    ),
    Case(
        "min_state_dict_of_a_plain_object_leaves_a_field_out",
        """
class Tracker:
    def __init__(self):
        self.best, self.seen = float("inf"), []

    def update(self, v):
        self.seen.append(v)
        self.best = min(self.best, v)

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, d):
        self.best = d["best"]


tracker = Tracker()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            tracker.update(loss.item())
        flor.log("n_seen", len(tracker.seen))  # hindsight
""",
        {"epoch": ["n_seen"]},
    ),
    Case(
        "min_the_same_outer_loop_run_twice",
        """
def fit(n):
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(n)):
            for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
            flor.log("w", float(net[0].weight.sum()))  # hindsight


fit(2)
fit(2)
""",
        {"epoch": ["w"]},
        first=1,
    ),
    Case(
        "min_one_name_logged_in_two_outer_loops",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("w", float(net[0].weight.sum()))  # hindsight
with flor.checkpointing(model=net, optimizer=opt):
    for ft in flor.loop("ft_epoch", range(3)):
        for idx in flor.loop("ft_step", torch.randperm(len(XV)).split(4)):
            loss = loss_fn(net(XV[idx]), YV[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("ft_loss", loss.item())
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch, ft_epoch": ["w"]},
        old_query="SELECT seed, epoch, ft_epoch, loss, ft_loss FROM logs",
        partial=("SELECT seed, ft_epoch, w FROM logs WHERE ft_epoch = 2",),
    ),
]

#: known replay bugs these patterns show (each a strict xfail until fixed); the values replay
#: gives are in the report that found them
BUGS = {
    "names_made_with_f_strings_per_param_group": "PlanError: Unknown column 'lr0' (names made by "
    "f-strings are not known to the catalog)",
}
for _p in PATTERNS:
    _p.bug = BUGS.get(_p.name)
assert not set(BUGS) - {p.name for p in PATTERNS}

#: the default run (``make test``): the patterns of the bugs fixed with this corpus, and a few
#: more; every other runs with ``make test-slow`` (each pattern costs 5-8 s)
DEFAULT = (
    "min_requires_grad_cleared_at_epoch_one",
    "min_the_same_outer_loop_run_twice",
)
CASES = corpus_params(PATTERNS, DEFAULT)
#: fresh-store queries that replay these right (the bug needs a partial query first)
FRESH_PASSES: set[str] = set()
FRESH = corpus_params(
    [replace(p, bug=None) if p.name in FRESH_PASSES else p for p in PATTERNS if p.fresh],
    [p.name for p in PATTERNS if p.fresh and p.name in DEFAULT],
)


def test_s22_corpus_is_consistent() -> None:
    for p in PATTERNS:
        if 'flor.log(f"' in p.text:
            continue  # names made at run time
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


@pytest.mark.parametrize("pattern", CASES)
def test_s22_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_partial_then_wider(pattern, stranger, tmp_path)


@pytest.mark.parametrize("pattern", FRESH)
def test_s22_fresh_store_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_fresh(pattern, stranger, tmp_path)
