"""Two ``flor.loop`` loops of one name, and the warning "the replay did not get to it" (session 57).

A script trains in two phases, each ``for epoch in flor.loop("epoch", ...)`` (4 epochs, then
3). Today's version logs ``last2`` in every epoch of the second phase only. Iterations are
known by their loop's name and index, so the first phase's epoch 3, where today's script logs
no ``last2`` either, read as one the replay "did not get to": the query warned "last2 of run
...: NULL at epoch 3: today's statement ... runs in every iteration, but the replay ... did
not run it there". The values were right; the warning was not. A statement now runs "in every
iteration" of a loop name only where each loop of that name in the file runs one of the name.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import florsql
from florsql.errors import FlorWarning
from florsql.plan.guards import every_iteration
from tests.helpers import git, make_repo, run_script, write

HEAD = "import florsql as flor\nw = 1.0\n"
FIRST = 'for epoch in flor.loop("epoch", range(4)):\n    w += 0.1 * epoch\n'
SECOND = 'for epoch in flor.loop("epoch", range(3)):\n    w -= 0.1 / (epoch + 1)\n'
LOG = '    flor.log("x", w)\n'
HELPER = 'def report():\n    flor.log("x", w)\n\n\n'

CASES = {
    "one phase's loop only": (HEAD + FIRST + SECOND + LOG, False),
    "the other phase's loop only": (HEAD + FIRST + LOG + SECOND, False),
    "both phases": (HEAD + FIRST + LOG + SECOND + LOG, True),
    "both phases, one under a guard": (
        HEAD + FIRST + LOG + SECOND + "    if epoch:\n" + "    " + LOG,
        False,
    ),
    "a helper both phases call": (
        HEAD + HELPER + FIRST + "    report()\n" + SECOND + "    report()\n",
        True,
    ),
    "a helper one phase calls": (HEAD + HELPER + FIRST + "    report()\n" + SECOND, False),
    "loops of other names": (
        HEAD + FIRST + LOG + SECOND.replace('"epoch"', '"finetune"'),
        True,
    ),
    "one loop of the name, entered twice": (
        HEAD
        + "def phase(n):\n"
        + "    global w\n"
        + '    for epoch in flor.loop("epoch", range(n)):\n'
        + "        w += 0.1\n"
        + '        flor.log("x", w)\n'
        + "\n\nphase(4)\nphase(3)\n",
        True,
    ),
    "inner loops of one name in two outer loops": (
        HEAD
        + FIRST
        + '    for step in flor.loop("step", range(2)):\n        w += step\n    '
        + LOG.replace("x", "y")
        + SECOND
        + '    for step in flor.loop("step", range(2)):\n        w -= step\n'
        + '        flor.log("x", w)\n',
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_iteration_of_each_loop_of_the_name(case: str) -> None:
    text, want = CASES[case]
    compile(text, "train.py", "exec")  # (the cases are scripts)
    assert ("x" in every_iteration(text)) is want


def _script(first: str = "", second: str = "") -> str:
    return (
        "import argparse\n"
        "import florsql as flor\n"
        "p = argparse.ArgumentParser()\n"
        'p.add_argument("--lr", type=float, default=0.1)\n'
        'lr = flor.arg("lr", p.parse_args().lr)\n'
        "w = 1.0\n"
        "with flor.checkpointing():\n"
        '    for epoch in flor.loop("epoch", range(4)):\n'
        "        w += lr * epoch\n"
        '        flor.log("w", round(w, 9))\n'
        f"{first}"
        '    for epoch in flor.loop("epoch", range(3)):\n'
        "        w -= lr / (epoch + 1)\n"
        '        flor.log("w2", round(w, 9))\n'
        f"{second}"
    )


TODAY = _script(
    '        flor.log("avg", round(w / (epoch + 1), 9))\n',
    '        flor.log("last2", round(w * 2, 9))\n',
)


def test_no_warning_for_the_other_phase_s_iterations(tmp_path: Path) -> None:
    sql = "SELECT lr, epoch, w, avg, w2, last2 FROM logs ORDER BY lr, epoch, w2 NULLS FIRST"
    oracle = make_repo(tmp_path / "o", {"train.py": TODAY})
    for lr in ("0.1", "0.2"):
        run_script(oracle, "train.py", "--lr", lr)
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert len(want) == 14
    repo = make_repo(tmp_path / "r", {"train.py": _script()})
    for lr in ("0.1", "0.2"):
        run_script(repo, "train.py", "--lr", lr)
    write(repo / "train.py", TODAY)
    git(repo, "commit", "-qam", "today")
    for query in (sql.replace("ORDER", "WHERE lr = 0.2 AND epoch = 2 ORDER"), sql, sql):
        with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = con.cursor().execute(query).fetchall()
        said = [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]
        assert not [m for m in said if "every iteration" in m], said
        assert got == [r for r in want if query == sql or (r[0] == 0.2 and r[1] == 2)]


MAIN = """import florsql as flor
from finetune import finetune
w = 1.0
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(4)):
        w += 0.1 * epoch
        flor.log("w", round(w, 9))
w = finetune(w)
"""
FINETUNE = """import florsql as flor
def finetune(w):
    for epoch in flor.loop("epoch", range(3)):
        w -= 0.1 / (epoch + 1)
        flor.log("w2", round(w, 9)){new}
    return w
"""


def test_a_loop_of_the_name_in_another_file(tmp_path: Path) -> None:
    """The second phase's loop is in a module's function: the file of today's statement has
    one loop of the name, the run two. A run that entered a loop more than once is left out
    of the warning, as it is of the planner's coverage rule (its passes number alike)."""
    new = '\n        flor.log("last2", round(w * 2, 9))'
    sql = "SELECT epoch, w, w2, last2 FROM logs ORDER BY epoch, w2 NULLS FIRST"
    oracle = make_repo(tmp_path / "o", {"train.py": MAIN, "finetune.py": FINETUNE.format(new=new)})
    run_script(oracle, "train.py")
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert len(want) == 7
    repo = make_repo(tmp_path / "r", {"train.py": MAIN, "finetune.py": FINETUNE.format(new="")})
    run_script(repo, "train.py")
    write(repo / "finetune.py", FINETUNE.format(new=new))
    git(repo, "commit", "-qam", "today")
    for query in (sql, sql.replace("ORDER", "WHERE epoch = 1 ORDER"), sql):
        with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = con.cursor().execute(query).fetchall()
        said = [str(w.message) for w in caught if issubclass(w.category, FlorWarning)]
        assert not [m for m in said if "every iteration" in m], said
        assert got == [r for r in want if query == sql or r[0] == 1]
