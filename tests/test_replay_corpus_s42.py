"""Sweep s42: gradients that outlive the step loop, replayed and compared with a full re-run of
the hand-patched old version (the harness and oracle of tests/test_replay_corpus_stranger.py,
runs with their own command lines as ``ArgCase`` of tests/test_replay_corpus_s35.py). The old
versions log only the learning rate, so verification cannot rescue a wrong restore: a wrong
value is silent.

Silently wrong before, found by a stranger's sweep (session 42): a checkpoint held the
parameters' values and the optimizer's buffers but no gradient, so

- an optimizer step after the step loop, flushing the rest of a gradient accumulation
  (``opt.step()`` on the batches since the last step), stepped on nothing in a ``rest``
  iteration (restored from the checkpoint after the step loop): ``val_loss`` 15.1973 where a
  full re-run has 16.4703 at epoch 0;
- an accumulation that spans epochs (``gstep % accum``) lost the gradient carried into the
  epoch a task starts at: ``wst`` 1.2195 for 1.1997 at epoch 4;
- the same for tensors trained by hand: one an optimizer holds that no registered module does,
  one registered itself, and a local one registered nowhere (saved with the frame's locals).

Also NULL where a run from the start answers (a second sweep, session 42): a model rebound to a
grown one at epoch 1 and its optimizer rebuilt (the registered objects are the first ones; the
locals' state no longer fits the replay's objects, made as the script starts), or a layer frozen
and the optimizer rebuilt over the rest: the task failed putting the checkpoint back. Such a task
now runs again from the run's start (``restoring`` in its ``failed.json``,
``runner._failed_restoring``).

And a statement that changes a registered model in place (reading a spectral-normed layer's
``weight`` in train mode runs a power iteration over its vectors; a forward pass in train mode
moves batch norm's running statistics) was replayed in ``rest`` iterations as if it read only:
``wn`` 1.6243 for a full re-run's 1.6344. The RNG guard now also notes a change of a registered
module's tensors (their version counters), gradients and training flags around today's
statements, and the run is replayed from its start, as for a draw (``rng_guard._module_state``).

A third sweep: a dataset or sampler of the script's own class reached only through a
``DataLoader`` (a loader local was saved by its generators alone: ``loader.dataset.hits`` 0 for
a full re-run's 60), and a pandas DataFrame grown each epoch (filling its ``__dict__`` left its
block manager as it was: 1 row for 3). Now a loader keeps its parts' data attributes
(``frame_state._loader_parts``) and a DataFrame or Series is refilled by ``__setstate__``.

An outer ``flor.loop`` that no ``for`` iterates (``it = iter(flor.loop(...))``, then
``next(it)`` in a ``while`` loop) left the scan placing today's statements outside every loop:
no iteration was replayed and a query filtering on the column had no rows, without a word. Such
a file's statements now have an unknown loop context (``scan_ast.loose_loop``): whole runs
replay.

A checkpoint now holds each parameter's gradient (``module_extras``' ``grads``, the 4th item of
a loose parameter's row, ``tensor_grads``, a frame capture's ``grads``), and a restore puts it
back (None where it was None). A local bound to a gradient is saved as a reference to it, and
a gradient read after the step loop replays in rest mode where the checkpoint says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import test_replay_corpus_stranger as corpus
from tests.helpers_replay import corpus_params, hindsight_names
from tests.test_replay_corpus_s35 import ArgCase
from tests.test_replay_corpus_s35 import Histories as ArgHistories
from tests.test_replay_corpus_stranger import Case

LR = """
        flor.log("lr", opt.param_groups[0]["lr"])
"""
#: the step loop most patterns train with (at the epoch loop's depth)
STEPS = """
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
"""[1:]
LOADER_STEPS = """
        for x, y in flor.loop("step", loader):
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
"""[1:]


def _case(name: str, body: str, levels: dict[str, list[str]]) -> ArgCase:
    first = next(iter(levels.values()))[0]
    return ArgCase(
        name,
        body,
        levels,
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=(f"SELECT seed, epoch, {first} FROM logs WHERE epoch = 3",),
    )


PATTERNS = [
    _case(
        "an_optimizer_step_after_the_step_loop_flushes_the_accumulation",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(10))):
            loss = loss_fn(net(X[idx]), Y[idx])
            loss.backward()
            if (i + 1) % 2 == 0:  # accumulation over 2 batches: 5 batches leave one
                opt.step()
                opt.zero_grad()
        opt.step()  # flush the leftover gradient
        opt.zero_grad()
"""
        + LR
        + """
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
        flor.log("val_loss", float(loss_fn(net(XV), YV)))  # hindsight
""",
        {"epoch": ["w_sum", "val_loss"]},
    ),
    _case(
        "a_clipped_flush_after_the_step_loop",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(10))):
            loss = loss_fn(net(X[idx]), Y[idx]) / 3
            loss.backward()
            if (i + 1) % 3 == 0:
                nn.utils.clip_grad_norm_(net.parameters(), 0.5)
                opt.step()
                opt.zero_grad(set_to_none=False)
        norm = float(nn.utils.clip_grad_norm_(net.parameters(), 0.5))
        opt.step()
        opt.zero_grad(set_to_none=False)
"""
        + LR
        + """
        flor.log("flush_norm", norm)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["flush_norm", "w_sum"]},
    ),
    _case(
        "an_accumulation_that_spans_epochs",
        """
accum = 3
gstep = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):  # 4 steps an epoch
            loss = loss_fn(net(X[idx]), Y[idx])
            loss.backward()
            gstep += 1
            if gstep % accum == 0:  # by the global step: spans epoch boundaries
                opt.step()
                opt.zero_grad()
            flor.log("wst", float(net[0].weight.sum()))  # hindsight
"""
        + LR
        + """
        flor.log("w_end", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch, step": ["wst"], "epoch": ["w_end"]},
    ),
    _case(
        "a_hand_made_tensor_an_optimizer_trains_across_epochs",
        """
w = torch.zeros(6, 2, requires_grad=True)  # held by the optimizer, by no module
head = torch.optim.SGD([w], lr=0.1)
accum = 5  # 4 steps an epoch: most epochs end with a gradient held
gstep = 0
with flor.checkpointing(model=net, optimizer=opt, head=head):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]) + X[idx] @ w, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            gstep += 1
            flor.log("w_step", float(w.norm()))  # hindsight
            if gstep % accum == 0:
                head.step()
                head.zero_grad()
"""
        + LR
        + """
        flor.log("w_norm", float(w.norm()))  # hindsight
        flor.log("w_grad", float(w.grad.norm()) if w.grad is not None else -1.0)  # hindsight
""",
        {"epoch": ["w_norm", "w_grad"], "epoch, step": ["w_step"]},
    ),
    _case(
        "a_registered_tensor_trained_by_hand_across_epochs",
        """
w = torch.zeros(6, 2, requires_grad=True)
accum = 5
gstep = 0
with flor.checkpointing(model=net, optimizer=opt, w=w):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]) + X[idx] @ w, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            gstep += 1
            flor.log("w_step", float(w.norm()))  # hindsight
            if gstep % accum == 0:
                with torch.no_grad():
                    w -= 0.1 * w.grad
                w.grad.zero_()
"""
        + LR
        + """
        flor.log("w_norm", float(w.norm()))  # hindsight
""",
        {"epoch": ["w_norm"], "epoch, step": ["w_step"]},
    ),
    _case(
        "a_local_tensor_trained_by_hand_across_epochs",
        """
w = torch.zeros(6, 2, requires_grad=True)  # trained by hand, registered nowhere
accum = 5
gstep = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]) + X[idx] @ w, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            gstep += 1
            flor.log("w_step", float(w.norm()))  # hindsight
            if gstep % accum == 0:
                with torch.no_grad():
                    w -= 0.1 * w.grad
                w.grad = None
"""
        + LR
        + """
        flor.log("w_norm", float(w.norm()))  # hindsight
""",
        {"epoch": ["w_norm"], "epoch, step": ["w_step"]},
    ),
    _case(
        "the_model_rebound_to_a_grown_one_and_the_optimizer_rebuilt",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:  # the registered objects are the first ones: these are locals
            net = nn.Sequential(net[0], net[1], nn.Linear(8, 8), nn.ReLU(), net[2])
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
"""
        + STEPS
        + LR
        + """
        flor.log("depth", len(net))  # hindsight
        flor.log("w_sum", float(net[-1].weight.sum()))  # hindsight
""",
        {"epoch": ["depth", "w_sum"]},
    ),
    _case(
        "a_layer_frozen_and_the_optimizer_rebuilt_over_the_rest",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        if epoch == 1:
            net[0].requires_grad_(False)
            opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=0.01)
"""
        + STEPS
        + LR
        + """
        flor.log("w_sum", float(net[2].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"]},
    ),
    _case(
        "a_spectral_normed_layers_weight_read_after_the_step_loop",
        """
from torch.nn.utils.parametrizations import spectral_norm

net = nn.Sequential(spectral_norm(nn.Linear(6, 8)), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + STEPS
        + LR
        + """
        # in train mode, reading the weight runs a power iteration: its vectors change
        flor.log("wn", float(net[0].weight.norm()))  # hindsight
""",
        {"epoch": ["wn"]},
    ),
    _case(
        "a_forward_pass_in_train_mode_moves_batch_norms_statistics",
        """
net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.2)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
"""
        + STEPS
        + LR
        + """
        flor.log("all_loss", float(loss_fn(net(XV), YV)))  # hindsight
        net.eval()
        with torch.no_grad():
            ev = float(loss_fn(net(XV), YV))
        flor.log("ev_seen", ev)  # hindsight
""",
        {"epoch": ["all_loss", "ev_seen"]},
    ),
    _case(
        "a_dataset_counter_reached_only_through_its_loader",
        """
from torch.utils.data import DataLoader, Dataset


class Counting(Dataset):
    def __init__(self):
        self.hits = 0  # state of the dataset's own, read by no name but the loader's

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        self.hits += 1
        return X[i] * (1 + self.hits / 1000), Y[i]


loader = DataLoader(Counting(), batch_size=12)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + LOADER_STEPS
        + LR
        + """
        flor.log("hits", loader.dataset.hits)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["hits", "w_sum"]},
    ),
    _case(
        "a_curriculum_sampler_reached_only_through_its_loader",
        """
from torch.utils.data import DataLoader, Sampler, TensorDataset


class Curriculum(Sampler):
    def __init__(self, n):
        self.n, self.level = n, 12

    def __iter__(self):
        order = list(range(self.level))
        self.level = min(self.n, self.level + 12)  # harder each epoch
        return iter(order)

    def __len__(self):
        return self.level


loader = DataLoader(TensorDataset(X, Y), batch_size=6, sampler=Curriculum(len(X)))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + LOADER_STEPS
        + LR
        + """
        flor.log("level", loader.sampler.level)  # hindsight
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["level", "w_sum"]},
    ),
    _case(
        "a_pandas_frame_of_metrics_grown_each_epoch",
        """
import pandas as pd

history = pd.DataFrame(columns=["epoch", "loss"])
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.loc[len(history)] = [epoch, loss.item()]
"""
        + LR
        + """
        flor.log("rows", len(history))  # hindsight
        flor.log("mean_loss", float(history["loss"].mean()))  # hindsight
""",
        {"epoch": ["rows", "mean_loss"]},
    ),
    _case(
        "an_outer_loop_advanced_by_next_in_a_while_loop",
        """
epochs_left = iter(flor.loop("epoch", range(epochs)))  # no for iterates it
with flor.checkpointing(model=net, optimizer=opt):
    while True:
        try:
            epoch = next(epochs_left)
        except StopIteration:
            break
"""
        + STEPS
        + LR
        + """
        flor.log("w_sum", float(net[0].weight.sum()))  # hindsight
""",
        {"epoch": ["w_sum"]},
    ),
    _case(
        "a_gradient_norm_read_after_the_step_loop",
        """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            opt.zero_grad()  # at the start: the last batch's gradient stays after the loop
            loss = loss_fn(net(X[idx]), Y[idx])
            loss.backward()
            opt.step()
"""
        + LR
        + """
        flor.log("g_last", float(net[0].weight.grad.norm()))  # hindsight
""",
        {"epoch": ["g_last"]},
    ),
]
DEFAULT: list[str] = [
    "an_optimizer_step_after_the_step_loop_flushes_the_accumulation",
    "an_accumulation_that_spans_epochs",
]
CASES = corpus_params(PATTERNS, DEFAULT)


def test_s42_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


def test_a_checkpoint_puts_each_gradient_back_and_none_where_there_was_none() -> None:
    """A capture, through a checkpoint file's round trip, restores the gradients of a module's
    parameters, of a loose parameter and of a registered tensor, in place where one is held,
    and clears one that the checkpoint's moment did not have."""
    import torch
    from torch import nn

    from florsql.record import checkpoint as ckpt

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    w = torch.zeros(3, requires_grad=True)
    loose = torch.ones(2, requires_grad=True)
    opt = torch.optim.SGD([*net.parameters(), loose], lr=0.1)
    (net(torch.ones(4, 3)).sum() + (w * 2).sum() + loose.sum()).backward()
    net[1].bias.grad = None  # no gradient at the checkpoint's moment
    want = {k: None if p.grad is None else p.grad.clone() for k, p in net.named_parameters()}
    captured = ckpt.capture({"model": net, "opt": opt, "w": w})
    payload = ckpt.load_bytes(ckpt.serialize(captured), "test")
    for p in (*net.parameters(), w, loose):
        p.grad = torch.full_like(p, 7.0)
    held = net[0].weight.grad
    ckpt.restore({"model": net, "opt": opt, "w": w}, payload)
    for k, p in net.named_parameters():
        assert (p.grad is None) == (want[k] is None), k
        if want[k] is not None:
            assert torch.equal(p.grad, want[k]), k
    assert net[0].weight.grad is held  # in place: code holding the gradient sees it
    assert w.grad is not None and w.grad.tolist() == [2.0, 2.0, 2.0]
    assert loose.grad is not None and loose.grad.tolist() == [1.0, 1.0]


class Histories(ArgHistories):
    prefix = "s42"


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Histories]:
    h = Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", CASES)
def test_s42_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_partial_then_wider(pattern, histories, tmp_path)
