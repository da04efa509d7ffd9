"""Session 48 (sweep O): what a killed run keeps, and where a run was launched.

- Values logged before the first outer loop waited for its first iteration's end to reach
  disk: a SIGKILL in a long first epoch lost them (``n_params``, logged 0.6 s before). The
  outer loop's start now hands them to the writer; its end hands over its last iterations'
  rows too (they waited for the run's end, 5 of 7 values lost by a kill in the evaluation
  after the loop).
- ``run.json``'s ``cwd`` was the folder at the first record call: a script launched as
  ``python sub/a.py`` that runs ``os.chdir("sub")`` before ``flor.arg`` recorded ``sub``, and its
  replays started there, where its own ``chdir`` failed (every value NULL). It is the folder
  the script was launched in now (as ``import florsql`` ran).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import florsql
from tests.helpers import make_repo, run_dirs, run_script, script_env, write

HEAD_KILL = """import sys
import florsql as flor
flor.log("n_params", 1234)
for epoch in flor.loop("epoch", range(3)):
    print("in", epoch, flush=True)
    sys.stdin.readline()  # held here (a long first epoch) until the test kills it
    flor.log("loss", epoch)
"""

TAIL_KILL = """import sys
import florsql as flor
for epoch in flor.loop("epoch", range(5)):
    flor.log("loss", epoch * 0.5)
flor.log("final", 42)
print("after", flush=True)
sys.stdin.readline()  # a long evaluation after the loop, killed
"""


def _killed(repo: Path, marker: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "train.py"],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().startswith(marker)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=120)
        proc.stdin.close()
        proc.stdout.close()


def _rows(repo: Path, sql: str, replay: str = "off") -> list[tuple[object, ...]]:
    with florsql.connect(repo, replay=replay) as con:
        return list(con.cursor().execute(sql).fetchall())


def test_a_value_logged_before_the_loop_outlives_a_kill_in_the_first_epoch(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": HEAD_KILL})
    _killed(repo, "in 0")
    assert _rows(repo, "SELECT n_params FROM logs WHERE n_params IS NOT NULL") == [(1234,)]


def test_the_last_iterations_outlive_a_kill_after_the_loop(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": TAIL_KILL})
    _killed(repo, "after")
    rows = _rows(repo, "SELECT epoch, loss FROM logs WHERE loss IS NOT NULL ORDER BY 1")
    assert rows == [(e, e * 0.5) for e in range(5)]


CHDIR = """import os
import florsql as flor
os.chdir("sub")
scale = flor.arg("scale", 2.0)
w = 1.0
for epoch in flor.loop("epoch", range(3)):
    w = w * scale + len(open("data.txt").read())
    flor.log("w", w)
"""


@pytest.mark.parametrize("before_import", [False, True], ids=["after_import", "before_import"])
def test_the_launch_folder_is_recorded_and_replays_start_there(
    tmp_path: Path, before_import: bool
) -> None:
    """``os.chdir("sub")`` before the first record call, and (sweep Q) before ``import
    florsql`` too: the folder ``sub/a.py`` was given from is the repository's root."""
    script = CHDIR
    if before_import:
        script = 'import os\nos.chdir("sub")\n' + CHDIR.replace('os.chdir("sub")\n', "")
    repo = make_repo(tmp_path / "r", {"sub/a.py": script, "sub/data.txt": "abc"})
    run_script(repo, "sub/a.py")
    (run,) = run_dirs(repo)
    assert json.loads((run / "run.json").read_text())["cwd"] == "."
    write(repo / "sub/a.py", script + '    flor.log("half", w / 2)\n')
    assert _rows(repo, "SELECT epoch, half FROM logs ORDER BY 1", "auto") == [
        (0, 2.5),
        (1, 6.5),
        (2, 14.5),
    ]


CTRL_C = """import sys
import florsql as flor
try:
    for epoch in flor.loop("epoch", range(100)):
        flor.log("loss", epoch)
        if epoch == 1:
            print("ready", flush=True)
            sys.stdin.readline()  # Ctrl-C arrives while it waits
except KeyboardInterrupt:
    flor.log("interrupted", 1)
flor.log("test_acc", 0.9)
"""


def test_a_ctrl_c_the_script_catches_ends_a_finished_run(tmp_path: Path) -> None:
    """Sweep O: a script that catches KeyboardInterrupt (stop training, then evaluate) and ends
    with exit code 0 was marked killed (SIGINT); an uncaught one still is."""

    repo = make_repo(tmp_path / "r", {"train.py": CTRL_C})
    for caught in (True, False):
        text = CTRL_C if caught else CTRL_C.replace("except KeyboardInterrupt", "except OSError")
        write(repo / "train.py", text)
        proc = subprocess.Popen(
            [sys.executable, "train.py"],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=script_env(),
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal
        )
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().startswith("ready")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        assert (proc.returncode == 0) == caught, proc.returncode
    docs = [json.loads((r / "run.json").read_text()) for r in run_dirs(repo)]
    statuses = sorted((d["status"], d["error"] is None) for d in docs)
    assert statuses == [("finished", True), ("killed", False)], statuses
