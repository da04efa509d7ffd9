"""Differential: query shapes the single-reference property test does not draw (joins of two
``logs`` references with different filters, OR across references, subqueries, windows over
epochs, QUALIFY, set operations, DISTINCT ON, LIMIT without ORDER BY) answer, from a history
nothing was replayed in, exactly what the same query answers over runs that recorded every value.

The replay each query starts must cover every row it can return: a hindsight value left out by a
predicate pushed too far would be NULL in the answer (or drop a row a filter on it keeps). Pure
Python script, three runs; each query gets a fresh copy of the history.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import florsql
from tests.helpers import copy_repo, make_repo, run_script, write
from tests.helpers_replay import normalize, old_source, patched_source

TEXT = """
import florsql as flor
lr = flor.arg("lr", 0.1)
Seed = flor.arg("Seed", 0)
w = 1.0 + Seed
for epoch in flor.loop("epoch", range(5)):
    for step in flor.loop("step", range(3)):
        w = w * (1 - lr) + 0.01 * step
        flor.log("loss", round(w, 6))
        flor.log("gstep", round(w * 2, 6))  # hindsight
    flor.log("acc", round(1 - w / 3, 6))
    flor.log("hs", round(w + epoch / 10, 6))  # hindsight
flor.log("hfinal", round(w * 10, 6))  # hindsight
"""

QUERIES = [
    # two references, each with its own filter, and OR across them
    "SELECT a.Seed, a.epoch, a.hs, b.hs FROM logs a JOIN logs b ON a.run_id = b.run_id "
    "AND a.epoch = b.epoch + 1 WHERE a.epoch = 3",
    "SELECT a.Seed, a.epoch, b.epoch, a.hs, b.hs FROM logs a JOIN logs b ON a.run_id = b.run_id "
    "WHERE (a.epoch = 1 AND b.epoch = 2) OR (a.epoch = 3 AND b.epoch = 4)",
    # predicates mixing loops, args and the hindsight column itself
    "SELECT Seed, epoch, hs FROM logs WHERE epoch > 3 OR hs > 1.2 OR NOT (Seed <> 1)",
    "SELECT Seed, epoch, step, gstep FROM logs WHERE (epoch, step) = (1, 2) OR gstep > 4.5",
    # subqueries deciding which rows come back
    "SELECT Seed, epoch, hs FROM logs WHERE epoch IN (SELECT epoch FROM logs WHERE acc > 0.7)",
    "SELECT b.Seed, b.epoch FROM logs b WHERE b.acc IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
    "logs a WHERE a.run_id = b.run_id AND a.epoch = b.epoch AND a.hs > 1)",
    "SELECT b.Seed, b.epoch, a.hs FROM logs a RIGHT JOIN logs b ON a.run_id = b.run_id AND "
    "a.epoch = b.epoch AND a.hs > 1 WHERE a.epoch IS NULL AND b.acc IS NOT NULL",
    # windows, QUALIFY, set operations, DISTINCT ON, LIMIT without ORDER BY
    "SELECT Seed, epoch, hs, lag(hs) OVER (PARTITION BY run_id ORDER BY epoch) AS p FROM logs "
    "QUALIFY epoch = 3",
    "SELECT Seed, epoch, hs FROM logs WHERE epoch = 1 UNION SELECT Seed, epoch, hfinal FROM logs "
    "WHERE epoch IS NULL",
    "SELECT DISTINCT ON (Seed) Seed, epoch, hs FROM logs ORDER BY Seed, hs DESC",
    "SELECT count(*), count(hs) FROM (SELECT hs FROM logs LIMIT 4)",
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(history: the old script recorded, today's in the working tree; oracle: today's script
    recorded with the same args)."""
    root = tmp_path_factory.mktemp("shapes")
    history = make_repo(root / "history", {"train.py": old_source(TEXT)})
    oracle = make_repo(root / "oracle", {"train.py": patched_source(TEXT)})
    for lr, seed in (("0.1", "0"), ("0.2", "1"), ("0.3", "2")):
        run_script(history, "train.py", "--lr", lr, "--Seed", seed)
        run_script(oracle, "train.py", "--lr", lr, "--Seed", seed)
    write(history / "train.py", patched_source(TEXT))
    return history, oracle


def _rows(repo: Path, sql: str, replay: str) -> list[tuple[Any, ...]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with florsql.connect(repo, replay=replay) as con:
            return normalize(con.execute(sql).fetchall())


@pytest.mark.parametrize("sql", QUERIES)
def test_a_fresh_history_answers_as_runs_that_recorded_everything(
    recorded: tuple[Path, Path], tmp_path: Path, sql: str
) -> None:
    history, oracle = recorded
    repo = copy_repo(history, tmp_path / "history")
    want = _rows(oracle, sql, "off")
    assert want and _rows(repo, sql, "auto") == want
