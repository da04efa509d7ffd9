"""The record API end to end: real scripts in real git repos, read back through the index."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import florsql
from florsql.store.index import Index
from tests.helpers import make_repo, run_dirs, run_script, write


def _index_rows(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with Index.open(repo) as ix:
        ix.refresh()
        return ix.con.sql(sql).fetchall()


def test_values_contexts_args_and_timings_read_back(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    out = tmp_path / "expected.json"
    write(
        repo / "train.py",
        """
        import json, sys, time
        import numpy as np
        import torch
        import florsql as flor

        lr = flor.arg("lr", 0.5)
        n = flor.arg("n", 2)
        name = flor.arg("tag", "base")
        fast = flor.arg("fast", False)
        expect = {"loss": [], "acc": []}
        w = torch.tensor(1.0)
        for epoch in flor.loop("epoch", range(n)):
            for step in flor.loop("step", ["a", "b", "c"]):
                w = w * lr + 0.25
                v = flor.log("loss", w)
                assert v is w
                expect["loss"].append([epoch, "abc".index(step), w.item()])
            time.sleep(0.01)
            acc = flor.log("acc", np.float32(0.5) + epoch)
            expect["acc"].append([epoch, float(acc)])
        flor.log("count", 7)
        flor.log("flag", True)
        flor.log("nothing", None)
        flor.log("hist", [1, 2.5, {"a": 3}])
        json.dump(expect, open(sys.argv[-1], "w"))
        """,
    )
    proc = run_script(repo, "train.py", "--lr", "0.25", "--kwargs", "n=3", "tag=xy", str(out))
    assert proc.stdout == "" and proc.stderr == ""  # recording is quiet
    expect = json.loads(out.read_text())
    with Index.open(repo) as ix:
        ix.refresh()
        con = ix.con
        (run_id, status, lr, n, tag, fast) = con.sql(
            "SELECT run_id, status, lr, n, tag, fast FROM runs"
        ).fetchall()[0]
        assert (status, lr, n, tag, fast) == ("finished", 0.25, 3, "xy", False)
        loss = con.sql(
            """SELECT e.iteration, s.iteration, r.value_float FROM log_records r
               JOIN ctx_path e ON e.run_id = r.run_id AND e.ctx_id = r.ctx_id
                    AND e.loop_name = 'epoch'
               JOIN ctx_path s ON s.run_id = r.run_id AND s.ctx_id = r.ctx_id
                    AND s.loop_name = 'step'
               WHERE r.name = 'loss' ORDER BY r.seq"""
        ).fetchall()
        assert [list(r) for r in loss] == expect["loss"]
        acc = con.sql(
            """SELECT p.iteration, r.value_float FROM log_records r JOIN ctx_path p
               USING (run_id, ctx_id) WHERE r.name = 'acc' ORDER BY r.seq"""
        ).fetchall()
        assert [list(r) for r in acc] == expect["acc"]
        top = dict(
            con.sql(
                """SELECT name, concat(vtype, ':', coalesce(value_int::VARCHAR,
                   value_float::VARCHAR, value_str, 'NULL')) FROM log_records WHERE ctx_id = 0"""
            ).fetchall()
        )
        assert top == {
            "count": "int:7",
            "flag": "bool:1",
            "nothing": "null:NULL",
            "hist": 'json:[1, 2.5, {"a": 3}]',
        }
        loops = con.sql(
            """SELECT loop_name, count(*), min(seconds), count(seconds), list(DISTINCT value_str)
               FROM loops GROUP BY ALL ORDER BY 1"""
        ).fetchall()
        assert loops[0][:4] == ("epoch", 3, loops[0][2], 3) and loops[0][2] >= 0.01
        assert loops[1][0:2] == ("step", 9) and loops[1][3] == 9
        assert sorted(loops[1][4]) == ["a", "b", "c"]
        doc = json.loads((repo / ".florsql" / "runs" / run_id / "run.json").read_text())
        assert doc["argv"][1:4] == ["--lr", "0.25", "--kwargs"]
        assert doc["filename"] == "train.py" and doc["torch"].startswith("2.")
        assert doc["python"] == ".".join(map(str, sys.version_info[:3]))


def test_unsupported_value_is_stored_as_repr_with_one_warning(tiny_repo: Path) -> None:
    write(
        tiny_repo / "odd.py",
        """
        import florsql as flor
        class Thing:
            def __repr__(self): return "<thing>"
        for i in flor.loop("epoch", range(3)):
            flor.log("obj", Thing())
        """,
    )
    proc = run_script(tiny_repo, "odd.py")
    assert proc.stderr.count("RecordWarning") == 1 and "repr" in proc.stderr
    rows = _index_rows(tiny_repo, "SELECT vtype, value_str FROM log_records")
    assert rows == [("repr", "<thing>")] * 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('flor.arg("lr", 0.1)\nflor.log("lr", 1)', "'lr' is an arg of this run"),
        ('flor.log("lr", 1)\nflor.arg("lr", 0.1)', "'lr' is already used"),
        (
            'for a in flor.loop("e", range(2)):\n    for b in flor.loop("e", range(2)):\n'
            "        pass",
            "nested inside another flor.loop('e')",
        ),
        ("import threading\nflor.checkpointing(lock=threading.Lock()).__enter__()", "cannot be"),
        ('flor.log("run_id", 1)', "metadata column"),
        ('flor.arg("epochs", 3)', "is not an integer"),
        # Names differing only in case are one column in queries: one value hid the other.
        ('flor.log("loss", 1)\nflor.log("Loss", 2)', "already has the log name 'loss'"),
        ('flor.arg("lr", 0.1)\nflor.log("LR", 1)', "already has the arg name 'lr'"),
        ('flor.arg("lr", 0.1)\nflor.arg("Lr", 1)', "already has the arg name 'lr'"),
        ('flor.log("lr", 1)\nflor.arg("LR", 0.1)', "already has the log name 'lr'"),
        ('for e in flor.loop("epoch", range(2)):\n    flor.log("Epoch", 1)', "flor.loop name"),
        ('flor.log("epoch", 1)\nfor e in flor.loop("Epoch", [1]):\n    pass', "'epoch'"),
        ('for e in flor.loop("e", [1]):\n    for f in flor.loop("E", [1]):\n        pass', "'e'"),
        ('flor.log("Run_ID", 1)', "metadata name 'run_id'"),
    ],
)
def test_misuse_raises_clear_error_at_the_call(tiny_repo: Path, body: str, message: str) -> None:
    write(tiny_repo / "bad.py", "import florsql as flor\n" + body + "\n")
    proc = run_script(tiny_repo, "bad.py", "--epochs", "three", check=False)
    assert proc.returncode == 1
    assert "florsql.errors.RecordError" in proc.stderr and message in proc.stderr


def test_outside_a_git_repo_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path / "t.py", 'import florsql as flor\nflor.log("x", 1)\n')
    proc = run_script(tmp_path, "t.py", check=False)
    assert proc.returncode == 1
    assert "VersionError" in proc.stderr and "git init" in proc.stderr


def test_unwritable_store_warns_and_training_finishes(tiny_repo: Path) -> None:
    (tiny_repo / ".florsql").write_text("a file where the store folder should be")
    proc = run_script(tiny_repo, "train.py")
    assert proc.returncode == 0
    assert "cannot write its store" in proc.stderr


def test_unwritable_store_loses_nothing_once_writable(tiny_repo: Path) -> None:
    # The store is blocked for the first epochs, then becomes writable: the values kept in memory
    # are written at the next flush.
    write(
        tiny_repo / "late.py",
        """
        import os, pathlib
        import florsql as flor
        store = pathlib.Path(".florsql")
        store.write_text("blocked")
        for epoch in flor.loop("epoch", range(4)):
            flor.log("x", epoch)
            if epoch == 1:
                store.unlink()
        """,
    )
    proc = run_script(tiny_repo, "late.py")
    assert "could not write" in proc.stderr or "cannot write" in proc.stderr
    rows = _index_rows(tiny_repo, "SELECT value_int FROM log_records ORDER BY seq")
    assert [r[0] for r in rows] == [0, 1, 2, 3]


def test_query_only_script_is_not_a_run(tiny_repo: Path) -> None:
    run_script(tiny_repo, "train.py")
    write(
        tiny_repo / "q.py",
        """
        import florsql as flor
        with flor.connect(repo=".") as con:
            cur = con.cursor()
            cur.execute("SELECT count(*) FROM logs WHERE loss IS NOT NULL")
            assert cur.fetchone()[0] == 12
        assert flor.dataframe("loss", repo=".").num_rows == 12
        """,
    )
    run_script(tiny_repo, "q.py")
    assert len(run_dirs(tiny_repo)) == 1  # only the training run


def test_import_is_light() -> None:
    code = (
        "import sys, florsql; heavy = [m for m in ('duckdb', 'sqlglot', 'ray', 'torch', "
        "'pyarrow', 'git', 'libcst') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_failed_run_records_the_exception(tiny_repo: Path) -> None:
    write(
        tiny_repo / "boom.py",
        """
        import florsql as flor
        for epoch in flor.loop("epoch", range(5)):
            flor.log("x", epoch)
            if epoch == 2:
                raise ValueError("diverged")
        """,
    )
    proc = run_script(tiny_repo, "boom.py", check=False)
    assert proc.returncode == 1
    rows = _index_rows(tiny_repo, "SELECT status, error FROM runs")
    status, error = rows[0]
    assert status == "failed"
    assert json.loads(error)["type"] == "ValueError" and "diverged" in error
    xs = _index_rows(tiny_repo, "SELECT value_int FROM log_records ORDER BY seq")
    assert [r[0] for r in xs] == [0, 1, 2]  # the failing iteration's value too, via atexit


def test_commit_flushes_and_marks_finished(tiny_repo: Path) -> None:
    write(
        tiny_repo / "c.py",
        """
        import json, pathlib
        import florsql as flor
        flor.log("a", 1.5)
        flor.commit()
        run = next(pathlib.Path(".florsql/runs").iterdir())
        doc = json.loads((run / "run.json").read_text())
        assert doc["status"] == "finished", doc
        assert list((run / "segments").iterdir()), "commit() must flush"
        """,
    )
    run_script(tiny_repo, "c.py")


def test_sigterm_flushes_and_marks_killed(tiny_repo: Path) -> None:
    write(
        tiny_repo / "slow.py",
        """
        import time, sys
        import florsql as flor
        for epoch in flor.loop("epoch", range(1000)):
            for step in flor.loop("step", range(3)):
                flor.log("x", epoch * 10 + step)
            print(epoch, flush=True)
            time.sleep(0.05)
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "slow.py"], cwd=tiny_repo, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for _ in range(3):
        proc.stdout.readline()
    proc.terminate()
    proc.wait(timeout=30)
    rows = _index_rows(tiny_repo, "SELECT status FROM runs")
    assert rows == [("killed",)]
    n = _index_rows(tiny_repo, "SELECT count(*) FROM log_records")[0][0]
    assert n >= 9 and n % 3 == 0


def test_log_name_reuse_across_loops_and_math_values(tiny_repo: Path) -> None:
    write(
        tiny_repo / "m.py",
        """
        import math
        import florsql as flor
        flor.log("v", math.inf)
        flor.log("v", float("nan"))
        flor.log("big", 2**70)
        """,
    )
    run_script(tiny_repo, "m.py")
    rows = _index_rows(tiny_repo, "SELECT name, vtype, value_float, value_str FROM log_records")
    assert rows[0][:3] == ("v", "float", math.inf)
    assert rows[1][1] == "float" and math.isnan(rows[1][2])
    assert rows[2] == ("big", "str", None, str(2**70))


PROGRESS_BAR = """
import florsql as flor


class Progress:  # what tqdm does: it holds the iterable it wraps
    def __init__(self, it):
        self.it, self.n = it, 0

    def __iter__(self):
        for x in self.it:
            self.n += 1
            yield x


w = 0.0
for epoch in flor.loop("epoch", range(3)):
    pbar = Progress(flor.loop("step", range(5)))
    for i in pbar:
        w += i
        flor.log("w_step", w)
        if i == 2:
            break
    flor.log("acc", w * 10)
"""


def test_a_wrapped_inner_loop_left_by_break_does_not_stop_training(tmp_path: Path) -> None:
    """The loop a wrapper kept open past a ``break`` is closed as its epoch ends: the next
    epoch's ``flor.loop("step")`` is not taken for a nested one (it raised before)."""
    repo = make_repo(tmp_path / "p", {"train.py": PROGRESS_BAR})
    run_script(repo, "train.py")
    with florsql.connect(repo, replay="off") as con:
        sql = "SELECT epoch, step, w_step FROM logs WHERE w_step IS NOT NULL ORDER BY epoch, step"
        rows = con.execute(sql).fetchall()
    assert rows == [(e, s, 3.0 * e + [0, 1, 3][s]) for e in range(3) for s in range(3)]


def test_a_wrapped_inner_loop_left_by_break_ends_where_the_loop_ends(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p", {"train.py": PROGRESS_BAR})
    run_script(repo, "train.py")
    with florsql.connect(repo, replay="off") as con:
        sql = "SELECT epoch, step, acc FROM logs WHERE acc IS NOT NULL ORDER BY epoch"
        rows = con.execute(sql).fetchall()
    assert rows == [(0, None, 30.0), (1, None, 60.0), (2, None, 90.0)]


WRAPPED_VARIANTS = """
import florsql as flor


class Progress:
    def __init__(self, it):
        self.it = it

    def __iter__(self):
        for x in self.it:
            yield x


def note(v):
    flor.log("in_helper", v)  # called from inside the loop body: still in the step


pbar_epochs = Progress(flor.loop("epoch", range(3)))
for epoch in pbar_epochs:
    pbar = Progress(
        flor.loop("step", range(5))
    )
    for i in enumerate(
        pbar
    ):
        note(i[0])
        if i[0] == 1:
            break
    for v in flor.loop("valid", range(2)):
        flor.log("v", v)
    flor.log("after", epoch)
    if epoch == 1:
        break
flor.log("end", 1)
"""


def test_logs_and_loops_after_a_wrapped_loop_left_by_break_land_outside_it(
    tmp_path: Path,
) -> None:
    """The check is where the script's frame runs: a sibling loop after the wrapped one is the
    epoch's child, not the step's; a helper called from the body logs in the step; an outer
    loop a wrapper holds past its break leaves what follows at the run's level."""
    repo = make_repo(tmp_path / "p", {"train.py": WRAPPED_VARIANTS})
    run_script(repo, "train.py")
    with florsql.connect(repo, replay="off") as con:
        helper = con.execute(
            "SELECT epoch, step, in_helper FROM logs WHERE in_helper IS NOT NULL ORDER BY 1, 2"
        ).fetchall()
        valid = con.execute(
            "SELECT epoch, step, valid, v FROM logs WHERE v IS NOT NULL ORDER BY 1, 3"
        ).fetchall()
        after = con.execute(
            "SELECT epoch, step, valid, after FROM logs WHERE after IS NOT NULL ORDER BY 1"
        ).fetchall()
        end = con.execute("SELECT epoch, end FROM logs WHERE end IS NOT NULL").fetchall()
    assert helper == [(e, s, s) for e in range(2) for s in range(2)]
    assert valid == [(e, None, v, v) for e in range(2) for v in range(2)]
    assert after == [(0, None, None, 0), (1, None, None, 1)]
    assert end == [(None, 1)]
