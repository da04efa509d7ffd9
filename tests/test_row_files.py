"""Row files (issue 12 item 3): a recording run writes each flush's rows as raw columns after a
JSON header (florsql.store.rows.dump_rows), and readers convert them to Arrow. The training
process never imports pyarrow, converts nothing on its GIL and starts no helper process. What
was written is never lost: not on Ctrl-C to the whole process group, not when the training
process is killed. The codec is checked against Columns.to_table on random rows, and every
damaged file is refused with a ValueError.
"""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from florsql.store.index import Index
from florsql.store.rows import ROWS_MAGIC, Columns, NameTable, dump_rows, load_rows
from florsql.store.segments import Tagged
from tests.helpers import make_repo, pid_alive, run_dirs, run_script, script_env, write

TRAIN = """
import json, os, sys, time
import florsql as flor

def child_pids():
    me = os.getpid()
    text = open(f"/proc/{me}/task/{me}/children").read()
    return [int(p) for p in text.split()]

t_start = time.time()
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
print(json.dumps({"pyarrow": "pyarrow" in sys.modules, "numpy": "numpy" in sys.modules,
                  "children": child_pids(),
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
        # as a terminal starts it: a test run started in the background by a non-interactive
        # shell passes SIGINT down ignored, and the Ctrl-C below was lost
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_values_equal_those_written_as_arrow(tmp_path: Path) -> None:
    """Differential: the same script recorded with row files and with Arrow segments stores the
    same rows; with row files the training process imports neither pyarrow nor numpy and
    starts no process."""
    outs = {}
    for mode in ("1", "0"):
        repo = make_repo(tmp_path / f"p{mode}", {"train.py": TRAIN})
        proc = run_script(repo, "train.py", FLORSQL_ROW_FILES=mode)
        assert proc.stderr == ""
        outs[mode] = (json.loads(proc.stdout.splitlines()[-1]), _records(repo), repo)
    (rowfiles, recs1, repo1), (arrow, recs0, repo0) = outs["1"], outs["0"]
    assert recs1 == recs0
    logs, loops = recs1
    assert len(logs) == 4 * (30 * 2 + 5) and len(loops) == 4 + 4 * 30
    assert rowfiles["pyarrow"] is False and rowfiles["numpy"] is False
    assert rowfiles["children"] == []
    assert arrow["pyarrow"] is True  # converted in-process: the difference is real
    suffixes = {m: {p.suffix for p in r.glob(".florsql/runs/*/segments/*")} for m, r in
                (("1", repo1), ("0", repo0))}  # fmt: skip
    assert suffixes == {"1": {".rows"}, "0": {".arrow"}}
    # Loop rows keep wall-clock start times (recorded from perf_counter plus an offset).
    for t, seconds in _loop_times(repo1):
        assert rowfiles["t_start"] - 1 <= t <= rowfiles["t_end"] + 1
        assert seconds is not None and seconds >= 0
    assert _status(repo1) == "finished"


def test_ctrl_c_to_the_process_group_keeps_every_value(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group: the training process's last flush
    is written."""
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


def test_training_process_killed_keeps_the_rows_written(tmp_path: Path) -> None:
    """kill -9 of the training process: the row files written before are whole, and their
    values are a prefix of the logged ones, in order."""
    repo = make_repo(tmp_path / "p")
    write(
        repo / "train.py",
        """
        import glob, os, time
        import florsql as flor
        for epoch in flor.loop("epoch", range(10**6)):
            flor.log("loss", 0.5 * epoch)
            if epoch == 3:  # once epochs 0-2 are on disk (one segment each, see the env)
                while len(glob.glob(".florsql/runs/*/segments/*.rows")) < 3:
                    time.sleep(0.01)
                open("ready", "w").close()
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
        proc.kill()
        proc.communicate(timeout=60)  # reaps it and closes the pipes
    finally:
        if proc.poll() is None:
            proc.kill()
    logs, loops = _records(repo)
    values = [float(v) for _, _, v in logs]
    assert len(values) >= 3 and len(loops) >= 3
    assert values == [0.5 * e for e in range(len(values))]  # a prefix, in order, no gap


def test_a_forked_process_alive_at_exit_does_not_hold_the_run(tmp_path: Path) -> None:
    """A process forked from the training process (a data loader's worker, say) and still
    alive when the script ends: the script exits at once and the run is whole."""
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
        (worker,) = (int(p) for p in json.loads(out))
        assert pid_alive(worker)  # the script ended though the forked worker still runs
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

    for row_files in (True, False):  # row files, and Arrow segments
        run = tmp_path / f"run-{row_files}"
        writer = Writer(run, row_files=row_files)
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


# -- the codec --------------------------------------------------------------------------------

_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    st.text(max_size=12),
    st.none(),
    st.builds(Tagged, st.sampled_from(["json", "repr"]), st.text(max_size=12)),
)
_ITEMS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=4),
    st.booleans(),
    st.none(),
    st.tuples(),
)


@st.composite
def _columns(draw: st.DrawFn) -> Columns:
    names = NameTable()
    rows = Columns(names, first_seq=draw(st.integers(0, 10**6)),
                   clock_offset=draw(st.floats(0, 2e9)))  # fmt: skip
    keys = [names.key(n) for n in draw(st.lists(st.text(min_size=1, max_size=6), min_size=1,
                                                  max_size=4, unique=True))]  # fmt: skip
    for value in draw(st.lists(_VALUES, max_size=20)):
        rows.log(draw(st.integers(1, 50)), draw(st.sampled_from(keys)), value)
    for i, item in enumerate(draw(st.lists(_ITEMS, max_size=10))):
        row = rows.loop(i + 1, 0, draw(st.sampled_from(keys)), i, item, draw(st.floats(0, 1e4)))
        if draw(st.booleans()):
            rows.loop_s[row] = draw(st.floats(0, 100))
    rows.ends.extend(draw(st.lists(st.tuples(st.integers(1, 50), st.floats(0, 100)), max_size=3)))
    for ctx, value in draw(st.lists(st.tuples(st.integers(1, 50), _VALUES), max_size=3)):
        rows.checks.append((ctx, "check_name", value))
    return rows


def _plain(table: Any) -> list[dict[str, Any]]:
    """A table's rows with NaN as a string (Arrow's equals holds NaN unequal to itself)."""
    rows: list[dict[str, Any]] = table.to_pylist()
    return [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
            for r in rows]  # fmt: skip


@given(_columns())
@settings(max_examples=300, deadline=None)
def test_a_row_file_reads_back_as_the_same_table(rows: Columns) -> None:
    """Property: dump then load gives the table Columns.to_table gives (NaN equal to NaN)."""
    back = load_rows(dump_rows(rows))
    assert _plain(back.to_table()) == _plain(rows.to_table())


@given(_columns(), st.data())
@settings(max_examples=200, deadline=None)
def test_a_damaged_row_file_is_refused_with_a_value_error(
    rows: Columns, data: st.DataObject
) -> None:
    """Property: a truncated file, or one with a byte changed, raises ValueError (the index
    names it as damaged and skips it); never another exception, never other values."""
    raw = dump_rows(rows)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(ValueError):
        load_rows(raw[:cut])
    at = data.draw(st.integers(0, len(raw) - 1))
    changed = bytearray(raw)
    changed[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ValueError):
        load_rows(bytes(changed))


def test_every_bit_flipped_in_the_header_is_refused() -> None:
    """The checksum covers what follows the header (version, header length, checksum), not the
    header itself: a version flipped from 1 to 0 read as a good file (found by the property
    above in CI). Every single-bit change of the magic bytes and the header is refused."""
    rows = Columns(NameTable())
    rows.log(1, rows.names.key("x"), 0.5)
    raw = dump_rows(rows)
    for at in range(len(ROWS_MAGIC) + struct.calcsize("<III")):
        for bit in range(8):
            changed = bytearray(raw)
            changed[at] ^= 1 << bit
            with pytest.raises(ValueError):
                load_rows(bytes(changed))


def test_a_row_file_of_the_other_byte_order_reads_the_same() -> None:
    """A file written on a machine of the other byte order: its columns are swapped back."""
    names = NameTable()
    rows = Columns(names, clock_offset=10.0)
    rows.log(1, names.key("loss"), 0.25)
    rows.log(1, names.key("n"), 7)
    row = rows.loop(1, 0, names.key("epoch"), 0, 0, 1.5)
    rows.loop_s[row] = 2.0
    raw = dump_rows(rows)
    size = len(ROWS_MAGIC) + 12
    (hlen,) = struct.unpack_from("<I", raw, len(ROWS_MAGIC) + 4)
    head = json.loads(raw[size : size + hlen])
    other = "big" if sys.byteorder == "little" else "little"
    body = bytearray(raw[size + hlen :])
    at = 0
    for _name, nbytes in head["arrays"]:
        for i in range(at, at + nbytes, 8):
            body[i : i + 8] = body[i : i + 8][::-1]
        at += nbytes
    text = json.dumps({**head, "byteorder": other}).encode()
    crc = zlib.crc32(bytes(body), zlib.crc32(text))
    swapped = raw[: len(ROWS_MAGIC)] + struct.pack("<III", 1, len(text), crc) + text + bytes(body)
    assert _plain(load_rows(swapped).to_table()) == _plain(rows.to_table())


def test_a_newer_row_file_says_to_upgrade() -> None:
    raw = bytearray(dump_rows(Columns(NameTable())))
    struct.pack_into("<I", raw, len(ROWS_MAGIC), 99)
    with pytest.raises(ValueError, match="upgrade florsql"):
        load_rows(bytes(raw))


def test_a_truncated_row_file_in_a_history_is_damage_not_a_crash(tmp_path: Path) -> None:
    """A row file cut in half (a disk that filled up, a bad copy): the query warns once naming
    it, answers from the run's other files, and leaves the file as it is."""
    import warnings

    from florsql.errors import DamagedFileWarning
    from florsql.store.segments import list_segments

    repo = make_repo(tmp_path / "p", {"train.py": TRAIN})
    assert run_script(repo, "train.py", FLORSQL_FLUSH_INTERVAL="0").stderr == ""
    (run,) = run_dirs(repo)
    segments = list_segments(run / "segments")
    assert len(segments) >= 3 and all(p.suffix == ".rows" for p in segments)
    cut = segments[0].read_bytes()[: segments[0].stat().st_size // 2]
    segments[0].write_bytes(cut)
    import florsql

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conn = florsql.connect(repo, replay="off")
        try:
            (count,) = conn.execute("SELECT count(*) FROM log_records").fetchone()
        finally:
            conn.close()
    damage = [w.message for w in caught if isinstance(w.message, DamagedFileWarning)]
    assert len(damage) == 1 and "000001.rows" in str(damage[0]), [str(w.message) for w in caught]
    assert "checksum" in str(damage[0]) or "truncated" in str(damage[0])
    assert 0 < count < 4 * (30 * 2 + 5)  # the other files' rows
    assert segments[0].read_bytes() == cut
