"""Sweep s43: state a script keeps in its functions, replayed and compared with a full re-run
of the hand-patched old version (the harness and oracle of tests/test_replay_corpus_stranger.py,
runs with their own command lines as ``ArgCase`` of tests/test_replay_corpus_s35.py).

Silently wrong before, found by a stranger's sweep (session 43): a checkpoint saves a
function's attributes, never its default arguments, nor what a ``functools.partial`` binds,
nor an ``lru_cache``'s entries. A replay starting from a checkpoint got the defaults a fresh
start makes, so

- ``def smoothed(v, _state={})`` (a running mean kept in a mutable default) logged the
  epoch's own loss: 0.1243 where a full re-run has 0.2077 at epoch 2;
- the same in a method's default (``_hist=[]``), a lambda's tensor default (``buf.mul_(0.5)``),
  a helper module's function, and ``partial(smoothed, state={})``;
- an ``lru_cache`` helper returning ``torch.randperm(32)[:n]`` drew its indices again, from the
  restored RNG state: the validation loss on other samples (0.3066 for 0.0780).

The same sweep's follow-up: a statement that changes a model in place (a forward pass in train
mode moves batch norm's statistics) was watched only on models given to ``flor.checkpointing``;
a model left out (saved with the frame's locals) read ``running_mean`` 1.4774 for a full
re-run's 1.5481 at epoch 3. The RNG guard now watches the torch modules the statement's frame
names too (``rng_guard._frame_modules``).

Two more gaps of that guard: some kernels write buffers in place without bumping their version
counter (``F.batch_norm`` on a custom layer's running statistics: ``rm`` 0.9392 for a full
re-run's 1.0428), so small buffers are compared by value too (``rng_guard._buffer_digest``).

The old versions log nothing computed from that state, so verification could not see it. Now
the planner replays such runs from their start (``effects.default_state``, in the script:
``patched.analyze_patched``; in a module of the repository: ``effects.module_state``), as
EXPLAIN says: ``full: the whole run (state in a function no checkpoint saves
(smoothed(_state)): every iteration must run)``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from florsql.code.effects import default_state
from tests import test_replay_corpus_stranger as corpus
from tests.helpers_replay import corpus_params, hindsight_names
from tests.test_replay_corpus_s35 import ArgCase
from tests.test_replay_corpus_s35 import Histories as ArgHistories
from tests.test_replay_corpus_stranger import Case

STEPS = """
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        flor.log("lr", opt.param_groups[0]["lr"])
"""[1:]


def _case(name: str, body: str, names: list[str], **kw: dict[str, str]) -> ArgCase:
    return ArgCase(
        name,
        body,
        {"epoch": names},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=(f"SELECT seed, epoch, {names[0]} FROM logs WHERE epoch = 2",),
        **kw,
    )


SMOOTHED = """
def smoothed(v, _state={}):
    _state["s"] = 0.5 * _state.get("s", v) + 0.5 * v
    return _state["s"]

"""

PATTERNS = [
    _case(
        "a_running_mean_kept_in_a_mutable_default_argument",
        SMOOTHED
        + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + STEPS
        + """\
        sm = smoothed(loss.item())
        flor.log("sm", sm)  # hindsight
""",
        ["sm"],
    ),
    _case(
        "a_history_kept_in_a_method_default_argument",
        """
class Meter:
    def add(self, v, _hist=[]):
        _hist.append(v)
        return sum(_hist[-3:]) / len(_hist[-3:])

meter = Meter()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + STEPS
        + """\
        recent = meter.add(loss.item())
        flor.log("recent", recent)  # hindsight
""",
        ["recent"],
    ),
    _case(
        "an_ema_in_a_lambda_tensor_default",
        """
ema = lambda v, buf=torch.zeros(1): float(buf.mul_(0.5).add_(0.5 * v))  # noqa: E731
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + STEPS
        + """\
        e = ema(loss.item())
        flor.log("ema", e)  # hindsight
""",
        ["ema"],
    ),
    _case(
        "a_mutable_default_in_a_helper_module",
        """
from helpers import smoothed

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + STEPS
        + """\
        sm = smoothed(loss.item())
        flor.log("sm", sm)  # hindsight
""",
        ["sm"],
        extra={"helpers.py": SMOOTHED},
    ),
    _case(
        "a_partial_binding_a_dict_made_in_place",
        """
import functools

def smoothed(v, state):
    state["s"] = 0.5 * state.get("s", v) + 0.5 * v
    return state["s"]

smooth = functools.partial(smoothed, state={})
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + STEPS
        + """\
        sm = smooth(loss.item())
        flor.log("sm", sm)  # hindsight
""",
        ["sm"],
    ),
    _case(
        "an_lru_cache_of_drawn_validation_indices",
        """
import functools

@functools.lru_cache(maxsize=None)
def val_indices(size):
    return torch.randperm(len(XV))[:size]

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + STEPS
        + """\
        idx = val_indices(8)
        with torch.no_grad():
            vloss = float(loss_fn(net(XV[idx]), YV[idx]))
        flor.log("vloss", vloss)  # hindsight
""",
        ["vloss"],
    ),
]

PATTERNS.append(
    _case(
        "a_forward_pass_in_train_mode_on_a_model_left_out_of_checkpointing",
        """
bn = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(bn.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + STEPS.replace("net(", "bn(")
        + """        flor.log("tacc", float((bn(X).argmax(1) == Y).float().mean()))  # hindsight
        flor.log("rm", float(bn[1].running_mean.sum()))  # hindsight
""",
        ["tacc", "rm"],
    )
)

PATTERNS += [
    _case(
        "a_custom_norm_layer_whose_kernel_writes_its_buffers_unversioned",
        """
import torch.nn.functional as F


class RunNorm(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.register_buffer("rm", torch.zeros(n))
        self.register_buffer("rv", torch.ones(n))

    def forward(self, x):
        return F.batch_norm(x, self.rm, self.rv, training=self.training, momentum=0.1)


rn = nn.Sequential(nn.Linear(6, 8), RunNorm(8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(rn.parameters(), lr=0.2, momentum=0.9)
with flor.checkpointing(model=rn, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + STEPS.replace("net(", "rn(")
        + """        flor.log("vo", float(rn(XV).mean()))  # hindsight
        flor.log("rm", float(rn[1].rm.sum()))  # hindsight
""",
        ["vo", "rm"],
    ),
]

DEFAULT: list[str] = [
    "a_running_mean_kept_in_a_mutable_default_argument",
    "a_forward_pass_in_train_mode_on_a_model_left_out_of_checkpointing",
]
CASES = corpus_params(PATTERNS, DEFAULT)


def test_s43_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


@pytest.mark.parametrize(
    "source",
    [
        "def build(sizes=[64, 64], act=None):\n    return [nn.Linear(s, s) for s in sizes]\n",
        "def evaluate(model, device=torch.device('cpu'), metrics=('acc',)):\n    return model\n",
        "def f(x, opts={}):\n    return opts.get('k', x)\n",
        "@functools.lru_cache(maxsize=None)\ndef mask(n):\n    return torch.triu(torch.ones(n))\n",
        "g = functools.partial(train, lr=0.1, hist=history)\n",
        "def make_opt(params, lr=flor.arg('lr', 0.1)):\n    return SGD(params, lr=lr)\n",
    ],
)
def test_functions_that_keep_no_state_are_not_taken_for_state(source: str) -> None:
    """A default the function only reads, an inert one, a cache of computed values, a partial
    over names (saved by the checkpoint with the frame) keep no state: such scripts still
    replay from checkpoints."""
    assert default_state(ast.parse(source)) == ()


class Histories(ArgHistories):
    prefix = "s43"


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Histories]:
    h = Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", CASES)
def test_s43_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_partial_then_wider(pattern, histories, tmp_path)
