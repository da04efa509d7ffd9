"""Exactness gaps of hindsight replay noticed in session 35, closed in session 36.

Each case compares the hindsight columns a replay stores with a full run of the old version
hand-patched with today's statements (the contract's oracle), as
``tests/test_replay_rng_guard.py`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_replay_rng_guard import _add, _case, _drew, _only

# A generator the old loop draws from, reached only through an attribute or a container: a
# trainer object's ``rng``, a config namespace's ``rng``, a dict of generators.
HELD = """
import random
from types import SimpleNamespace
import numpy as np
import torch
import florsql as flor
class Trainer:
    def __init__(self):
        self.rng = np.random.default_rng(0)
        self.gen = torch.Generator().manual_seed(5)
trainer = Trainer()
cfg = SimpleNamespace(rng=random.Random(3), lr=0.1)
rngs = {"aug": random.Random(7)}
w = 0.0
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(4)):
        jit = (float(trainer.rng.normal()) + float(torch.rand(1, generator=trainer.gen))
               + cfg.rng.random() + rngs["aug"].random())
        for i in flor.loop("step", range(3)):
            w = round(w * 0.9 + (epoch + i + jit) * cfg.lr, 9)
        flor.log("ep_w", w)
"""
EP_W = '        flor.log("ep_w", w)\n'
HELD_LINES = {
    "np_attr": ('        flor.log("d", round(float(trainer.rng.normal()), 9))\n', "trainer.rng"),
    "torch_attr": (
        '        flor.log("d", round(float(torch.rand(1, generator=trainer.gen)), 9))\n',
        "trainer.gen",
    ),
    "cfg_attr": ('        flor.log("d", round(cfg.rng.random(), 9))\n', "cfg.rng"),
    "in_dict": ('        flor.log("d", round(rngs["aug"].random(), 9))\n', "rngs['aug']"),
}


@pytest.mark.parametrize("case", [
    "np_attr",
    *(pytest.param(c, marks=pytest.mark.slow) for c in HELD_LINES if c != "np_attr"),
])  # fmt: skip
def test_a_draw_from_a_generator_held_by_an_attribute_or_a_dict(tmp_path: Path, case: str) -> None:
    """Today's statement draws from a generator the old loop draws from each epoch, reached
    through an attribute or a dict. Before session 36 the guard watched the generators the
    frame names only: the draw went unnoticed, and the values after a restored checkpoint
    followed the recorded generator, silently (``d`` at epochs 2, 3 replayed against a run of
    today's script: np_attr 0.1049, -0.5357 for 0.3616, 0.9471; torch_attr 0.8199, 0.9201
    for 0.1166, 0.7379; cfg_attr 0.6039, 0.6257 for 0.0655, 0.8375; in_dict 0.0724, 0.5359
    for 0.3657, 0.5074; ``w_after``, the old ``w`` after it, 2.44595302 for 2.279851843 in
    np_attr). Now the run is replayed from its start, and the query names the generator."""
    line, label = HELD_LINES[case]
    today = _add(HELD, EP_W, line + '        flor.log("w_after", w)\n')
    sql = "SELECT epoch, ep_w, d, w_after FROM logs WHERE epoch >= 2 ORDER BY epoch"
    got, want, said = _case(tmp_path, HELD, today, today, sql)
    assert _only(got, "epoch", "d", "w_after") == _only(want, "epoch", "d", "w_after")
    assert len(got) == 2
    assert _drew(said, "d", f"{label} (a "), [str(w.message) for w in said]


def test_the_guard_scans_attributes_and_containers_to_a_bounded_depth() -> None:
    """:func:`rng_guard._objects` in one process: generators held by an object's attributes,
    a dict's values, a list's items, two levels past the frame's names, are watched; deeper
    ones, those of a container over ``MAX_ENTRIES`` and those of modules are not."""
    import random
    import sys
    import types

    import numpy as np

    from florsql.record import rng_guard
    from florsql.record.rng_guard import MAX_ENTRIES, RngGuard

    class Holder:
        pass

    t = Holder()
    t.rng = np.random.default_rng(0)
    t.cfg = types.SimpleNamespace(
        g=random.Random(1), deeper=types.SimpleNamespace(h=random.Random(9))
    )
    rngs = {"aug": random.Random(2)}
    gens = [random.Random(3)]
    big = [0] * MAX_ENTRIES + [random.Random(4)]
    assert len(big) > MAX_ENTRIES and len(gens) == 1
    here = sys._getframe()
    found = {v[0] for v in rng_guard._objects(here).values()}
    assert found >= {"t.rng", "t.cfg.g", "rngs['aug']", "gens[0]"}, found
    assert not {f for f in found if f.startswith(("big", "t.cfg.deeper", "random"))}, found

    guard = RngGuard()
    guard.begin("s", here)
    t.rng.normal()
    guard.end("s", here)
    guard.begin("c", here)
    rngs["aug"].random()
    guard.end("c", here)
    assert guard.moved == {
        "s": {"t.rng (a Generator of the script)"},
        "c": {"rngs['aug'] (a Random of the script)"},
    }
    # a generator reached through a name today's code bound is its own; one an old object
    # held that the start's scan did not reach is not (it is never taken for today's)
    guard.begin("n", here)
    mine = types.SimpleNamespace(g=random.Random(5))
    t.later = random.Random(6)
    guard.end("n", here)
    own = set(guard._own)
    assert id(mine.g) in own and id(t.later) not in own


# An optimizer or a scheduler no registered optimizer or torch module holds: one reached only
# through a registered scheduler (``sched.optimizer``), and those a registered plain object
# (a trainer without ``state_dict``) holds.
SCHED_HELD = """
import torch
from torch import nn
import florsql as flor
torch.manual_seed(0)
X = torch.randn(64, 6); Y = (X.sum(1) > 0).long()
net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
sched = torch.optim.lr_scheduler.StepLR(
    torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9), step_size=1, gamma=0.5)
with flor.checkpointing(model=net, scheduler=sched):
    for epoch in flor.loop("epoch", range(4)):
        for i in flor.loop("step", range(4)):
            xb, yb = X[i * 16:(i + 1) * 16], Y[i * 16:(i + 1) * 16]
            loss = nn.functional.cross_entropy(net(xb), yb)
            sched.optimizer.zero_grad(); loss.backward(); sched.optimizer.step()
        sched.step()
        flor.log("ep_loss", round(loss.item(), 6))
"""
TRAINER_PLAIN = """
import torch
from torch import nn
import florsql as flor
torch.manual_seed(0)
X = torch.randn(64, 6); Y = (X.sum(1) > 0).long()
class Trainer:
    def __init__(self):
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.2, momentum=0.9)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=1, gamma=0.5)
    def step(self, xb, yb):
        loss = nn.functional.cross_entropy(self.net(xb), yb)
        self.opt.zero_grad(); loss.backward(); self.opt.step()
        return loss
tr = Trainer()
with flor.checkpointing(trainer=tr):
    for epoch in flor.loop("epoch", range(4)):
        for i in flor.loop("step", range(4)):
            loss = tr.step(X[i * 16:(i + 1) * 16], Y[i * 16:(i + 1) * 16])
        tr.sched.step()
        flor.log("ep_loss", round(loss.item(), 6))
"""
TRAINER_SD = TRAINER_PLAIN.replace(
    "    def step(self, xb, yb):",
    "    def state_dict(self):\n"
    '        return {"net": self.net.state_dict()}\n'
    "    def load_state_dict(self, state):\n"
    '        self.net.load_state_dict(state["net"])\n'
    "    def step(self, xb, yb):",
)
EP_LOSS = '        flor.log("ep_loss", round(loss.item(), 6))\n'
HOLDERS = {
    "scheduler": (SCHED_HELD, "sched.optimizer", "net"),
    "trainer_with_a_state_dict": (TRAINER_SD, "tr.opt", "tr.net"),
    "plain_object": (TRAINER_PLAIN, "tr.opt", "tr.net"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(HOLDERS))
def test_an_optimizer_held_by_a_registered_scheduler_or_plain_object(
    tmp_path: Path, case: str
) -> None:
    """Today's epoch-level statements read the optimizer's rate and a weight sum; the query
    restores a checkpoint after each epoch's step loop. Before session 36 a scheduler
    registered without the optimizer it steps (no name of the loop held that optimizer), and a
    trainer whose own ``state_dict`` keeps only its model's, restored the scheduler or the
    model alone: ``lr`` at epochs 2, 3 replayed 0.1, 0.05 against 0.025, 0.0125 in a full
    re-run, silently (with a step-level statement the optimizer's missing momentum moved the
    loss, and verification caught it: recomputed in full). A trainer without a
    ``state_dict`` is pickled whole, its optimizer with it (exact before too)."""
    old, opt, net = HOLDERS[case]
    lines = (
        f'        flor.log("lr", {opt}.param_groups[0]["lr"])\n'
        f'        flor.log("w0", round(float({net}[0].weight.sum()), 6))\n'
    )
    today = _add(old, EP_LOSS, lines)
    sql = "SELECT epoch, ep_loss, lr, w0 FROM logs WHERE epoch >= 2 ORDER BY epoch"
    got, want, said = _case(tmp_path, old, today, today, sql)
    assert got == want and len(got) == 2, [str(w.message) for w in said]


def _sgd_steps(net: Any, opt: Any, sched: Any, n: int) -> None:
    import torch

    for _ in range(n):
        opt.zero_grad()
        net(torch.ones(2, 3)).sum().backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("holder", ["scheduler", "trainer"])
def test_an_optimizer_held_by_a_registered_scheduler_or_trainer_is_restored(holder: str) -> None:
    """In one process: a scheduler registered without its optimizer, and a trainer whose own
    ``state_dict`` keeps only its model's, each saved and restored with the optimizer they hold
    (momentum and rate). Before session 36 neither was in the checkpoint: the restored
    optimizer kept its fresh state (no momentum, the start's rate); a checkpoint recorded
    before it is refused."""
    import torch

    from florsql.errors import StoreError
    from florsql.record import checkpoint as ckpt

    class Trainer:
        def __init__(self, net: Any, opt: Any, sched: Any) -> None:
            self.net, self.opt, self.sched = net, opt, sched

        def state_dict(self) -> Any:
            return {"net": self.net.state_dict()}

        def load_state_dict(self, state: Any) -> None:
            self.net.load_state_dict(state["net"])

    def make() -> tuple[Any, Any, Any, dict[str, Any]]:
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        objs = {"model": net, "scheduler": sched}
        if holder == "trainer":
            objs = {"trainer": Trainer(net, opt, sched)}
        return net, opt, sched, objs

    net, opt, sched, objs = make()
    _sgd_steps(net, opt, sched, 2)
    payload = ckpt.capture(objs)
    _sgd_steps(net, opt, sched, 2)
    want = {k: v.clone() for k, v in net.state_dict().items()}
    want_lr = opt.param_groups[0]["lr"]

    net2, opt2, sched2, objs2 = make()
    ckpt.restore(objs2, payload, rng=False)
    _sgd_steps(net2, opt2, sched2, 2)
    assert opt2.param_groups[0]["lr"] == want_lr
    for k, v in net2.state_dict().items():
        assert torch.equal(v, want[k]), (k, v, want[k])

    assert payload["inner"] and payload["inner_all"]
    old = {k: v for k, v in payload.items() if k != "inner_all"}
    with pytest.raises(StoreError, match="holds another optimizer"):
        ckpt.restore(objs2, old, rng=False)


# Files after a restore: a replay task that restored a checkpoint skipped iterations that wrote
# files; what they wrote is in no checkpoint.
WRITES = """
import os
import florsql as flor
seed = flor.arg("seed", 0)
os.makedirs("out", exist_ok=True)
with open("out/cfg.txt", "w") as f:  # before the loop only
    f.write(f"seed {seed}")
w = float(seed)
with open("out/w.txt", "w") as f:
    f.write(str(w))
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(4)):
        for i in flor.loop("step", range(3)):
            w = round(w * 0.9 + (epoch + i) * 0.1, 9)
            with open("out/w.txt", "w") as f:  # (in the step loop: a task from a checkpoint
                f.write(str(w))  # after it skips it)
        flor.log("ep_w", w)
"""
EPOCH = '    for epoch in flor.loop("epoch", range(4)):\n'
PRE = 'with open("out/w.txt", "w") as f:\n    f.write(str(w))\nwith flor.checkpointing():\n'
WRITES_IN_LOOP = WRITES.replace(PRE, "with flor.checkpointing():\n")


def _file_case(
    tmp_path: Path,
    old: str,
    today: str,
    sql: str,
    seeds: tuple[int, ...] = (0,),
    oracle: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any], Path]:
    """``_case`` with ``out/`` ignored and a run per seed (in turn, sharing ``out/``)."""
    from tests.helpers import make_repo, run_script, write
    from tests.test_replay_rng_guard import _values

    got: list[dict[str, Any]] = []
    want: list[dict[str, Any]] = []
    for name, code in (("r", old), ("o", today))[: 2 if oracle else 1]:
        repo = make_repo(tmp_path / name, {"train.py": code, ".gitignore": "out/\n"})
        for seed in seeds:
            run_script(repo, "train.py", "--seed", str(seed), FLORSQL_CHECKPOINT_PERIOD="1")
        if name == "r":
            write(repo / "train.py", today)
            got, said = _values(repo, sql, "auto")
            replayed = repo
        else:
            want, _ = _values(repo, sql, "off")
    return got, want, said, replayed


def _tasks(repo: Path) -> list[str]:
    """The replay tasks that ran (a ``-start`` one: a run replayed again from its start)."""
    return sorted(p.name for p in (repo / ".florsql" / "replays").glob("*/*") if p.is_dir())


def test_a_statement_reading_a_file_it_never_wrote_is_not_retried(tmp_path: Path) -> None:
    """Today's statement opens a file no one wrote, after a restore: its own error, which a
    run from the start raises too. Before session 36 every ``FileNotFoundError`` after a
    restore replayed the run again from its start (a ``-start`` task, as slow as the run),
    which failed as well, and the query reported both failures, the second at epoch 0."""
    from florsql.errors import ReplayFailedWarning

    today = _add(WRITES, EPOCH, '        flor.log("note", open(f"notes/e{epoch}.txt").read())\n')
    sql = "SELECT epoch, ep_w, note FROM logs WHERE epoch >= 2 ORDER BY epoch"
    got, _, said, repo = _file_case(tmp_path, WRITES, today, sql, oracle=False)
    assert [r["note"] for r in got] == [None, None]
    assert not [t for t in _tasks(repo) if t.endswith("-start")], _tasks(repo)
    failed = [str(w.message) for w in said if issubclass(w.category, ReplayFailedWarning)]
    assert any("today's statement raised" in m for m in failed), failed
    assert not any("notes/e0.txt" in m for m in failed), failed


@pytest.mark.parametrize("case", [
    "written_before_the_loop",
    pytest.param("another_runs_copy", marks=pytest.mark.slow),
    pytest.param("written_only_before_the_loop", marks=pytest.mark.slow),
])  # fmt: skip
def test_a_file_the_run_wrote_read_after_a_restore(tmp_path: Path, case: str) -> None:
    """A file the old code writes in its step loop (and, in the first case, before its loop),
    read by today's statement only: at an epoch's start (the file the epoch before wrote), or
    after the loop, where a second run (another seed) wrote the shared ignored folder last.
    Both skip step loops that write it (a checkpoint restored after them). Before session 36
    the first read the task's own copy from before the loop (``prev`` at epoch 2: 0.0, a run
    of today's script 0.77241), the second the other run's file (``final`` of seed 0:
    3.532166026, seed 5's, for 2.120018343), both silently; now the run lists the files it
    wrote (``outputs``), a read of one after a skip raises ``SkippedWriteError``, and the run
    is replayed from its start, as a run of today's script. A file the run wrote only before
    its loop (``out/cfg.txt``) is the task's own: read in the loop, it sends nothing to a
    replay from the start (``loop_outputs``)."""
    from florsql.errors import NondeterminismWarning

    if case == "written_before_the_loop":
        today = _add(WRITES, EPOCH, '        flor.log("prev", float(open("out/w.txt").read()))\n')
        sql = "SELECT epoch, prev FROM logs WHERE epoch >= 2 ORDER BY epoch"
        seeds: tuple[int, ...] = (0,)
    elif case == "another_runs_copy":
        today = WRITES_IN_LOOP + 'flor.log("final", float(open("out/w.txt").read()))\n'
        sql = "SELECT seed, final FROM logs WHERE final IS NOT NULL ORDER BY seed"
        seeds = (0, 5)
    else:
        today = _add(WRITES, EPOCH, '        flor.log("cfg", open("out/cfg.txt").read())\n')
        sql = "SELECT epoch, cfg FROM logs WHERE epoch >= 2 ORDER BY epoch"
        seeds = (0,)
    old = WRITES if case == "written_before_the_loop" else WRITES_IN_LOOP
    assert WRITES_IN_LOOP != WRITES
    got, want, said, repo = _file_case(tmp_path, old, today, sql, seeds)
    assert got == want and len(got) == 2
    (doc, *_) = [json.loads(p.read_text()) for p in repo.glob(".florsql/runs/*/run.json")]
    assert doc["outputs"] == ["out/cfg.txt", "out/w.txt"]
    assert doc["loop_outputs"] == ["out/w.txt"]
    starts = [t for t in _tasks(repo) if t.endswith("-start")]
    assert bool(starts) == (case != "written_only_before_the_loop"), _tasks(repo)
    # (the task from the start writes the file before it reads it: nothing to say; the
    # sandbox's own copy of a file opened to append is not a read of the task's)
    assert not [w for w in said if issubclass(w.category, NondeterminismWarning)], [
        str(w.message) for w in said
    ]


# A run that reads at its start a file it overwrites later (resumes from ``ckpt/last.json``,
# an ignored folder): what it read is gone once it overwrote it.
RESUME = """
import json
import os
import florsql as flor
os.makedirs("ckpt", exist_ok=True)
w = 0.0
if os.path.exists("ckpt/last.json"):
    with open("ckpt/last.json") as f:
        w = json.load(f)["w"]
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(3)):
        for i in flor.loop("step", range(3)):
            w = round(w * 0.9 + (epoch + i) * 0.1, 9)
        with open("ckpt/last.json", "w") as f:
            json.dump({"w": w}, f)
        flor.log("ep", epoch)  # (nothing the run logs shows the resumed value)
"""
STEP_W = "            w = round(w * 0.9 + (epoch + i) * 0.1, 9)\n"


def test_a_run_resumed_from_a_file_it_overwrote_later_is_not_silent(tmp_path: Path) -> None:
    """Two runs of one script, the second resumed from the file the first left. A replay read
    today's copy (the second run's last state) at its start, in both runs: the first found no
    file when it ran, the second the first's (``ws`` at epoch 0 replayed 1.742, 1.668, 1.701 in
    both, against 0.0, 0.1, 0.29 and 1.2556, 1.2300, 1.3070 in a run of today's script);
    before session 36 nothing said so where no old statement's value showed it. Since then a
    replay that reads one of the run's outputs before writing it warns, naming the file; since
    session 49 the first run, which made the file, replays exactly (its replay finds no file
    either), and only the second warns."""
    from florsql.errors import NondeterminismWarning
    from tests.helpers import make_repo, run_script, write
    from tests.test_replay_rng_guard import _values

    today = _add(RESUME, STEP_W, '            flor.log("ws", w)\n')
    sql = (
        "SELECT run_id, epoch, step, ws FROM logs WHERE ws IS NOT NULL AND epoch = 0 "
        "ORDER BY tstamp, run_id, step"
    )
    out = []
    for name, code in (("r", RESUME), ("o", today)):
        repo = make_repo(tmp_path / name, {"train.py": code, ".gitignore": "ckpt/\n"})
        for _ in range(2):
            run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
        if name == "r":
            write(repo / "train.py", today)
        out.append(_values(repo, sql, "auto" if name == "r" else "off"))
    (got, said), (want, _) = out
    assert len(got) == len(want) == 6
    assert _only(got, "ws")[:3] == _only(want, "ws")[:3] == [(0.0,), (0.1,), (0.29,)]
    assert _only(got, "ws")[3:] != _only(want, "ws")[3:]
    warned = [str(w.message) for w in said if issubclass(w.category, NondeterminismWarning)]
    assert sum(m.count("read ckpt/last.json before writing it") for m in warned) == 1, warned


# Orders the string-order check did not see: held by an object's attributes, by a module of
# the script's own, or in a set the script iterates (a run with random string hashing).
ORDERS = """
import florsql as flor
import vocab
text = "hello world, the quick brown fox jumps over the lazy dog. " * 3
class Tok:
    def __init__(self, text):
        self.chars = list(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
tok = Tok(text)
letters = set(text)
members = set(text.split())
w = 0.0
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(3)):
        for i in flor.loop("step", range(3)):
            w = round(w * 0.9 + (epoch + i) * 0.1, 9)
        flor.log("ep_w", w)
first = [c for c in letters][0]
"""
VOCAB = 'TEXT = "pack my box with five dozen liquor jugs"\nchars = list(set(TEXT))\n'


def test_orders_held_by_attributes_modules_and_iterated_sets_are_compared(
    tmp_path: Path,
) -> None:
    """A run with random string hashing holds ``tok.chars``/``tok.stoi`` (a tokenizer
    object's), ``vocab.chars`` (a module of the repository) and ``letters`` (a set the script
    iterates) in its process's order; a replay holds them in another, and its values computed
    from them (``h_id``, the index of ``h``) are not the run's. Before session 36 the check
    looked at the frame's lists and dicts only: no warning (the replayed ``h_id`` followed the
    replay's hashing, silently). ``members``, a set only asked for membership, is not
    compared (its order is no value's)."""
    from tests.helpers import make_repo, write
    from tests.test_replay_hash_order import _record

    today = ORDERS.replace(
        '        flor.log("ep_w", w)\n',
        '        flor.log("ep_w", w)\n'
        '        flor.log("h_id", tok.stoi["h"] + 100 * vocab.chars.index("p"))\n',
    )
    repo = make_repo(tmp_path / "r", {"train.py": ORDERS, "vocab.py": VOCAB})
    _record(repo, None)
    (run,) = (repo / ".florsql" / "runs").iterdir()
    noted = set(json.loads((run / "run.json").read_text())["orders"]["names"])
    assert {"tok.chars", "tok.stoi", "vocab.chars", "letters"} <= noted, noted
    assert "members" not in noted, noted
    write(repo / "train.py", today)
    from tests.test_replay_rng_guard import _values

    rows, said = _values(repo, "SELECT epoch, h_id FROM logs ORDER BY epoch", "auto")
    assert all(r["h_id"] is not None for r in rows) and len(rows) == 3
    from florsql.errors import NondeterminismWarning

    text = "\n".join(str(w.message) for w in said if issubclass(w.category, NondeterminismWarning))
    for name in ("tok.chars", "tok.stoi", "vocab.chars", "letters"):
        assert name in text, text


def test_which_sets_the_script_iterates() -> None:
    """:func:`order.iterated`: a ``for``, a comprehension, ``*``, ``list``/``enumerate``/...
    and ``str.join`` over a name or an attribute path; not ``sorted``, ``in`` or ``len``."""
    from florsql.record import order

    src = (
        "for c in a: pass\n"
        "x = [c for c in tok.vocab]\n"
        "y = list(b) + [*c]\n"
        "z = ''.join(d)\n"
        "e2 = dict(enumerate(e))\n"
        "s = sorted(f); t = 'q' in g; n = len(h)\n"
    )
    assert order.iterated(src) == {"a", "tok.vocab", "b", "c", "d", "e"}
    assert order.iterated("def (:") == frozenset()


SANDBOX_CHECK = """
import os, sys
import pytest
from florsql.record.watch import WATCH, SkippedWriteError, WriteSandbox

repo, private = sys.argv[1:3]
def read(name):
    with open(os.path.join(repo, "out", name)) as f:
        return f.read()
def put(name, text, mode="w"):
    with open(os.path.join(repo, "out", name), mode) as f:
        f.write(text)
real = {n: os.path.realpath(os.path.join(repo, "out", n)) for n in "abcdeft"}
box = WriteSandbox([repo], [os.path.join(repo, ".florsql")], private)
box.outputs = {real[n]: "out/" + n for n in "abcdef"}
box.install()
WATCH.sandbox = box
put("a", "mine")  # before the loop: the task's own
assert read("a") == "mine"
assert read("e") == "user's"  # a run's output read before any skip
assert box.foreign == {real["e"]}
box.skipped = set(box.outputs)  # the task skips iterations (replay_mode._skipping)
box.restored = True
for name in "ab":
    with pytest.raises(SkippedWriteError):
        read(name)
put("b", "anew")
assert read("b") == "anew"
put("c", "+more", "a")  # the sandbox copies the user's file first: no raise
with pytest.raises(SkippedWriteError):
    read("c")
put("t", "tmp")
os.replace(os.path.join(repo, "out", "t"), os.path.join(repo, "out", "d"))
assert read("d") == "tmp"  # the task's own content
os.replace(os.path.join(repo, "out", "c"), os.path.join(repo, "out", "f"))
with pytest.raises(SkippedWriteError):  # unknown content moves along
    read("f")
assert box.foreign == {real["e"]}
print("ok")
"""


def test_the_sandbox_after_a_skip(tmp_path: Path) -> None:
    """:class:`WriteSandbox` once a task skips iterations (``skipped``: the run's outputs):
    a read of one raises until the task writes it anew (``"w"``), also where it wrote it
    before the skip; appending keeps it unknown (and the sandbox's own copy of the user's file
    for the append is no read of the task's: it raised before, sending every run that appends
    to a log file to a replay from its start); a rename carries what the source held; a run's
    output read before any skip is noted (``foreign``). In a process of its own (the sandbox
    wraps ``os.replace``); the user's files stay as they were."""
    import subprocess
    import sys

    from tests.helpers import script_env

    repo = tmp_path / "repo"
    (repo / "out").mkdir(parents=True)
    for name in "abcde":
        (repo / "out" / name).write_text("user's")
    (tmp_path / "check.py").write_text(SANDBOX_CHECK)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "check.py"), str(repo), str(tmp_path / "p")],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
    assert {p.name: p.read_text() for p in (repo / "out").iterdir()} == dict.fromkeys(
        "abcde", "user's"
    )
