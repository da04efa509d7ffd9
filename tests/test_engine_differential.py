"""Differential: florsql over recorded columns equals DuckDB over a hand-built flat table.

Histories are generated (hypothesis), written in the real on-disk format and ingested by the real
index; the oracle is the flat table a reader would build by hand from the same events: one row
per (run, loop context) with the last value of each name. Each florsql query is paired with the
same question over that table, its row grain written out explicitly.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from florsql.engine import Engine
from tests.helpers_sql import BASE_TIME, RunBuilder

NAMES = {"loss": pa.float64(), "hits": pa.int64(), "acc": pa.float64(), "final": pa.int64()}
FLAT = {"run_id": pa.string(), "lr": pa.float64(), "opt": pa.string(), "epoch": pa.int64(),
        "step": pa.int64(), **NAMES, **{f"has_{n}": pa.bool_() for n in NAMES}}  # fmt: skip

# (florsql query, the same question over `flat`, parameters)
PAIRS = [
    ("SELECT run_id, epoch, step, loss FROM logs",
     "SELECT run_id, epoch, step, loss FROM flat WHERE has_loss", []),
    ("SELECT epoch, avg(loss), count(*) FROM logs WHERE lr > 0.15 GROUP BY epoch",
     "SELECT epoch, avg(loss), count(*) FROM flat WHERE has_loss AND lr > 0.15 GROUP BY epoch", []),
    ("SELECT run_id, max(acc), count(acc) FROM logs GROUP BY run_id",
     "SELECT run_id, max(acc), count(acc) FROM flat WHERE has_acc GROUP BY run_id", []),
    ("SELECT run_id, epoch, step, acc, loss FROM logs WHERE opt = 'a'",
     "SELECT run_id, epoch, step, acc, loss FROM flat WHERE (has_acc OR has_loss) AND opt = 'a'",
     []),
    ("SELECT count(*) FROM logs",
     "SELECT count(*) FROM flat WHERE has_loss OR has_hits OR has_acc OR has_final", []),
    ("SELECT run_id, final FROM logs WHERE final IS NOT NULL",
     "SELECT run_id, final FROM flat WHERE has_final AND final IS NOT NULL", []),
    ("SELECT run_id, arg_max(loss, epoch * 100 + step) FROM logs GROUP BY run_id",
     "SELECT run_id, arg_max(loss, epoch * 100 + step) FROM flat WHERE has_loss GROUP BY run_id",
     []),
    ("SELECT a.run_id, a.epoch, a.acc, b.loss FROM logs a JOIN logs b "
     "ON a.run_id = b.run_id AND a.epoch = b.epoch WHERE b.step = 0",
     "SELECT a.run_id, a.epoch, a.acc, b.loss FROM (FROM flat WHERE has_acc) a JOIN "
     "(FROM flat WHERE has_loss) b ON a.run_id = b.run_id AND a.epoch = b.epoch WHERE b.step = 0",
     []),
    ("WITH t AS (SELECT run_id, epoch, acc FROM logs) SELECT run_id, epoch, "
     "acc - lag(acc) OVER (PARTITION BY run_id ORDER BY epoch) FROM t",
     "WITH t AS (SELECT run_id, epoch, acc FROM flat WHERE has_acc) SELECT run_id, epoch, "
     "acc - lag(acc) OVER (PARTITION BY run_id ORDER BY epoch) FROM t", []),
    ("SELECT run_id, step, loss FROM logs WHERE lr >= ? AND step = ?",
     "SELECT run_id, step, loss FROM flat WHERE has_loss AND lr >= ? AND step = ?", [0.2, 1]),
    ("SELECT epoch, sum(hits) FROM logs WHERE epoch IN (0, 2) OR hits > 3 GROUP BY ALL",
     "SELECT epoch, sum(hits) FROM flat WHERE has_hits AND (epoch IN (0, 2) OR hits > 3) "
     "GROUP BY ALL", []),
    ("SELECT DISTINCT run_id, epoch FROM logs WHERE epoch IS NOT NULL",
     "SELECT DISTINCT run_id, epoch FROM flat WHERE (has_loss OR has_hits OR has_acc OR has_final)"
     " AND epoch IS NOT NULL", []),
]  # fmt: skip

value = st.one_of(st.none(), st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 3)))
count = st.one_of(st.none(), st.integers(0, 9))


@st.composite
def run_events(draw: st.DrawFn, index: int) -> RunBuilder:
    b = RunBuilder(
        f"r{index}",
        {"lr": draw(st.sampled_from([0.1, 0.2, 0.3])), "opt": draw(st.sampled_from("ab"))},
        tstamp=BASE_TIME.replace(hour=index),
    )
    for epoch in range(draw(st.integers(0, 3))):
        with b.loop("epoch", epoch):
            for step in range(draw(st.integers(0, 3))):
                with b.loop("step", step):
                    for _ in range(draw(st.integers(0, 2))):  # 0, 1 or a repeated log
                        b.log("loss", draw(value))
                    if draw(st.booleans()):
                        b.log("hits", draw(count))
            if draw(st.booleans()):
                b.log("acc", draw(value))
    if draw(st.booleans()):
        b.log("final", draw(count))
    return b


histories = st.integers(1, 4).flatmap(lambda n: st.tuples(*(run_events(i) for i in range(n))))


def flat_table(runs: tuple[RunBuilder, ...]) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for b in runs:
        for ctx, vals in sorted(b.values.items()):
            row = {"run_id": b.run_id, **b.args, **b.ctx_loops[ctx], **vals}
            row.update({f"has_{n}": n in vals for n in NAMES})
            rows.append(row)
    cols = {k: [r.get(k) for r in rows] for k in FLAT}
    return pa.table(cols, schema=pa.schema(list(FLAT.items())))


def _norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    def cell(v: Any) -> Any:
        return round(v, 9) if isinstance(v, float) and not math.isnan(v) else v

    return sorted((tuple(cell(v) for v in r) for r in rows), key=repr)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories)
def test_florsql_equals_duckdb_over_a_flat_table(runs: tuple[RunBuilder, ...]) -> None:
    repo = Path(tempfile.mkdtemp(prefix="florsql-diff-"))
    try:
        for b in runs:
            b.write(repo, segment_size=7)
        oracle = duckdb.connect()
        oracle.register("flat_arrow", flat_table(runs))
        oracle.execute("CREATE TABLE flat AS SELECT * FROM flat_arrow")
        for use_cache in (True, False):
            with Engine(repo, use_cache=use_cache) as eng, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                known = set(eng.catalog().names())
                for ours, theirs, params in PAIRS:
                    if not _names_exist(ours, known):
                        continue
                    got = eng.execute(ours, params).table
                    want = oracle.execute(theirs, params).fetchall()
                    rows = list(zip(*(c.to_pylist() for c in got.columns), strict=True))
                    assert _norm(rows) == _norm(want), (ours, use_cache)
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def _names_exist(sql: str, known: set[str]) -> bool:
    """A name no run logged (a loop no run ran) is not a column: skip the queries using it."""
    return all(n in known for n in (*NAMES, "epoch", "step") if n in sql)
