"""A run that raised after its loop (sweep S F4, session 50).

The run ended every epoch, then raised in code after the loop (``torch.save`` or ``open``
into an ``out/`` folder that is not there). A statement of today's placed after the loop but
before that line was NULL ("failed after epoch 3, its last recorded iteration"), though the
run reached it. Now such a run is replayed past its loop, and its task must raise the run's
own error where the run did (same type, message, file and function): it then ends as the run
did, its values kept. A statement after the failing line stays NULL, as in a run of today's
script. A task that runs to the end of the script instead fails, saying so: it did not run
the code after the loop as the run did. The replay's write sandbox leaves a write the run
could not make (its folder is not there) to fail where it is, as the run's did; a file the
run did write goes on being written to a private copy where its folder is gone since.

Oracle: today's script run the same way records the values for real.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

import florsql
from florsql.errors import ReplayFailedWarning, ReplayOffWarning
from tests.helpers import git, make_repo, run_script, write

OLD = """import os
import random
import florsql as flor

random.seed(0)
w = float(flor.arg("w0", 1.0))
with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(4)):
        w = w * 0.9 + random.random()
        flor.log("w", w)
flor.log("final", w)
SAVE
"""
SAVES = {
    "open": 'with open("out/model.txt", "w") as f:\n    f.write(str(w))\n',
    "torch.save": 'import torch\ntorch.save({"w": w}, "out/model.pt")\n',
    "raise": 'if os.path.exists("boom.flag"):\n    raise RuntimeError("boom")\n',
}
SQL = "SELECT w0, final, final2, after FROM logs WHERE final IS NOT NULL ORDER BY w0"


def _today(old: str) -> str:
    return (
        old.replace('flor.log("final", w)\n', 'flor.log("final", w)\nflor.log("final2", w * 2)\n')
        + 'flor.log("after", 1)\n'
    )


def _record(repo: Path) -> None:
    for w0 in ("1.0", "2.5"):
        proc = run_script(repo, "train.py", "--w0", w0, check=False)
        assert proc.returncode != 0, proc.stdout


@pytest.mark.parametrize("save", ["open", "torch.save"])
def test_a_statement_before_the_line_the_run_raised_at_is_replayed(
    tmp_path: Path, save: str
) -> None:
    old = OLD.replace("SAVE\n", SAVES[save])
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": _today(old)})
    _record(repo)
    _record(oracle)
    write(repo / "train.py", _today(old))
    git(repo, "commit", "-qam", "today")
    with florsql.connect(oracle, replay="off") as con, warnings.catch_warnings():
        warnings.simplefilter("ignore", ReplayOffWarning)  # ``after``: no run got there
        want = con.cursor().execute(SQL).fetchall()
    assert [r[3] for r in want] == [None, None] and None not in [r[2] for r in want], want
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with florsql.connect(repo) as con:
            assert con.cursor().execute(SQL).fetchall() == want
    said = [str(w.message) for w in seen]
    assert not [w for w in seen if issubclass(w.category, ReplayFailedWarning)], said
    error = "FileNotFoundError" if save == "open" else "RuntimeError"
    assert any(
        t.startswith("after of run ")
        and f"the run raised {error}" in t
        and "so did its replay" in t
        for t in said
    ), said
    assert not (repo / "out").exists()  # the replay wrote nothing of the user's


def test_a_replay_that_does_not_raise_where_the_run_did_says_so(tmp_path: Path) -> None:
    """The run raised because of a file that is gone today: its replay runs on to the end of
    the script, where ``after`` would have a value the run never reached."""
    old = OLD.replace("SAVE\n", SAVES["raise"])
    repo = make_repo(tmp_path / "r", {"train.py": old, ".gitignore": "boom.flag\n"})
    write(repo / "boom.flag", "1")
    _record(repo)
    (repo / "boom.flag").unlink()
    write(repo / "train.py", _today(old))
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rows = con.cursor().execute(SQL).fetchall()
    assert [r[2:] for r in rows] == [(None, None), (None, None)], rows
    said = " ".join(str(w.message) for w in seen if issubclass(w.category, ReplayFailedWarning))
    assert "the replay ran to the end of the script, where the run raised RuntimeError" in said


def test_an_output_folder_cleaned_since_is_still_written_to_a_copy(tmp_path: Path) -> None:
    """The run wrote ``out/model.txt`` each epoch; the user removed ``out/`` since: its
    replay writes a private copy, as before (only a write the run could not make fails)."""
    old = OLD.replace(
        "    for epoch",
        "    os.makedirs('out', exist_ok=True)\n    for epoch",
    ).replace(
        '        flor.log("w", w)\n',
        '        flor.log("w", w)\n        with open("out/model.txt", "w") as f:\n'
        "            f.write(str(w))\n",
    )
    old = old.replace("SAVE\n", "")
    today = old.replace(
        '        flor.log("w", w)\n', '        flor.log("w", w)\n        flor.log("w3", w * 3)\n'
    )
    repo = make_repo(tmp_path / "r", {"train.py": old, ".gitignore": "out/\n"})
    oracle = make_repo(tmp_path / "o", {"train.py": today, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    run_script(oracle, "train.py")
    shutil.rmtree(repo / "out")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    sql = "SELECT epoch, w3 FROM logs WHERE w3 IS NOT NULL OR w IS NOT NULL ORDER BY epoch"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReplayFailedWarning)
        with florsql.connect(repo) as con:
            assert con.cursor().execute(sql).fetchall() == want


def test_a_run_that_failed_in_its_second_loop_is_said_to_have(tmp_path: Path) -> None:
    """Two top-level loops, training then a test loop; the run raised at test 1. It was said
    "failed during epoch 1" (sweep T): the loop of the iteration it stopped in was any one."""
    old = """import florsql as flor

w = 1.0
with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(3)):
        w = w * 0.5 + epoch
        flor.log("w", w)
for t in flor.loop("test", range(3)):
    flor.log("tw", w + t)
    if t == 1:
        raise ValueError("bad batch")
"""
    repo = make_repo(tmp_path / "r", {"train.py": old})
    assert run_script(repo, "train.py", check=False).returncode != 0
    write(
        repo / "train.py",
        old.replace(
            '    flor.log("tw", w + t)\n', '    flor.log("tw", w + t)\n    flor.log("t2", w * t)\n'
        ),
    )
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rows = (
            con.cursor()
            .execute("SELECT test, t2 FROM logs WHERE tw IS NOT NULL ORDER BY test")
            .fetchall()
        )
    assert rows == [(0, 0.0), (1, None)], rows
    said = " ".join(str(w.message) for w in seen)
    assert "t2 of run" in said and "(it was failed during test 1)" in said, said
