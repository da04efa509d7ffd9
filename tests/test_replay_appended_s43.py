"""A file the run appends to and reads back is served as the run found it (session 44), or
said to be unknown in a replay where it cannot be, not served as the run's.

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


def test_an_appended_file_read_back_starts_as_the_run_found_it(tmp_path: Path) -> None:
    """Since session 44 a run notes the files it first opens to append (``append_starts``):
    the replay's copy starts as the run found it, and the values are exact."""
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    run_script(repo, "train.py")
    write(repo / "train.py", TODAY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with florsql.connect(repo, replay="auto") as con:
            rows = con.cursor().execute("SELECT nrows FROM logs ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert not [w for w in caught if "before writing it" in str(w.message)]


def test_an_appended_file_read_back_is_said_unknown(tmp_path: Path) -> None:
    """Where the file is not as the run found it plus appends (rewritten since), the copy
    starts from today's file and reading it back is said."""
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    run_script(repo, "train.py")  # it found the first run's three lines
    (repo / "out" / "m.csv").write_text("rewritten\n")
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
