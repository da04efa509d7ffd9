"""Stranger sweep s37 (h1): training-loop patterns the corpus did not hold yet, replayed and
compared with a full re-run of the hand-patched old version (the harness and oracle of
tests/test_replay_corpus_stranger.py, runs with their own command lines as
``ArgCase`` of tests/test_replay_corpus_s35.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from florsql.record import frame_state

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
from tests.test_replay_corpus_s35 import ArgCase
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


class Histories(corpus.StrangerHistories):
    """Each case's recorded pair, once per session, its runs' command lines its own."""

    def get(self, p: Case, dest: Path) -> Recorded:
        assert isinstance(p, ArgCase)

        def build(path: Path) -> None:
            if self._recorder is None:
                self._recorder = Recorder(self.factory.mktemp("runlogs"))
            record_pair(self._recorder, path, p.text, p.runs(), period=p.period, extra=p.extra)

        path = shared_dir(self.factory, self.worker_id, f"s37h1-{p.name}", build)
        return copy_recorded(Recorded(path / "history", path / "oracle"), dest)


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
