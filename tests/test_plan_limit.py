"""``ORDER BY <run column> LIMIT``: replay is cut only where the limit counts rows.

End to end over real recordings: a ``LIMIT n%`` whose share of the rows reaches past the runs n
rows would cover still gets every hindsight value (no NULL), and so does a numpy ``LIMIT ?``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from florsql.engine.session import Engine
from florsql.errors import ReplayOffWarning
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import make_repo, run_script, write

#: A deterministic training script (replayed values equal recorded ones).
SCRIPT = """
import florsql as flor

lr = flor.arg("lr", 0.1)
epochs = flor.arg("epochs", 3)
w = 1.0
for epoch in flor.loop("epoch", range(epochs)):
    for step in flor.loop("step", range(4)):
        w -= lr * (w - 0.25 * step)
        flor.log("loss", w * w)
    flor.log("w", w)
"""


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs of 13 epochs x 4 steps (52 step rows each); then a new step-level log."""
    repo = make_repo(tmp_path_factory.mktemp("limit") / "repo", {"train.py": SCRIPT})
    for lr in ("0.1", "0.2", "0.3"):
        run_script(repo, "train.py", "--lr", lr, "--epochs", "13")
    patched = SCRIPT.replace(
        '        flor.log("loss", w * w)\n',
        '        flor.log("loss", w * w)\n        flor.log("w_step", w)\n',
    )
    assert patched != SCRIPT
    write(repo / "train.py", patched)
    return repo


def test_limit_percent_is_not_a_row_count(history: Path) -> None:
    """40% of 156 rows is 62: past the first run's 52 rows, all that ``LIMIT 40`` would keep."""
    sql = (
        "SELECT lr, epoch, step, loss, w_step FROM logs WHERE step IS NOT NULL"
        " ORDER BY tstamp LIMIT 40%"
    )
    with Engine(history, replay="auto", executor=PlanExecutor(LocalExecutor(1))) as eng:
        assert eng.plan(sql).replay.limit_runs is None
        rows = eng.execute(sql).table.to_pylist()
        assert len(rows) > 52 and {r["lr"] for r in rows} == {0.1, 0.2}
        assert all(r["w_step"] is not None for r in rows)
        same = sql.replace("40%", "40 PERCENT")
        assert eng.execute(same).table.to_pylist() == rows


def test_numpy_limit_parameter_cuts_like_a_literal(history: Path) -> None:
    sql = (
        "SELECT lr, epoch, step, loss, w_step FROM logs WHERE step IS NOT NULL"
        " ORDER BY tstamp LIMIT ?"
    )
    with Engine(history, replay="off") as eng:
        plan = eng.plan(sql, [np.int64(10)]).replay
        assert plan.limit_runs is not None and len(plan.limit_runs) == 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReplayOffWarning)  # before the other test replays
            assert len(eng.execute(sql, [np.int64(10)]).table) == 10
