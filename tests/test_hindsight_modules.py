"""Hindsight anywhere in the code a run executed: statements added to imported modules.

The usual layout: ``main.py`` calls ``fit()`` from ``trainer.py``, where the loops are, and a
helper of a subpackage computes the loss. Runs of two code versions are recorded; then today's
``trainer.py`` and ``pkg/steps.py`` gain log statements. Their values, asked through the engine
and the DB-API, must equal a full recording of the hand-patched old versions (the oracle).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import florsql
from florsql.engine.session import Engine
from florsql.errors import PlanError
from florsql.propagate import propagate
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import copy_repo, git, make_repo, run_dirs, script_env, write
from tests.helpers_replay import warm_script

MAIN = """
import torch
import florsql as flor
from trainer import fit

torch.manual_seed(0)
lr = flor.arg("lr", 0.1)
net = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(net.parameters(), lr=lr)
g = torch.Generator().manual_seed(1)
data = [(torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)) for _ in range(3)]
fit(net, opt, flor.arg("epochs", 3), data)
flor.log("final", net.weight.sum().item())
"""

STEPS = """
def batch_loss(net, x, y):
    out = net(x)
    return ((out - y) ** 2).mean()
"""

TRAINER_V1 = """
import florsql as flor
from pkg.steps import batch_loss


def fit(net, opt, epochs, data):
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            for step in flor.loop("step", range(len(data))):
                x, y = data[step]
                opt.zero_grad()
                loss = batch_loss(net, x, y)
                loss.backward()
                opt.step()
                flor.log("loss", loss.item())
            flor.log("wnorm", net.weight.norm().item())
"""

# Version 2 clips gradients: another code version of the same file.
TRAINER_V2 = TRAINER_V1.replace(
    "                opt.step()\n",
    "                torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)\n"
    "                opt.step()\n",
).replace("import florsql as flor\n", "import torch\n\nimport florsql as flor\n", 1)

B0 = '                flor.log("b0", net.weight.grad.norm().item())\n'
BACKWARD = "                loss.backward()\n"


def with_b0(trainer: str) -> str:
    return trainer.replace(BACKWARD, BACKWARD + B0)


def with_out_mean(steps: str) -> str:
    """Today's helper module logs too, so it now imports florsql (its old versions do not)."""
    return "import florsql as flor\n\n" + steps.replace(
        "    out = net(x)\n",
        '    out = net(x)\n    flor.log("out_mean", out.mean().item())\n',
    )


UNUSED = """
import florsql as flor

flor.log("u", 1)
"""

FILES = {
    "main.py": MAIN,
    "pkg/__init__.py": "",
    "pkg/steps.py": STEPS,
    "unused.py": UNUSED,
}

Key = tuple[float, str, int | None, int | None]


def _values(repo: Path, names: tuple[str, ...]) -> dict[Key, object]:
    cols = ", ".join(names)
    with Engine(repo, replay="off") as eng:
        rows = eng.execute(f"SELECT lr, epoch, step, {cols} FROM logs").table.to_pylist()
    return {
        (r["lr"], n, r["epoch"], r["step"]): r[n] for r in rows for n in names if r[n] is not None
    }


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> dict[Key, object]:
    """Full recordings of each old version with today's statements placed by hand."""
    out: dict[Key, object] = {}
    for lr, trainer in (("0.1", TRAINER_V1), ("0.05", TRAINER_V2)):
        files = {
            **FILES,
            "trainer.py": with_b0(trainer),
            "pkg/steps.py": with_out_mean(STEPS),
        }
        repo = make_repo(tmp_path_factory.mktemp("oracle") / f"o{lr}", files)
        warm_script(repo, "main.py", "--lr", lr)
        out.update(_values(repo, ("b0", "out_mean", "loss")))
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of each version, recorded before the statements existed (a pristine copy)."""
    repo = make_repo(tmp_path_factory.mktemp("h") / "h", {**FILES, "trainer.py": TRAINER_V1})
    warm_script(repo, "main.py", "--lr", "0.1", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "trainer.py", TRAINER_V2)
    git(repo, "commit", "-qam", "clip gradients")
    warm_script(repo, "main.py", "--lr", "0.05", FLORSQL_CHECKPOINT_PERIOD="1")
    return repo


@pytest.fixture
def history(recorded: Path, tmp_path: Path) -> Path:
    """A copy of the recorded history whose working tree has today's statements."""

    repo = tmp_path / "repo"
    copy_repo(recorded, repo)
    write(repo / "trainer.py", with_b0(TRAINER_V2))
    write(repo / "pkg/steps.py", with_out_mean(STEPS))
    return repo


def _engine(repo: Path) -> Engine:
    return Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(2)))


def test_runs_list_the_repository_files_they_imported(recorded: Path) -> None:
    for run in run_dirs(recorded):
        doc = json.loads((run / "run.json").read_text())
        assert doc["files"] == ["main.py", "pkg/__init__.py", "pkg/steps.py", "trainer.py"]
    with Engine(recorded, replay="off") as eng:
        rows = eng.execute("SELECT DISTINCT files FROM runs").table.to_pylist()
    assert rows == [{"files": ["main.py", "pkg/__init__.py", "pkg/steps.py", "trainer.py"]}]


def test_statement_in_imported_module_equals_full_rerun(
    history: Path, oracle: dict[Key, object]
) -> None:
    before = (history / "trainer.py").read_text()
    with _engine(history) as eng:
        text = "\n".join(
            eng.execute("EXPLAIN SELECT b0 FROM logs").table.column("plan").to_pylist()
        )
        assert "statement: b0 (trainer.py line" in text
        rows = eng.execute(
            "SELECT lr, epoch, step, b0 FROM logs WHERE b0 IS NOT NULL ORDER BY lr, epoch, step"
        ).table.to_pylist()
    assert len(rows) == 2 * 3 * 3
    for r in rows:
        assert r["b0"] == oracle[(r["lr"], "b0", r["epoch"], r["step"])]
    # The user's files are untouched: the patched versions lived in worktrees.
    assert (history / "trainer.py").read_text() == before


def test_statement_in_subpackage_helper_through_dbapi(
    history: Path, oracle: dict[Key, object]
) -> None:
    executor = PlanExecutor(LocalExecutor(2))
    with florsql.connect(history, replay="auto", executor=executor) as con:
        cur = con.execute(
            "SELECT lr, epoch, step, out_mean FROM logs WHERE lr = ? AND out_mean IS NOT NULL",
            [0.05],
        )
        rows = cur.fetchall()
        cur = con.execute("EXPLAIN SELECT out_mean FROM logs")
        text = "\n".join(r[0] for r in cur.fetchall())
    assert "statement: out_mean (pkg/steps.py line" in text
    assert len(rows) == 3 * 3
    for lr, epoch, step, value in rows:
        assert value == oracle[(lr, "out_mean", epoch, step)]


def test_module_the_run_did_not_import_is_not_a_column(history: Path) -> None:
    with Engine(history, replay="off") as eng:
        with pytest.raises(PlanError, match="Unknown column 'u'"):
            eng.execute("SELECT u FROM logs")
        cols = eng.execute("SHOW COLUMNS FROM logs").table.to_pylist()
    hindsight = {c["column_name"]: c["in_current_code"] for c in cols if c["hindsight"]}
    assert hindsight == {"b0": ["trainer.py"], "out_mean": ["pkg/steps.py"]}


def test_runs_recorded_before_files_were_listed_use_their_script(history: Path) -> None:
    """A run.json without ``files`` (older florsql) offers only its main script's statements."""
    for run in run_dirs(history):
        path = run / "run.json"
        doc = json.loads(path.read_text())
        del doc["files"]
        path.write_text(json.dumps(doc))
    unknown = pytest.raises(PlanError, match="Unknown column 'b0'")
    with Engine(history, replay="off") as eng, unknown:
        eng.execute("SELECT b0 FROM logs")


def test_propagation_adds_the_flor_import_to_a_module_that_had_none() -> None:
    old = '"""Steps."""\nfrom __future__ import annotations\n' + STEPS
    result = propagate(with_out_mean(STEPS), old)
    assert not result.failed
    lines = result.source.splitlines()
    assert lines[:3] == ['"""Steps."""', "from __future__ import annotations", ""]
    assert "import florsql as flor" in lines
    assert lines.index("import florsql as flor") < lines.index("def batch_loss(net, x, y):")
    compile(result.source, "steps.py", "exec")


PLAIN_MAIN = """
import florsql as flor
from trainer import fit

with flor.checkpointing():
    final = fit(flor.arg("epochs", 3))
flor.log("final", final)
"""

PLAIN_TRAINER = """
import florsql as flor


def fit(epochs):
    w = 0.0  # carried across epochs in a plain local of the helper: never checkpointed
    for e in flor.loop("epoch", range(epochs)):
        for s in flor.loop("step", range(3)):
            w += 0.1 * (s + 1)
            flor.log("loss", w)
        flor.log("w", w)
    return w
"""


def test_state_carried_in_an_imported_helper_is_replayed_from_the_top(tmp_path: Path) -> None:
    """A restricted query must not start the helper's loop from a checkpoint that lacks ``w``."""
    patched = PLAIN_TRAINER.replace(
        '            flor.log("loss", w)\n',
        '            flor.log("loss", w)\n            flor.log("b0", w * 10)\n',
    )
    oracle_repo = make_repo(tmp_path / "o", {"main.py": PLAIN_MAIN, "trainer.py": patched})
    warm_script(oracle_repo, "main.py")
    with Engine(oracle_repo, replay="off") as eng:
        want = eng.execute("SELECT epoch, step, b0 FROM logs WHERE epoch = 1 AND b0 IS NOT NULL")
    repo = make_repo(tmp_path / "r", {"main.py": PLAIN_MAIN, "trainer.py": PLAIN_TRAINER})
    warm_script(repo, "main.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "trainer.py", patched)
    with _engine(repo) as eng:
        plan = eng.execute("EXPLAIN SELECT b0 FROM logs WHERE epoch = 1").table
        got = eng.execute("SELECT epoch, step, b0 FROM logs WHERE epoch = 1 AND b0 IS NOT NULL")
    assert "from the top of the script" in "\n".join(plan.column("plan").to_pylist())
    key = sorted
    assert key(got.table.to_pylist(), key=lambda r: r["step"]) == key(
        want.table.to_pylist(), key=lambda r: r["step"]
    )
    assert got.table.num_rows == 3


def test_module_column_only_for_runs_that_imported_it(tmp_path: Path) -> None:
    """``extra.py`` is in both versions, imported only by the second: its new statement is a
    hindsight column of the second version's run alone."""
    extra = "def note(x):\n    return x + 1\n"
    main_v1 = "import florsql as flor\n\nfor e in flor.loop('epoch', range(2)):\n    v = e * 3\n"
    main_v2 = "import extra\n" + main_v1 + "    flor.log('n', extra.note(v))\n"
    repo = make_repo(tmp_path / "r", {"main.py": main_v1, "extra.py": extra})
    warm_script(repo, "main.py")
    write(repo / "main.py", main_v2)
    git(repo, "commit", "-qam", "v2 imports extra")
    warm_script(repo, "main.py")
    write(
        repo / "extra.py",
        "import florsql as flor\n\n\n"
        + extra.replace("    return", "    flor.log('e0', x * 2)\n    return"),
    )
    with _engine(repo) as eng:
        files = eng.execute("SELECT files FROM runs ORDER BY tstamp").table.to_pylist()
        cols = eng.execute("SHOW COLUMNS FROM logs").table.to_pylist()
        rows = eng.execute("SELECT run_id, epoch, e0 FROM logs WHERE e0 IS NOT NULL").table
        runs = eng.execute("SELECT run_id FROM runs ORDER BY tstamp").table.to_pylist()
    assert [f["files"] for f in files] == [["main.py"], ["main.py", "extra.py"]]
    (e0,) = [c for c in cols if c["column_name"] == "e0"]
    assert e0["hindsight"] and e0["runs_lacking"] == 1 and e0["in_current_code"] == ["extra.py"]
    assert set(rows.column("run_id").to_pylist()) == {runs[1]["run_id"]}
    assert sorted((r["epoch"], r["e0"]) for r in rows.to_pylist()) == [(0, 0), (1, 6)]


# -- runs started as ``python -m pkg.train`` ---------------------------------------------------

PKG_TRAIN = """
import torch
import florsql as flor
from pkg.model import make

torch.manual_seed(0)
net = make()
opt = torch.optim.SGD(net.parameters(), lr=flor.arg("lr", 0.1))
X = torch.randn(24, 4)
Y = torch.randint(0, 2, (24,))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(3)):
        for idx in flor.loop("step", torch.randperm(24).split(8)):
            loss = torch.nn.functional.cross_entropy(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
"""
PKG_WN = '        flor.log("wn", net.weight.norm().item())\n'
PKG_FILES = {
    "pkg/__init__.py": "",
    "pkg/model.py": "import torch\n\n\ndef make():\n    return torch.nn.Linear(4, 2)\n",
    "pkg/__main__.py": "import pkg.train  # noqa: F401\n",
}


def _as_module(repo: Path, module: str, *args: str) -> None:
    """``python -m module args...`` in ``repo``, as a user starts a training package."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "warm", [pytest.param(True, marks=pytest.mark.slow), False], ids=["forked", "fresh-interpreter"]
)
def test_runs_started_with_python_dash_m_replay_as_modules(tmp_path: Path, warm: bool) -> None:
    """``python -m pkg.train`` puts the folder it ran in on sys.path (``from pkg.model import``
    works), where ``python pkg/train.py`` puts ``pkg/``: a replay that ran the file by its path
    failed with ModuleNotFoundError. run.json records the module; replay runs it as one."""
    today = PKG_TRAIN.rstrip("\n") + "\n" + PKG_WN
    runs = (("pkg.train", "--lr", "0.05"), ("pkg", "--lr", "0.2"))
    oracle = make_repo(tmp_path / "oracle", {**PKG_FILES, "pkg/train.py": today})
    history = make_repo(tmp_path / "history", {**PKG_FILES, "pkg/train.py": PKG_TRAIN})
    for module, *args in runs:
        _as_module(oracle, module, *args)
        _as_module(history, module, *args)
    docs = [json.loads((d / "run.json").read_text()) for d in run_dirs(history)]
    assert sorted(d["module"] for d in docs) == ["pkg.__main__", "pkg.train"]
    assert {d["filename"] for d in docs} == {"pkg/train.py", "pkg/__main__.py"}
    write(history / "pkg/train.py", today)
    sql = "SELECT lr, epoch, wn FROM logs WHERE wn IS NOT NULL ORDER BY lr, epoch"
    with Engine(oracle, replay="off") as eng:
        expected = eng.execute(sql).table.to_pylist()
    executor = PlanExecutor(LocalExecutor(2 if warm else 1, warm=warm))
    with Engine(history, replay="auto", executor=executor) as eng:
        got = eng.execute(sql).table.to_pylist()
    assert len(expected) == 6 and got == expected
