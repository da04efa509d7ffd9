"""A log added to a helper whose tail another helper shares (sweep Z F3, session 52).

``report(acc)`` and ``score(v)`` both end in ``return acc`` and are both called in the epoch
loop: the helper's body matched the old ``report`` by its name and the old ``score`` through its
call site, equally well, and propagation refused ("ambiguous: 2 equally good places"), so the
query could not be answered at all. A tie is now broken for the block of the statement's own
function. Oracle: today's script recorded.
"""

from __future__ import annotations

from pathlib import Path

import florsql
from florsql.propagate import propagate
from tests.helpers import git, make_repo, run_script, write

OLD = """import florsql as flor

seed = flor.arg("seed", 1)
w = float(seed)


def score(v):
    acc = v * 2
    return acc


def report(acc):
    return acc


for epoch in flor.loop("epoch", range(3)):
    w = w * 0.5 + epoch
    acc = score(w)
    report(acc)
    flor.log("w", w)
"""
TODAY = OLD.replace("def report(acc):\n", 'def report(acc):\n    flor.log("gap", acc + 1)\n')


def test_the_statement_goes_into_its_own_function() -> None:
    result = propagate(TODAY, OLD)
    assert not result.failed, result.failed
    assert result.source == TODAY


def test_its_values_equal_a_run_of_today_s_script(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    oracle = make_repo(tmp_path / "o", {"train.py": TODAY})
    for seed in ("1", "2"):
        run_script(repo, "train.py", "--seed", seed)
        run_script(oracle, "train.py", "--seed", seed)
    write(repo / "train.py", TODAY)
    git(repo, "commit", "-qam", "today")
    sql = "SELECT seed, epoch, gap FROM logs WHERE gap IS NOT NULL ORDER BY 1, 2"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    with florsql.connect(repo) as con:
        got = con.cursor().execute(sql).fetchall()
    assert len(want) == 6 and got == want, (got, want)
