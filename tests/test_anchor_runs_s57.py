"""A new run of today's script keeps the values replayed before it (session 57, sweep AK).

Today's script adds ``flor.log("wnorm", ...)`` and ``flor.log("other", ...)`` beside the old
``loss``. A query reading ``wnorm`` replays the old runs. Then a run of today's script records
``other`` for the first time. A statement's fingerprint holds the anchor keys of its neighbours
that some run recorded (an old version that logs one places the statement by it), so
``wnorm``'s fingerprint changed, and every value replayed for it stopped counting: a query
answered without them (with ``--replay off``: NULL), or replayed them all again; a query that
replayed while the run recorded answered only the new run's rows. A run of today's very code is
never replayed, so its names anchor nothing now.
"""

from __future__ import annotations

from pathlib import Path

import florsql
from tests.helpers import make_repo, run_script, write

OLD = """import florsql as flor
lr = flor.arg("lr", 0.1)
w = 1.0
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(4)):
        w = w * (1 - lr) + epoch
        flor.log("loss", round(w, 9))
"""
TODAY = OLD + '        flor.log("wnorm", round(w * 2, 9))\n        flor.log("other", epoch * 2)\n'
SQL = "SELECT lr, count(wnorm), round(sum(wnorm), 6) FROM logs GROUP BY lr ORDER BY lr"


def _rows(repo: Path, replay: str) -> list[tuple[object, ...]]:
    with florsql.connect(repo, replay=replay) as con:
        return list(con.cursor().execute(SQL).fetchall())


def _replays(repo: Path) -> int:
    with florsql.connect(repo, replay="off") as con:
        return int(
            con.cursor().execute("SELECT count(DISTINCT replay_id) FROM replays").fetchone()[0]
        )


def test_a_new_run_of_today_s_script_keeps_the_replayed_values(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    for lr in ("0.1", "0.2"):
        run_script(repo, "train.py", "--lr", lr)
    write(repo / "train.py", TODAY)
    first = _rows(repo, "auto")
    assert [(lr, n) for lr, n, _ in first] == [(0.1, 4), (0.2, 4)]
    assert _replays(repo) == 1
    run_script(repo, "train.py", "--lr", "0.3")  # records wnorm and, first of all runs, other
    after = _rows(repo, "off")
    assert after[:2] == first and after[2][:2] == (0.3, 4)
    assert _rows(repo, "auto")[:2] == first
    assert _replays(repo) == 1  # nothing replayed again
