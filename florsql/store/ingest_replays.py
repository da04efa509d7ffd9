"""Replay results into the index: each finished task once, its contexts mapped onto the run's.

A replay task records loop contexts of its own; a context is the same as the run's when its path
of (loop, iteration) pairs is, so ``epoch=3/step=5`` in the replay lands on the run's row for
epoch 3, step 5; where a loop was entered again under one parent (a ``while`` around the step
loop), the k-th context of a path lands on the run's k-th. Recorded values are never
overwritten: replayed ones sit in their own tables with their provenance (replay id, task,
version, patched-source hash), and ``replay_names`` holds, per task and name, the fingerprint of
the statements that computed it (the planner serves a replayed value only while today's code has
that fingerprint for its name). A task whose script raised becomes a row of ``replay_failures``
(what it was to compute, where and why it
failed, the patched source's hash): the planner does not plan it again while that hash is
current.

A task whose ``done.json`` or one of whose segments cannot be read is skipped whole (noted once
in the refresh's :class:`~florsql.store.ingest.Damage`): its values stay missing, as if it never
ran, so a later query may replay them again. No file is ever changed. A task a later replay
set aside (its ``done.json`` renamed to ``rejected.json``) is marked ``rejected``: its values
no longer count.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from florsql.fold import fold
from florsql.store import layout
from florsql.store.ingest import Damage, describe_error, is_epoch_seconds, is_int64
from florsql.store.replays import DONE, FAILED, failed_tasks, finished_tasks, spec_path
from florsql.store.rows import ordinals, repeat_string
from florsql.store.segments import list_segments, read_checked_segment

if TYPE_CHECKING:
    import duckdb

REPLAY_SQL = """
CREATE TABLE IF NOT EXISTS replays (
    replay_id VARCHAR, task_id VARCHAR, run_id VARCHAR, vid VARCHAR, names VARCHAR[],
    loop_name VARCHAR, iterations BIGINT[], status VARCHAR, started TIMESTAMPTZ,
    seconds DOUBLE, source_hash VARCHAR, logs BIGINT, to_end BOOLEAN, data_changed VARCHAR[],
    estimate DOUBLE, task_seconds DOUBLE, mismatch VARCHAR,
    PRIMARY KEY (replay_id, task_id)
);
CREATE TABLE IF NOT EXISTS replay_log_records (
    run_id VARCHAR, seq BIGINT, ctx_id BIGINT, name VARCHAR, vtype VARCHAR,
    value_int BIGINT, value_float DOUBLE, value_str VARCHAR, replay_id VARCHAR, task_id VARCHAR
);
CREATE TABLE IF NOT EXISTS replay_failures (
    replay_id VARCHAR, task_id VARCHAR, run_id VARCHAR, vid VARCHAR, names VARCHAR[],
    loop_name VARCHAR, iterations BIGINT[], to_end BOOLEAN, iteration BIGINT, error VARCHAR,
    traceback VARCHAR, source_hash VARCHAR, failed TIMESTAMPTZ, frames VARCHAR,
    PRIMARY KEY (replay_id, task_id)
);
CREATE TABLE IF NOT EXISTS replay_names (
    replay_id VARCHAR, task_id VARCHAR, name VARCHAR, fingerprint VARCHAR
);
CREATE TABLE IF NOT EXISTS replay_checks (
    replay_id VARCHAR, task_id VARCHAR, run_id VARCHAR, ctx_id BIGINT,
    name VARCHAR, vtype VARCHAR, value_int BIGINT, value_float DOUBLE, value_str VARCHAR
);
"""


def ingest_replays(con: duckdb.DuckDBPyConnection, repo: Path, damage: Damage) -> int:
    """Ingest every finished replay task not yet in the index; returns how many."""
    import pyarrow as pa

    seen = {(r, t) for r, t in con.execute("SELECT replay_id, task_id FROM replays").fetchall()}
    # Every new task's rows go in at once: a handful of statements per refresh, not per task
    # (each costs milliseconds; a query replaying 40 runs ingests 40 tasks as it answers).
    batch: list[pa.Table] = []
    finished: list[tuple[str, str, dict[str, Any]]] = []
    for folder in finished_tasks(repo):
        replay_id, task_id = folder.parent.name, folder.name
        if (replay_id, task_id) in seen:
            continue
        skipped = f"the values of replay {replay_id} task {task_id}"
        done_path = folder / DONE
        try:
            segments = list_segments(folder / layout.SEGMENTS)
        except OSError:
            segments = []
        if any(damage.known(p) for p in (done_path, *segments)):
            continue
        try:
            done = _read_done(done_path)
        except (OSError, ValueError) as error:
            damage.report(done_path, skipped, describe_error(error))
            continue
        tables = []
        for path in segments:
            try:
                tables.append(read_checked_segment(path))
            except (OSError, ValueError, KeyError, pa.ArrowException) as error:
                damage.report(path, skipped, describe_error(error))
                break
        else:
            for table in tables:
                n = table.num_rows
                for column, value in (
                    ("replay_id", replay_id),
                    ("task_id", task_id),
                    ("run_id", done["run_id"]),
                ):
                    table = table.append_column(column, repeat_string(value, n))
                batch.append(table)
            finished.append((replay_id, task_id, done))
    if batch:
        rows = pa.concat_tables(batch)
        rows = rows.append_column("ord", ordinals(rows.num_rows))  # the tasks' own row order
        con.register("task_rows", rows)
        try:
            _insert(con)
        finally:
            con.unregister("task_rows")
    if finished:
        con.executemany(
            "INSERT INTO replays VALUES "
            "(?, ?, ?, ?, ?, ?, ?, 'done', to_timestamp(?), ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    replay_id,
                    task_id,
                    done["run_id"],
                    done["vid"],
                    done["names"],
                    done.get("loop"),
                    done.get("iterations"),
                    done.get("started", 0.0),
                    done.get("seconds"),
                    done.get("source_hash", ""),
                    done.get("logs", 0),
                    bool(done.get("after_loop")),
                    list(done.get("data_changed") or []),
                    _number(done.get("estimate")),
                    _work_seconds(done.get("timings")),
                    done.get("mismatch"),
                ]
                for replay_id, task_id, done in finished
            ],
        )
        names = [
            [replay_id, task_id, fold(n), prints[n]]
            for replay_id, task_id, done in finished
            for prints in [done.get("fingerprints") or {}]
            for n in sorted(prints)
        ]
        if names:
            con.executemany("INSERT INTO replay_names VALUES (?, ?, ?, ?)", names)
    count = len(finished) + _set_aside(con, repo)
    return count + _ingest_failures(con, repo)


def _set_aside(con: duckdb.DuckDBPyConnection, repo: Path) -> int:
    """Mark ``rejected`` each ingested task whose ``done.json`` a later replay renamed to
    ``rejected.json``: its values rest on a checkpoint restored past a draw of today's
    statements that it did not see (:func:`florsql.replay.runner._stale`), and no longer
    count. How many."""
    from florsql.store.replays import REJECTED, replays_dir

    root = replays_dir(repo)
    if not root.is_dir():
        return 0
    aside = [
        (p.parent.parent.name, p.parent.name)
        for p in root.glob(f"*/*/{REJECTED}")
        if not (p.parent / DONE).exists()
    ]
    if not aside:
        return 0
    sql = "SELECT replay_id, task_id FROM replays WHERE status = 'done'"
    done = set(con.execute(sql).fetchall())
    marked = [list(k) for k in aside if k in done]
    if marked:
        con.executemany(
            "UPDATE replays SET status = 'rejected' WHERE replay_id = ? AND task_id = ?", marked
        )
    return len(marked)


def _ingest_failures(con: duckdb.DuckDBPyConnection, repo: Path) -> int:
    seen = set(con.execute("SELECT replay_id, task_id FROM replay_failures").fetchall())
    count = 0
    for folder in failed_tasks(repo):
        replay_id, task_id = folder.parent.name, folder.name
        if (replay_id, task_id) in seen or not spec_path(folder).exists():
            continue
        try:
            info = json.loads((folder / FAILED).read_text())
            spec = json.loads(spec_path(folder).read_text())
        except (OSError, ValueError):
            continue  # written atomically; an unreadable one is not a remembered failure
        con.execute(
            "INSERT INTO replay_failures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "to_timestamp(?), ?)",
            [
                replay_id,
                task_id,
                spec["run_id"],
                spec["vid"],
                spec["names"],
                spec.get("loop"),
                spec.get("iterations") or [],
                bool(spec.get("after_loop")),
                info.get("iteration"),
                info.get("error"),
                info.get("traceback"),
                spec.get("source_hash", ""),
                (folder / FAILED).stat().st_mtime,
                json.dumps(info.get("frames") or []),
            ],
        )
        count += 1
    return count


def _read_done(path: Path) -> dict[str, Any]:
    """A task's done marker, checked (ValueError names what is wrong)."""
    done = json.loads(path.read_bytes().decode("utf-8"))
    if not isinstance(done, dict):
        raise ValueError("not a JSON object")
    for key in ("run_id", "vid"):
        if not isinstance(done.get(key), str):
            raise ValueError(f"{key} is missing or not text")
    names = done.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("names is not a list of text")
    iterations = done.get("iterations")
    if iterations is not None and (
        not isinstance(iterations, list) or not all(is_int64(i) for i in iterations)
    ):
        raise ValueError("iterations is not a list of integers")
    for key in ("started", "seconds"):
        if done.get(key) is not None and not is_epoch_seconds(done[key]):
            raise ValueError(f"{key} is not a number of seconds")
    if done.get("logs") is not None and not is_int64(done["logs"]):
        raise ValueError("logs is not an integer")
    if done.get("loop") is not None and not isinstance(done["loop"], str):
        raise ValueError("loop is not text")
    if not isinstance(done.get("source_hash", ""), str):
        raise ValueError("source_hash is not text")
    prints = done.get("fingerprints")
    if prints is not None and (
        not isinstance(prints, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in prints.items())
    ):
        raise ValueError("fingerprints is not an object of text")
    if done.get("mismatch") is not None and not isinstance(done["mismatch"], str):
        raise ValueError("mismatch is not text")
    changed = done.get("data_changed")
    if changed is not None and (
        not isinstance(changed, list) or not all(isinstance(c, str) for c in changed)
    ):
        raise ValueError("data_changed is not a list of text")
    return done


def _work_seconds(timings: Any) -> float | None:
    """A task's seconds that its estimate stands for (``replays.task_seconds``, what the
    planner's calibration divides by the estimate): a forked task's whole time; None for a task
    that started a fresh interpreter (``"forked": false``), whose time is mostly the
    interpreter's start and imports, which EXPLAIN counts apart (per task, measured)."""
    if not isinstance(timings, dict) or timings.get("forked") is False:
        return None
    return _number(timings.get("total"))


def _number(value: Any) -> float | None:
    """A finite number of ``done.json`` as a float; None for anything else (an older task)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _insert(con: duckdb.DuckDBPyConnection) -> None:
    """Map the rows of ``task_rows`` (every new task's, tagged with its replay, task and run)
    to their runs' recorded contexts, by loop path, and insert them."""
    # Each task context maps to the run's context with the same loop path, matched level by
    # level from the top through ``loops`` (parent, name, iteration): only the paths the tasks
    # ran are looked at. (Keying every context of the runs by its path string cost 0.33 s per
    # refresh for runs of 50k contexts, measured, on the query's path after each replay.) A
    # loop entered again under one parent (``while seen < budget: for b in flor.loop("step",
    # ...)``) gives one path several contexts: the k-th of the task's maps to the k-th of the
    # run's (``occ``, in creation order). Before, every one mapped to the first: the values of
    # the later passes landed on the first pass's rows (wrong values) and the others stayed
    # NULL. (A rest task skips the first pass only, so its later passes are off by one; it
    # stores no values there: a statement in that loop runs the iteration in full.)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE task_map AS
        WITH RECURSIVE
        lo AS (
            SELECT l.run_id, l.parent_ctx, l.loop_name, l.iteration, l.ctx_id,
                row_number() OVER (PARTITION BY l.run_id, l.parent_ctx, l.loop_name, l.iteration
                                   ORDER BY l.ctx_id) AS occ
            FROM loops l WHERE l.run_id IN (SELECT DISTINCT run_id FROM task_rows)
        ),
        tl AS (
            SELECT t.replay_id, t.task_id, t.run_id, t.parent, t.name, t.iteration, t.ctx,
                row_number() OVER (PARTITION BY t.replay_id, t.task_id, t.parent, t.name,
                                   t.iteration ORDER BY t.ctx) AS occ
            FROM task_rows t WHERE t.kind = 'loop'
        ),
        m(replay_id, task_id, ctx, run_ctx) AS (
            SELECT t.replay_id, t.task_id, t.ctx, l.ctx_id
            FROM tl t JOIN lo l ON l.run_id = t.run_id AND l.parent_ctx = 0
                AND l.loop_name = t.name AND l.iteration = t.iteration AND l.occ = t.occ
            WHERE t.parent = 0
            UNION
            SELECT t.replay_id, t.task_id, t.ctx, l.ctx_id
            FROM m JOIN tl t ON t.replay_id = m.replay_id
                AND t.task_id = m.task_id AND t.parent = m.ctx
            JOIN lo l ON l.run_id = t.run_id AND l.parent_ctx = m.run_ctx
                AND l.loop_name = t.name AND l.iteration = t.iteration AND l.occ = t.occ
        )
        SELECT replay_id, task_id, ctx, min(run_ctx) AS ctx_id FROM m
        GROUP BY replay_id, task_id, ctx"""
    )
    mapped = """FROM task_rows t
        LEFT JOIN task_map r ON r.replay_id = t.replay_id AND r.task_id = t.task_id
            AND r.ctx = t.ctx
        WHERE t.kind = '{kind}' AND (t.ctx = 0 OR r.ctx_id IS NOT NULL) ORDER BY t.ord"""
    con.execute(
        f"""INSERT INTO replay_log_records SELECT t.run_id, t.seq,
            CASE WHEN t.ctx = 0 THEN 0 ELSE r.ctx_id END, t.name, t.vtype, t.v_int, t.v_float,
            t.v_str, t.replay_id, t.task_id {mapped.format(kind="log")}"""
    )
    con.execute(
        f"""INSERT INTO replay_checks SELECT t.replay_id, t.task_id, t.run_id,
            CASE WHEN t.ctx = 0 THEN 0 ELSE r.ctx_id END, t.name, t.vtype, t.v_int,
            t.v_float, t.v_str {mapped.format(kind="check")}"""
    )
