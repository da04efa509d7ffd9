"""Today's statement in a helper, of a run that failed in its loop (sweep X, session 51).

- The helper called in the loop only: the whole-run task stops after the last epoch the run
  ended, but it counted as covering the epoch the run failed in, so after the replay that
  epoch's NULL went unsaid (EXPLAIN had listed it before).
- The helper also called after the loop (``evaluate()`` once more at the end), defined above
  ``fit()``: the statement's line came before ``fit``'s loop, so a run that failed in that loop
  was taken to have reached it; every query replayed the run again for a value it never
  reached, warning "still missing after replay ... the next query replays them".
"""

from __future__ import annotations

import warnings
from pathlib import Path

import florsql
from florsql.errors import FlorWarning
from tests.helpers import git, make_repo, run_script, write

OLD = """import florsql as flor

seed = flor.arg("seed", 1)
fail = flor.arg("fail", -1)
state = {"w": float(seed)}


class Trainer:
    def evaluate(self):
        v = state["w"] * 2
        return v

    def fit(self):
        with flor.checkpointing(state=state):
            for epoch in flor.loop("epoch", range(4)):
                state["w"] = state["w"] * 0.5 + epoch
                flor.log("v", self.evaluate())
                if epoch == fail:
                    raise RuntimeError("boom")


def main():
    t = Trainer()
    t.fit(){after}


if __name__ == "__main__":
    main()
"""


def _scripts(after: str) -> tuple[str, str]:
    old = OLD.replace("{after}", after)
    line = '        v = state["w"] * 2\n'
    today = old.replace(line, line + '        flor.log("v10", v * 10)\n')
    assert today != old
    return old, today


def _query(repo: Path, sql: str) -> tuple[list[tuple[object, ...]], list[str]]:
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = con.cursor().execute(sql).fetchall()
    return rows, [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]


def _repo(tmp_path: Path, after: str) -> Path:
    old, today = _scripts(after)
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    assert run_script(repo, "train.py", "--seed", "3", "--fail", "1", check=False).returncode
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    return repo


def test_the_epoch_a_failed_run_ended_in_is_said_after_the_replay(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "")
    sql = "SELECT seed, epoch, v10 FROM logs WHERE v10 IS NOT NULL ORDER BY seed, epoch"
    for _ in range(2):
        rows, said = _query(repo, sql)
        assert [(s, e) for s, e, _ in rows] == [(1, 0), (1, 1), (1, 2), (1, 3), (3, 0)], rows
        assert [m for m in said if "v10 of run" in m and "failed during epoch 1" in m], said
        assert not [m for m in said if "still missing" in m], said


def test_a_helper_also_called_after_the_loop_is_not_replayed_at_every_query(
    tmp_path: Path,
) -> None:
    repo = _repo(tmp_path, "\n    t.evaluate()")
    sql = "SELECT seed, epoch, v10 FROM logs WHERE v10 IS NOT NULL ORDER BY seed, epoch"
    first, said = _query(repo, sql)
    assert not [m for m in said if "still missing" in m], said
    replays = repo / ".florsql" / "replays"
    made = sorted(p.name for p in replays.iterdir()) if replays.is_dir() else []
    again, said = _query(repo, sql)
    assert again == first
    assert not [m for m in said if "still missing" in m], said
    assert (sorted(p.name for p in replays.iterdir()) if replays.is_dir() else []) == made
    # the run that finished has its value after the loop too (epoch NULL)
    assert (1, None) in [(s, e) for s, e, _ in first], first
