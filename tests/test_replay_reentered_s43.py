"""A run that enters a loop of one name twice is replayed whole once, not by every query.

Found by session 43's SQL sweep: a script with two `for e in flor.loop("epoch", ...)` loops,
the first of 3 epochs and the second of 2, and today's statement in the second. Its run is
replayed whole (the planner cannot tell the loops' iterations apart), which computes the values
of epochs 0 and 1; the first loop's epoch 2, where today's statement logs nothing, stayed
uncovered, so every later query warned "still missing after replay ... the next query replays
them" and replayed the whole run again. A task of the whole run now covers every outer
iteration the run recorded (`florsql.plan.stats._replayed_cover`). Oracle: a run of today's
script."""

from __future__ import annotations

import warnings
from pathlib import Path

import florsql
from tests.helpers import make_repo, run_script, write

OLD = """import florsql as flor
for e in flor.loop("epoch", range(3)):
    flor.log("a", e)
for e in flor.loop("epoch", range(2)):
    flor.log("b", e * 2)
flor.commit()
"""
TODAY = OLD.replace('flor.log("b", e * 2)\n', 'flor.log("b", e * 2)\n    flor.log("hs", e + 100)\n')
SQL = "SELECT epoch, b, hs FROM logs WHERE b IS NOT NULL ORDER BY ALL"


def _ask(repo: Path) -> tuple[list[tuple[object, ...]], list[str], int]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with florsql.connect(repo, replay="auto") as con:
            cur = con.cursor()
            rows = cur.execute(SQL).fetchall()
            tasks = len(cur.execute("SELECT task_id FROM replays").fetchall())
    return rows, [str(w.message) for w in caught], tasks


def test_a_loop_entered_twice_is_replayed_once(tmp_path: Path) -> None:
    oracle = make_repo(tmp_path / "oracle", {"train.py": TODAY})
    run_script(oracle, "train.py")
    with florsql.connect(oracle) as con:
        want = con.execute(SQL).fetchall()
    assert want == [(0, 0, 100), (1, 2, 101)]

    repo = make_repo(tmp_path / "history", {"train.py": OLD})
    run_script(repo, "train.py")
    write(repo / "train.py", TODAY)
    rows, said, tasks = _ask(repo)
    assert rows == want
    assert tasks == 1
    assert not [m for m in said if "still missing" in m], said
    rows, said, again = _ask(repo)  # nothing left to replay
    assert rows == want and again == tasks, (again, said)
    assert not [m for m in said if "still missing" in m], said
