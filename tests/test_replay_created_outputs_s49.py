"""A run that resumes from its own state file if one is there (sweep R, session 49).

The usual resume pattern: ``if os.path.exists("state.json"): start = state["epoch"] + 1``,
the state written each epoch. Run A found no file and made it; run B resumed from A's. A
hindsight query then replayed A with today's file there (B's last epoch): A's replay resumed
past its own loop, and the task failed with "the loop's iterable or the script's path
differs", naming no file; both runs' values were NULL. Now a run lists the outputs that were
not there when it first wrote them (``created_outputs``), and a replay task finds none of them
until it writes it: A replays exactly. B read the file before writing it, and what it found
is not known: its task fails saying so, naming the file, and replays exactly once the file is
put back as B found it.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import florsql
from florsql.store import rundoc
from tests.helpers import make_repo, run_dirs, run_script, write

OLD = """import json
import os
import random
import sys
import florsql as flor

epochs = int(sys.argv[1])
random.seed(0)
w, start = 1.0, 0
if os.path.exists("state.json"):
    with open("state.json") as f:
        state = json.load(f)
    w, start = state["w"], state["epoch"] + 1
    random.setstate((state["rng"][0], tuple(state["rng"][1]), state["rng"][2]))
for epoch in flor.loop("epoch", range(start, epochs)):
    w = w * 0.9 + random.random()
    flor.log("w", w)
    with open("state.json", "w") as f:
        json.dump({"w": w, "epoch": epoch, "rng": random.getstate()}, f)
"""
TODAY = OLD + '    flor.log("w2", round(w * w, 9))\n'
SQL = "SELECT epoch, w, w2 FROM logs ORDER BY tstamp, epoch"


def _history(root: Path, text: str) -> Path:
    repo = make_repo(root, {"train.py": text, ".gitignore": "state.json\n"})
    run_script(repo, "train.py", "3")
    return repo


def _two_runs(root: Path, text: str) -> tuple[Path, str]:
    """Runs A (3 epochs, from nothing) and B (to 6, resumed from A's file); the file as B
    found it."""
    repo = _history(root, text)
    found = (repo / "state.json").read_text()
    run_script(repo, "train.py", "6")
    return repo, found


def _rows(repo: Path) -> list[tuple[object, ...]]:
    with florsql.connect(repo, replay="auto") as con:
        return con.cursor().execute(SQL).fetchall()


def test_a_run_lists_the_outputs_it_made(tmp_path: Path) -> None:
    repo, _ = _two_runs(tmp_path / "r", OLD)
    first, second = (json.loads((d / "run.json").read_text()) for d in run_dirs(repo))
    assert first[rundoc.CREATED_OUTPUTS] == ["state.json"]
    assert first[rundoc.OUTPUTS] == ["state.json"]
    # B read it before writing it: not made by B
    assert second[rundoc.CREATED_OUTPUTS] == []
    assert second[rundoc.OUTPUTS] == ["state.json"]


def test_the_run_that_made_its_state_file_replays_as_it_ran(tmp_path: Path) -> None:
    """Differential: A's hindsight values equal a run of today's script, with B's state file
    in the folder; B's task fails naming the file, and its values stay NULL."""
    repo, found = _two_runs(tmp_path / "r", OLD)
    oracle, _ = _two_runs(tmp_path / "o", TODAY)
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(SQL).fetchall()
    assert len(want) == 6
    write(repo / "train.py", TODAY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _rows(repo)
    assert got[:3] == want[:3]  # run A, exact
    assert [r[1] for r in got[3:]] == [r[1] for r in want[3:]]  # B's recorded values kept
    assert [r[2] for r in got[3:]] == [None] * 3
    said = " ".join(str(w.message) for w in caught)
    assert "it read state.json, which the run wrote itself, before writing it" in said
    assert "put the file back as the run found it" in said
    # put back as B found it (A's last epoch), B replays too, and exactly
    kept = (repo / "state.json").read_text()
    write(repo / "state.json", found)
    try:
        with florsql.connect(repo, replay="auto") as con:
            # the failed task is tried again once the code changes: a new statement's query
            got = con.cursor().execute(SQL).fetchall()
    finally:
        write(repo / "state.json", kept)
    assert got == want


def test_the_state_file_put_back_lets_the_resumed_run_replay(tmp_path: Path) -> None:
    """B's file as B found it, before the first query: both runs replay exactly."""
    repo, found = _two_runs(tmp_path / "r", OLD)
    oracle, _ = _two_runs(tmp_path / "o", TODAY)
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(SQL).fetchall()
    write(repo / "train.py", TODAY)
    last = repo / "last.json"
    shutil.move(repo / "state.json", last)
    write(repo / "state.json", found)
    assert _rows(repo) == want
    assert (repo / "state.json").read_text() == found  # the replays wrote none of it
