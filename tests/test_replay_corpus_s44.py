"""Sweep s43's third finding, fixed in session 44: a class (or the script's globals) changed
through an instance, replayed and compared with a full re-run of the hand-patched old version
(the harness of tests/test_replay_corpus_stranger.py, runs as ``ArgCase`` of
tests/test_replay_corpus_s35.py).

A checkpoint saves the objects the loop changes; the change analysis
(:mod:`florsql.code.effects`) saw ``Meter.total += 1`` and ``Meter.cbump()`` change the class
``Meter``, but not a change made through an instance: ``type(self).total += 1`` or
``self.__class__.total += 1`` in a method, a classmethod called on the instance
(``meter.cbump()``), a method taken as a bound method and called later (``ops = {"add":
meter.add}``, ``getattr(meter, "add")``), or ``__main__.cnt += 1`` in a function. A replay
that restored a checkpoint then read the class's (or global's) start value: 6 for a full
re-run's 9, silently. Now the class (with the script's classes derived from it), the object a
bound method belongs to, and the global count as changed (``effects._class_changed``,
``effects._bound_methods``, ``effects._main_attr``).

The sweep's second round (below ``SHARED``): a class attribute changed in place through
``self``, the script's special methods run implicitly (``__setattr__``, ``__iadd__``, a
descriptor's ``__set__``), and a bound method of an instance no name holds, kept in a dict
(restored as code before: ``frame_state._merged`` now merges its object)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from florsql.code.effects import analyze_source
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
            {count}
        flor.log("lr", opt.param_groups[0]["lr"])
"""[1:]

METER = """
class Meter:
    total = 0

    def __init__(self):
        self.n = 0.0

    def bump(self):
        type(self).total += 1

    def bump_class(self):
        self.__class__.total += 1

    @classmethod
    def cbump(cls):
        cls.total += 1

    def add(self, v):
        self.n += v


meter = Meter()
"""


def _case(name: str, setup: str, count: str, log: str, **kw: dict[str, str]) -> ArgCase:
    body = (
        METER
        + setup
        + """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""
        + STEPS.format(count=count)
        + f'        flor.log("seen", {log})  # hindsight\n'
    )
    return ArgCase(
        name,
        body,
        {"epoch": ["seen"]},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=("SELECT seed, epoch, seen FROM logs WHERE epoch = 2",),
        **kw,
    )


PATTERNS = [
    _case("a_class_counter_through_type_of_self", "", "meter.bump()", "Meter.total"),
    _case("a_class_counter_through_self_class", "", "meter.bump_class()", "Meter.total"),
    _case("a_classmethod_called_on_the_instance", "", "meter.cbump()", "Meter.total"),
    _case(
        "a_bound_method_kept_in_a_dict",
        'ops = {"add": meter.add}\n',
        'ops["add"](loss.item())',
        "round(meter.n, 6)",
    ),
    _case(
        "a_bound_method_reached_by_getattr",
        "",
        'getattr(meter, "add")(loss.item())',
        "round(meter.n, 6)",
    ),
    _case(
        "a_global_counted_through_main",
        "import __main__\n\ncnt = 0\n\n\ndef tick():\n    __main__.cnt += 1\n\n",
        "tick()",
        "cnt",
    ),
]

# The same sweep's second round (session 44, after the fixes above): a class attribute changed
# in place through ``self`` (a list, a dict, an array the class body binds), in a module of the
# script, in a helper module, in a torch module's forward; special methods run implicitly (a
# ``__setattr__``, an ``__iadd__``, a descriptor's ``__set__``); a bound method of an instance
# no name holds, kept in a dict. Each was one epoch short (0, 4, 8 for 4, 8, 12), silently.
SHARED = """
import numpy as np


class Hist:
    seen = []
    stats = {"n": 0}
    buf = np.zeros(4)

    def add(self, v):
        self.seen.append(v)

    def bump(self):
        self.stats["n"] += 1

    def hit(self, i):
        self.buf[i % 4] += 1


hist = Hist()
"""
TRACKER = """
class Tracker:
    seen = []

    def add(self, v):
        self.seen.append(v)
"""
PATTERNS += [
    _case("a_class_list_appended_through_self", SHARED, "hist.add(1)", "len(Hist.seen)"),
    _case("a_class_dict_changed_through_self", SHARED, "hist.bump()", 'Hist.stats["n"]'),
    _case("a_class_array_changed_through_self", SHARED, "hist.hit(3)", "float(Hist.buf.sum())"),
    _case(
        "a_class_list_of_a_helper_module",
        "from helpers import Tracker\n\ntracker = Tracker()\n",
        "tracker.add(1)",
        "len(Tracker.seen)",
        extra={"helpers.py": TRACKER},
    ),
    _case(
        "a_class_list_a_torch_module_appends_to_in_forward",
        """
class Probe(nn.Module):
    seen = []

    def forward(self, x):
        self.seen.append(int(x.shape[0]))
        return x


net = nn.Sequential(Probe(), *net)
opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
""",
        "pass",
        "len(Probe.seen)",
    ),
    _case(
        "a_descriptor_keeping_its_value",
        """
class Store:
    def __init__(self):
        self.v = 0

    def __get__(self, obj, kind=None):
        return self.v

    def __set__(self, obj, v):
        self.v = v


class Holder:
    c = Store()


holder = Holder()
""",
        "holder.c = holder.c + 1",
        "holder.c",
    ),
    _case(
        "a_setattr_override_appending_to_its_class",
        """
class Audited:
    log = []

    def __setattr__(self, k, v):
        type(self).log.append(k)
        object.__setattr__(self, k, v)


aud = Audited()
""",
        "aud.x = 1",
        "len(Audited.log)",
    ),
    _case(
        "an_iadd_adding_to_a_global_list",
        """
SEEN = []


class Acc:
    def __iadd__(self, v):
        SEEN.append(v)
        return self


acc = Acc()
""",
        "acc += 1",
        "len(SEEN)",
    ),
    _case(
        "a_bound_method_of_an_unnamed_instance_in_a_dict",
        'hooks = {"loss": Meter().add}\n',
        'hooks["loss"](loss.item())',
        'round(hooks["loss"].__self__.n, 6)',
    ),
]

DEFAULT: list[str] = [
    "a_class_counter_through_type_of_self",
    "a_bound_method_kept_in_a_dict",
    "a_class_list_appended_through_self",
    "a_setattr_override_appending_to_its_class",
]
CASES = corpus_params(PATTERNS, DEFAULT)


def test_s44_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


@pytest.mark.parametrize(
    ("count", "changed"),
    [
        ("meter.bump()", "Meter"),
        ("meter.bump_class()", "Meter"),
        ("meter.cbump()", "Meter"),
        ("ops['add'](1.0)", "meter"),
        ("getattr(meter, 'add')(1.0)", "meter"),
        ("tick()", "cnt"),
    ],
)
def test_the_step_loop_is_seen_to_change_it(count: str, changed: str) -> None:
    src = (
        "import florsql as flor\nimport __main__\ncnt = 0\n"
        + METER
        + "ops = {'add': meter.add}\n\ndef tick():\n    __main__.cnt += 1\n\n"
        + "for epoch in flor.loop('epoch', range(2)):\n"
        + "    for x in flor.loop('step', range(3)):\n"
        + f"        {count}\n"
    )
    assert changed in analyze_source(src).named("step")[0].changed


def test_a_classmethod_making_an_instance_changes_no_class() -> None:
    """``cls(...)`` in a classmethod (a ``from_config`` constructor) is no change of the
    class: such loops still replay from checkpoints."""
    src = (
        "import florsql as flor\n"
        "class Cfg:\n    @classmethod\n    def make(cls, v):\n        return cls()\n"
        "c = Cfg()\n"
        "for epoch in flor.loop('epoch', range(2)):\n"
        "    for x in flor.loop('step', range(3)):\n"
        "        k = c.make(x)\n"
    )
    assert "Cfg" not in analyze_source(src).named("step")[0].changed


class Histories(ArgHistories):
    prefix = "s44"


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Histories]:
    h = Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", CASES)
def test_s44_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_partial_then_wider(pattern, histories, tmp_path)
