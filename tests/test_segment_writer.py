"""The segment writer process (florsql/record/segment_writer.py, issue 12 item 3): a recording
run's rows are converted and written by a child process, so the training process never imports
pyarrow and never holds its GIL for a conversion. What the child is handed is never lost: not
when it is killed, not on Ctrl-C to the whole process group, not when the training process dies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from florsql.store.index import Index
from tests.helpers import make_repo, pid_alive, run_dirs, run_script, script_env, wait_gone, write

TRAIN = """
import json, os, sys, time
import florsql as flor

def child_pids():
    me = os.getpid()
    text = open(f"/proc/{me}/task/{me}/children").read()
    return [int(p) for p in text.split()]

t_start = time.time()
killed = []
for epoch in flor.loop("epoch", range(4)):
    for step in flor.loop("step", range(30)):
        flor.log("loss", 1.0 / (1 + epoch * 30 + step))
        flor.log("n", step)
    flor.log("label", f"e{epoch}")
    flor.log("flag", epoch % 2 == 0)
    flor.log("big", 2**70 + epoch)
    flor.log("none", None)
    flor.log("hist", [epoch, 0.5])
    flor.commit() if epoch == 1 else None
    if epoch == 1 and os.environ.get("KILL_WRITER") == "1":
        for pid in child_pids():  # the segment writer: kill it, then go on training
            killed.append(pid)
            os.kill(pid, 9)
            while open(f"/proc/{pid}/stat").read().split(") ")[1][0] not in "ZX":
                time.sleep(0.01)
print(json.dumps({"pyarrow": "pyarrow" in sys.modules, "numpy": "numpy" in sys.modules,
                  "children": child_pids(), "killed": killed,
                  "t_start": t_start, "t_end": time.time()}))
"""


def _records(repo: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with Index.open(repo) as ix:
        ix.refresh()
        logs = ix.con.sql(
            "SELECT name, vtype, coalesce(value_int::VARCHAR, value_float::VARCHAR, value_str) "
            "FROM log_records ORDER BY seq"
        ).fetchall()
        loops = ix.con.sql(
            "SELECT * EXCLUDE (run_id, t_start, seconds) FROM loops ORDER BY ctx_id"
        ).fetchall()
        return logs, loops


def _loop_times(repo: Path) -> list[tuple[float, float]]:
    with Index.open(repo) as ix:
        ix.refresh()
        rows = ix.con.sql("SELECT t_start, seconds FROM loops ORDER BY ctx_id").fetchall()
    return [(t if isinstance(t, float) else t.timestamp(), s) for t, s in rows]


def _status(repo: Path) -> str:
    (run,) = run_dirs(repo)
    return str(json.loads((run / "run.json").read_text())["status"])


def _start(repo: Path, **env: str) -> subprocess.Popen[str]:
    """``python train.py`` in ``repo``, in a session of its own (its process group is the test's
    to signal), its output piped."""
    return subprocess.Popen(
        [sys.executable, "train.py"],
        cwd=repo,
        env=script_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_values_equal_those_written_in_process(tmp_path: Path) -> None:
    """Differential: the same script recorded with the writer process and without it stores
    the same rows; the training process never imports pyarrow or numpy, and the child exits
    with it."""
    outs = {}
    for mode in ("1", "0"):
        repo = make_repo(tmp_path / f"p{mode}", {"train.py": TRAIN})
        proc = run_script(repo, "train.py", FLORSQL_WRITER_PROCESS=mode)
        assert proc.stderr == ""
        outs[mode] = (json.loads(proc.stdout.splitlines()[-1]), _records(repo), repo)
    (with_proc, recs1, repo1), (without, recs0, _) = outs["1"], outs["0"]
    assert recs1 == recs0
    logs, loops = recs1
    assert len(logs) == 4 * (30 * 2 + 5) and len(loops) == 4 + 4 * 30
    assert with_proc["pyarrow"] is False and with_proc["numpy"] is False
    assert without["pyarrow"] is True  # converted in-process: the difference is real
    (child,) = with_proc["children"]
    wait_gone(child)  # the segment writer exits with the run
    # Loop rows keep wall-clock start times (recorded from perf_counter plus an offset).
    for t, seconds in _loop_times(repo1):
        assert with_proc["t_start"] - 1 <= t <= with_proc["t_end"] + 1
        assert seconds is not None and seconds >= 0
    assert _status(repo1) == "finished"


def test_killed_writer_process_loses_nothing(tmp_path: Path) -> None:
    """The child killed mid-run (after two epochs were written): the writer thread converts
    from then on, and every value lands."""
    repo = make_repo(tmp_path / "p", {"train.py": TRAIN})
    proc = run_script(repo, "train.py", KILL_WRITER="1")
    assert proc.stderr == ""
    out = json.loads(proc.stdout.splitlines()[-1])
    assert len(out["killed"]) == 1
    assert set(out["children"]) <= set(out["killed"])  # no other writer process was started
    logs, loops = _records(repo)
    assert len(logs) == 4 * (30 * 2 + 5) and len(loops) == 4 + 4 * 30
    assert _status(repo) == "finished"


def test_ctrl_c_to_the_process_group_keeps_every_value(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group, the segment writer included: it
    ignores it, so the training process's last flush is written."""
    repo = make_repo(tmp_path / "p")
    write(
        repo / "train.py",
        """
        import sys, time
        import florsql as flor
        for epoch in flor.loop("epoch", range(1000)):
            flor.log("loss", 0.5 * epoch)
            if epoch == 3:
                open("ready", "w").close()
            if epoch >= 3:
                time.sleep(0.01)
        """,
    )
    proc = _start(repo)
    try:
        deadline = time.monotonic() + 120
        while not (repo / "ready").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "KeyboardInterrupt" in err
    assert "not written" not in err
    logs, loops = _records(repo)
    assert len(logs) >= 4 and len(logs) == len(loops)  # one log per epoch, the last one's too
    assert [float(v) for _, _, v in logs] == [0.5 * e for e in range(len(logs))]
    assert _status(repo) == "killed"


def test_training_process_killed_leaves_no_writer_behind(tmp_path: Path) -> None:
    """kill -9 of the training process: the segment writer sees its input close and exits,
    after writing what it was handed."""
    repo = make_repo(tmp_path / "p")
    write(
        repo / "train.py",
        """
        import glob, os, time
        import florsql as flor
        for epoch in flor.loop("epoch", range(10**6)):
            flor.log("loss", 0.5 * epoch)
            if epoch == 3:  # once epochs 0-2 are on disk (one segment each, see the env)
                while len(glob.glob(".florsql/runs/*/segments/*.arrow")) < 3:
                    time.sleep(0.01)
                me = os.getpid()
                kids = open(f"/proc/{me}/task/{me}/children").read().split()
                with open("ready.tmp", "w") as f:
                    f.write(" ".join(kids))
                os.replace("ready.tmp", "ready")
            time.sleep(0.01)
        """,
    )
    proc = _start(repo, FLORSQL_FLUSH_INTERVAL="0")
    try:
        deadline = time.monotonic() + 120
        while not (repo / "ready").exists():
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (child,) = (int(p) for p in (repo / "ready").read_text().split())
        assert pid_alive(child)
        proc.kill()
        proc.communicate(timeout=60)  # reaps it and closes the pipes
        wait_gone(child)
    finally:
        if proc.poll() is None:
            proc.kill()
    logs, loops = _records(repo)
    values = [float(v) for _, _, v in logs]
    assert len(values) >= 3 and len(loops) >= 3
    assert values == [0.5 * e for e in range(len(values))]  # a prefix, in order, no gap


def test_a_forked_process_alive_at_exit_does_not_hold_the_run(tmp_path: Path) -> None:
    """A process forked from the training process (a data loader's worker, say) and still
    alive when the script ends: the script exits at once, the run is whole, and the segment
    writer exits with the run, not with the forked process."""
    repo = make_repo(tmp_path / "p")
    write(
        repo / "train.py",
        """
        import json, os, signal, sys
        import florsql as flor
        for epoch in flor.loop("epoch", range(3)):
            flor.log("loss", 0.5 * epoch)
            if epoch == 1 and os.fork() == 0:  # a worker that outlives the script
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)  # not holding the test's pipes open
                os.dup2(null, 2)
                signal.pause()
                os._exit(0)
        me = os.getpid()
        kids = open(f"/proc/{me}/task/{me}/children").read().split()
        print(json.dumps({p: open(f"/proc/{p}/cmdline").read() for p in kids}))
        sys.stdout.flush()
        """,
    )
    proc = _start(repo)
    try:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and err == ""
        kids = {int(p): cmd for p, cmd in json.loads(out).items()}
        (writer,) = (p for p, cmd in kids.items() if "segment_writer" in cmd)
        (worker,) = (p for p in kids if p != writer)
        wait_gone(writer)  # with the run, though the forked worker still runs
        assert pid_alive(worker)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    logs, _ = _records(repo)
    assert [float(v) for _, _, v in logs] == [0.0, 0.5, 1.0]
    assert _status(repo) == "finished"


class _SlowToSave:
    """Pickles only once ``gate`` is set: a checkpoint whose write takes long."""

    gate = threading.Event()
    saving = threading.Event()

    def __reduce__(self) -> tuple[Any, ...]:
        _SlowToSave.saving.set()
        assert _SlowToSave.gate.wait(60)
        return (int, (0,))


def test_a_flush_is_not_held_behind_a_checkpoint_being_written(tmp_path: Path) -> None:
    """A batch of rows reaches the disk while a checkpoint submitted before it is still being
    written: a kill right after an outermost iteration's flush lost its rows while the writer
    was busy with a checkpoint (4 or 0 of 8 rows of two ended epochs, killed at epoch 2)."""
    from florsql.record.writer import Writer
    from florsql.store.rows import Columns, NameTable

    for process in (True, False):  # via the segment writer process, and on the thread
        run = tmp_path / f"run-{process}"
        writer = Writer(run, process=process)
        _SlowToSave.gate.clear()
        _SlowToSave.saving.clear()
        writer.submit_checkpoint({"states": {}, "pickled": {"x": _SlowToSave()}}, "epoch", 1,
                                 "end", 0.0)  # fmt: skip
        assert _SlowToSave.saving.wait(60)  # the checkpoint thread is inside the write
        names = NameTable()
        rows = Columns(names, clock_offset=0.0)
        rows.log(1, names.key("loss"), 0.5)
        before = set(run.glob("segments/*"))
        writer.submit_batch(rows)
        deadline = time.monotonic() + 60
        while not set(run.glob("segments/*")) - before:  # the segment file appears
            assert time.monotonic() < deadline, "the rows waited behind the checkpoint"
            time.sleep(0.01)
        assert not _SlowToSave.gate.is_set() and writer.pending_checkpoints == 1
        _SlowToSave.gate.set()
        assert writer.stop(60)
        assert writer.pending_checkpoints == 0 and writer.unwritten() is None
