"""One real terminal session (pexpect): a query over two lines, a dot-command, Ctrl-C on a
running query and at the prompt, then Ctrl-D. XDG dirs and HOME point into tmp."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pexpect

from tests.test_flight_support import recorded_repo

SLOW = "SELECT sum(hash(a.range + b.range)) FROM range(1000000) a, range(1000000) b;"


def test_a_terminal_session(tmp_path: Path) -> None:
    repo = recorded_repo(tmp_path / "proj")
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "TERM": "xterm",
        "PROMPT_TOOLKIT_NO_CPR": "1",
    }
    code = "from florsql.cli import main; main()"
    child = pexpect.spawn(
        sys.executable, ["-c", code, "--repo", str(repo)],
        env=env, encoding="utf-8", timeout=30, dimensions=(40, 160),
    )  # fmt: skip
    try:
        child.expect("florsql>")
        child.send("SELECT lr, count(*) AS n\r")
        child.expect(r"\.\.\.>")  # no ';' yet: a continuation line
        child.send("FROM logs GROUP BY ALL ORDER BY ALL;\r")
        child.expect(r"0\.1\s+16\s+0\.2\s+16\s+\(2 rows\)")
        child.expect("florsql>")
        child.send(".tables\r")
        child.expect(r"logs\s+runs\s+args")
        child.expect("florsql>")
        child.send(SLOW + "\r")
        time.sleep(1.0)
        child.sendintr()
        child.expect("cancelled")
        child.expect("florsql>")
        child.send("SELECT 'still here' AS s;\r")
        child.expect(r"still here\s+\(1 row\)")
        child.expect("florsql>")
        child.send("SELECT 'half typed")
        child.sendintr()  # at the prompt, Ctrl-C drops the line
        # A redraw of the half-typed line also shows the prompt: sync on what only a dropped
        # line gives (a garbled line would answer with an error, not this row).
        child.send("SELECT 'after' AS s;\r")
        child.expect(r"after\s+\(1 row\)")
        child.expect("florsql>")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    history = (tmp_path / "data" / "florsql" / "history").read_text()
    assert "+.tables\n" in history and "+SELECT lr, count(*) AS n\n" in history
