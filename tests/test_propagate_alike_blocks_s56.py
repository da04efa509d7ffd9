"""Today's statement in blocks alike but for literals, one after the other (session 56).

A script trains in two phases, each ``for epoch in flor.loop("epoch", ...)`` (a loop name may
run again, one after the other), and today's version logs ``w`` at the end of both epoch
bodies. The two bodies differ only in literals, so each statement's neighbours matched both
old places equally, and the query failed: "ambiguous: 2 equally good places (lines 8, 13)"
(sweep AH). Where as many old blocks tie as today's file has under the same frames, the k-th
goes to the k-th, in file order, as the versions' other lines align.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import florsql
from florsql.propagate import propagate
from tests.helpers import git, make_repo, run_script, write

NEW = '        flor.log("w", round(w * 2, 9))\n'


def _script(first: str = "", second: str = "", third: bool = False) -> str:
    text = (
        "import florsql as flor\n"
        "w = 1.0\n"
        "with flor.checkpointing():\n"
        '    for epoch in flor.loop("epoch", range(3)):\n'
        '        for step in flor.loop("step", range(4)):\n'
        "            w = w * 0.9 + step\n"
        '            flor.log("loss", round(w, 9))\n'
        f"{first}"
        '    for epoch in flor.loop("epoch", range(3)):\n'
        '        for step in flor.loop("step", range(4)):\n'
        "            w = w * 0.5 + step\n"
        '            flor.log("ft_loss", round(w, 9))\n'
        f"{second}"
    )
    if third:
        text += (
            '    for epoch in flor.loop("epoch", range(2)):\n'
            '        for step in flor.loop("step", range(4)):\n'
            "            w = w * 0.7 + step\n"
            '            flor.log("ft2_loss", round(w, 9))\n'
            f"{second}"
        )
    return text


@pytest.mark.parametrize(
    ("first", "second"), [(NEW, NEW), ("", NEW), (NEW, "")], ids=["both", "second", "first"]
)
def test_each_statement_goes_to_its_own_phase(first: str, second: str) -> None:
    result = propagate(_script(first, second), _script())
    assert not result.failed, result.failed
    assert result.source == _script(first, second)


def test_a_third_phase_today_stays_ambiguous() -> None:
    """Today has three alike epoch bodies, the old version two: which two of today's the old
    ones are is not told by order alone, so the statement is refused, as before."""
    result = propagate(_script(NEW, NEW, third=True), _script())
    assert result.failed and all("ambiguous" in f.reason for f in result.failed)


def test_replayed_values_equal_a_run_of_today_s_script(tmp_path: Path) -> None:
    sql = "SELECT epoch, w FROM logs WHERE w IS NOT NULL ORDER BY w"
    oracle = make_repo(tmp_path / "o", {"train.py": _script(NEW, NEW)})
    run_script(oracle, "train.py")
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert len(want) == 6
    repo = make_repo(tmp_path / "r", {"train.py": _script()})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", _script(NEW, NEW))
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        assert con.cursor().execute(sql).fetchall() == want
