"""A new guarded block beside an old one alike but for literals (session 57, sweep AI).

Today's code adds ``if epoch % 3 == 0: flor.log("tri", ...)`` right after the old ``if epoch
% 2 == 0: flor.log("even", ...)``. Statement norms abstract literals, so both of today's
``if`` headers matched the old one equally, and the alignment, read from the end, paired the
new block with the old: the statement was refused, "the old version has the block around it
elsewhere", and every query reading ``tri`` failed. Among equally good alignments, statements
spelled alike (literals too) now pair first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import florsql
from florsql.propagate import propagate
from tests.helpers import git, make_repo, run_script, write

OLD = """import florsql as flor
st = {"n": 0}
with flor.checkpointing(st=st):
    for epoch in flor.loop("epoch", range(7)):
        st["n"] += epoch + 1
        if epoch % 2 == 0:
            flor.log("even", st["n"])
flor.commit()
"""
EVEN = '            flor.log("even", st["n"])\n'
TRI = '        if epoch % 3 == 0:\n            flor.log("tri", st["n"] * 3)\n'

TODAY = {
    "after it": OLD.replace(EVEN, EVEN + TRI),
    "before it": OLD.replace("        if epoch % 2 == 0:\n", TRI + "        if epoch % 2 == 0:\n"),
    "after it, one more alike after": OLD.replace(
        EVEN, EVEN + TRI + '        if epoch % 5 == 0:\n            flor.log("five", st["n"])\n'
    ),
}


@pytest.mark.parametrize("case", sorted(TODAY))
def test_the_new_block_is_placed_beside_the_old(case: str) -> None:
    result = propagate(TODAY[case], OLD)
    assert not result.failed, result.failed
    assert result.source == TODAY[case]


def test_replayed_values_equal_a_run_of_today_s_script(tmp_path: Path) -> None:
    today = TODAY["after it"]
    sql = "SELECT epoch, even, tri FROM logs WHERE tri IS NOT NULL OR even IS NOT NULL ORDER BY 1"
    oracle = make_repo(tmp_path / "o", {"train.py": today})
    run_script(oracle, "train.py")
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert [e for e, _, t in want if t is not None] == [0, 3, 6]
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    run_script(repo, "train.py")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        assert con.cursor().execute(sql).fetchall() == want
