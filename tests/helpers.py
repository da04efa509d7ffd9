"""Shared test helpers: real git repos in temp dirs, real subprocess recordings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, check=True, text=True
    )
    return out.stdout


def copy_repo(src: Path, dst: Path) -> Path:
    """``shutil.copytree(src, dst, symlinks=True)``, leaving out socket files (a replay
    service's ``.florsql/replay.sock``, which copytree cannot copy)."""

    def sockets(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if stat.S_ISSOCK(os.lstat(os.path.join(folder, n)).st_mode)]

    shutil.copytree(src, dst, symlinks=True, ignore=sockets)
    return dst


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


def stop_replay_services(root: Path) -> list[int]:
    """Stop (SIGTERM) every replay service of a repository up to three folders below ``root``
    and wait until each has exited; returns their pids."""
    pids = []
    for depth in ("*", "*/*", "*/*/*"):
        for state in root.glob(f"{depth}/.florsql/replay-service.json"):
            try:
                pid = int(json.loads(state.read_text())["pid"])
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError, KeyError):
                continue
            pids.append(pid)
    for pid in pids:
        wait_gone(pid)
    return pids


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 60.0) -> None:
    """Until ``pid`` has exited (an event, polled; the timeout only guards a hang)."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        time.sleep(0.01)


def service_tasks(repo: Path) -> list[tuple[str, int]]:
    """(task id, pid) of every replay task the repository's replay service forked, from its log
    (every service the repository had; none when no service ran)."""
    from florsql.replay.service import LOG
    from florsql.store import layout

    log = layout.store_dir(repo) / LOG
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("task ") and ": pid " in line:
            task, pid = line[5:].split(": pid ")
            found.append((task, int(pid)))
    return found


def service_task_pids(repo: Path) -> list[int]:
    return [pid for _, pid in service_tasks(repo)]


class StandInFlor:
    """A stand-in ``flor`` for running patched script text in process: ``loop`` iterates,
    ``log`` keeps ``(name, value)`` in order in ``logged``."""

    def __init__(self) -> None:
        self.logged: list[tuple[str, Any]] = []

    def loop(self, name: str, it: Any) -> Any:
        return it

    def log(self, name: str, value: Any) -> Any:
        self.logged.append((name, value))
        return value


def script_frame(ns: dict[str, Any]) -> types.FrameType:
    """A module-level frame whose names are ``ns`` (as a script's), for capture and restore."""
    exec("import sys as _sys\n_frame = _sys._getframe()", ns)
    frame = ns.pop("_frame")
    del ns["_sys"]
    assert isinstance(frame, types.FrameType)
    return frame
