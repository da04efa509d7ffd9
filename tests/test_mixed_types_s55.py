"""A log name some runs logged as numbers and others as text is said (session 55, sweep AE).

The column's type is the values' common type (docs/sql.md): numbers mixed with text make it
``VARCHAR``, every run's values then compare, sort and aggregate as text. One
``flor.log("loss", "n/a")`` of another script turned ``max(loss)`` over ``train.py``'s runs
into ``'9.0'`` (not ``10.0``), said nowhere. Now every query reading the column says so, and
names the way to read the numbers.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import florsql
from tests.helpers import make_repo, run_script

TRAIN = """import florsql as flor
for e in flor.loop("epoch", range(3)):
    flor.log("loss", [10.0, 9.0, 2.5][e])
    flor.log("opt", "sgd")
"""


def _ask(repo: Path, sql: str) -> tuple[list[tuple[object, ...]], list[str]]:
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = con.cursor().execute(sql).fetchall()
    return rows, [str(w.message) for w in caught]


def test_numbers_mixed_with_text_are_said_where_read(tmp_path: Path) -> None:
    probe = 'import florsql as flor\nflor.log("loss", "n/a")\n'
    repo = make_repo(tmp_path / "r", {"train.py": TRAIN, "probe.py": probe})
    run_script(repo, "train.py")
    sql = "SELECT max(loss) FROM logs WHERE filename = 'train.py'"
    rows, said = _ask(repo, sql)
    assert rows == [(10.0,)] and not said  # numbers only: no word
    run_script(repo, "probe.py")
    rows, said = _ask(repo, sql)
    assert rows == [("9.0",)]  # the documented type rule: text now
    assert any("loss: VARCHAR" in m and "TRY_CAST(loss AS DOUBLE)" in m for m in said), said
    rows, _ = _ask(repo, sql.replace("max(loss)", "max(TRY_CAST(loss AS DOUBLE))"))
    assert rows == [(10.0,)]
    # a query not reading it, or a text-only name, says nothing of it
    assert not [m for m in _ask(repo, "SELECT max(epoch), max(opt) FROM logs")[1] if "loss" in m]
    assert not [m for m in _ask(repo, "SELECT max(opt) FROM logs")[1] if "VARCHAR" in m]
    # ``count(*)`` reads no column (sweep AF, session 56: it said ``loss``); ``*`` does
    for sql in ("SELECT count(*) FROM logs", "SELECT opt, count(*) FROM logs GROUP BY opt"):
        assert not [m for m in _ask(repo, sql)[1] if "loss" in m], sql
    assert [m for m in _ask(repo, "SELECT * FROM logs")[1] if "loss: VARCHAR" in m]


def test_an_arg_given_as_text_by_another_script_is_said(tmp_path: Path) -> None:
    """``other.py`` takes ``LR`` as text (names ignore case): ``lr`` is VARCHAR for every run,
    ``max(lr)`` over train.py's runs ``'2.0'``, not ``10.0``; said where read."""
    train = 'import florsql as flor\nlr = flor.arg("lr", 0.5)\nflor.log("x", lr)\n'
    other = 'import florsql as flor\nflor.arg("LR", "cosine")\nflor.log("y", 1)\n'
    repo = make_repo(tmp_path / "r", {"train.py": train, "other.py": other})
    for lr in ("0.5", "2", "10"):
        run_script(repo, "train.py", "--lr", lr)
    sql = "SELECT max(lr) FROM logs WHERE filename = 'train.py'"
    assert _ask(repo, sql) == ([(10.0,)], [])
    run_script(repo, "other.py")
    rows, said = _ask(repo, sql)
    assert rows == [("2.0",)]
    assert any("lr: VARCHAR" in m and "took text under it" in m for m in said), said
