"""Names ignore case, as DuckDB identifiers do; each is shown as the earliest run spelled it.

Real recordings of two scripts: ``a.py`` spells its arg ``LR``, its loop ``Epoch`` and logs
``valAcc`` and ``Loss``; ``b.py`` spells them ``lr``, ``epoch`` and ``loss``. Names that differ
only in case are one column holding every value of every spelling; any spelling finds it;
hindsight queries work across both spellings of the loop.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from florsql.engine.session import Engine
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import make_repo, run_script, write

A = """
import florsql as flor

LR = flor.arg("LR", 0.1)
for e in flor.loop("Epoch", range(3)):
    flor.log("valAcc", e * LR)
    flor.log("Loss", 1.0 - e * LR)
"""

B = """
import florsql as flor

lr = flor.arg("lr", 0.2)
for epoch in flor.loop("epoch", range(2)):
    flor.log("loss", 2.0 - epoch * lr)
"""


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("case") / "repo", {"a.py": A, "b.py": B})
    run_script(repo, "a.py")  # the earliest run: its spellings name the columns
    run_script(repo, "b.py")
    return repo


def rows(eng: Engine, sql: str) -> list[dict[str, object]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return eng.execute(sql).table.to_pylist()


def test_any_spelling_finds_a_name_shown_as_first_recorded(history: Path) -> None:
    with Engine(history) as eng:
        for sql in (
            "SELECT valacc FROM logs WHERE valacc IS NOT NULL ORDER BY 1",
            "SELECT VALACC FROM logs WHERE VaLaCc IS NOT NULL ORDER BY 1",
            'SELECT "valAcc" FROM logs WHERE "valAcc" IS NOT NULL ORDER BY 1',
        ):
            assert [next(iter(r.values())) for r in rows(eng, sql)] == pytest.approx([0, 0.1, 0.2])
        star = eng.execute("SELECT * FROM logs").table
        assert {"LR", "Epoch", "valAcc", "Loss"} <= set(star.column_names)
        assert not {"lr", "epoch", "loss"} & set(star.column_names)
        logs = [c.name for c in eng.catalog().columns]
        assert len(logs) == len({n.lower() for n in logs})


def test_names_differing_in_case_are_one_column_losing_nothing(history: Path) -> None:
    with Engine(history) as eng:
        got = rows(eng, "SELECT filename, epoch, loss, lr FROM logs ORDER BY ALL")
        assert [(r["filename"], r["Epoch"], r["Loss"], r["LR"]) for r in got] == [
            ("a.py", 0, 1.0, 0.1),
            ("a.py", 1, pytest.approx(0.9), 0.1),
            ("a.py", 2, pytest.approx(0.8), 0.1),
            ("b.py", 0, 2.0, 0.2),
            ("b.py", 1, pytest.approx(1.8), 0.2),
        ]
        assert rows(eng, "SELECT filename, Lr FROM runs ORDER BY 1") == [
            {"filename": "a.py", "LR": 0.1},
            {"filename": "b.py", "LR": 0.2},
        ]
        assert eng.execute("SHOW COLUMNS FROM logs").table.num_rows == len(eng.catalog().columns)


def test_hindsight_across_loops_spelled_differently(history: Path) -> None:
    """A new log in each script; a WHERE on the loop restricts both scripts' replays."""
    write(history / "a.py", A + '    flor.log("half", e * LR / 2)\n')
    write(history / "b.py", B + '    flor.log("Half", epoch * lr / 2)\n')
    try:
        with Engine(history, replay="auto", executor=PlanExecutor(LocalExecutor(1))) as eng:
            sql = "SELECT filename, EPOCH, half FROM logs WHERE epoch >= 1 ORDER BY ALL"
            assert eng.plan(sql).replay.cost.iterations == 3  # a.py 1-2, b.py 1
            got = rows(eng, sql)
    finally:
        write(history / "a.py", A)
        write(history / "b.py", B)
    assert [(r["filename"], r["Epoch"], r["half"]) for r in got] == [
        ("a.py", 1, pytest.approx(0.05)),
        ("a.py", 2, pytest.approx(0.1)),
        ("b.py", 1, pytest.approx(0.1)),
    ]
