"""Runs of a script today's tree no longer has get NULL with a warning, not silently.

Found by session 43's replay sweep: version A is ``train.py``, version B the same code moved to
``main.py`` (``git mv``), and today's ``main.py`` logs a new name. Today's statements go into a
version's copy of the file of the same path, so nothing computes the name in A's runs: their
values were NULL and ``WHERE wn IS NOT NULL`` dropped their rows, without a word (only
EXPLAIN's "not replayable ... (their script does not log it)"). Now the query warns, naming the
file, and EXPLAIN says the file is gone."""

from __future__ import annotations

import warnings
from pathlib import Path

import florsql
from tests.helpers import git, make_repo, run_script, write

SCRIPT = """import florsql as flor
w = flor.arg("w0", 1.0)
for epoch in flor.loop("epoch", range(3)):
    w = w * 0.5 + epoch
    flor.log("w", w)
"""
TODAY = SCRIPT + '    flor.log("w2", w * 2)\n'


def test_runs_of_a_renamed_script_are_said_null(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT})
    run_script(repo, "train.py")
    git(repo, "mv", "train.py", "main.py")
    git(repo, "commit", "-qm", "moved")
    run_script(repo, "main.py", "--w0", "2.0")
    write(repo / "main.py", TODAY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with florsql.connect(repo, replay="auto") as con:
            cur = con.cursor()
            rows = cur.execute("SELECT filename, epoch, w2, w FROM logs ORDER BY ALL").fetchall()
            plan = "\n".join(r[0] for r in cur.execute("EXPLAIN SELECT w2 FROM logs").fetchall())
    said = [str(w.message) for w in caught]
    assert [r[:3] for r in rows if r[0] == "main.py"] == [
        ("main.py", 0, 2.0),
        ("main.py", 1, 3.0),
        ("main.py", 2, 5.5),
    ]
    assert [r[2] for r in rows if r[0] == "train.py"] == [None, None, None]
    assert any("1 run(s) of train.py cannot compute w2" in m and "no train.py" in m for m in said)
    assert "w2 for 1 run(s) of train.py, which today's code no longer has" in plan
    assert "their script does not log it" not in plan
