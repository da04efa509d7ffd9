"""The same log statement in another place than the runs recorded it (sweep W's W2, session 51).

The old script logs ``val`` under ``if epoch % 2 == 0:`` before the update of what it reads,
today's logs it every epoch after the update: the same text, another value. A run that recorded
it in the even epochs had the odd ones replayed with today's placement, so one run's column took
the two definitions in turns, silently (the statement's text was all that was compared). Now the
placement counts: the statements both versions have that may change what it logs (``w = ...``
here) must lie on the same side of both. Where they do not, the run keeps its recorded values
and the others are NULL, said; a run that never logged ``val`` is replayed with today's. A run
that logged it every epoch is said to hold the other statement's values, where they are read.

Oracle: today's script run with the same args records the values for real.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import florsql
from florsql.errors import FlorWarning
from florsql.plan.guards import other_statement
from tests.helpers import git, make_repo, run_script, write

HEAD = """import florsql as flor

do_eval = flor.arg("do_eval", 0)
w = 1.0
for epoch in flor.loop("epoch", range(5)):
"""
OLD = HEAD + (
    "    if do_eval and epoch % 2 == 0:\n"
    "        flor.log('val', round(w, 9))\n"
    "    w = w * 1.5 + epoch\n"
    "    flor.log('loss', round(w, 9))\n"
)
TODAY = HEAD + (
    "    w = w * 1.5 + epoch\n    flor.log('val', round(w, 9))\n    flor.log('loss', round(w, 9))\n"
)
SQL = "SELECT do_eval, epoch, val FROM logs ORDER BY do_eval, epoch"


def _rows(repo: Path, sql: str, **kw: object) -> tuple[list[tuple[object, ...]], list[str], str]:
    with florsql.connect(repo, **kw) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cur = con.cursor()
        explain = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql).fetchall())
        rows = cur.execute(sql).fetchall()
    said = [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]
    return rows, said, explain


def test_a_moved_statement_does_not_fill_the_run_s_other_iterations(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    run_script(repo, "train.py", "--do_eval", "1")
    run_script(repo, "train.py")
    write(repo / "train.py", TODAY)
    git(repo, "commit", "-qam", "today")
    oracle = make_repo(tmp_path / "o", {"train.py": TODAY})
    run_script(oracle, "train.py")
    want, _, _ = _rows(oracle, SQL, replay="off")
    got, said, explain = _rows(repo, SQL)
    # the run that never logged val: replayed with today's statement, equal to today's run
    assert [r for r in got if r[0] == 0] == want
    # the run that logged it in the even epochs keeps them (before the update: 1.0, 3.25, ...)
    mine = {e: v for d, e, v in got if d == 1}
    assert mine[0] == 1.0 and mine[2] == 3.25 and mine[4] == 13.3125, mine
    assert sorted(mine) == [0, 2, 4], mine  # (today's values were mixed in at 1 and 3)
    hits = [m for m in said if "with another statement (flor.log('val', round(w, 9))" in m]
    assert hits and "placed otherwise: today's comes after `w = w * 1.5 + epoch`" in hits[0], said
    assert "which recorded it in other iterations with another statement" in explain, explain


def test_a_statement_in_its_place_fills_the_other_iterations(tmp_path: Path) -> None:
    """The guard dropped, nothing moved (a print and another log between aside): the odd
    epochs are replayed, equal to today's run."""
    today = HEAD + (
        "    print(epoch)\n"
        "    flor.log('val', round(w, 9))\n"
        "    w = w * 1.5 + epoch\n"
        "    flor.log('loss', round(w, 9))\n"
    )
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    run_script(repo, "train.py", "--do_eval", "1")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    oracle = make_repo(tmp_path / "o", {"train.py": today})
    run_script(oracle, "train.py", "--do_eval", "1")
    want, _, _ = _rows(oracle, SQL, replay="off")
    got, said, _ = _rows(repo, SQL)
    assert got == want and all(v is not None for _, _, v in got), (got, want)
    assert not [m for m in said if "another statement" in m], said


def test_a_run_that_logged_the_moved_statement_every_epoch_is_said(tmp_path: Path) -> None:
    old = OLD.replace("    if do_eval and epoch % 2 == 0:\n        flor.log", "    flor.log")
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", TODAY)
    git(repo, "commit", "-qam", "today")
    _, said, explain = _rows(repo, SQL)
    hits = [m for m in said if "recorded it with another statement than today's" in m]
    assert len(hits) == 1 and "today's comes after `w = w * 1.5 + epoch`" in hits[0], said
    # EXPLAIN says it too (sweep Z F6: "every value the query reads exists")
    assert "nothing to replay (but see the notes below)" in explain, explain
    assert "note: val: 1 run(s) recorded it with another statement" in explain, explain


def test_what_counts_as_moved() -> None:
    old = OLD.replace("    if do_eval and epoch % 2 == 0:\n        flor.log", "    flor.log")
    assert other_statement(TODAY, old, "val") is not None
    # statements that change nothing it reads (a print, a log, a constant) may move
    quiet = HEAD + (
        "    flor.log('loss', round(w, 9))\n"
        "    print(epoch)\n"
        "    k = 3\n"
        "    flor.log('val', round(w, 9))\n"
        "    w = w * 1.5 + epoch\n"
    )
    assert other_statement(quiet, old + "    k = 3\n    print(epoch)\n", "val") is None
    # any other call may change what it reads (``optimizer.step()`` a model ``evaluate`` reads)
    calls = HEAD + ("    step()\n    flor.log('val', evaluate(w))\n    w = w * 1.5 + epoch\n")
    moved = HEAD + ("    flor.log('val', evaluate(w))\n    step()\n    w = w * 1.5 + epoch\n")
    assert "placed after `step()`, where today's is not" in (
        other_statement(moved, calls, "val") or ""
    )
    # a statement only one version has tells nothing after it; before it, a change of what it
    # reads travels with it into the old version (a slice), so its values would differ too
    after = HEAD + "    flor.log('val', round(w, 9))\n    w = w * 1.5 + epoch\n    w = w - 1\n"
    assert other_statement(after, old, "val") is None
    before = HEAD + "    w = w - 1\n    flor.log('val', round(w, 9))\n    w = w * 1.5 + epoch\n"
    assert "`w = w - 1`" in (other_statement(before, old, "val") or "")
    printed = HEAD + "    show(w)\n    flor.log('val', round(w, 9))\n    w = w * 1.5 + epoch\n"
    assert other_statement(printed, old, "val") is None  # (a new call alone is not carried)


def test_a_rewritten_update_still_tells_a_move() -> None:
    """Sweep Z F1: the update rewritten (``w * 1.5`` as ``1.5 * w``) is no statement both
    versions have by text; what it changes of what the log reads (``w``) is the same."""
    old = OLD.replace("    if do_eval and epoch % 2 == 0:\n        flor.log", "    flor.log")
    today = TODAY.replace("w = w * 1.5 + epoch", "w = 1.5 * w + epoch")
    assert "today's comes after `w = 1.5 * w + epoch`" in (other_statement(today, old, "val") or "")


def test_a_statement_on_both_sides_tells_nothing() -> None:
    """Sweep Z F2: ``net.train()`` before the step loop and again after the evaluation, in
    both versions; the log between them was said "after `net.train()`, where today's is
    before it" of its own version, and a guarded old run's other epochs stayed NULL."""
    body = (
        "    net.train()\n"
        "    for step in flor.loop('step', range(2)):\n"
        "        w = w * 1.5 + step\n"
        "    net.eval()\n"
        "    acc = round(w, 9)\n"
        "{log}"
        "    net.train()\n"
        "    w = w * 1.5\n"
    )
    today = HEAD + body.format(log="    flor.log('val', acc)\n")
    old = HEAD + body.format(log="    if epoch % 2 == 0:\n        flor.log('val', acc)\n")
    assert other_statement(today, today, "val") is None
    assert other_statement(today, old, "val") is None
    # moved past the second update of w: still nothing said of w (it is on both sides), but
    # of acc, which it reads, yes
    moved = HEAD + body.format(log="").replace(
        "    w = w * 1.5\n", "    w = w * 1.5\n    acc = round(w, 9)\n    flor.log('val', acc)\n"
    )
    assert other_statement(moved, today, "val") is not None


def test_a_loop_is_one_unit() -> None:
    """An edit inside the step loop moves nothing of a statement after it; moving the
    statement from after the step loop to before it is a move."""
    body = "    for step in flor.loop('step', range(2)):\n        w = w * 1.5 + step\n{inner}{log}"
    log = "    flor.log('val', round(w, 9))\n"
    today = HEAD + body.format(inner="        tick()\n        tick()\n", log=log)
    old = HEAD + body.format(inner="        tick()\n", log="    if epoch % 2:\n" + "    " + log)
    assert other_statement(today, old, "val") is None
    first = HEAD + log + body.format(inner="        tick()\n", log="")
    assert "placed otherwise: today's comes after `for step in flor.loop('step', range(2)):`" in (
        other_statement(today, first, "val") or ""
    )


def test_a_mode_switch_only_today_has_is_no_move() -> None:
    """Sweep Z2 F4: today's ``net.eval()`` before the evaluation (a method call on a name the
    old version binds: no slice carries it) was taken for a new change of what the log reads,
    and a guarded old run's other epochs stayed NULL. A new assignment still counts."""
    body = (
        "    for step in flor.loop('step', range(2)):\n"
        "        w = w * 1.5 + step\n"
        "{switch}"
        "    val = round(net(w), 9)\n"
        "{log}"
    )
    log = "    flor.log('val', val)\n"
    old = HEAD + body.format(switch="", log="    if epoch % 2 == 0:\n    " + log)
    today = HEAD + body.format(switch="    net.eval()\n", log=log)
    assert other_statement(today, old, "val") is None
    scaled = HEAD + body.format(switch="", log="    val = val * 100\n" + log)
    assert "`val = val * 100`" in (other_statement(scaled, old, "val") or "")
