"""The query host (florsql/cli_host.py): while the replay service runs, one-shot
``florsql query`` commands run in a forked child of a process that imported the query side
already, on the command's own standard streams, folder and environment.

Every command here runs as users run it, in its own process; each is compared with the same
command run in its own process without the host (``FLORSQL_QUERY_HOST=0``). The host's log
lines (in the service's log) say which commands it ran, and as which pid.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from florsql import cli_host
from florsql.replay import service
from florsql.store import layout
from tests.helpers import make_repo, pid_alive, script_env, wait_gone, write
from tests.helpers_replay import warm_script
from tests.test_replay_service import SCRIPT  # two runs' script, as the service's tests

ANCHOR = 'flor.log("w", state["w"])'
ON = {"FLORSQL_QUERY_HOST": "1"}
OFF = {"FLORSQL_QUERY_HOST": "0"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Two recorded runs; today's script logs ``w2`` too; a first query replayed it, so the
    service runs and has started its query host, now listening."""
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT})
    for run in range(2):
        warm_script(repo, "train.py", "--run", str(run), FLORSQL_CHECKPOINT_PERIOD="1")
    add(repo, 'flor.log("w2", state["w"] * 2)')
    first = florsql(repo, "query", "--format", "json", "SELECT run, epoch, w2 FROM logs", **ON)
    assert first.returncode == 0, first.stderr
    wait_for_host(repo)
    return repo


def add(repo: Path, *statements: str) -> None:
    new = "\n        ".join([ANCHOR, *statements])
    write(repo / "train.py", SCRIPT.replace(ANCHOR, new))


def florsql(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from florsql.cli import main; main()", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=script_env(**env),
        timeout=300,
    )


def git_head(repo: Path) -> str:
    """The version the runs recorded (the repository's only commit holds train.py)."""
    runs = sorted((repo / ".florsql" / "runs").iterdir())
    return str(json.loads((runs[0] / "run.json").read_text())["vid"])


def host_log(repo: Path) -> list[int]:
    """The pids of the commands the query host ran, in order."""
    log = (layout.store_dir(repo) / service.LOG).read_text()
    return [int(p) for p in re.findall(r"query \d+: pid (\d+)", log)]


def host_pid(repo: Path) -> int | None:
    info = service.status(layout.store_dir(repo))
    return None if info is None else info.get("query_host")


def wait_for_host(repo: Path, timeout: float = 120.0) -> None:
    """Until the host listens (its socket file is there: an event, polled)."""
    sock = layout.store_dir(repo) / cli_host.SOCKET
    deadline = time.monotonic() + timeout
    while not sock.exists():
        assert time.monotonic() < deadline, "the query host never listened"
        time.sleep(0.02)


def test_commands_run_in_the_host_and_answer_as_in_their_own_process(repo: Path) -> None:
    commands = [
        ("query", "--format", "json", "SELECT run, epoch, w, w2 FROM logs ORDER BY run, epoch"),
        ("query", "--format", "csv", "SELECT run, count(*) AS n, max(w2) FROM logs GROUP BY ALL"),
        ("query", "SELECT run, epoch, w2 FROM logs WHERE epoch >= 1 ORDER BY 1, 2"),
        ("query", "SELECT w22 FROM logs"),  # an error: its message and exit status
        ("query", "SELECT 1 AS one; SELECT 2"),
        ("explain", "SELECT run, epoch, w2 FROM logs WHERE epoch = 2"),
        ("runs", "--format", "csv"),
        ("propagate", "--version", git_head(repo), "train.py"),
    ]
    for args in commands:
        served = len(host_log(repo))
        there = florsql(repo, *args, **ON)
        assert len(host_log(repo)) == served + 1, f"{args} did not run in the host"
        here = florsql(repo, *args, **OFF)
        assert len(host_log(repo)) == served + 1
        assert (there.returncode, there.stdout, there.stderr) == (
            here.returncode,
            here.stdout,
            here.stderr,
        ), args
    assert florsql(repo, "query", "SELECT w22 FROM logs", **ON).returncode == 1


def test_a_replaying_query_in_the_host_equals_a_full_run(repo: Path, tmp_path: Path) -> None:
    """A new statement: the host's child plans, has the service replay, answers; the values
    equal the hand-patched script run in full."""
    add(repo, 'flor.log("w2", state["w"] * 2)', 'flor.log("w3", round(state["w"] ** 2, 9))')
    served = len(host_log(repo))
    got = florsql(repo, "query", "--format", "json", "SELECT run, epoch, w3 FROM logs", **ON)
    assert got.returncode == 0, got.stderr
    assert len(host_log(repo)) == served + 1
    oracle = make_repo(tmp_path / "oracle", {"train.py": (repo / "train.py").read_text()})
    for run in range(2):
        warm_script(oracle, "train.py", "--run", str(run))
    sql = "SELECT run, epoch, w3 FROM logs ORDER BY run, epoch"
    there = florsql(repo, "query", "--format", "json", sql, **ON)
    want = florsql(oracle, "query", "--format", "json", sql, **OFF)
    assert there.returncode == want.returncode == 0
    assert there.stdout == want.stdout and '"w3": null' not in there.stdout


@pytest.mark.slow
def test_another_environment_runs_in_its_own_process(repo: Path) -> None:
    """A FLORSQL_ variable the host was not started with (modules may read it at import):
    the command runs in its own process, with the same answer."""
    sql = "SELECT run, epoch, w2 FROM logs ORDER BY 1, 2"
    served = len(host_log(repo))
    other = florsql(repo, "query", sql, FLORSQL_SOMETHING_ELSE="1", **ON)
    assert other.returncode == 0, other.stderr
    assert len(host_log(repo)) == served
    assert other.stdout == florsql(repo, "query", sql, **OFF).stdout


def start_blocked(repo: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    """A command in the host whose replay task runs a statement that never returns: the
    command's process, and the pid of the host's child running the command, once the task
    runs."""
    started = tmp_path / "started"
    never = tmp_path / "never"
    wait = (
        f'flor.log("w9", __import__("pathlib").Path({str(started)!r}).touch() or '
        f'[__import__("time").sleep(0.05) for _ in iter(lambda: '
        f'__import__("os").path.exists({str(never)!r}), True)])'
    )
    add(repo, wait)
    served = len(host_log(repo))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from florsql.cli import main; main()", "query", "--replay",
         "auto", "SELECT w9 FROM logs"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # the statement touches a file outside the repository for the test to see: a replay
        # writes such paths to private copies unless told (session 44)
        env=script_env(**ON, FLORSQL_REPLAY_WRITABLE=str(tmp_path)),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not started.exists():  # the replay task runs the statement: the command is in it
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the replay task never started"
        time.sleep(0.02)
    pids = host_log(repo)
    assert len(pids) == served + 1
    return proc, pids[-1]


def wait_tasks_gone(repo: Path) -> None:
    for pid in [int(p) for p in re.findall(r"task \S+: pid (\d+)", log_text(repo))]:
        wait_gone(pid)


@pytest.mark.slow
def test_ctrl_c_reaches_the_command_in_the_host(repo: Path, tmp_path: Path) -> None:
    """SIGINT to the command's process (a terminal's Ctrl-C) interrupts the command running in
    the host; it exits as it would alone, and its replay task is killed."""
    proc, child = start_blocked(repo, tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, (out, err)
    wait_gone(child)
    wait_tasks_gone(repo)


def test_a_killed_command_takes_its_child_in_the_host_along(repo: Path, tmp_path: Path) -> None:
    """``kill -9`` of the command's process (nothing to forward): the host's child running the
    command ends too, and with it its replay task."""
    proc, child = start_blocked(repo, tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    wait_gone(child)
    wait_tasks_gone(repo)


def log_text(repo: Path) -> str:
    return (layout.store_dir(repo) / service.LOG).read_text()


@pytest.mark.slow
def test_the_host_goes_with_the_service(repo: Path) -> None:
    pid = host_pid(repo)
    assert pid is not None and pid_alive(pid)
    status = florsql(repo, "replay-service", "status", **ON).stdout
    assert f"query host    pid {pid}" in status
    assert florsql(repo, "replay-service", "stop", **ON).returncode == 0
    wait_gone(pid)
    assert not (layout.store_dir(repo) / cli_host.SOCKET).exists()
    # No host: commands run in their own process.
    served = len(host_log(repo))
    assert florsql(repo, "query", "SELECT count(*) FROM logs", **OFF).returncode == 0
    again = florsql(repo, "query", "--replay", "off", "SELECT count(*) FROM logs", **ON)
    assert again.returncode == 0 and len(host_log(repo)) == served


def test_a_dead_hosts_socket_is_ignored(repo: Path) -> None:
    """A host killed with SIGKILL leaves its socket file; commands run in their own process."""
    pid = host_pid(repo)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    assert (layout.store_dir(repo) / cli_host.SOCKET).exists()
    sql = "SELECT run, epoch, w2 FROM logs ORDER BY 1, 2"
    got = florsql(repo, "query", sql, **ON)
    assert got.returncode == 0, got.stderr
    assert got.stdout == florsql(repo, "query", sql, **OFF).stdout


#: The ``florsql`` console script's code, noting which modules its process imported.
ENTRY = (
    "import atexit, os, sys\n"
    "out = os.environ['CLIENT_MODULES']\n"
    "atexit.register(lambda: open(out, 'w').write(' '.join(sys.modules)))\n"
    "from florsql.entry import main\n"
    "main()\n"
)


def test_the_command_hands_a_query_to_the_host_before_loading_the_cli(
    repo: Path, tmp_path: Path
) -> None:
    """``florsql query`` (the console script, florsql.entry) goes to the host without importing
    the CLI; the answer, error and exit status are the full CLI's. ``--repo`` and other commands
    take the CLI's own path."""
    modules = tmp_path / "modules"

    def entry(*args: str, cwd: Path = repo) -> subprocess.CompletedProcess[str]:
        env = script_env(**ON, CLIENT_MODULES=str(modules))
        return subprocess.run(
            [sys.executable, "-c", ENTRY, *args], cwd=cwd, capture_output=True, text=True,
            env=env, timeout=300,
        )  # fmt: skip

    sub = repo / "sub"
    sub.mkdir()
    for args, where in [
        (("query", "--format", "json", "SELECT run, epoch, w, w2 FROM logs ORDER BY 1, 2"), repo),
        (("query", "SELECT w22 FROM logs"), repo),  # an error
        (("explain", "SELECT run, w2 FROM logs WHERE epoch = 2"), sub),  # from a subfolder
    ]:
        served = len(host_log(repo))
        there = entry(*args, cwd=where)
        assert len(host_log(repo)) == served + 1, f"{args} did not run in the host"
        assert "click" not in modules.read_text().split(), "the CLI was imported"
        here = florsql(repo, *args, **OFF)
        assert (there.returncode, there.stdout, there.stderr) == (
            here.returncode,
            here.stdout,
            here.stderr,
        ), args
    served = len(host_log(repo))
    other = entry("query", "--repo", str(repo), "SELECT count(*) AS n FROM logs")
    assert other.returncode == 0 and '"n"' not in other.stderr
    assert "click" in modules.read_text().split()  # the CLI's path (it may delegate itself)
    assert entry("--help").returncode == 0 and "query" in entry("--help").stdout
    assert len(host_log(repo)) >= served
