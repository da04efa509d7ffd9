"""EXPLAIN of a whole-run task for today's statement in a helper function (session 50-51).

It said "the whole run (a statement's loop context is unknown)" under a statement it had
itself placed "in epoch" a line above (today's scan follows the helper's call sites; the
analysis of the old version's patched file does not). Now it names the function.
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


def test_explain_names_the_helper_that_makes_a_task_run_whole(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    run_script(repo, "train.py")
    write(repo / "train.py", OLD.replace("    pass\n", '    flor.log("r", v * 2)\n'))
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        cur = con.cursor()
        plan = "\n".join(r[0] for r in cur.execute("EXPLAIN SELECT epoch, r FROM logs").fetchall())
        assert "a statement in report(), a function whose calls" in plan, plan
        assert "loop context is unknown" not in plan, plan
        rows = cur.execute("SELECT epoch, r FROM logs WHERE r IS NOT NULL ORDER BY 1").fetchall()
    assert rows == [(0, 1.0), (1, 2.5), (2, 5.25)], rows
