"""A log added to a helper whose tail another helper shares (sweep Z F3, session 52).

``report(acc)`` and ``score(v)`` both end in ``return acc`` and are both called in the epoch
loop: the helper's body matched the old ``report`` by its name and the old ``score`` through its
call site, equally well, and propagation refused ("ambiguous: 2 equally good places"), so the
query could not be answered at all. A tie is now broken for the block of the statement's own
function. Oracle: today's script recorded.
"""

from __future__ import annotations

from pathlib import Path

import florsql
from florsql.propagate import propagate
from tests.helpers import git, make_repo, run_script, write

OLD = """import florsql as flor

seed = flor.arg("seed", 1)
w = float(seed)


def score(v):
    acc = v * 2
    return acc


def report(acc):
    return acc


for epoch in flor.loop("epoch", range(3)):
    w = w * 0.5 + epoch
    acc = score(w)
    report(acc)
    flor.log("w", w)
"""
TODAY = OLD.replace("def report(acc):\n", 'def report(acc):\n    flor.log("gap", acc + 1)\n')


def test_the_statement_goes_into_its_own_function() -> None:
    result = propagate(TODAY, OLD)
    assert not result.failed, result.failed
    assert result.source == TODAY


def _replayed_and_today(
    tmp_path: Path, old: str, today: str, sql: str
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """``sql`` over runs of ``old`` (seeds 1 and 2) replayed with ``today``'s statements, and
    over runs of ``today``'s script itself (the oracle, replay off)."""
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": today})
    for seed in ("1", "2"):
        run_script(repo, "train.py", "--seed", seed)
        run_script(oracle, "train.py", "--seed", seed)
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    with florsql.connect(repo) as con:
        got = con.cursor().execute(sql).fetchall()
    return got, want


def test_its_values_equal_a_run_of_today_s_script(tmp_path: Path) -> None:
    sql = "SELECT seed, epoch, gap FROM logs WHERE gap IS NOT NULL ORDER BY 1, 2"
    got, want = _replayed_and_today(tmp_path, OLD, TODAY, sql)
    assert len(want) == 6 and got == want, (got, want)


NEW_HELPER_OLD = """import florsql as flor

seed = flor.arg("seed", 1)
w = float(seed)


def score(v):
    acc = v * 2
    return acc


for epoch in flor.loop("epoch", range(3)):
    w = w * 0.5 + epoch
    a = score(w)
    acc = w + 100
"""
NEW_HELPER_TODAY = NEW_HELPER_OLD.replace(
    "for epoch",
    'def probe(v):\n    acc = v + 100\n    flor.log("x", acc)\n    return acc\n\n\nfor epoch',
).replace("    acc = w + 100\n", "    acc = probe(w)\n")


def test_a_new_helper_s_statement_never_goes_into_another_function(tmp_path: Path) -> None:
    """Sweep Z2 F1 (older than session 52): today's new ``probe()`` (the inline ``acc = w +
    100`` moved into it, with a log) matched the old ``score()`` through its call site, by the
    look of ``acc = ...; return acc``, and the query answered score's ``w * 2``, silently. A
    function today's file still defines is not another one's old place."""
    result = propagate(NEW_HELPER_TODAY, NEW_HELPER_OLD)
    assert not result.failed, result.failed
    assert "    acc = v * 2\n    return acc\n" in result.source  # score() as it was
    sql = "SELECT seed, epoch, x FROM logs WHERE x IS NOT NULL AND seed = 1 ORDER BY 1, 2"
    got, want = _replayed_and_today(tmp_path, NEW_HELPER_OLD, NEW_HELPER_TODAY, sql)
    assert want == [(1, 0, 100.5), (1, 1, 101.25), (1, 2, 102.625)] and got == want, (got, want)
