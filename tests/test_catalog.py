"""The catalog and binding: columns of logs, their types, hindsight names, unknown names."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from florsql.engine import Engine
from florsql.errors import PlanError, SqlError
from florsql.plan import hindsight
from florsql.plan.catalog import log_type
from florsql.plan.hindsight import scan_source
from florsql.store.segments import Tagged
from tests.helpers_sql import RunBuilder, fixture_history


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    repo = fixture_history(tmp_path_factory.mktemp("catalog") / "repo")
    with Engine(repo) as eng:
        yield eng


def test_logs_columns_in_order_with_kinds(engine: Engine) -> None:
    cat = engine.catalog()
    assert [(c.name, c.kind) for c in cat.columns][:9] == [
        ("projid", "meta"),
        ("run_id", "meta"),
        ("tstamp", "meta"),
        ("vid", "meta"),
        ("filename", "meta"),
        ("epoch", "loop"),
        ("step", "loop"),
        ("lr", "arg"),
        ("opt", "arg"),
    ]
    logs = {c.name: c for c in cat.columns if c.kind == "log"}
    assert sorted(logs) == ["acc", "final", "grad", "loss", "pre", "score", "summary", "val"]
    assert {n for n, c in logs.items() if c.hindsight} == {"grad", "pre", "summary", "val"}
    assert logs["grad"].sql_type == "NULL" and logs["grad"].lacking_runs == 3
    assert logs["loss"].sql_type == "DOUBLE" and logs["loss"].recorded_runs == 3


def test_log_types_follow_the_stored_values(tmp_path: Path) -> None:
    b = RunBuilder("r1", {"n": 3})
    with b.loop("epoch", 0):
        b.log("ints", 1)
        b.log("mixed", 1)
        b.log("flag", True)
        b.log("text", "a")
        b.log("blob", Tagged("json", '{"k": [1, 2]}'))
        b.log("nothing", None)
    with b.loop("epoch", 1):
        b.log("mixed", 2.5)
        b.log("ints", None)
    b.write(tmp_path)
    with Engine(tmp_path) as eng:
        types = {c.name: c.sql_type for c in eng.catalog().columns}
        row = eng.execute("SELECT * FROM logs WHERE epoch = 0").table.to_pylist()[0]
    assert types["ints"] == "BIGINT" and types["mixed"] == "DOUBLE"
    assert types["flag"] == "BOOLEAN" and types["text"] == "VARCHAR"
    assert types["blob"] == "VARCHAR" and types["nothing"] == "NULL"
    assert types["n"] == "BIGINT"
    assert row["flag"] is True and row["blob"] == '{"k": [1, 2]}' and row["mixed"] == 1.0
    assert log_type(["bool", "str"]) == "VARCHAR" and log_type(["null"]) == "NULL"


def test_last_value_wins_and_none_counts_as_logged(tmp_path: Path) -> None:
    b = RunBuilder("r1", {})
    with b.loop("epoch", 0):
        b.log("x", 1.0)
        b.log("x", 2.0)
    with b.loop("epoch", 1):
        b.log("x", 3.0)
        b.log("x", None)
        b.log("y", 5.0)
    b.write(tmp_path)
    with Engine(tmp_path) as eng:
        rows = eng.execute("SELECT epoch, x FROM logs ORDER BY epoch").table.to_pylist()
    assert rows == [{"epoch": 0, "x": 2.0}, {"epoch": 1, "x": None}]


def test_hindsight_finder_chains_helpers_and_positions() -> None:
    src = """
import florsql as flor
from florsql import log as L

flor.log("head", 1)

def step_fn(x):
    return flor.log("inner", x)

def unused():
    flor.log("lost", 1)

for e in flor.loop("epoch", range(3)):
    for b in flor.loop("batch", range(2)):
        step_fn(b)
    L("epoch_level", e)
flor.log("tail", 2)
flor.log(name_var, 3)
"""
    code = scan_source(src)
    assert code is not None
    sites = {s.name: (s.chain, s.where) for s in code.sites}
    assert sites == {
        "head": ((), "head"),
        "inner": (("epoch", "batch"), "loop"),
        "lost": (None, "unknown"),
        "epoch_level": (("epoch",), "loop"),
        "tail": ((), "tail"),
    }
    assert code.inner_loops() == ("batch",)
    assert scan_source("def broken(:\n") is None


UNKNOWN = [
    ("SELECT gradnorm FROM logs", "Unknown column 'gradnorm'. Did you mean 'grad'?", 1, 8),
    ("SELECT l.gradd\nFROM logs l", "Unknown column 'gradd'. Did you mean 'grad'?", 1, 10),
    (
        "SELECT run_id\nFROM logs\nWHERE  epok > 1",
        "Unknown column 'epok'. Did you mean 'epoch'?",
        3,
        8,
    ),
    ("SELECT r.statuz FROM runs r", "Unknown column 'statuz'. Did you mean 'status'?", 1, 10),
    ("SELECT zzzz FROM logs", "Unknown column 'zzzz'.", 1, 8),
]


@pytest.mark.parametrize(("sql", "message", "line", "col"), UNKNOWN)
def test_unknown_columns_have_positions_and_suggestions(
    engine: Engine, sql: str, message: str, line: int, col: int
) -> None:
    with pytest.raises(PlanError) as info:
        engine.execute(sql)
    assert info.value.message == message
    assert (info.value.line, info.value.col) == (line, col)
    assert str(info.value).splitlines()[-1].endswith("^")


AMBIGUOUS = [
    (
        "SELECT lr FROM logs JOIN runs USING (run_id)",
        "Ambiguous column 'lr': logs and runs both have it; write logs.lr or runs.lr",
        1,
        8,
    ),
    (
        "SELECT logs.run_id FROM logs, runs WHERE\n  lr > 0",
        "Ambiguous column 'lr': logs and runs both have it; write logs.lr or runs.lr",
        2,
        3,
    ),
    (
        "SELECT a.run_id FROM logs a JOIN logs b USING (run_id) WHERE epoch = 1",
        "Ambiguous column 'epoch': a (logs) and b (logs) both have it; write a.epoch or b.epoch",
        1,
        62,
    ),
    (
        "SELECT (SELECT status) FROM runs r, runs s",
        "Ambiguous column 'status': r (runs) and s (runs) both have it; write r.status or s.status",
        1,
        16,
    ),
]


@pytest.mark.parametrize(("sql", "message", "line", "col"), AMBIGUOUS)
def test_ambiguous_columns_name_every_source(
    engine: Engine, sql: str, message: str, line: int, col: int
) -> None:
    with pytest.raises(PlanError) as info:
        engine.execute(sql)
    assert info.value.message == message
    assert (info.value.line, info.value.col) == (line, col)


def test_qualified_or_using_columns_are_not_ambiguous(engine: Engine) -> None:
    for sql in (
        "SELECT run_id, logs.lr, runs.lr FROM logs JOIN runs USING (run_id)",
        "SELECT status FROM logs JOIN runs USING (run_id)",
        "SELECT lr FROM logs JOIN (SELECT run_id FROM runs) r USING (run_id)",
    ):
        engine.execute(sql)


def test_aliases_lambdas_and_rows_are_not_unknown(engine: Engine) -> None:
    for sql in (
        "SELECT loss AS l2 FROM logs ORDER BY l2 LIMIT 1",
        "SELECT epoch * 2 AS e2 FROM logs WHERE e2 > 2 LIMIT 1",
        "SELECT list_transform([1, 2], x -> x + epoch) FROM logs LIMIT 1",
        "SELECT run_id, count(*) AS n FROM logs GROUP BY run_id HAVING n > 1",
        "SELECT COLUMNS('lo.*') FROM logs LIMIT 1",
    ):
        engine.execute(sql)


def test_duckdb_errors_point_into_the_query(engine: Engine) -> None:
    with pytest.raises(SqlError) as info:
        engine.execute("SELECT run_id\nFROM logz")
    assert "logz" in info.value.message and (info.value.line, info.value.col) == (2, 6)
    with pytest.raises(SqlError) as info:
        engine.execute("SELECT 1 FROM logs WHERE opt = 'a'::INT")
    assert "Could not convert" in info.value.message
    assert (info.value.line, info.value.col) == (1, 26)  # DuckDB points at the cast column
    assert "__flor" not in str(info.value)


def test_show_columns_tells_which_versions_have_each(engine: Engine) -> None:
    rows = {r["column_name"]: r for r in engine.execute("SHOW COLUMNS FROM logs").table.to_pylist()}
    assert rows["loss"]["versions"] == ["v1", "v2"] and rows["loss"]["runs_with"] == 3
    assert rows["grad"]["hindsight"] and rows["grad"]["versions"] == []
    assert rows["grad"]["runs_lacking"] == 3 and rows["grad"]["in_current_code"] == ["train.py"]
    assert rows["score"]["versions"] == ["v2"]
    runs = engine.execute("SHOW COLUMNS FROM runs").table.column("column_name").to_pylist()
    assert runs[:3] == ["run_id", "projid", "tstamp"] and "lr" in runs
    with pytest.raises(PlanError, match="Did you mean 'runs'"):
        engine.execute("SHOW COLUMNS FROM rusn")


def test_metadata_relations_are_queryable(engine: Engine) -> None:
    for rel in ("runs", "args", "versions", "loops", "checkpoints", "replays", "log_records"):
        engine.execute(f"SELECT * FROM {rel} LIMIT 1")
    (n,) = engine.execute("SELECT count(*) AS n FROM checkpoints").table.column("n").to_pylist()
    assert n == 8
    shown = engine.execute("SHOW RUNS").table.column("run_id").to_pylist()
    assert shown == ["r1", "r2", "r3", "r4"]


def _hindsight_names(repo: Path) -> set[str]:
    with Engine(repo) as eng:
        return {c.name for c in eng.catalog().columns if c.kind == "log" and c.hindsight}


def test_scans_are_cached_on_disk_per_content(tmp_path: Path) -> None:
    """A new process querying an unchanged script reads its scan from ``.florsql/cache/scan``
    and never imports libcst; an edited script is scanned again; a damaged cache entry is
    scanned again (never trusted)."""
    repo = fixture_history(tmp_path / "repo")
    assert _hindsight_names(repo) == {"grad", "pre", "summary", "val"}
    cached = sorted((repo / ".florsql" / "cache" / "scan").glob("*.json"))
    assert len(cached) == 2  # train.py and eval.py
    probe = (
        "import sys; from florsql.engine import Engine\n"
        "with Engine(sys.argv[1]) as eng:\n"
        "    names = sorted(c.name for c in eng.catalog().columns if c.hindsight)\n"
        "print(names, 'libcst' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(repo)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['grad', 'pre', 'summary', 'val'] False"

    train = repo / "train.py"
    train.write_text(train.read_text() + 'flor.log("after_all", 1)\n')
    assert _hindsight_names(repo) == {"after_all", "grad", "pre", "summary", "val"}

    for entry in (repo / ".florsql" / "cache" / "scan").glob("*.json"):
        entry.write_text('{"filename": "train.py", "sites": [["x"')  # torn or damaged
    hindsight._scan_cached.cache_clear()
    assert _hindsight_names(repo) == {"after_all", "grad", "pre", "summary", "val"}


def test_cached_scan_equals_a_fresh_scan(tmp_path: Path) -> None:
    """What the disk cache stores and reads back is the scan itself (chains None and (),
    every kind of site)."""
    src = (Path(__file__).parent / "test_catalog.py").read_text()
    start = src.index('src = """') + len('src = """')
    code = scan_source(src[start : src.index('"""', start)], "s.py")
    assert code is not None and any(s.chain is None for s in code.sites)
    assert hindsight._decode(json.loads(json.dumps(hindsight._encode(code)))) == code
    assert hindsight._decode(hindsight._encode(None)) is None
