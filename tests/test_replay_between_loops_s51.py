"""A statement between two top-level loops, of a run that failed in the second (session 51).

Training, then a test loop; today's statement between them (``flor.log("final", ...)`` after
training). A run that raised in its test loop reached that line, but its value was NULL, said
"NULL in the iteration the run ended in and after it (it was failed during test 1)". Now the
task restores the last training checkpoint, runs the code after the loop and ends raising the
run's own error where the run did; a statement after the test loop stays NULL, said so.

Oracle: today's script recorded with the same args (it fails the same way).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import florsql
from florsql.errors import FlorWarning
from tests.helpers import git, make_repo, run_script, write

OLD = """import florsql as flor

seed = flor.arg("seed", 1)
fail = flor.arg("fail", -1)
w = float(seed)
with flor.checkpointing(w=w):
    for epoch in flor.loop("train", range(3)):
        w = w * 0.5 + epoch
        flor.log("w", w)
final = w * 10
for t in flor.loop("test", range(3)):
    if t == fail:
        raise RuntimeError("bad batch")
    flor.log("t", w + t)
done = w + 100
"""

TODAY = OLD.replace("final = w * 10\n", 'final = w * 10\nflor.log("final", final)\n') + (
    'flor.log("after", done)\n'
)
RUNS = [("--seed", "1"), ("--seed", "2", "--fail", "1"), ("--seed", "3", "--fail", "0")]


def test_a_statement_before_the_loop_the_run_failed_in_is_replayed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    oracle = make_repo(tmp_path / "o", {"train.py": TODAY})
    for where in (repo, oracle):
        for args in RUNS:
            run_script(where, "train.py", *args, check="--fail" not in args)
    write(repo / "train.py", TODAY)
    git(repo, "commit", "-qam", "today")
    sql = "SELECT seed, final, after FROM logs WHERE train IS NULL AND test IS NULL ORDER BY seed"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert want == [(1, 26.25, 102.625), (2, 27.5, None), (3, 28.75, None)], want
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = con.cursor().execute(sql).fetchall()
    assert got == want
    said = [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]
    assert not [m for m in said if "final" in m.split(":")[0]], said
    assert [m for m in said if m.startswith("after of run")], said


KILLED = """import os
import signal
import time
import florsql as flor

seed = flor.arg("seed", 1)
kill = flor.arg("kill", -1)
w = float(seed)
with flor.checkpointing(w=w):
    for epoch in flor.loop("train", range(2)):
        w = w * 0.5 + epoch
        flor.log("w", w)
        time.sleep(0.2)
mid = w * 7
for t in flor.loop("test", range(3)):
    time.sleep(0.2)
    if t == kill:
        os.kill(os.getpid(), signal.SIGKILL)
    flor.log("t", w + t)
"""


def test_a_run_killed_in_its_test_loop_reached_the_statement_before_it(tmp_path: Path) -> None:
    """Sweep X: killed in the test loop, the run got past today's statement between the
    loops; its value was NULL, "the iteration the run ended in and after it". The task stops
    where the test loop begins (it would kill itself there again)."""
    today = KILLED.replace("mid = w * 7\n", 'mid = w * 7\nflor.log("mid", mid)\n')
    repo = make_repo(tmp_path / "r", {"train.py": KILLED})
    oracle = make_repo(tmp_path / "o", {"train.py": today})
    for where in (repo, oracle):
        run_script(where, "train.py")
        assert run_script(where, "train.py", "--seed", "2", "--kill", "2", check=False).returncode
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    sql = "SELECT seed, mid FROM logs WHERE mid IS NOT NULL ORDER BY seed"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert want == [(1, 8.75), (2, 10.5)], want
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert con.cursor().execute(sql).fetchall() == want
    assert not [w for w in caught if "failed" in str(w.message)], [str(w.message) for w in caught]
