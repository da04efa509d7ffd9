"""A run that stopped an inner loop early for a reason its replay does not see (sweep S, s49).

A preemption handler sets a flag, the step loop ``break``s on it, then the epoch loop: the
run ended ``finished`` with its last epoch one step long. A hindsight query planned that
epoch in full (its step loop was left early), the replay saw no flag and ran every step, and
today's statements at that epoch and after the loop were the full epoch's: -0.5048 for the
patched script's -0.9891, under a generic NondeterminismWarning only, and stored. Now a task
that runs an inner iteration its run never reached (in an outer iteration the run did run
that loop) fails at that outer iteration, saying so: the values there and after the loop are
NULL with that reason, the earlier ones are replayed as before. Here the flag comes from a
file that is there while the run runs and gone after (what a signal is to a replay).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import florsql
from tests.helpers import make_repo, run_script, write

OLD = """import os
import random
import florsql as flor

random.seed(0)
w, stop = 1.0, {"flag": False}
for epoch in flor.loop("epoch", range(5)):
    for step in flor.loop("step", range(3)):
        w = w * 0.9 + random.random()
        flor.log("loss", round(w, 9))
        if epoch == 3 and STOPPED:
            stop["flag"] = True
        if stop["flag"]:
            break
    flor.log("val", round(w * 2, 9))
    if stop["flag"]:
        break
flor.log("final", round(w, 9))
"""
TODAY = (
    OLD.replace(
        '    flor.log("val", round(w * 2, 9))\n',
        '    flor.log("val", round(w * 2, 9))\n    flor.log("ws", round(w * 3, 9))\n',
    )
    + 'flor.log("final2", round(w * 5, 9))\n'
)


def _record(repo: Path) -> None:
    """One run; ``STOPPED`` is true while ``stop.flag`` is there (made before, gone after)."""
    flag = repo / "stop.flag"
    write(flag, "1")
    try:
        run_script(repo, "train.py")
    finally:
        flag.unlink()


@pytest.mark.parametrize(
    ("stopped", "exact"),
    [
        ('os.path.exists("stop.flag") and step == 0', False),  # what the replay cannot see
        ("step == 0", True),  # a deterministic break: the replay breaks there too
    ],
)
def test_an_inner_loop_stopped_for_an_unseen_reason_is_not_replayed_past(
    tmp_path: Path, stopped: str, exact: bool
) -> None:
    old, today = (t.replace("STOPPED", stopped) for t in (OLD, TODAY))
    repo = make_repo(tmp_path / "r", {"train.py": old, ".gitignore": "stop.flag\n"})
    oracle = make_repo(tmp_path / "o", {"train.py": today, ".gitignore": "stop.flag\n"})
    _record(repo)
    _record(oracle)
    sql = "SELECT epoch, val, ws FROM logs WHERE val IS NOT NULL ORDER BY epoch"
    tail = "SELECT final, final2 FROM logs WHERE final IS NOT NULL"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
        want_tail = con.cursor().execute(tail).fetchall()
    assert len(want) == 4 and want[3][2] is not None  # the run logged epoch 3's val, then stopped
    write(repo / "train.py", today)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with florsql.connect(repo, replay="auto") as con:
            got = con.cursor().execute(sql).fetchall()
            got_tail = con.cursor().execute(tail).fetchall()
    said = " ".join(str(w.message) for w in caught)
    if exact:
        assert got == want and got_tail == want_tail, said
        assert "never reached" not in said, said
        return
    assert got[:3] == want[:3], said  # the epochs the run ran in full: exact
    assert got[3] == (3, want[3][1], None), said  # the recorded val kept; ws unknown, not wrong
    assert got_tail == [(want_tail[0][0], None)], said
    assert "the replay ran epoch=3/step=1, which the run never reached" in said, said
    assert "its step loop stopped after step=0 at epoch=3" in said, said
