"""A statement before the outer loop, asked alone (sweep S F3, session 50).

Its replay task ("code before the loops") named no loop, so the replay intercepted none and ran
the whole script: all of a finished run's training for one value, and for a run that failed
(``RuntimeError("boom")`` at epoch 3) into its own error, so the value was NULL under "the
version's own code raised with today's statements in place"; asked beside an epoch-level
statement it was computed. The task now stops where the outer loop begins.

Oracle: today's script run the same way records the value for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import florsql
from tests.helpers import git, make_repo, run_script, write

OLD = """import random
import florsql as flor

random.seed(0)
w = float(flor.arg("w0", 1.0))
flor.log("start", w)
with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(6)):
        for step in flor.loop("step", range(3)):
            w = w * 0.9 + random.random()
        flor.log("w", w)
        if epoch == FAIL_AT:
            raise RuntimeError("boom")
"""
TODAY = OLD.replace('flor.log("start", w)\n', 'flor.log("start", w)\nflor.log("h", w * 3 + 1)\n')


def _in_main(text: str) -> str:
    """The script's code after its imports in ``def main():``, called under the main guard."""
    head, body = text.split("random.seed(0)\n", 1)
    body = "random.seed(0)\n" + body
    inside = "".join(f"    {line}" if line.strip() else line for line in body.splitlines(True))
    return head + "\n\ndef main():\n" + inside + '\n\nif __name__ == "__main__":\n    main()\n'


def _repos(tmp_path: Path, fail_at: int, main: bool = False) -> tuple[Path, Path]:
    old, today = (t.replace("FAIL_AT", str(fail_at)) for t in (OLD, TODAY))
    if main:
        old, today = _in_main(old), _in_main(today)
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": today})
    for where in (repo, oracle):
        for w0 in ("1.0", "2.5"):
            run_script(where, "train.py", "--w0", w0, check=False)
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    return repo, oracle


def _rows(repo: Path, replay: str = "auto") -> list[tuple[object, ...]]:
    with florsql.connect(repo, replay=replay) as con:
        return con.cursor().execute("SELECT w0, h FROM logs ORDER BY w0").fetchall()


@pytest.mark.parametrize("main", [False, True], ids=["module", "main"])
def test_a_head_statement_of_a_run_that_failed_later_is_replayed(
    tmp_path: Path, main: bool
) -> None:
    """``main``: the script's code in ``def main():`` (sweep T: a statement before its loop
    was taken as after it, the loop being no module-level one, and a run that failed in the
    loop got none: "NULL in the iteration the run ended in and after it")."""
    repo, oracle = _repos(tmp_path, fail_at=3, main=main)
    want = _rows(oracle, "off")
    assert want == [(1.0, 4.0), (2.5, 8.5)], want
    assert _rows(repo) == want


def test_a_head_statement_replays_no_epoch(tmp_path: Path) -> None:
    """A finished run: the task stops where the epoch loop begins (it ran every epoch)."""
    repo, oracle = _repos(tmp_path, fail_at=-1)
    assert _rows(repo) == _rows(oracle, "off")
    done = [json.loads(p.read_text()) for p in (repo / ".florsql/replays").glob("*/*/done.json")]
    assert len(done) == 2 and all(d["loop"] == "epoch" for d in done), done
    # the recorded ``w`` of every epoch would be compared had the loop run: only ``start`` was
    assert all(d["checked"] == 1 and d["ran"] == {"full": [], "rest": []} for d in done), done
