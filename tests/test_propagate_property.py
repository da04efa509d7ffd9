"""Property: unrelated statements added or removed around the anchor never move a placement to
another scope. A placement may fail (no context, ambiguity, an unbound name), never land wrong."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from florsql.propagate import propagate

#: (indent level, code, deletable): the old version of a training script, one statement a line.
TEMPLATE = [
    (0, "import random", False),
    (0, "import florsql as flor", False),
    (0, "DATA = [(x / 10, 3 * x / 10 + 1) for x in range(20)]", False),
    (0, "def evaluate(w, b, data):", False),
    (1, "errors = [abs(w * x + b - y) for x, y in data]", False),
    (1, "worst = max(errors)", False),
    (1, "print('worst', worst)", True),
    (1, "return sum(errors) / len(errors)", False),
    (0, "def main():", False),
    (1, "lr = flor.arg('lr', 0.01)", False),
    (1, "w, b = 0.0, 0.0", False),
    (1, "for epoch in flor.loop('epoch', range(3)):", False),
    (2, "random.shuffle(DATA)", True),
    (2, "for i in flor.loop('step', range(0, 20, 5)):", False),
    (3, "batch = DATA[i : i + 5]", False),
    (3, "gw = sum(2 * (w * x + b - y) * x for x, y in batch) / 5", False),
    (3, "gb = sum(2 * (w * x + b - y) for x, y in batch) / 5", False),
    (3, "w -= lr * gw", False),
    (3, "b -= lr * gb", False),
    (3, "flor.log('loss', evaluate(w, b, batch))", False),
    (2, "if epoch % 2 == 0:", False),
    (3, "print('epoch', epoch)", False),
    (3, "lr = lr * 0.5", False),
    (2, "flor.log('w', w)", False),
    (1, "return w", False),
    (0, "if __name__ == '__main__':", False),
    (1, "main()", False),
]


@dataclass(frozen=True)
class Target:
    """A new log statement, put before template line ``before``, and where it must land."""

    before: int
    code: str
    scope: tuple[str, ...]


STEP = ("main()", "flor.loop('epoch')", "flor.loop('step')")
TARGETS = [
    Target(19, "flor.log('gnorm', abs(gw) + abs(gb))", STEP),
    Target(17, "flor.log('gw', gw)", STEP),
    Target(23, "flor.log('b_epoch', b)", STEP[:2]),
    Target(6, "flor.log('worst', worst)", ("evaluate()",)),
    Target(23, "flor.log('lr_now', lr)", (*STEP[:2], "if epoch % 2 == 0")),
]

FILLERS = [
    "print('debug', {n})",
    "tmp = {n} * 3",
    "seen = len(DATA) + {n}",
    "random.random()",
    "note = 'step {n}'",
    "assert {n} >= 0",
]


def render(lines: list[tuple[int, str, bool]]) -> str:
    return "".join("    " * indent + code + "\n" for indent, code, _ in lines)


def with_target(target: Target) -> list[tuple[int, str, bool]]:
    lines = list(TEMPLATE)
    indent = lines[target.before][0]
    if target.scope[-1].startswith("if"):
        indent = 3  # the end of the `if` block, which the next line leaves
    return [*lines[: target.before], (indent, target.code, False), *lines[target.before :]]


@st.composite
def edited(draw: st.DrawFn, lines: list[tuple[int, str, bool]]) -> list[tuple[int, str, bool]]:
    """``lines`` with random unrelated statements inserted and deletable ones removed."""
    lines = list(lines)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(3, len(lines) - 1))
        indent = lines[at][0]
        code = draw(st.sampled_from(FILLERS)).format(n=draw(st.integers(0, 99)))
        lines.insert(at, (indent, code, True))
    for _ in range(draw(st.integers(0, 3))):
        deletable = [k for k, line in enumerate(lines) if line[2]]
        if deletable:
            lines.pop(draw(st.sampled_from(deletable)))
    return lines


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Target, str, str]:
    target = draw(st.sampled_from(TARGETS))
    old = render(draw(edited(TEMPLATE)))
    new = render(draw(edited(with_target(target))))
    return target, old, new


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_unrelated_edits_never_change_the_scope(scenario: tuple[Target, str, str]) -> None:
    target, old, new = scenario
    ast.parse(old), ast.parse(new)
    result = propagate(new, old)
    assert len(result.placed) + len(result.failed) == 1
    for placement in result.placed:
        assert placement.scope == target.scope
        assert result.source.splitlines()[placement.old_line - 1].strip() == target.code


def test_each_target_is_placed_without_edits() -> None:
    old = render(TEMPLATE)
    for target in TARGETS:
        result = propagate(render(with_target(target)), old)
        assert [p.scope for p in result.placed] == [target.scope], result.failed
