"""Training scripts as a stranger writes them, replayed and compared with a full re-run: gradient
accumulation that runs across epoch boundaries, an iterator zipped beside the step loop, an
outer loop over ``islice(count())`` and over a list of dicts, train/eval toggles with dropout
and a validation loop, Python's and numpy's global RNGs drawn per step, a custom object with
``state_dict()`` given to ``flor.checkpointing``, early stopping inside ``main()``; and state
only today's statements read, kept where no checkpoint looked: in the repository's own modules
(a helper counting its calls, closures a module's factory made, a buffer or a class attribute of
another module changed by the loop, a star import), on a registered or unregistered torch module
beside its state_dict (``net.global_step``, a non-persistent buffer); and a run SIGKILLed
mid-epoch. Same oracle as tests/test_replay_corpus.py: a full re-run of the hand-patched old
version; partial queries first, then the wider ones."""

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
from tests.test_replay_corpus import PREAMBLE, Pattern, queries


@dataclass
class Case(Pattern):
    #: other files of the repository (their ``# hindsight`` lines are today's additions too)
    extra: dict[str, str] = field(default_factory=dict)
    #: more partial queries, asked before the ``epoch >= first`` ones
    partial: tuple[str, ...] = ()
    #: also ask the wide queries on a fresh store (kept to a few: the suite's time)
    fresh: bool = False


PATTERNS = [
    Case(
        "grad_accumulation_across_epoch_boundaries",
        """
accum = 3
micro = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx]) / accum
            loss.backward()
            micro += 1
            flor.log("loss", loss.item())
            flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
            if micro % accum == 0:
                opt.step()
                opt.zero_grad()
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
        flor.log("micro", micro)  # hindsight
""",
        {"epoch": ["w_sum", "micro"], "epoch, step": ["gnorm"]},
        partial=("SELECT seed, epoch, step, gnorm FROM logs WHERE epoch = 2 AND step >= 2",),
        fresh=True,
    ),
    Case(
        "persistent_iterator_zipped_before_the_step_loop",
        """
aux = iter([XV[i : i + 4] for i in range(0, 16, 4)] * 40)  # walked across epochs
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        # zip pulls from aux first: one more aux batch is drawn when the loader runs out
        for xa, idx in zip(aux, flor.loop("step", torch.randperm(len(X)).split(12))):
            loss = loss_fn(net(X[idx]), Y[idx]) + 0.1 * net(xa).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("aux_sum", float(xa.sum()))  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
        flor.log("last_aux", float(xa.sum()))  # hindsight
""",
        {"epoch": ["w_sum", "last_aux"], "epoch, step": ["aux_sum"]},
        seeds=(0, 1),
    ),
    Case(
        "outer_islice_count_and_batches_as_dicts",
        """
import itertools

batches = [{"x": X[i : i + 12], "y": Y[i : i + 12]} for i in range(0, 48, 12)]
lrs = [0.2, 0.1, 0.05, 0.02, 0.01, 0.005]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", itertools.islice(itertools.count(), epochs)):
        for g in opt.param_groups:
            g["lr"] = lrs[epoch]
        for n, batch in enumerate(flor.loop("step", batches)):
            loss = loss_fn(net(batch["x"]), batch["y"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("n_x", n * 100 + len(batch["x"]))  # hindsight
        flor.log("lr", opt.param_groups[0]["lr"])  # hindsight
        flor.log("last_n", n)  # hindsight
""",
        {"epoch": ["lr", "last_n"], "epoch, step": ["n_x"]},
        period=2,
    ),
    Case(
        "outer_loop_over_a_list_of_dict_configs",
        """
schedule = [
    {"lr": 0.2, "bs": 12},
    {"lr": 0.1, "bs": 8},
    {"lr": 0.05, "bs": 16},
    {"lr": 0.02, "bs": 6},
]
seen = 0
with flor.checkpointing(model=net, optimizer=opt):
    for cfg in flor.loop("epoch", schedule[:epochs]):
        for g in opt.param_groups:
            g["lr"] = cfg["lr"]
        for idx in flor.loop("step", torch.randperm(len(X)).split(cfg["bs"])):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(idx)
            flor.log("loss", loss.item())
        flor.log("cfg_bs", cfg["bs"])  # hindsight
        flor.log("seen", seen)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["cfg_bs", "seen", "w_sum"]},
    ),
    Case(
        "train_eval_toggles_dropout_and_a_validation_loop",
        """
net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
opt = torch.optim.Adam(net.parameters(), lr=0.01)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        tr = 0.0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tr += loss.item()
            flor.log("loss", loss.item())
            flor.log("out_std", float(out.std()))  # hindsight
        flor.log("train_mode", int(net.training))  # hindsight
        flor.log("tr", tr)  # hindsight
        net.eval()
        correct = 0
        with torch.no_grad():
            for vidx in flor.loop("vstep", torch.arange(len(XV)).split(8)):
                pred = net(XV[vidx]).argmax(1)
                correct += int((pred == YV[vidx]).sum())
                flor.log("vpred_sum", int(pred.sum()))  # hindsight
        flor.log("val_acc", correct / len(XV))
        flor.log("noise", float(torch.rand(())))  # the global RNG as the next epoch gets it
        flor.log("eval_mode", int(not net.training))  # hindsight
""",
        {
            "epoch": ["train_mode", "tr", "eval_mode"],
            "epoch, step": ["out_std"],
            "epoch, vstep": ["vpred_sum"],
        },
        seeds=(0, 1),
        old_query="SELECT seed, epoch, val_acc, noise FROM logs",
        partial=("SELECT seed, epoch, step, out_std FROM logs WHERE epoch = 2 AND step >= 2",),
    ),
    Case(
        "python_and_numpy_global_rngs_per_step",
        """
import random

import numpy as np

random.seed(seed)
np.random.seed(seed)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        flips = 0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            x = X[idx]
            if random.random() < 0.5:
                x = -x
                flips += 1
            x = x + torch.from_numpy(np.random.normal(0, 0.1, x.shape).astype("float32"))
            loss = loss_fn(net(x), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("x_sum", float(x.sum()))  # hindsight
        flor.log("flips", flips)  # hindsight
        flor.log("np_next", float(np.random.get_state()[1][0]))  # hindsight
""",
        {"epoch": ["flips", "np_next"], "epoch, step": ["x_sum"]},
        seeds=(0, 3),
        partial=("SELECT seed, epoch, step, x_sum FROM logs WHERE epoch = 2 AND step >= 2",),
    ),
    Case(
        "custom_state_dict_object_registered",
        """
from collections import Counter, OrderedDict, defaultdict, namedtuple

Span = namedtuple("Span", "lo hi")


class Tracker:
    def __init__(self):
        self.counts = Counter()
        self.by_label = defaultdict(list)
        self.span = Span(float("inf"), float("-inf"))
        self.sum = torch.zeros(2)

    def update(self, loss, y):
        self.counts.update(y.tolist())
        self.by_label[int(y[0])].append(loss)
        self.span = Span(min(self.span.lo, loss), max(self.span.hi, loss))
        self.sum.add_(torch.bincount(y, minlength=2).float())

    def state_dict(self):
        return OrderedDict(
            counts=self.counts, by_label=self.by_label, span=self.span, sum=self.sum
        )

    def load_state_dict(self, state):
        self.counts = Counter(state["counts"])
        self.by_label = defaultdict(list, {k: list(v) for k, v in state["by_label"].items()})
        self.span = Span(*state["span"])
        self.sum.copy_(state["sum"])


tracker = Tracker()
with flor.checkpointing(model=net, optimizer=opt, tracker=tracker):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tracker.update(loss.item(), Y[idx])
            flor.log("loss", loss.item())
        flor.log("count_1", tracker.counts[1])  # hindsight
        flor.log("n_keys", sorted(tracker.by_label))  # hindsight
        flor.log("span_hi", tracker.span.hi)  # hindsight
        flor.log("sum1", float(tracker.sum[1]))  # hindsight
""",
        {"epoch": ["count_1", "n_keys", "span_hi", "sum1"]},
        period=2,
        fresh=True,
    ),
    Case(
        "statement_in_an_imported_module_called_in_the_step_loop",
        """
import helpers
from helpers import *  # noqa: F403 (a stranger's star import; train_step comes from it)

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = train_step(net, opt, loss_fn, X[idx], Y[idx])
            flor.log("loss", loss)
        flor.log("calls", helpers.CALLS["n"])  # hindsight
""",
        {"epoch": ["calls"], "epoch, step": ["gnorm", "w0"]},
        extra={
            "helpers.py": """
import florsql as flor

CALLS = {"n": 0}


def train_step(net, opt, loss_fn, x, y):
    loss = loss_fn(net(x), y)
    opt.zero_grad()
    loss.backward()
    flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
    opt.step()
    CALLS["n"] += 1
    flor.log("w0", float(net[0].weight[0, 0]) + CALLS["n"])  # hindsight
    return loss.item()
"""
        },
        partial=("SELECT seed, epoch, step, gnorm FROM logs WHERE epoch = 2 AND step >= 2",),
        fresh=True,
    ),
    Case(
        "warmup_closure_made_by_a_helper_module",
        """
from schedules import make_warmup

next_lr = make_warmup(0.2, 10)  # a closure: its step count lives in a cell
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            for g in opt.param_groups:
                g["lr"] = next_lr()
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("lr_step", opt.param_groups[0]["lr"])  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"], "epoch, step": ["lr_step"]},
        extra={
            "schedules.py": """
def make_warmup(base, steps):
    t = 0

    def next_lr():
        nonlocal t
        t += 1
        return base * min(1.0, t / steps)

    return next_lr

"""
        },
        period=2,
    ),
    Case(
        "meter_closures_made_by_a_helper_module",
        """
import meters

record, summary = meters.make_meter()  # closures sharing cells: only new statements read them
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            record(loss.item())
            flor.log("loss", loss.item())
        flor.log("meter_n", summary()[0])  # hindsight
        flor.log("meter_total", summary()[1])  # hindsight
""",
        {"epoch": ["meter_n", "meter_total"]},
        extra={
            "meters.py": """
def make_meter():
    total, n = 0.0, 0

    def record(v):
        nonlocal total, n
        total += v
        n += 1

    def summary():
        return (n, total)

    return record, summary
"""
        },
        fresh=True,
    ),
    Case(
        "a_buffer_kept_in_a_module_changed_in_place",
        """
import buffers

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            buffers.EMA.mul_(0.9).add_(0.1 * net[0].weight.detach())  # in place, in the module
            flor.log("loss", loss.item())
        flor.log("ema", float(buffers.EMA.sum()))  # hindsight
""",
        {"epoch": ["ema"]},
        extra={
            "buffers.py": """
import torch

EMA = torch.zeros(8, 6)
"""
        },
    ),
    Case(
        "class_counters_of_another_module",
        """
from buffers import Stats

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            Stats.steps += 1
            flor.log("loss", loss.item())
        flor.log("steps", Stats.steps)  # hindsight
""",
        {"epoch": ["steps"]},
        extra={"buffers.py": "class Stats:\n    steps = 0\n"},
    ),
    Case(
        "counters_stashed_on_the_registered_model",
        """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
        self.register_buffer("seen_rows", torch.zeros(()), persistent=False)

    def forward(self, x):
        self.seen_rows += len(x)  # a buffer left out of the state_dict
        return self.body(x)


net = Net()
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
net.global_step = 0  # a plain attribute: no state_dict has it
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            net.global_step += 1
            flor.log("loss", loss.item())
        flor.log("model_steps", net.global_step)  # hindsight
        flor.log("seen_rows", float(net.seen_rows))  # hindsight
""",
        {"epoch": ["model_steps", "seen_rows"]},
        fresh=True,
    ),
    Case(
        "unregistered_ema_model_counting_its_updates",
        """
import copy

ema = copy.deepcopy(net)  # not given to flor.checkpointing: saved with the loop's locals
ema.updates = 0
ema.register_buffer("decay_sum", torch.zeros(()), persistent=False)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), net.parameters()):
                    pe.mul_(0.9).add_(0.1 * p)
                ema.decay_sum += 0.9
            ema.updates += 1
            flor.log("loss", loss.item())
        flor.log("ema_updates", ema.updates)  # hindsight
        flor.log("ema_decay_sum", float(ema.decay_sum))  # hindsight
        flor.log("ema_w", float(ema[0].weight.sum()))  # hindsight
""",
        {"epoch": ["ema_updates", "ema_decay_sum", "ema_w"]},
        period=2,
    ),
    Case(
        "pretrain_then_finetune_two_outer_loops",
        """
steps = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            flor.log("loss", loss.item())
        flor.log("pre_steps", steps)  # hindsight
for g in opt.param_groups:
    g["lr"] = 0.05
with flor.checkpointing(model=net, optimizer=opt):
    for ft in flor.loop("ft_epoch", range(3)):
        for idx in flor.loop("ft_step", torch.randperm(len(XV)).split(4)):
            loss = loss_fn(net(XV[idx]), YV[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            flor.log("ft_loss", loss.item())
        flor.log("ft_steps", steps)  # hindsight
        flor.log("ft_w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["pre_steps"], "ft_epoch": ["ft_steps", "ft_w"]},
        partial=("SELECT seed, ft_epoch, ft_steps, ft_w FROM logs WHERE ft_epoch >= 1",),
        fresh=True,
    ),
    Case(
        "early_stopping_with_patience_inside_main",
        """
YV = 1 - YV  # validation loss rises: patience runs out


def main():
    best, bad, patience = float("inf"), 0, 2
    history = {"train": [], "val": []}
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs + 4)):
            for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                history["train"].append(loss.item())
                flor.log("loss", loss.item())
            with torch.no_grad():
                val = loss_fn(net(XV), YV).item()
            history["val"].append(val)
            flor.log("train_mean", sum(history["train"]) / len(history["train"]))  # hindsight
            if val < best:
                best, bad = val, 0
            else:
                bad += 1
            flor.log("bad", bad)  # hindsight
            if bad >= patience:
                break
    flor.log("stopped_at", epoch)  # hindsight
    flor.log("best", best)  # hindsight
    flor.log("n_val", len(history["val"]))  # hindsight


if __name__ == "__main__":
    main()
""",
        {"epoch": ["train_mean", "bad"], "": ["stopped_at", "best", "n_val"]},
        first=1,
        fresh=True,
    ),
]

#: the default run's patterns (``make test``): each one a bug was found and fixed with; the
#: others run in ``make test-all`` (CI runs both)
CASES = corpus_params(
    PATTERNS,
    (
        "statement_in_an_imported_module_called_in_the_step_loop",
        "unregistered_ema_model_counting_its_updates",
    ),
)
FRESH = corpus_params(
    [p for p in PATTERNS if p.fresh],
    ("grad_accumulation_across_epoch_boundaries",),
)


def test_stranger_corpus_is_consistent() -> None:
    for p in PATTERNS:
        text = p.text + "".join(p.extra.values())
        declared = sorted(n for names in p.levels.values() for n in names)
        assert declared == sorted(hindsight_names(text)), p.name


class StrangerHistories:
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
            record_pair(self._recorder, path, p.text, runs, period=p.period, extra=p.extra)

        path = shared_dir(self.factory, self.worker_id, f"stranger-{p.name}", build)
        return copy_recorded(Recorded(path / "history", path / "oracle"), dest)

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
        self.workers.shutdown()


@pytest.fixture(scope="module")
def stranger(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[StrangerHistories]:
    h = StrangerHistories(tmp_path_factory, worker_id)
    yield h
    h.close()


def check_partial_then_wider(pattern: Case, histories: StrangerHistories, tmp_path: Path) -> None:
    """The old query, the pattern's partial queries, then the wider ones, on one store: each
    answer equal to the oracle's."""
    rec = histories.get(pattern, tmp_path)
    found = Mismatches()
    with found.session(rec, "old, partial, then wider", histories.workers) as check:
        check(pattern.old_query)
        partial, wide = queries(pattern)
        for sql in (*pattern.partial, *partial, *wide):
            check(sql)
    found.assert_none()


def check_fresh(pattern: Case, histories: StrangerHistories, tmp_path: Path) -> None:
    """The wide queries on a store that replayed nothing yet."""
    rec = histories.get(pattern, tmp_path)
    found = Mismatches()
    with found.session(rec, "fresh", histories.workers) as check:
        for sql in queries(pattern)[1]:
            check(sql)
    found.assert_none()


@pytest.mark.parametrize("pattern", CASES)
def test_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_partial_then_wider(pattern, stranger, tmp_path)


@pytest.mark.parametrize("pattern", FRESH)
def test_fresh_store_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_fresh(pattern, stranger, tmp_path)


KILLED = """
import os
import sys

running = 0.0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
            if os.environ.get("KILL_AT") == f"{epoch},{i}":
                print("waiting", flush=True)
                sys.stdin.readline()  # the test kills the process here (SIGKILL)
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            flor.log("loss", loss.item())
            flor.log("running_step", running)  # hindsight
        flor.log("running", running)  # hindsight
flor.log("final", running)  # hindsight
"""


def test_a_run_killed_mid_epoch_replays_what_it_ended_and_says_what_it_never_got(
    tmp_path: Path,
) -> None:
    """A run SIGKILLed at epoch 2, step 2 (every record flushed at once): hindsight values of
    the epochs it ended equal a re-run of the patched version killed at the same place; the
    epoch it died in and the statement after the loop are NULL, with a warning saying so."""
    import florsql
    from tests.helpers import make_repo, write
    from tests.helpers_replay import fetch, old_source, patched_source

    text = PREAMBLE + KILLED
    history = make_repo(tmp_path / "history", {"train.py": old_source(text)})
    oracle = make_repo(tmp_path / "oracle", {"train.py": patched_source(text)})
    env = {"KILL_AT": "2,2", "FLORSQL_FLUSH_INTERVAL": "0", "FLORSQL_CHECKPOINT_PERIOD": "1"}
    for repo in (history, oracle):
        _kill_when_flushed(repo, env, rows=8)
    write(history / "train.py", patched_source(text))
    sqls = [
        "SELECT epoch, step, running_step FROM logs WHERE epoch = 1 AND step >= 2",
        "SELECT epoch, running FROM logs WHERE epoch >= 1",
        "SELECT epoch, step, running_step FROM logs",
        "SELECT epoch, running FROM logs",
    ]
    with (
        florsql.connect(history, replay="auto") as con,
        florsql.connect(oracle, replay="off") as ora,
    ):
        for sql in sqls:
            got, notes = fetch(con, sql)
            want, _ = fetch(ora, sql)
            ended = [r for r in want if r[0] < 2]
            assert [r for r in got if r[0] < 2] == ended, sql
            assert all(r[-1] is None for r in got if r[0] >= 2), (sql, got)
            assert len(got) == len(want), (sql, got, want)  # the rows are there, NULL
        final, notes = fetch(con, "SELECT final FROM logs WHERE final IS NOT NULL")
        assert final == [] and fetch(ora, "SELECT final FROM logs")[0] == []
        assert any("killed" in n and "final" in n for n in notes), notes


def _kill_when_flushed(repo: Path, env: dict[str, str], rows: int) -> None:
    """Run ``train.py`` until it waits at ``KILL_AT``, wait until ``rows`` loss values are on
    disk (a kill may lose what the writer had not yet written: see the report in
    docs/record.md), then SIGKILL it."""
    import signal
    import subprocess
    import sys
    import time

    import florsql
    from tests.helpers import script_env

    proc = subprocess.Popen(
        [sys.executable, "train.py", "--seed", "1"],
        cwd=repo,
        env=script_env(**env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
        deadline = time.monotonic() + 120
        while True:
            with florsql.connect(repo, replay="off") as con:
                n = con.execute("SELECT count(loss) FROM logs").fetchall()[0][0]
            if n >= rows or time.monotonic() > deadline:
                break
        assert n == rows, n
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
