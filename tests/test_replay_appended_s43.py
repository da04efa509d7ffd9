"""A file the run appends to and reads back is said to be unknown in a replay, not served as
the run's.

Found by session 43's second sweep: a metrics file in an ignored folder, appended each epoch
and read back (``nrows = len(open("out/m.csv").readlines())``). A replay's append goes to a
private copy that starts from today's file, which holds every row the run (and later runs)
wrote, so today's ``flor.log("nrows", nrows)`` read 4, 5, 6 where a full re-run has 1, 2, 3,
with no warning: an append was not counted as a read of what the file held. Now it is, and the
query says the values computed from it are not the run's (``read_outputs``, as for a run that
reads its own last checkpoint before writing it)."""

from __future__ import annotations

import warnings
from pathlib import Path

import florsql
from tests.helpers import make_repo, run_script, write

SCRIPT = """import os
import florsql as flor
os.makedirs("out", exist_ok=True)
for epoch in flor.loop("epoch", range(3)):
    with open("out/m.csv", "a") as f:
        f.write(f"{epoch}\\n")
    with open("out/m.csv") as f:
        rows = f.readlines()
    flor.log("e", epoch)
"""
TODAY = SCRIPT + '    flor.log("nrows", len(rows))\n'


def test_an_appended_file_read_back_is_said_unknown(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    write(repo / "train.py", TODAY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with florsql.connect(repo, replay="auto") as con:
            con.cursor().execute("SELECT epoch, nrows FROM logs").fetchall()
    said = " ".join(str(w.message) for w in caught)
    assert "read out/m.csv before writing it" in said, said


def test_a_log_file_only_appended_to_is_no_read(tmp_path: Path) -> None:
    """Appended to and never read back (a text log of each epoch): nothing to say."""
    script = SCRIPT.replace('    with open("out/m.csv") as f:\n        rows = f.readlines()\n', "")
    repo = make_repo(tmp_path / "r", {"train.py": script, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    write(repo / "train.py", script + '    flor.log("e2", epoch * 2)\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with florsql.connect(repo, replay="auto") as con:
            rows = con.cursor().execute("SELECT epoch, e2 FROM logs ORDER BY 1").fetchall()
    assert rows == [(0, 0), (1, 2), (2, 4)]
    said = " ".join(str(w.message) for w in caught)
    assert "before writing it" not in said, said
