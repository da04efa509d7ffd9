"""Replay tasks: what one worker process runs, and how a run's iterations split into them."""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from florsql.plan.replay_plan import Chunk
from florsql.store.replays import ReplaySpec


@dataclass
class RunRequest:
    """Everything to compute for one recorded run (the scheduler's input, one per run)."""

    run_id: str
    vid: str
    filename: str  # the script, relative to the repo root
    names: list[str]
    iterations: list[int] | None = None  # needed outer iterations; None: every one
    inner: dict[str, list[int]] = field(default_factory=dict)
    cwd: str = "."
    argv: list[str] = field(default_factory=list)  # the run's recorded argv (argv[0] = script)
    module: str | None = None  # ``python -m MODULE``: the module the run was started as
    loop: str | None = None  # the outermost flor.loop; None: found from the code
    total: int | None = None  # how many outer iterations the run recorded
    iteration_seconds: float = 0.0  # recorded mean wall time of one outer iteration
    compare: list[str] = field(default_factory=list)
    chunks: tuple[Chunk, ...] = ()  # the planner's tasks for this run, run as given
    #: per name (lower case): the fingerprint of today's statements for it (the planner's);
    #: the task records it, and its values count only while it is current
    fingerprints: dict[str, str] = field(default_factory=dict)
    #: per file: the digest of the text the fingerprints were computed from (the planner's)
    sources: dict[str, str] = field(default_factory=dict)
    #: today's other log names placed beside ``names`` where the version lacks them, run but
    #: not stored (the planner's :attr:`RunReplay.companions`): one may draw from an RNG
    companions: list[str] = field(default_factory=list)


@dataclass
class Task:
    """One worker process: a spec, and how to start the patched script."""

    spec: ReplaySpec
    spec_path: Path
    repo: Path
    script: Path
    cwd: Path
    argv: list[str]
    estimate: float = 0.0
    fallback: list[list[Any]] | None = None  # steps to run instead if verification fails
    tree: Path | None = None  # the worktree (version's files + patches) script and cwd are in
    patches: dict[str, str] = field(default_factory=dict)  # path -> patched source (Ray ships)
    module: str | None = None  # run as ``python -m module`` from ``cwd`` (as recorded)
    #: the run's import path entries inside the repository (run.json's ``import_path``)
    import_path: list[list[str]] = field(default_factory=list)
    #: a git directory whose ``HEAD`` is the commit the run's checkout had
    #: (:func:`florsql.replay.worktree.head_gitdir`): git in the task answers for the run
    git_dir: Path | None = None
    #: the user's checkout whose paths the task's import path and file reads follow into
    #: ``tree`` (None: ``repo``; a Ray node's task: the driver's repository, which ``repo``,
    #: the shipped tree there, is not)
    checkout: Path | None = None
    #: the ``PYTHONHASHSEED`` the run hashed strings with (None: random, or not known)
    hash_seed: str | None = None

    def command(self, python: str) -> list[str]:
        """The command line that starts this task in a fresh interpreter ``python``: the script
        by its path, or ``-m module`` for a run started so, through
        :mod:`florsql.replay.imports` (imports from the user's checkout follow the worktree)."""
        launch = [python, "-m", "florsql.replay.imports"]  # follows the worktree first
        if self.module:
            return [*launch, "-m", self.module, *self.argv]
        return [*launch, str(self.script), *self.argv]

    @property
    def forks(self) -> bool:
        """Whether a warm worker may run it: a forked child hashes strings as its worker does
        (``PYTHONHASHSEED=0``); a run recorded with another seed replays in a fresh
        interpreter started with it (a set of strings iterates in the run's order)."""
        return self.hash_seed in (None, "0")

    @property
    def log_path(self) -> Path:
        return Path(self.spec.out_dir) / "worker.log"

    @property
    def threads(self) -> int:
        """torch's intra-op threads the task uses: the run's recorded count (1 if unknown)."""
        counts = self.spec.torch_threads
        return max(1, int(counts[0])) if counts else 1


@dataclass
class TaskResult:
    task_id: str
    ok: bool
    returncode: int
    seconds: float
    error: str | None = None
    iteration: int | None = None
    traceback: str | None = None


def heavy_imports(source: str, repo: Path) -> list[str]:
    """Top-level modules a script imports that live outside the repository (preloadable)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module.split(".")[0])
    out = []
    root = str(repo.resolve())
    for name in dict.fromkeys(names):
        if name in sys.builtin_module_names or name == "florsql":
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        origin = spec.origin if spec else None
        if origin and not origin.startswith(root):
            out.append(name)
    return out
