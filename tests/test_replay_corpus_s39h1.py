"""Sweep s39 (h1): saved frame locals that share memory, replayed and compared with a full re-run
of the hand-patched old version (the harness and oracle of tests/test_replay_corpus_stranger.py,
runs with their own command lines as ``ArgCase`` of tests/test_replay_corpus_s35.py). The old
versions log only a value no state changes (the learning rate), so verification cannot rescue a
wrong restore: a wrong value is silent.

Each case keeps state in two places that share memory (a view and its base, a tensor held by a
name and by a container, a parameter bound by name) and today's statement reads the place the
loop did not write by name.

``BUGS`` names each failing pattern's bug (a strict xfail until fixed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import test_replay_corpus_stranger as corpus
from tests.helpers_replay import corpus_params, hindsight_names
from tests.test_replay_corpus_s35 import ArgCase
from tests.test_replay_corpus_s35 import Histories as ArgHistories
from tests.test_replay_corpus_stranger import Case

STEP = """
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
"""

LOOP = """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""

STEPS = """
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""

LR = """
        flor.log("lr", opt.param_groups[0]["lr"])
"""


def _case(name: str, body: str, names: list[str]) -> ArgCase:
    return ArgCase(
        name,
        body,
        {"epoch": names},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=(f"SELECT seed, epoch, {names[0]} FROM logs WHERE epoch = 3",),
    )


PATTERNS = [
    _case(
        "a_view_of_a_stats_tensor_summed_in_the_step_loop",
        """
stats = torch.zeros(3)  # loss, batches, spare: kept across epochs
"""
        + LOOP
        + """
        loss_slot = stats[0]  # views: writing them writes stats
        n_slot = stats[1]
"""
        + STEPS
        + STEP
        + """
            loss_slot += loss.detach()
            n_slot += 1
"""
        + LR
        + """
        flor.log("stats_sum", float(stats.sum()))  # hindsight
        flor.log("stats_mean", float(stats[0] / stats[1]))  # hindsight
""",
        ["stats_sum", "stats_mean"],
    ),
    _case(
        "a_view_of_a_numpy_row_updated_in_place",
        """
import numpy as np

acc = np.zeros((epochs, 2))
"""
        + LOOP
        + """
        row = acc[epoch]  # a view: writing it writes acc
"""
        + STEPS
        + STEP
        + """
            row += np.array([loss.item(), 1.0])
"""
        + LR
        + """
        flor.log("acc_sum", float(acc.sum()))  # hindsight
        flor.log("row_mean", float(row[0] / row[1]))  # hindsight
""",
        ["acc_sum", "row_mean"],
    ),
    _case(
        "dict_entries_summed_in_place_beside_a_local_tensor",
        """
t = torch.zeros(())
u = torch.zeros(())
totals = {"a": t, "b": u}
"""
        + LOOP
        + STEPS
        + STEP
        + """
            t += loss.detach()
            totals["b"] += 1
"""
        + LR
        + """
        flor.log("total_a", float(totals["a"]))  # hindsight
        flor.log("u", float(u))  # hindsight
""",
        ["total_a", "u"],
    ),
    _case(
        "a_view_of_a_tensor_held_in_a_saved_dict",
        """
bank = {"m": torch.zeros(4), "n": 0}
"""
        + LOOP
        + """
        head = bank["m"][:2]  # a view of the dict's tensor
"""
        + STEPS
        + STEP
        + """
            head += loss.detach()
            bank["n"] += 1
"""
        + LR
        + """
        flor.log("bank_sum", float(bank["m"].sum()))  # hindsight
""",
        ["bank_sum"],
    ),
    _case(
        "a_registered_parameter_bound_by_name_in_the_step_loop",
        LOOP
        + STEPS
        + STEP
        + """
            w = net[2].weight
        with torch.no_grad():  # shrink the head once an epoch
            net[2].weight.mul_(0.9)
"""
        + LR
        + """
        flor.log("w_norm", float(w.norm()))  # hindsight
        flor.log("w_same", int(w is net[2].weight))  # hindsight
""",
        ["w_norm", "w_same"],
    ),
    _case(
        "an_unregistered_ema_copy_of_the_weights",
        """
ema = [p.detach().clone() for p in net.parameters()]
"""
        + LOOP
        + STEPS
        + STEP
        + """
            with torch.no_grad():
                for e, p in zip(ema, net.parameters()):
                    e.mul_(0.9).add_(0.1 * p)
"""
        + LR
        + """
        flor.log("ema_sum", float(sum(e.sum() for e in ema)))  # hindsight
""",
        ["ema_sum"],
    ),
    _case(
        "a_list_of_tensors_one_also_bound_by_name",
        """
accs = [torch.zeros(()), torch.zeros(())]
first = accs[0]
"""
        + LOOP
        + STEPS
        + STEP
        + """
            first += loss.detach()
            accs[1] += 1
"""
        + LR
        + """
        flor.log("acc0", float(accs[0]))  # hindsight
        flor.log("acc1", float(accs[1]))  # hindsight
""",
        ["acc0", "acc1"],
    ),
    _case(
        "a_flat_numpy_view_of_a_confusion_matrix",
        """
import numpy as np

conf = np.zeros((2, 2))
flat = conf.reshape(-1)  # a view
"""
        + LOOP
        + STEPS
        + STEP
        + """
            pred = net(X[idx]).argmax(1)
            for y, q in zip(Y[idx].tolist(), pred.tolist()):
                flat[2 * y + q] += 1
"""
        + LR
        + """
        flor.log("conf_diag", float(conf.trace()))  # hindsight
""",
        ["conf_diag"],
    ),
    _case(
        "an_unregistered_optimizers_momentum_bound_by_name",
        """
head_opt = torch.optim.SGD(net[2].parameters(), lr=0.05, momentum=0.9)
"""
        + LOOP
        + STEPS
        + STEP
        + """
            head_opt.step()
            mbuf = head_opt.state[net[2].weight]["momentum_buffer"]
        for st in head_opt.state.values():
            st["momentum_buffer"].mul_(0.5)
"""
        + LR
        + """
        flor.log("mbuf", float(mbuf.norm()))  # hindsight
""",
        ["mbuf"],
    ),
    _case(
        "a_running_sum_view_bound_before_the_loop",
        """
sums = torch.zeros(2)
lo, hi = sums[0], sums[1]
"""
        + LOOP
        + STEPS
        + STEP
        + """
            lo += loss.detach()
            hi += loss.detach() ** 2
"""
        + LR
        + """
        flor.log("sums", float(sums.sum()))  # hindsight
""",
        ["sums"],
    ),
]

BUGS: dict[str, str] = {
    "a_view_of_a_stats_tensor_summed_in_the_step_loop": "a view restored as a copy",
    "a_view_of_a_numpy_row_updated_in_place": "a numpy view restored as a copy: its base stays 0",
    "a_registered_parameter_bound_by_name_in_the_step_loop": "restored as a copy of the weight",
    "a_flat_numpy_view_of_a_confusion_matrix": "a numpy view restored as a copy",
    "an_unregistered_optimizers_momentum_bound_by_name": "restored as a copy of the buffer",
}
for _p in PATTERNS:
    _p.bug = BUGS.get(_p.name)
assert not set(BUGS) - {p.name for p in PATTERNS}
DEFAULT: list[str] = ["a_view_of_a_stats_tensor_summed_in_the_step_loop"]
CASES = corpus_params(PATTERNS, DEFAULT)


def test_s39h1_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


class Histories(ArgHistories):
    prefix = "s39h1"


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Histories]:
    h = Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", CASES)
def test_s39h1_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_partial_then_wider(pattern, histories, tmp_path)
