"""A placed statement reading an attribute another module of the version changes today (session
61).

``slice._attributes_changed_elsewhere`` (session 60) refuses a statement that reads an
attribute today's code changes inside another function of the statement's own file. A class
in ``model.py`` was not looked at: ``flor.log("steps", net.steps)`` new in ``train.py`` with
``self.steps += 1`` new in ``Net.forward`` of ``model.py`` was placed, the replay ran the
version's ``model.py``, and the old runs logged 0 in every epoch, silently, where a re-run of
today's code logs 3, 6, 9. ``version._other_modules_change`` refuses it now, with the module,
the method and the line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import florsql
from florsql.propagate import for_version
from florsql.versions import snapshot
from tests.helpers import git, make_repo, run_script, write
from tests.helpers_replay import fetch

MODEL_OLD = """\
class Net:
    def __init__(self):
        self.steps = 0
        self.w = 1.0

    def forward(self, x):
        return self.w * x
"""

MODEL_NEW = MODEL_OLD.replace(
    "        return self.w * x\n", "        self.steps += 1\n        return self.w * x\n"
)

TRAIN_OLD = """\
import florsql as flor
from model import Net

net = Net()
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(3)):
        y = net.forward(step)
    flor.log("y", y)
"""

TRAIN_NEW = TRAIN_OLD + '    flor.log("steps", net.steps)\n    flor.log("w", net.w)\n'


def _repo(tmp_path: Path, model: str) -> tuple[Path, str]:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "model.py").write_text(model)
    (tmp_path / "train.py").write_text(TRAIN_OLD)
    return tmp_path, snapshot(tmp_path).vid


def test_an_attribute_another_module_changes_today_refuses_the_statement(tmp_path: Path) -> None:
    repo, vid = _repo(tmp_path, MODEL_OLD)
    (repo / "model.py").write_text(MODEL_NEW)
    (repo / "train.py").write_text(TRAIN_NEW)
    result = for_version(repo, vid).files["train.py"]
    assert [p.name for p in result.placed] == ["w"]  # net.w: nothing changes it
    (failure,) = result.failed
    assert failure.name == "steps"
    assert "model.py changes inside Net.forward()" in failure.reason
    assert "self.steps += 1" in failure.reason
    assert 'flor.log("steps"' not in result.source


def test_the_same_change_in_the_version_places_the_statement(tmp_path: Path) -> None:
    repo, vid = _repo(tmp_path, MODEL_NEW)  # the version counts its steps already
    (repo / "model.py").write_text(MODEL_NEW + "\n# a comment today\n")
    (repo / "train.py").write_text(TRAIN_NEW)
    result = for_version(repo, vid).files["train.py"]
    assert sorted(p.name for p in result.placed) == ["steps", "w"]
    assert result.failed == ()


def test_end_to_end_the_old_runs_answer_null_with_the_reason_not_zero(tmp_path: Path) -> None:
    """A real recorded run of the old code, today's edits committed, a real query: ``steps``
    is NULL for the old run with a warning naming ``model.py``, where before it was 0 in every
    epoch; ``w`` is replayed. The oracle (a run of today's code) logs 3, 6, 9."""
    root = make_repo(tmp_path / "history", {"model.py": MODEL_OLD, "train.py": TRAIN_OLD})
    run_script(root, "train.py")
    write(root / "model.py", MODEL_NEW)
    write(root / "train.py", TRAIN_NEW)
    git(root, "commit", "-qam", "count steps")
    oracle = make_repo(tmp_path / "oracle", {"model.py": MODEL_NEW, "train.py": TRAIN_NEW})
    run_script(oracle, "train.py")
    sql = "SELECT epoch, steps, w FROM logs WHERE epoch IS NOT NULL AND y IS NOT NULL"
    with florsql.connect(oracle, replay="off") as con:
        want, _ = fetch(con, sql + " ORDER BY epoch", ordered=True)
    assert want == [(0, 3, 1.0), (1, 6, 1.0), (2, 9, 1.0)]
    with florsql.connect(root) as con:
        got, said = fetch(con, sql + " ORDER BY epoch", ordered=True)
    assert got == [(0, None, 1.0), (1, None, 1.0), (2, None, 1.0)], said
    assert any("model.py changes inside Net.forward()" in w for w in said), said


def test_an_edited_set_up_is_the_versions_own(tmp_path: Path) -> None:
    """``self.w = 2.0`` today for the version's ``self.w = 1.0`` in ``Net.__init__``: the
    version's own way of setting ``w`` up, which its replay runs as a full re-run of the
    patched version would; ``net.w`` is placed (the slow corpus test
    tests/test_stranger_s29.py `a_committed_data_file_and_a_model_module_changed...` caught
    this over-refusal: a layer's width edited in ``__init__``)."""
    repo, vid = _repo(tmp_path, MODEL_OLD)
    (repo / "model.py").write_text(MODEL_OLD.replace("self.w = 1.0", "self.w = 2.0"))
    (repo / "train.py").write_text(TRAIN_OLD + '    flor.log("w", net.w)\n')
    result = for_version(repo, vid).files["train.py"]
    assert [p.name for p in result.placed] == ["w"]
    assert result.failed == ()


def test_an_edited_set_up_in_the_same_file_is_the_old_versions_own() -> None:
    """The same in one file (``slice._attributes_changed_elsewhere``): today's ``Net.__init__``
    sets ``self.w = [1.0] * 12`` where the old one set ``[1.0] * 8`` (a layer's width
    edited), and today's new ``flor.log("w", sum(net.w))`` was refused, "it reads net.w,
    which today's code changes inside Net.__init__()". The old version patched by hand logs
    8.0: its own set-up."""
    from florsql.propagate import propagate
    from tests.test_propagate_differential_edits_s60 import run, values

    old = (
        "import florsql as flor\n\n\nclass Net:\n    def __init__(self):\n"
        "        self.w = [1.0] * 8\n\n\nnet = Net()\n"
        'for epoch in flor.loop("epoch", range(2)):\n    net.w[0] += 1\n'
    )
    new = old.replace("[1.0] * 8", "[1.0] * 12") + '    flor.log("w", sum(net.w))\n'
    result = propagate(new, old)
    assert [p.name for p in result.placed] == ["w"], result.failed
    assert values(run(result.source), "w") == [9.0, 10.0]
