"""Replay coverage at the grain that was stored: partial queries never hide the rest.

Real recorded runs of a small torch script (tests/replay_scripts.py), today's code with new
statements, real replays; every answer is compared with the same query over a full re-run of
the hand-patched old version (the oracle).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from florsql.engine.session import Engine
from florsql.errors import FlorWarning, ReplayFailedWarning
from florsql.replay import LocalExecutor, PlanExecutor
from florsql.store.replays import replays_dir
from florsql.store.segments import list_segments
from tests.helpers import copy_repo, make_repo, run_script, script_env, write
from tests.helpers_replay import warm_script
from tests.replay_scripts import OLD, PATCHED

Rows = list[dict[str, Any]]


@pytest.fixture(scope="module")
def oracle_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full re-run of the hand-patched old version: every value recorded."""
    repo = make_repo(tmp_path_factory.mktemp("oracle") / "o", {"train.py": PATCHED})
    warm_script(repo, "train.py", "--lr", "0.3")
    return repo


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two recorded runs of OLD (recorded once per module)."""
    repo = make_repo(tmp_path_factory.mktemp("coverage") / "h", {"train.py": OLD})
    for lr in ("0.1", "0.3"):
        warm_script(repo, "train.py", "--lr", lr, FLORSQL_CHECKPOINT_PERIOD="2")
    return repo


@pytest.fixture
def history(recorded: Path, tmp_path: Path) -> Path:
    """A copy of the two recorded runs of OLD; then the user edits train.py (no new run)."""
    repo = copy_repo(recorded, tmp_path / "h")
    write(repo / "train.py", PATCHED)
    return repo


def _engine(repo: Path) -> Engine:
    return Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(2)))


def _tasks(repo: Path) -> int:
    return len(list(replays_dir(repo).glob("*/*/done.json")))


def _query(repo: Path, where: str, names: str = "grad_norm") -> Rows:
    """``SELECT epoch, step, <names> FROM logs WHERE run_id = ? AND <where>`` on the lr=0.3
    run, in a fresh engine (a restart between queries)."""
    with _engine(repo) as eng:
        run_id = eng.execute("SELECT run_id FROM runs WHERE lr = 0.3").table.to_pylist()[0]
        sql = (
            f"SELECT epoch, step, {names} FROM logs WHERE run_id = ? AND ({where}) "
            "ORDER BY epoch, step NULLS FIRST"
        )
        return eng.execute(sql, [run_id["run_id"]]).table.to_pylist()


def _oracle(repo: Path, where: str, names: str = "grad_norm") -> Rows:
    with Engine(repo, replay="off") as eng:
        sql = (
            f"SELECT epoch, step, {names} FROM logs WHERE lr = 0.3 AND ({where}) "
            "ORDER BY epoch, step NULLS FIRST"
        )
        return eng.execute(sql).table.to_pylist()


def test_partial_then_wider_query_replays_the_rest(history: Path, oracle_repo: Path) -> None:
    narrow = "epoch = 1 AND step < 2"
    rows = _query(history, narrow)
    assert rows == _oracle(oracle_repo, narrow) and len(rows) == 2
    first = _tasks(history)
    # The wider query (after a restart) gets every step of epoch 1, not the 2 stored so far.
    wide = "epoch = 1"
    rows = _query(history, wide)
    assert rows == _oracle(oracle_repo, wide)
    assert len([r for r in rows if r["grad_norm"] is not None]) == 6
    assert _tasks(history) == first  # epoch 1 was replayed whole the first time
    # Asked again, nothing is replayed.
    assert _query(history, wide) == rows and _tasks(history) == first
    # Another epoch of the same run (which has values of the name now) is replayed.
    other = "epoch = 2"
    rows = _query(history, other)
    assert rows == _oracle(oracle_repo, other)
    assert len([r for r in rows if r["grad_norm"] is not None]) == 6


@pytest.mark.parametrize(
    "names", ["grad_norm, wnorm", pytest.param("wnorm, grad_norm", marks=pytest.mark.slow)]
)
def test_step_restrictions_apply_per_outer_iteration(
    history: Path, oracle_repo: Path, names: str
) -> None:
    where = "(epoch = 3 AND step < 2) OR epoch = 4"
    rows = _query(history, where, names)
    assert rows == _oracle(oracle_repo, where, names)
    steps = [(r["epoch"], r["step"]) for r in rows if r["grad_norm"] is not None]
    assert steps == [(3, 0), (3, 1)] + [(4, s) for s in range(6)]


SPARSE = """
import florsql as flor
state = {"w": float(flor.arg("run", 0))}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(4)):
        for step in flor.loop("step", range(3)):
            state["w"] += 1
            flor.log("w", state["w"])
        if epoch % 2 == 0:
            flor.log("w_even", state["w"])
"""


def test_a_statement_that_logs_nothing_is_not_replayed_again(tmp_path: Path) -> None:
    """Coverage comes from the tasks that ran, not only from values: a statement that logged
    nothing in an iteration (an ``if``) is known to be NULL there."""
    repo = make_repo(tmp_path / "s", {"train.py": SPARSE})
    warm_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", SPARSE + '            flor.log("even", state["w"] * 10)\n')
    sql = "SELECT epoch, even FROM logs WHERE step IS NULL ORDER BY epoch"
    with _engine(repo) as eng:
        first = eng.execute(sql).table.to_pylist()
    assert first == [{"epoch": 0, "even": 30.0}, {"epoch": 2, "even": 90.0}]
    n = _tasks(repo)
    with _engine(repo) as eng:
        assert eng.execute("SELECT epoch, even FROM logs").table.num_rows >= 2
        assert eng.plan("SELECT epoch, even FROM logs").replay.empty
    assert _tasks(repo) == n


FAILING = """
import florsql as flor
state = {"w": 0.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(4)):
        for step in flor.loop("step", range(2)):
            state["w"] += 1
        flor.log("w", state["w"])
"""


def _failed_markers(repo: Path) -> int:
    return len(list(replays_dir(repo).glob("*/*/failed.json")))


def test_a_failed_task_is_remembered_until_the_statement_changes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "f", {"train.py": FAILING})
    warm_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    # Today's statement divides by zero at epoch 2, whatever replays it.
    write(repo / "train.py", FAILING + '        flor.log("inv", 1 / (2 - epoch))\n')
    sql = "SELECT epoch, w, inv FROM logs ORDER BY epoch"
    executor = PlanExecutor(LocalExecutor(1))
    with Engine(repo, replay="auto", executor=executor) as eng:
        with pytest.warns(ReplayFailedWarning) as caught:
            rows = eng.execute(sql).table.to_pylist()
        text = "\n".join(str(w.message) for w in caught)
        # The full reason: exception, line, iteration.
        assert "ZeroDivisionError: division by zero" in text and "at epoch 2" in text
        assert 'train.py line 8: flor.log("inv", 1 / (2 - epoch))' in text
        # The one task failed; the same query then replays what the failure does not explain
        # (epochs 0 and 1, before the failing iteration), in a second round, and answers NULL
        # and the reason for the rest.
        assert [r["inv"] for r in rows] == [0.5, 1.0, None, None]
        assert _failed_markers(repo) == 1
        done = _tasks(repo)
        with pytest.warns(ReplayFailedWarning, match="at epoch 2"):
            rows = eng.execute(sql).table.to_pylist()
        assert [r["inv"] for r in rows] == [0.5, 1.0, None, None]
        assert _tasks(repo) == done
        # From now on nothing is replayed: the failure is remembered (and survives restarts).
    with Engine(repo, replay="auto", executor=executor) as eng:
        plan = eng.plan(sql).replay
        assert plan.empty and [f.iterations for f in plan.failures] == [(2, 3)]
        with pytest.warns(ReplayFailedWarning, match="ZeroDivisionError"):
            assert [r["inv"] for r in eng.execute(sql).table.to_pylist()][2:] == [None, None]
    assert _failed_markers(repo) == 1 and _tasks(repo) == done
    # The CLI prints the reason in full, without --debug.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from florsql.cli import main; main()",
            "query",
            sql,
            "--replay",
            "auto",
            "--repo",
            str(repo),
        ],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ZeroDivisionError: division by zero" in proc.stderr
    assert "at epoch 2" in proc.stderr and "train.py line 8" in proc.stderr
    assert _failed_markers(repo) == 1
    # Fixing the statement changes the patched source: the failed iterations are retried.
    write(repo / "train.py", FAILING + '        flor.log("inv", 1 / (2.5 - epoch))\n')
    with Engine(repo, replay="auto", executor=executor) as eng:
        rows = eng.execute(sql).table.to_pylist()
    assert [r["inv"] for r in rows][2:] == [2.0, -2.0]


TWO_LOOPS = """
import florsql as flor
state = {"w": 0.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(4)):
        for step in flor.loop("step", range(2)):
            state["w"] += 1 + epoch
        flor.log("w", state["w"])
"""


def _statement_failure(tmp_path: Path, today: str, oracle_today: str) -> tuple[Rows, Rows, str]:
    """A run of TWO_LOOPS; today's code adds ``today`` (two statements, one of them raising at
    epoch 2). Returns the rows of one query (epoch, w, ok, bad) and of the oracle (a full
    re-run of the old version with ``oracle_today`` only: what does not raise), and the
    warnings' text."""
    repo = make_repo(tmp_path / "h", {"train.py": TWO_LOOPS})
    warm_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", TWO_LOOPS + today)
    oracle = make_repo(tmp_path / "o", {"train.py": TWO_LOOPS + oracle_today})
    warm_script(oracle, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    sql = "SELECT epoch, w, ok, bad FROM logs WHERE step IS NULL ORDER BY epoch"
    with Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(1))) as eng:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = eng.execute(sql).table.to_pylist()
        again = eng.plan(sql).replay
        assert again.empty, again.replay_set()  # nothing left to try until the code changes
    with Engine(oracle, replay="off") as eng:
        want = eng.execute(sql.replace(", bad", "")).table.to_pylist()
    return rows, want, "\n".join(str(w.message) for w in caught)


def test_a_failing_statement_leaves_the_others_of_its_task_exact(tmp_path: Path) -> None:
    """Two new statements in one task, one raising at epoch 2: the other's values are
    computed (exactly: a full re-run with it alone), the failing one's up to the failure, and
    the warning names only the failing one."""
    rows, want, text = _statement_failure(
        tmp_path,
        '        flor.log("ok", state["w"] * 2)\n        flor.log("bad", 1 / (2 - epoch))\n',
        '        flor.log("ok", state["w"] * 2)\n',
    )
    assert [r["ok"] for r in rows] == [r["ok"] for r in want] == [4.0, 12.0, 24.0, 40.0]
    assert [r["bad"] for r in rows] == [0.5, 1.0, None, None]
    assert "bad of run" in text and "ZeroDivisionError" in text
    assert "ok of run" not in text and "ok," not in text


def test_two_statements_failing_at_other_epochs_leave_the_rest_exact(tmp_path: Path) -> None:
    """Three statements in one task, two raising (at epochs 1 and 3): the good one is exact,
    each failing one keeps its values before its failure, and every NULL left has a warning
    naming its statement (one query, several rounds)."""
    today = (
        '        flor.log("ok", state["w"] * 2)\n'
        '        flor.log("ratio", 1 / (3 - epoch))\n'
        '        flor.log("attr", state.missing if epoch > 0 else 0.0)\n'
    )
    repo = make_repo(tmp_path / "h", {"train.py": TWO_LOOPS})
    warm_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", TWO_LOOPS + today)
    sql = "SELECT epoch, w, ok, ratio, attr FROM logs WHERE step IS NULL ORDER BY epoch"
    executor = PlanExecutor(LocalExecutor(1))
    with (
        Engine(repo, replay="auto", executor=executor) as eng,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        rows = eng.execute(sql).table.to_pylist()
    assert [r["ok"] for r in rows] == [4.0, 12.0, 24.0, 40.0]
    assert [r["ratio"] for r in rows] == [1 / 3, 0.5, 1.0, None]
    assert [r["attr"] for r in rows] == [0.0, None, None, None]
    text = "\n".join(str(w.message) for w in caught)
    assert "ratio of run" in text and "ZeroDivisionError" in text
    assert "attr of run" in text and "AttributeError" in text
    assert "ok of run" not in text


def test_a_failing_carried_statement_blames_the_statement_it_was_carried_for(
    tmp_path: Path,
) -> None:
    """The statement that raises is code carried for one of today's statements (a slice's
    update in the step loop): that statement is to blame, the other goes on."""
    today = '        flor.log("ok", state["w"] * 2)\n        flor.log("bad", acc)\n'
    history_today = TWO_LOOPS.replace(
        "        for step in",
        "        acc = 0.0\n        for step in",
    ).replace(
        '            state["w"] += 1 + epoch\n',
        '            state["w"] += 1 + epoch\n            acc += 1 / (2 - epoch)\n',
    )
    repo = make_repo(tmp_path / "h", {"train.py": TWO_LOOPS})
    warm_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", history_today + today)
    sql = "SELECT epoch, w, ok, bad FROM logs WHERE step IS NULL ORDER BY epoch"
    executor = PlanExecutor(LocalExecutor(1))
    with (
        Engine(repo, replay="auto", executor=executor) as eng,
        pytest.warns(ReplayFailedWarning) as caught,
    ):
        rows = eng.execute(sql).table.to_pylist()
    text = "\n".join(str(w.message) for w in caught)
    assert [r["ok"] for r in rows] == [4.0, 12.0, 24.0, 40.0]
    assert [r["bad"] for r in rows] == [1.0, 2.0, None, None]
    assert "acc += 1 / (2 - epoch)" in text and "ok of run" not in text


def test_a_failure_in_the_old_code_blames_no_statement(tmp_path: Path) -> None:
    """Old code that raises in replay (here: a file outside the repository that appeared after
    the recording) is no statement's fault: every statement of the task stays NULL from
    there, as before."""
    flag = tmp_path / "flag"
    script = TWO_LOOPS.replace(
        '        flor.log("w", state["w"])\n',
        '        flor.log("w", state["w"])\n'
        f"        if epoch == 2 and __import__('os').path.exists({str(flag)!r}):\n"
        '            raise RuntimeError("the flag is up")\n',
    )
    repo = make_repo(tmp_path / "h", {"train.py": script})
    warm_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    flag.write_text("up")
    today = '        flor.log("ok", state["w"] * 2)\n        flor.log("two", state["w"] * 3)\n'
    write(
        repo / "train.py", script.replace("        if epoch == 2", today + "        if epoch == 2")
    )
    sql = "SELECT epoch, w, ok, two FROM logs WHERE step IS NULL ORDER BY epoch"
    executor = PlanExecutor(LocalExecutor(1))
    with (
        Engine(repo, replay="auto", executor=executor) as eng,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        rows = eng.execute(sql).table.to_pylist()
    assert [(r["ok"], r["two"]) for r in rows] == [
        (4.0, 6.0),
        (12.0, 18.0),
        (None, None),
        (None, None),
    ]
    text = "\n".join(str(w.message) for w in caught if w.category is ReplayFailedWarning)
    assert "ok, two of run" in text and "the flag is up" in text


ENDING = """
import sys
from pathlib import Path
import florsql as flor
fail_at = flor.arg("fail_at", -1)
block_at = flor.arg("block_at", -1)
state = {"w": 0.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(6)):
        if epoch == block_at:
            Path("blocked").write_text(str(epoch))
            sys.stdin.read()  # waits here until the test kills the run
        for step in flor.loop("step", range(2)):
            state["w"] += 1
        if epoch == fail_at:
            raise RuntimeError("diverged")
        flor.log("w", state["w"])
flor.log("final", state["w"])
"""


def _segments(repo: Path, argv_has: str) -> int:
    """How many whole segment files the run whose argv holds ``argv_has`` wrote so far (with
    ``FLORSQL_FLUSH_INTERVAL=0``, one per finished outer iteration)."""
    for run in (repo / ".florsql" / "runs").iterdir():
        try:
            doc = json.loads((run / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if argv_has in doc.get("argv", []):
            return len(list_segments(run / "segments"))
    return 0


def test_replay_never_goes_past_where_a_run_ended(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "k", {"train.py": ENDING})
    warm_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")  # finished
    proc = run_script(repo, "train.py", "--fail_at", "3", check=False)  # failed in epoch 3
    assert proc.returncode != 0 and "diverged" in proc.stderr
    # A run killed (SIGKILL) in epoch 4, once epochs 0-3 are on disk.
    killed = subprocess.Popen(
        [sys.executable, "train.py", "--block_at", "4"],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=script_env(FLORSQL_CHECKPOINT_PERIOD="1", FLORSQL_FLUSH_INTERVAL="0"),
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if (repo / "blocked").exists() and _segments(repo, "--block_at") >= 4:
            break  # epochs 0-3 are on disk, and the run waits in epoch 4
        time.sleep(0.05)
    else:
        killed.kill()
        raise AssertionError("the run never reached epoch 4")
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    # Today's code logs two more names: one in the loop, one after it.
    write(
        repo / "train.py",
        ENDING.replace(
            '        flor.log("w", state["w"])\n',
            '        flor.log("w", state["w"])\n        flor.log("w2", state["w"] * 2)\n',
        )
        + 'flor.log("final2", state["w"] * 2)\n',
    )
    sql = (
        "SELECT CASE WHEN fail_at = 3 THEN 'failed' WHEN block_at = 4 THEN 'killed' "
        "ELSE 'finished' END AS status, epoch, w, w2, final, final2 FROM logs "
        "ORDER BY status, epoch NULLS LAST"
    )
    with _engine(repo) as eng:
        with pytest.warns(FlorWarning) as caught:
            rows = eng.execute(sql).table.to_pylist()
        text = "\n".join(str(w.message) for w in caught)
        assert "failed during epoch 3" in text
        assert re.search(r"killed (during epoch 4|after epoch 3)", text), text
        assert not any(issubclass(w.category, ReplayFailedWarning) for w in caught)
        by = {(r["status"], r["epoch"]): r for r in rows}
        for status, last in (("finished", 5), ("failed", 2), ("killed", 3)):
            for e in range(last + 1):
                assert by[(status, e)]["w2"] == 2 * by[(status, e)]["w"]
        # Nothing past where a run ended: no epoch it never finished, no value after its loop.
        assert ("failed", 3) not in by and ("killed", 4) not in by
        assert by[("finished", None)]["final2"] == 24.0
        assert all(r["final2"] is None for r in rows if r["status"] != "finished")
        # Asked again: nothing new to replay, and the same reasons.
        plan = eng.plan(sql).replay
        ended = eng.execute("SELECT run_id FROM runs WHERE status <> 'finished'").table
        assert plan.empty
        assert {u.run_id for u in plan.unreached} == set(ended.column("run_id").to_pylist())
        explain = "\n".join(eng.execute(f"EXPLAIN {sql}").table.column("plan").to_pylist())
        assert "not replayed, the run ended" in explain and "failed during epoch 3" in explain


def test_a_run_killed_between_coalesced_flushes_replays_what_it_recorded(tmp_path: Path) -> None:
    """With the default flush interval (0.1 s), outer iterations that end within it share a
    flush: a run killed while it waits in epoch 4 has only the epochs flushed before on disk
    (here at least epoch 0: the first iteration always flushes). Replay computes exactly those
    epochs, and the warning names the last one; nothing of the unflushed epochs is invented."""
    repo = make_repo(tmp_path / "k", {"train.py": ENDING})
    killed = subprocess.Popen(
        [sys.executable, "train.py", "--block_at", "4"],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=script_env(FLORSQL_CHECKPOINT_PERIOD="1"),
    )
    deadline = time.time() + 120
    while not (repo / "blocked").exists() or _segments(repo, "--block_at") < 1:
        assert time.time() < deadline, "the run never reached epoch 4"
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    write(
        repo / "train.py",
        ENDING.replace(
            '        flor.log("w", state["w"])\n',
            '        flor.log("w", state["w"])\n        flor.log("w2", state["w"] * 2)\n',
        ),
    )
    with _engine(repo) as eng, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = eng.execute("SELECT epoch, w, w2 FROM logs ORDER BY epoch").table.to_pylist()
        status = eng.execute("SELECT status FROM runs").table.column("status").to_pylist()
    recorded = [r["epoch"] for r in rows]
    assert status == ["killed"]
    assert recorded == list(range(len(recorded))) and 1 <= len(recorded) <= 4
    assert all(r["w2"] == 2 * r["w"] for r in rows), rows
    assert not [w for w in caught if issubclass(w.category, FlorWarning)]


def test_a_failure_remembered_under_older_replay_rules_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed task is remembered by the hash of the code it ran, which includes the version
    of replay's rules: after an upgrade that plans the task otherwise (a fix), the failure no
    longer holds the values NULL until the user edits a statement that was never wrong."""
    from florsql.store import replays as stored

    repo = make_repo(tmp_path / "f", {"train.py": FAILING})
    warm_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", FAILING + '        flor.log("inv", 1 / (2 - epoch))\n')
    sql = "SELECT epoch, w, inv FROM logs ORDER BY epoch"
    executor = PlanExecutor(LocalExecutor(1))
    with Engine(repo, replay="auto", executor=executor) as eng:
        with pytest.warns(ReplayFailedWarning):
            eng.execute(sql)
        assert eng.plan(sql).replay.empty  # remembered
    monkeypatch.setattr(stored, "REPLAY_RULES", stored.REPLAY_RULES + 1)
    with Engine(repo, replay="auto", executor=executor) as eng:
        plan = eng.plan(sql).replay
        assert not plan.empty and not plan.failures  # tried again under the new rules
        with pytest.warns(ReplayFailedWarning, match="ZeroDivisionError"):
            eng.execute(sql)
    assert _failed_markers(repo) == 2
