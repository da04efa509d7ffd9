"""Training loops wrapped in real tqdm progress bars (the most common wrapper in training scripts),
replayed and compared with a full re-run of the hand-patched old version: a bar around the
epoch ``flor.loop`` and another around the step loop (``leave=False``, ``set_postfix``), a bar
kept in a variable past an early-stopping ``break``, ``enumerate(tqdm(flor.loop(...)))``,
``flor.loop`` around ``trange``, a manual ``with tqdm(total=...)`` bar whose count a new
statement reads after the step loop (a bar iterating the loop as the checkpoint is taken is
mid-iteration: replay must run that step loop, not restore it), and custom wrappers (a
generator method that writes its count back when the loop ends, the iterator protocol).
Same harness and oracle as tests/test_replay_corpus_stranger.py."""

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
        "bars_around_epoch_and_step_loops",
        """
from tqdm import tqdm

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in tqdm(flor.loop("epoch", range(epochs)), desc="epochs"):
        running = 0.0
        pbar = tqdm(flor.loop("step", torch.randperm(len(X)).split(12)), leave=False)
        for idx in pbar:
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            pbar.set_postfix(loss=f"{loss.item():.3f}")
            flor.log("loss", loss.item())
            flor.log("running", running)  # hindsight
        flor.log("epoch_loss", running / 4)  # hindsight
        flor.log("bar_count", pbar.n)  # hindsight
""",
        {"epoch": ["epoch_loss", "bar_count"], "epoch, step": ["running"]},
        seeds=(0, 1),
        fresh=True,
    ),
    Case(
        "bar_kept_past_early_stopping_break",
        """
from tqdm import tqdm

best, bad = float("inf"), 0
bar = tqdm(flor.loop("epoch", range(epochs + 2)))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in bar:
        for i, idx in enumerate(tqdm(flor.loop("step", torch.randperm(len(X)).split(12)))):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            val = loss_fn(net(XV), YV).item()
        flor.log("val", val)
        flor.log("last_i", i)  # hindsight
        if val < best - 1e-3:
            best, bad = val, 0
        else:
            bad += 1
        flor.log("bad", bad)  # hindsight
        bar.set_description(f"val {val:.3f}")
        if epoch == epochs - 1 or bad >= 2:
            break
flor.log("stopped_at", epoch)  # hindsight
flor.log("best", best)  # hindsight
""",
        {"epoch": ["last_i", "bad"], "": ["stopped_at", "best"]},
        old_query="SELECT seed, epoch, step, loss, val FROM logs",
    ),
    Case(
        "flor_loop_around_trange_and_a_manual_bar",
        """
from tqdm import tqdm, trange

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", trange(epochs, leave=False)):
        with tqdm(total=len(X), unit="ex", leave=False) as pbar:
            for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                pbar.update(len(idx))
                flor.log("loss", loss.item())
                flor.log("seen", pbar.n)  # hindsight
            tqdm.write(f"epoch {epoch} done")
            flor.log("examples", pbar.n)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["examples", "w_sum"], "epoch, step": ["seen"]},
        period=2,
    ),
    Case(
        "custom_wrappers_that_write_after_their_loop_ends",
        """
class Timed:  # a generator __iter__: appends after each yield, sets total when the loop ends
    def __init__(self, it):
        self.it, self.marks, self.total = it, [], None

    def __iter__(self):
        for x in self.it:
            k = len(self.marks)
            yield x
            self.marks.append(k)
        self.total = len(self.marks)


class Counted:  # the iterator protocol: counts in __next__, notes the end on StopIteration
    def __init__(self, it):
        self.it, self.n, self.ended_at = iter(it), 0, -1

    def __iter__(self):
        return self

    def __next__(self):
        try:
            x = next(self.it)
        except StopIteration:
            self.ended_at = self.n
            raise
        self.n += 1
        return x


class Progress:  # holds no iterator: its wrap() generator iterates the loop given to it,
    def __init__(self):  # counting in a local it writes back when the loop ends (as tqdm does)
        self.n, self.starts, self.closed, self.passes = 0, 0, False, []

    def wrap(self, it):
        self.closed = False
        self.starts += 1
        n = self.n
        for x in it:
            yield x
            n += 1
        self.n = n
        self.closed = True
        self.passes.append(self.n)


progress = Progress()

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in progress.wrap(flor.loop("step", torch.randperm(len(X)).split(12))):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("progress_closed", progress.closed)  # hindsight
        flor.log("progress_passes", list(progress.passes))  # hindsight
        flor.log("progress_starts", progress.starts)  # hindsight
        timed = Timed(flor.loop("val", XV.split(4)))
        for xb in timed:
            with torch.no_grad():
                flor.log("v", float(net(xb).sum()))
        counted = Counted(flor.loop("val2", XV.split(8)))
        for xb in counted:
            with torch.no_grad():
                flor.log("v", float(net(xb).sum()))
        flor.log("timed_total", timed.total)  # hindsight
        flor.log("timed_marks", len(timed.marks))  # hindsight
        flor.log("counted_end", counted.ended_at)  # hindsight
""",
        {
            "epoch": [
                "progress_closed",
                "progress_passes",
                "progress_starts",
                "timed_total",
                "timed_marks",
                "counted_end",
            ]
        },
        old_query="SELECT seed, epoch, step, loss, val, val2, v FROM logs",
        fresh=True,
    ),
    Case(
        "a_generator_function_and_a_class_wrapping_the_step_loop",
        """
seen_total, batches_seen = 0, []


def counting(it):  # a generator function: adds to a global when the loop ends
    global seen_total
    n = 0
    for x in it:
        yield x
        n += 1
    seen_total += n
    batches_seen.append(n)


class Window:  # a class whose instances count into the class when their loop ends
    total = 0

    def __init__(self, it):
        self.it = it

    def __iter__(self):
        n = 0
        for x in self.it:
            yield x
            n += 1
        Window.total += n


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in counting(Window(flor.loop("step", torch.randperm(len(X)).split(12)))):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("seen_total", seen_total)  # hindsight
        flor.log("batches_seen", len(batches_seen))  # hindsight
        flor.log("window_total", Window.total)  # hindsight
""",
        {"epoch": ["seen_total", "batches_seen", "window_total"]},
        period=2,
    ),
    Case(
        "context_managers_around_the_step_loop_read_state_on_entry",
        """
from contextlib import contextmanager

stats = {"steps": 0, "per_epoch": []}


@contextmanager
def counting_steps(d):  # reads the count on entry, writes the epoch's share on exit
    start = d["steps"]
    yield
    d["per_epoch"].append(d["steps"] - start)


class Section:  # the same as a class
    def __init__(self):
        self.entered_at, self.spans = 0, []

    def __enter__(self):
        self.entered_at = stats["steps"]
        return self

    def __exit__(self, *exc):
        self.spans.append(stats["steps"] - self.entered_at)
        return False


section = Section()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        with counting_steps(stats), section:
            for idx in flor.loop("step", torch.randperm(len(X)).split(12 if epoch % 2 else 16)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                stats["steps"] += 1
                flor.log("loss", loss.item())
        flor.log("per_epoch", list(stats["per_epoch"]))  # hindsight
        flor.log("spans", list(section.spans))  # hindsight
""",
        {"epoch": ["per_epoch", "spans"]},
        period=2,
    ),
    Case(
        "wrappers_of_the_outer_loop_made_before_checkpointing_read_after_it",
        """
from tqdm import tqdm


class Progress:  # counts in its generator's local, writes back when the loop ends
    def __init__(self):
        self.n, self.total = 0, None

    def wrap(self, it):
        n = self.n
        for x in it:
            yield x
            n += 1
        self.n = n
        self.total = n


progress = Progress()
bar = tqdm(progress.wrap(flor.loop("epoch", range(epochs))), leave=False)  # before the with
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in bar:
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        bar.set_description(f"loss {loss.item():.3f}")
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
flor.log("epochs_done", progress.total)  # hindsight
flor.log("bar_n", bar.n)  # hindsight
""",
        {"epoch": ["w_sum"], "": ["epochs_done", "bar_n"]},
    ),
    Case(
        "context_managers_around_a_helper_that_owns_the_step_loop",
        """
from contextlib import contextmanager

stats = {"steps": 0, "per_epoch": [], "calls": []}


@contextmanager
def counting(d, key):  # reads the count on entry, writes the share on exit
    start = d["steps"]
    yield
    d[key].append(d["steps"] - start)


def train_epoch(epoch):
    with counting(stats, "per_epoch"):  # inside the helper
        for idx in flor.loop("step", torch.randperm(len(X)).split(12 if epoch % 2 else 16)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            stats["steps"] += 1
            flor.log("loss", loss.item())


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        with counting(stats, "calls"):  # around the call
            train_epoch(epoch)
        flor.log("per_epoch", list(stats["per_epoch"]))  # hindsight
        flor.log("calls", list(stats["calls"]))  # hindsight
""",
        {"epoch": ["per_epoch", "calls"]},
    ),
]

#: the default run (``make test``): the patterns bugs were found with (``pbar.n`` read after the
#: step loop, wrappers writing as their loop ends, context managers keeping state from entry);
#: the others run in ``make test-all`` (CI runs both)
CASES = corpus_params(
    PATTERNS,
    (
        "flor_loop_around_trange_and_a_manual_bar",
        "context_managers_around_a_helper_that_owns_the_step_loop",
    ),
)
FRESH = corpus_params([p for p in PATTERNS if p.fresh], ())


def test_tqdm_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = sorted(n for names in p.levels.values() for n in names)
        assert declared == sorted(hindsight_names(p.text)), p.name


@pytest.mark.parametrize("pattern", CASES)
def test_tqdm_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_partial_then_wider(pattern, stranger, tmp_path)


@pytest.mark.parametrize("pattern", FRESH)
def test_tqdm_fresh_store_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_fresh(pattern, stranger, tmp_path)
