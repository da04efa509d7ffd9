"""Shared test helpers: real git repos in temp dirs, real subprocess recordings."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, check=True, text=True
    )
    return out.stdout


def make_repo(path: Path, files: dict[str, str] | None = None, commit: bool = True) -> Path:
    """A fresh git repo at ``path`` holding ``files`` (dedented), committed if asked."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "Test")
    for name, text in (files or {}).items():
        write(path / name, text)
    if commit and files:
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "initial")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def script_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    env.update(extra)
    return env


def run_script(
    repo: Path, script: str, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python script args...`` in ``repo`` the way a user would."""
    proc = subprocess.run(
        [sys.executable, script, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=script_env(**env),
        timeout=240,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_dirs(repo: Path) -> list[Path]:
    root = repo / ".florsql" / "runs"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
