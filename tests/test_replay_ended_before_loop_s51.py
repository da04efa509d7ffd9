"""A run that failed or was killed before the loop a query's statement is in (session 50-51).

Where the version's other runs recorded that loop, the run's own end is why it has no value:
before, the warning said it of the version ("version V cannot compute acc (no run of it
recorded that loop: the code never reached it, or the run was killed or failed before)"),
where a run of that version did record it. Now it is said of the run, where it ended.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import florsql
from florsql.errors import FlorWarning
from tests.helpers import git, make_repo, run_script, write

OLD = """import florsql as flor

fail = flor.arg("fail", 0)
w = 1.0
with flor.checkpointing(w=w):
    for epoch in flor.loop("train", range(3)):
        w = w * 0.5 + epoch
        flor.log("w", w)
        if fail and epoch == 1:
            raise RuntimeError("diverged")
for t in flor.loop("test", range(2)):
    flor.log("t", w + t)
"""


def test_a_failed_run_that_never_reached_the_loop_is_said_of_the_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    run_script(repo, "train.py")
    failed = run_script(repo, "train.py", "--fail", "1", check=False)
    assert failed.returncode != 0
    write(repo / "train.py", OLD + '    flor.log("t2", w * 2 + t)\n')
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = (
            con.cursor()
            .execute("SELECT fail, test, t2 FROM logs WHERE test IS NOT NULL ORDER BY fail, test")
            .fetchall()
        )
        runs = dict(con.cursor().execute("SELECT run_id, fail FROM runs").fetchall())
    assert rows == [(0, 0, 5.25), (0, 1, 6.25)], rows
    bad = next(r for r, f in runs.items() if f == 1)
    said = [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]
    assert not [m for m in said if "no run of it recorded that loop" in m], said
    mine = [m for m in said if f"t2 of run {bad}" in m]
    assert mine and "failed during train 1" in mine[0], said
