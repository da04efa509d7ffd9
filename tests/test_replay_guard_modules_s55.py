"""A guard that reads another module of the repository (session 55).

``train.py`` is the same in both versions: ``if epoch % EVERY == 0: flor.log("val", ...)``
with ``from config import EVERY``; ``config.py`` says ``EVERY = 2`` in the old version and
``EVERY = 3`` today. Conditions were compared within one file, so the old run's statement was
taken for today's as it is, and its epoch 3 stayed NULL where today's code logs, said nowhere.
Now what the guard reads from the repository's other modules is compared too (each version's
own text of them), and the query says it cannot compute ``val`` for that run (placing today's
statement would read the old ``config.py``): the run's recorded values stay. A change of
``config.py`` the guard does not read says nothing and replays nothing.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import florsql
from florsql.propagate.modules import guard_modules_differ
from tests.helpers import git, make_repo, run_script, write
from tests.test_replay_conditions_s54 import HEAD, LOG, LOOP, SQL, _values

GUARDED = f"        if epoch % EVERY == 0:\n            {LOG}\n"

#: name -> (train.py, {other file: its text}), ``K`` standing for the guard's period (2 in
#: the old version, 3 today)
CASES: dict[str, tuple[str, dict[str, str]]] = {
    "from config import EVERY": (
        "from config import EVERY\n" + HEAD + LOOP + GUARDED,
        {"config.py": "LR = 0.1\nEVERY = K\n"},
    ),
    "import config as cfg; cfg.EVERY": (
        "import config as cfg\n"
        + HEAD
        + LOOP
        + f"        if epoch % cfg.EVERY == 0:\n            {LOG}\n",
        {"config.py": "EVERY = K\n"},
    ),
    "a predicate function of another module": (
        "from utils import should_eval\n"
        + HEAD
        + LOOP
        + f"        if should_eval(epoch):\n            {LOG}\n",
        {"utils.py": "def should_eval(epoch):\n    return epoch % K == 0\n"},
    ),
    "a star import": (
        "from config import *\n" + HEAD + LOOP + GUARDED,
        {"config.py": "EVERY = K\n"},
    ),
    "a module that imports it from a third": (
        "from config import EVERY\n" + HEAD + LOOP + GUARDED,
        {"config.py": "from defaults import BASE\n\nEVERY = BASE\n", "defaults.py": "BASE = K\n"},
    ),
    "a package's module, bound through a local name": (
        "from conf import settings\n"
        + HEAD
        + "period = settings.EVERY\n"
        + LOOP
        + f"        if epoch % period == 0:\n            {LOG}\n",
        {"conf/__init__.py": "", "conf/settings.py": "EVERY = K\n"},
    ),
    "a helper module's own guard": (
        "from utils import evaluate\n" + HEAD + LOOP + "        evaluate(epoch, w)\n",
        {
            "utils.py": "import florsql as flor\nfrom config import EVERY\n\n\n"
            "def evaluate(epoch, w):\n    if epoch % EVERY == 0:\n"
            f"        {LOG}\n",
            "config.py": "EVERY = K\n",
        },
    ),
}


def _replayed(
    tmp_path: Path, old: dict[str, str], today: dict[str, str]
) -> tuple[dict[int, float], dict[int, float], list[str]]:
    """A run of ``old`` recorded, ``today`` committed over it, the query answered: the run's
    recorded values, the answer, the warnings said."""
    repo = make_repo(tmp_path / "r", old)
    run_script(repo, "train.py")
    recorded = _values(repo)
    for path, text in today.items():
        write(repo / path, text)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = dict(con.cursor().execute(SQL).fetchall())
    return recorded, got, [str(w.message) for w in caught]


def _files(case: str, k: str) -> dict[str, str]:
    script, others = CASES[case]
    return {"train.py": script, **{p: t.replace("K", k) for p, t in others.items()}}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_other_modules_texts_are_compared(case: str) -> None:
    old, today = _files(case, "2"), _files(case, "3")
    path = "utils.py" if case == "a helper module's own guard" else "train.py"
    why = guard_modules_differ(today.get, old.get, path, today[path], old[path], "val")
    assert why is not None and "bound otherwise" in why, why
    assert guard_modules_differ(today.get, today.get, path, today[path], today[path], "val") is None


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_guard_reading_another_module_changed_is_not_silent(tmp_path: Path, case: str) -> None:
    recorded, got, said = _replayed(tmp_path, _files(case, "2"), _files(case, "3"))
    assert sorted(recorded) == [0, 2, 4, 6]
    assert got == recorded  # the run's values stay, and nothing is mixed in
    assert any("cannot compute val" in m and "bound otherwise" in m for m in said), said


def test_a_change_the_guard_does_not_read_says_nothing(tmp_path: Path) -> None:
    """``config.py``'s ``LR`` changes, ``EVERY`` does not: the run ran today's statement as
    it is (nothing replayed, nothing said)."""
    files = _files("from config import EVERY", "2")
    repo = make_repo(tmp_path / "r", files)
    run_script(repo, "train.py")
    recorded = _values(repo)
    write(repo / "config.py", files["config.py"].replace("LR = 0.1", "LR = 0.2"))
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = dict(con.cursor().execute(SQL).fetchall())
        plan = "\n".join(r[0] for r in con.cursor().execute("EXPLAIN " + SQL).fetchall())
    assert got == recorded
    assert not [w for w in caught if "val" in str(w.message)], [str(w.message) for w in caught]
    assert "replay" not in plan.lower() or "nothing to replay" in plan.lower(), plan


HELPER = f"import florsql as flor\n\n\ndef evaluate(w):\n    {LOG}\n"


def _said_of_train_py(tmp_path: Path, call: str, helper: str) -> None:
    """``train.py`` calling ``utils.py``'s ``helper`` by ``call`` in its epoch loop, ``K``
    (in ``call`` and ``config.py``) 2 in the old version and 3 today: the run's values stay,
    and the query says it cannot compute ``val``, naming ``train.py``."""
    script = "from config import EVERY\nfrom utils import evaluate\n" + HEAD + LOOP + call
    files = {"train.py": script, "utils.py": helper, "config.py": "EVERY = K\n"}
    old, today = ({p: t.replace("K", k) for p, t in files.items()} for k in "23")
    recorded, got, said = _replayed(tmp_path, old, today)
    assert sorted(recorded) == [0, 2, 4, 6]
    assert got == recorded
    assert any("cannot compute val" in m and "train.py" in m for m in said), said


@pytest.mark.parametrize("via_config", [False, True], ids=["its own text", "config.py"])
def test_a_helper_module_called_under_a_guard_changed_in_the_script(
    tmp_path: Path, via_config: bool
) -> None:
    """``utils.py``'s ``evaluate`` logs ``val`` and is the same in both versions; ``train.py``
    calls it under ``if epoch % 2 == 0:``, today ``% 3`` (or under ``% EVERY`` with
    ``config.py`` changed): the statement is today's as it is, where it runs is not (its
    calls are in another file). Epoch 3 stayed NULL, said nowhere; now the query says it
    cannot compute ``val`` for that run, whose values stay."""
    period = "EVERY" if via_config else "K"
    call = f"        if epoch % {period} == 0:\n            evaluate(w)\n"
    _said_of_train_py(tmp_path, call, HELPER)


@pytest.mark.parametrize("in_helper", [False, True], ids=["in the script", "in a helper module"])
def test_a_statement_new_to_the_version_runs_where_the_old_code_runs_it(
    tmp_path: Path, in_helper: bool
) -> None:
    """The old version never logged ``val``: today's statement goes into it and runs where
    the old code runs it, what its guard reads from ``config.py`` (or the guard of the
    helper's call in ``train.py``) being the old version's, as for a guard of one file. Not
    refused: the values are a real run of the old version with today's statement in it."""
    config = {"config.py": "EVERY = K\n"}
    if in_helper:
        tail = "        if epoch % EVERY == 0:\n            evaluate(w)\n"
        script = "from config import EVERY\nfrom utils import evaluate\n" + HEAD + LOOP + tail
        helper = "import florsql as flor\n\n\ndef evaluate(w):\n    v = w * 3\n"
        old = {"train.py": script, "utils.py": helper, **config}
        today = {"train.py": script, "utils.py": helper + f"    {LOG}\n", **config}
    else:
        script = "from config import EVERY\n" + HEAD + LOOP
        old = {"train.py": script + "        pass\n", **config}
        today = {"train.py": script + GUARDED, **config}
    oracle = make_repo(tmp_path / "o", {**today, "config.py": "EVERY = 2\n"})
    run_script(oracle, "train.py")
    want = _values(oracle)
    assert sorted(want) == [0, 2, 4, 6]
    repo = make_repo(tmp_path / "r", {p: t.replace("K", "2") for p, t in old.items()})
    run_script(repo, "train.py")
    for path, text in today.items():
        write(repo / path, text.replace("K", "3"))
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = dict(con.cursor().execute(SQL).fetchall())
    assert got == want
    assert not [w for w in caught if "val" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.parametrize("given", ["every=K", "every=EVERY"], ids=["a literal", "config.py"])
def test_a_helper_modules_guard_reading_the_argument_of_its_call(
    tmp_path: Path, given: str
) -> None:
    """``utils.py``'s ``evaluate(epoch, w, every=1)`` logs under ``if epoch % every == 0:``,
    the same in both versions; ``train.py`` calls it every epoch with ``every=2``, today
    ``every=3`` (or ``every=EVERY`` with ``config.py`` changed): said, not silent."""
    helper = "import florsql as flor\n\n\ndef evaluate(epoch, w, every=1):\n"
    helper += f"    if epoch % every == 0:\n        {LOG}\n"
    _said_of_train_py(tmp_path, f"        evaluate(epoch, w, {given})\n", helper)


def test_another_argument_of_a_helper_modules_call_says_nothing(tmp_path: Path) -> None:
    """The call gives ``w * 2`` today where it gave ``w``, and ``every=2`` in both: the guard
    reads ``every``, not ``x``; the run ran today's statement as it is (nothing said)."""
    helper = "import florsql as flor\n\n\ndef evaluate(epoch, x, every=1):\n"
    helper += "    if epoch % every == 0:\n        flor.log('val', round(x, 9))\n"
    script = "from utils import evaluate\n" + HEAD + LOOP + "        evaluate(epoch, X, every=2)\n"
    recorded, got, said = _replayed(
        tmp_path,
        {"train.py": script.replace("X", "w"), "utils.py": helper},
        {"train.py": script.replace("X", "w * 2")},
    )
    assert got == recorded
    assert not [m for m in said if "val" in m], said


#: Sweep AD (session 55): more guards decided outside the statement's file, each silent
#: before (the run's epoch 3 NULL, said nowhere). name -> files, ``K`` the guard's period.
SWEEP_AD: dict[str, dict[str, str]] = {
    "a method of another module's class under a changed guard": {
        "train.py": "from trainer import Trainer\n"
        + HEAD
        + "t = Trainer()\n"
        + LOOP
        + "        if epoch % K == 0:\n            t.validate(w)\n",
        "trainer.py": "import florsql as flor\n\n\nclass Trainer:\n"
        f"    def validate(self, w):\n        {LOG}\n",
    },
    "two callbacks' methods of one name, called under a changed guard": {
        "train.py": "from callbacks import Eval\n"
        + HEAD
        + "cbs = [Eval()]\n"
        + LOOP
        + "        if epoch % K == 0:\n            for cb in cbs:\n"
        + "                cb.on_epoch_end(w)\n",
        "callbacks.py": "import florsql as flor\n\n\nclass Eval:\n"
        f"    def on_epoch_end(self, w):\n        {LOG}\n\n\nclass Noop:\n"
        "    def on_epoch_end(self, w):\n        pass\n",
    },
    "a callback's constructor argument": {
        "train.py": "from callbacks import Eval\n"
        + HEAD
        + "cb = Eval(every=K)\n"
        + LOOP
        + "        cb.on_epoch_end(epoch, w)\n",
        "callbacks.py": "import florsql as flor\n\n\nclass Eval:\n"
        "    def __init__(self, every=1):\n        self.every = every\n\n"
        "    def on_epoch_end(self, epoch, w):\n        if epoch % self.every == 0:\n"
        f"            {LOG}\n",
    },
    "an early return in a helper": {
        "train.py": HEAD
        + f"def evaluate(epoch, w):\n    if epoch % K != 0:\n        return\n    {LOG}\n\n\n"
        + LOOP
        + "        evaluate(epoch, w)\n",
    },
    "the module a guard's name is imported from": {
        "train.py": "from MOD import EVERY\n" + HEAD + LOOP + GUARDED,
        "config.py": "EVERY = 2\n",
        "hparams.py": "EVERY = 3\n",
    },
    "a dict updated in place": {
        "train.py": HEAD
        + 'CFG = {"every": 1}\nCFG.update({"every": K})\n'
        + LOOP
        + f'        if epoch % CFG["every"] == 0:\n            {LOG}\n',
    },
    "a tracked config file a guard reads": {
        "train.py": "import json\n"
        + HEAD
        + 'every = json.load(open("config.json"))["every"]\n'
        + LOOP
        + f"        if epoch % every == 0:\n            {LOG}\n",
        "config.json": '{"every": K, "lr": 0.1}\n',
    },
}


def _sweep_files(case: str, k: str) -> dict[str, str]:
    mod = "config" if k == "2" else "hparams"
    return {p: t.replace("K", k).replace("MOD", mod) for p, t in SWEEP_AD[case].items()}


@pytest.mark.parametrize("case", sorted(SWEEP_AD))
def test_sweep_ad_guards_decided_outside_the_statement_are_said(tmp_path: Path, case: str) -> None:
    recorded, got, said = _replayed(tmp_path, _sweep_files(case, "2"), _sweep_files(case, "3"))
    assert sorted(recorded) == [0, 2, 4, 6]
    assert {e: got[e] for e in recorded} == recorded  # the run's values stay
    if 3 not in got:
        assert any("cannot compute val" in m for m in said), said
    else:  # computed: as a real run of today's files logs it
        now = make_repo(tmp_path / "now", _sweep_files(case, "3"))
        run_script(now, "train.py")
        assert got[3] == _values(now)[3]
