"""Property: small generated training loops replay like a full re-run.

Each example builds a loop program from blocks a training script combines: accumulators (reset
per epoch or carried), a global step, draws from torch's global RNG, a ``torch.Generator``,
Python's ``random`` and a numpy ``Generator``, a list and a dict the loop mutates, an EMA
tensor changed in place, a helper object with a counter, a scheduler (registered or not), a
``break`` out of the step loop; and today's statements reading them at the step level, the
epoch level (before or after the step loop) and after the outer loop. The old version (no
``# hindsight`` lines) is recorded with checkpoints every ``period`` epochs, the patched one
fully in another repository (the oracle); a partial query, then the wide ones, must equal the
oracle's answers, floats bit for bit. Few examples (each records two runs): the suite's time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers_replay import (
    KeptWorkers,
    Mismatches,
    Recorder,
    hindsight_names,
    record_pair,
)
from tests.test_replay_corpus import PREAMBLE


@dataclass(frozen=True)
class Block:
    setup: str  # module level, before the loops
    epoch_head: str  # the outer body, before the step loop
    step: str  # the step loop's body, after opt.step()
    epoch_tail: str  # the outer body, after the step loop
    after: str = ""  # after the outer loop
    registered: str = ""  # ``name=obj`` given to flor.checkpointing


BLOCKS = {
    "acc_reset": Block(
        "",
        "acc = 0.0\n",
        "acc += loss.item()\n",
        'flor.log("acc", acc)  # hindsight\n',
    ),
    "acc_carried": Block(
        "total = 0.0\n",
        "",
        "total += loss.item() * 0.5\n",
        'flor.log("total", total)  # hindsight\n',
        'flor.log("total_end", total)  # hindsight\n',
    ),
    "gstep": Block(
        "gstep = 0\n",
        'flor.log("gstep_head", gstep)  # hindsight\n',
        'gstep += 1\nflor.log("gstep", gstep)  # hindsight\n',
        "",
    ),
    "torch_rng": Block(
        "",
        "",
        "noise = float(torch.rand(()))\n",
        'flor.log("noise", noise)  # hindsight\n',
    ),
    "generator": Block(
        "g = torch.Generator().manual_seed(seed + 5)\n",
        "",
        "draw = float(torch.rand((), generator=g))\n",
        'flor.log("draw", draw)  # hindsight\n'
        'flor.log("g_next", float(torch.rand((), generator=g.clone_state())))  # hindsight\n',
    ),
    "py_random": Block(
        "import random\nrandom.seed(seed)\n",
        "",
        "coin = random.random()\n",
        'flor.log("coin", coin)  # hindsight\n',
    ),
    "np_rng": Block(
        "import numpy as np\nrng = np.random.default_rng(seed)\n",
        "",
        "pick = int(rng.integers(0, 100))\n",
        'flor.log("pick", pick)  # hindsight\n',
    ),
    "history": Block(
        "hist = []\nseen = {}\n",
        "",
        "hist.append(loss.item())\nseen[int(idx[0]) % 4] = len(hist)\n",
        'flor.log("hist", sum(hist[-3:]))  # hindsight\n'
        'flor.log("seen", sorted(seen.items()))  # hindsight\n',
        'flor.log("n_hist", len(hist))  # hindsight\n',
    ),
    "ema": Block(
        "ema = torch.zeros(8, 6)\n",
        "",
        "ema.mul_(0.9).add_(0.1 * net[0].weight.detach())\n",
        'flor.log("ema", float(ema.sum()))  # hindsight\n',
    ),
    "meter": Block(
        "class Meter:\n    def __init__(self):\n        self.n = 0\n        self.v = 0.0\n\n"
        "    def update(self, v):\n        self.n += 1\n        self.v += v\n\n\nmeter = Meter()\n",
        "",
        "meter.update(loss.item())\n",
        'flor.log("meter", meter.v / meter.n)  # hindsight\n',
    ),
    "sched_registered": Block(
        "sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)\n",
        "",
        "",
        'sched.step()\nflor.log("lr", opt.param_groups[0]["lr"])  # hindsight\n',
        registered="scheduler=sched",
    ),
    "sched_unregistered": Block(
        "sched2 = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)\n",
        "",
        "sched2.step()\n",
        'flor.log("lr2", sched2.get_last_lr()[0])  # hindsight\n',
    ),
    "break_early": Block(
        "",
        "",
        "if i == 2 and epoch % 2 == 1:\n    break\n",
        'flor.log("last_i", i)  # hindsight\n',
    ),
}


def program(names: list[str]) -> str:
    blocks = [BLOCKS[n] for n in names]
    registered = ", ".join(
        ["model=net", "optimizer=opt", *(b.registered for b in blocks if b.registered)]
    )

    def indent(text: str, by: int) -> str:
        return "".join(" " * by + line if line.strip() else line for line in text.splitlines(True))

    out = PREAMBLE + "".join(b.setup for b in blocks)
    out += f"with flor.checkpointing({registered}):\n"
    out += '    for epoch in flor.loop("epoch", range(epochs)):\n'
    out += indent("".join(b.epoch_head for b in blocks), 8)
    out += '        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):\n'
    out += "            loss = loss_fn(net(X[idx]), Y[idx])\n"
    out += "            opt.zero_grad()\n            loss.backward()\n            opt.step()\n"
    out += '            flor.log("loss", loss.item())\n'
    out += indent("".join(b.step for b in blocks), 12)
    out += indent("".join(b.epoch_tail for b in blocks), 8)
    out += '        flor.log("w", float(net[0].weight.sum()))\n'
    out += "".join(b.after for b in blocks)
    return out


def levels(text: str) -> dict[str, list[str]]:
    """Hindsight names by row grain, from their indentation."""
    out: dict[str, list[str]] = {"epoch": [], "epoch, step": [], "": []}
    names = iter(hindsight_names(text))
    for line in text.splitlines():
        if line.rstrip().endswith("# hindsight") and 'flor.log("' in line:
            depth = len(line) - len(line.lstrip())
            grain = {8: "epoch", 12: "epoch, step", 0: ""}[depth]
            out[grain].append(next(names))
    return {k: v for k, v in out.items() if v}


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Recorder, KeptWorkers]]:
    rec = Recorder(tmp_path_factory.mktemp("runlogs"))
    workers = KeptWorkers(2)
    yield rec, workers
    rec.close()
    workers.shutdown()


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    names=st.lists(st.sampled_from(sorted(BLOCKS)), min_size=2, max_size=5, unique=True),
    period=st.sampled_from([1, 2]),
    first=st.integers(1, 3),
)
def test_generated_loops_replay_like_a_full_rerun(
    names: list[str],
    period: int,
    first: int,
    recorder: tuple[Recorder, KeptWorkers],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    rec_, workers = recorder
    text = program(names)
    root = tmp_path_factory.mktemp("prog")
    rec = record_pair(rec_, root, text, [("--seed", "0")], period=period)
    found = Mismatches()
    with found.session(rec, f"{names} period {period}", workers) as check:
        grains = levels(text)
        for keys, cols in grains.items():
            if keys:
                check(f"SELECT {keys}, {', '.join(cols)} FROM logs WHERE epoch >= {first}")
        for keys, cols in grains.items():
            check(f"SELECT {', '.join([*([keys] if keys else []), *cols])} FROM logs")
    found.assert_none()


def test_every_block_makes_a_valid_program() -> None:
    import ast

    from tests.helpers_replay import old_source, patched_source

    text = program(sorted(BLOCKS))
    ast.parse(old_source(text))
    ast.parse(patched_source(text))
    assert sum(len(v) for v in levels(text).values()) == len(hindsight_names(text))
