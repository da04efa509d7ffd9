"""Which of today's statements a failed replay task's frames point at (florsql.plan.blame), on
real propagations: the statement's own lines, a new block lifted around it, code carried for
it, old code it called, and the cases that blame nothing."""

from __future__ import annotations

from florsql.plan.blame import blame, inserted_lines, statement_lines
from florsql.propagate import propagate

OLD = """import florsql as flor
import torch
net = torch.nn.Linear(2, 2)
def helper(x):
    return x / 0
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(2)):
        loss = float(step)
    flor.log("loss", loss)
"""

NEW = """import florsql as flor
import torch
net = torch.nn.Linear(2, 2)
def helper(x):
    return x / 0
for epoch in flor.loop("epoch", range(3)):
    tot = 0.0
    for step in flor.loop("step", range(2)):
        loss = float(step)
        tot += 1 / (1 - epoch)
    flor.log("loss", loss)
    flor.log("a", tot)
    if epoch % 2 == 0:
        flor.log("b", helper(epoch))
    flor.log("c",
             epoch * 2)
"""

NAMES = ("a", "b", "c")


def _patched() -> tuple[dict[str, object], list[str]]:
    prop = propagate(NEW, OLD, NAMES)
    assert not prop.failed, prop.failed
    return {"train.py": prop}, prop.source.splitlines()


def _line(lines: list[str], text: str) -> int:
    [n] = [i + 1 for i, line in enumerate(lines) if line.strip() == text]
    return n


def _frame(lines: list[str], text: str, path: str = "/w/tree/train.py") -> list[object]:
    n = _line(lines, text)
    return [path, n, lines[n - 1].strip()]


def test_the_statements_own_line_and_its_continuation() -> None:
    files, lines = _patched()
    assert blame(files, [_frame(lines, 'flor.log("c",')], NAMES) == ("c",)
    assert blame(files, [_frame(lines, "epoch * 2)")], NAMES) == ("c",)


def test_a_lifted_block_belongs_to_its_statement() -> None:
    files, lines = _patched()
    prop = files["train.py"]
    spans = statement_lines(prop)  # type: ignore[arg-type]
    assert _line(lines, "if epoch % 2 == 0:") in spans["b"]
    assert blame(files, [_frame(lines, "if epoch % 2 == 0:")], NAMES) == ("b",)


def test_old_code_called_by_a_statement_blames_the_statement() -> None:
    files, lines = _patched()
    frames = [
        _frame(lines, 'flor.log("b", helper(epoch))'),
        _frame(lines, "return x / 0"),  # innermost: the old helper
    ]
    assert blame(files, frames, NAMES) == ("b",)


def test_carried_code_blames_what_it_was_carried_for() -> None:
    files, lines = _patched()
    assert blame(files, [_frame(lines, "tot += 1 / (1 - epoch)")], NAMES) == ("a",)


def test_nothing_to_blame() -> None:
    files, lines = _patched()
    # old code alone
    assert blame(files, [_frame(lines, "loss = float(step)")], NAMES) is None
    # no frames (a task that never reached an iteration)
    assert blame(files, [], NAMES) is None
    # a file of another name, or a text that is not the patched one
    assert blame(files, [["/elsewhere/other.py", 3, "x"]], NAMES) is None
    line = _line(lines, 'flor.log("a", tot)')
    assert blame(files, [["/w/tree/train.py", line, "something else"]], NAMES) is None
    # a name the task did not compute
    assert blame(files, [_frame(lines, 'flor.log("a", tot)')], ("b", "c")) is None


def test_inserted_lines_are_the_new_ones() -> None:
    files, lines = _patched()
    prop = files["train.py"]
    got = inserted_lines(prop.original, prop.source)  # type: ignore[attr-defined]
    assert {lines[n - 1].strip() for n in got} >= {
        "tot = 0.0",
        "tot += 1 / (1 - epoch)",
        'flor.log("a", tot)',
        'flor.log("c",',
    }
    assert not {lines[n - 1].strip() for n in got} & {
        "loss = float(step)",
        'flor.log("loss", loss)',
    }


def test_doctests() -> None:
    import doctest

    import florsql.plan.blame as module

    assert doctest.testmod(module).failed == 0


def test_two_statements_in_one_new_block() -> None:
    """A new block holding two statements: a line of one blames that one; the block's own
    line blames both."""
    new = OLD.replace(
        '    flor.log("loss", loss)\n',
        '    flor.log("loss", loss)\n'
        "    with torch.no_grad():\n"
        '        flor.log("a", float(net.weight.sum()))\n'
        '        flor.log("b", 1 / epoch)\n',
    )
    prop = propagate(new, OLD, ("a", "b"))
    assert not prop.failed, prop.failed
    files, lines = {"train.py": prop}, prop.source.splitlines()
    assert blame(files, [_frame(lines, 'flor.log("b", 1 / epoch)')], ("a", "b")) == ("b",)
    assert blame(files, [_frame(lines, "with torch.no_grad():")], ("a", "b")) == ("a", "b")
