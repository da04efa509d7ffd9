"""Guards florsql could not compare, said now (session 54).

The old script logs ``val`` every other epoch, today's every third; what decides it is where
session 53's conditions could not see: a method called under the guard (``t.validate(epoch)``),
a ``@staticmethod``, a function parameter's default (``def train(every=2)``), an argparse
option's default (``args.every``), a chain of five assignments. Each was taken for "the same
conditions": the run's epoch 3 stayed NULL, said nowhere. Now the conditions differ, and the
query either computes today's value there or says it cannot (a warning naming ``val``); the
run's recorded values stay. Where nothing the guard reads changed, nothing is said.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import florsql
from florsql.plan.guards import other_conditions
from tests.helpers import git, make_repo, run_script, write

HEAD = """import random
import florsql as flor

random.seed(3)
w = 1.0
"""
LOOP = """with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(7)):
        for step in flor.loop("step", range(4)):
            w = w * 0.9 + random.random()
            flor.log("loss", round(w, 9))
"""
LOG = 'flor.log("val", round(w * 2, 9))'


def _indent(text: str) -> str:
    return "".join("    " + line if line.strip() else line for line in text.splitlines(True))


#: name -> the script, ``K`` standing for the guard's period (2 in the old one, 3 today)
CASES = {
    "a method called under the guard": HEAD
    + f"class T:\n    def validate(self, epoch):\n        {LOG}\n\n\nt = T()\n"
    + LOOP
    + "        if epoch % K == 0:\n            t.validate(epoch)\n",
    "a static method": HEAD
    + f"class T:\n    @staticmethod\n    def validate(epoch):\n        {LOG}\n\n\n"
    + LOOP
    + "        if epoch % K == 0:\n            T.validate(epoch)\n",
    "a function parameter's default": HEAD
    + "def train(every=K):\n    global w\n"
    + _indent(LOOP)
    + f"            if epoch % every == 0:\n                {LOG}\n\n\ntrain()\n",
    "an argparse option's default": HEAD
    + "import argparse\n\np = argparse.ArgumentParser()\n"
    + 'p.add_argument("--every", type=int, default=K)\nargs, _ = p.parse_known_args()\n'
    + LOOP
    + f"        if epoch % args.every == 0:\n            {LOG}\n",
    "a predicate function": HEAD
    + "def should_eval(epoch):\n    return epoch % K == 0\n\n\n"
    + LOOP
    + f"        if should_eval(epoch):\n            {LOG}\n",
    "a default of __init__ kept on self": HEAD
    + "class Trainer:\n    def __init__(self, every=K):\n        self.every = every\n\n"
    + f"    def validate(self, epoch):\n        if epoch % self.every == 0:\n            {LOG}\n"
    + "\n\nt = Trainer()\n"
    + LOOP
    + "        t.validate(epoch)\n",
    "a class attribute": HEAD
    + "class C:\n    EVERY = K\n\n\n"
    + LOOP
    + f"        if epoch % C.EVERY == 0:\n            {LOG}\n",
    "a dataclass field's default": "from dataclasses import dataclass\n"
    + HEAD
    + "@dataclass\nclass Cfg:\n    every: int = K\n\n\ncfg = Cfg()\n"
    + LOOP
    + f"        if epoch % cfg.every == 0:\n            {LOG}\n",
    "a chain of five assignments": HEAD
    + 'EVAL_EVERY = K\ncfg = {"every": EVAL_EVERY}\nevery = cfg["every"]\nperiod = every\n'
    + LOOP
    + f"        log_now = epoch % period == 0\n        if log_now:\n            {LOG}\n",
}

SQL = "SELECT epoch, val FROM logs WHERE step IS NULL AND val IS NOT NULL ORDER BY epoch"


def _values(repo: Path) -> dict[int, float]:
    with florsql.connect(repo, replay="off") as con:
        return dict(con.cursor().execute(SQL).fetchall())


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_guard_changed_where_conditions_were_not_seen_is_not_silent(
    tmp_path: Path, case: str
) -> None:
    old, today = CASES[case].replace("K", "2"), CASES[case].replace("K", "3")
    assert other_conditions(today, old, "val", ("epoch",))
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    recorded = _values(repo)
    assert sorted(recorded) == [0, 2, 4, 6]
    now = make_repo(tmp_path / "now", {"train.py": today})
    run_script(now, "train.py")
    todays = _values(now)
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = dict(con.cursor().execute(SQL).fetchall())
    said = [str(w.message) for w in caught if "val" in str(w.message)]
    assert {e: got[e] for e in recorded} == recorded  # the run's values stay
    if 3 in got:
        assert got[3] == todays[3]
        assert sorted(got) == [0, 2, 3, 4, 6]
    else:
        assert any("cannot compute val" in m for m in said), [str(w.message) for w in caught]


@pytest.mark.parametrize(
    ("old", "today"),
    [
        # a function with a parameter named like the loop's, called otherwise
        (
            "def report(epoch, x):\n    pass\n\n\n",
            "def report(epoch, x, y=0):\n    pass\n\n\n",
        ),
        # another argparse option's default
        (
            'import argparse\np = argparse.ArgumentParser()\np.add_argument("--lr", default=1)\n',
            'import argparse\np = argparse.ArgumentParser()\np.add_argument("--lr", default=2)\n',
        ),
    ],
)
def test_changes_a_guard_does_not_read_are_not_other_conditions(old: str, today: str) -> None:
    call = "        report(epoch, 1)\n" if "report" in old else ""
    tail = f"{call}        if epoch % 2 == 0:\n            {LOG}\n"
    assert not other_conditions(
        HEAD + today + LOOP + tail, HEAD + old + LOOP + tail, "val", ("epoch",)
    )


def _as_today_s_run(tmp_path: Path, old: str, today: str) -> None:
    """A run of ``old``, queried with ``today`` committed, answers ``val`` at epochs 0, 2, 4
    and 6 as a real run of ``today`` logs it, with no warning about it."""
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    now = make_repo(tmp_path / "now", {"train.py": today})
    run_script(now, "train.py")
    want = _values(now)
    assert sorted(want) == [0, 2, 4, 6]
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = dict(con.cursor().execute(SQL).fetchall())
    assert got == want
    assert not [w for w in caught if "val" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.parametrize("old_defines_it", [False, True], ids=["new helper", "never called"])
def test_today_s_guarded_call_of_a_helper_travels_with_it(
    tmp_path: Path, old_defines_it: bool
) -> None:
    """Today's code adds ``def evaluate(): flor.log("val", ...)`` and calls it under ``if epoch
    % 2 == 0:``; the old script lacks both, or defines the helper and never calls it. The
    query failed ("no scope matching evaluate()"), or answered nothing, said nowhere; now
    the call travels with its guard (and the definition where the old file lacks it), and the
    values are a real run's of today's script (the old one plus the call)."""
    helper = f"def evaluate():\n    {LOG}\n\n\n"
    old = HEAD + (helper if old_defines_it else "") + LOOP
    today = HEAD + helper + LOOP + "        if epoch % 2 == 0:\n            evaluate()\n"
    _as_today_s_run(tmp_path, old, today)


TORCH_HEAD = """import torch
from torch import nn
import florsql as flor

torch.manual_seed(0)
X = torch.randn(64, 6)
Y = (X[:, 0] > 0).long()
XV = torch.randn(16, 6)
YV = (XV[:, 0] > 0).long()
net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()
"""
TORCH_HELPER = """

@torch.no_grad()
def evaluate(model, xs, ys):
    model.eval()
    acc = (model(xs).argmax(1) == ys).float().mean().item()
    flor.log("val_acc", acc)
    model.train()
    return acc


"""
TORCH_LOOP = """with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(6)):
        for idx in flor.loop("step", torch.randperm(64).split(16)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
"""
TORCH_CALL = "        if epoch % 2 == 1:\n            evaluate(net, XV, YV)\n"
TORCH_SQL = (
    "SELECT epoch, val_acc FROM logs WHERE step IS NULL AND val_acc IS NOT NULL ORDER BY epoch"
)


def test_today_s_no_grad_evaluation_helper_with_mode_switches_travels(tmp_path: Path) -> None:
    """The torch shape of the above: an ``@torch.no_grad()`` helper taking the model and the
    validation set, switching to ``eval()`` and back, through a dropout model, called every
    other epoch; its values are a real run's of today's script."""
    old = TORCH_HEAD + TORCH_LOOP
    today = TORCH_HEAD + TORCH_HELPER + TORCH_LOOP + TORCH_CALL
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    now = make_repo(tmp_path / "now", {"train.py": today})
    run_script(now, "train.py")
    with florsql.connect(now, replay="off") as con:
        want = con.cursor().execute(TORCH_SQL).fetchall()
    assert [e for e, _ in want] == [1, 3, 5]
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        assert con.cursor().execute(TORCH_SQL).fetchall() == want


def test_a_name_only_a_module_no_run_executed_logs_is_explained(tmp_path: Path) -> None:
    """Today's new ``utils.py`` logs ``val``; no recorded run executed it, so ``val`` is no
    column: the error says which file logs it and why (it said "Unknown column" alone)."""
    repo = make_repo(tmp_path / "r", {"train.py": HEAD + LOOP})
    run_script(repo, "train.py")
    write(repo / "utils.py", f"import florsql as flor\n\n\ndef evaluate(w):\n    {LOG}\n")
    write(repo / "train.py", HEAD + "from utils import evaluate\n" + LOOP)
    with (
        florsql.connect(repo) as con,
        pytest.raises(florsql.Error, match=r"Today's utils.py logs it, but no recorded run"),
    ):
        con.cursor().execute(SQL)


def test_an_old_unused_helper_other_than_today_s_runs_as_the_version_defines_it(
    tmp_path: Path,
) -> None:
    """The old file's never-called ``evaluate()`` logs ``val`` otherwise than today's: today's
    call placed there runs the version's own helper, as every replay does, and the query
    says so (the rule for a helper a version defines otherwise)."""
    old = HEAD + 'def evaluate():\n    flor.log("val", round(w * 5, 9))\n\n\n' + LOOP
    today = (
        HEAD + f"def evaluate():\n    {LOG}\n\n\n" + LOOP
        + "        if epoch % 2 == 0:\n            evaluate()\n"
    )  # fmt: skip
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = dict(con.cursor().execute(SQL).fetchall())
    assert sorted(got) == [0, 2, 4, 6]
    said = " ".join(str(w.message) for w in caught)
    assert "computes val with evaluate as that version defines it" in said, said


def test_a_guard_changed_inside_a_module_s_helper_is_replayed(tmp_path: Path) -> None:
    """``utils.py``'s ``evaluate(epoch, w)`` logs ``val`` under ``if epoch % 2 == 0:`` in the
    old version, ``% 3`` today; ``train.py`` calls it every epoch. Its statement had no
    conditions (its calls are in another file), so the run's epoch 3 stayed NULL, said
    nowhere; now its own guard counts, and today's guarded block goes in beside the old one:
    the values are the run's plus today's at epoch 3, as a run of today's code logs it."""
    train = HEAD.replace(
        "import florsql as flor\n", "import florsql as flor\nfrom utils import evaluate\n"
    )
    train += LOOP + "        evaluate(epoch, w)\n"
    utils = (
        "import florsql as flor\n\n\ndef evaluate(epoch, w):\n"
        f"    if epoch % K == 0:\n        {LOG}\n"
    )
    repo = make_repo(tmp_path / "r", {"train.py": train, "utils.py": utils.replace("K", "2")})
    run_script(repo, "train.py")
    recorded = _values(repo)
    now = make_repo(tmp_path / "now", {"train.py": train, "utils.py": utils.replace("K", "3")})
    run_script(now, "train.py")
    todays = _values(now)
    write(repo / "utils.py", utils.replace("K", "3"))
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = dict(con.cursor().execute(SQL).fetchall())
    assert got == {**todays, **recorded}, (got, todays, recorded)
    assert sorted(got) == [0, 2, 3, 4, 6]
    assert not [w for w in caught if "val" in str(w.message)], [str(w.message) for w in caught]


def test_an_old_unused_helper_without_the_log_is_no_place(tmp_path: Path) -> None:
    """The old ``def evaluate(x): return x`` is never called; today's logs in it and calls it
    under ``if epoch % 2 == 0:``. Placed into the old body, the statement logged nothing
    (the run never ran it) and the query answered no rows, said nowhere (sweep AC); now it
    fails naming ``val`` and why."""
    old = HEAD + "def evaluate(x):\n    return x\n\n\n" + LOOP
    today = (
        HEAD + "def evaluate(x):\n    flor.log('val', round(x * 3, 9))\n    return x\n\n\n"
        + LOOP + "        if epoch % 2 == 0:\n            evaluate(w)\n"
    )  # fmt: skip
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with (
        florsql.connect(repo) as con,
        pytest.raises(florsql.Error, match=r"(?s)val.*defines and never calls"),
    ):
        con.cursor().execute(SQL).fetchall()


def test_a_lambda_logging_in_the_loop_is_not_taken_for_outside_it(tmp_path: Path) -> None:
    """``evaluate = lambda x: flor.log(...)`` called each epoch: its statement was taken as
    logging outside every loop, so ``WHERE epoch >= 1`` replayed nothing and answered no
    rows, said nowhere, where ``WHERE step IS NULL`` failed (sweep AC). Its context is unknown
    now: every query that reads it says it cannot place it."""
    lam = "evaluate = lambda x: flor.log('val', round(x * 2, 9))\n"
    repo = make_repo(tmp_path / "r", {"train.py": HEAD + LOOP})
    run_script(repo, "train.py")
    write(repo / "train.py", HEAD + lam + LOOP + "        evaluate(w)\n")
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        for where in ("epoch >= 1 AND step IS NULL", "epoch = 2 AND step = 3", "step IS NULL"):
            with pytest.raises(florsql.Error, match="lambda"):
                con.cursor().execute(f"SELECT epoch, val FROM logs WHERE {where}").fetchall()


MAIN = (
    "import random\nimport florsql as flor\n\n\n"
    'def evaluate(x):\n    flor.log("val", round(x * 2, 9))\n\n\n'
    "def main():\n    random.seed(3)\n    w = 1.0\n"
    + _indent(LOOP)
    + 'CALL\n\nif __name__ == "__main__":\n    main()\n'
)


def test_today_s_guarded_call_inside_main_travels(tmp_path: Path) -> None:
    """The same inside ``def main()`` (the helper at module level, the loop in ``main()``):
    the query failed ("unbound name 'evaluate'": the definition did not travel out of the
    function's scope, sweep AC)."""
    old = MAIN.replace('    flor.log("val", round(x * 2, 9))', "    pass").replace("CALL\n", "")
    old = old.replace("def evaluate(x):\n    pass\n\n\n", "")
    today = MAIN.replace("CALL", "            if epoch % 2 == 0:\n                evaluate(w)")
    _as_today_s_run(tmp_path, old, today)
