"""A failed replay task's warning says where it raised: today's statement (fix it), putting the
run's checkpoint back (the statement is not at fault), or the version's own code.

Before, every remembered failure ended "(fix the statement)", also when the replay failed in
a registered object's ``load_state_dict``, which the recording never called.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from florsql.engine.session import Engine
from florsql.errors import ReplayFailedWarning
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import make_repo, run_script, write

SCRIPT = """
import florsql as flor
class Meter:
    def __init__(self):
        self.total = 0.0
    def state_dict(self):
        return {"total": self.total}
    def load_state_dict(self, state):
        self.total = state[KEY]  # the recording never calls it
KEY = "total"
meter = Meter()
with flor.checkpointing(meter=meter):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(2)):
            meter.total += 0.5
        flor.log("total", meter.total)
"""


def _history(tmp_path: Path, key: str) -> Path:
    repo = make_repo(
        tmp_path / "r", {"train.py": SCRIPT.replace('KEY = "total"', f"KEY = {key!r}")}
    )
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    return repo


def _failures(repo: Path, sql: str) -> tuple[list[str], list[tuple[object, ...]]]:
    """The ReplayFailedWarning texts of a query, and its rows."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(1))) as eng:
            rows = eng.execute(sql).table.to_pylist()
    texts = [str(w.message) for w in caught if issubclass(w.category, ReplayFailedWarning)]
    return texts, [tuple(r.values()) for r in rows]


def test_a_restore_that_raises_is_replayed_from_the_start(tmp_path: Path) -> None:
    """A checkpoint that cannot be put back (``load_state_dict`` reads a key ``state_dict``
    never wrote) fails its task while restoring; the task runs again from the run's start,
    where no checkpoint is restored, and its values are a full run's (session 42: before,
    they stayed NULL, the failure blamed on the restore, not the statement). The second query
    finds them stored."""
    repo = _history(tmp_path, "sum")  # load_state_dict reads a key state_dict never wrote
    write(
        repo / "train.py",
        SCRIPT.replace(
            'flor.log("total", meter.total)',
            'flor.log("total", meter.total)\n        flor.log("twice", meter.total * 2)',
        ),
    )
    for _ in range(2):  # the replaying query, then the next one (the values stored)
        texts, rows = _failures(repo, "SELECT epoch, total, twice FROM logs ORDER BY epoch")
        assert rows == [(0, 1.0, 2.0), (1, 2.0, 4.0), (2, 3.0, 6.0)], rows
        assert not [t for t in texts if "failed with this code" in t], texts


def test_a_statement_that_raises_is_blamed(tmp_path: Path) -> None:
    repo = _history(tmp_path, "total")
    write(
        repo / "train.py",
        SCRIPT.replace(
            'flor.log("total", meter.total)',
            'flor.log("total", meter.total)\n        flor.log("bad", meter.total / 0)',
        ),
    )
    for _ in range(2):
        texts, rows = _failures(repo, "SELECT epoch, total, bad FROM logs ORDER BY epoch")
        assert [r[2] for r in rows] == [None, None, None]
        said = [t for t in texts if "failed with this code" in t]
        assert said, texts
        for text in said:
            assert "today's statement raised" in text, text
            assert "(fix the statement)" in text, text
            assert "ZeroDivisionError" in text, text


def test_the_cause_is_read_from_the_frames() -> None:
    from florsql.plan.replay_set import _cause

    site = ["lib", "site-packages", "florsql", "record"]
    user = ["repo", ".florsql", "worktrees", "v-p", "train.py"]
    torch = ["lib", "site-packages", "torch", "nn", "modules", "module.py"]
    frames = {
        "restore": [[f"/{'/'.join(site)}/replay_mode.py", 1, ""],
                    [f"/{'/'.join(site)}/checkpoint.py", 2, ""],
                    [f"/{'/'.join(user)}", 8, "self.total = state[KEY]"]],
        "old code": [[f"/{'/'.join(user)}", 3, "train()"], [f"/{'/'.join(torch)}", 9, "x"]],
        "": [[f"/{'/'.join(site)}/replay_mode.py", 1, ""]],
    }  # fmt: skip
    for cause, listed in frames.items():
        assert _cause(listed, None) == cause
    assert _cause(frames["old code"], ("x",)) == "statement"
