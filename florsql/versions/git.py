"""Thin, short-lived ``git`` subprocess calls.

GitPython documents leaking resources in long-running processes (a REPL, a server) and costs
about 100 ms to import, which a training script's first record call should not pay. Every call
here is one ``git`` process that reads or writes objects and refs only; none touches HEAD, the
user's index, the working tree or the stash.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from florsql.errors import VersionError

#: Fixed identity and dates make a snapshot commit a function of its tree alone.
_SNAPSHOT_ENV = {
    "GIT_AUTHOR_NAME": "florsql",
    "GIT_AUTHOR_EMAIL": "florsql@localhost",
    "GIT_COMMITTER_NAME": "florsql",
    "GIT_COMMITTER_EMAIL": "florsql@localhost",
    "GIT_AUTHOR_DATE": "1970-01-01T00:00:00+0000",
    "GIT_COMMITTER_DATE": "1970-01-01T00:00:00+0000",
}


#: Set in a replay task whose ``GIT_DIR`` florsql pointed at the run's commit
#: (:func:`florsql.replay.worktree.head_gitdir`); florsql's own git calls drop those variables.
REPLAY_GIT = "FLORSQL_REPLAY_GIT"


def run_git(
    repo: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> bytes:
    """Run ``git -C repo args...`` and return its stdout; a failure raises :class:`VersionError`."""
    full_env = dict(os.environ)
    if full_env.pop(REPLAY_GIT, None):  # a replay task's git (head_gitdir): not florsql's own
        for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            full_env.pop(name, None)
    # Hooks, pagers and the user's editor never run for florsql's plumbing calls.
    full_env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"})
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=input,
            capture_output=True,
            env=full_env,
            check=False,
        )
    except FileNotFoundError as e:
        raise VersionError("git is not installed or not on PATH; florsql needs git >= 2.20") from e
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise VersionError(f"git {' '.join(args[:3])} failed in {repo}: {err}")
    return proc.stdout


def find_repo_root(start: Path, script: Path | None = None) -> Path:
    """The top of the git work tree containing ``start``, or a :class:`VersionError` saying how
    to make one (``script``: the recording script ``start`` is the folder of, whose advice
    differs: no record call takes a repository's path)."""
    if not start.exists():
        raise VersionError(
            f"{start} does not exist: pass the path of your project's git repository "
            "(`--repo PATH` on the command line, `florsql.connect(PATH)` in Python)"
        )
    start = start if start.is_dir() else start.parent
    try:
        proc = subprocess.run(
            ["git", "-C", str(start), "rev-parse", "--show-toplevel"],
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as e:
        raise VersionError("git is not installed or not on PATH; florsql needs git >= 2.20") from e
    if proc.returncode != 0 and script is not None:
        # (session 45: the advice was "pass repo=PATH / --repo PATH", which no record call
        # or script takes)
        raise VersionError(
            f"{script} is not inside a git repository. florsql pins every run to a version "
            "of the repository that holds its script (a replay runs that version), so the "
            "script must live in one: move it into your project's repository, or run `git "
            f"init` in {start} (no commit is needed)"
        )
    if proc.returncode != 0:
        raise VersionError(
            f"{start} is not inside a git repository. florsql pins every run to a code version, "
            f"so it needs one: run `git init` in your project folder (no commit is needed), "
            "or point at an existing repository (`--repo PATH` on the command line, "
            "`florsql.connect(PATH)` in Python)."
        )
    return Path(os.fsdecode(proc.stdout.rstrip(b"\n")))  # a path need not be UTF-8 (s45)


def head_commit(repo: Path) -> str | None:
    """The user's HEAD commit, or None in a repository with no commits yet."""
    out = run_git(repo, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
    sha = out.decode().strip()
    return sha or None
