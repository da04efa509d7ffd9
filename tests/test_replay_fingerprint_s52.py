"""Editing today's script beside a statement every run recorded keeps replayed values (sweep Y
N1, session 52).

A replayed value counts while its name's fingerprint is today's. The fingerprint folded in the
keys of every other statement that may draw from an RNG (a replay runs today's such statements
its version lacks beside the asked one: companions), and in a torch script ``loss.item()`` and
``evaluate(net)`` may draw: an unrelated ``print`` beside ``flor.log("loss", ...)`` made every
replayed column replay again. A name every run recorded is in every version, so never a
companion: its statements no longer count. A hindsight one still does.
"""

from __future__ import annotations

from pathlib import Path

from florsql.engine.session import Engine
from florsql.plan.hindsight import scan_source, statement_fingerprints
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import git, make_repo, run_script, write

SCRIPT = """import random
import florsql as flor


def noisy(v):
    return v * (1 + random.random() * 0.01)


random.seed(flor.arg("seed", 0))
w = 1.0
with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(4)):
        for step in flor.loop("step", range(3)):
            w = w * 0.9 + random.random()
            flor.log("loss", noisy(w))
        flor.log("w", noisy(w))
"""
#: today's hindsight statement, in the step loop: its key reads that loop's body
TODAY = SCRIPT.replace(
    '            flor.log("loss", noisy(w))\n',
    '            flor.log("loss", noisy(w))\n            flor.log("h", round(w * 3, 9))\n',
)
NOTHING = "Replay plan: nothing to replay"


def _explain(eng: Engine, sql: str) -> str:
    return "\n".join(eng.execute(f"EXPLAIN {sql}").table.column("plan").to_pylist())


def test_an_edit_beside_a_recorded_statement_keeps_replayed_values(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT})
    for seed in ("0", "1"):
        run_script(repo, "train.py", "--seed", seed)
    write(repo / "train.py", TODAY)
    git(repo, "commit", "-qam", "today")
    sql = "SELECT seed, epoch, step, h FROM logs WHERE h IS NOT NULL ORDER BY 1, 2, 3"
    with Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(2))) as eng:
        first = eng.execute(sql).table.to_pylist()
        assert len(first) == 24
        assert NOTHING in _explain(eng, sql)
        # an unrelated print beside the recorded (may-draw) w statement, after the step loop
        printed = '        flor.log("w", noisy(w))\n        print(epoch)\n'
        write(repo / "train.py", TODAY.replace('        flor.log("w", noisy(w))\n', printed))
        assert NOTHING in _explain(eng, sql)
        assert eng.execute(sql).table.to_pylist() == first
        # today's w statement edited: still nothing (no version lacks w)
        write(repo / "train.py", TODAY.replace('"w", noisy(w))', '"w", noisy(w) * 1)'))
        assert NOTHING in _explain(eng, sql)
        # a hindsight statement that may draw, added after the step loop: a replay of h runs
        # it too (a companion), so h is computed again
        write(repo / "train.py", TODAY + "        flor.log('z', noisy(w))\n")
        assert NOTHING not in _explain(eng, sql)


def test_a_hindsight_statement_that_may_draw_still_counts() -> None:
    edit_w = TODAY.replace('"w", noisy(w))', '"w", noisy(w) * 1)')
    z = "        flor.log('z', noisy(w))\n"
    codes = [scan_source(t, "t.py") for t in (TODAY, edit_w, TODAY + z, edit_w + z)]
    assert all(c is not None for c in codes)
    h = [statement_fingerprints([c], complete={"loss", "w"})["h"] for c in codes if c]
    assert h[0] == h[1]  # w every run recorded: no version lacks it
    assert h[0] != h[2]  # z may draw and some run lacks it: a companion of h
    # without the recorded names known (before session 52), w counted too
    plain = [statement_fingerprints([c])["h"] for c in codes[:2] if c]
    assert plain[0] != plain[1]
