"""Recording stranger sweep s45 (helper session C): signals at a run's end and SIGHUP.

- A signal that arrives while florsql's exit handler writes the run (a multiprocessing Pool's
  ``terminate()`` of a worker that recorded a run, ``with Pool(...)``; a Ctrl-C while the end
  seems to hang) found the run ended, and killed the process mid-flush: 4 pools each logging 3
  values kept [0], [10, 11, 12], [20], [30], three run.json files left "running". Now the
  signal waits for the exit handler (``Lifecycle._on_signal``, ``pending_signal``).
- SIGHUP (a terminal or ssh session closed without nohup) took its default action at once:
  4 of 10 values kept where SIGTERM kept 10. It is handled as SIGTERM is.
"""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import florsql
from tests.helpers import make_repo, run_dirs, run_script, script_env, write


def _sql(repo: Path, sql: str) -> list[tuple[Any, ...]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with florsql.connect(repo=str(repo), replay="off") as con:
            return list(con.cursor().execute(sql).fetchall())


POOL = """import multiprocessing as mp
import florsql as flor


def task(k):
    for e in flor.loop("epoch", range(3)):
        flor.log("sw", k * 10 + e)
    return k


if __name__ == "__main__":
    for i in range(4):
        with mp.get_context("spawn").Pool(1) as pool:
            pool.map(task, [i])
"""


def test_runs_in_pool_workers_keep_every_value(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"pool.py": POOL})
    run_script(repo, "pool.py")
    rows = _sql(repo, "SELECT sw FROM logs WHERE sw IS NOT NULL ORDER BY 1")
    assert [r[0] for r in rows] == [k * 10 + e for k in range(4) for e in range(3)]
    docs = [json.loads((d / "run.json").read_text()) for d in run_dirs(repo)]
    assert len(docs) == 4 and all(d["status"] in ("finished", "killed") for d in docs)


SIGNALLED = """import sys
import florsql as flor

for epoch in flor.loop("epoch", range(1000)):
    for step in flor.loop("step", range(3)):
        flor.log("loss", epoch * 10 + step)
        if epoch == 2 and step == 1:
            print("ready", flush=True)
            sys.stdin.readline()  # blocks until the test closes stdin
"""


def test_sighup_in_the_step_loop_keeps_what_was_logged(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p", {"t.py": SIGNALLED})
    proc = subprocess.Popen(
        [sys.executable, "t.py"],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
        # as a terminal's session has it: a test run under nohup ignores SIGHUP, and a signal
        # ignored at the run's start stays ignored (the run then goes on, as it should)
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGHUP, err
    rows = _sql(repo, "SELECT epoch, step, loss FROM logs WHERE loss IS NOT NULL ORDER BY 1, 2")
    assert rows == [(e, s, e * 10 + s) for e in range(3) for s in range(3)][:8]
    (d,) = run_dirs(repo)
    doc = json.loads((d / "run.json").read_text())
    assert doc["status"] == "killed" and "SIGHUP" in json.dumps(doc.get("error"))


PLAIN = """import florsql as flor
import sys

for e in flor.loop("epoch", range(2)):
    flor.log("loss", e)
print("trained on", sys.argv[1:])
"""


def test_a_command_line_that_is_not_utf8_leaves_queries_working(tmp_path: Path) -> None:
    """``python train.py $'caf\\xe9.csv'``: sys.argv holds a lone surrogate, which made every
    later query of the repository fail ("this is a florsql bug"), the index deleted too."""
    repo = make_repo(tmp_path / "r", {"train.py": PLAIN})
    run_script(repo, "train.py", "good.csv")
    subprocess.run(
        [sys.executable, b"train.py", b"caf\xe9.csv"], cwd=repo, env=script_env(), check=True
    )
    assert _sql(repo, "SELECT count(loss) FROM logs") == [(4,)]
    argvs = [list(r[0]) for r in _sql(repo, "SELECT argv FROM runs")]
    assert ["train.py", "caf\\xe9.csv"] in argvs, argvs


def test_a_repository_path_that_is_not_utf8(tmp_path: Path) -> None:
    """Recording there raised UnicodeDecodeError at the first record call (the training
    died); querying fails with a StoreError that says why (DuckDB opens UTF-8 paths only)."""
    import os

    from florsql.errors import FlorError

    root = os.path.join(os.fsencode(tmp_path), b"caf\xe9_project")
    repo = make_repo(Path(os.fsdecode(root)), {"train.py": PLAIN})
    done = subprocess.run(
        [sys.executable, "train.py"], cwd=root, env=script_env(), capture_output=True, text=True
    )
    assert done.returncode == 0 and "trained on" in done.stdout, done.stderr
    assert run_dirs(repo)
    try:
        _sql(repo, "SELECT count(loss) FROM logs")
    except FlorError as e:
        assert "not UTF-8" in str(e)
    else:  # a DuckDB that opens such paths
        pass


NUMPY = """import numpy as np
import florsql as flor

for e in flor.loop("epoch", range(2)):
    flor.log("ld", np.longdouble(0.5) + e)
    flor.log("z", np.complex64(1 + 2j))
    flor.log("when", np.datetime64("2024-01-01"))
"""


def test_numpy_longdouble_is_a_number_and_others_warn(tmp_path: Path) -> None:
    """``np.longdouble`` was stored as text (``.item()`` keeps it a longdouble): ``avg(ld)``
    failed; ``np.complex64`` and ``np.datetime64`` were stored as text without the warning
    Python's complex and datetime get."""
    repo = make_repo(tmp_path / "r", {"train.py": NUMPY})
    done = run_script(repo, "train.py")
    assert _sql(repo, "SELECT avg(ld), typeof(ld) FROM logs GROUP BY 2") == [(1.0, "DOUBLE")]
    assert done.stderr.count("RecordWarning") == 2, done.stderr


FETCH = """import florsql as flor


def batches(n, e):
    for i in range(n):
        flor.log("fetched", e * 100 + i)  # a per-batch stat, logged as the batch is made
        yield i
    flor.log("epilogue", e)  # after the last item: the loop's parent


w = 0.0
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(3)):
        for b in flor.loop("step", batches(3, epoch)):
            w += b + epoch
            flor.log("loss", w)
#@
"""


def test_values_logged_while_a_loop_fetches_its_item(tmp_path: Path) -> None:
    """A generator's body (or a Dataset's __getitem__) logging as ``flor.loop`` fetches the
    next item: those values went to the loop's parent, where the last one wins (2 of 6 kept,
    silently); they belong to the iteration the item starts."""
    repo = make_repo(tmp_path / "r", {"train.py": FETCH.replace("#@\n", "")})
    run_script(repo, "train.py")
    rows = _sql(repo, "SELECT epoch, step, fetched FROM logs WHERE fetched IS NOT NULL")
    assert sorted(rows) == [(e, s, e * 100 + s) for e in range(3) for s in range(3)]
    rows = _sql(repo, "SELECT epoch, step, epilogue FROM logs WHERE epilogue IS NOT NULL")
    assert sorted(rows) == [(e, None, e) for e in range(3)]


def test_a_replay_logs_a_fetch_s_values_where_the_run_did(tmp_path: Path) -> None:
    """Replay maps a fetch's values the same way: verification agrees (no warning) and a
    hindsight statement in the generator's body answers per step."""
    repo = make_repo(tmp_path / "r", {"train.py": FETCH.replace("#@\n", "")})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    new = FETCH.replace(
        "        yield i\n", '        flor.log("h", e * 10 + i)\n        yield i\n'
    ).replace("#@\n", '        flor.log("w_end", w)\n')
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    run_script(oracle, "train.py")
    write(repo / "train.py", new)
    sql = "SELECT epoch, step, h, w_end FROM logs WHERE h IS NOT NULL OR w_end IS NOT NULL"
    with florsql.connect(oracle, replay="off") as con:
        want = sorted(con.cursor().execute(sql).fetchall(), key=repr)
    with warnings.catch_warnings():
        warnings.simplefilter("error", florsql.errors.NondeterminismWarning)
        with florsql.connect(repo, replay="auto") as con:
            got = sorted(con.cursor().execute(sql).fetchall(), key=repr)
    assert got == want and len(want) == 12


def test_a_script_outside_any_repository_is_told_what_to_do(tmp_path: Path) -> None:
    """Its VersionError said "pass repo=PATH / --repo PATH", which no record call takes."""
    repo = make_repo(tmp_path / "repo", {"README": "x\n"})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "train.py").write_text(PLAIN)
    done = subprocess.run(
        [sys.executable, str(scratch / "train.py")],
        cwd=repo,
        env=script_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "train.py is not inside a git repository" in done.stderr, done.stderr
    assert "move it into" in done.stderr and "repo=PATH" not in done.stderr


def test_a_snapshot_holding_many_untracked_bytes_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forgotten data folder (untracked, not ignored) went into .git at every new version,
    silently (96 MB for 20 files of 5 MB)."""
    from florsql.errors import RecordWarning

    snap = importlib.import_module("florsql.versions.snapshot")

    repo = make_repo(tmp_path / "r", {"train.py": PLAIN, "big.txt": "t" * 4000})
    (repo / "data").mkdir()
    for k in range(3):
        (repo / "data" / f"shard{k}.bin").write_bytes(bytes(3000 + k))
    monkeypatch.setattr(snap, "UNTRACKED_WARN_BYTES", 5000)
    with pytest.warns(RecordWarning, match=r"untracked files .*data/shard2\.bin") as caught:
        snap.snapshot(repo)
    assert "big.txt" not in str(caught[0].message)  # tracked: in git already
    (repo / ".gitignore").write_text("data/\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordWarning)
        snap.snapshot(repo)
