"""Stranger sweep s37 (h1): training-loop patterns the corpus did not hold yet, replayed and
compared with a full re-run of the hand-patched old version (the harness and oracle of
tests/test_replay_corpus_stranger.py, runs with their own command lines as ``ArgCase`` of
tests/test_replay_corpus_s35.py). Most old versions log only a value no state changes (the
learning rate, a count), so verification cannot rescue a wrong restore: a wrong value is silent.

Exact already: Adam re-created every other epoch inside the epoch loop (the registered one
stale); a model growing a block at a milestone with ``add_param_group``; a buffer registered at
a milestone; a parametrization registered on the head at a milestone; ``LazyLinear`` layers
materialised by a dry run; a fixed validation noise by ``get_rng_state``/``set_rng_state``;
today's probe inside ``torch.random.fork_rng()`` reseeded per epoch; a numpy ``SeedSequence``
spawning a generator per epoch; a ``LambdaLR`` registered with a bound method of a warm-up
object (torch saves no state of it); frozen encoder features cached in a dict by sample index;
learnt loss weights in an unregistered module trained by the registered optimizer; REINFORCE
with a running baseline over ``Categorical.sample()``; a head weight replaced by a new
``Parameter`` the optimizer never sees; a snapshot ensemble of deep-copied state dicts through
``torch.func.functional_call``; magnitude-pruning masks in a dict tightened each epoch; a
self-paced order sorted by last epoch's per-example losses; Adam with a tensor learning rate
under a registered ``ExponentialLR``; a head bound in the step loop, shrunk and perturbed after
it; gradient noise annealed by a global step; a ``Trainer.fit``
with a callback holding a back reference to the trainer; a registered dict of the model, the
optimizer and a step counter; per-layer state in a ``weakref.WeakKeyDictionary``; two tasks
alternated by an ``itertools.cycle`` with five steps an epoch; a row view of a preallocated
numpy history filled in the step loop; detached rows of the live weights kept in a list; a
gradient accumulated over the epoch, bound by name in the step loop and averaged in place after
it; an unregistered EMA model's head bound in the step loop, the EMA moved after it, and an
optimizer's ``state_dict()`` kept without a copy, read after a damping (both added after the
fixes below; not run before them).

Silently wrong or failing, now fixed:

- a gradient EMA in a dict keyed by ``id(p)``: restored, its keys were no parameter's id in the
  replay's process, and ``setdefault`` added fresh entries beside them (``n_ema`` 8 for a full
  re-run's 4; ``g0`` at epoch 3, step 0: 0.0164 for 0.0996). A local holding a live object's
  id is now left out of the checkpoint (missed), and the replay runs from where it can;
- a numpy view of the live weights (``w_np = net[0].weight.detach().numpy()``) read after an
  epoch's end shrink: restored as a copy frozen at the checkpoint (``w00`` at epoch 3: 1.3041
  for 1.1737); a momentum buffer bound by name in the step loop and damped in place after it
  (``buf`` at epoch 3: 0.5926 for 0.2963). Each is now saved as a reference to the registered
  tensor (or optimizer state) it aliases, as a part of one is (rows of the live weights kept
  in a list without a clone: exact before too, the values agreeing by how the replay ran);
- a parameter group bound in the step loop (``group = opt.param_groups[0]``) read after the
  scheduler's step: restored as a copy of the dict, one step behind (``group_lr`` at epoch 3:
  0.0686 for 0.04802). The containers inside a registered optimizer (its groups, their
  ``params``, a parameter's state dict) and a registered model's submodules are now saved as
  references to the replay's own;
- a list of a registered plain dict (``hist = {"loss": [], ...}``) bound in the step loop
  (``losses = hist["loss"]``), appended to through ``hist`` after it: restored as a copy, it
  lost the appends after the checkpoint (``n_losses`` at epoch 3: 19 for 20; ``last``
  0.0968 for 0.1359). The mutable objects inside a registered plain object (three levels,
  2048 entries; not torch objects, which the restore of a registered list of models makes
  anew: a reference bound ``G`` to the wrong one) are now saved as references too;
- a weight taken out of the optimizer's group at a milestone (its momentum left in
  ``opt.state``): torch's own ``state_dict()`` raises ``KeyError``, and florsql's checkpoint
  let it end the training run. The checkpoint is now skipped with one ``RecordWarning``.

``BUGS`` names each failing pattern's bug (a strict xfail until fixed)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from florsql.record import frame_state
from tests import test_replay_corpus_stranger as corpus
from tests.helpers import make_repo, run_script
from tests.helpers_replay import (
    corpus_params,
    hindsight_names,
)
from tests.test_replay_corpus_s35 import ArgCase
from tests.test_replay_corpus_s35 import Histories as ArgHistories
from tests.test_replay_corpus_stranger import Case

STEP = """
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
"""

PATTERNS = [
    ArgCase(
        "adam_recreated_every_other_epoch_inside_the_epoch_loop",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch % 2 == 0:  # a restart: fresh moments, a lower lr each time
            opt = torch.optim.Adam(net.parameters(), lr=0.02 / (1 + epoch))
        flor.log("lr", opt.param_groups[0]["lr"])  # all the old version logged
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("step_loss", loss.item())  # hindsight
        flor.log("moment", sum(float(s["exp_avg"].norm()) for s in opt.state.values()))  # hindsight
""",
        {"epoch": ["moment"], "epoch, step": ["step_loss"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, moment FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "model_grows_a_hidden_block_at_a_milestone_with_add_param_group",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 2:  # grow: a new block before the head, its own learning rate
            net[2] = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), net[2])
            opt.add_param_group({"params": list(net[2][0].parameters()), "lr": 0.05})
        flor.log("n_params", sum(p.numel() for p in net.parameters()))
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("gn", float(net[0].weight.grad.norm()))  # hindsight
        with torch.no_grad():  # hindsight
            flor.log("val", float(loss_fn(net(XV), YV)))  # hindsight
""",
        {"epoch": ["val"], "epoch, step": ["gn"]},
        old_query="SELECT seed, epoch, n_params FROM logs",
        partial=("SELECT seed, epoch, val FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "a_buffer_registered_on_the_model_at_a_milestone",
        """


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x):
        mask = getattr(self, "feat_mask", None)
        if mask is not None:
            x = x * mask
        return self.body(x)


net = Masked()
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:  # feature dropout fixed from here on, kept in the state_dict
            net.register_buffer("feat_mask", (torch.rand(6) > 0.4).float())
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
        flor.log("lr", opt.param_groups[0]["lr"])
        with torch.no_grad():  # hindsight
            flor.log("val", float(loss_fn(net(XV), YV)))  # hindsight
""",
        {"epoch": ["val"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, val FROM logs WHERE epoch = 3",),
        seeds=(0, 1),
    ),
    ArgCase(
        "a_parametrization_registered_on_the_head_at_a_milestone",
        """
from torch.nn.utils import parametrize


class NonNeg(nn.Module):
    def forward(self, w):
        return w.abs()


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:  # a constraint from here on: the weight becomes parametrizations...
            parametrize.register_parametrization(net[2], "weight", NonNeg())
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("head_sum", float(net[2].weight.sum()))  # hindsight
        with torch.no_grad():  # hindsight
            flor.log("val", float(loss_fn(net(XV), YV)))  # hindsight
""",
        {"epoch": ["head_sum", "val"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, val FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "lazy_linear_layers_materialised_by_a_dry_run",
        """
net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(2))
net(X[:2])  # materialise before the optimizer is made
opt = torch.optim.Adam(net.parameters(), lr=0.02)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("loss", loss.item())
            flor.log("w0", float(net[0].weight[0].sum()))  # hindsight
        flor.log("kind", type(net[0]).__name__)  # hindsight
""",
        {"epoch": ["kind"], "epoch, step": ["w0"]},
    ),
    ArgCase(
        "fixed_validation_noise_by_saving_and_restoring_the_global_rng_state",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            x = X[idx] + 0.1 * torch.randn(len(idx), 6)
            loss = loss_fn(net(x), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        saved = torch.get_rng_state()
        torch.manual_seed(1234)  # the same noisy validation set every epoch
        noisy = XV + 0.3 * torch.randn_like(XV)
        torch.set_rng_state(saved)
        with torch.no_grad():
            flor.log("val", float(loss_fn(net(XV), YV)))
            flor.log("noisy_val", float(loss_fn(net(noisy), YV)))  # hindsight
        flor.log("noise_sum", float(noisy.sum()))  # hindsight
        flor.log("next_draw", float(torch.rand(())))
""",
        {"epoch": ["noisy_val", "noise_sum"]},
        old_query="SELECT seed, epoch, val, next_draw FROM logs",
        seeds=(0, 1),
    ),
    ArgCase(
        "todays_probe_draws_inside_fork_rng_seeded_by_the_epoch",
        """
net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
        flor.log("lr", opt.param_groups[0]["lr"])
        with torch.random.fork_rng():  # hindsight
            torch.manual_seed(100 + epoch)  # hindsight
            flor.log("probe", float(net(torch.randn(4, 6)).sum()))  # hindsight
        net.eval()
        with torch.no_grad():
            flor.log("val", float(loss_fn(net(XV), YV)))
""",
        {"epoch": ["probe"]},
        old_query="SELECT seed, epoch, val FROM logs",
        partial=("SELECT seed, epoch, probe FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "gradient_ema_in_a_dict_keyed_by_the_id_of_each_parameter",
        """
gema = {}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            for p in net.parameters():
                g = gema.setdefault(id(p), torch.zeros_like(p))
                g.mul_(0.9).add_(p.grad, alpha=0.1)
            opt.step()
            flor.log("g0", float(gema[id(net[0].weight)].norm()))  # hindsight
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("n_ema", len(gema))  # hindsight
        flor.log("gema", sum(float(v.norm()) for v in gema.values()))  # hindsight
""",
        {"epoch": ["n_ema", "gema"], "epoch, step": ["g0"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, step, g0 FROM logs WHERE epoch = 3",),
        fresh=True,
    ),
    ArgCase(
        "numpy_seed_sequence_spawning_a_generator_per_epoch",
        """
import numpy as np

ss = np.random.SeedSequence(seed)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        rng = np.random.default_rng(ss.spawn(1)[0])  # an independent stream per epoch
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            noise = torch.from_numpy(rng.normal(0, 0.1, (len(idx), 6)).astype("float32"))
            loss = loss_fn(net(X[idx] + noise), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("noise_last", float(noise.sum()))  # hindsight
        flor.log("spawned", ss.n_children_spawned)  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["noise_last", "spawned", "w"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, w FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "lambda_lr_registered_with_a_bound_method_of_a_warmup_object",
        """


class Warmup:
    # LambdaLR saves a callable object's __dict__, not a bound method's object's
    def __init__(self, n):
        self.n = n
        self.calls = 0

    def factor(self, _):
        self.calls += 1
        return min(1.0, self.calls / self.n)


warm = Warmup(9)
sched = torch.optim.lr_scheduler.LambdaLR(opt, warm.factor)
with flor.checkpointing(model=net, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            sched.step()
        flor.log("n_batches", len(X) // 12)
        flor.log("lr_now", sched.get_last_lr()[0])  # hindsight
        flor.log("calls", warm.calls)  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["lr_now", "calls", "w"]},
        old_query="SELECT seed, epoch, n_batches FROM logs",
        partial=("SELECT seed, epoch, w FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "frozen_encoder_features_cached_in_a_dict_by_sample_index",
        """
enc = nn.Sequential(nn.Linear(6, 6), nn.Tanh())
for p in enc.parameters():
    p.requires_grad_(False)
cache = {}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        hits = 0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            feats = []
            for j in idx.tolist():
                if j in cache:
                    hits += 1
                else:
                    cache[j] = enc(X[j])
                feats.append(cache[j])
            loss = loss_fn(net(torch.stack(feats)), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("hits", hits)  # hindsight
        flor.log("cached", len(cache))  # hindsight
        flor.log("feat_sum", float(sum(float(v.sum()) for v in cache.values())))  # hindsight
""",
        {"epoch": ["hits", "cached", "feat_sum"]},
    ),
    ArgCase(
        "uncertainty_loss_weights_in_an_unregistered_module_trained_by_the_optimizer",
        """


class UncertaintyLoss(nn.Module):
    # Kendall et al.: two losses weighted by learnt log variances
    def __init__(self):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(2))

    def forward(self, l1, l2):
        w = torch.exp(-self.log_vars)
        return w[0] * l1 + w[1] * l2 + self.log_vars.sum()


crit = UncertaintyLoss()
opt = torch.optim.Adam([*net.parameters(), *crit.parameters()], lr=0.05)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = crit(loss_fn(out, Y[idx]), out.pow(2).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("log_var0", float(crit.log_vars[0]))  # hindsight
        with torch.no_grad():  # hindsight
            flor.log("val", float(loss_fn(net(XV), YV)))  # hindsight
""",
        {"epoch": ["log_var0", "val"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, val FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "reinforce_with_a_running_baseline_sampling_from_a_categorical",
        """
baseline = 0.0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            dist = torch.distributions.Categorical(logits=net(X[idx]))
            a = dist.sample()
            r = (a == Y[idx]).float()
            loss = -((r - baseline) * dist.log_prob(a)).mean()
            baseline = 0.9 * baseline + 0.1 * float(r.mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("reward", float(r.mean()))  # hindsight
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("baseline", baseline)  # hindsight
""",
        {"epoch": ["baseline"], "epoch, step": ["reward"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, step, reward FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "a_head_weight_replaced_by_a_new_parameter_the_optimizer_never_sees",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:  # re-initialised head: the optimizer still steps the old Parameter
            net[2].weight = nn.Parameter(torch.randn(2, 8) * 0.1)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("head", float(net[2].weight.sum()))  # hindsight
        with torch.no_grad():  # hindsight
            flor.log("val", float(loss_fn(net(XV), YV)))  # hindsight
""",
        {"epoch": ["head", "val"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, val FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "a_weight_dropped_from_the_optimizers_group_at_a_milestone",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 2:  # freeze the first layer's weight by taking it out of the optimizer
            group = opt.param_groups[0]
            group["params"] = [p for p in group["params"] if p is not net[0].weight]
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            flor.log("w0", float(net[0].weight.sum()))  # hindsight
        flor.log("n_opt", len(opt.param_groups[0]["params"]))
        flor.log("b0", float(net[0].bias.sum()))  # hindsight
""",
        {"epoch": ["b0"], "epoch, step": ["w0"]},
        old_query="SELECT seed, epoch, n_opt FROM logs",
        partial=("SELECT seed, epoch, step, w0 FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "snapshot_ensemble_of_deep_copied_state_dicts_through_functional_call",
        """
import copy

from torch.func import functional_call

snaps = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
        snaps.append(copy.deepcopy(net.state_dict()))
        flor.log("lr", opt.param_groups[0]["lr"])
        with torch.no_grad():  # hindsight
            outs = [functional_call(net, sd, (XV,)) for sd in snaps[-2:]]  # hindsight
            flor.log("ens_val", float(loss_fn(torch.stack(outs).mean(0), YV)))  # hindsight
        flor.log("n_snaps", len(snaps))  # hindsight
""",
        {"epoch": ["ens_val", "n_snaps"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, ens_val FROM logs WHERE epoch = 3",),
        seeds=(0, 1),
    ),
    ArgCase(
        "magnitude_pruning_masks_in_a_dict_tightened_each_epoch",
        """
masks = {n: torch.ones_like(p) for n, p in net.named_parameters() if p.dim() == 2}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            with torch.no_grad():
                for n, p in net.named_parameters():
                    if n in masks:
                        p.mul_(masks[n])
        for n, p in net.named_parameters():
            if n in masks:
                thr = p.detach().abs()[masks[n].bool()].quantile(0.2)
                masks[n] = (p.detach().abs() > thr).float() * masks[n]
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("density", float(sum(m.sum() for m in masks.values())))  # hindsight
        with torch.no_grad():  # hindsight
            flor.log("val", float(loss_fn(net(XV), YV)))  # hindsight
""",
        {"epoch": ["density", "val"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, val FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "self_paced_order_sorted_by_last_epochs_per_example_losses",
        """
per_ex = torch.zeros(len(X))
order = torch.randperm(len(X))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", order.split(12)):
            per = nn.functional.cross_entropy(net(X[idx]), Y[idx], reduction="none")
            per_ex[idx] = per.detach()
            loss = per.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("first", int(idx[0]))  # hindsight
        order = per_ex.argsort()  # easy examples first next epoch
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("hardest", int(order[-1]))  # hindsight
        flor.log("per_ex_mean", float(per_ex.mean()))  # hindsight
""",
        {"epoch": ["hardest", "per_ex_mean"], "epoch, step": ["first"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, step, first FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "adam_with_a_tensor_learning_rate_under_a_registered_exponential_lr",
        """
opt = torch.optim.Adam(net.parameters(), lr=torch.tensor(0.03), foreach=False)
sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.7)
with flor.checkpointing(model=net, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
        sched.step()
        flor.log("n", len(X))
        flor.log("lr_t", float(opt.param_groups[0]["lr"]))  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["lr_t", "w"]},
        old_query="SELECT seed, epoch, n FROM logs",
        partial=("SELECT seed, epoch, w FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "gradient_noise_annealed_by_a_global_step_from_the_global_rng",
        """
gstep = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            gstep += 1
            sigma = 0.05 / (1 + gstep) ** 0.55
            for p in net.parameters():
                p.grad.add_(torch.randn_like(p) * sigma)
            opt.step()
            flor.log("gn", float(net[0].weight.grad.norm()))  # hindsight
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("sigma", sigma)  # hindsight
""",
        {"epoch": ["sigma"], "epoch, step": ["gn"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, step, gn FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "trainer_fit_with_a_callback_holding_a_back_reference_to_the_trainer",
        """


class Plateau:
    def __init__(self, patience):
        self.patience, self.best, self.bad, self.trainer = patience, float("inf"), 0, None

    def on_epoch_end(self, val):
        if val < self.best - 1e-3:
            self.best, self.bad = val, 0
        else:
            self.bad += 1
        if self.bad >= self.patience:
            self.trainer.lr_scale *= 0.5
            self.bad = 0


class Trainer:
    def __init__(self, net, opt, callbacks):
        self.net, self.opt, self.callbacks = net, opt, callbacks
        self.lr_scale = 1.0
        for cb in callbacks:
            cb.trainer = self

    def fit(self, epochs):
        with flor.checkpointing(model=self.net, optimizer=self.opt):
            for epoch in flor.loop("epoch", range(epochs)):
                for g in self.opt.param_groups:
                    g["lr"] = 0.4 * self.lr_scale
                for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                    loss = loss_fn(self.net(X[idx]), Y[idx])
                    self.opt.zero_grad()
                    loss.backward()
                    self.opt.step()
                with torch.no_grad():
                    val = float(loss_fn(self.net(XV), YV))
                for cb in self.callbacks:
                    cb.on_epoch_end(val)
                flor.log("epoch_seen", epoch)
                flor.log("bad", self.callbacks[0].bad)  # hindsight
                flor.log("scale", self.lr_scale)  # hindsight
                flor.log("val", val)  # hindsight


Trainer(net, opt, [Plateau(1)]).fit(epochs)
""",
        {"epoch": ["bad", "scale", "val"]},
        old_query="SELECT seed, epoch, epoch_seen FROM logs",
        partial=("SELECT seed, epoch, val FROM logs WHERE epoch = 3",),
        seeds=(0, 2),
    ),
    ArgCase(
        "a_registered_dict_of_the_model_the_optimizer_and_a_step_counter",
        """
state = {"model": net, "opt": opt, "step": 0, "best": float("inf")}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(state["model"](X[idx]), Y[idx])
            state["opt"].zero_grad()
            loss.backward()
            state["opt"].step()
            state["step"] += 1
            state["best"] = min(state["best"], loss.item())
            flor.log("at", state["step"])  # hindsight
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("best", state["best"])  # hindsight
        flor.log("w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["best", "w"], "epoch, step": ["at"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, w FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "per_parameter_state_in_a_weak_key_dictionary",
        """
import weakref

trace = weakref.WeakKeyDictionary()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            for m in (net[0], net[2]):  # per layer, held weakly
                trace[m] = trace.get(m, 0.0) * 0.9 + float(m.weight.grad.norm())
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("trace0", trace[net[0]])  # hindsight
        flor.log("n_trace", len(trace))  # hindsight
""",
        {"epoch": ["trace0", "n_trace"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, trace0 FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "two_tasks_alternated_by_an_itertools_cycle_five_steps_an_epoch",
        """
import itertools

heads = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 2)})
opt = torch.optim.SGD([*net.parameters(), *heads.parameters()], lr=0.1)
tasks = itertools.cycle(["a", "b"])  # five steps an epoch: the phase shifts each epoch
with flor.checkpointing(model=net, heads=heads, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        counts = {"a": 0, "b": 0}
        for idx in flor.loop("step", torch.randperm(len(X)).split(10)):
            task = next(tasks)
            counts[task] += 1
            y = Y[idx] if task == "a" else 1 - Y[idx]
            loss = loss_fn(heads[task](net(X[idx])), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("task_loss", loss.item())  # hindsight
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("first_task", next(iter(k for k, v in counts.items() if v == 3)))  # hindsight
        flor.log("last_task", task)  # hindsight
""",
        {"epoch": ["first_task", "last_task"], "epoch, step": ["task_loss"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, step, task_loss FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "a_numpy_view_of_the_live_weights_read_after_an_epoch_end_shrink",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        w_np = net[0].weight.detach().numpy()  # no copy: the live weights
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
        with torch.no_grad():
            net[0].weight.mul_(0.9)  # a decoupled shrink once per epoch
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("w00", float(w_np[0, 0]))  # hindsight
""",
        {"epoch": ["w00"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, w00 FROM logs WHERE epoch = 3",),
        fresh=True,
    ),
    ArgCase(
        "a_momentum_buffer_bound_in_the_step_loop_damped_in_place_after_it",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            buf = opt.state[net[0].weight]["momentum_buffer"]
        for st in opt.state.values():
            st["momentum_buffer"].mul_(0.5)  # damp the momentum at each epoch's end
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("buf", float(buf.norm()))  # hindsight
""",
        {"epoch": ["buf"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, buf FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "a_row_view_of_a_preallocated_numpy_history_filled_in_the_step_loop",
        """
import numpy as np

hist = np.zeros((epochs, 2))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        row = hist[epoch]  # a view: writing it writes hist
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            row[0] += loss.item()
            row[1] += 1
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("hist_sum", float(hist.sum()))  # hindsight
        flor.log("row0", float(row[0]))  # hindsight
""",
        {"epoch": ["hist_sum", "row0"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, hist_sum FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "detached_rows_of_the_live_weights_kept_in_a_list_without_a_clone",
        """
rows = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        rows.append(net[0].weight.detach()[epoch])  # meant as a snapshot: a view, no clone
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("rows_sum", float(sum(float(r.sum()) for r in rows)))  # hindsight
""",
        {"epoch": ["rows_sum"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, rows_sum FROM logs WHERE epoch = 3",),
        seeds=(0, 1),
    ),
    ArgCase(
        "a_param_group_bound_in_the_step_loop_read_after_the_schedulers_step",
        """
sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.7)
with flor.checkpointing(model=net, optimizer=opt, sched=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            group = opt.param_groups[0]  # the live group
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        flor.log("n", len(X))
        flor.log("group_lr", group["lr"])  # hindsight
""",
        {"epoch": ["group_lr"]},
        old_query="SELECT seed, epoch, n FROM logs",
        partial=("SELECT seed, epoch, group_lr FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "a_full_batch_gradient_averaged_in_place_after_the_step_loop",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        n = 0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss_fn(net(X[idx]), Y[idx]).backward()  # accumulated over the epoch
            n += 1
            g0 = net[0].weight.grad
        for p in net.parameters():
            p.grad.div_(n)  # the mean gradient
        opt.step()
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("g0", float(g0.norm()))  # hindsight
        opt.zero_grad()
""",
        {"epoch": ["g0"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, g0 FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "a_head_bound_in_the_step_loop_shrunk_and_perturbed_after_it",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            head = net[-1]
"""
        + STEP
        + """
        with torch.no_grad():  # shrink and perturb the head once an epoch
            head.weight.mul_(0.8).add_(0.01 * torch.randn_like(head.weight))
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("head_norm", float(head.weight.norm()))  # hindsight
        flor.log("same", int(head is net[2]))  # hindsight
""",
        {"epoch": ["head_norm", "same"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, head_norm FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "a_list_of_a_registered_history_dict_bound_in_the_step_loop",
        """
hist = {"loss": [], "epoch_mean": []}
with flor.checkpointing(model=net, optimizer=opt, hist=hist):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            losses = hist["loss"]
            losses.append(loss.item())
        hist["loss"].append(sum(losses[-4:]) / 4)  # the epoch's mean, kept beside
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("n_losses", len(losses))  # hindsight
        flor.log("last", losses[-1])  # hindsight
""",
        {"epoch": ["n_losses", "last"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, n_losses FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "an_unregistered_ema_models_head_bound_in_the_step_loop",
        """
import copy

ema = copy.deepcopy(net)  # not registered: saved beside the checkpoint by its state_dict
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            ema_head = ema[2]
        with torch.no_grad():  # the EMA follows once an epoch
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(0.5).add_(0.5 * p)
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("ema_head", float(ema_head.weight.sum()))  # hindsight
""",
        {"epoch": ["ema_head"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, ema_head FROM logs WHERE epoch = 3",),
    ),
    ArgCase(
        "an_optimizer_state_dict_kept_without_a_copy_read_after_a_damping",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""
        + STEP
        + """
            snap = opt.state_dict()  # no copy: the live state
        for st in opt.state.values():
            st["momentum_buffer"].mul_(0.5)
        flor.log("lr", opt.param_groups[0]["lr"])
        flor.log("snap_buf", float(snap["state"][0]["momentum_buffer"].norm()))  # hindsight
""",
        {"epoch": ["snap_buf"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, snap_buf FROM logs WHERE epoch = 3",),
    ),
]

BUGS: dict[str, str] = {}
for _p in PATTERNS:
    _p.bug = BUGS.get(_p.name)
assert not set(BUGS) - {p.name for p in PATTERNS}
DEFAULT: list[str] = []
CASES = corpus_params(PATTERNS, DEFAULT)
FRESH = corpus_params([p for p in PATTERNS if p.fresh], [])


def test_s37h1_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


def test_a_local_keyed_by_the_ids_of_live_objects_is_not_saved() -> None:
    """``gema[id(p)]``: an id means nothing in a replay's process (its objects have other ids),
    so a restored dict would be looked up by keys no parameter has (the step loop's
    ``setdefault`` then adds fresh entries beside the old ones: 8 entries, not 4, and other
    values, silently). Such a local is missed (the replay runs the loop or starts earlier); a
    large int that is no live object's id is saved as any."""
    net = torch.nn.Linear(2, 2)
    gema = {id(p): torch.zeros_like(p) for p in net.parameters()}
    seen = {id(net)}
    counts = {1 << 40: 3}  # in the range of an address, but no object's
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["gema", "seen", "counts"], {}, {})
    assert set(cap.missed) == {"gema", "seen"}
    assert "id()" in cap.missed["gema"] and "Parameter" in cap.missed["gema"]
    assert "Linear" in cap.missed["seen"]
    assert "counts" in cap.saved
    del gema, seen, counts


def test_aliases_of_registered_tensors_are_restored_as_aliases_of_the_replays() -> None:
    """A numpy view of the live weights (``w.detach().numpy()``), a row of them
    (``w.detach()[1]``), an optimizer's momentum buffer, a parameter group and a parameter's
    state dict bound by name were saved as copies, frozen at the checkpoint: code after it that
    changed the registered objects in place (an epoch's end shrink, a momentum damping, a
    scheduler's step) changed them in the recording, not in the replay (``w00`` 1.3041 for a
    full re-run's 1.1737, ``buf`` 0.5926 for 0.2963, ``group_lr`` 0.0686 for 0.04802,
    silently), a list of a registered dict (``n_losses`` 19 for 20). Now each is the same
    object, or the same part, of the replay's."""
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    w_np = net.weight.detach().numpy()[:, 1:]
    row = net.weight.detach()[1]
    buf = opt.state[net.weight]["momentum_buffer"]
    group, state = opt.param_groups[0], opt.state[net.bias]
    hist = {"loss": [0.5], "meta": {"seen": [3]}}
    losses, seen = hist["loss"], hist["meta"]["seen"]
    objs = {"model": net, "opt": opt, "hist": hist}
    frame = sys._getframe()
    views = frame_state.RegisteredViews(objs)
    values = frame_state.frame_values(frame)
    registered = {id(net): "model", id(opt): "opt", id(hist): "hist"}
    names = ["w_np", "row", "buf", "group", "state", "losses", "seen"]
    cap = frame_state.capture(values, names, registered, {}, views=views)
    assert {k: cap.saved[k][0] for k in names} == {
        "w_np": "pickle",
        "row": "part",
        "buf": "view",
        "group": "ref",
        "state": "ref",
        "losses": "ref",
        "seen": "ref",
    }
    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.SGD(net2.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(opt.state_dict())
    net2.load_state_dict(net.state_dict())
    hist2 = {"loss": [0.5], "meta": {"seen": [3]}}
    objs2 = {"model": net2, "opt": opt2, "hist": hist2}
    new = {
        k: frame_state._restored(*cap.saved[k], None, objs2, frame_state._Merge()) for k in names
    }
    assert new["group"] is opt2.param_groups[0] and new["state"] is opt2.state[net2.bias]
    assert new["losses"] is hist2["loss"] and new["seen"] is hist2["meta"]["seen"]
    with torch.no_grad():
        net2.weight.mul_(0.5)
    for st in opt2.state.values():
        st["momentum_buffer"].mul_(0.5)
    assert (new["w_np"] == net2.weight.detach().numpy()[:, 1:]).all()
    assert torch.equal(new["row"], net2.weight.detach()[1])
    assert new["buf"] is opt2.state[net2.weight]["momentum_buffer"]
    del w_np, row, buf, group, state, losses, seen


DROPPED = (
    corpus.PREAMBLE
    + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 2:  # its momentum stays in opt.state: torch's state_dict() fails from here
            group = opt.param_groups[0]
            group["params"] = [p for p in group["params"] if p is not net[0].weight]
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        flor.log("n_opt", len(opt.param_groups[0]["params"]))
"""
)


def test_a_checkpoint_whose_optimizer_state_dict_raises_is_skipped_not_fatal(
    tmp_path: Path,
) -> None:
    """A weight taken out of the optimizer's group (its momentum left in ``opt.state``): torch's
    own ``opt.state_dict()`` raises ``KeyError`` from then on, and florsql's checkpoint let it
    end the training run (a run that trains to its end without florsql). Now the run warns once
    and takes no checkpoint there; a replay of a later epoch starts from epoch 1's (the
    ``a_weight_dropped_...`` pattern checks its values against a full re-run)."""
    repo = make_repo(tmp_path / "r", {"train.py": DROPPED})
    proc = run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    assert proc.stderr.count("could not checkpoint epoch 2 (KeyError") == 1, proc.stderr
    run = next((repo / ".florsql" / "runs").iterdir())
    lines = (run / "checkpoints" / "manifest.jsonl").read_text().splitlines()
    assert sorted({json.loads(line)["iteration"] for line in lines}) == [0, 1]
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


class Histories(ArgHistories):
    prefix = "s37h1"


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Histories]:
    h = Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", CASES)
def test_s37h1_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_partial_then_wider(pattern, histories, tmp_path)


@pytest.mark.parametrize("pattern", FRESH)
def test_s37h1_fresh_store_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_fresh(pattern, histories, tmp_path)
