"""A replay imports the version's own modules, wherever its run found them.

Found as a stranger: a ``src/`` layout on ``PYTHONPATH`` (or installed editable, as most
projects are: ``pip install -e .``) names the user's checkout, so every replay of an old
version ran today's ``mypkg``: a v1 run's hindsight value was computed with v2's code,
silently where no recorded value depended on it. Now (``florsql.replay.imports``) a task's
import path entries, ``.pth`` lines and setuptools' editable finder naming the checkout point
into the worktree, and the run's own entries inside the repository (run.json's
``import_path``) are put back when the query's environment lacks them.

Oracle: the value each version's own code gives (``SCALE`` is 1.0 in v1, 10.0 in v2), the
statement computing ``mypkg.f(1)``; real editable installs (pip, setuptools) into a throwaway
virtual environment layered on the test interpreter's packages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from florsql.replay import imports
from tests.helpers import copy_repo, git, make_repo, script_env, write

TRAIN = """
import florsql as flor
import mypkg

tot = 0.0
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(3)):
        tot += mypkg.f(epoch + 1)
        flor.log("tot", tot)
"""

PKG = """
SCALE = 1.0


def f(x):
    return x * SCALE
"""

PYPROJECT = """
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "mypkg"
version = "0.1"
"""

HINDSIGHT = 'flor.log("tot", tot)\n        flor.log("val", mypkg.f(1))'

QUERY = "SELECT tstamp, epoch, tot, val FROM logs ORDER BY tstamp, epoch"

#: Runs the query in the given interpreter and prints its rows as JSON (the executor: "warm",
#: the replay service's fork; "cold", a fresh interpreter per task).
ASK = """
import json, sys
from florsql.engine.session import Engine
from florsql.replay import LocalExecutor, PlanExecutor
repo, how, sql = sys.argv[1:4]
ex = LocalExecutor(1, warm=how == "warm", service=how == "warm")
with Engine(repo, replay="auto", executor=PlanExecutor(ex)) as eng:
    rows = eng.execute(sql).table.to_pylist()
print(json.dumps([[r["epoch"], r["tot"], r["val"]] for r in rows]))
"""

EXPECTED = [
    [0, 1.0, 1.0],
    [1, 3.0, 1.0],
    [2, 6.0, 1.0],
    [0, 10.0, 10.0],
    [1, 30.0, 10.0],
    [2, 60.0, 10.0],
]


def _ask(python: str, repo: Path, how: str, **env: str) -> list[list[object]]:
    script = repo.parent / "ask.py"
    script.write_text(ASK)
    proc = subprocess.run(
        [python, str(script), str(repo), how, QUERY],
        capture_output=True,
        text=True,
        env={k: v for k, v in script_env(**env).items() if v != ""},  # "": unset
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _two_versions(repo: Path, run: list[str], pkg: Path, **env: str) -> None:
    """Record v1 (SCALE 1.0) and v2 (SCALE 10.0), then add today's statement."""
    for scale in ("1.0", "10.0"):
        write(pkg, PKG.replace("1.0", scale))
        git(repo, "commit", "-qam", f"scale {scale}", "--allow-empty")
        proc = subprocess.run(run, cwd=repo, capture_output=True, text=True, env=script_env(**env))
        assert proc.returncode == 0, proc.stderr[-3000:]
    script = repo / run[1]
    write(script, script.read_text().replace('flor.log("tot", tot)', HINDSIGHT))


def _venv(tmp_path: Path, project: Path) -> str:
    """A throwaway virtual environment that sees the test interpreter's packages (florsql,
    torch) and has ``project`` installed editable by pip; its python."""
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = str(env / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "zz_parent.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "-q",
            "-e",
            str(project),
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
        ],
        check=True,
        capture_output=True,
    )
    return python


@pytest.mark.parametrize("how", ["warm", "cold"])
def test_src_layout_installed_editable(tmp_path: Path, how: str) -> None:
    """``pip install -e .`` of a src layout: a ``.pth`` line naming ``<repo>/src``."""
    repo = make_repo(
        tmp_path / "r",
        {"train.py": TRAIN, "src/mypkg/__init__.py": PKG, "pyproject.toml": PYPROJECT},
    )
    python = _venv(tmp_path, repo)
    _two_versions(repo, [python, "train.py"], repo / "src/mypkg/__init__.py")
    assert _ask(python, repo, how) == EXPECTED


@pytest.mark.parametrize("how", ["warm", "cold"])
def test_flat_layout_editable_finder_script_in_a_subfolder(tmp_path: Path, how: str) -> None:
    """``pip install -e .`` of a flat layout: setuptools' finder maps ``mypkg`` to
    ``<repo>/mypkg``; the script, in ``scripts/``, finds it only through that finder."""
    pyproject = PYPROJECT + '\n[tool.setuptools]\npackages = ["mypkg"]\n'
    repo = make_repo(
        tmp_path / "r",
        {"scripts/train.py": TRAIN, "mypkg/__init__.py": PKG, "pyproject.toml": pyproject},
    )
    python = _venv(tmp_path, repo)
    probe = subprocess.run(
        [
            python,
            "-c",
            "import sys; print([m for m in sys.modules if m.startswith('__editable__')])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "mypkg" in probe, probe  # the finder, not a path line
    _two_versions(repo, [python, "scripts/train.py"], repo / "mypkg/__init__.py")
    assert _ask(python, repo, how) == EXPECTED


@pytest.mark.parametrize("how", ["warm", "cold"])
def test_pythonpath_src_recorded_then_queried_with_and_without_it(tmp_path: Path, how: str) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": TRAIN, "src/mypkg/__init__.py": PKG})
    path = str(repo / "src")
    _two_versions(
        repo, [sys.executable, "train.py"], repo / "src/mypkg/__init__.py", PYTHONPATH=path
    )
    run_json = next((repo / ".florsql").rglob("run.json"))
    assert json.loads(run_json.read_text())["import_path"] == [["src", "front"]]
    other = copy_repo(repo, tmp_path / "r2")  # the same history, nothing replayed yet
    # queried with the run's PYTHONPATH: it names today's checkout, and is followed
    assert _ask(sys.executable, repo, how, PYTHONPATH=path) == EXPECTED
    # and without it (another shell): the run's entry is put back in the worktree
    assert _ask(sys.executable, other, how, PYTHONPATH="") == EXPECTED


def test_follow_worktree_leaves_what_the_version_does_not_hold(tmp_path: Path) -> None:
    """Linked ignored folders (a ``.venv`` inside the repository), the store, paths outside the
    repository and paths the version lacks stay as they are; tracked folders move."""
    repo, tree = tmp_path / "repo", tmp_path / "repo" / ".florsql" / "worktrees" / "t"
    for d in ("src", "lib/inner", ".venv/site", "gone"):
        (repo / d).mkdir(parents=True)
    for d in ("src", "lib/inner"):
        (tree / d).mkdir(parents=True)
    (tree / ".venv").symlink_to(repo / ".venv", target_is_directory=True)
    saved = list(sys.path)
    try:
        sys.path[:] = [
            str(tree),
            str(repo / "src"),
            str(repo / "lib" / "inner"),
            str(repo / ".venv" / "site"),
            str(repo / "gone"),
            str(repo / ".florsql" / "x"),
            str(tmp_path / "elsewhere"),
            str(repo),
        ]
        imports.follow_worktree(str(repo), str(tree), [["src", "front"], ["extra", "end"]])
        assert sys.path == [
            str(tree),
            str(tree / "src"),
            str(tree / "lib" / "inner"),
            str(repo / ".venv" / "site"),
            str(repo / "gone"),
            str(repo / ".florsql" / "x"),
            str(tmp_path / "elsewhere"),
            str(tree),
        ]
    finally:
        sys.path[:] = saved


NOTED = """
import importlib, json, os, sys
from florsql.replay import imports
repo, tree, link = sys.argv[1:4]
sys.path[:0] = [os.path.join(repo, "src"), link, os.path.join(repo, "late")]
importlib.import_module("inrepo")    # noted by the warm worker, by the checkout's path
importlib.import_module("bylink")    # noted too, by a link whose real path is the checkout's
importlib.import_module("json.decoder")  # outside the repository: stays
imports.know_origins()
importlib.import_module("later")     # loaded after the worker noted its modules
changed = imports.follow_worktree(repo, tree, [])
left = [n for n in ("inrepo", "bylink", "later", "json.decoder") if n in sys.modules]
cached = [k for k in sys.path_importer_cache if k.startswith(repo)]
print(json.dumps({"left": left, "cached": cached, "path": sys.path[:3]}))
"""


def test_modules_the_warm_worker_noted_are_followed_as_before(tmp_path: Path) -> None:
    """A warm worker notes the real paths of its modules once (``know_origins``, session 41:
    resolving them again in each task took 70-140 ms of its start); a module it loaded from
    the checkout, by the checkout's path or through a link into it, and one loaded after it
    noted them are all forgotten, and the checkout's folders leave the importer cache."""
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    for folder, module in (("src", "inrepo"), ("pkgs", "bylink"), ("late", "later")):
        write(repo / folder / f"{module}.py", "X = 1\n")
        write(tree / folder / f"{module}.py", "X = 2\n")
    link = tmp_path / "outside"
    link.symlink_to(repo / "pkgs", target_is_directory=True)
    proc = subprocess.run(
        [sys.executable, "-c", NOTED, str(repo), str(tree), str(link)],
        capture_output=True,
        text=True,
        env=script_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["left"] == ["json.decoder"]
    assert out["cached"] == []
    assert out["path"] == [str(tree / "src"), str(tree / "pkgs"), str(tree / "late")]


def test_the_launcher_runs_a_script_as_python_does(tmp_path: Path) -> None:
    """``python -m florsql.replay.imports SCRIPT ARGS``: the script's folder first on the path,
    its argv, ``__name__ == "__main__"``, its exit status."""
    write(
        tmp_path / "d" / "s.py",
        textwrap.dedent(
            """
            import sys, os
            print(sys.argv, os.path.basename(sys.path[0]), __name__)
            sys.exit(3)
            """
        ),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "florsql.replay.imports", str(tmp_path / "d" / "s.py"), "a"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3
    assert proc.stdout.split() == [f"['{tmp_path / 'd' / 's.py'}',", "'a']", "d", "__main__"]


SHADOW = """
import profile as prof  # the repository's own profile.py and statistics.py
import statistics as st

import torch

import florsql as flor

w = torch.ones(2)
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(2)):
        w = w * 2
        flor.log("tag", prof.TAG)
"""


def test_a_module_named_as_one_the_warm_worker_preloaded(tmp_path: Path) -> None:
    """The warm worker preloads torch and torch._dynamo, which import the standard library's
    ``profile`` and ``statistics``: a script beside its own ``profile.py`` and
    ``statistics.py`` got those instead in replay (an AttributeError, the values NULL)."""
    repo = make_repo(
        tmp_path / "r",
        {
            "train.py": SHADOW,
            "profile.py": 'TAG = "mine"\n',
            "statistics.py": "def spread(xs):\n    return max(xs) - min(xs)\n",
        },
    )
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=repo, capture_output=True, text=True, env=script_env()
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    write(
        repo / "train.py",
        SHADOW.replace(
            'flor.log("tag", prof.TAG)',
            'flor.log("tag", prof.TAG)\n'
            '        flor.log("s", st.spread(w.tolist()) + len(prof.TAG))',
        ),
    )
    script = repo.parent / "ask.py"
    script.write_text(ASK.replace('r["tot"]', 'r["tag"]').replace('r["val"]', 'r["s"]'))
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(repo),
            "warm",
            "SELECT epoch, tag, s FROM logs ORDER BY epoch",
        ],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [
        [0, "mine", 4.0],
        [1, "mine", 4.0],
    ], proc.stderr[-3000:]


def test_a_file_of_the_checkout_read_by_its_path_there_is_the_versions(tmp_path: Path) -> None:
    """In a replay task, a file the worktree holds as the version's own, opened for reading by
    its path in the user's checkout (``--config /abs/repo/configs/base.json``), is read from
    the worktree; a file the worktree links to (an ignored folder), one the version lacks, the
    store and paths outside stay as they are; a write still goes to the private copy."""
    from florsql.record.watch import WriteSandbox

    repo, tree, private = tmp_path / "repo", tmp_path / "repo/.florsql/worktrees/v1", tmp_path / "p"
    write(repo / "configs/base.json", "today")
    write(repo / "data/x.csv", "data")
    write(repo / "only_today.txt", "new")
    write(tree / "configs/base.json", "then")
    (tree / "data").symlink_to(repo / "data")
    box = WriteSandbox(
        [str(repo), str(repo / ".florsql/worktrees")],
        [str(repo / ".florsql")],
        str(private),
        (str(repo), str(tree)),
    )
    assert box.path(str(repo / "configs/base.json"), writing=False) == str(
        tree / "configs/base.json"
    )
    assert box.path(repo / "configs" / "base.json", writing=False) == str(
        tree / "configs/base.json"
    )
    for same in (repo / "data/x.csv", repo / "only_today.txt", tmp_path / "elsewhere.txt"):
        assert box.path(str(same), writing=False) == str(same)
    assert box.path(str(tree / "configs/base.json"), writing=False) == str(
        tree / "configs/base.json"
    )
    written = box.path(str(repo / "configs/base.json"), writing=True)
    assert str(written).startswith(str(private))
    assert box.path(str(repo / "configs/base.json"), writing=False) == written  # its copy now
    assert (repo / "configs/base.json").read_text() == "today"


ASK_RAY = """
import json, sys
from florsql.engine.session import Engine
from florsql.replay import PlanExecutor, RayExecutor
repo, how, sql = sys.argv[1:4]
ex = RayExecutor(1, warm=how == "warm")  # a local Ray cluster of this process's own
try:
    with Engine(repo, replay="auto", executor=PlanExecutor(ex)) as eng:
        rows = eng.execute(sql).table.to_pylist()
finally:
    ex.close()
print(json.dumps([[r["epoch"], r["tot"], r["val"]] for r in rows]))
"""


@pytest.mark.slow  # a local Ray cluster starts in the query's process
@pytest.mark.parametrize("how", ["warm", "cold"])
def test_ray_tasks_import_the_versions_package_not_the_checkouts(tmp_path: Path, how: str) -> None:
    """The Ray executor ships the version's files to a node; a node that also sees the
    user's checkout (one machine, or a shared filesystem) has the same editable install, whose
    finder maps ``mypkg`` to the checkout: it follows the shipped tree, as on the local
    executor (was: v1's value computed with v2's ``mypkg``)."""
    pytest.importorskip("ray")
    pyproject = PYPROJECT + '\n[tool.setuptools]\npackages = ["mypkg"]\n'
    repo = make_repo(
        tmp_path / "r",
        {"scripts/train.py": TRAIN, "mypkg/__init__.py": PKG, "pyproject.toml": pyproject},
    )
    python = _venv(tmp_path, repo)
    _two_versions(repo, [python, "scripts/train.py"], repo / "mypkg/__init__.py")
    script = repo.parent / "ask_ray.py"
    script.write_text(ASK_RAY)
    env = script_env(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run(
        [python, str(script), str(repo), how, QUERY],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == EXPECTED
