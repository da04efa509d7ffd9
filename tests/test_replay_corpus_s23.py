"""Training scripts that keep state in tensors and module-level generators, replayed and compared
with a full re-run of the hand-patched old version (the harness and oracle of
tests/test_replay_corpus_stranger.py).

Tensors a script trains or accumulates by hand: parameters made with ``requires_grad=True`` and
handed to a torch optimizer (which changes them in ``step()``, a call the loop makes on the
optimizer, not on them), a hand-written SGD update (``w -= lr * w.grad``), an accumulator that a
dict or a list also holds (changed in place) or that the loop rebinds (``total = total + x``,
while another name keeps the first tensor), an exponential average kept by ``mul_``/``add_``.
The process-wide generators: ``random.shuffle`` and ``numpy.random.permutation`` choosing each
epoch's order. ``BUGS`` names each failing pattern's bug (a strict xfail until fixed)."""

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
        "hand_made_parameters_trained_by_a_registered_optimizer",
        """
w = (torch.randn(6, 2) * 0.1).requires_grad_()
b = torch.zeros(2, requires_grad=True)
sgd = torch.optim.SGD([w, b], lr=0.1, momentum=0.9)
with flor.checkpointing(optimizer=sgd):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(X[idx] @ w + b, Y[idx])
            sgd.zero_grad()
            loss.backward()
            sgd.step()
            flor.log("loss", loss.item())
        flor.log("w_sum", float(w.sum()))  # hindsight
        flor.log("b_sum", float(b.sum()))  # hindsight
""",
        {"epoch": ["w_sum", "b_sum"]},
        fresh=True,
    ),
    Case(
        "only_the_optimizer_registered_the_model_left_out",
        """
with flor.checkpointing(optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("w0", float(net[0].weight.sum()))  # hindsight
        flor.log("val", loss_fn(net(XV), YV).item())  # hindsight
""",
        {"epoch": ["w0", "val"]},
    ),
    Case(
        "two_checkpointed_phases_each_with_its_own_epochs",
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
ft_opt = torch.optim.SGD(net.parameters(), lr=0.05)
with flor.checkpointing(model=net, optimizer=ft_opt):
    for ft in flor.loop("ft_epoch", range(3)):
        for idx in flor.loop("ft_step", torch.randperm(len(XV)).split(4)):
            loss = loss_fn(net(XV[idx]), YV[idx])
            ft_opt.zero_grad()
            loss.backward()
            ft_opt.step()
            flor.log("ft_loss", loss.item())
        flor.log("ft_w", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w"], "ft_epoch": ["ft_w"]},
        old_query="SELECT seed, epoch, ft_epoch, loss, ft_loss FROM logs",
        fresh=True,
    ),
    Case(
        "metric_module_made_at_the_top_of_each_epoch",
        """
class Counted(nn.Module):  # a torchmetrics-style metric: a module with state in buffers
    def __init__(self):
        super().__init__()
        self.register_buffer("correct", torch.zeros(()))
        self.register_buffer("seen", torch.zeros(()))

    def update(self, logits, y):
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += len(y)


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        acc = Counted()
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            logits = net(X[idx])
            loss = loss_fn(logits, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            acc.update(logits.detach(), Y[idx])
            flor.log("loss", loss.item())
        flor.log("train_acc", float(acc.correct / acc.seen))  # hindsight
""",
        {"epoch": ["train_acc"]},
        fresh=True,
    ),
    Case(
        "hand_written_sgd_on_a_leaf_tensor",
        """
w = (torch.randn(6, 2) * 0.1).requires_grad_()
with flor.checkpointing(model=net):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(X[idx] @ w, Y[idx])
            loss.backward()
            with torch.no_grad():
                w -= 0.1 * w.grad
                w.grad.zero_()
            flor.log("loss", loss.item())
        flor.log("w_sum", float(w.sum()))  # hindsight
        flor.log("w_grad", w.requires_grad)  # hindsight
""",
        {"epoch": ["w_sum", "w_grad"]},
        fresh=True,
    ),
    Case(
        "tensor_accumulator_rebound_while_another_name_keeps_the_first",
        """
total = torch.zeros(())
first = total
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            total = total + loss.detach()
        flor.log("total", float(total))  # hindsight
        flor.log("first", float(first))  # hindsight
""",
        {"epoch": ["total", "first"]},
    ),
    Case(
        "exponential_average_kept_in_place_and_in_a_list",
        """
ema = torch.zeros(())
kept = [ema]
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.mul_(0.9).add_(loss.detach(), alpha=0.1)
            flor.log("loss", loss.item())
        flor.log("ema", float(ema))  # hindsight
        flor.log("kept", float(kept[0]))  # hindsight
""",
        {"epoch": ["ema", "kept"]},
    ),
    Case(
        "per_epoch_accumulator_appended_to_a_history",
        """
history = []
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        total = torch.zeros(())
        history.append(total)
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach()
            flor.log("loss", loss.item())
        flor.log("last", float(history[-1]))  # hindsight
        flor.log("all", float(sum(history)))  # hindsight
""",
        {"epoch": ["last", "all"]},
    ),
    Case(
        "python_and_numpy_global_generators_pick_the_order",
        """
import random

import numpy as np

random.seed(seed)
np.random.seed(seed)
order = list(range(len(X)))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        random.shuffle(order)
        for chunk in flor.loop("step", np.random.permutation(4)):
            idx = torch.tensor(order[chunk * 12 : chunk * 12 + 12])
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("first", order[0])  # hindsight
        flor.log("np_pos", int(np.random.get_state()[2]))  # hindsight
        flor.log("py_state", random.getstate()[1][random.getstate()[1][-1] % 624])  # hindsight
""",
        {"epoch": ["first", "np_pos", "py_state"]},
        fresh=True,
    ),
]

#: known replay bugs these patterns show (each a strict xfail until fixed)
BUGS: dict[str, str] = {}
for _p in PATTERNS:
    _p.bug = BUGS.get(_p.name)
assert not set(BUGS) - {p.name for p in PATTERNS}

#: the default run (``make test``); every other pattern runs with ``make test-slow``
DEFAULT = (
    "hand_made_parameters_trained_by_a_registered_optimizer",
    "hand_written_sgd_on_a_leaf_tensor",
)
CASES = corpus_params(PATTERNS, DEFAULT)
FRESH = corpus_params(
    [p for p in PATTERNS if p.fresh], [p.name for p in PATTERNS if p.fresh and p.name in DEFAULT]
)


def test_s23_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


@pytest.mark.parametrize("pattern", CASES)
def test_s23_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_partial_then_wider(pattern, stranger, tmp_path)


@pytest.mark.parametrize("pattern", FRESH)
def test_s23_fresh_store_replays_like_a_full_rerun(
    pattern: Case, stranger: StrangerHistories, tmp_path: Path
) -> None:
    check_fresh(pattern, stranger, tmp_path)
