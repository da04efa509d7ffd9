"""The pivot of many log names (per-layer metrics) reads a map per context, and answers as
the one ``FILTER`` aggregate per name does.

Found by session 45's sweep: a run logging ``layer{i}.grad_norm`` for 3000 layers made the
first query of a connection take minutes and pass 21 GB of memory (400 names: 4 s, 0.86 GB;
800 names: 17 s, 2.9 GB). DuckDB's hash aggregation costs per aggregate and per row, so one
``FILTER`` aggregate per name grew with the square of the names. From
``pivot.MAP_PIVOT_FROM`` aggregates on, each context's last record per name is taken in one
aggregation and the columns are read from a map. Differential: the same queries, with every
kind of value (ints, floats, strings, bools, None last in a context, JSON, a name logged twice
in a context, two spellings of one name across runs, a name that is another script's arg),
through both forms, cached and not."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from florsql.engine.session import Engine
from florsql.plan import pivot
from tests.helpers import make_repo, run_script

MANY = """import florsql as flor

k = flor.arg("k", 1)
for epoch in flor.loop("epoch", range(3)):
    for i in range(60):
        flor.log(f"layer{i}.norm", i * k + epoch)
    flor.log("f", epoch / 3)
    flor.log("s", f"e{epoch}")
    flor.log("b", epoch % 2 == 0)
    flor.log("j", [epoch, {"a": epoch}])
    flor.log("twice", 1)
    flor.log("twice", epoch * 10)
    flor.log("gone", epoch)
    flor.log("gone", None)
    flor.log("mixed", epoch if epoch else "zero")
    for step in flor.loop("step", range(2)):
        flor.log("LOSS" if k == 2 else "loss", epoch + step / 10)
"""
OTHER = """import florsql as flor

loss_like = flor.arg("layer0.norm", 5)
for epoch in flor.loop("epoch", range(2)):
    flor.log("other", epoch)
"""
QUERIES = (
    "SELECT * FROM logs",
    'SELECT run_id, epoch, step, loss, "layer59.norm", f, s, b, j, twice, gone, mixed FROM logs',
    'SELECT epoch, count(*), max("layer7.norm") FROM logs GROUP BY epoch',
    "SELECT run_id, epoch FROM logs WHERE gone IS NULL AND epoch >= 1",
    'SELECT run_id, epoch, "layer0.norm" FROM logs WHERE "layer0.norm" IS NOT NULL',
    "SELECT count(*) FROM logs WHERE loss IS NOT NULL",
)


def _rows(repo: Path, sql: str, use_cache: bool) -> list[tuple]:
    with Engine(repo, use_cache=use_cache) as eng, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = eng.execute(sql).table
    rows = [tuple(r.values()) for r in table.to_pylist()]
    return sorted(rows, key=repr)


@pytest.mark.parametrize("use_cache", [True, False])
def test_the_map_pivot_answers_as_the_filter_pivot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_cache: bool
) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": MANY, "other.py": OTHER})
    run_script(repo, "train.py")
    run_script(repo, "train.py", "--k", "2")
    run_script(repo, "other.py")
    for sql in QUERIES:
        monkeypatch.setattr(pivot, "MAP_PIVOT_FROM", 10**9)
        want = _rows(repo, sql, use_cache)
        monkeypatch.setattr(pivot, "MAP_PIVOT_FROM", 2)
        assert _rows(repo, sql, use_cache) == want, sql
        assert want


def _sequence(repo: Path) -> list[list[tuple]]:
    out = []
    with Engine(repo, replay="auto") as eng, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sql in ("SELECT * FROM logs", "SELECT run_id, epoch, h FROM logs", *QUERIES):
            rows = [tuple(r.values()) for r in eng.execute(sql).table.to_pylist()]
            out.append(sorted(rows, key=repr))
    return out


def test_a_replay_s_values_join_the_map_pivot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a replay the pivot is updated for the contexts that gained values (the
    ``contexts`` form of ``wide_select``)."""
    from tests.helpers import copy_repo, write

    repo = make_repo(tmp_path / "r", {"train.py": MANY, "other.py": OTHER})
    run_script(repo, "train.py")
    run_script(repo, "train.py", "--k", "2")
    write(
        repo / "train.py",
        MANY.replace('    flor.log("f",', '    flor.log("h", epoch * 2)\n    flor.log("f",'),
    )
    second = copy_repo(repo, tmp_path / "s")
    monkeypatch.setattr(pivot, "MAP_PIVOT_FROM", 10**9)
    want = _sequence(repo)
    monkeypatch.setattr(pivot, "MAP_PIVOT_FROM", 2)
    assert _sequence(second) == want
    assert sorted(r[1:] for r in want[1]) == [(e, e * 2) for e in (0, 0, 1, 1, 2, 2)]
