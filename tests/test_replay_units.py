"""Pure parts of replay: loop effects, statement placement, the planner's steps and tasks."""

from __future__ import annotations

import doctest
import importlib

import pytest

from florsql.code.effects import analyze_source
from florsql.plan.patched import Patched, analyze_patched
from florsql.plan.replay_plan import CheckpointRef, Step
from florsql.plan.tasks import RunFacts, plan_steps

DOCTESTED = [
    "florsql.errors",
    "florsql.record.args",
    "florsql.record.policy",
    "florsql.code.effects",
    "florsql.plan.patched",
    "florsql.plan.explain",
]


@pytest.mark.parametrize("module", DOCTESTED)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


SCRIPT = """
import florsql as flor
flor.log("setup", 1)

def helper(x):
    flor.log("in_helper", x)

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(3)):
        flor.log("before", epoch)
        for step in flor.loop("step", range(2)):
            flor.log("inside", step)
        flor.log("after", epoch)
        for v in flor.loop("val", range(2)):
            flor.log("in_second_inner", v)
flor.log("final", 0)
"""


@pytest.mark.parametrize(
    ("names", "need_start", "in_rest", "after_loop", "head"),
    [
        (("after",), False, True, False, False),
        (("in_second_inner",), False, True, False, False),
        (("before",), True, False, False, False),
        (("inside",), True, False, False, False),
        (("in_helper",), True, False, True, False),  # a helper: the safe answer
        (("final",), False, False, True, False),
        (("setup",), False, False, False, True),
        (("after", "final"), False, True, True, False),
        (("not_here",), True, False, True, False),  # in another file: the safe answer
    ],
)
def test_statement_placement(
    names: tuple[str, ...], need_start: bool, in_rest: bool, after_loop: bool, head: bool
) -> None:
    got = analyze_patched(SCRIPT, names)
    assert (got.need_start, got.in_rest, got.after_loop, got.head) == (
        need_start,
        in_rest,
        after_loop,
        head,
    )
    assert got.outer is not None and got.outer.name == "epoch"
    assert got.first_inner is not None and got.first_inner.name == "step"
    assert got.registered == {"net", "opt"}


def _loop(src: str, name: str):  # type: ignore[no-untyped-def]
    (found,) = analyze_source(src).named(name)
    return found


PATTERNS = {
    "accumulators": (
        """
for epoch in flor.loop("epoch", range(3)):
    running, seen = 0.0, 0
    for x, y in flor.loop("step", loader):
        loss = step(x, y)
        running += loss.item() * len(y)
        seen += len(y)
    flor.log("epoch_loss", running / seen)
""",
        {"running", "seen"},
        set(),
    ),
    "loop variable after the loop": (
        """
for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        loss = step(x, y)
    flor.log("last", loss.item())
""",
        {"loss"},
        set(),
    ),
    "global step carried across epochs": (
        """
global_step = 0
for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        global_step += 1
    flor.log("gs", global_step)
flor.log("final", global_step)
""",
        {"global_step"},
        {"global_step"},
    ),
    "best so far": (
        """
best = 0.0
for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        train(x, y)
    acc = evaluate()
    if acc > best:
        best = acc
    flor.log("best", best)
""",
        set(),
        {"best"},
    ),
    "history list mutated": (
        """
history = []
for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        history.append(step(x, y))
    flor.log("n", len(history))
""",
        {"history"},
        {"history"},
    ),
    "ema updated through a function": (
        """
for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        update_ema(ema, model)
    flor.log("ema", ema_value(ema))
""",
        {"ema"},
        set(),
    ),
    "set of seen ids (set.add mutates)": (
        """
seen = set()
for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        seen.add(x)
    flor.log("n", len(seen))
""",
        {"seen"},
        {"seen"},
    ),
    "global dict mutated by a helper of the script": (
        """
stats = {"n": 0}


def track(v):
    inner(v)


def inner(v):
    stats["n"] += v


for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        track(x)
    flor.log("n", stats["n"])
""",
        {"stats"},
        {"stats"},
    ),
    "global counter rebound by a helper method": (
        """
gs = 0


class T:
    def bump(self):
        global gs
        gs += 1


for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        t.bump()
    report()


def report():
    flor.log("gs", gs)
""",
        {"gs"},
        {"gs"},
    ),
    "nonlocal counter of a closure": (
        """
def main():
    count = 0

    def bump():
        nonlocal count
        count += 1

    for epoch in flor.loop("epoch", range(3)):
        for x, y in flor.loop("step", batches):
            bump()
        flor.log("count", count)
""",
        {"count"},
        {"count"},
    ),
    "a forward hook (an escaping function) mutates a global": (
        """
acts = {}


def hook(module, inputs, output):
    acts["h"] = output


net.register_forward_hook(hook)
for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        net(x)
    flor.log("h", acts["h"])
""",
        {"acts"},
        {"acts"},
    ),
    "a lambda bound to a name appends to a list it closes over": (
        """
hist = []
record = lambda v: hist.append(v)
for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        record(step(x, y))
    flor.log("n", len(hist))
""",
        {"hist"},
        {"hist"},
    ),
    "a lambda forward hook (escaping, unnamed) mutates a global": (
        """
acts = {}
net.register_forward_hook(lambda m, i, o: acts.update(h=o))
for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        loss = net(x)
    flor.log("h", acts["h"])
""",
        {"acts"},
        {"acts"},
    ),
    "a meter mutated through an alias read from a dict": (
        """
meter = Meter()
meters = {"train": meter}
for epoch in flor.loop("epoch", range(3)):
    for x, y in flor.loop("step", batches):
        m = meters["train"]
        m.total += step(x, y)
        for other in meters.values():
            other.n += 1
    flor.log("avg", meter.total / meter.n)
""",
        {"meters"},
        {"meters"},
    ),
    "a wrapper of the flor.loop in a variable (a progress bar)": (
        """
for epoch in flor.loop("epoch", range(3)):
    pbar = tqdm(flor.loop("step", batches))
    for i, (x, y) in enumerate(pbar):
        seen = i
    flor.log("n", pbar.n + seen)
""",
        {"pbar", "seen"},
        set(),
    ),
}


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_loop_effects_of_training_patterns(pattern: str) -> None:
    src, after_inner, carried = PATTERNS[pattern]
    step = _loop(src, "step")
    epoch = _loop(src, "epoch")
    # every name the code after the step loop reads that the loop changes must be restored
    assert after_inner <= (step.changed & step.read_after)
    assert carried <= epoch.carried
    assert "epoch" not in epoch.carried


def test_comprehension_locals_are_not_changed_names() -> None:
    src = """
for epoch in flor.loop("epoch", range(3)):
    for x in flor.loop("step", data):
        total = sum(v * 2 for v in x)
    flor.log("t", total)
"""
    step = _loop(src, "step")
    assert "v" not in step.changed and "total" in step.changed


def test_a_builtin_that_iterates_its_argument_changes_it() -> None:
    """``list(sampler)`` draws from the sampler's own generator: the outer loop changes the
    sampler (it was read as a pure builtin's argument, so replay from a checkpoint started the
    sampler's generator over)."""
    src = """
for epoch in flor.loop("epoch", range(3)):
    for x in flor.loop("step", data):
        n = len(x)
    order = list(vsampler)
    best = max(scores)
    k = len(history)
    flor.log("v", order[0])
"""
    epoch = _loop(src, "epoch")
    assert {"vsampler", "scores"} <= epoch.changed and "history" not in epoch.changed


def test_a_script_object_passed_as_a_hook_is_changed_by_every_loop() -> None:
    """``net.register_forward_hook(stats)`` where ``ActStats.__call__`` counts in ``self`` (or
    a method of it passed on: ``stats.record``): each ``net(x)`` changes ``stats``. It was
    counted as changed only where it was passed, so a replay skipping the step loop read the
    start's counts (s34); an instance passed only for a read (``third.peek()``) is not."""
    src = """
class ActStats:
    def __init__(self):
        self.calls = 0

    def __call__(self, module, inputs, output):
        self.calls += 1

    def record(self, module, inputs, output):
        self.calls += 1

    def peek(self):
        return self.calls


stats, other, third = ActStats(), None, ActStats()
other = ActStats()
net.register_forward_hook(stats)
net.register_forward_pre_hook(hook=other.record)
print(third.peek())
for epoch in flor.loop("epoch", range(3)):
    for x in flor.loop("step", data):
        out = net(x)
    flor.log("calls", stats.calls + other.calls)
"""
    step = _loop(src, "step")
    assert {"stats", "other"} <= step.changed and "third" not in step.changed


def test_a_part_fetched_by_get_is_an_alias() -> None:
    """``tr = history.get("train"); tr.append(v)`` changes ``history`` (it did not: replay
    skipped the loop and left ``history["train"]`` as the replay had it)."""
    src = """
for epoch in flor.loop("epoch", range(3)):
    for x in flor.loop("step", data):
        tr = history.get("train")
        tr.append(x)
        m = getattr(trainer, "meter")
        m.n += 1
        c = cache.get("k")
        a, b = meters["train"], meters["val"]
        a.n += 1
        v: Meter = vmeters["val"]
        v.update(x)
    flor.log("n", len(history["train"]))
"""
    step = _loop(src, "step")
    assert {"history", "trainer", "tr", "m", "meters", "vmeters"} <= step.changed
    assert "cache" not in step.changed


def test_a_name_bound_to_another_names_object_and_added_to_in_place_changes_it() -> None:
    """``acc = total`` in the epoch loop, ``acc += loss`` in the step loop: on a tensor that
    adds into ``total``'s object, so the epoch loop changes ``total`` (it did not: no
    checkpoint saved ``total``, and a replay read the script's zeros, 0.0 for 6.09). A run
    recorded before, whose checkpoints lack ``total``, replays the loop instead."""
    src = """
import florsql as flor
total = torch.zeros(())
for epoch in flor.loop("epoch", range(8)):
    acc = total
    for x in flor.loop("step", data):
        acc += x
    flor.log("total_seen", float(total))
"""
    assert "total" in _loop(src, "epoch").changed
    p = analyze_patched(src, ("total_seen",))
    old = {"acc", "x", "epoch", "data"}
    steps, _ = plan_steps("epoch", [5], p, _facts(8, dict.fromkeys(range(8), old)), to_end=False)
    assert all(s.mode == "full" for s in steps) and steps[0].iteration == 0
    assert "total" in steps[-1].why
    steps, _ = plan_steps(
        "epoch", [5], p, _facts(8, dict.fromkeys(range(8), old | {"total"})), to_end=False
    )
    assert _modes(steps) == [(5, "rest", 5)]


# -- the planner's steps -----------------------------------------------------------------------
def _facts(n: int, after: dict[int, set[str]], end: dict[int, set[str]] | None = None) -> RunFacts:
    facts = RunFacts()
    facts.seconds["epoch"] = {i: (1.0, 0.8) for i in range(n)}
    for i, names in after.items():
        facts.checkpoints.setdefault("epoch", {})[i] = CheckpointRef(
            "epoch", i, "after:step", f"e{i}", 100
        )
        facts.restores.setdefault("epoch", {})[i] = frozenset(names)
    for i, names in (end or {}).items():
        facts.checkpoints.setdefault("epoch", {})[i] = CheckpointRef("epoch", i, "end", f"e{i}", 1)
        facts.restores.setdefault("epoch", {})[i] = frozenset(names)
    return facts


ACC = PATTERNS["accumulators"][0]


def _patched(src: str, *names: str) -> Patched:
    return analyze_patched("import florsql as flor\n" + src, names)


def _modes(steps: list[Step]) -> list[tuple[int, str, int | None]]:
    return [(s.iteration, s.mode, s.restore) for s in steps]


def test_rest_only_when_what_the_rest_reads_is_captured() -> None:
    p = _patched(ACC, "epoch_loss")
    captured = {"running", "seen", "loss", "x", "y", "loader", "epoch", "step"}
    steps, starts = plan_steps(
        "epoch", [2, 5], p, _facts(8, dict.fromkeys(range(8), captured)), to_end=False
    )
    assert _modes(steps) == [(2, "rest", 2), (5, "rest", 5)]
    assert starts == {2, 5}
    # an old run saved no locals: every needed iteration runs in full, from the top
    nothing: dict[int, set[str]] = {key: set() for key in range(8)}
    steps, _ = plan_steps("epoch", [2], p, _facts(8, nothing), to_end=False)
    assert _modes(steps) == [(0, "full", None), (1, "full", None), (2, "full", None)]
    assert "not captured" in steps[-1].why


def test_start_needs_loop_carried_state() -> None:
    src = PATTERNS["global step carried across epochs"][0]
    p = _patched(src, "gs")
    no_gs = {"x", "y", "batches", "epoch"}
    steps, _ = plan_steps("epoch", [4], p, _facts(6, dict.fromkeys(range(6), no_gs)), to_end=False)
    assert steps[0].iteration == 0 and all(s.mode == "full" for s in steps)
    with_gs = no_gs | {"global_step"}
    steps, _ = plan_steps(
        "epoch", [4], p, _facts(6, dict.fromkeys(range(6), with_gs)), to_end=False
    )
    assert _modes(steps) == [(4, "rest", 4)]


def test_statements_in_the_inner_loop_run_full_from_the_nearest_sound_start() -> None:
    src = ACC.replace("seen += len(y)", "seen += len(y)\n        flor.log('b', seen)")
    p = _patched(src, "b")
    all_names = {"running", "seen", "loss", "x", "y", "loader", "epoch", "step"}
    facts = _facts(8, {1: all_names, 4: all_names})
    steps, starts = plan_steps("epoch", [6], p, facts, to_end=False)
    assert _modes(steps) == [(4, "rest", 4), (5, "full", None), (6, "full", None)]
    assert starts == {4}


def test_end_checkpoints_restore_before_the_next_iteration() -> None:
    src = PATTERNS["global step carried across epochs"][0]
    p = _patched(src, "gs")
    facts = _facts(6, {}, end={2: {"global_step", "x", "y", "batches", "epoch"}})
    steps, _ = plan_steps("epoch", [4], p, facts, to_end=False)
    assert _modes(steps) == [(3, "full", 2), (4, "full", None)]


def test_a_checkpoint_marked_unsound_is_never_a_start() -> None:
    """A checkpoint whose objects a replay cannot take (a hook registered, a submodule swapped,
    a parameter group added during the run, marked by the recording) starts no task: the
    nearest sound checkpoint before it does, or the top."""
    p = _patched(ACC, "epoch_loss")
    captured = {"running", "seen", "loss", "x", "y", "loader", "epoch", "step"}
    facts = _facts(8, dict.fromkeys(range(8), captured))
    facts.unsound["epoch"] = {i: "net.0 got a hook during the run" for i in range(3, 8)}
    steps, starts = plan_steps("epoch", [5], p, facts, to_end=False)
    assert _modes(steps) == [
        (2, "rest", 2),
        (3, "full", None),
        (4, "full", None),
        (5, "full", None),
    ]
    assert starts == {2}
    facts.unsound["epoch"] = {i: "net.0 got a hook during the run" for i in range(8)}
    steps, _ = plan_steps("epoch", [2], p, facts, to_end=False)
    assert _modes(steps) == [(0, "full", None), (1, "full", None), (2, "full", None)]
    assert "got a hook during the run" in steps[-1].why


def test_a_statement_before_the_inner_loop_reading_the_previous_iteration_starts_no_rest() -> None:
    """Today's statement before the step loop reads ``loss`` of the previous epoch: a task
    that starts an iteration in rest mode runs it before its restore, on fresh state (a
    NameError, or a stale value), so no task starts in rest mode there."""
    src = """
for epoch in flor.loop("epoch", range(8)):
    flor.log("prev", loss if epoch > 0 else None)
    for x in flor.loop("step", data):
        loss = f(x)
    flor.log("last", loss)
"""
    p = _patched(src, "prev")
    assert p.pre_carried == {"loss"}
    facts = _facts(8, {k: {"loss", "x", "data", "f", "epoch"} for k in range(8)})
    steps, _ = plan_steps("epoch", [5], p, facts, to_end=False)
    assert steps[0].iteration == 0 and all(s.mode == "full" for s in steps), _modes(steps)
    assert "carried from the previous iteration" in steps[0].why
    assert not _patched(src, "last").pre_carried  # after the inner loop: rest as before
    fresh_value = src.replace(
        'flor.log("prev", loss if epoch > 0 else None)',
        'lr = 0.1 * 0.9 ** epoch\n    flor.log("lr", lr)',
    )
    assert not _patched(fresh_value, "lr").pre_carried  # assigned just above: this iteration's


def test_runs_end_where_they_ended() -> None:
    p = _patched(PATTERNS["global step carried across epochs"][0], "final")
    facts = _facts(3, {key: {"global_step", "x", "y", "batches", "epoch"} for key in range(3)})
    steps, _ = plan_steps("epoch", [7], p, facts, to_end=True)
    assert [s.iteration for s in steps] == [2]  # never past the last iteration begun


def test_fallback_has_no_rest_step() -> None:
    p = _patched(ACC, "epoch_loss")
    captured = {"running", "seen", "loss", "x", "y", "loader", "epoch", "step"}
    facts = _facts(5, dict.fromkeys(range(5), captured))
    steps, _ = plan_steps("epoch", [3], p, facts, to_end=False, allow_rest=False)
    assert _modes(steps) == [(i, "full", None) for i in range(4)]


def test_gradients_read_after_the_inner_loop_forbid_rest_mode() -> None:
    src = """
for epoch in flor.loop("epoch", range(3)):
    opt.zero_grad()
    for i in flor.loop("step", batches):
        loss = step(i)
        loss.backward()
    flor.log("pending", float(net[0].weight.grad.abs().sum()))
"""
    p = _patched(src, "pending")
    everything = {"opt", "batches", "loss", "step", "i", "epoch", "net", "float"}
    steps, _ = plan_steps(
        "epoch", [2], p, _facts(3, dict.fromkeys(range(3), everything)), to_end=False
    )
    assert all(s.mode == "full" for s in steps)
    assert ".grad" in steps[-1].why


LEFT_EARLY = {
    # (script, rest mode allowed where the step loop was left early)
    "break only": (
        """
for epoch in flor.loop("epoch", range(3)):
    for i in flor.loop("step", batches):
        loss = step(i)
        if loss < 0.1:
            break
    flor.log("last", loss)
""",
        True,
    ),
    "for-else": (
        """
done = 0
for epoch in flor.loop("epoch", range(3)):
    for i in flor.loop("step", batches):
        loss = step(i)
        if loss < 0.1:
            break
    else:
        done += 1
    flor.log("done", done)
""",
        False,
    ),
    "try around the loop": (
        """
for epoch in flor.loop("epoch", range(3)):
    how = "ok"
    try:
        for i in flor.loop("step", batches):
            loss = step(i)
    except ValueError:
        how = "diverged"
    flor.log("how", how)
""",
        False,
    ),
    "suppress around the loop": (
        """
for epoch in flor.loop("epoch", range(3)):
    with contextlib.suppress(ValueError):
        for i in flor.loop("step", batches):
            loss = step(i)
    flor.log("last", loss)
""",
        False,
    ),
    "return from inside the loop": (
        """
def main():
    for epoch in flor.loop("epoch", range(3)):
        for i in flor.loop("step", batches):
            loss = step(i)
            if loss < 0.1:
                return
        flor.log("last", loss)
""",
        False,
    ),
}


@pytest.mark.parametrize("pattern", list(LEFT_EARLY))
def test_an_inner_loop_left_early_skips_only_where_break_is_all_it_can_be(pattern: str) -> None:
    """A checkpoint taken as the step loop was left early (manifest ``left``) allows rest mode
    only where the code after the loop runs as after a loop that ran out."""
    src, allowed = LEFT_EARLY[pattern]
    name = src.split('flor.log("', 1)[1].split('"', 1)[0]
    p = _patched(src, name)
    everything = {"batches", "loss", "step", "i", "epoch", "done", "how", "contextlib"}
    facts = _facts(3, dict.fromkeys(range(3), everything))
    steps, _ = plan_steps("epoch", [1, 2], p, facts, to_end=False)
    assert [s.mode for s in steps] == ["rest", "rest"]  # ran out: rest mode everywhere
    facts.left["epoch"] = {1}
    steps, _ = plan_steps("epoch", [1, 2], p, facts, to_end=False)
    mode = {s.iteration: s for s in steps}
    assert (mode[1].mode, mode[2].mode) == (("rest", "rest") if allowed else ("full", "rest"))
    if not allowed:
        assert "left early" in mode[1].why
    # an exception that also left the outer iteration: it never ended, never skipped
    facts.unfinished["epoch"] = 1
    steps, _ = plan_steps("epoch", [1], p, facts, to_end=False)
    assert steps[-1].mode == "full"


MODULE_STATE = {
    "global rebound": ("n = 0\ndef bump():\n    global n\n    n += 1\n", ["n"]),
    "dict item": ('CALLS = {"n": 0}\ndef step():\n    CALLS["n"] += 1\n', ["CALLS"]),
    "list appended": ("HIST = []\ndef note(v):\n    HIST.append(v)\n", ["HIST"]),
    "object updated": ("_m = Meter()\ndef note(v):\n    _m.update(v)\n", ["_m"]),
    "passed to own function": (
        "C = {}\ndef put(d, v):\n    d[v] = 1\ndef note(v):\n    put(C, v)\n",
        ["C"],
    ),
    "class attribute": (
        "class Meter:\n    n = 0\n    def add(self):\n        Meter.n += 1\n",
        ["Meter"],
    ),
    "type(self) attribute": (
        "class M:\n    n = 0\n    def add(self):\n        type(self).n += 1\n",
        ["add: class attribute"],
    ),
    "classmethod": (
        "class M:\n    n = 0\n    @classmethod\n    def add(cls):\n        cls.n += 1\n",
        ["add: class attribute"],
    ),
    "closure": (
        "def counter():\n    n = 0\n    def bump():\n        nonlocal n\n        n += 1\n"
        "        return n\n    return bump\n",
        ["bump: nonlocal n", "n"],
    ),
    "pure functions": (
        "import torch\nimport logging\nLIMIT = 3\nSCALE = (1.0, 2.0)\nlog = logging.getLogger()\n"
        "def step(net, opt, x, out):\n    loss = net(x).sum() * LIMIT\n    opt.step()\n"
        "    out.append(loss)\n    log.info('loss %s', loss)\n    torch.manual_seed(1)\n"
        "    return loss\n"
        "class Net:\n    def forward(self, x):\n        self.calls = 1\n        return x\n",
        [],
    ),
    "closure list": (
        "def make():\n    hist = []\n    def rec(v):\n        hist.append(v)\n    return rec\n",
        ["rec: closure hist"],
    ),
    "does not parse": ("def (:\n", ["<does not parse>"]),
    # passed to a library call that may change it (session 33: was missed)
    "library calls": (
        "import random\nimport numpy as np\nimport torch\nG = torch.Generator()\n"
        "ORDER = list(range(8))\nSEEN = np.zeros(8)\n"
        "def jitter(x):\n    return x + torch.randn(x.shape, generator=G)\n"
        "def shuffled():\n    random.shuffle(ORDER)\n    return ORDER\n"
        "def count(i):\n    np.add.at(SEEN, i, 1)\n",
        ["G", "ORDER", "SEEN"],
    ),
    "inert values passed to calls": (
        "import os\nimport torch\nfrom pathlib import Path\nDEV = torch.device('cpu')\n"
        "DT = torch.float32\nROOT = Path('data')\n"
        "K = 'cuda' if torch.cuda.is_available() else 'cpu'\n"
        "LR = float(os.environ.get('LR', '0.1'))\nW = torch.ones(3)\n"
        "def f(x):\n    y = torch.zeros(3, device=DEV, dtype=DT).to(K) * LR\n"
        "    return open(ROOT / 'a.txt'), x.to(DEV).view(W.shape), len(W)\n",
        [],
    ),
}


@pytest.mark.parametrize("case", sorted(MODULE_STATE))
def test_what_a_repository_module_keeps_of_its_own(case: str) -> None:
    """State a module's functions keep in the module itself, which no checkpoint saves."""
    from florsql.code.effects import module_state

    source, want = MODULE_STATE[case]
    assert sorted(module_state(source)) == want


def test_a_loop_that_calls_a_stateful_module_is_never_skipped_nor_started_late() -> None:
    """A loop that calls into a repository module keeping state of its own changes what no
    checkpoint restores (the recording lists the module and its functions as code, restored):
    no rest mode after it, no start at a checkpoint past it; from the top instead."""
    from florsql.plan.patched import module_names

    src = """
import helpers
from helpers import step
for epoch in flor.loop("epoch", range(4)):
    for i in flor.loop("step", range(3)):
        step(i)
    flor.log("calls", helpers.CALLS["n"])
"""
    stateful = 'CALLS = {"n": 0}\ndef step(i):\n    CALLS["n"] += 1\n'
    hidden = module_names(src, "train.py", {"helpers.py": stateful})
    assert hidden == {"helpers", "step"}
    p = analyze_patched("import florsql as flor\n" + src, ("calls",), None, hidden)
    listed = {"helpers", "step", "i", "epoch"}  # what the recording lists as restored
    steps, _ = plan_steps("epoch", [2], p, _facts(4, dict.fromkeys(range(4), listed)), to_end=False)
    assert _modes(steps) == [(0, "full", None), (1, "full", None), (2, "full", None)]
    assert "helpers (module state)" in steps[-1].why
    # a module that only computes keeps the checkpoints usable
    assert module_names(src, "train.py", {"helpers.py": "def step(i):\n    return i\n"}) == set()
    # the script storing into a module it imported is state no checkpoint saves either
    stores = src.replace("step(i)", "helpers.LAST = i")
    assert module_names(stores, "train.py", {"helpers.py": "LAST = 0\n"}) == {"helpers", "step"}
    # names made from them are state of theirs too (closures a module's factory returned)
    made = src.replace("import helpers\n", "import helpers\nrec, get = helpers.make()\nx = rec\n")
    assert module_names(made, "train.py", {"helpers.py": stateful}) == {
        "helpers",
        "step",
        "rec",
        "get",
        "x",
    }
    # so is a method mutating what a module holds, or a class attribute of another module
    buf = src.replace("step(i)", "helpers.EMA.mul_(0.9).add_(i)")
    assert module_names(buf, "train.py", {"helpers.py": "EMA = zeros(3)\n"}) == {"helpers", "step"}
    cls = "from helpers import Stats\nfor e in flor.loop('epoch', range(2)):\n    Stats.n += 1\n"
    assert module_names(cls, "train.py", {"helpers.py": "class Stats:\n    n = 0\n"}) == {"Stats"}
    # reading a module's constants, passing them to calls, logging through its logger: no state
    reads = src.replace("step(i)", "f(x, p=helpers.P)\n        helpers.LOG.info(helpers.P.get(1))")
    assert module_names(reads, "train.py", {"helpers.py": "P = {}\nLOG = getLogger()\n"}) == set()
    # modules of a script in a folder are imported by their path from there
    assert module_names(src, "src/train.py", {"src/helpers.py": stateful}) == {"helpers", "step"}


def test_an_object_whose_method_wraps_the_loop_is_restored_by_no_checkpoint() -> None:
    """``for x in progress.wrap(flor.loop("step", ...))``: the loop changes ``progress`` (its
    method runs with the loop), and no checkpoint restores it, even one of a run recorded
    before such objects were noted as misses (it was saved mid-iteration: replay read the
    count its generator had not written back yet)."""
    src = """
progress = Progress()
for epoch in flor.loop("epoch", range(8)):
    for x in progress.wrap(flor.loop("step", data), desc=label.upper()):
        n = len(x)
    flor.log("closed", progress.closed)
"""
    step = _loop(src, "step")
    assert "progress" in step.changed and step.wrappers == {"progress"}
    p = _patched(src, "closed")
    captured = {"progress", "n", "x", "data", "epoch", "step"}
    facts = _facts(8, dict.fromkeys(range(8), captured))
    steps, _ = plan_steps("epoch", [5], p, facts, to_end=False)
    assert [s.mode for s in steps] == ["full"] * 6
    assert (
        "progress (changed by the loop's wrapper as the loop ends), not captured" in steps[-1].why
    )
    # a plain wrapper call of the iterable is not a method of an object kept across the loop
    assert _loop(src.replace("progress.wrap(", "tqdm("), "step").wrappers == frozenset()


def test_what_a_generator_function_or_a_class_wrapping_the_loop_changes_is_restored_by_none() -> (
    None
):
    """``counting(Window(flor.loop(...)))``: the generator function adds to globals and the
    class's ``__iter__`` to a class attribute when the loop ends, after its checkpoint was
    taken (replay answered 8 for 12, silently); also through a name bound to the wrapper."""
    src = """
seen, sizes = 0, []
def counting(it):
    global seen
    n = 0
    for x in it:
        yield x
        n += 1
    seen += n
    sizes.append(n)
class Window:
    total = 0
    def __init__(self, it):
        self.it = it
    def __iter__(self):
        for x in self.it:
            yield x
        Window.total += 1
for epoch in flor.loop("epoch", range(8)):
    for x in counting(Window(flor.loop("step", data))):
        n = len(x)
    w = Window(flor.loop("val", data))
    for x in enumerate(w):
        n = len(x)
    flor.log("seen", seen)
"""
    assert _loop(src, "step").wrappers == {"seen", "sizes", "Window"}
    assert _loop(src, "val").wrappers == {"w", "Window"}
    assert _loop(src.replace("counting(Window(", "tqdm(zip("), "step").wrappers == frozenset()


def test_a_context_manager_around_the_skipped_loop_needs_the_previous_iteration() -> None:
    """``with counting_steps(stats):`` around the step loop reads ``stats`` on entry into its
    generator's locals and appends on exit: a task starting at iteration ``j`` in rest mode
    entered it on the state before the restore (replay answered 10 for 3, silently). Known
    stateless context managers (``torch.no_grad()``, ``tqdm``, ``open``) keep rest mode."""
    src = """
for epoch in flor.loop("epoch", range(8)):
    with counting_steps(stats), torch.no_grad(), tqdm(total=4) as bar:
        for x in flor.loop("step", data):
            stats["steps"] += 1
    flor.log("per_epoch", list(stats["per_epoch"]))
"""
    assert _loop(src, "step").entered == ("counting_steps(stats)",)
    assert _loop(src, "epoch").entered == ()
    p = _patched(src, "per_epoch")
    captured = {"stats", "x", "data", "epoch", "step", "bar", "torch", "tqdm", "counting_steps"}
    facts = _facts(8, dict.fromkeys(range(8), captured))
    steps, _ = plan_steps("epoch", [5], p, facts, to_end=False)
    assert _modes(steps) == [(0, "full", None)] + [(k, "full", None) for k in range(1, 5)] + [
        (5, "rest", 5)
    ]
    assert "`with counting_steps(stats)` around the loop" in steps[0].why
    plain = _patched(src.replace("counting_steps(stats), ", ""), "per_epoch")
    assert plain.first_inner is not None and plain.first_inner.entered == ()
    steps, _ = plan_steps("epoch", [5], plain, facts, to_end=False)
    assert _modes(steps) == [(5, "rest", 5)]


def test_a_wrapper_of_the_outer_loop_read_as_a_value_replays_every_iteration() -> None:
    """``bar = tqdm(flor.loop("epoch", ...))`` counts the iterations it sees: a replay that
    starts from a checkpoint shows it only those (bar.n answered 1 for 4, silently). Read as
    a value, the whole run replays; only told to print, nothing changes."""
    src = """
bar = tqdm(progress.wrap(flor.loop("epoch", range(4))))
for epoch in bar:
    for x in flor.loop("step", data):
        n = len(x)
    bar.set_description(str(n))
    flor.log("w", n)
flor.log("bar_n", bar.n)
"""
    p = _patched(src, "bar_n", "w")
    assert p.outer is not None and p.outer.wrappers == {"bar", "progress"}
    assert p.unknown and "reads bar, which a wrapper of the epoch loop" in p.whole_why
    quiet = _patched(src.replace('flor.log("bar_n", bar.n)\n', ""), "w")
    assert not quiet.unknown


def test_a_progress_bar_held_around_the_skipped_loop_keeps_rest_mode_unless_read() -> None:
    """``pbar = tqdm(flor.loop("step", ...))`` closed or told to print after the loop: a run
    that noted the bar busy replays in rest mode; one recorded before bars were noted (it
    listed the bar as kept) runs the loop, as it does wherever ``pbar.n`` is read."""
    src = """
for epoch in flor.loop("epoch", range(8)):
    pbar = tqdm(flor.loop("step", data))
    for x in pbar:
        n = len(x)
    pbar.close()
    flor.log("n", n)
"""
    p = _patched(src, "n")
    assert p.first_inner is not None and p.first_inner.wrappers == {"pbar"}
    captured = {"n", "x", "data", "epoch", "step", "tqdm"}
    noted = _facts(8, dict.fromkeys(range(8), captured))
    noted.busy["epoch"] = dict.fromkeys(range(8), frozenset({"pbar"}))
    steps, _ = plan_steps("epoch", [5], p, noted, to_end=False)
    assert _modes(steps) == [(5, "rest", 5)]
    old = _facts(8, dict.fromkeys(range(8), captured | {"pbar"}))  # "kept", never saved
    steps, _ = plan_steps("epoch", [5], p, old, to_end=False)
    assert steps[-1].mode == "full" and "pbar (changed by the loop's wrapper" in steps[-1].why
    read = _patched(src.replace('flor.log("n", n)', 'flor.log("n", pbar.n)'), "n")
    steps, _ = plan_steps("epoch", [5], read, noted, to_end=False)
    assert steps[-1].mode == "full" and "pbar (restored by no checkpoint" in steps[-1].why


def test_a_context_manager_around_a_helper_that_owns_the_skipped_loop() -> None:
    """The step loop in a helper, entered inside a ``with`` there or around its call: a task
    starting there in rest mode entered it on unrestored state (replay answered 7 for 4)."""
    src = """
def train_epoch():
    with counting(stats):
        for x in flor.loop("step", data):
            stats["steps"] += 1
for epoch in flor.loop("epoch", range(8)):
    with counting(calls), torch.no_grad():
        train_epoch()
    flor.log("n", stats["steps"])
"""
    assert _loop(src, "step").entered == ("counting(stats)",)
    assert _loop(src, "epoch").body_withs == ("counting(calls)",)
    plain = src.replace("    with counting(stats):\n        for", "    if True:\n        for")
    assert _loop(plain, "step").entered == ()


HIDDEN_CHANGES = {
    "a method on what a function of the script returns": (
        """
meters = {"train": Meter()}
def meter(name):
    return meters[name]
for epoch in flor.loop("epoch", range(3)):
    for x in flor.loop("step", data):
        meter("train").update(x)
""",
        {"meters"},
        set(),
    ),
    "a comprehension over a list of parts": (
        """
for epoch in flor.loop("epoch", range(3)):
    for x in flor.loop("step", data):
        [m.update(1.0) for m in [meters["grad"], extra]]
""",
        {"meters", "extra"},
        set(),
    ),
    "a with statement on an object": (
        """
for epoch in flor.loop("epoch", range(3)):
    for x in flor.loop("step", data):
        with section:
            y = x
        with lock_free:
            z = x
""",
        {"section", "lock_free"},
        set(),
    ),
    "a property whose getter changes its object": (
        """
class Warmup:
    @property
    def lr(self):
        self.t += 1
        return self.t
    @property
    def base(self):
        return 0.1
for epoch in flor.loop("epoch", range(3)):
    for x in flor.loop("step", data):
        a = warm.lr
        b = other.base
""",
        {"warm"},
        {"other"},
    ),
    "a __getitem__ that caches": (
        """
class Cached:
    def __getitem__(self, i):
        self.cache[i] = i
        return i
class Plain:
    def __getitem__(self, i):
        return i
ds = Cached()
plain = Plain()
for epoch in flor.loop("epoch", range(3)):
    for b in flor.loop("step", range(4)):
        x = ds[b]
        y = plain[b]
""",
        {"ds"},
        {"plain"},
    ),
    "a global bound through globals()": (
        """
for epoch in flor.loop("epoch", range(3)):
    for x in flor.loop("step", data):
        globals()["last"] = x
""",
        {"last"},
        set(),
    ),
}


@pytest.mark.parametrize("case", list(HIDDEN_CHANGES))
def test_what_reads_like_a_read_but_runs_code_that_changes_an_object(case: str) -> None:
    """The change set holds objects changed by code a statement runs without a call or a store
    in sight (s22 B-F: each made rest mode read a stale object, silently); and only those."""
    src, changed, unchanged = HIDDEN_CHANGES[case]
    step = _loop(src, "step")
    assert changed <= step.changed, sorted(step.changed)
    assert not (unchanged & step.changed), sorted(step.changed)


@pytest.mark.parametrize(
    ("after", "want"),
    [
        ("    opt.zero_grad()\n    total.backward()\n    opt.step()\n", True),
        ("    g = torch.autograd.grad(total, list(net.parameters()))\n", True),
        ("    scaler.scale(total).backward()\n", True),
        ("    flor.log('t', total.item())\n", False),
        # after the outer loop: another phase, not this iteration's code
        ("flor.log('t', 1)\nfor _ in range(2):\n    net(x).sum().backward()\n", False),
    ],
)
def test_backpropagating_after_the_step_loop_is_seen(after: str, want: bool) -> None:
    """Code after the step loop, in the same epoch, that back-propagates: through a graph the
    loop may have built, which a checkpoint saves without (session 33)."""
    from florsql.code.effects import analyze_source

    src = (
        "import florsql as flor\nfor epoch in flor.loop('epoch', range(2)):\n    total = 0\n"
        "    for i in flor.loop('step', range(3)):\n        total = total + net(x).sum()\n"
    )
    (inner,) = [lp for lp in analyze_source(src + after).loops if lp.name == "step"]
    assert inner.backprop_after is want
