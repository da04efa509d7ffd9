"""Today's statement in a helper function (sessions 50-52).

EXPLAIN said "the whole run (a statement's loop context is unknown)" under a statement it had
itself placed "in epoch" a line above (today's scan follows the helper's call sites; the
analysis of the old version's patched file did not), and the task replayed the whole run
(sweep Y N3: about 6 s where epoch tasks take under 1 s). Since session 52 a helper called by
name from the loop is placed at its calls: epoch tasks. One that may run elsewhere (a
callback) still replays whole runs, and EXPLAIN names it.
"""

from __future__ import annotations

from pathlib import Path

import florsql
from tests.helpers import git, make_repo, run_script, write

OLD = """import florsql as flor

w = 1.0


def report(v):
    pass


with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(3)):
        w = w * 0.5 + epoch
        flor.log("w", w)
        report(w)
"""


def test_a_helper_called_in_the_loop_is_replayed_per_epoch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    run_script(repo, "train.py")
    write(repo / "train.py", OLD.replace("    pass\n", '    flor.log("r", v * 2)\n'))
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        cur = con.cursor()
        sql = "SELECT epoch, r FROM logs WHERE epoch = 2"
        plan = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql).fetchall())
        assert "whole run" not in plan and "report()" not in plan, plan
        assert cur.execute(sql).fetchall() == [(2, 5.25)]
        rows = cur.execute("SELECT epoch, r FROM logs WHERE r IS NOT NULL ORDER BY 1").fetchall()
    assert rows == [(0, 1.0), (1, 2.5), (2, 5.25)], rows


def test_explain_names_the_helper_that_makes_a_task_run_whole(tmp_path: Path) -> None:
    old = OLD + "hooks = [report]\n"
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", old.replace("    pass\n", '    flor.log("r", v * 2)\n'))
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        cur = con.cursor()
        plan = "\n".join(r[0] for r in cur.execute("EXPLAIN SELECT epoch, r FROM logs").fetchall())
        assert "a statement in report(), a function that may run elsewhere" in plan, plan
        assert "loop context is unknown" not in plan, plan
        rows = cur.execute("SELECT epoch, r FROM logs WHERE r IS NOT NULL ORDER BY 1").fetchall()
    assert rows == [(0, 1.0), (1, 2.5), (2, 5.25)], rows
