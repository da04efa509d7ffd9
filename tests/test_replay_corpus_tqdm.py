"""Training loops wrapped in real tqdm progress bars (the most common wrapper in training scripts),
replayed and compared with a full re-run of the hand-patched old version: a bar around the
epoch ``flor.loop`` and another around the step loop (``leave=False``, ``set_postfix``), a bar
kept in a variable past an early-stopping ``break``, ``enumerate(tqdm(flor.loop(...)))``,
``flor.loop`` around ``trange``, and a manual ``with tqdm(total=...)`` bar whose count a new
statement reads after the step loop (a tqdm object cannot be checkpointed: replay must run that
step loop, not restore it). Same harness and oracle as tests/test_replay_corpus_stranger.py."""

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
]

#: the default run (``make test``): the pattern the bug was found with (``pbar.n`` read after the
#: step loop); the others run in ``make test-all`` (CI runs both)
CASES = corpus_params(PATTERNS, ("flor_loop_around_trange_and_a_manual_bar",))
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
