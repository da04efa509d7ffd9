"""A name the old version logs only in a branch some runs never took (sweep S F2, session 50).

The old script logs ``val`` under ``if do_eval:`` (or ``if epoch % 2 == 0:``, or a step-level
``g`` under ``if step % 2 == 0:``, since session 51); today's logs it every epoch (step). A run
with ``do_eval=0`` never recorded ``val``: the planner replayed it, the propagation took ``val``
as present in the version (it logs the name) and placed nothing, and the replay ran the old
branch again, storing nothing: NULL, said nowhere, while EXPLAIN said both "1 run(s) did not
record it" and then "nothing to replay". Now the names a replay computes go into the version
even where it logs them, unless today's statement is there as it is (then the run did not reach
it either): the values equal a run of today's script.

Oracle: today's script run with the same args records the values for real.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import florsql
from florsql.errors import ReplayOffWarning
from florsql.propagate import propagate
from tests.helpers import git, make_repo, run_script, write

HEAD = """import random
import florsql as flor

do_eval = flor.arg("do_eval", 0)
every = flor.arg("every", 2)
random.seed(3)
w = 1.0
with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(5)):
        for step in flor.loop("step", range(3)):
            w = w * 0.9 + random.random()
            flor.log("loss", round(w, 9))
"""

#: pattern -> (old epoch-body tail, today's, the runs' args, the query)
PATTERNS = {
    "arg guard": (
        '        if do_eval:\n            flor.log("val", round(w * 2, 9))\n',
        '        flor.log("val", round(w * 2, 9))\n',
        [("--do_eval", "1"), ()],
        "SELECT do_eval, epoch, val FROM logs WHERE step IS NULL ORDER BY do_eval, epoch",
    ),
    "computed in the guard": (
        "        if do_eval:\n"
        "            acc = round(w * 3 + 1, 9)\n"
        '            flor.log("acc", acc)\n',
        '        acc = round(w * 3 + 1, 9)\n        flor.log("acc", acc)\n',
        [("--do_eval", "1"), ()],
        "SELECT do_eval, epoch, acc FROM logs WHERE step IS NULL ORDER BY do_eval, epoch",
    ),
    "computed in a try": (
        "        try:\n"
        "            if epoch % every == 1 or not do_eval:\n"
        "                raise KeyError(epoch)\n"
        "            acc = round(w * 3 + 1, 9)\n"
        '            flor.log("acc", acc)\n'
        "        except KeyError:\n"
        "            pass\n",
        '        acc = round(w * 3 + 1, 9)\n        flor.log("acc", acc)\n',
        [("--do_eval", "1"), ()],
        "SELECT do_eval, epoch, acc FROM logs WHERE step IS NULL ORDER BY do_eval, epoch",
    ),
    "every other epoch, and the arg": (
        "        if do_eval and epoch % every == 0:\n"
        '            flor.log("val", round(w * 2, 9))\n',
        '        flor.log("val", round(w * 2, 9))\n',
        [("--do_eval", "1"), (), ("--do_eval", "1", "--every", "3")],
        "SELECT do_eval, every, epoch, val FROM logs WHERE step IS NULL "
        "ORDER BY do_eval, every, epoch",
    ),
    "every run partial": (
        '        if epoch % every == 0:\n            flor.log("val", round(w * 2, 9))\n',
        '        flor.log("val", round(w * 2, 9))\n',
        [(), ("--every", "3")],
        "SELECT every, epoch, val FROM logs WHERE step IS NULL ORDER BY every, epoch",
    ),
    "the same guard today": (
        '        if do_eval:\n            flor.log("val", round(w * 2, 9))\n',
        '        if do_eval:\n            flor.log("val", round(w * 2, 9))\n'
        '        flor.log("w2", round(w * 5, 9))\n',
        [("--do_eval", "1"), ()],
        "SELECT do_eval, epoch, val, w2 FROM logs WHERE step IS NULL ORDER BY do_eval, epoch",
    ),
    "step level": (
        '            if step % every == 0:\n                flor.log("g", round(w * 7, 9))\n',
        '            flor.log("g", round(w * 7, 9))\n',
        [(), ("--every", "1")],
        "SELECT every, epoch, step, g FROM logs WHERE step IS NOT NULL ORDER BY every, epoch, step",
    ),
    "a guard alone in a helper": (
        "        def evaluate():\n"
        "            if epoch % every == 0:\n"
        '                flor.log("val", round(w * 2, 9))\n'
        "        evaluate()\n",
        '        def evaluate():\n            flor.log("val", round(w * 2, 9))\n'
        "        evaluate()\n",
        [(), ("--every", "3")],
        "SELECT every, epoch, val FROM logs WHERE step IS NULL ORDER BY every, epoch",
    ),
    "step level, the same guard today": (
        '            if step % every == 0:\n                flor.log("g", round(w * 7, 9))\n',
        '            if step % every == 0:\n                flor.log("g", round(w * 7, 9))\n'
        '            flor.log("g2", round(w * 3, 9))\n',
        [(), ("--every", "1")],
        "SELECT every, epoch, step, g, g2 FROM logs WHERE step IS NOT NULL "
        "ORDER BY every, epoch, step",
    ),
}


def _record(repo: Path, runs: list[tuple[str, ...]]) -> None:
    for args in runs:
        run_script(repo, "train.py", *args)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_a_name_the_run_never_took_the_branch_of_is_replayed_with_today_s_statement(
    tmp_path: Path, pattern: str
) -> None:
    old_tail, today_tail, runs, sql = PATTERNS[pattern]
    old, today = HEAD + old_tail, HEAD + today_tail
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": today})
    _record(repo, runs)
    _record(oracle, runs)
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(oracle, replay="off") as con, warnings.catch_warnings():
        warnings.simplefilter("ignore", ReplayOffWarning)  # its do_eval=0 run has no val
        want = con.cursor().execute(sql).fetchall()
    assert want and any(None not in row for row in want), want
    with florsql.connect(repo) as con:
        cur = con.cursor()
        got = cur.execute(sql).fetchall()
        assert got == want, (got, want)
        explain = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql).fetchall())
    assert "nothing to replay (every value the query reads exists)" in explain, explain


def test_a_name_the_old_file_logs_goes_in_again_only_when_asked() -> None:
    old = HEAD + '        if do_eval:\n            flor.log("val", round(w * 2, 9))\n'
    today = HEAD + '        flor.log("val", round(w * 2, 9))\n'
    assert propagate(today, old).skipped == ("loss", "val")
    again = propagate(today, old, again=["val"])
    assert not again.failed and [p.name for p in again.placed] == ["val"]
    lines = again.source.splitlines()
    at = lines.index('        flor.log("val", round(w * 2, 9))')
    assert lines[at + 1] == "        if do_eval:", lines
    # today's very statement, where the old file has it: nothing to place
    same = propagate(old, old, again=["val"])
    assert same.source == old and same.skipped == ("loss", "val")


def test_a_run_that_logged_the_name_with_another_statement_is_not_mixed(tmp_path: Path) -> None:
    """Sweep W (session 51): old ``if epoch % 2 == 0: flor.log("val", w * 3)``, today's
    ``flor.log("val", w * 4)`` every epoch. Filling the odd epochs with today's values mixed
    two definitions in one run's column (``*3`` and ``*4`` taking turns, silently). The run
    keeps its recorded values, the others are NULL, said; a run that never logged ``val`` is
    replayed whole with today's statement."""
    old = HEAD + (
        "        if do_eval and epoch % 2 == 0:\n            flor.log('val', round(w * 3, 9))\n"
    )
    today = HEAD + "        flor.log('val', round(w * 4, 9))\n"
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": old})
    _record(repo, [("--do_eval", "1"), ()])
    _record(oracle, [("--do_eval", "1")])
    write(oracle / "train.py", today)
    git(oracle, "commit", "-qam", "today")
    _record(oracle, [()])
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    sql = "SELECT do_eval, epoch, val FROM logs WHERE step IS NULL ORDER BY do_eval, epoch"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cur = con.cursor()
        explain = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql).fetchall())
        got = cur.execute(sql).fetchall()
    assert got == want, (got, want)
    assert [e for d, e, _ in got if d == 1] == [0, 2, 4]  # (rows where it has a value)
    assert [e for d, e, v in got if d == 0 and v is not None] == [0, 1, 2, 3, 4]
    assert "which recorded it in other iterations with another statement" in explain, explain
    said = [str(w.message) for w in caught]
    assert [m for m in said if "with another statement (flor.log('val', round(w * 3" in m], said


def test_explain_says_which_runs_recorded_it_in_some_iterations_only(tmp_path: Path) -> None:
    old_tail, today_tail, runs, sql = PATTERNS["every run partial"]
    repo = make_repo(tmp_path / "r", {"train.py": HEAD + old_tail})
    _record(repo, runs)
    write(repo / "train.py", HEAD + today_tail)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        explain = "\n".join(r[0] for r in con.cursor().execute("EXPLAIN " + sql).fetchall())
    # (it said "2 run(s) did not record it" of runs that recorded it in half the epochs)
    assert "val (2 run(s) recorded it in some iterations only)" in explain, explain


def test_another_statement_is_told_at_its_own_chain(tmp_path: Path) -> None:
    """Sweep Y (session 51): an unchanged statement of the name after the loop hid the edited
    one in the loop (the calls were compared as one set per name): the odd epochs were
    replayed with today's ``* 100`` beside the recorded plain values, silently."""
    old = HEAD + (
        "        if epoch % 2 == 0:\n            flor.log('val', round(w, 9))\n"
        "flor.log('val', 0.5)\n"
    )
    today = HEAD + "        flor.log('val', round(w * 100, 9))\n" + "flor.log('val', 0.5)\n"
    repo = make_repo(tmp_path / "r", {"train.py": old})
    _record(repo, [()])
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    sql = "SELECT epoch, val FROM logs WHERE step IS NULL AND epoch IS NOT NULL ORDER BY epoch"
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = con.cursor().execute(sql).fetchall()
    assert [e for e, _ in got] == [0, 2, 4], got  # the recorded ones only, not mixed
    assert all(v < 50 for _, v in got), got
    said = [str(w.message) for w in caught]
    assert [m for m in said if "another statement" in m], said
