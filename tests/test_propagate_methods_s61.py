"""Travelling code calling a method of an old class that changes its object (session 61).

Since session 60 a call of an old module-level function that changes its argument refuses
the statement (``api._Session.old_changers``); a method was not looked into. Today's ``acc =
meter.compute()`` with the old ``Meter.compute`` appending to ``self.hist`` was placed: the
replayed run called it once more per epoch than the recorded one, and ``self.hist``, which the
old run logs, was no longer the recorded run's. Now refused, naming the method and the line;
a method changing only an attribute nothing else reads (``self.last = ...``) is no obstacle.
"""

from __future__ import annotations

from florsql.propagate import propagate
from tests.test_propagate_differential_edits_s60 import run, values

OLD = """\
import florsql as flor


class Meter:
    def __init__(self):
        self.hist = []
        self.last = None

    def add(self, v):
        self.hist.append(v)

    def compute(self):
        self.hist.append(sum(self.hist))
        return len(self.hist)

    def peek(self):
        total = sum(self.hist)
        self.last = total  # read nowhere
        return total


meter = Meter()
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(2)):
        meter.add(step)
    flor.log("n", len(meter.hist))
"""


def _logged(source: str, name: str) -> list[object]:
    return values(run(source), name)


def test_a_method_that_changes_what_the_old_run_logs_refuses_the_statement() -> None:
    new = OLD + '    acc = meter.compute()\n    flor.log("acc", acc)\n'
    result = propagate(new, OLD)
    assert result.placed == ()
    (failure,) = result.failed
    assert "Meter.compute() changes self.hist" in failure.reason
    # the oracle for the refusal: the old run's own values would change
    assert _logged(new, "n") != _logged(OLD, "n")


def test_a_method_that_changes_an_attribute_nothing_reads_is_placed() -> None:
    new = OLD + '    flor.log("peek", meter.peek())\n'
    result = propagate(new, OLD)
    assert [p.name for p in result.placed] == ["peek"]
    assert _logged(result.source, "peek") == _logged(new, "peek") == [1, 2, 3]
    assert _logged(result.source, "n") == _logged(OLD, "n")
