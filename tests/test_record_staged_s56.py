"""Short outermost iterations share a file, and still reach the disk soon after they end.

Before session 56, outermost iterations shorter than ``FLORSQL_FLUSH_INTERVAL`` waited in memory
for the next flush, which came only at the end of a later iteration: a run killed (SIGKILL)
while it waited in a long iteration lost every short one before it, however long ago they ended.
Now their rows are staged with the writer, which writes them together at most that interval
after they ended.
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

from hypothesis import given, settings
from hypothesis import strategies as st

from florsql.engine.session import Engine
from florsql.record.writer import Writer
from florsql.store.rows import NO_ROWS, Columns, NameTable
from florsql.store.segments import list_segments, read_segments
from tests.helpers import make_repo, run_script, script_env, write

SCRIPT = """
import sys
from pathlib import Path
import florsql as flor
block_at = flor.arg("block_at", -1)
w = 0.0
for epoch in flor.loop("epoch", range(6)):
    if epoch == block_at:
        Path("blocked").write_text(str(epoch))
        sys.stdin.read()  # a long iteration: waits here until the test kills the run
    for step in flor.loop("step", range(3)):
        w += 1
        flor.log("loss", 1.0 / w)
    flor.log("w", w)
"""


def _run_dir(repo: Path) -> Path | None:
    runs = repo / ".florsql" / "runs"
    for run in runs.iterdir() if runs.exists() else ():
        try:
            doc = json.loads((run / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if "--block_at" in doc.get("argv", []):
            return run
    return None


def _logged(run: Path | None, name: str) -> list[float]:
    if run is None:
        return []
    paths = list_segments(run / "segments")
    if not paths:
        return []
    table = read_segments(paths).to_pylist()
    return [r["v_float"] for r in table if r["kind"] == "log" and r["name"] == name]


def _kill_while_blocked(repo: Path, epoch: int, name: str) -> Path:
    """Run ``train.py --block_at epoch``; once it waits in that epoch and the ``name`` values
    of the epochs before are on disk (events, not sleeps), SIGKILL it. Its run folder."""
    killed = subprocess.Popen(
        [sys.executable, "train.py", "--block_at", str(epoch)],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=script_env(),
    )
    try:
        deadline = time.monotonic() + 120
        while not (repo / "blocked").exists() or len(_logged(_run_dir(repo), name)) < epoch:
            assert killed.poll() is None, killed.stderr.read() if killed.stderr else ""
            assert time.monotonic() < deadline, (
                f"the rows of the epochs before {epoch} never reached the disk while it ran: "
                f"{_logged(_run_dir(repo), name)}"
            )
            time.sleep(0.02)
    finally:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=60)
        if killed.stderr:
            killed.stderr.close()
    run = _run_dir(repo)
    assert run is not None
    return run


def test_short_iterations_reach_the_disk_while_a_long_one_runs(tmp_path: Path) -> None:
    """Epochs 0-3 end within milliseconds (one file for them all, not one each); epoch 4 waits.
    Their rows are on disk without epoch 4 ending, and a kill there keeps them: the run's
    ``w`` and ``loss`` equal a finished run's over epochs 0-3."""
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT})
    full = run_script(repo, "train.py")
    assert full.returncode == 0, full.stderr
    run = _kill_while_blocked(repo, 4, "w")
    # epochs 0-3 shared files: fewer than one per epoch (the first epoch flushes alone)
    assert len(list_segments(run / "segments")) < 4
    with Engine(repo) as eng:
        status = {r["run_id"]: r["status"] for r in _rows(eng, "SELECT run_id, status FROM runs")}
        killed_id = next(r for r, s in status.items() if s == "killed")
        finished_id = next(r for r, s in status.items() if s == "finished")
        for q in (
            "SELECT epoch, w FROM logs WHERE run_id = '{}' AND epoch < 4 ORDER BY epoch",
            "SELECT epoch, step, loss FROM logs WHERE run_id = '{}' AND epoch < 4 "
            "ORDER BY epoch, step",
        ):
            got, want = _rows(eng, q.format(killed_id)), _rows(eng, q.format(finished_id))
            assert got == want and len(want) in (4, 12), (got, want)
        assert _rows(eng, f"SELECT max(epoch) AS e FROM logs WHERE run_id = '{killed_id}'") == [
            {"e": 3}
        ]


def _rows(eng: Engine, sql: str) -> list[dict[str, object]]:
    return eng.execute(sql).table.to_pylist()


def test_many_short_outermost_iterations_share_files(tmp_path: Path) -> None:
    """2000 outermost iterations of microseconds: a few files, every value in them, in order."""
    script = """
import florsql as flor
for i in flor.loop("it", range(2000)):
    flor.log("x", i * 0.5)
    flor.log("y", i)
"""
    repo = make_repo(tmp_path / "m", {"train.py": script})
    proc = run_script(repo, "train.py")
    assert proc.returncode == 0, proc.stderr
    (run,) = list((repo / ".florsql" / "runs").iterdir())
    assert len(list_segments(run / "segments")) < 200
    with Engine(repo) as eng:
        rows = _rows(eng, "SELECT it, x, y FROM logs ORDER BY it")
    assert rows == [{"it": i, "x": i * 0.5, "y": i} for i in range(2000)]


def test_a_script_ending_in_short_iterations_loses_nothing(tmp_path: Path) -> None:
    """Staged rows still waiting when the script ends are written at exit, as are those of a
    flor.commit() in the loop."""
    script = """
import florsql as flor
for i in flor.loop("it", range(50)):
    flor.log("x", i)
    if i == 20:
        flor.commit()
flor.log("after", 1)
"""
    repo = make_repo(tmp_path / "e", {"train.py": script})
    write(repo / "other.txt", "x")
    proc = run_script(repo, "train.py")
    assert proc.returncode == 0, proc.stderr
    with Engine(repo) as eng:
        xs = [r["x"] for r in _rows(eng, "SELECT x FROM logs WHERE x IS NOT NULL ORDER BY it")]
        after = _rows(eng, "SELECT after FROM logs WHERE after IS NOT NULL")
    assert xs == list(range(50)) and after == [{"after": 1}]


_VALUES = st.one_of(
    st.floats(allow_nan=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(st.tuples(st.sampled_from(["log", "loop", "end", "mark"]), _VALUES), max_size=60)
)
def test_pieces_up_to_marks_add_up_to_the_whole_batch(ops: list[tuple[str, object]]) -> None:
    """What the writer writes up to each mark, then the rest once the batch is handed over,
    holds exactly the rows of the batch written whole: same rows, values, sequence numbers."""
    names = NameTable()
    rows = Columns(names, first_seq=7)
    pieces, written = [], NO_ROWS
    for ctx, (op, value) in enumerate(ops, 1):
        if op == "log":
            rows.log(ctx, names.key(f"n{ctx % 3}"), value)
        elif op == "loop":
            row = rows.loop(ctx, 0, names.key("epoch"), ctx, value, float(ctx))
            rows.loop_s[row] = 0.5
        elif op == "end":
            rows.ends.append((ctx, 0.25))
        else:
            stop = (len(rows.log_key), len(rows.loop_s), len(rows.ends), len(rows.checks))
            piece, written = rows.piece(written, stop)
            pieces.append(piece)
    pieces.append(rows.piece(written)[0])

    def rows_of(tables: list[list[dict[str, object]]]) -> list[str]:
        # a batch's table holds its loop rows, then its logs: compared as sets of rows
        return sorted(json.dumps(r, sort_keys=True, default=repr) for t in tables for r in t)

    whole = rows_of([rows.to_table().to_pylist()])
    assert rows_of([p.to_table().to_pylist() for p in pieces]) == whole
    assert sum(p.log_count for p in pieces) == rows.log_count


COMMITTING = """
import sys
from pathlib import Path
import florsql as flor
block_at = flor.arg("block_at", -1)
for epoch in flor.loop("epoch", range(8)):
    flor.log("a", epoch)
    if epoch == 2:
        flor.commit()
    if epoch == block_at:
        Path("blocked").write_text(str(epoch))
        sys.stdin.read()  # killed here
flor.log("after", 1)
"""


def test_a_run_killed_after_a_commit_in_its_loop_reads_killed(tmp_path: Path) -> None:
    """``flor.commit()`` at epoch 2 marked the run finished; killed in epoch 5, it read
    ``finished`` (sweep AG, session 56), its lost epochs said nowhere. Records after a commit
    make it running again: killed, it reads ``killed``; run to its end, ``finished`` with
    every value."""
    repo = make_repo(tmp_path / "c", {"train.py": COMMITTING})
    done = run_script(repo, "train.py")
    assert done.returncode == 0, done.stderr
    _kill_while_blocked(repo, 5, "a")
    with Engine(repo) as eng:
        runs = _rows(eng, "SELECT run_id, status FROM runs ORDER BY tstamp")
        assert [r["status"] for r in runs] == ["finished", "killed"], runs
        for run, want in zip(runs, (list(range(8)), list(range(5))), strict=True):
            got = _rows(
                eng, f"SELECT a FROM logs WHERE run_id = '{run['run_id']}' AND a IS NOT NULL"
            )
            assert sorted(r["a"] for r in got) == want
        after = _rows(eng, "SELECT run_id FROM logs WHERE after = 1")
        assert [r["run_id"] for r in after] == [runs[0]["run_id"]]


def test_rows_reach_files_in_order_when_a_mark_overtakes_a_batch(tmp_path: Path) -> None:
    """The timer's write up to a mark can be queued before the batch the training thread
    hands over next, and run after the training thread marked the batch after it: the marked
    rows were written first, ahead of the handed batch's rest, so a kill between the two
    writes left a gap on disk. Now the handed batch goes first, and the files, read in order,
    hold the rows in the order they were logged."""
    run = tmp_path / "run"
    (run / "segments").mkdir(parents=True)
    writer = Writer(run, row_files=True)
    names = NameTable()
    key = names.key("x")
    gate = threading.Event()
    writer._rows.put(gate.wait)  # the rows thread busy: what follows queues behind it
    first = Columns(names)
    for i in range(3):
        first.log(i + 1, key, float(i))
    writer.mark(first)
    writer._rows.put(writer._write_marked)  # the timer's job, queued now
    for i in range(3, 5):
        first.log(i + 1, key, float(i))
    second = Columns(names, first_seq=first.log_count)
    writer.submit_batch(first)  # a flush: handed over (queued behind the timer's job)
    second.log(6, key, 5.0)
    writer.mark(second)  # the next short iteration ended
    gate.set()
    assert writer.stop(timeout=30)
    files = list_segments(run / "segments")
    values = [r["v_float"] for f in files for r in read_segments([f]).to_pylist()]
    seqs = [r["seq"] for f in files for r in read_segments([f]).to_pylist()]
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0][: len(values)] and len(values) >= 5
    assert seqs == sorted(seqs)
