"""Still more training scripts as strangers write them, replayed and compared with a full re-run
of the hand-patched old version (the oracle of tests/test_replay_corpus.py): a step budget that
ends an unbounded outer loop, an iterable class counting its epochs, ``itertools.cycle`` over a
DataLoader, SWALR with an averaged model started late, the norm ``clip_grad_norm_`` returns read
after the loop, a frozen dataclass config replaced per epoch, per-class metric lists read after
the outer loop, mixup drawing from its own generator with label smoothing, a curriculum growing
the dataset per epoch, statements in ``try``/``except`` and ``torch.autocast`` blocks and in a
function defined in the loop body, tensors of several dtypes, numpy scalars, ``Decimal`` and
``None`` logged, and a config read from ``os.environ``. Partial queries first, then the wider
ones."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
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
from tests.test_replay_corpus import Pattern, queries


@dataclass
class Case(Pattern):
    #: other files of the repository (their ``# hindsight`` lines are today's additions too)
    extra: dict[str, str] = field(default_factory=dict)
    #: more partial queries, asked before the ``epoch >= first`` ones
    partial: tuple[str, ...] = ()
    #: the environment the runs were recorded with (the queries run without it)
    env: dict[str, str] = field(default_factory=dict)


PATTERNS = [
    Case(
        "step_budget_ends_an_unbounded_outer_loop",
        """
import itertools

budget, gstep = 13, 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", itertools.count()):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            gstep += 1
            flor.log("loss", loss.item())
            flor.log("gstep", gstep)  # hindsight
            if gstep >= budget:
                break
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
        if gstep >= budget:
            break
flor.log("epochs_run", epoch + 1)  # hindsight
flor.log("final_step", gstep)  # hindsight
""",
        {"epoch": ["w_sum"], "epoch, step": ["gstep"], "": ["epochs_run", "final_step"]},
    ),
    Case(
        "iterable_class_counts_its_epochs",
        """
class EpochLoader:
    def __init__(self, n, bs, base):
        self.n, self.bs, self.base, self.epoch = n, bs, base, 0

    def __len__(self):
        return (self.n + self.bs - 1) // self.bs

    def __iter__(self):
        g = torch.Generator().manual_seed(self.base + self.epoch)
        self.epoch += 1
        return iter(torch.randperm(self.n, generator=g).split(self.bs))


loader = EpochLoader(len(X), 12, seed * 10)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", loader):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("idx0", int(idx[0]))  # hindsight
        flor.log("loader_epoch", loader.epoch)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["loader_epoch", "w_sum"], "epoch, step": ["idx0"]},
        seeds=(0, 1),
        period=2,
    ),
    Case(
        "itertools_cycle_over_a_dataloader",
        """
import itertools

from torch.utils.data import DataLoader, TensorDataset

loader = DataLoader(TensorDataset(X, Y), batch_size=12, shuffle=True)
batches = itertools.cycle(loader)  # 3 steps an epoch over 4 batches: epochs straddle passes
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for step in flor.loop("step", range(3)):
            x, y = next(batches)
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("y_sum", int(y.sum()))  # hindsight
        flor.log("x_last", float(x.sum()))  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["x_last", "w_sum"], "epoch, step": ["y_sum"]},
        period=2,
    ),
    Case(
        "swalr_and_averaged_model_started_late",
        """
from torch.optim.swa_utils import SWALR, AveragedModel

swa_model = AveragedModel(net)
swa_sched = SWALR(opt, swa_lr=0.05, anneal_epochs=2)
swa_start = 1
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        if epoch >= swa_start:
            swa_model.update_parameters(net)
            swa_sched.step()
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
        flor.log("n_avg", int(swa_model.n_averaged))  # hindsight
        flor.log("swa_w", float(swa_model.module[0].weight.sum()))  # hindsight
with torch.no_grad():
    swa_val = loss_fn(swa_model(XV), YV).item()
flor.log("swa_val", swa_val)  # hindsight
""",
        {"epoch": ["lr", "n_avg", "swa_w"], "": ["swa_val"]},
        period=2,
    ),
    Case(
        "clip_grad_norm_returned_and_read_after_the_loop",
        """
norms = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.5)
            norms.append(gn)
            opt.step()
            flor.log("loss", loss.item())
            flor.log("gn", gn)  # hindsight
        flor.log("last_gn", float(gn))  # hindsight
        flor.log("max_gn", float(torch.stack(norms).max()))  # hindsight
        flor.log("clipped", sum(int(n > 0.5) for n in norms))  # hindsight
""",
        {"epoch": ["last_gn", "max_gn", "clipped"], "epoch, step": ["gn"]},
        seeds=(0, 2),
    ),
    Case(
        "frozen_dataclass_config_replaced_each_epoch",
        """
import dataclasses


@dataclasses.dataclass(frozen=True)
class Cfg:
    lr: float = 0.2
    decays: int = 0
    tags: tuple = ()


cfg = Cfg()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for g in opt.param_groups:
            g["lr"] = cfg.lr
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        if loss.item() < 0.6:
            cfg = dataclasses.replace(cfg, lr=cfg.lr * 0.5, decays=cfg.decays + 1)
        cfg = dataclasses.replace(cfg, tags=cfg.tags + (epoch,))
        flor.log("cfg_lr", cfg.lr)  # hindsight
        flor.log("cfg_decays", cfg.decays)  # hindsight
        flor.log("cfg_tags", list(cfg.tags))  # hindsight
""",
        {"epoch": ["cfg_lr", "cfg_decays", "cfg_tags"]},
        seeds=(0, 1),
    ),
    Case(
        "per_class_metric_lists_read_after_the_outer_loop",
        """
per_class = {c: [] for c in range(2)}
confusion = torch.zeros(2, 2, dtype=torch.int64)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            pred = out.argmax(1)
            for c in range(2):
                mask = Y[idx] == c
                per_class[c].append(float((pred[mask] == c).float().mean()) if mask.any() else None)
            confusion.index_put_((Y[idx], pred), torch.ones(len(idx), dtype=torch.int64),
                                 accumulate=True)
            flor.log("loss", loss.item())
        flor.log("c1_last", per_class[1][-1])  # hindsight
        flor.log("confusion", confusion.tolist())  # hindsight
flor.log("c0_all", [v for v in per_class[0] if v is not None][-5:])  # hindsight
flor.log("diag", int(confusion.diagonal().sum()))  # hindsight
""",
        {"epoch": ["c1_last", "confusion"], "": ["c0_all", "diag"]},
        period=2,
    ),
    Case(
        "mixup_from_its_own_generator_with_label_smoothing",
        """
loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
gm = torch.Generator().manual_seed(seed + 11)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            x, y = X[idx], Y[idx]
            lam = float(torch.distributions.Beta(0.4, 0.4).sample())  # the global RNG
            perm = torch.randperm(len(idx), generator=gm)
            keep = torch.rand(len(idx), generator=gm) < 0.8
            xm = lam * x + (1 - lam) * x[perm]
            out = net(xm)
            loss = lam * loss_fn(out, y) + (1 - lam) * loss_fn(out, y[perm])
            loss = loss * keep.float().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("lam", lam)  # hindsight
            flor.log("perm0", int(perm[0]))  # hindsight
        flor.log("gm_next", float(torch.rand((), generator=gm.clone_state())))  # hindsight
        flor.log("kept", int(keep.sum()))  # hindsight
""",
        {"epoch": ["gm_next", "kept"], "epoch, step": ["lam", "perm0"]},
        seeds=(0, 1),
        period=2,
    ),
    Case(
        "curriculum_grows_the_dataset_and_rebuilds_the_loader",
        """
from torch.utils.data import DataLoader, TensorDataset

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        n = min(len(X), 18 + 10 * epoch)
        loader = DataLoader(TensorDataset(X[:n], Y[:n]), batch_size=8, shuffle=True)
        seen = 0
        for x, y in flor.loop("step", loader):
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
            flor.log("loss", loss.item())
            flor.log("bs", len(y))  # hindsight
        flor.log("seen", seen)  # hindsight
        flor.log("n_batches", len(loader))  # hindsight
        flor.log("last_bs", len(y))  # hindsight
""",
        {"epoch": ["seen", "n_batches", "last_bs"], "epoch, step": ["bs"]},
        seeds=(0, 1),
    ),
    Case(
        "statements_in_try_except_and_autocast_blocks",
        """
skipped = tried = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
            try:
                if (epoch + i) % 3 == 2:
                    raise ValueError("bad batch")
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = net(X[idx])
                    flor.log("out_dtype", str(out.dtype))  # hindsight
                    flor.log("out_mean", out.float().mean())  # hindsight
                loss = loss_fn(out.float(), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
            except ValueError as e:
                skipped += 1
                flor.log("skip_msg", f"{e} {epoch}/{i}")  # hindsight
            finally:
                tried += 1
                flor.log("skipped_so_far", skipped)  # hindsight
        flor.log("skipped", skipped)  # hindsight
""",
        {
            "epoch": ["skipped"],
            "epoch, step": ["out_dtype", "out_mean", "skip_msg", "skipped_so_far"],
        },
        period=2,
    ),
    Case(
        "statements_in_functions_defined_in_the_loop_body",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        total = 0.0

        def report(tag, model):
            flor.log("w_end", float(model[0].weight.sum()) + len(tag))  # hindsight
            return total

        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):

            def step_fn(batch):
                loss = loss_fn(net(X[batch]), Y[batch])
                opt.zero_grad()
                loss.backward()
                flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
                opt.step()
                return loss.item()

            v = step_fn(idx)
            total += v
            flor.log("loss", v)
        report("end", net)
        flor.log("total", report("again", net))  # hindsight
""",
        {"epoch": ["w_end", "total"], "epoch, step": ["gnorm"]},
    ),
    Case(
        "tensors_of_several_dtypes_numpy_scalars_decimal_and_none",
        """
import decimal

import numpy as np

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("bf16", loss.detach().to(torch.bfloat16))  # hindsight
            flor.log("f16", loss.detach().half())  # hindsight
            flor.log("i64", Y[idx].sum())  # hindsight
            flor.log("b", (out.argmax(1) == Y[idx]).all())  # hindsight
            flor.log("np32", np.float32(loss.item()))  # hindsight
        flor.log("np_i", np.int64(epoch) * 3)  # hindsight
        flor.log("np_b", np.bool_(epoch % 2))  # hindsight
        flor.log("dec", decimal.Decimal(epoch) / 3)  # hindsight
        flor.log("maybe", None if epoch % 2 else loss.item())  # hindsight
        flor.log("f64", torch.tensor([loss.item()], dtype=torch.float64))  # hindsight
        flor.log("arr", np.array([[epoch]], dtype=np.int32))  # hindsight
""",
        {
            "epoch": ["np_i", "np_b", "dec", "maybe", "f64", "arr"],
            "epoch, step": ["bf16", "f16", "i64", "b", "np32"],
        },
        period=2,
    ),
    Case(
        "config_read_from_the_environment",
        """
import os

aux_w = float(os.environ.get("AUX_W", "0"))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx]) + aux_w * out.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
        flor.log("aux_w", aux_w)  # hindsight
""",
        {"epoch": ["w_sum", "aux_w"]},
        env={"AUX_W": "0.5"},
    ),
    Case(
        "a_generator_object_sliced_per_epoch",
        """
import itertools


def stream(seed):
    g = torch.Generator().manual_seed(seed)
    served = 0
    while True:
        for idx in torch.randperm(len(X), generator=g).split(12):
            served += 1
            yield served, idx


batches = stream(seed + 7)  # a generator object: it cannot be pickled
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for served, idx in flor.loop("step", itertools.islice(batches, 3)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("idx0", int(idx[0]))  # hindsight
        flor.log("served", served)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["served", "w_sum"], "epoch, step": ["idx0"]},
        period=2,
    ),
    Case(
        "dataloader_with_a_persistent_worker_process",
        """
from torch.utils.data import DataLoader, TensorDataset

loader = DataLoader(
    TensorDataset(X, Y), batch_size=12, shuffle=True, num_workers=1, persistent_workers=True
)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for x, y in flor.loop("step", loader):
            x = x + 0.01 * torch.randn_like(x)
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
    Case(
        "lambda_and_sequential_schedulers_unregistered",
        """
warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 5))
decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, decay], milestones=[5])
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            flor.log("loss", loss.item())
            flor.log("lr", sched.get_last_lr()[0])  # hindsight
        flor.log("last_epoch", sched.last_epoch)  # hindsight
        flor.log("decay_lr", decay.get_last_lr()[0])  # hindsight
""",
        {"epoch": ["last_epoch", "decay_lr"], "epoch, step": ["lr"]},
        period=2,
    ),
    Case(
        "continue_skips_the_step_loop_in_some_epochs",
        """
loss = None
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs + 2)):
        flor.log("prev_loss", None if loss is None else loss.item())  # hindsight
        if epoch % 3 == 1:
            flor.log("skipped", epoch)  # hindsight
            continue
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("last_loss", loss.item())  # hindsight
""",
        {"epoch": ["prev_loss", "skipped", "last_loss"]},
        period=2,
    ),
    Case(
        "statement_in_the_else_of_the_outer_loop_and_rng_reads",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("rng_sum", int(torch.get_rng_state().sum()))  # hindsight
        flor.log("seed0", torch.initial_seed())  # hindsight
    else:
        finished = True
        flor.log("done_w", float(net[0].weight.sum()))  # hindsight
flor.log("rng_end", int(torch.get_rng_state()[:64].sum()))  # hindsight
""",
        {"epoch": ["rng_sum", "seed0"], "": ["done_w", "rng_end"]},
        seeds=(0, 1),
        period=2,
    ),
    Case(
        "late_binding_closures_collected_in_a_list",
        """
probes = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        probes.append(lambda e=epoch: e * 10 + len(probes))  # early-bound default
        probes.append(lambda: epoch)  # late-bound: reads epoch when called
        flor.log("probe_vals", [p() for p in probes])  # hindsight
        flor.log("n_probes", len(probes))  # hindsight
""",
        {"epoch": ["probe_vals", "n_probes"]},
        period=2,
    ),
    Case(
        "vocabulary_dict_growing_and_a_module_dict_registered",
        """
heads = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 2)})
opt = torch.optim.SGD(list(net.parameters()) + list(heads.parameters()), lr=0.1)
vocab = {}
with flor.checkpointing(model=net, heads=heads, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            key = "ab"[int(idx[0]) % 2]
            vocab.setdefault(f"tok{int(idx[0]) % 7}", len(vocab))
            loss = loss_fn(heads[key](net(X[idx])), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("vocab", sorted(vocab.items()))  # hindsight
        flor.log("head_a", float(heads["a"].weight.sum()))  # hindsight
""",
        {"epoch": ["vocab", "head_a"]},
        seeds=(0, 1),
        period=2,
    ),
    Case(
        "while_step_budget_reenters_the_step_loop",
        """
budget, gstep, passes = 10, 0, 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        seen = 0
        while seen < budget:  # the step loop runs again until the epoch's budget is spent
            passes += 1
            for idx in flor.loop("step", torch.randperm(len(X)).split(16)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen += 1
                gstep += 1
                flor.log("loss", loss.item())
                flor.log("gstep", gstep)  # hindsight
                if seen >= budget:
                    break
        flor.log("passes", passes)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["passes", "w_sum"], "epoch, step": ["gstep"]},
    ),
]

#: the default run's patterns (``make test``): the three a bug was found with, and two more; the
#: others run in ``make test-all`` (CI runs both)
CASES = corpus_params(
    PATTERNS,
    (
        "while_step_budget_reenters_the_step_loop",
        "clip_grad_norm_returned_and_read_after_the_loop",
    ),
)


def test_h4_corpus_is_consistent() -> None:
    for p in PATTERNS:
        text = p.text + "".join(p.extra.values())
        declared = sorted(n for names in p.levels.values() for n in names)
        assert declared == sorted(hindsight_names(text)), p.name


class H4Histories:
    """Each case's recorded pair, once per session (shared by xdist workers)."""

    def __init__(self, factory: pytest.TempPathFactory, worker_id: str) -> None:
        self.factory = factory
        self.worker_id = worker_id
        self._recorder: Recorder | None = None
        self.workers = KeptWorkers(2)

    def get(self, p: Case, dest: Path) -> Recorded:
        def build(path: Path) -> None:
            if self._recorder is None:
                self._recorder = Recorder(self.factory.mktemp("runlogs"))
            runs = [("--seed", str(s)) for s in p.seeds]
            record_pair(
                self._recorder, path, p.text, runs, period=p.period, extra=p.extra, env=p.env
            )

        path = shared_dir(self.factory, self.worker_id, f"h4-{p.name}", build)
        return copy_recorded(Recorded(path / "history", path / "oracle"), dest)

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
        self.workers.shutdown()


@pytest.fixture(scope="module")
def h4(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[H4Histories]:
    h = H4Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", CASES)
def test_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, h4: H4Histories, tmp_path: Path
) -> None:
    rec = h4.get(pattern, tmp_path)
    found = Mismatches()
    with found.session(rec, "old, partial, then wider", h4.workers) as check:
        check(pattern.old_query)
        partial, wide = queries(pattern)
        for sql in (*pattern.partial, *partial, *wide):
            check(sql)
    found.assert_none()


UNSET_AT_RECORD = """
import os

noise = os.environ.get("H4_NOISE") is not None  # unset when the runs were recorded
scale = float(os.getenv("H4_SCALE", "1.0"))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            x = X[idx] + (torch.randn(len(idx), 6) if noise else 0.0)
            loss = scale * loss_fn(net(x), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
        flor.log("noise", int(noise))  # hindsight
"""


@pytest.mark.slow
def test_variables_unset_when_recorded_are_unset_in_replay(
    h4: H4Histories, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The querying shell has ``H4_NOISE`` set and another ``H4_SCALE``; the runs had neither
    and one set: the replay runs with the recorded environment (``environ`` in run.json)."""
    case = Case(
        "environment_unset_when_recorded",
        UNSET_AT_RECORD,
        {"epoch": ["w_sum", "noise"]},
        env={"H4_SCALE": "0.5"},
    )
    rec = h4.get(case, tmp_path)
    import json

    docs = [json.loads(p.read_text()) for p in rec.history.glob(".florsql/runs/*/run.json")]
    assert [d["environ"] for d in docs] == [{"H4_NOISE": None, "H4_SCALE": "0.5"}]
    monkeypatch.setenv("H4_NOISE", "1")
    monkeypatch.setenv("H4_SCALE", "2.0")
    found = Mismatches()
    with found.session(rec, "environment", h4.workers) as check:
        check("SELECT seed, epoch, w_sum, noise FROM logs WHERE epoch >= 2")
        check("SELECT seed, epoch, w_sum, noise FROM logs")
    found.assert_none()


def test_environment_reads_kept_are_the_scripts_own() -> None:
    """What a run keeps of the environment: the first value the repository's code read (None:
    unset), not a bulk copy (``dict(os.environ)`` for a subprocess), not a name the script set
    before reading it, never a secret-looking name, and not what code outside the repository
    read."""
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import json, os, sys
        import florsql
        from florsql.record.watch import ENV_WATCH
        a = os.environ.get("H4_A")
        b = "H4_B" in os.environ
        c = os.getenv("H4_MISSING")
        os.environ["H4_MINE"] = "x"
        d = os.environ["H4_MINE"]
        e = dict(os.environ)
        f = os.environ.get("H4_API_TOKEN")
        os.environ["H4_A"] = "changed"
        g = os.environ["H4_A"]
        print(json.dumps(ENV_WATCH.snapshot(sys.argv[1])))
        """
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "s.py"
        script.write_text(code)
        env = {**os.environ, "H4_A": "1", "H4_B": "2", "H4_API_TOKEN": "secret", "H4_C": "3"}
        out = subprocess.run(
            [sys.executable, str(script), d], env=env, capture_output=True, text=True, check=True
        ).stdout
        import json

        assert json.loads(out) == {"H4_A": "1", "H4_B": "2", "H4_MISSING": None}
        out = subprocess.run(
            [sys.executable, str(script), str(Path(d) / "elsewhere")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(out) == {}


def test_a_function_defined_in_a_loop_takes_its_call_sites_chain() -> None:
    """A statement in a ``def`` inside the loop body runs where it is called: its chain is
    the call site's (it was the def's loops and the call's, ``epoch/step/epoch/step``, which no
    run recorded: NULL with a warning)."""
    from florsql.plan.hindsight import scan_source
    from florsql.plan.scan_code import scan_text
    from tests.helpers_replay import patched_source

    p = next(p for p in PATTERNS if p.name == "statements_in_functions_defined_in_the_loop_body")
    for code in (scan_source(patched_source(p.text)), scan_text(patched_source(p.text), "t.py")):
        assert code is not None
        chains = {s.name: s.chain for s in code.sites}
        assert chains == {
            "w_end": ("epoch",),
            "gnorm": ("epoch", "step"),
            "loss": ("epoch", "step"),
            "total": ("epoch",),
        }
        assert code.loops == (("epoch",), ("epoch", "step"))


COMMON = """
import torch

import florsql as flor


def train_epoch(net, opt, loss_fn, X, Y, bs, state):
    total = 0.0
    for idx in flor.loop("step", torch.randperm(len(X)).split(bs)):
        loss = loss_fn(net(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        gn = float(torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0))
        opt.step()
        state["steps"] += 1
        total += loss.item()
        flor.log("loss", loss.item())
        flor.log("gn", gn)  # hindsight
    flor.log("epoch_total", total)  # hindsight
    flor.log("steps", state["steps"])  # hindsight
    return total
"""

TRAIN = """
from common import train_epoch

state = {"steps": 0}
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        train_epoch(net, opt, loss_fn, X, Y, 12, state)
"""

FINETUNE = """
from common import train_epoch

state = {"steps": 100}
for g in opt.param_groups:
    g["lr"] = 0.05
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs - 1)):
        total = train_epoch(net, opt, loss_fn, XV, YV, 4, state)
        flor.log("ft_total", total)  # hindsight
"""


def test_two_scripts_sharing_a_helper_module(h4: H4Histories, tmp_path: Path) -> None:
    """``train.py`` and ``finetune.py`` both call ``common.train_epoch`` (which owns the step
    loop); today's statements sit in the helper (step and epoch level) and in one script."""
    from tests.helpers import make_repo, write
    from tests.helpers_replay import Job, old_source, patched_source
    from tests.test_replay_corpus import PREAMBLE

    scripts = {"train.py": PREAMBLE + TRAIN, "finetune.py": PREAMBLE + FINETUNE}
    files = {"common.py": COMMON, **scripts}
    history = make_repo(tmp_path / "history", {n: old_source(t) for n, t in files.items()})
    oracle = make_repo(tmp_path / "oracle", {n: patched_source(t) for n, t in files.items()})
    if h4._recorder is None:
        h4._recorder = Recorder(h4.factory.mktemp("runlogs"))
    jobs = [("train.py", ("--seed", "0")), ("finetune.py", ("--seed", "1"))]
    ck = {"FLORSQL_CHECKPOINT_PERIOD": "2"}
    h4._recorder.run(
        [
            [Job(history, s, argv, ck) for s, argv in jobs],
            [Job(oracle, s, argv) for s, argv in jobs],
        ]
    )
    for name, text in files.items():
        write(history / name, patched_source(text))
    found = Mismatches()
    with found.session(Recorded(history, oracle), "two scripts", h4.workers) as check:
        check("SELECT filename, seed, epoch, step, loss FROM logs")
        check("SELECT filename, epoch, step, gn FROM logs WHERE epoch >= 1 AND seed = 1")
        check("SELECT filename, epoch, steps, epoch_total FROM logs WHERE epoch >= 2")
        check("SELECT filename, epoch, step, gn FROM logs")
        check("SELECT filename, epoch, steps, epoch_total, ft_total FROM logs")
    found.assert_none()


CRASHES = """
crash_at = flor.arg("crash_at", -1)
running = 0.0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
            if epoch == crash_at and i == 1:
                raise RuntimeError("loss went NaN")
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            flor.log("loss", loss.item())
            flor.log("running_step", running)  # hindsight
        flor.log("running", running)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
flor.log("final", running)  # hindsight
"""


def test_a_run_that_crashed_then_a_later_run(h4: H4Histories, tmp_path: Path) -> None:
    """Run 1 raises at epoch 2 (status failed), run 2 (same version, another seed) finishes.
    Where run 1 ended its iterations, and everywhere in run 2, replay equals the re-run;
    where run 1 never got, the values are NULL, never computed past the crash."""
    import florsql
    from tests.helpers import make_repo, write
    from tests.helpers_replay import Job, fetch, old_source, patched_source
    from tests.test_replay_corpus import PREAMBLE

    text = PREAMBLE + CRASHES
    history = make_repo(tmp_path / "history", {"train.py": old_source(text)})
    oracle = make_repo(tmp_path / "oracle", {"train.py": patched_source(text)})
    if h4._recorder is None:
        h4._recorder = Recorder(h4.factory.mktemp("runlogs"))
    ck = {"FLORSQL_CHECKPOINT_PERIOD": "1"}
    for repo, env in ((history, ck), (oracle, {})):
        try:
            h4._recorder.run([[Job(repo, "train.py", ("--seed", "0", "--crash_at", "2"), env)]])
        except AssertionError as e:
            assert "loss went NaN" in str(e)
        h4._recorder.run([[Job(repo, "train.py", ("--seed", "1"), env)]])
    write(history / "train.py", patched_source(text))
    sqls = [
        "SELECT seed, epoch, running, w_sum FROM logs WHERE epoch >= 1",
        "SELECT seed, epoch, step, running_step FROM logs WHERE epoch = 1 AND step >= 2",
        "SELECT seed, epoch, step, running_step FROM logs",
        "SELECT seed, epoch, running, w_sum FROM logs",
        "SELECT seed, final FROM logs WHERE final IS NOT NULL",
    ]
    with (
        florsql.connect(history, replay="auto") as con,
        florsql.connect(oracle, replay="off") as ora,
    ):
        for sql in sqls:
            got, notes = fetch(con, sql)
            want, _ = fetch(ora, sql)
            ended = [r for r in want if r[0] == 1 or (r[0] == 0 and r[1] is not None and r[1] < 2)]
            assert [r for r in got if r in ended] == ended, (sql, got, want)
            crashed = [r for r in got if r[0] == 0 and r[1] is not None and r[1] >= 2]
            assert all(r[-1] is None for r in crashed), (sql, crashed)
            assert not [r for r in got if r not in want and r not in crashed], (sql, got, want)
        assert any("failed" in n for n in notes), notes


RESUMED = """
import os

resume = flor.arg("resume", "")
start = 0
if resume and os.path.exists(resume):
    ck = torch.load(resume)
    net.load_state_dict(ck["net"])
    opt.load_state_dict(ck["opt"])
    start = ck["epoch"] + 1
os.makedirs("ckpt", exist_ok=True)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(start, start + epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("gn", float(net[0].weight.grad.norm()))  # hindsight
        state = {"net": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch}
        torch.save(state, "ckpt/last.pt")
        with open("ckpt/history.txt", "a") as f:
            f.write(f"{epoch}\\n")
        flor.log("start", start)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
"""


def test_a_run_resumed_from_the_checkpoint_file_another_run_saved(
    h4: H4Histories, tmp_path: Path
) -> None:
    """Run 1 saves ``ckpt/last.pt`` (an ignored folder) every epoch and appends to a history
    file; run 2 resumes from it, ``range(start, ...)``, and saves over it. Replaying run 1
    runs its ``torch.save`` and its appends again: they go to the task's private copies
    (before, they overwrote the user's newest checkpoint with a replayed older one, and a task
    replaying run 2 at the same time read it half-written: EOFError). The user's files stay
    byte for byte as they were; run 1's values are the re-run's. Run 2 read a file that it
    then overwrote (``torch.save``, which the open watch does not see): what it read is not
    known, and every replay of it says so (DataChangedWarning)."""
    import florsql
    from tests.helpers_replay import fetch, record_pair
    from tests.test_replay_corpus import PREAMBLE

    if h4._recorder is None:
        h4._recorder = Recorder(h4.factory.mktemp("runlogs"))
    runs = [("--seed", "0"), ("--seed", "0", "--resume", "ckpt/last.pt")]
    rec = record_pair(
        h4._recorder, tmp_path, PREAMBLE + RESUMED, runs, period=2, extra={".gitignore": "ckpt/\n"}
    )
    before = {p.name: p.read_bytes() for p in (rec.history / "ckpt").iterdir()}
    assert set(before) == {"last.pt", "history.txt"}
    sqls = [
        "SELECT resume, epoch, start, w_sum FROM logs WHERE epoch >= 1",
        "SELECT resume, epoch, step, gn FROM logs WHERE epoch = 2",
        "SELECT resume, epoch, start, w_sum FROM logs",
        "SELECT resume, epoch, step, gn FROM logs",
    ]
    warned: list[str] = []
    with (
        florsql.connect(rec.history, replay="auto", executor=None) as con,
        florsql.connect(rec.oracle, replay="off") as ora,
    ):
        for sql in sqls:
            got, notes = fetch(con, sql)
            want, _ = fetch(ora, sql)
            assert len(got) == len(want), (sql, got, want)
            assert [r for r in got if r[0] == ""] == [r for r in want if r[0] == ""], sql
            warned += notes
    assert any("DataChangedWarning" in n and "ckpt/last.pt" in n for n in warned), warned
    after = {p.name: p.read_bytes() for p in (rec.history / "ckpt").iterdir()}
    assert after == before
    assert not list(rec.history.glob(".florsql/replays/*/*/files"))  # private copies dropped
