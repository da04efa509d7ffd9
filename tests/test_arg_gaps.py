"""An arg that today's code reads and older runs never recorded: the replay computes their
values with its default (as a re-run of the patched version would), but their arg column stays
NULL. Until replayed args are materialised, a query that reads such an arg beside a hindsight
column warns (ArgMissingWarning) with the default to ``coalesce`` with
(florsql/engine/read_warnings.py; the strict xfail in tests/test_stranger_s29.py keeps the gap).

Real recorded runs (two versions, the second adds ``wd``), real replays."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from florsql.engine.session import Engine
from florsql.errors import ArgMissingWarning
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import make_repo, run_script, write

V1 = """
import florsql as flor

seed = flor.arg("seed", 0)
w = float(seed)
with flor.checkpointing(state=None):
    for epoch in flor.loop("epoch", range(3)):
        w = w * 0.5 + 1
        flor.log("w", w)
"""

V2 = V1.replace(
    "w = float(seed)\n", 'w = float(seed)\nwd = flor.arg("wd", 0.0)  # weight decay\n'
).replace("w = w * 0.5 + 1\n", "w = w * 0.5 + 1 - wd\n")

TODAY = V2.replace('flor.log("w", w)\n', 'flor.log("w", w)\n        flor.log("decay", wd * w)\n')


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("arg_gaps") / "r", {"train.py": V1})
    run_script(repo, "train.py", "--seed", "1")
    write(repo / "train.py", V2)
    run_script(repo, "train.py", "--seed", "2", "--wd", "0.25")
    write(repo / "train.py", TODAY)
    return repo


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ArgMissingWarning)]


def test_a_query_reading_the_arg_beside_a_hindsight_column_says_so(repo: Path) -> None:
    with Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(1))) as eng:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = eng.execute("SELECT seed, wd, max(decay) AS d FROM logs GROUP BY seed, wd")
        rows = sorted(result.table.to_pylist(), key=lambda r: r["seed"])
        # the first version's run: decay computed with wd's default, wd itself NULL
        assert rows[0]["seed"] == 1 and rows[0]["wd"] is None and rows[0]["d"] == 0.0
        assert rows[1]["seed"] == 2 and rows[1]["wd"] == 0.25 and rows[1]["d"] > 0
        (text,) = _messages(caught)
        assert "1 run(s) never recorded arg 'wd'" in text
        assert "0.0 in train.py" in text and "coalesce(wd, 0.0)" in text
        assert any(text == t for t in result.warnings)

        # the same warning without a replay (the values are there now), and for a filter
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = eng.execute("SELECT seed, epoch, decay FROM logs WHERE wd = 0.0").table
        assert rows.num_rows == 0 and len(_messages(caught)) == 1
        # the workaround it names counts the run with the default (and says nothing more)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = eng.execute(
                "SELECT seed, epoch, decay FROM logs WHERE coalesce(wd, 0.0) = 0.0"
            ).table.to_pylist()
        assert {r["seed"] for r in rows} == {1} and len(rows) == 3
        assert not _messages(caught)


def test_no_warning_without_a_hindsight_column_or_without_the_arg(repo: Path) -> None:
    with Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(1))) as eng:
        for sql in (
            "SELECT seed, wd, w FROM logs",  # w: every run recorded it
            "SELECT seed, epoch, decay FROM logs",  # no arg named
            "SELECT count(*) FROM logs WHERE seed = 1",
        ):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                eng.execute(sql)
            assert not _messages(caught), sql
