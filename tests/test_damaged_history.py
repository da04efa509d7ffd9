"""A damaged history costs only the damaged files.

Every kind of damage a real store can hold (a truncated or garbage segment, a garbage or missing
run.json beside segments, a garbage checkpoint manifest, a replay task's garbage done.json or
segment, and what kill -9 leaves at random points of a recording): queries answer for the intact
runs exactly as an undamaged copy does, warn once per damaged file (a ``DamagedFileWarning``
naming it, through DB-API a Python warning, in the CLI a ``warning:`` line), show a run whose
run.json is gone as ``damaged``, and never change a byte of the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

import florsql
from florsql.cli import main
from florsql.engine.session import Engine
from florsql.errors import DamagedFileWarning
from florsql.store import layout
from florsql.store.replays import DONE, replays_dir
from florsql.store.segments import list_segments, read_segment, write_segment
from tests.helpers import git, script_env, write
from tests.helpers_sql import fixture_history

# sums rounded: DuckDB's parallel aggregation may add floats in another order from run to run
INTACT = (
    "SELECT run_id, count(loss) AS n, round(sum(loss), 9) AS s, max(acc) AS a FROM logs "
    "GROUP BY ALL"
)
RUNS = "SELECT run_id, status FROM runs ORDER BY run_id"


def _store_bytes(repo: Path) -> dict[str, str]:
    """Every file the runs and replays wrote: path -> sha256."""
    out = {}
    for root in (layout.runs_dir(repo), replays_dir(repo)):
        for path in sorted(root.rglob("*")):
            if path.is_file():
                rel = path.relative_to(repo).as_posix()
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _replay_task(repo: Path, replay_id: str, task_id: str, run_id: str) -> Path:
    """A finished replay task folder as a worker leaves it: a segment, then done.json."""
    folder = replays_dir(repo) / replay_id / task_id
    cols: dict[str, list[Any]] = {name: [None] for name in read_schema_names()}
    cols.update(kind=["log"], seq=[0], ctx=[0], name=["summary"], vtype=["float"], v_float=[1.0])
    write_segment(folder / layout.SEGMENTS, 1, pa.table(cols, schema=_schema()))
    done = {"run_id": run_id, "vid": "v2", "names": ["summary"], "started": 0.0, "logs": 1}
    (folder / DONE).write_text(json.dumps(done))
    return folder


def _schema() -> pa.Schema:
    from florsql.store.segments import schema

    return schema()


def read_schema_names() -> list[str]:
    return list(_schema().names)


def _damage(repo: Path) -> list[str]:
    """Damage one file of each kind; returns the damaged paths (relative to the repo)."""
    runs = layout.runs_dir(repo)
    seg = runs / "r1" / layout.SEGMENTS / "000001.arrow"
    seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])  # truncated
    (runs / "r2" / layout.RUN_JSON).write_text('{"run_id": "r2", "tstamp": ')  # garbage
    (runs / "r3" / layout.RUN_JSON).unlink()  # gone, its segments remain
    manifest = runs / "r1" / layout.CHECKPOINTS / layout.MANIFEST
    manifest.write_bytes(b"\x00\xffnot json\n" + manifest.read_bytes())
    bad_done = _replay_task(repo, "rp1", "t1", "r4") / DONE
    bad_done.write_text("{ garbage")
    bad_seg = list_segments(_replay_task(repo, "rp1", "t2", "r4") / layout.SEGMENTS)[0]
    bad_seg.write_bytes(b"ARROW1 but not really")
    return [
        p.relative_to(repo).as_posix()
        for p in (seg, runs / "r2" / layout.RUN_JSON, runs / "r3" / layout.RUN_JSON, manifest)
    ] + [bad_done.relative_to(repo).as_posix(), bad_seg.relative_to(repo).as_posix()]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Two identical histories; the second gets one damaged file of each kind."""
    clean = fixture_history(tmp_path / "clean")
    damaged = tmp_path / "damaged"
    shutil.copytree(clean, damaged)
    return clean, damaged, _damage(damaged)


def _rows(repo: Path, sql: str) -> tuple[list[dict[str, Any]], list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conn = florsql.connect(repo, replay="off")
        try:
            rows = [_query(conn, sql) for _ in range(3)][-1]
            conn.execute("SELECT count(*) FROM runs")  # a fourth statement, nothing new
        finally:
            conn.close()
    return rows, [w for w in caught if issubclass(w.category, DamagedFileWarning)]


def _query(conn: Any, sql: str) -> list[dict[str, Any]]:
    cur = conn.execute(sql)
    names = [d[0] for d in cur.description]
    return sorted((dict(zip(names, row, strict=True)) for row in cur.fetchall()), key=str)


def test_intact_runs_answer_as_in_an_undamaged_copy(pair: tuple[Path, Path, list[str]]) -> None:
    clean, damaged, paths = pair
    before = _store_bytes(damaged)
    expected, none = _rows(clean, INTACT)
    assert none == []
    got, caught = _rows(damaged, INTACT)
    # r1 lost its first segment, r2 and r3 their identity only: their rows still answer
    intact = [r for r in expected if r["run_id"] in ("r2", "r3", "r4")]
    assert [r for r in got if r["run_id"] != "r1"] == intact
    # exactly one warning per damaged file, across repeated queries, each naming its file
    assert sorted(str(w.message).split(" ")[2] for w in caught) == sorted(paths)
    assert all(isinstance(w.message, DamagedFileWarning) for w in caught)
    assert {w.message.path for w in caught} == set(paths)  # type: ignore[attr-defined]
    assert _store_bytes(damaged) == before  # nothing rewritten, moved or deleted


def test_runs_without_identity_are_shown_damaged(pair: tuple[Path, Path, list[str]]) -> None:
    _, damaged, _ = pair
    rows, _ = _rows(damaged, RUNS)
    assert rows == sorted(
        [
            {"run_id": "r1", "status": "finished"},
            {"run_id": "r2", "status": "damaged"},
            {"run_id": "r3", "status": "damaged"},
            {"run_id": "r4", "status": "finished"},
        ],
        key=str,
    )


def test_each_kind_of_damage_says_what_was_skipped(pair: tuple[Path, Path, list[str]]) -> None:
    _, damaged, _ = pair
    _, caught = _rows(damaged, RUNS)
    text = {w.message.path: str(w.message) for w in caught}  # type: ignore[attr-defined]
    assert "skipped: its rows of run r1" in text[".florsql/runs/r1/segments/000001.arrow"]
    assert "status 'damaged'" in text[".florsql/runs/r2/run.json"]
    assert "it is missing but the run's segments remain" in text[".florsql/runs/r3/run.json"]
    manifest = ".florsql/runs/r1/checkpoints/manifest.jsonl"
    assert "skipped: 1 of its 5 lines (checkpoints of run r1)" in text[manifest]
    assert "replay rp1 task t1" in text[".florsql/replays/rp1/t1/done.json"]
    assert "replay rp1 task t2" in text[".florsql/replays/rp1/t2/segments/000001.arrow"]
    assert all(t.endswith("the file is left as it is") for t in text.values())


def test_a_rebuilt_index_warns_once_again_and_answers_the_same(
    pair: tuple[Path, Path, list[str]],
) -> None:
    _, damaged, paths = pair
    first, caught = _rows(damaged, INTACT)
    assert len(caught) == len(paths)
    with warnings.catch_warnings(record=True) as again:  # the same index: nothing new
        warnings.simplefilter("always")
        with Engine(damaged) as eng:
            eng.refresh()
            eng.execute(INTACT)
    assert [w for w in again if issubclass(w.category, DamagedFileWarning)] == []
    (layout.store_dir(damaged) / layout.INDEX_FILE).unlink()  # rebuild from the files
    rebuilt, caught = _rows(damaged, INTACT)
    assert rebuilt == first
    assert sorted(w.message.path for w in caught) == sorted(paths)  # type: ignore[attr-defined]


def test_the_cli_prints_the_warnings_and_the_rows(pair: tuple[Path, Path, list[str]]) -> None:
    _, damaged, paths = pair
    git(damaged, "init", "-q")  # the CLI works in a git repository
    before = _store_bytes(damaged)
    out = CliRunner().invoke(
        main, ["query", "--repo", str(damaged), "--format", "csv", RUNS.replace("ORDER BY", "--")]
    )
    assert out.exit_code == 0, out.output
    assert "Traceback" not in out.output
    lines = [line for line in out.stderr.splitlines() if line.startswith("warning: cannot read")]
    assert sorted(line.split(" ")[3] for line in lines) == sorted(paths)
    assert "r3,damaged" in out.stdout
    assert _store_bytes(damaged) == before


def test_a_segment_of_other_columns_is_damage_not_a_crash(tmp_path: Path) -> None:
    repo = fixture_history(tmp_path / "repo")
    seg = layout.runs_dir(repo) / "r2" / layout.SEGMENTS / "000001.arrow"
    with pa.OSFile(str(seg), "wb") as f, pa.ipc.new_file(f, pa.schema([("x", pa.int64())])) as w:
        w.write_table(pa.table({"x": [1, 2]}))
    rows, caught = _rows(repo, "SELECT DISTINCT run_id FROM log_records")
    assert [r["run_id"] for r in rows] == ["r1", "r3", "r4"]
    assert [w.message.path for w in caught] == [seg.relative_to(repo).as_posix()]  # type: ignore[attr-defined]


# -- kill -9 at random points of real recordings -------------------------------------------

RECORD = """
import sys
import florsql as flor
run = flor.arg("run", 0)
for epoch in flor.loop("epoch", range(40)):
    print(epoch, flush=True)  # the test kills after reading its chosen line
    sys.stdin.readline()  # and waits for the test's go: on a loaded machine it ran to its end
    for step in flor.loop("step", range(50)):
        flor.log("v", run * 100000 + epoch * 100 + step)
    flor.log("e", epoch)
"""


def _record(repo: Path, run: int, kill_after: int | None) -> None:
    """Record one run; with ``kill_after``, SIGKILL it right after that many epoch lines."""
    proc = subprocess.Popen(
        [sys.executable, "record.py", "--run", str(run)],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=script_env(),
    )
    assert proc.stdout is not None and proc.stdin is not None
    if kill_after is None:
        proc.stdin.write("\n" * 40)
        proc.stdin.close()
        proc.stdout.read()
        assert proc.wait(timeout=120) == 0
        return
    for k in range(kill_after):
        assert proc.stdout.readline(), "the script ended early"
        if k < kill_after - 1:  # the last line read: it waits on its stdin as it is killed
            proc.stdin.write("\n")
            proc.stdin.flush()
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL  # the process is gone


def _oracle(repo: Path) -> dict[str, tuple[int, int]]:
    """Per run folder, from its readable segments with pyarrow: (count, sum) of ``v``."""
    out = {}
    for folder in sorted(layout.runs_dir(repo).iterdir()):
        n = s = 0
        for seg in list_segments(folder / layout.SEGMENTS):
            try:
                t = read_segment(seg).to_pylist()
            except (ValueError, OSError, KeyError):  # pa.ArrowInvalid is a ValueError
                continue
            values = [r["v_int"] for r in t if r["kind"] == "log" and r["name"] == "v"]
            n, s = n + len(values), s + sum(values)
        out[folder.name] = (n, s)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_at_random_points_plus_damage(tiny_repo: Path, seed: int) -> None:
    rng = random.Random(seed)
    write(tiny_repo / "record.py", RECORD)
    for run in range(3):
        _record(tiny_repo, run, kill_after=rng.randint(1, 8))
    _record(tiny_repo, 3, kill_after=None)
    folders = sorted(layout.runs_dir(tiny_repo).iterdir())
    assert len(folders) == 4
    # deliberate damage on top: garbage in one killed run's newest segment, and one run.json
    victim, orphan = rng.sample(folders, 2)
    damaged = []
    segs = list_segments(victim / layout.SEGMENTS)
    if segs:
        segs[-1].write_bytes(os.urandom(64))
        damaged.append(segs[-1].relative_to(tiny_repo).as_posix())
    (orphan / layout.RUN_JSON).write_text("null")
    damaged.append((orphan / layout.RUN_JSON).relative_to(tiny_repo).as_posix())
    expected = _oracle(tiny_repo)
    before = _store_bytes(tiny_repo)

    rows, caught = _rows(
        tiny_repo,
        "SELECT run_id, count(v) AS n, sum(v) AS s FROM logs WHERE v IS NOT NULL GROUP BY ALL",
    )
    got = {r["run_id"]: (r["n"], r["s"]) for r in rows}
    assert got == {k: v for k, v in expected.items() if v[0]}
    assert sorted(w.message.path for w in caught) == sorted(damaged)  # type: ignore[attr-defined]
    statuses, _ = _rows(tiny_repo, "SELECT run_id, status, run FROM runs")
    for r in statuses:  # runs 0-2 were killed, run 3 finished, the orphan lost its identity
        want = (
            "damaged" if r["run_id"] == orphan.name else "finished" if r["run"] == 3 else "killed"
        )
        assert r["status"] == want, r
    assert len(statuses) == 4
    assert _store_bytes(tiny_repo) == before


def _set(path: Path, **fields: Any) -> None:
    doc = json.loads(path.read_text())
    doc.update(fields)
    path.write_text(json.dumps(doc))


#: Well-formed JSON whose values DuckDB could not take: each would once have failed the whole
#: refresh (and every query) inside DuckDB's transaction.
TYPED = {
    "tstamp is not a time": lambda r: _set(r / "runs/r2/run.json", tstamp="yesterday"),
    "pid past BIGINT": lambda r: _set(r / "runs/r2/run.json", pid=2**70),
    "args is a list": lambda r: _set(r / "runs/r2/run.json", args=[1, 2]),
    "host is a number": lambda r: _set(r / "runs/r2/run.json", host=7),
    "run.json is a list": lambda r: (r / "runs/r2/run.json").write_text("[1, 2]"),
    "iteration past BIGINT": lambda r: (r / "runs/r2/checkpoints/manifest.jsonl").write_text(
        '{"loop": "epoch", "iteration": 1e400, "position": "end", "file": "f", "bytes": 1}\n'
        + json.dumps(
            {"loop": "epoch", "iteration": 2**64, "position": "end", "file": "f", "bytes": 1}
        )
        + "\n"
    ),
    "done started is NaN": lambda r: (_replay_task(r.parent, "rp", "t", "r4") / DONE).write_text(
        '{"run_id": "r4", "vid": "v2", "names": ["summary"], "started": NaN}'
    ),
}


@pytest.mark.parametrize("kind", sorted(TYPED))
def test_values_duckdb_cannot_take_are_damage_too(tmp_path: Path, kind: str) -> None:
    repo = fixture_history(tmp_path / "repo")
    TYPED[kind](layout.store_dir(repo))
    rows, caught = _rows(repo, "SELECT run_id, count(loss) AS n FROM logs GROUP BY ALL")
    assert [r["run_id"] for r in rows] == ["r1", "r2", "r3"]
    assert len(caught) == 1, [str(w.message) for w in caught]
