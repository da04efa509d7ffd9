"""Today's new block alike but for literals to an old one (session 57, sweep AL).

Statement norms abstract literals, so today's new ``if epoch % 3 == 0:`` block (or ``for i in
range(5):``, ``with open(...)``) matched the old ``if epoch % 2 == 0:`` block's body as well as
its own would, and today's statement in it was placed into the old block: the val accuracy
logged as the test's, under the other guard, silently. An old block whose compound statement
aligns with another of today's statements is now not this block's place: the new block
travels whole. Where two alike calls swapped places since (``evaluate("val")`` then
``evaluate("test")``), a statement after today's ``evaluate("test")`` is refused rather than
placed after the old ``evaluate("val")``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import florsql
from florsql.propagate import propagate
from tests.helpers import git, make_repo, run_script, write

HEAD = (
    "import florsql as flor\n\n\ndef evaluate(split, epoch):\n"
    "    return len(split) * 100 + epoch\n\n\n"
)


def _script(body: str) -> str:
    lines = [line for line in textwrap.dedent(body).splitlines() if line.strip()]
    body = textwrap.indent("\n".join(lines), "    ")
    return HEAD + 'for epoch in flor.loop("epoch", range(6)):\n' + body + "\n"


VAL = """
if epoch % 2 == 0:
    acc = evaluate("val", epoch)
    flor.log("val", acc)
"""
TEST = """
if epoch % 3 == 0:
    acc = evaluate("test", epoch)
    flor.log("test", acc)
"""
LOOPS = "s = 0\nfor i in range(3):\n    s += i\n"
WITHS = 'with open(__file__) as f:\n    n = len("ab")\n'

CASES = {
    "a new if block after the old alike one": (VAL, VAL + TEST),
    "a new if block before the old alike one": (VAL, TEST + VAL),
    "a new for loop after the old alike one": (
        LOOPS,
        LOOPS + 'for i in range(5):\n    s += i\n    flor.log("s", s)\n',
    ),
    "a new with block after the old alike one": (
        WITHS,
        WITHS + 'with open(__file__) as g:\n    n = len("abc")\n    flor.log("n", n)\n',
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_new_block_travels_whole(case: str) -> None:
    old, today = (_script(b) for b in CASES[case])
    result = propagate(today, old)
    assert not result.failed, result.failed
    assert result.source == today


def test_a_statement_after_a_swapped_alike_call_is_refused() -> None:
    old = _script('acc = evaluate("val", epoch)\nacc = evaluate("test", epoch)\n')
    today = _script(
        'acc = evaluate("test", epoch)\nflor.log("test_acc", acc)\nacc = evaluate("val", epoch)\n'
    )
    result = propagate(today, old)
    assert [f.name for f in result.failed] == ["test_acc"]
    assert "alike but for literals, in another order" in result.failed[0].reason


def test_replayed_values_equal_a_run_of_today_s_script(tmp_path: Path) -> None:
    old, today = _script(VAL), _script(VAL + TEST)
    sql = "SELECT epoch, val, test FROM logs WHERE epoch IS NOT NULL ORDER BY epoch"
    oracle = make_repo(tmp_path / "o", {"train.py": today})
    run_script(oracle, "train.py")
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert [(e, t) for e, _, t in want if t is not None] == [(0, 400), (3, 403)]
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        assert con.cursor().execute(sql).fetchall() == want
