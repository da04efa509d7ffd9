"""Where today's statement runs in every iteration and the replay of an old version did not
get to it in some (sweep T, sessions 50-51).

Today's script calls ``evaluate()`` every epoch; the old one called it only in odd epochs. A
replay of the old version runs the old calls: today's statement in ``evaluate`` (placed there,
or the version's own) runs in the odd epochs only, and the even epochs' values are NULL. They
cannot be computed without changing the old code's own calls, but they were NULL said nowhere,
while EXPLAIN planned every epoch. Now the query says which iterations and why.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import florsql
from florsql.errors import FlorWarning
from tests.helpers import git, make_repo, run_script, write

OLD = """import florsql as flor

w = 1.0


def evaluate():
    flor.log("seen", round(w * 2, 6)){own}


with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(5)):
        w = w * 0.5 + epoch
        flor.log("w", w)
        {call}
"""


def _script(call: str, own: str = "") -> str:
    return OLD.replace("{call}", call).replace("{own}", own)


CASES = {
    # today's new statement in the helper, placed into the old helper
    "a new statement": (
        _script("if epoch % 2 == 1:\n            evaluate()"),
        _script("evaluate()", '\n    flor.log("acc", round(w * 3, 6))'),
        "acc",
    ),
    # the version's own statement, which today's code reaches every epoch
    "the version's own statement": (
        _script("if epoch % 2 == 1:\n            evaluate()"),
        _script("evaluate()"),
        "seen",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_iterations_the_old_code_did_not_get_to_are_said(tmp_path: Path, case: str) -> None:
    old, today, name = CASES[case]
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    sql = f"SELECT epoch, {name} FROM logs WHERE epoch IS NOT NULL ORDER BY epoch"
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = con.cursor().execute(sql).fetchall()
    values = dict(rows)
    assert [e for e, v in sorted(values.items()) if v is not None] == [1, 3], rows
    said = [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]
    # (since session 53 the version's own statement that the old code calls under another
    # guard is said where propagation refuses it: "... under other conditions: the old one
    # runs `if epoch % 2 == 1`, where today's does not ...")
    hits = [
        m
        for m in said
        if "runs in every iteration, but the replay" in m or "under other conditions" in m
    ]
    assert len(hits) == 1, said
    assert f"{name} of run " in hits[0] and "NULL at epoch 0, 2, 4" in hits[0], hits
    assert "train.py line" in hits[0]
    # a later query replays nothing and says so too (before: NULL, said nowhere)
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert con.cursor().execute(sql).fetchall() == rows
    said = [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]
    assert said == [
        f"{name}: NULL in 3 outer iteration(s) of 1 run(s) where today's statement runs in "
        "every iteration, but the replay of their old version did not get to it (the query "
        "that replayed them said where and why)"
    ], said


def test_a_statement_today_s_code_guards_itself_is_not_said(tmp_path: Path) -> None:
    """Today's ``if epoch % 2 == 1: evaluate()`` too: the even epochs log nothing in a run of
    today's script either, so nothing is said."""
    call = "if epoch % 2 == 1:\n            evaluate()"
    repo = make_repo(tmp_path / "r", {"train.py": _script(call)})
    run_script(repo, "train.py")
    write(repo / "train.py", _script(call, '\n    flor.log("acc", round(w * 3, 6))'))
    git(repo, "commit", "-qam", "today")
    sql = "SELECT epoch, acc FROM logs WHERE acc IS NOT NULL ORDER BY epoch"
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = con.cursor().execute(sql).fetchall()
    assert [e for e, _ in rows] == [1, 3], rows
    said = [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]
    assert not [m for m in said if "runs in every iteration" in m], said
