"""Pure parts of replay: the schedule, statement placement analysis, chunking."""

from __future__ import annotations

import doctest
import importlib

import pytest

from florsql.record.schedule import Step, schedule
from florsql.replay.analysis import analyze
from florsql.replay.tasks import split

DOCTESTED = [
    "florsql.errors",
    "florsql.record.args",
    "florsql.record.policy",
    "florsql.record.schedule",
    "florsql.replay.analysis",
    "florsql.replay.tasks",
]


@pytest.mark.parametrize("module", DOCTESTED)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


AFTER = {i: "after:step" for i in range(10)}


def test_rest_mode_needs_the_iterations_own_checkpoint() -> None:
    assert schedule([3, 7], AFTER, need_start=False) == {3: Step("rest"), 7: Step("rest")}
    sparse = {0: "after:step", 4: "after:step"}
    assert schedule([6], sparse, need_start=False) == {
        4: Step("rest"),
        5: Step("full"),
        6: Step("full"),
    }


def test_start_state_runs_forward_from_the_nearest_checkpoint() -> None:
    assert schedule([0], AFTER, need_start=True) == {0: Step("full")}
    assert schedule([5, 6], AFTER, need_start=True) == {
        4: Step("rest"),
        5: Step("full"),
        6: Step("full"),
    }
    assert schedule([2], {}, need_start=True) == {0: Step("full"), 1: Step("full"), 2: Step("full")}


def test_end_state_for_statements_after_the_loop() -> None:
    assert schedule([], {7: "after:step"}, need_start=False, end=9) == {
        7: Step("rest"),
        8: Step("full"),
        9: Step("full"),
    }
    assert schedule([], {8: "end"}, need_start=False, end=9) == {9: Step("full", restore_before=8)}


SCRIPT = """
import florsql as flor
flor.log("setup", 1)

def helper(x):
    flor.log("in_helper", x)

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
    ("names", "need_start", "after_loop"),
    [
        ({"after"}, False, False),
        ({"in_second_inner"}, True, False),
        ({"before"}, True, False),
        ({"inside"}, True, False),
        ({"in_helper"}, True, False),
        ({"final"}, False, True),
        ({"setup"}, False, False),
        ({"after", "final"}, False, True),
    ],
)
def test_analyze_placement(names: set[str], need_start: bool, after_loop: bool) -> None:
    got = analyze(SCRIPT, names)
    assert (got.need_start, got.after_loop, got.found) == (need_start, after_loop, names)
    assert got.outer_loops == ["epoch"]


def test_split_starts_chunks_after_checkpoints() -> None:
    its = list(range(10))
    assert split(its, set(range(10)), 2) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert split(its, {2}, 3) == [[0, 1, 2], [3, 4, 5, 6, 7, 8, 9]]
    assert split([1, 5, 9], set(), 2) == [[1, 5, 9]]
    assert split([], {1}, 2) == []
