"""A log statement edited since the runs recorded it (sweep X, session 51).

Old ``flor.log("val", w * 3)``, today's ``w * 4``. A run that logged a name is never replayed
for it (docs/sql.md), so the recorded rows hold ``*3``, and where another run never logged
``val`` its replay holds ``*4``: ``sum(val)`` answered 55.97 for 74.63, and one column mixed
the two, said nowhere. Now each query that names the column says so; an unchanged statement
(reformatted, commented) says nothing.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import florsql
from florsql.errors import FlorWarning
from tests.helpers import git, make_repo, run_script, write

OLD = """import florsql as flor

seed = flor.arg("seed", 1)
do_eval = flor.arg("do_eval", 1)
w = float(seed)
for epoch in flor.loop("epoch", range(3)):
    w = w * 0.5 + epoch + 1
    flor.log("loss", w)
    if do_eval:
        flor.log("val", round(w * 3, 6))
"""


def _said(repo: Path, sql: str) -> tuple[list[tuple[object, ...]], list[str]]:
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = con.cursor().execute(sql).fetchall()
    return rows, [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]


def test_an_edited_statement_is_said_where_its_old_values_are_read(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    run_script(repo, "train.py")
    run_script(repo, "train.py", "--seed", "2", "--do_eval", "0")
    guarded = '    if do_eval:\n        flor.log("val", round(w * 3, 6))\n'
    write(repo / "train.py", OLD.replace(guarded, '    flor.log("val", round(w * 4, 6))\n'))
    git(repo, "commit", "-qam", "today")
    rows, said = _said(repo, "SELECT seed, sum(val) FROM logs GROUP BY seed ORDER BY seed")
    assert rows == [(1, 25.875), (2, 38.0)], rows  # *3 recorded, *4 replayed: as documented
    hits = [m for m in said if "recorded it with another statement than today's" in m]
    assert len(hits) == 1, said
    assert hits[0].startswith("val: 1 run(s) recorded it with another statement than today's")
    assert "flor.log('val', round(w * 3, 6))" in hits[0]
    assert "today: flor.log('val', round(w * 4, 6))" in hits[0]
    # a query not naming it says nothing of it
    _, said = _said(repo, "SELECT seed, loss FROM logs")
    assert not [m for m in said if "another statement" in m], said


def test_a_reformatted_statement_is_the_same(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    run_script(repo, "train.py")
    write(
        repo / "train.py",
        OLD.replace('flor.log("val", round(w * 3, 6))', "flor.log('val', round(w*3, 6))  # val"),
    )
    git(repo, "commit", "-qam", "today")
    _, said = _said(repo, "SELECT seed, val FROM logs")
    assert not [m for m in said if "another statement" in m], said


def test_an_edited_statement_beside_an_unchanged_one_of_the_name_is_said(tmp_path: Path) -> None:
    """Sweep Y: the name logged in the loop and after it; only the one after it edited. The
    calls were compared as one set per name, so the unchanged one hid the edit."""
    old = OLD + 'flor.log("val", round(w, 6))\n'
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", old.replace("round(w, 6))\n", "round(w * 100, 6))\n"))
    git(repo, "commit", "-qam", "today")
    _, said = _said(repo, "SELECT seed, val FROM logs")
    hits = [m for m in said if "recorded it with another statement than today's" in m]
    assert len(hits) == 1 and "flor.log('val', round(w, 6))" in hits[0], said
