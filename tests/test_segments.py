"""The segment format: rows built column-wise from buffers, one row per loop iteration, and
segments of the first format (an ``end`` row per iteration, no ``seconds``) still read."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from florsql.store.index import Index
from florsql.store.rows import Columns, NameTable
from florsql.store.segments import (
    Tagged,
    list_segments,
    read_segment,
    read_segments,
    schema,
    split_value,
    write_segment,
)
from tests.helpers import make_repo, run_dirs, run_script, write
from tests.helpers_sql import first_format_schema

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.builds(Tagged, st.sampled_from(["json", "repr"]), st.text(max_size=8)),
)
ITEMS = st.one_of(st.integers(-(2**65), 2**65), st.floats(allow_nan=False), st.text(max_size=4))
NAMES = st.sampled_from(["loss", "acc", "Ωmega", "epoch", "x"])


def _oracle(loops: list[tuple[Any, ...]], logs: list[tuple[Any, ...]], first: int) -> list[Any]:
    """The rows the first writer built row by row with ``split_value`` (pandas-free here too:
    the oracle only describes values)."""
    out = []
    for ctx, parent, name, it, item, t, secs in loops:
        stored = item if type(item) in (int, float, str, bool) else None
        vt, vi, vf, vs = split_value(stored)
        out.append(["loop", None, ctx, parent, name, it, vt, vi, vf, vs, t, secs])
    for n, (ctx, name, value) in enumerate(logs):
        vt, vi, vf, vs = split_value(value)
        out.append(["log", first + n, ctx, None, name, None, vt, vi, vf, vs, None, None])
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b) and type(a) is type(b)


@settings(max_examples=60, deadline=None)
@given(
    loops=st.lists(
        st.tuples(
            st.integers(1, 10**6),
            st.integers(0, 10**6),
            NAMES,
            st.integers(0, 10**6),
            ITEMS,
            st.floats(0, 2e9),
            st.one_of(st.none(), st.floats(0, 100)),
        ),
        max_size=8,
    ),
    logs=st.lists(st.tuples(st.integers(0, 10**6), NAMES, VALUES), max_size=20),
    first=st.integers(0, 10**9),
)
def test_columns_equal_the_row_by_row_oracle(
    loops: list[tuple[Any, ...]], logs: list[tuple[Any, ...]], first: int
) -> None:
    names = NameTable()
    cols = Columns(names, first_seq=first, clock_offset=0.0)
    for ctx, parent, name, it, item, t, secs in loops:
        row = cols.loop(ctx, parent, names.key(name), it, item, t)
        if secs is not None:
            cols.loop_s[row] = secs
    for ctx, name, value in logs:
        cols.log(ctx, names.key(name), value)
    table = cols.to_table()
    table.validate(full=True)
    assert table.schema == schema()
    got = [list(r.values()) for r in table.to_pylist()]
    want = _oracle(loops, logs, first)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert all(_same(x, y) for x, y in zip(g, w, strict=True)), (g, w)
    assert cols.log_count == len(logs)


_SCRIPT = """
import florsql as flor
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", ["a", "b"]):
        flor.log("loss", epoch + len(step) / 10)
        if epoch == 1 and step == "b":
            flor.commit()  # a flush inside two open iterations
    flor.log("acc", epoch / 3)
flor.log("final", "done")
"""


def _kinds(run: Path) -> Counter[str]:
    return Counter(read_segments(list_segments(run / "segments")).column("kind").to_pylist())


def test_one_row_per_iteration_and_durations_in_the_index(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p", {"train.py": _SCRIPT})
    run_script(repo, "train.py")
    (run,) = run_dirs(repo)
    # 3 epochs + 6 steps; the two iterations open at the commit end in an 'end' row.
    assert _kinds(run) == {"loop": 9, "log": 10, "end": 2}
    with Index.open(repo) as ix:
        ix.refresh()
        n, timed = ix.con.sql("SELECT count(*), count(seconds) FROM loops").fetchall()[0]
    assert n == timed == 9


def test_first_format_segments_read_as_the_current_format(tmp_path: Path) -> None:
    """Differential: a recorded run, and the same run rewritten in the first format, index
    to the same loops and log records."""
    repo = make_repo(tmp_path / "p", {"train.py": _SCRIPT})
    run_script(repo, "train.py")
    old = tmp_path / "old"
    shutil.copytree(repo, old)
    (run,) = run_dirs(old)
    for seg in list_segments(run / "segments"):
        rows = read_segment(seg).to_pylist()
        first = []
        for r in rows:
            secs = r.pop("seconds")
            first.append(r)
            if r["kind"] == "loop" and secs is not None:
                end = dict.fromkeys(r)
                first.append({**end, "kind": "end", "ctx": r["ctx"], "vtype": "null", "t": secs})
        seg.unlink()  # a row file (or an Arrow segment): rewritten as a first-format segment
        table = pa.Table.from_pylist(first, first_format_schema())
        new = write_segment(seg.parent, int(seg.stem), table)
    assert "seconds" not in pa.ipc.open_file(str(new)).schema.names
    dumps = []
    for r in (repo, old):
        with Index.open(r) as ix:
            ix.refresh()
            dumps.append(
                [
                    ix.con.sql(f"SELECT * EXCLUDE (run_id) FROM {t} ORDER BY ALL").fetchall()
                    for t in ("loops", "log_records", "ctx_path")
                ]
            )
    assert dumps[0] == dumps[1]


def test_torch_thread_counts_are_recorded_only_where_torch_is_imported(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    write(
        repo / "with_torch.py",
        """
        import torch
        torch.set_num_interop_threads(3)
        import florsql as flor
        flor.log("a", 1)
        torch.set_num_threads(1)  # changed after the run began: the last counts are kept
        for epoch in flor.loop("epoch", range(2)):
            flor.log("b", epoch)
        print(torch.get_num_threads(), torch.get_num_interop_threads())
        """,
    )
    write(
        repo / "without.py",
        """
        import sys
        import florsql as flor
        flor.log("a", 1)
        flor.commit()
        print("torch" in sys.modules)
        """,
    )
    counts = run_script(repo, "with_torch.py").stdout.split()
    assert counts == ["1", "3"]
    assert run_script(repo, "without.py").stdout == "False\n"
    docs = {(d := json.loads((r / "run.json").read_text()))["filename"]: d for r in run_dirs(repo)}
    from florsql.store.rundoc import torch_threads

    threads = torch_threads(docs["with_torch.py"])
    assert threads is not None and (threads.intra_op, threads.inter_op) == (1, 3)
    assert torch_threads(docs["without.py"]) is None
    assert docs["without.py"]["torch_num_threads"] is None


def test_a_row_cut_short_by_a_signal_handler_flush_is_left_out() -> None:
    """A flush from a signal handler can run between two appends of one row: the rows whose
    last column is written are whole, and only they are converted."""
    names = NameTable()
    cols = Columns(names, clock_offset=0.0)
    key = names.key("loss")
    row = cols.loop(1, 0, names.key("epoch"), 0, 0, 5.0)
    cols.loop_s[row] = 0.25
    cols.log(1, key, 0.5)
    cols.log(1, key, 3)
    cols.log_f.append(0.75)  # a float log interrupted after its value...
    cols.log_ctx.append(1)  # ...and its context, before its key
    cols.loop_i.append(1)  # a loop row interrupted after its item
    cols.loop_ctx.append(2)
    assert cols.log_count == 2
    rows = cols.to_table().to_pylist()
    assert [(r["kind"], r["v_int"], r["v_float"], r["seconds"]) for r in rows] == [
        ("loop", 0, None, 0.25),
        ("log", None, 0.5, None),
        ("log", 3, None, None),
    ]


def test_logs_from_other_threads_are_all_kept(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    write(
        repo / "threads.py",
        """
        import threading
        import florsql as flor
        flor.log("start", 0)
        def work(k):
            for i in range(2000):
                flor.log("t", k * 10_000 + i)
        threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for epoch in flor.loop("epoch", range(20)):
            for step in flor.loop("step", range(50)):
                flor.log("m", epoch + step / 100)
        for t in threads:
            t.join()
        """,
    )
    run_script(repo, "threads.py", FLORSQL_FLUSH_INTERVAL="0")
    with Index.open(repo) as ix:
        ix.refresh()
        got = ix.con.sql(
            "SELECT name, vtype, list(coalesce(value_int::DOUBLE, value_float) ORDER BY seq) "
            "FROM log_records GROUP BY ALL ORDER BY name"
        ).fetchall()
        seqs = ix.con.sql("SELECT count(*), count(DISTINCT seq) FROM log_records").fetchall()
    by_name = {name: (vtype, values) for name, vtype, values in got}
    assert by_name["m"] == ("float", [e + s / 100 for e in range(20) for s in range(50)])
    assert by_name["t"][0] == "int"
    assert sorted(by_name["t"][1]) == sorted(k * 10_000 + i for k in range(3) for i in range(2000))
    assert seqs == [(1 + 1000 + 6000, 1 + 1000 + 6000)]


def test_a_segment_written_again_at_its_path_is_read_again(tmp_path: Path) -> None:
    """Segments are read once per process (a query reads the same ones for its replay request,
    each task's verification and the index), keyed by the file's inode, size and mtime: one
    written again at the same path (a new file renamed over it) is read anew, never the copy
    read before."""
    rows = [
        {**dict.fromkeys(schema().names), "kind": "log", "ctx": 1, "name": "a", "vtype": "int"},
    ]
    table = pa.Table.from_pylist(rows, schema())
    path = write_segment(tmp_path, 0, table)
    assert read_segment(path).to_pylist() == table.to_pylist()
    assert read_segment(path) is read_segment(path)  # the copy read before
    other = pa.Table.from_pylist([{**rows[0], "name": "b"}], schema())
    assert write_segment(tmp_path, 0, other) == path
    assert read_segment(path).to_pylist() == other.to_pylist()
