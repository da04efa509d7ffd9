"""A loop some runs of a version never enter (``if use_loop:``), read by a query (session 57).

Sweep AJ: every query of a name logged in such a loop warned "version V cannot compute d (no
run of it recorded that loop: ...); NULL", where a run of that very version had recorded it
(and EXPLAIN said it under "cannot place"). A finished run of today's very code that did not
enter the loop logs nothing there in a run of today's script either: it is a note now, as a
guarded statement's runs are. Where today's code differs, the warning says what is true of
the runs that lack the name.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import florsql
from florsql.errors import FlorWarning
from tests.helpers import git, make_repo, run_script, write

SCRIPT = """import florsql as flor
use_loop = flor.arg("use_loop", False)
flor.log("a", 1)
if use_loop:
    for i in flor.loop("i", range(3)):
        flor.log("d", i * 2){new}
"""


def _query(repo: Path, sql: str) -> tuple[list[tuple[object, ...]], list[str]]:
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = list(con.cursor().execute(sql).fetchall())
    return rows, [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]


def _explain(repo: Path, sql: str) -> str:
    with florsql.connect(repo) as con:
        return "\n".join(str(r[0]) for r in con.cursor().execute("EXPLAIN " + sql).fetchall())


def test_a_run_of_today_s_code_that_skipped_the_loop_is_a_note(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT.format(new="")})
    run_script(repo, "train.py", "--use_loop", "true")
    run_script(repo, "train.py")
    sql = "SELECT use_loop, i, d FROM logs WHERE d IS NOT NULL ORDER BY i"
    rows, said = _query(repo, sql)
    assert rows == [(True, 0, 0), (True, 1, 2), (True, 2, 4)]
    assert said == [], said
    plan = _explain(repo, sql)
    assert "cannot place" not in plan, plan
    assert "d: 1 run(s) ran today's statement of it as it is" in plan, plan


def test_where_today_s_code_differs_the_warning_is_true(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT.format(new="")})
    run_script(repo, "train.py", "--use_loop", "true")
    run_script(repo, "train.py")
    write(repo / "train.py", SCRIPT.format(new='\n        flor.log("e", i + 10)'))
    git(repo, "commit", "-qam", "today")
    rows, said = _query(repo, "SELECT use_loop, i, d, e FROM logs WHERE i IS NOT NULL ORDER BY i")
    assert rows == [(True, 0, 0, 10), (True, 1, 2, 11), (True, 2, 4, 12)]
    assert not [m for m in said if "no run of it recorded" in m], said
    hits = [m for m in said if "never entered its loop" in m]
    assert len(hits) == 1 and "cannot compute d, e" in hits[0], said
