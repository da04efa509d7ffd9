"""Exact-SQL stranger sweep s31: the shapes a BI tool or an analyst sends, answered exactly.

Oracle for recorded columns: DuckDB over a flat table holding the rows of ``logs`` built by hand
from the same events (one row per run and loop context, the last value of each name, a
``has_<name>`` flag per log name); each florsql query is paired with the same question over that
table, its row grain written ``{a|b}`` (the contexts where ``a`` or ``b`` was logged; ``{}``:
every context). The history has log names that are SQL keywords (``order``, ``group``,
``value``, ``end``), hold a space or a dot (``Val Loss``, ``a.b``), a mixed-case arg (``LR``)
that another script's runs log as ``lr``. Shapes: CTEs reading ``logs`` twice, every set
operation, IN/EXISTS/scalar/ALL subqueries, windows with frames, QUALIFY, FILTER, GROUP BY ALL /
ORDER BY ALL, DISTINCT ON, CASE, OR across args and loops, BETWEEN / IN / IS NULL on loops,
LIMIT/OFFSET, aliases shadowing columns, ``?`` in every clause; the same answers through the
DB-API, ``florsql query`` (csv, json) and the Flight SQL server (ADBC).

Oracle for hindsight columns (slow): tests/test_pushdown_shapes.py's pattern, a history whose
runs did not record today's statements (replayed) against one whose runs did (replay off).

Found: ``ORDER BY <run column> LIMIT n`` cut the replay set by counting the rows each run
already has, also where a row of ``logs`` does not give one row of the answer: ``unnest`` (and
``generate_subscripts``, ``regexp_split_to_table``) in the select list gives none for an empty
list, a sample (``TABLESAMPLE``, ``USING SAMPLE``) keeps the rows of any run, so the answer
came from a run left out of the replay, its hindsight cells NULL; a volatile first key
(``ORDER BY logs.lr * random()``) failed with DuckDB's "ORDER BY window expressions cannot be
volatile", an error about the planner's own ranking query (florsql/plan/limit.py). A predicate
holding ``COLUMNS(['epoch', 'acc'])`` or ``struct_extract(l, 'acc')`` was pushed into the replay
set's query, which has no log column, and failed there (florsql/plan/relax.py);
``COLUMNS(['acc'])`` took the row grain of every log name, and a whole row read in WHERE did not
count for the grain (florsql/plan/bind.py).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner

import florsql
from florsql.engine import Engine
from florsql.errors import ParseError, PlanError
from tests.helpers import copy_repo, git, make_repo, run_script, write
from tests.helpers_replay import normalize, old_source, patched_source
from tests.helpers_sql import BASE_TIME, RunBuilder, fixture_history

#: The log names of train.py and their types in ``logs``.
LOGS = {
    "loss": pa.float64(),
    "value": pa.int64(),
    "acc": pa.float64(),
    "order": pa.int64(),
    "Val Loss": pa.float64(),
    "a.b": pa.string(),
    "end": pa.float64(),
    "group": pa.bool_(),
}
COLUMNS = {
    "projid": pa.string(),
    "run_id": pa.string(),
    "filename": pa.string(),
    "epoch": pa.int64(),
    "step": pa.int64(),
    "LR": pa.float64(),
    "opt": pa.string(),
    **LOGS,
}


def _history(repo: Path) -> list[RunBuilder]:
    """Three runs of train.py (args ``LR``, ``opt``; loops epoch/step), values missing or None
    here and there; one run of b.py, which logs ``lr`` (train.py's arg ``LR``) and ``acc``."""
    runs = []
    specs = [("r1", 0.1, "sgd", 3), ("r2", 0.2, "adam", 2), ("r3", 0.3, "sgd", 3)]
    for i, (run_id, lr, opt, epochs) in enumerate(specs):
        b = RunBuilder(run_id, {"LR": lr, "opt": opt}, tstamp=BASE_TIME + timedelta(hours=i))
        for e in range(epochs):
            with b.loop("epoch", e):
                for s in range(2):
                    with b.loop("step", s):
                        b.log("loss", round(lr * (e + 1) - 0.01 * s, 6))
                        if (e + s + i) % 3 != 0:
                            b.log("value", e * 10 + s + i)
                b.log("acc", round(0.5 + 0.1 * e - lr / 10, 6))
                b.log("order", None if (run_id == "r2" and e == 1) else 3 - e)
                if e != 1 or run_id != "r3":
                    b.log("Val Loss", round(lr + e / 10, 6))
                b.log("a.b", f"{run_id}-{e}")
        b.log("end", round(lr * 100, 6))
        if run_id != "r2":
            b.log("group", run_id == "r1")
        b.write(repo, segment_size=5)
        runs.append(b)
    b = RunBuilder("r4", {}, filename="b.py", tstamp=BASE_TIME + timedelta(hours=5))
    for e in range(2):
        with b.loop("epoch", e):
            b.log("lr", 0.5 + e)
            b.log("acc", 0.9)
    b.write(repo)
    runs.append(b)
    git(repo, "init", "-q")
    return runs


def _flat(runs: list[RunBuilder]) -> pa.Table:
    """The rows of ``logs``, by hand: ``LR`` holds train.py's arg and b.py's logged ``lr``."""
    rows: list[dict[str, Any]] = []
    for b in runs:
        for ctx, vals in sorted(b.values.items()):
            values = dict(vals)
            row: dict[str, Any] = {"projid": "proj", "run_id": b.run_id, "filename": b.filename}
            row.update({**b.ctx_loops[ctx], **b.args})
            if "lr" in values:
                row["LR"] = values.pop("lr")
            row.update(values)
            row.update({f"has_{n}": n in values for n in LOGS})
            rows.append(row)
    schema = pa.schema([*COLUMNS.items(), *((f"has_{n}", pa.bool_()) for n in LOGS)])
    return pa.table({f.name: [r.get(f.name) for r in rows] for f in schema}, schema=schema)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _expand(sql: str) -> str:
    """``{a|b}`` -> the rows of ``logs`` at the grain of log names a and b; ``{}``: all."""
    cols = ", ".join(_quote(c) for c in COLUMNS)

    def grain(m: re.Match[str]) -> str:
        names = [n for n in m.group(1).split("|") if n] or list(LOGS)
        return f"(SELECT {cols} FROM flat WHERE {' OR '.join(_quote('has_' + n) for n in names)})"

    return re.sub(r"\{([^{}]*)\}", grain, sql)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, duckdb.DuckDBPyConnection]:
    repo = tmp_path_factory.mktemp("s31") / "repo"
    runs = _history(repo)
    oracle = duckdb.connect()
    oracle.register("flat_arrow", _flat(runs))
    oracle.execute("CREATE TABLE flat AS SELECT * FROM flat_arrow")
    return repo, oracle


@pytest.fixture(scope="module", params=[True, False], ids=["pivot", "live"])
def engine(history: tuple[Path, duckdb.DuckDBPyConnection], request: Any) -> Iterator[Engine]:
    with Engine(history[0], use_cache=request.param) as eng:
        yield eng


def _cells(table: pa.Table) -> list[tuple[Any, ...]]:
    return list(zip(*(c.to_pylist() for c in table.columns), strict=True))


def _sorted(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    def cell(v: Any) -> Any:
        return "NaN" if isinstance(v, float) and math.isnan(v) else v

    return sorted((tuple(cell(v) for v in r) for r in rows), key=repr)


def ask(engine: Engine, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> pa.Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return engine.execute(sql, list(params)).table


# (florsql's query, the same question over `flat`, parameters, whether the order is defined)
PAIRS: list[tuple[str, str, tuple[Any, ...], bool]] = [
    # -- CTEs reading logs twice, with different filters
    ("WITH a AS (SELECT run_id, epoch, acc FROM logs WHERE epoch = 0), b AS (SELECT run_id, "
     "epoch, acc FROM logs WHERE epoch = 2) SELECT a.run_id, b.acc - a.acc AS d FROM a JOIN b "
     "USING (run_id)",
     "WITH a AS (SELECT run_id, epoch, acc FROM {acc} WHERE epoch = 0), b AS (SELECT run_id, "
     "epoch, acc FROM {acc} WHERE epoch = 2) SELECT a.run_id, b.acc - a.acc AS d FROM a JOIN b "
     "USING (run_id)", (), False),
    ("WITH s AS (SELECT run_id, epoch, avg(loss) AS l FROM logs GROUP BY ALL), e AS (SELECT "
     "run_id, epoch, acc FROM logs WHERE acc IS NOT NULL) SELECT * FROM s NATURAL JOIN e "
     "ORDER BY ALL",
     "WITH s AS (SELECT run_id, epoch, avg(loss) AS l FROM {loss} GROUP BY ALL), e AS (SELECT "
     "run_id, epoch, acc FROM {acc} WHERE acc IS NOT NULL) SELECT * FROM s NATURAL JOIN e "
     "ORDER BY ALL", (), True),
    # -- set operations
    ("SELECT run_id, epoch FROM logs WHERE acc > 0.6 UNION SELECT run_id, epoch FROM logs "
     "WHERE value > 20",
     "SELECT run_id, epoch FROM {acc} WHERE acc > 0.6 UNION SELECT run_id, epoch FROM {value} "
     "WHERE value > 20", (), False),
    ("SELECT run_id, epoch FROM logs WHERE acc > 0.5 UNION ALL SELECT run_id, epoch FROM logs "
     "WHERE value > 20",
     "SELECT run_id, epoch FROM {acc} WHERE acc > 0.5 UNION ALL SELECT run_id, epoch FROM "
     "{value} WHERE value > 20", (), False),
    ("SELECT run_id, epoch FROM logs WHERE acc > 0.5 INTERSECT SELECT run_id, epoch FROM logs "
     "WHERE value > 20",
     "SELECT run_id, epoch FROM {acc} WHERE acc > 0.5 INTERSECT SELECT run_id, epoch FROM "
     "{value} WHERE value > 20", (), False),
    ('SELECT run_id, epoch FROM logs WHERE acc IS NOT NULL EXCEPT SELECT run_id, epoch FROM '
     'logs WHERE "order" IS NULL',
     'SELECT run_id, epoch FROM {acc} WHERE acc IS NOT NULL EXCEPT SELECT run_id, epoch FROM '
     '{order} WHERE "order" IS NULL', (), False),
    ("SELECT run_id, epoch FROM logs WHERE acc IS NOT NULL EXCEPT ALL SELECT run_id, epoch "
     "FROM logs WHERE value IS NOT NULL",
     "SELECT run_id, epoch FROM {acc} WHERE acc IS NOT NULL EXCEPT ALL SELECT run_id, epoch "
     "FROM {value} WHERE value IS NOT NULL", (), False),
    ("SELECT run_id FROM logs INTERSECT ALL SELECT run_id FROM logs WHERE step = 1",
     "SELECT run_id FROM {} INTERSECT ALL SELECT run_id FROM {} WHERE step = 1", (), False),
    ("SELECT acc FROM logs UNION BY NAME SELECT loss FROM logs",
     "SELECT acc FROM {acc} UNION BY NAME SELECT loss FROM {loss}", (), False),
    ("(SELECT run_id, max(acc) m FROM logs GROUP BY 1 ORDER BY 2 DESC LIMIT 1) UNION ALL "
     "(SELECT run_id, min(acc) FROM logs GROUP BY 1 ORDER BY 2 LIMIT 1)",
     "(SELECT run_id, max(acc) m FROM {acc} GROUP BY 1 ORDER BY 2 DESC LIMIT 1) UNION ALL "
     "(SELECT run_id, min(acc) FROM {acc} GROUP BY 1 ORDER BY 2 LIMIT 1)", (), False),
    # -- subqueries: IN, EXISTS, correlated scalar, ALL, row IN, NOT IN over NULLs
    ('SELECT run_id, epoch, acc FROM logs WHERE run_id IN (SELECT run_id FROM logs WHERE '
     '"group")',
     'SELECT run_id, epoch, acc FROM {acc} WHERE run_id IN (SELECT run_id FROM {group} WHERE '
     '"group")', (), False),
    ("SELECT run_id, epoch, acc FROM logs l WHERE EXISTS (SELECT 1 FROM logs m WHERE "
     "m.run_id = l.run_id AND m.epoch = l.epoch AND m.value > 20)",
     "SELECT run_id, epoch, acc FROM {acc} l WHERE EXISTS (SELECT 1 FROM {value} m WHERE "
     "m.run_id = l.run_id AND m.epoch = l.epoch AND m.value > 20)", (), False),
    ("SELECT run_id, epoch, acc FROM logs l WHERE NOT EXISTS (SELECT 1 FROM logs m WHERE "
     "m.run_id = l.run_id AND m.epoch = l.epoch AND m.value > 20)",
     "SELECT run_id, epoch, acc FROM {acc} l WHERE NOT EXISTS (SELECT 1 FROM {value} m WHERE "
     "m.run_id = l.run_id AND m.epoch = l.epoch AND m.value > 20)", (), False),
    ("SELECT run_id, epoch, acc, (SELECT max(loss) FROM logs m WHERE m.run_id = l.run_id AND "
     "m.epoch = l.epoch) AS ml FROM logs l WHERE acc IS NOT NULL",
     "SELECT run_id, epoch, acc, (SELECT max(loss) FROM {loss} m WHERE m.run_id = l.run_id AND "
     "m.epoch = l.epoch) AS ml FROM {acc} l WHERE acc IS NOT NULL", (), False),
    ("SELECT run_id, acc FROM logs WHERE acc > (SELECT avg(acc) FROM logs)",
     "SELECT run_id, acc FROM {acc} WHERE acc > (SELECT avg(acc) FROM {acc})", (), False),
    ("SELECT run_id, acc FROM logs WHERE acc >= ALL (SELECT acc FROM logs WHERE acc IS NOT NULL)",
     "SELECT run_id, acc FROM {acc} WHERE acc >= ALL (SELECT acc FROM {acc} WHERE acc IS NOT "
     "NULL)", (), False),
    ('SELECT run_id, epoch FROM logs WHERE (run_id, epoch) IN (SELECT run_id, epoch FROM logs '
     'WHERE "Val Loss" > 0.3)',
     'SELECT run_id, epoch FROM {} WHERE (run_id, epoch) IN (SELECT run_id, epoch FROM '
     '{Val Loss} WHERE "Val Loss" > 0.3)', (), False),
    ('SELECT run_id, epoch, value FROM logs WHERE value NOT IN (SELECT "order" FROM logs)',
     'SELECT run_id, epoch, value FROM {value} WHERE value NOT IN (SELECT "order" FROM {order})',
     (), False),
    # -- windows, frames, QUALIFY
    ("SELECT run_id, epoch, step, loss, sum(loss) OVER (PARTITION BY run_id ORDER BY epoch, "
     "step ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS s FROM logs",
     "SELECT run_id, epoch, step, loss, sum(loss) OVER (PARTITION BY run_id ORDER BY epoch, "
     "step ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS s FROM {loss}", (), False),
    ("SELECT run_id, epoch, acc, avg(acc) OVER w AS a, rank() OVER (ORDER BY acc DESC) AS r "
     "FROM logs WINDOW w AS (PARTITION BY run_id ORDER BY epoch RANGE BETWEEN UNBOUNDED "
     "PRECEDING AND CURRENT ROW)",
     "SELECT run_id, epoch, acc, avg(acc) OVER w AS a, rank() OVER (ORDER BY acc DESC) AS r "
     "FROM {acc} WINDOW w AS (PARTITION BY run_id ORDER BY epoch RANGE BETWEEN UNBOUNDED "
     "PRECEDING AND CURRENT ROW)", (), False),
    ("SELECT run_id, epoch, acc FROM logs QUALIFY row_number() OVER (PARTITION BY run_id ORDER "
     "BY acc DESC, epoch) = 1",
     "SELECT run_id, epoch, acc FROM {acc} QUALIFY row_number() OVER (PARTITION BY run_id ORDER "
     "BY acc DESC, epoch) = 1", (), False),
    ("SELECT run_id, epoch, acc, lead(acc, 1, -1) OVER (PARTITION BY run_id ORDER BY epoch) AS "
     "nxt FROM logs WHERE epoch BETWEEN 1 AND 2",
     "SELECT run_id, epoch, acc, lead(acc, 1, -1) OVER (PARTITION BY run_id ORDER BY epoch) AS "
     "nxt FROM {acc} WHERE epoch BETWEEN 1 AND 2", (), False),
    ('SELECT run_id, epoch, first_value("order" IGNORE NULLS) OVER (PARTITION BY run_id ORDER '
     'BY epoch DESC) AS f FROM logs',
     'SELECT run_id, epoch, first_value("order" IGNORE NULLS) OVER (PARTITION BY run_id ORDER '
     'BY epoch DESC) AS f FROM {order}', (), False),
    # -- FILTER, GROUP BY ALL / ORDER BY ALL, DISTINCT ON, CASE
    ("SELECT run_id, count(*) FILTER (WHERE step = 0) AS s0, avg(loss) FILTER (WHERE epoch > 0) "
     "AS l FROM logs GROUP BY ALL ORDER BY ALL",
     "SELECT run_id, count(*) FILTER (WHERE step = 0) AS s0, avg(loss) FILTER (WHERE epoch > 0) "
     "AS l FROM {loss} GROUP BY ALL ORDER BY ALL", (), True),
    ("SELECT opt, LR, count(value), sum(value) FROM logs GROUP BY ALL ORDER BY ALL DESC",
     "SELECT opt, LR, count(value), sum(value) FROM {value} GROUP BY ALL ORDER BY ALL DESC", (),
     True),
    ("SELECT DISTINCT ON (run_id) run_id, epoch, acc FROM logs ORDER BY run_id, acc DESC, epoch",
     "SELECT DISTINCT ON (run_id) run_id, epoch, acc FROM {acc} ORDER BY run_id, acc DESC, "
     "epoch", (), True),
    ('SELECT run_id, epoch, CASE WHEN "order" IS NULL THEN \'none\' WHEN "order" > 1 THEN \'hi\' '
     "ELSE 'lo' END AS k FROM logs WHERE epoch IS NOT NULL AND step IS NULL",
     'SELECT run_id, epoch, CASE WHEN "order" IS NULL THEN \'none\' WHEN "order" > 1 THEN \'hi\' '
     "ELSE 'lo' END AS k FROM {order} WHERE epoch IS NOT NULL AND step IS NULL", (), False),
    ("SELECT CASE opt WHEN 'sgd' THEN 1 ELSE 2 END AS o, sum(CASE WHEN value > 10 THEN 1 ELSE 0 "
     "END) AS n FROM logs GROUP BY 1",
     "SELECT CASE opt WHEN 'sgd' THEN 1 ELSE 2 END AS o, sum(CASE WHEN value > 10 THEN 1 ELSE 0 "
     "END) AS n FROM {value} GROUP BY 1", (), False),
    # -- predicates: OR across args and loops, BETWEEN, IN lists with NULL, IS NULL on a loop
    ("SELECT run_id, epoch, step, loss FROM logs WHERE LR > 0.25 OR epoch = 0 OR step IN (1)",
     "SELECT run_id, epoch, step, loss FROM {loss} WHERE LR > 0.25 OR epoch = 0 OR step IN (1)",
     (), False),
    ("SELECT run_id, epoch FROM logs WHERE epoch IS NULL",
     "SELECT run_id, epoch FROM {} WHERE epoch IS NULL", (), False),
    ('SELECT run_id, epoch, "end" FROM logs WHERE epoch IS NULL',
     'SELECT run_id, epoch, "end" FROM {end} WHERE epoch IS NULL', (), False),
    ("SELECT run_id, epoch, acc FROM logs WHERE epoch NOT BETWEEN 1 AND 1 AND opt IN ('sgd', "
     "'x')",
     "SELECT run_id, epoch, acc FROM {acc} WHERE epoch NOT BETWEEN 1 AND 1 AND opt IN ('sgd', "
     "'x')", (), False),
    ("SELECT run_id, epoch, acc FROM logs WHERE epoch IN (0, NULL) OR LR IS NULL",
     "SELECT run_id, epoch, acc FROM {acc} WHERE epoch IN (0, NULL) OR LR IS NULL", (), False),
    ("SELECT run_id, epoch, acc FROM logs WHERE epoch NOT IN (0, NULL)",
     "SELECT run_id, epoch, acc FROM {acc} WHERE epoch NOT IN (0, NULL)", (), False),
    ("SELECT run_id, epoch, acc FROM logs WHERE epoch IS DISTINCT FROM 1",
     "SELECT run_id, epoch, acc FROM {acc} WHERE epoch IS DISTINCT FROM 1", (), False),
    # -- LIMIT / OFFSET with ORDER BY (every order total: b.py's acc ties), NULLS FIRST / LAST
    ("SELECT run_id, epoch, acc FROM logs ORDER BY acc DESC, run_id, epoch LIMIT 3 OFFSET 1",
     "SELECT run_id, epoch, acc FROM {acc} ORDER BY acc DESC, run_id, epoch LIMIT 3 OFFSET 1",
     (), True),
    ("SELECT run_id, epoch, acc FROM logs ORDER BY LR DESC, epoch LIMIT 2 OFFSET 2",
     "SELECT run_id, epoch, acc FROM {acc} ORDER BY LR DESC, epoch LIMIT 2 OFFSET 2", (), True),
    ("SELECT run_id, epoch, acc FROM logs ORDER BY LR NULLS FIRST, epoch LIMIT 3",
     "SELECT run_id, epoch, acc FROM {acc} ORDER BY LR NULLS FIRST, epoch LIMIT 3", (), True),
    ("SELECT run_id, epoch, acc FROM logs ORDER BY logs.LR DESC NULLS LAST, epoch LIMIT 3",
     "SELECT run_id, epoch, acc FROM {acc} ORDER BY LR DESC NULLS LAST, epoch LIMIT 3", (), True),
    # -- names: keywords, spaces, dots, any case (named as the catalog spells them, as DuckDB
    #    names a column as its table spells it)
    ('SELECT "LR", "Epoch", "VAL LOSS", "A.B" FROM logs WHERE "val loss" > 0.25',
     'SELECT "LR", epoch, "Val Loss", "a.b" FROM {Val Loss|a.b} WHERE "Val Loss" > 0.25', (),
     False),
    ('SELECT lr, Opt, "ORDER", "Group", "END", "Value" FROM logs',
     'SELECT LR, opt, "order", "group", "end", value FROM {order|group|end|value}', (), False),
    ('SELECT l."a.b", l."Val Loss" FROM logs AS l WHERE l."a.b" LIKE \'r1%\'',
     'SELECT l."a.b", l."Val Loss" FROM {a.b|Val Loss} AS l WHERE l."a.b" LIKE \'r1%\'', (),
     False),
    # -- select aliases shadowing columns (WHERE reads the column, ORDER BY and HAVING the alias)
    ("SELECT acc AS loss, loss AS acc FROM logs WHERE loss > 0.3",
     "SELECT acc AS loss, loss AS acc FROM {acc|loss} WHERE loss > 0.3", (), False),
    ("SELECT run_id, max(acc) AS acc FROM logs GROUP BY run_id HAVING acc > 0.6",
     "SELECT run_id, max(acc) AS acc FROM {acc} GROUP BY run_id HAVING acc > 0.6", (), False),
    ("SELECT run_id, epoch * 10 AS epoch FROM logs WHERE epoch = 1 AND acc IS NOT NULL",
     "SELECT run_id, epoch * 10 AS epoch FROM {acc} WHERE epoch = 1 AND acc IS NOT NULL", (),
     False),
    ("SELECT run_id, -LR AS LR, acc FROM logs ORDER BY LR, epoch LIMIT 3",
     "SELECT run_id, -LR AS LR, acc FROM {acc} ORDER BY LR, epoch LIMIT 3", (), True),
    ("SELECT run_id, epoch, acc AS value FROM logs WHERE value > 0.6",
     "SELECT run_id, epoch, acc AS value FROM {acc|value} WHERE value > 0.6", (), False),
    ("SELECT run_id, epoch, acc AS value FROM logs ORDER BY value DESC, run_id, epoch LIMIT 2",
     "SELECT run_id, epoch, acc AS value FROM {acc} ORDER BY value DESC, run_id, epoch LIMIT 2", (),
     True),
    # -- lr: train.py's arg LR, b.py's log
    ("SELECT run_id, epoch, lr, acc FROM logs WHERE lr > 0.15",
     "SELECT run_id, epoch, LR, acc FROM {acc} WHERE LR > 0.15", (), False),
    ("SELECT run_id, epoch, acc FROM logs ORDER BY LR DESC, run_id, epoch LIMIT 2",
     "SELECT run_id, epoch, acc FROM {acc} ORDER BY LR DESC, run_id, epoch LIMIT 2", (), True),
    # -- ? in every clause, in CTEs and subqueries, repeated, of several types
    ("SELECT run_id, epoch, acc FROM logs WHERE acc > ? ORDER BY acc DESC, epoch LIMIT ? OFFSET ?",
     "SELECT run_id, epoch, acc FROM {acc} WHERE acc > ? ORDER BY acc DESC, epoch LIMIT ? OFFSET ?",
     (0.5, 2, 1), True),
    ("WITH a AS (SELECT run_id, epoch, acc FROM logs WHERE epoch = ?), b AS (SELECT run_id, acc "
     "FROM logs WHERE epoch = ?) SELECT a.run_id, b.acc - a.acc > ? AS up FROM a JOIN b USING "
     "(run_id)",
     "WITH a AS (SELECT run_id, epoch, acc FROM {acc} WHERE epoch = ?), b AS (SELECT run_id, acc "
     "FROM {acc} WHERE epoch = ?) SELECT a.run_id, b.acc - a.acc > ? AS up FROM a JOIN b USING "
     "(run_id)", (0, 1, 0.05), False),
    ("SELECT run_id, epoch FROM logs WHERE run_id IN (SELECT run_id FROM logs WHERE LR > ? "
     "LIMIT ?) AND epoch = ?",
     "SELECT run_id, epoch FROM {} WHERE run_id IN (SELECT run_id FROM {} WHERE LR > ? "
     "LIMIT ?) AND epoch = ?", (0.15, 100, 1), False),
    ("SELECT run_id, epoch, value FROM logs WHERE value BETWEEN ? AND ? OR step IN (?, ?)",
     "SELECT run_id, epoch, value FROM {value} WHERE value BETWEEN ? AND ? OR step IN (?, ?)",
     (10, 20, 5, 6), False),
    ("SELECT run_id, count(*) FILTER (WHERE step = ?) AS n, sum(value) FILTER (WHERE value > ?) "
     "AS s FROM logs GROUP BY ALL HAVING count(*) > ? ORDER BY ALL",
     "SELECT run_id, count(*) FILTER (WHERE step = ?) AS n, sum(value) FILTER (WHERE value > ?) "
     "AS s FROM {value} GROUP BY ALL HAVING count(*) > ? ORDER BY ALL", (1, 10, 1), True),
    ("SELECT run_id, epoch, CASE WHEN acc > ? THEN ? ELSE ? END AS k FROM logs",
     "SELECT run_id, epoch, CASE WHEN acc > ? THEN ? ELSE ? END AS k FROM {acc}",
     (0.55, "hi", "lo"), False),
    ("SELECT run_id, epoch, acc FROM logs QUALIFY rank() OVER (PARTITION BY run_id ORDER BY acc "
     "DESC) <= ?",
     "SELECT run_id, epoch, acc FROM {acc} QUALIFY rank() OVER (PARTITION BY run_id ORDER BY acc "
     "DESC) <= ?", (2,), False),
    ("SELECT run_id, epoch, sum(loss) OVER (PARTITION BY run_id ORDER BY epoch, step ROWS "
     "BETWEEN ? PRECEDING AND CURRENT ROW) AS s FROM logs",
     "SELECT run_id, epoch, sum(loss) OVER (PARTITION BY run_id ORDER BY epoch, step ROWS "
     "BETWEEN ? PRECEDING AND CURRENT ROW) AS s FROM {loss}", (2,), False),
    ("SELECT run_id, lag(acc, ?, ?) OVER (PARTITION BY run_id ORDER BY epoch) AS p FROM logs",
     "SELECT run_id, lag(acc, ?, ?) OVER (PARTITION BY run_id ORDER BY epoch) AS p FROM {acc}",
     (1, -1.0), False),
    ('SELECT "a.b" FROM logs WHERE "a.b" LIKE ? || \'%\' AND opt = ? UNION ALL SELECT ?',
     'SELECT "a.b" FROM {a.b} WHERE "a.b" LIKE ? || \'%\' AND opt = ? UNION ALL SELECT ?',
     ("r1", "sgd", "x"), False),
    ("SELECT run_id FROM logs WHERE LR = ? INTERSECT SELECT run_id FROM logs WHERE acc > ?",
     "SELECT run_id FROM {} WHERE LR = ? INTERSECT SELECT run_id FROM {acc} WHERE acc > ?",
     (0.1, 0.6), False),
    ("SELECT run_id, epoch, acc FROM logs l WHERE EXISTS (SELECT 1 FROM logs m WHERE m.run_id = "
     "l.run_id AND m.value > ?) AND epoch = ?",
     "SELECT run_id, epoch, acc FROM {acc} l WHERE EXISTS (SELECT 1 FROM {value} m WHERE "
     "m.run_id = l.run_id AND m.value > ?) AND epoch = ?", (20, 0), False),
    ("SELECT DISTINCT ON (run_id) run_id, epoch, loss FROM logs WHERE loss < ? ORDER BY run_id, "
     "loss DESC",
     "SELECT DISTINCT ON (run_id) run_id, epoch, loss FROM {loss} WHERE loss < ? ORDER BY "
     "run_id, loss DESC", (0.35,), True),
    ("SELECT ? AS a, ? AS b, ? AS c, ? AS d, ? AS e, ? AS f",
     "SELECT ? AS a, ? AS b, ? AS c, ? AS d, ? AS e, ? AS f", (1, 2.5, "s", None, True, b"xy"),
     True),
    ("SELECT run_id, epoch FROM logs WHERE epoch = ? OR epoch = ? + 1",
     "SELECT run_id, epoch FROM {} WHERE epoch = ? OR epoch = ? + 1", (0, 0), False),
    ("SELECT run_id, epoch FROM logs WHERE epoch IS NOT DISTINCT FROM ?",
     "SELECT run_id, epoch FROM {} WHERE epoch IS NOT DISTINCT FROM ?", (None,), False),
    ('SELECT run_id, epoch, "Val Loss" FROM logs WHERE "Val Loss" >= ? ORDER BY "Val Loss" DESC, '
     "run_id LIMIT ?",
     'SELECT run_id, epoch, "Val Loss" FROM {Val Loss} WHERE "Val Loss" >= ? ORDER BY '
     '"Val Loss" DESC, run_id LIMIT ?', (0.2, 3), True),
    ("SELECT run_id, epoch, acc FROM logs ORDER BY logs.LR DESC, epoch LIMIT ? OFFSET ?",
     "SELECT run_id, epoch, acc FROM {acc} ORDER BY LR DESC, epoch LIMIT ? OFFSET ?", (2, 3),
     True),
    ("SELECT * FROM (SELECT run_id, epoch, acc FROM logs WHERE acc > ?) t WHERE epoch < ? "
     "ORDER BY ALL",
     "SELECT * FROM (SELECT run_id, epoch, acc FROM {acc} WHERE acc > ?) t WHERE epoch < ? "
     "ORDER BY ALL", (0.5, 2), True),
    ("SELECT run_id, epoch, acc FROM logs ORDER BY acc * ? DESC LIMIT 2",
     "SELECT run_id, epoch, acc FROM {acc} ORDER BY acc * ? DESC LIMIT 2", (-1,), True),
    ('SELECT count(*) FROM logs WHERE "group" = ?',
     'SELECT count(*) FROM {group} WHERE "group" = ?', (True,), True),
    ("SELECT run_id, epoch FROM logs WHERE epoch = ANY(?)",
     "SELECT run_id, epoch FROM {} WHERE epoch = ANY(?)", ([0, 2],), False),
    ("SELECT run_id, epoch FROM logs WHERE epoch IN ?",
     "SELECT run_id, epoch FROM {} WHERE epoch IN ?", ([0, 2],), False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ours", "theirs", "params", "ordered"), PAIRS, ids=[f"q{i}" for i in range(len(PAIRS))]
)
def test_florsql_answers_as_duckdb_over_the_rows_by_hand(
    engine: Engine,
    history: tuple[Path, duckdb.DuckDBPyConnection],
    ours: str,
    theirs: str,
    params: tuple[Any, ...],
    ordered: bool,
) -> None:
    cur = history[1].execute(_expand(theirs), list(params))
    want, names = cur.fetchall(), [d[0] for d in cur.description or ()]
    got = ask(engine, ours, params)
    assert got.column_names == names
    rows = _cells(got)
    assert rows == want if ordered else _sorted(rows) == _sorted(want)


def test_select_star_names_every_column_in_the_documented_order(
    engine: Engine, history: tuple[Path, duckdb.DuckDBPyConnection]
) -> None:
    """Metadata, loops outermost first, args then logs each sorted (case aside), spelled as
    recorded; the rows are every context's; ``* EXCLUDE`` and ``l.*`` keep that order."""
    star = ask(engine, "SELECT * FROM logs")
    loops_args = ["epoch", "step", "LR", "opt"]
    logs = ["a.b", "acc", "end", "group", "loss", "order", "Val Loss", "value"]
    meta = ["projid", "run_id", "tstamp", "vid", "filename"]
    assert star.column_names == [*meta, *loops_args, *logs]
    cols = ", ".join(_quote(c) for c in ["run_id", *loops_args, *logs])
    want = history[1].execute(_expand(f"SELECT {cols} FROM {{}}")).fetchall()
    drop = "projid, tstamp, vid, filename"
    got = ask(engine, f"SELECT * EXCLUDE ({drop}) FROM logs")
    assert _sorted(_cells(got)) == _sorted(want)
    got = ask(engine, f"SELECT l.* EXCLUDE ({drop}) FROM logs l WHERE epoch = 1")
    assert got.column_names == ["run_id", *loops_args, *logs]
    assert _sorted(_cells(got)) == _sorted([r for r in want if r[1] == 1])


@pytest.mark.parametrize(
    ("sql", "placeholder"),
    [
        ("SELECT run_id FROM logs WHERE epoch IN (SELECT epoch FROM logs WHERE acc > $1)", "$1"),
        ("WITH a AS (SELECT * FROM logs WHERE LR > :lr) SELECT * FROM a", ":lr"),
        ("SELECT run_id FROM logs ORDER BY run_id LIMIT $1", "$1"),
        ("SELECT run_id FROM logs ORDER BY run_id LIMIT :n", ":n"),
        ('SELECT run_id FROM logs WHERE "order" = %s', "%s"),
    ],
)
def test_other_placeholder_styles_are_refused_in_any_clause(
    engine: Engine, sql: str, placeholder: str
) -> None:
    with pytest.raises(ParseError, match=f"the placeholder {re.escape(placeholder)} is not "):
        ask(engine, sql, [1])


def test_a_parameter_count_that_does_not_match_is_refused(engine: Engine) -> None:
    with pytest.raises(PlanError, match=r"2 parameter\(s\) \(\?\), 1 value\(s\) given"):
        ask(engine, "WITH a AS (SELECT acc FROM logs WHERE epoch = ?) SELECT * FROM a LIMIT ?", [1])


# -- the same answers through the DB-API, `florsql query` and the Flight SQL server ----------


@pytest.fixture(scope="module")
def other_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same history in another folder (the module's engines hold the first one's index)."""
    repo = tmp_path_factory.mktemp("s31fronts") / "repo"
    _history(repo)
    return repo


#: The PAIRS with parameters or quoted names, asked through every front end.
FRONT = [i for i, pair in enumerate(PAIRS) if pair[2] or '"' in pair[0]]
#: A few of them for ``florsql query`` (each command opens the index: about a second).
CLI = [i for i in FRONT if all(not isinstance(v, bytes) for v in PAIRS[i][2])][::4]


def _want(
    history: tuple[Path, duckdb.DuckDBPyConnection], i: int
) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = history[1].execute(_expand(PAIRS[i][1]), list(PAIRS[i][2]))
    return [d[0] for d in cur.description or ()], cur.fetchall()


def _same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]], ordered: bool) -> bool:
    return got == want if ordered else _sorted(got) == _sorted(want)


def test_the_db_api_answers_the_same_and_describes_its_columns(
    other_repo: Path, history: tuple[Path, duckdb.DuckDBPyConnection]
) -> None:
    with florsql.connect(other_repo, replay="off") as con, con.cursor() as cur:
        for i in FRONT:
            names, want = _want(history, i)
            cur.execute(PAIRS[i][0], PAIRS[i][2])
            assert [d[0] for d in cur.description or ()] == names, PAIRS[i][0]
            got = cur.fetchmany(2)
            got += cur.fetchmany(0)
            cur.arraysize = 3
            got += cur.fetchmany()
            got += cur.fetchall()
            assert _same(got, want, PAIRS[i][3]), PAIRS[i][0]
        cur.execute('SELECT "order", "Val Loss", "a.b", "group", "end", value, LR, epoch FROM logs')
        assert [(d[0], d[1]) for d in cur.description or ()] == [
            ("order", "BIGINT"),
            ("Val Loss", "DOUBLE"),
            ("a.b", "VARCHAR"),
            ("group", "BOOLEAN"),
            ("end", "DOUBLE"),
            ("value", "BIGINT"),
            ("LR", "DOUBLE"),
            ("epoch", "BIGINT"),
        ]
        sql = 'SELECT run_id, "order" FROM logs WHERE "order" = ? ORDER BY run_id'
        cur.executemany(sql, [[1], [2], [3]])  # the last statement's rows stay readable
        assert cur.fetchall() == [("r1", 3), ("r2", 3), ("r3", 3)]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_florsql_query_prints_the_same_answers(
    other_repo: Path, history: tuple[Path, duckdb.DuckDBPyConnection], fmt: str
) -> None:
    """``-p`` values are JSON (else text): each binds the next ``?`` as the DB-API's would."""
    from florsql.cli import main

    for i in CLI:
        names, want = _want(history, i)
        args = ["query", PAIRS[i][0], "--format", fmt, "--repo", str(other_repo), "--replay", "off"]
        for value in PAIRS[i][2]:
            args += ["-p", json.dumps(value)]
        out = CliRunner().invoke(main, args)
        assert out.exit_code == 0, out.output
        if fmt == "json":
            objects = json.loads(out.output)
            got = [tuple(o.values()) for o in objects]
            assert all(list(o) == names for o in objects)
        else:
            lines = list(csv.reader(io.StringIO(out.output)))
            assert lines[0] == names
            got = [tuple(lines_row) for lines_row in lines[1:]]
            want = [tuple(_csv_text(v) for v in row) for row in want]
        assert _same(got, want, PAIRS[i][3]), PAIRS[i][0]


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_the_flight_sql_server_answers_the_same_to_adbc(
    other_repo: Path, history: tuple[Path, duckdb.DuckDBPyConnection]
) -> None:
    import adbc_driver_flightsql.dbapi as adbc

    from florsql.flight import FlorFlightServer, ServerOptions
    from florsql.flight.backend import open_service

    service = open_service(other_repo)
    server = FlorFlightServer(service, ServerOptions("127.0.0.1", 0, replay="off"))
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        uri = f"grpc://127.0.0.1:{server.port}"
        with adbc.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
            for i in FRONT:
                names, want = _want(history, i)
                cur.execute(PAIRS[i][0], PAIRS[i][2] or None)
                table = cur.fetch_arrow_table()
                assert table.column_names == names, PAIRS[i][0]
                assert _same(_cells(table), want, PAIRS[i][3]), PAIRS[i][0]
    finally:
        server.shutdown()
        thread.join(10)
        service.close()


# -- ORDER BY <run column> LIMIT n: the replay cut (florsql/plan/limit.py) --------------------


@pytest.fixture(scope="module")
def planner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The planner's history: r1-r3 (lr 0.1, 0.2, 0.3) recorded acc, not today's val."""
    with Engine(fixture_history(tmp_path_factory.mktemp("s31plan") / "repo")) as eng:
        yield eng


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT logs.lr, unnest(CASE WHEN logs.lr < 0.15 THEN [] ELSE [1] END) AS u, acc, val "
        "FROM logs ORDER BY logs.lr LIMIT 1",
        "SELECT logs.lr, generate_subscripts(CASE WHEN logs.lr < 0.15 THEN [] ELSE [1] END, 1), "
        "acc, val FROM logs ORDER BY logs.lr LIMIT 1",
        "SELECT logs.lr, regexp_split_to_table(CASE WHEN logs.lr < 0.15 THEN NULL ELSE 'a' END, "
        "','), acc, val FROM logs ORDER BY logs.lr LIMIT 1",
        "SELECT logs.lr, acc, val FROM logs TABLESAMPLE 10% ORDER BY logs.lr LIMIT 1",
        "SELECT logs.lr, acc, val FROM logs USING SAMPLE 1 ROWS ORDER BY logs.lr LIMIT 1",
        "SELECT logs.lr, acc, val FROM logs ORDER BY logs.lr * random() LIMIT 1",
    ],
)
def test_a_limit_over_rows_that_are_not_one_per_row_of_logs_does_not_cut_replay(
    planner: Engine, sql: str
) -> None:
    """Before, each of these replayed r1 only (it has a recorded row, the first by lr), while
    the answer's row may come from r2 or r3: ``unnest`` of r1's empty lists gives no row, a
    sample may keep none of r1's, so that row's ``val`` was NULL; the volatile key failed with
    'ORDER BY window expressions cannot be volatile'. Now no cut: every run is replayed."""
    plan = planner.plan(sql).replay
    assert plan.limit_runs is None
    assert sorted(plan.replay_set()) == ["r1", "r2", "r3"]
    ask(planner, sql)  # runs (replay off: NULL val, with a warning)


def test_a_plain_order_by_run_column_limit_still_cuts(planner: Engine) -> None:
    for sql, kept in [
        ("SELECT logs.lr, acc, val FROM logs ORDER BY logs.lr LIMIT 1", ("r1",)),
        ("SELECT logs.lr, unnest([acc]), val FROM logs ORDER BY -logs.lr LIMIT 1", None),
        ("SELECT lr, acc, val, [1, 2] FROM logs ORDER BY logs.lr DESC LIMIT 1", ("r3",)),
    ]:
        assert planner.plan(sql).replay.limit_runs == kept, sql


# -- COLUMNS(...) and whole rows: the replay set and the row grain (relax.py, bind.py) --------


@pytest.mark.parametrize(
    ("where", "expanded"),
    [
        ("NOT (COLUMNS(['epoch', 'acc']) >= 2)", "NOT (epoch >= 2) AND NOT (acc >= 2)"),
        ("COLUMNS(['acc']) > 0.5 AND epoch = 1", "acc > 0.5 AND epoch = 1"),
        ("COLUMNS('^(epoch|acc)$') >= 0.5", "epoch >= 0.5 AND acc >= 0.5"),
        ("NOT (COLUMNS(c -> c IN ('epoch', 'acc')) >= 2)", "NOT (epoch >= 2) AND NOT (acc >= 2)"),
        ("struct_extract(l, 'acc') > 0.5", "l.acc > 0.5"),
        ("struct_extract(l, 'epoch') = 1 AND l.acc > 0", "l.epoch = 1 AND l.acc > 0"),
    ],
)
def test_columns_and_whole_rows_in_where_plan_and_answer_as_written_out(
    planner: Engine, where: str, expanded: str
) -> None:
    """DuckDB repeats a predicate holding ``COLUMNS(...)`` once per column it names, joined by
    AND. Such a predicate was pushed as written into the replay set's query, whose rows have the
    loops and args but no log column: ``COLUMNS(['epoch', 'acc'])`` failed there ('Column "acc"
    was selected but was not found in the FROM clause'), so did ``struct_extract(l, 'acc')``
    ('Referenced column "l" not found'), before the query ran. (Where it ran, the copies it
    kept were a subset of the AND: a weaker predicate, never a wrong replay set.) Now an atom
    holding ``COLUMNS(...)``, ``*`` or a whole row is not pushed: the query answers, and
    replays at least what the same predicate written out replays."""
    sql = f"SELECT run_id, epoch, acc, val FROM logs l WHERE {where}"
    same = f"SELECT run_id, epoch, acc, val FROM logs l WHERE {expanded}"
    wide, narrow = planner.plan(sql).replay.replay_set(), planner.plan(same).replay.replay_set()
    for run_id, names in narrow.items():
        for name, iterations in names.items():
            assert set(iterations) <= set(wide[run_id][name]), (run_id, name)
    assert _sorted(_cells(ask(planner, sql))) == _sorted(_cells(ask(planner, same)))


@pytest.mark.parametrize(
    ("ours", "same"),
    [
        ("SELECT run_id, COLUMNS(['ACC']) FROM logs WHERE epoch = 1",
         "SELECT run_id, acc FROM logs WHERE epoch = 1"),
        ("SELECT run_id, COLUMNS(['acc', 'Loss']) FROM logs WHERE epoch = 1",
         "SELECT run_id, acc, loss FROM logs WHERE epoch = 1"),
        ("SELECT run_id, epoch, acc FROM logs WHERE struct_extract(logs, 'loss') > 0.1",
         "SELECT run_id, epoch, acc FROM logs WHERE loss > 0.1"),
    ],
)  # fmt: skip
def test_columns_lists_and_whole_rows_set_the_row_grain(
    planner: Engine, ours: str, same: str
) -> None:
    """``SELECT run_id, COLUMNS(['acc'])`` took the grain of every log name (4 rows an epoch:
    the epoch's and its steps', ``acc`` NULL on 3), where ``COLUMNS('^acc$')`` and ``acc`` take
    ``acc``'s (1); a whole row read outside the select list did not count for the grain:
    ``WHERE struct_extract(logs, 'loss') > 0.1`` kept only ``acc``'s rows (none). Now a list of
    names picks those names (in any case, as DuckDB reads it) and a whole row in any clause of
    the SELECT every log name, as in the select list."""
    assert _sorted(_cells(ask(planner, ours))) == _sorted(_cells(ask(planner, same)))


# -- hindsight columns: a history replayed against runs that recorded them (slow) ------------

#: Today's script: keyword and spaced names are hindsight statements (``# hindsight``), at the
#: step, epoch and top level, with a checkpoint after each epoch's step loop.
SCRIPT = """
import florsql as flor
LR = flor.arg("LR", 0.1)
Seed = flor.arg("Seed", 0)
state = {"w": 1.0 + Seed}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(4)):
        for step in flor.loop("step", range(3)):
            state["w"] = state["w"] * (1 - LR) + 0.01 * step
            flor.log("loss", round(state["w"], 6))
            flor.log("value", step * 10 + epoch + Seed)  # hindsight
        flor.log("acc", round(1 - state["w"] / 3, 6))
        flor.log("order", 4 - epoch - Seed)  # hindsight
        flor.log("Val Loss", round(state["w"] + epoch / 10, 6))  # hindsight
flor.log("end", round(state["w"] * 10, 6))  # hindsight
"""

#: Queries over hindsight columns (no metadata column: the two repositories' run ids differ).
HINDSIGHT = [
    'WITH a AS (SELECT Seed, epoch, "order" FROM logs WHERE epoch = 0), b AS (SELECT Seed, '
    'epoch, "order" FROM logs WHERE epoch = 3) SELECT a.Seed, a."order" - b."order" AS d FROM a '
    "JOIN b USING (Seed)",
    'SELECT Seed, epoch FROM logs WHERE "order" >= 3 UNION SELECT Seed, epoch FROM logs WHERE '
    "value > 30",
    "SELECT Seed, epoch FROM logs WHERE acc > 0.6 INTERSECT SELECT Seed, epoch FROM logs WHERE "
    '"Val Loss" < 2',
    "SELECT Seed, epoch FROM logs WHERE acc IS NOT NULL EXCEPT SELECT Seed, epoch FROM logs "
    'WHERE "order" < 1',
    "SELECT Seed, epoch, acc FROM logs WHERE (Seed, epoch) IN (SELECT Seed, epoch FROM logs "
    'WHERE "order" = 1)',
    "SELECT Seed, epoch, acc, (SELECT max(value) FROM logs m WHERE m.Seed = l.Seed AND m.epoch "
    "= l.epoch) AS mv FROM logs l WHERE acc IS NOT NULL AND l.epoch = 2",
    "SELECT Seed, epoch, step, value, sum(value) OVER (PARTITION BY Seed ORDER BY epoch, step "
    "ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS s FROM logs WHERE epoch >= 2",
    'SELECT Seed, epoch, "Val Loss" FROM logs QUALIFY row_number() OVER (PARTITION BY Seed '
    'ORDER BY "Val Loss" DESC) = 1',
    'SELECT Seed, count(*) FILTER (WHERE "order" > 1) AS n, sum(value) FILTER (WHERE step = 2) '
    "AS s FROM logs GROUP BY ALL",
    'SELECT DISTINCT ON (Seed) Seed, epoch, "Val Loss" FROM logs ORDER BY Seed, "Val Loss"',
    'SELECT Seed, epoch, CASE WHEN "order" >= 2 THEN \'early\' WHEN "order" IS NULL THEN '
    "'none' ELSE 'late' END AS phase FROM logs WHERE step IS NULL",
    'SELECT Seed, epoch, "order" FROM logs WHERE LR = 0.3 OR epoch = 1 OR "order" = 4',
    "SELECT Seed, epoch, step, value FROM logs WHERE epoch BETWEEN 1 AND 2 AND step IN (0, 2)",
    'SELECT Seed, "end", "order" FROM logs WHERE epoch IS NULL OR epoch = 0',
    'SELECT Seed, epoch, "Val Loss" FROM logs ORDER BY "Val Loss" DESC LIMIT 2 OFFSET 1',
    'SELECT Seed, epoch, acc, "Val Loss" FROM logs ORDER BY logs.LR DESC, epoch LIMIT 2 OFFSET 3',
    'SELECT Seed, epoch, -LR AS LR, acc, "order" FROM logs ORDER BY LR, epoch LIMIT 2',
    'SELECT "lr", "SEED", "Epoch", "ORDER", "val loss" FROM logs WHERE "VAL LOSS" > 1.0',
    "SELECT * EXCLUDE (projid, run_id, tstamp, vid) FROM logs WHERE epoch = 1 AND step = 1",
    'SELECT acc AS "order", "order" AS acc FROM logs WHERE "order" > 2',
    'SELECT Seed, max("order") AS "order" FROM logs GROUP BY Seed HAVING "order" > 1',
    "SELECT Seed, epoch FROM logs l WHERE EXISTS (SELECT 1 FROM logs m WHERE m.Seed = l.Seed "
    'AND m."end" > 1) AND acc > 0.85',
    'SELECT Seed, epoch, "order" FROM logs WHERE "order" IN (SELECT value FROM logs WHERE '
    "step = 0)",
    'SELECT Seed, epoch, acc FROM logs WHERE NOT ("order" > 1 OR Seed = 0) AND acc IS NOT NULL',
    'SELECT LR * 0 AS LR, epoch, "order" FROM logs WHERE LR > 0.15',
    'SELECT "order" AS epoch, Seed FROM logs WHERE epoch = 3',
    'SELECT a.Seed, epoch, a.acc, b."order" FROM logs a LEFT JOIN logs b USING (Seed, epoch) '
    "WHERE epoch = 2 AND a.step IS NULL AND b.step IS NULL",
    'SELECT b.Seed, epoch, a."order", b."Val Loss" FROM logs a RIGHT JOIN logs b USING (Seed, '
    "epoch) WHERE epoch = 1 AND b.step IS NULL",
    'SELECT Seed, epoch, a."order", b.value FROM logs a FULL JOIN logs b USING (Seed, epoch) '
    "WHERE epoch = 3",
    "SELECT a.Seed, a.epoch, a.acc FROM logs a ANTI JOIN logs b ON a.Seed = b.Seed AND a.epoch "
    '= b.epoch AND b."order" > 2 WHERE a.acc IS NOT NULL',
    'SELECT a.Seed, a.epoch, m.mo FROM logs a, LATERAL (SELECT max(b."order") AS mo FROM logs b '
    "WHERE b.Seed = a.Seed AND b.epoch <= a.epoch) m WHERE a.acc IS NOT NULL",
    "SELECT Seed, epoch, sum(value) AS s FROM logs GROUP BY ROLLUP (Seed, epoch)",
    'SELECT * FROM (PIVOT (SELECT Seed, epoch, "order" FROM logs WHERE "order" IS NOT NULL) ON '
    'epoch USING first("order"))',
    "SELECT Seed, epoch, COLUMNS('^(order|Val Loss)$') FROM logs WHERE step IS NULL",
    "SELECT Seed, epoch, COLUMNS(['ORDER', 'value']) FROM logs WHERE epoch = 2",
    "SELECT Seed, epoch, \"order\" FROM logs WHERE NOT (COLUMNS('^(epoch|order)$') >= 2) AND "
    "step IS NULL",
    "SELECT Seed, epoch, \"order\" FROM logs WHERE COLUMNS(['order']) > 2",
    'SELECT * EXCLUDE (projid, run_id, tstamp, vid) REPLACE ("order" * 2 AS "order") '
    "FROM logs WHERE epoch = 1",
    'SELECT Seed, epoch FROM logs ORDER BY "order" DESC, Seed, epoch LIMIT 3',
    "SELECT Seed, epoch, unnest(CASE WHEN logs.Seed = 0 THEN [] ELSE [1] END) AS u, acc, "
    '"order" FROM logs ORDER BY logs.Seed, epoch LIMIT 1',
    'SELECT Seed, epoch, acc, "order" FROM logs WHERE epoch >= ? AND "order" < ? ORDER BY '
    "logs.Seed DESC, epoch LIMIT ?",
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(history: the old script recorded, today's in the working tree; oracle: today's script
    recorded with the same args)."""
    root = tmp_path_factory.mktemp("s31hs")
    history = make_repo(root / "history", {"train.py": old_source(SCRIPT)})
    oracle = make_repo(root / "oracle", {"train.py": patched_source(SCRIPT)})
    for lr, seed in (("0.1", "0"), ("0.2", "1"), ("0.3", "2")):
        run_script(history, "train.py", "--LR", lr, "--Seed", seed, FLORSQL_CHECKPOINT_PERIOD="1")
        run_script(oracle, "train.py", "--LR", lr, "--Seed", seed)
    write(history / "train.py", patched_source(SCRIPT))
    return history, oracle


def _answer(repo: Path, sql: str, replay: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    params = [1, 3, 2] if "?" in sql else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with florsql.connect(repo, replay=replay) as con:
            cur = con.execute(sql, params)
            rows = cur.fetchall()
            return [d[0] for d in cur.description or ()], rows


@pytest.mark.slow
@pytest.mark.parametrize("sql", HINDSIGHT, ids=[f"h{i}" for i in range(len(HINDSIGHT))])
def test_hindsight_columns_answer_as_runs_that_recorded_them(
    recorded: tuple[Path, Path], tmp_path: Path, sql: str
) -> None:
    """Each query on a fresh copy of the history: what it replays must cover every row it can
    return (a value left out is NULL in the answer, or drops a row a filter on it keeps)."""
    history, oracle = recorded
    names, want = _answer(oracle, sql, "off")
    got_names, got = _answer(copy_repo(history, tmp_path / "history"), sql, "auto")
    assert want and got_names == names
    if "LIMIT" in sql:  # a total order: the rows in order
        assert got == want
    else:
        assert normalize(got) == normalize(want)
