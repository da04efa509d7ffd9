"""More training-loop patterns for the replay corpus (tests/test_replay_corpus.py): schedulers
stepped per step, averaged models, DataLoaders and samplers with their own generators, numpy
generators, a trainer whose methods hold both loops, two optimizers, a closure optimizer, and
args in the WHERE clause. Same oracle: a full re-run of the hand-patched old version."""

from __future__ import annotations

from pathlib import Path

import pytest

import florsql
from tests.helpers_replay import Mismatches, corpus_params, hindsight_names
from tests.test_replay_corpus import PREAMBLE, Histories, Pattern, histories, queries

__all__ = ["histories"]

PATTERNS = [
    Pattern(
        "one_cycle_lr_per_step",
        """
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=epochs * 4)
with flor.checkpointing(model=net, optimizer=opt, scheduler=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            flor.log("loss", loss.item())
            flor.log("lr", sched.get_last_lr()[0])  # hindsight
        flor.log("mom", opt.param_groups[0]["momentum"])  # hindsight
""",
        {"epoch": ["mom"], "epoch, step": ["lr"]},
        seeds=(0, 1),
        period=2,
    ),
    Pattern(
        "cosine_warm_restarts_fractional_epoch_unregistered",
        """
sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2)
with flor.checkpointing(model=net, optimizer=opt):  # the scheduler is not registered
    for epoch in flor.loop("epoch", range(epochs)):
        batches = torch.randperm(len(X)).split(12)
        for i, idx in enumerate(flor.loop("step", batches)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step(epoch + i / len(batches))
            flor.log("loss", loss.item())
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
        flor.log("t_cur", float(sched.T_cur))  # hindsight
""",
        {"epoch": ["lr", "t_cur"]},
    ),
    Pattern(
        "averaged_model_swa_utils",
        """
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update_parameters(net)
            flor.log("loss", loss.item())
        with torch.no_grad():
            ema_val = loss_fn(ema(XV), YV).item()
        flor.log("ema_val", ema_val)  # hindsight
        flor.log("ema_n", int(ema.n_averaged))  # hindsight
""",
        {"epoch": ["ema_val", "ema_n"]},
        period=2,
    ),
    Pattern(
        "dataloader_shuffle_generator_and_sampler",
        """
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

ds = TensorDataset(X, Y)
g = torch.Generator().manual_seed(seed + 3)
loader = DataLoader(ds, batch_size=12, shuffle=True, generator=g)
vsampler = RandomSampler(TensorDataset(XV, YV), generator=torch.Generator().manual_seed(5))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for x, y in flor.loop("step", loader):
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("y0", int(y[0]))  # hindsight
        order = list(vsampler)
        flor.log("v_first", order[0])  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["v_first", "w"], "epoch, step": ["y0"]},
        period=2,
    ),
    Pattern(
        "numpy_generator_in_step_loop",
        """
import numpy as np

rng = np.random.default_rng(seed)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for step in flor.loop("step", range(4)):
            idx = torch.from_numpy(rng.choice(len(X), size=12, replace=False))
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("idx0", int(idx[0]))  # hindsight
        noise = float(np.random.default_rng(epoch).normal())
        flor.log("rng_peek", float(rng.bit_generator.state["state"]["state"] % 1000))  # hindsight
        flor.log("noise", noise)  # hindsight
""",
        {"epoch": ["rng_peek", "noise"], "epoch, step": ["idx0"]},
        period=2,
    ),
    Pattern(
        "trainer_methods_hold_both_loops",
        """
class Trainer:
    def __init__(self, model, optim):
        self.model, self.optim = model, optim
        self.global_step = 0
        self.history = []

    def train_step(self, idx):
        loss = loss_fn(self.model(X[idx]), Y[idx])
        self.optim.zero_grad()
        loss.backward()
        self.optim.step()
        self.global_step += 1
        return loss.item()

    def fit(self):
        with flor.checkpointing(model=self.model, optimizer=self.optim):
            for epoch in flor.loop("epoch", range(epochs)):
                total = 0.0
                for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                    v = self.train_step(idx)
                    total += v
                    flor.log("loss", v)
                self.history.append(total)
                flor.log("total", total)  # hindsight
                flor.log("gs", self.global_step)  # hindsight
                flor.log("hist", sum(self.history))  # hindsight
        return self.history


Trainer(net, opt).fit()
""",
        {"epoch": ["total", "gs", "hist"]},
        period=2,
    ),
    Pattern(
        "two_optimizers_second_model_unregistered",
        """
disc = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
opt_d = torch.optim.Adam(disc.parameters(), lr=0.01)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            fake = net(X[idx])
            d_loss = disc(fake.detach()).mean() - disc(torch.randn_like(fake)).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = loss_fn(fake, Y[idx]) - 0.1 * disc(fake).mean()
            opt.zero_grad()
            g_loss.backward()
            opt.step()
            flor.log("loss", g_loss.item())
            flor.log("d_loss", d_loss.item())  # hindsight
        flor.log("d_w", float(disc[0].weight.sum()))  # hindsight
        flor.log("d_adam_steps", int(opt_d.state[disc[0].weight]["step"]))  # hindsight
""",
        {"epoch": ["d_w", "d_adam_steps"], "epoch, step": ["d_loss"]},
        period=2,
    ),
    Pattern(
        "lbfgs_closure",
        """
opt = torch.optim.LBFGS(net.parameters(), lr=0.5, max_iter=3)
calls = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(24)):

            def closure():
                global calls
                calls += 1
                opt.zero_grad()
                loss = loss_fn(net(X[idx]), Y[idx])
                loss.backward()
                return loss

            loss = opt.step(closure)
            flor.log("loss", loss.item())
            flor.log("calls_so_far", calls)  # hindsight
        flor.log("calls", calls)  # hindsight
        flor.log("n_iter", opt.state[opt._params[0]]["n_iter"])  # hindsight
""",
        {"epoch": ["calls", "n_iter"], "epoch, step": ["calls_so_far"]},
        period=2,
    ),
    Pattern(
        "metrics_defaultdict_list_and_tensor_logs",
        """
from collections import defaultdict

metrics = defaultdict(list)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            metrics["loss"].append(loss.detach())
            metrics["acc"].append((out.argmax(1) == Y[idx]).float().mean())
            flor.log("loss", loss.item())
            flor.log("loss_t", loss)  # hindsight
        flor.log("mean_loss", torch.stack(metrics["loss"][-4:]).mean())  # hindsight
        flor.log("acc_all", float(torch.stack(metrics["acc"]).mean()))  # hindsight
        flor.log("n_metrics", len(metrics["loss"]))  # hindsight
""",
        {"epoch": ["mean_loss", "acc_all", "n_metrics"], "epoch, step": ["loss_t"]},
        period=2,
    ),
    Pattern(
        "python_random_shuffle_and_if_branch",
        """
import random

random.seed(seed)
order = list(range(len(X)))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        random.shuffle(order)
        for step in flor.loop("step", range(4)):
            idx = torch.tensor(order[step * 12 : (step + 1) * 12])
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            if step % 2 == 1:
                opt.param_groups[0]["lr"] *= 0.99
                flor.log("odd_idx", order[step * 12])  # hindsight
        if epoch % 2 == 0:
            flor.log("even_w", float(net[0].weight.sum()))  # hindsight
            opt.param_groups[0]["momentum"] = 0.8
        else:
            flor.log("odd_first", order[0])  # hindsight
            opt.param_groups[0]["momentum"] = 0.9
""",
        {"epoch": ["even_w", "odd_first"], "epoch, step": ["odd_idx"]},
    ),
    Pattern(
        "container_entry_replaced_while_an_alias_keeps_the_old_one",
        """
class Meter:
    def __init__(self):
        self.sum, self.n = 0.0, 0

    def update(self, v):
        self.sum += v
        self.n += 1


meter = Meter()
meters = {"train": meter}  # after epoch 0 the loop replaces meters["train"]; meter keeps the old
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            meter.update(loss.item())
            flor.log("loss", loss.item())
        flor.log("meter_sum", meter.sum)  # hindsight
        flor.log("meter_n", meter.n)  # hindsight
        flor.log("entry_n", meters["train"].n)  # hindsight
        meters["train"] = Meter()
""",
        {"epoch": ["meter_sum", "meter_n", "entry_n"]},
        period=2,
    ),
    Pattern(
        "grad_scaler_and_bf16_autocast_unregistered",
        """
scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4, growth_interval=2)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            flor.log("loss", loss.item())
            flor.log("scale_in_step", scaler.get_scale())  # hindsight
        flor.log("scale", scaler.get_scale())  # hindsight
""",
        {"epoch": ["scale"], "epoch, step": ["scale_in_step"]},
        period=2,
    ),
    Pattern(
        "plateau_stepped_per_step_on_a_metric",
        """
sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.7, patience=1)
with flor.checkpointing(model=net, optimizer=opt):  # the scheduler is not registered
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step(loss.item())
            flor.log("loss", loss.item())
        flor.log("bad_epochs", sched.num_bad_epochs)  # hindsight
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
""",
        {"epoch": ["bad_epochs", "lr"]},
    ),
    Pattern(
        "statement_in_a_helper_called_in_the_step_loop",
        """
def grad_stats(model):
    total = 0.0
    for p in model.parameters():
        total += float(p.grad.abs().sum())
    flor.log("grad_abs", total)  # hindsight
    return total


norms = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            norms.append(grad_stats(net))
            opt.step()
            flor.log("loss", loss.item())
        flor.log("norm_sum", sum(norms))  # hindsight
""",
        {"epoch": ["norm_sum"], "epoch, step": ["grad_abs"]},
        period=2,
    ),
    Pattern(
        "outer_range_starts_late_and_numpy_global_shuffle",
        """
import numpy as np

np.random.seed(seed)
start = 1
order = np.arange(len(X))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(start, epochs + start)):
        np.random.shuffle(order)
        for idx in flor.loop("step", torch.from_numpy(order.copy()).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("first", int(order[0]))  # hindsight
        flor.log("np_draw", float(np.random.default_rng(int(order[1])).random()))  # hindsight
""",
        {"epoch": ["first", "np_draw"]},
        period=2,
    ),
    Pattern(
        "three_nested_loops_micro_batches",
        """
micro_seen = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            opt.zero_grad()
            for m in flor.loop("micro", idx.split(4)):
                loss = loss_fn(net(X[m]), Y[m]) / 3
                loss.backward()
                micro_seen += len(m)
                flor.log("micro_loss", loss.item())  # hindsight
            opt.step()
            flor.log("loss", loss.item())
        flor.log("micro_seen", micro_seen)  # hindsight
""",
        {"epoch": ["micro_seen"], "epoch, step, micro": ["micro_loss"]},
        period=2,
    ),
    Pattern(
        "best_state_dict_kept_in_memory_then_loaded",
        """
import copy

best_val, best_state = float("inf"), None
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
        if epoch % 2 == 1 or val < best_val:
            best_val, best_state = val, copy.deepcopy(net.state_dict())
        flor.log("best_w", float(best_state["0.weight"].sum()))  # hindsight
net.load_state_dict(best_state)
final_val = loss_fn(net(XV), YV).item()
flor.log("final_val", final_val)  # hindsight
""",
        {"epoch": ["best_w"], "": ["final_val"]},
        period=2,
    ),
    Pattern(
        "evaluation_every_other_epoch_value_carried",
        """
val = None
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        if epoch % 2 == 0:
            with torch.no_grad():
                val = loss_fn(net(XV), YV).item()
        flor.log("last_val", val)  # hindsight
""",
        {"epoch": ["last_val"]},
        period=2,
        seeds=(0, 1),
    ),
    Pattern(
        "list_fetched_with_get_then_appended",
        """
history = {"train": [], "seen": {}}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tr = history.get("train")
            tr.append(loss.item())
            seen = history.get("seen", {})
            seen[int(idx[0]) % 5] = epoch
            flor.log("loss", loss.item())
        flor.log("n_train", len(history["train"]))  # hindsight
        flor.log("train_sum", sum(history["train"]))  # hindsight
        flor.log("seen", sorted(history["seen"].items()))  # hindsight
""",
        {"epoch": ["n_train", "train_sum", "seen"]},
        period=2,
    ),
    Pattern(
        "generator_counts_into_a_global_and_a_bound_method_updates",
        """
class Meter:
    def __init__(self):
        self.sum, self.n = 0.0, 0

    def update(self, v):
        self.sum += v
        self.n += 1


n_batches = 0


def batches():
    global n_batches
    for idx in torch.randperm(len(X)).split(12):
        n_batches += 1
        yield idx


meter = Meter()
upd = meter.update  # the loop calls the bound method: it changes meter
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", batches()):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            upd(loss.item())
            flor.log("loss", loss.item())
        flor.log("n_batches", n_batches)  # hindsight
        flor.log("meter_n", meter.n)  # hindsight
        flor.log("meter_sum", meter.sum)  # hindsight
""",
        {"epoch": ["n_batches", "meter_n", "meter_sum"]},
        period=2,
    ),
]

#: the default run's patterns (``make test``): each one a bug was found and fixed with; the
#: others run in ``make test-all`` (CI runs both)
CASES = corpus_params(
    PATTERNS,
    (
        "dataloader_shuffle_generator_and_sampler",
        "three_nested_loops_micro_batches",
    ),
)


def test_more_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = sorted(n for names in p.levels.values() for n in names)
        assert declared == sorted(hindsight_names(p.text)), p.name
        assert p.text.startswith(PREAMBLE)


@pytest.mark.parametrize("pattern", CASES)
def test_replays_like_a_full_rerun(pattern: Pattern, histories: Histories, tmp_path: Path) -> None:
    """The old query (the hand-patched statements change nothing logged before), partial
    queries (replay starts from a checkpoint), then the wider ones (the rest replays)."""
    rec = histories.get(pattern, tmp_path)
    found = Mismatches()
    with found.session(rec, "old, partial, then wider", histories.workers) as check:
        check(pattern.old_query)
        partial, wide = queries(pattern)
        for sql in partial + wide:
            check(sql)
    found.assert_none()


def test_arg_predicates_push_down_and_stay_exact(histories: Histories, tmp_path: Path) -> None:
    """Predicates on an arg (``seed``) and loop columns restrict the replay to some runs and
    iterations: the rows are the oracle's, and EXPLAIN plans only the runs the predicate keeps."""
    pattern = next(p for p in PATTERNS if p.name == "one_cycle_lr_per_step")
    rec = histories.get(pattern, tmp_path)
    with florsql.connect(rec.history, replay="off") as con:
        plan = "\n".join(
            str(r[0]) for r in con.execute("EXPLAIN SELECT lr FROM logs WHERE seed = 1").fetchall()
        )
    assert plan.count("    run ") == 1, plan  # one of the two runs
    found = Mismatches()
    with found.session(rec, "args pushed down", histories.workers) as check:
        check("SELECT seed, epoch, step, lr FROM logs WHERE seed = 1 AND epoch >= 3")
        check("SELECT seed, epoch, mom FROM logs WHERE seed + 0 = 0 AND epoch BETWEEN 1 AND 2")
        check("SELECT seed, epoch, step, lr FROM logs WHERE seed = ? AND step = 1", (0,))
        check("SELECT seed, epoch, step, lr, mom FROM logs")
    found.assert_none()
