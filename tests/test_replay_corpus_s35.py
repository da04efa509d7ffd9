"""Stranger sweep s35 (h3): training-loop patterns the corpus did not hold yet, replayed and
compared with a full re-run of the hand-patched old version (the harness and oracle of
tests/test_replay_corpus_stranger.py); runs with their own command lines (``ArgCase.argvs``)
for predicates on args.

Exact already: an enabled CPU ``GradScaler`` growing every three steps, left out of
checkpointing; validation every third global step inside the step loop with dropout toggled;
a registered ``OneCycleLR`` stepped per accumulated step, with ``(i + 1) % accum`` and a
remainder flush, queried by ``WHERE accum = 3``; an unregistered ``ReduceLROnPlateau`` fed the
validation loss with early stopping on a dict and a ``break``; a GAN with two registered Adam
optimizers, the generator stepped every other step under a ``StepLR``; a ``Trainer`` class with
metrics cleared per epoch and a history never cleared; ``state_dict`` norms with BatchNorm
buffers under a bf16 ``autocast``; an ``AveragedModel`` with an EMA ``multi_avg_fn`` left out of
checkpointing; two learning rates in two runs queried by ``WHERE lr > 0.2``; a GAN registered as
``nets=[G, D]`` and ``optimizers={"g": ..., "d": ...}``; a scheduler registered without its
optimizer; a ``while`` loop over epochs with a manual counter, the step loop the outermost
(entered once per epoch).

Silently wrong or failing, now fixed:

- a sharpness-aware (SAM) optimizer registered as ``optimizer=sam``: its ``state_dict`` leaves
  out ``self.base_optimizer``'s (SGD's momentum), and a task from a checkpoint stepped the
  base optimizer from no momentum: per-step values silently wrong where no old statement read
  the weights (sharpness at epoch 3 step 3: 0.0213, a full re-run 0.0181), ``KeyError:
  'momentum_buffer'`` where today's statement read the buffers (registered or not);
- a Lightning-style model holding its own ``self.optimizer`` and ``self.scheduler``, registered
  as ``model=model`` alone: both restored by nothing (the lr at epoch 2: 0.16, a full re-run
  0.1024; the weights after it, silently);
- the last two epochs' weight files (``torch.save`` each epoch) averaged after the loop: a
  folder not ignored failed the task (``FileNotFoundError``: the files of the epochs a task
  skipped were never written), an ignored one shared by two seeds read the other seed's
  files (0.2654, a full re-run 0.2579, with only a data warning).

``BUGS`` names each failing pattern's bug (a strict xfail until fixed)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import test_replay_corpus_stranger as corpus
from tests.helpers_replay import (
    Recorded,
    Recorder,
    copy_recorded,
    corpus_params,
    hindsight_names,
    record_pair,
    shared_dir,
)
from tests.test_replay_corpus_stranger import Case

pytestmark = pytest.mark.slow


@dataclass
class ArgCase(Case):
    #: each run's command line (``seeds`` when empty)
    argvs: tuple[tuple[str, ...], ...] = ()

    def runs(self) -> list[tuple[str, ...]]:
        return list(self.argvs) or [("--seed", str(s)) for s in self.seeds]


SAM = """

class SAM(torch.optim.Optimizer):
    # sharpness-aware minimisation: the base optimizer's state is not in this state_dict
    def __init__(self, params, base_optimizer, rho=0.05, **kwargs):
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self):
        norm = torch.norm(
            torch.stack([p.grad.norm() for g in self.param_groups for p in g["params"]])
        )
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                e_w = p.grad * scale
                p.add_(e_w)
                self.state[p]["e_w"] = e_w
        self.zero_grad()
        return norm

    @torch.no_grad()
    def second_step(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.sub_(self.state[p]["e_w"])
        self.base_optimizer.step()
        self.zero_grad()


sam = SAM(net.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
"""

PATTERNS = [
    ArgCase(
        "sam_optimizer_whose_state_dict_leaves_out_the_base_optimizers_momentum",
        SAM
        + """
with flor.checkpointing(model=net, optimizer=sam):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            loss.backward()
            norm = sam.first_step()
            sharp = loss_fn(net(X[idx]), Y[idx])
            sharp.backward()
            sam.second_step()
            flor.log("sharpness", sharp.item() - loss.item())  # hindsight
        flor.log("lr", sam.param_groups[0]["lr"])
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"], "epoch, step": ["sharpness"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, step, sharpness FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "sam_optimizer_base_momentum_read_by_todays_statement",
        SAM
        + """
with flor.checkpointing(model=net, optimizer=sam):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            loss.backward()
            norm = sam.first_step()
            loss_fn(net(X[idx]), Y[idx]).backward()
            sam.second_step()
            flor.log("loss", loss.item())
        bufs = [sam.base_optimizer.state[p]["momentum_buffer"] for p in net.parameters()]
        flor.log("mom", sum(float(b.norm()) for b in bufs))  # hindsight
""",
        {"epoch": ["mom"]},
    ),
    ArgCase(
        "sam_optimizer_left_out_of_checkpointing_base_momentum_read_by_todays_statement",
        SAM
        + """
with flor.checkpointing(model=net):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            loss.backward()
            norm = sam.first_step()
            loss_fn(net(X[idx]), Y[idx]).backward()
            sam.second_step()
            flor.log("loss", loss.item())
            flor.log("norm", float(norm))  # hindsight
        bufs = [sam.base_optimizer.state[p]["momentum_buffer"] for p in net.parameters()]
        flor.log("mom", sum(float(b.norm()) for b in bufs))  # hindsight
""",
        {"epoch": ["mom"], "epoch, step": ["norm"]},
        partial=("SELECT seed, epoch, step, norm FROM logs WHERE epoch = 3 AND step >= 2",),
    ),
    ArgCase(
        "lightning_style_module_holding_its_optimizer_and_scheduler_registered_alone",
        """

class Lit(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.9)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, 1, gamma=0.8)

    def forward(self, x):
        return self.body(x)

    def training_step(self, idx):
        loss = loss_fn(self(X[idx]), Y[idx])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss


model = Lit()
with flor.checkpointing(model=model):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = model.training_step(idx)
            flor.log("bs", len(idx))
            flor.log("w", float(model.body[0].weight.sum()))  # hindsight
        model.scheduler.step()
        flor.log("epoch_lr", model.optimizer.param_groups[0]["lr"])  # hindsight
""",
        {"epoch": ["epoch_lr"], "epoch, step": ["w"]},
        old_query="SELECT seed, epoch, step, bs FROM logs",
        partial=("SELECT seed, epoch, step, w FROM logs WHERE epoch = 3 AND step >= 2",),
    ),
    ArgCase(
        "generator_and_critic_registered_as_lists_of_modules_and_optimizers",
        """
G = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 6))
D = nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=0.01, betas=(0.5, 0.9))
opt_d = torch.optim.SGD(D.parameters(), lr=0.05, momentum=0.9)
bce = nn.BCEWithLogitsLoss()
with flor.checkpointing(nets=[G, D], optimizers={"g": opt_g, "d": opt_d}):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            fake = G(torch.randn(len(idx), 3))
            d_loss = bce(D(X[idx]), torch.ones(len(idx), 1)) + bce(
                D(fake.detach()), torch.zeros(len(idx), 1)
            )
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = bce(D(fake), torch.ones(len(idx), 1))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            flor.log("bs", len(idx))
            flor.log("g_loss", g_loss.item())  # hindsight
        flor.log("d_w", float(D[0].weight.sum()))  # hindsight
""",
        {"epoch": ["d_w"], "epoch, step": ["g_loss"]},
        old_query="SELECT seed, epoch, step, bs FROM logs",
        partial=("SELECT seed, epoch, step, g_loss FROM logs WHERE epoch = 3 AND step >= 2",),
    ),
    ArgCase(
        "only_the_model_and_the_scheduler_registered_the_optimizer_left_out",
        """
sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.7)
with flor.checkpointing(model=net, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("bs", len(idx))
            flor.log("w", float(net[0].weight.sum()))  # hindsight
        sched.step()
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
""",
        {"epoch": ["lr"], "epoch, step": ["w"]},
        old_query="SELECT seed, epoch, step, bs FROM logs",
        partial=("SELECT seed, epoch, step, w FROM logs WHERE epoch = 3 AND step >= 2",),
    ),
    ArgCase(
        "grad_scaler_enabled_on_cpu_growing_every_three_steps_unregistered",
        """
scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=3)
with flor.checkpointing(model=net, optimizer=opt):
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
            flor.log("gn", float(gn))  # hindsight
        flor.log("scale_end", scaler.get_scale())  # hindsight
""",
        {"epoch": ["scale_end"], "epoch, step": ["scale", "gn"]},
        partial=("SELECT seed, epoch, step, scale FROM logs WHERE epoch = 2 AND step >= 2",),
    ),
    ArgCase(
        "last_two_epochs_weights_saved_to_files_averaged_after_the_loop",
        """
import os

os.makedirs("ckpts", exist_ok=True)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        torch.save(net.state_dict(), f"ckpts/s{seed}_e{epoch}.pt")
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
states = [torch.load(f"ckpts/s{seed}_e{e}.pt") for e in range(epochs - 2, epochs)]
net.load_state_dict({k: sum(s[k] for s in states) / len(states) for k in states[0]})
with torch.no_grad():
    avg_out = net(XV)
    flor.log("avg_val", loss_fn(avg_out, YV).item())  # hindsight
""",
        {"epoch": ["w_sum"], "": ["avg_val"]},
        seeds=(0, 1),
        fresh=True,
    ),
    ArgCase(
        "per_epoch_weight_files_in_an_ignored_folder_shared_by_the_seeds_averaged_after",
        """
import os

os.makedirs("ckpts", exist_ok=True)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        torch.save(net.state_dict(), f"ckpts/e{epoch}.pt")
states = [torch.load(f"ckpts/e{e}.pt") for e in range(epochs - 2, epochs)]
net.load_state_dict({k: sum(s[k] for s in states) / len(states) for k in states[0]})
with torch.no_grad():
    avg_out = net(XV)
    flor.log("avg_val", loss_fn(avg_out, YV).item())  # hindsight
""",
        {"": ["avg_val"]},
        extra={".gitignore": "ckpts/\n"},
        seeds=(0, 1),
        fresh=True,
    ),
    ArgCase(
        "validation_every_third_global_step_inside_the_step_loop_with_dropout",
        """
net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
gstep, last_val = 0, None
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            net.train()
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            gstep += 1
            flor.log("loss", loss.item())
            if gstep % 3 == 0:
                net.eval()
                with torch.no_grad():
                    out = net(XV)
                    last_val = loss_fn(out, YV).item()
                    flor.log("val_acc", (out.argmax(1) == YV).float().mean().item())  # hindsight
                net.train()
            flor.log("gstep", gstep)  # hindsight
        flor.log("last_val", last_val)  # hindsight
""",
        {"epoch": ["last_val"], "epoch, step": ["val_acc", "gstep"]},
        partial=("SELECT seed, epoch, step, val_acc FROM logs WHERE epoch = 2 AND step >= 1",),
    ),
    ArgCase(
        "one_cycle_registered_stepped_per_accumulated_step_with_a_remainder_flush",
        """
accum = flor.arg("accum", 3)
batches = 5  # 48 rows in batches of 10
updates = -(-batches // accum)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=epochs * updates)
with flor.checkpointing(model=net, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        opt.zero_grad()
        for i, idx in flor.loop("step", enumerate(torch.randperm(len(X)).split(10))):
            loss = loss_fn(net(X[idx]), Y[idx]) / accum
            loss.backward()
            flor.log("loss", loss.item())
            if (i + 1) % accum == 0 or i + 1 == batches:
                gn = torch.nn.utils.clip_grad_norm_(net.parameters(), 2.0)
                flor.log("acc_gn", float(gn))  # hindsight
                opt.step()
                sched.step()
                opt.zero_grad()
                flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
                flor.log("momentum", opt.param_groups[0]["momentum"])  # hindsight
        flor.log("last_lr", sched.get_last_lr()[0])  # hindsight
""",
        {"epoch": ["last_lr"], "epoch, step": ["acc_gn", "lr", "momentum"]},
        argvs=(("--seed", "0", "--accum", "2"), ("--seed", "1", "--accum", "3")),
        partial=(
            "SELECT seed, accum, epoch, step, lr FROM logs WHERE accum = 3 AND epoch >= 2",
            "SELECT seed, accum, epoch, step, acc_gn FROM logs WHERE epoch = 1",
        ),
        fresh=True,
    ),
    ArgCase(
        "plateau_left_out_of_checkpointing_fed_validation_then_early_stopping",
        """
epochs = 7
YV = 1 - YV  # validation loss rises: the plateau halves the lr, patience runs out
plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
best = {"val": float("inf"), "epoch": -1, "bad": 0}
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
        plateau.step(val)
        flor.log("val", val)
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
        flor.log("plateau_bad", plateau.num_bad_epochs)  # hindsight
        if val < best["val"]:
            best.update(val=val, epoch=epoch, bad=0)
        else:
            best["bad"] += 1
        flor.log("bad", best["bad"])  # hindsight
        if best["bad"] >= 4:
            break
flor.log("best_epoch", best["epoch"])  # hindsight
flor.log("stopped", epoch)  # hindsight
""",
        {"epoch": ["lr", "plateau_bad", "bad"], "": ["best_epoch", "stopped"]},
        old_query="SELECT seed, epoch, val FROM logs",
        first=3,
        fresh=True,
    ),
    ArgCase(
        "gan_two_registered_optimizers_generator_every_other_step_with_a_step_lr",
        """
G = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 6))
D = nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=0.01, betas=(0.5, 0.9))
opt_d = torch.optim.Adam(D.parameters(), lr=0.01, betas=(0.5, 0.9))
sched_g = torch.optim.lr_scheduler.StepLR(opt_g, step_size=1, gamma=0.7)
bce = nn.BCEWithLogitsLoss()
with flor.checkpointing(G=G, D=D, opt_g=opt_g, opt_d=opt_d, sched_g=sched_g):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in flor.loop("step", enumerate(torch.randperm(len(X)).split(8))):
            real = X[idx]
            fake = G(torch.randn(len(idx), 3))
            d_loss = bce(D(real), torch.ones(len(idx), 1)) + bce(
                D(fake.detach()), torch.zeros(len(idx), 1)
            )
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            flor.log("d_loss", d_loss.item())
            d_gn = torch.norm(torch.stack([p.grad.norm() for p in D.parameters()]))
            flor.log("d_gn", float(d_gn))  # hindsight
            if i % 2 == 0:
                g_loss = bce(D(fake), torch.ones(len(idx), 1))
                opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()
                flor.log("g_loss", g_loss.item())  # hindsight
        sched_g.step()
        flor.log("g_lr", opt_g.param_groups[0]["lr"])  # hindsight
        flor.log("d_step", int(opt_d.state[D[0].weight]["step"]))  # hindsight
""",
        {"epoch": ["g_lr", "d_step"], "epoch, step": ["d_gn", "g_loss"]},
        old_query="SELECT seed, epoch, step, d_loss FROM logs",
        partial=("SELECT seed, epoch, step, g_loss FROM logs WHERE epoch = 2 AND step >= 2",),
    ),
    ArgCase(
        "trainer_class_with_metrics_cleared_per_epoch_and_a_history_never_cleared",
        """
from collections import defaultdict


class Trainer:
    def __init__(self, model, optimizer):
        self.model, self.opt = model, optimizer
        self.history = defaultdict(list)
        self.metrics = defaultdict(float)
        self.global_step = 0

    def train_step(self, idx):
        loss = loss_fn(self.model(X[idx]), Y[idx])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.global_step += 1
        return loss.item()

    def fit(self, epochs):
        with flor.checkpointing(model=self.model, optimizer=self.opt):
            for epoch in flor.loop("epoch", range(epochs)):
                self.metrics.clear()
                for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                    loss = self.train_step(idx)
                    self.history["loss"].append(loss)
                    self.metrics["loss"] += loss
                    self.metrics["n"] += 1
                    flor.log("loss", loss)
                    flor.log("gstep", self.global_step)  # hindsight
                flor.log("epoch_mean", self.metrics["loss"] / self.metrics["n"])  # hindsight
                flor.log("hist_len", len(self.history["loss"]))  # hindsight
                flor.log("hist_sum", sum(self.history["loss"]))  # hindsight
        flor.log("total_steps", self.global_step)  # hindsight


Trainer(net, opt).fit(epochs)
""",
        {
            "epoch": ["epoch_mean", "hist_len", "hist_sum"],
            "epoch, step": ["gstep"],
            "": ["total_steps"],
        },
        partial=("SELECT seed, epoch, step, gstep FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "state_dict_norms_with_batchnorm_buffers_and_bf16_autocast",
        """
net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.AdamW(net.parameters(), lr=0.02, weight_decay=0.1)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = net(X[idx])
            loss = loss_fn(out.float(), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("tracked", int(net[1].num_batches_tracked))  # hindsight
        sd = net.state_dict()
        flor.log("sd_norm", float(sum(v.double().norm() ** 2 for v in sd.values())))  # hindsight
        flor.log("rv_mean", float(net[1].running_var.mean()))  # hindsight
        net.eval()
        with torch.no_grad():
            flor.log("val", loss_fn(net(XV), YV).item())
""",
        {"epoch": ["sd_norm", "rv_mean"], "epoch, step": ["tracked"]},
        old_query="SELECT seed, epoch, val FROM logs",
    ),
    ArgCase(
        "averaged_model_with_an_ema_avg_fn_unregistered_evaluated_after_the_step_loop",
        """
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.8))
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
            out = ema(XV)
            flor.log("ema_val", loss_fn(out, YV).item())  # hindsight
            flor.log("n_avg", int(ema.n_averaged))  # hindsight
""",
        {"epoch": ["ema_val", "n_avg"]},
        fresh=True,
    ),
    ArgCase(
        "runs_of_two_learning_rates_queried_by_the_arg_then_all",
        """
lr = flor.arg("lr", 0.2)
for g in opt.param_groups:
    g["lr"] = lr
hist = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            hist.append(loss.item())
            flor.log("loss", loss.item())
            flor.log("p_lr", opt.param_groups[0]["lr"] * 10)  # hindsight
        flor.log("hist_tail", sum(hist[-6:]))  # hindsight
""",
        {"epoch": ["hist_tail"], "epoch, step": ["p_lr"]},
        argvs=(("--seed", "0", "--lr", "0.1"), ("--seed", "0", "--lr", "0.3")),
        partial=(
            "SELECT lr, epoch, hist_tail FROM logs WHERE lr > 0.2 AND epoch >= 2",
            "SELECT lr, epoch, step, p_lr FROM logs WHERE lr < 0.2 AND epoch = 1 AND step = 2",
        ),
    ),
]

BUGS: dict[str, str] = {}
for _p in PATTERNS:
    _p.bug = BUGS.get(_p.name)
assert not set(BUGS) - {p.name for p in PATTERNS}
CASES = corpus_params(PATTERNS, [p.name for p in PATTERNS])
FRESH = corpus_params([p for p in PATTERNS if p.fresh], [p.name for p in PATTERNS if p.fresh])


def test_s35_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


class Histories(corpus.StrangerHistories):
    """Each case's recorded pair, once per session, its runs' command lines its own (shared
    by the later sweeps' modules, each with its own ``prefix``)."""

    prefix = "s35"

    def get(self, p: Case, dest: Path) -> Recorded:
        assert isinstance(p, ArgCase)

        def build(path: Path) -> None:
            if self._recorder is None:
                self._recorder = Recorder(self.factory.mktemp("runlogs"))
            record_pair(self._recorder, path, p.text, p.runs(), period=p.period, extra=p.extra)

        path = shared_dir(self.factory, self.worker_id, f"{self.prefix}-{p.name}", build)
        return copy_recorded(Recorded(path / "history", path / "oracle"), dest)


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Histories]:
    h = Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", CASES)
def test_s35_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_partial_then_wider(pattern, histories, tmp_path)


@pytest.mark.parametrize("pattern", FRESH)
def test_s35_fresh_store_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_fresh(pattern, histories, tmp_path)


WHILE_EPOCHS = """
epoch, total = 0, 0.0
with flor.checkpointing(model=net, optimizer=opt):
    while epoch < epochs:
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            flor.log("loss", loss.item())
            flor.log("w", float(net[0].weight.sum()))  # hindsight
            flor.log("ep_total", epoch * 100 + total)  # hindsight
        epoch += 1
flor.log("epochs_run", epoch)  # hindsight
flor.log("total", total)  # hindsight
"""


def test_s35_a_while_loop_over_epochs_reenters_the_step_loop(
    histories: Histories, tmp_path: Path
) -> None:
    """No ``flor.loop`` over epochs: a ``while`` with a manual counter enters the step loop (the
    outermost) once per epoch. Per-step and run-level hindsight equal a full re-run's."""
    from tests.helpers_replay import Mismatches
    from tests.test_replay_corpus import PREAMBLE

    if histories._recorder is None:
        histories._recorder = Recorder(histories.factory.mktemp("runlogs"))
    rec = record_pair(
        histories._recorder, tmp_path, PREAMBLE + WHILE_EPOCHS, [("--seed", "0"), ("--seed", "1")]
    )
    found = Mismatches()
    with found.session(rec, "while", histories.workers) as check:
        check("SELECT seed, step, w FROM logs WHERE seed = 1 AND step >= 2")
        check("SELECT seed, step, loss, w, ep_total FROM logs")
        check("SELECT seed, epochs_run, total FROM logs WHERE total IS NOT NULL")
    found.assert_none()
