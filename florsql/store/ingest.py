"""Reading run folders into the index, incrementally: each source is ingested once per change."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from florsql.store import layout
from florsql.store.segments import list_segments, read_segment, split_value

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class RunFiles:
    """The files of one run folder as found at scan time."""

    run_id: str
    path: Path
    run_json: Path
    segments: tuple[Path, ...]
    manifest: Path

    @classmethod
    def scan(cls, path: Path) -> RunFiles | None:
        run_json = path / layout.RUN_JSON
        if not run_json.exists():
            return None  # a run that died before writing its identity holds nothing
        return cls(
            run_id=path.name,
            path=path,
            run_json=run_json,
            segments=tuple(list_segments(path / layout.SEGMENTS)),
            manifest=path / layout.CHECKPOINTS / layout.MANIFEST,
        )


def _changed(con: duckdb.DuckDBPyConnection, run_id: str, source: str, path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    row = con.execute(
        "SELECT mtime_ns, size FROM ingested WHERE run_id = ? AND source = ?", [run_id, source]
    ).fetchone()
    if row is not None and tuple(row) == (st.st_mtime_ns, st.st_size):
        return False
    con.execute(
        "INSERT OR REPLACE INTO ingested VALUES (?, ?, ?, ?)",
        [run_id, source, st.st_mtime_ns, st.st_size],
    )
    return True


def ingest_run_json(con: duckdb.DuckDBPyConnection, f: RunFiles) -> None:
    if not _changed(con, f.run_id, layout.RUN_JSON, f.run_json):
        return
    doc = layout.read_json(f.run_json)
    error = json.dumps(doc["error"]) if doc.get("error") else None
    con.execute("DELETE FROM run_meta WHERE run_id = ?", [f.run_id])
    con.execute(
        "INSERT INTO run_meta VALUES (?, ?, ?::TIMESTAMPTZ, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?::TIMESTAMPTZ, ?, ?)",
        [
            f.run_id,
            doc.get("projid"),
            doc.get("tstamp"),
            doc.get("vid"),
            doc.get("head"),
            doc.get("dirty"),
            doc.get("filename"),
            doc.get("status"),
            error,
            [str(a) for a in doc.get("argv", [])],
            doc.get("python"),
            doc.get("torch"),
            doc.get("host"),
            doc.get("pid"),
            doc.get("pid_start"),
            doc.get("ended"),
            run_files(doc),
            doc.get("data_fingerprint"),
        ],
    )
    con.execute("DELETE FROM data_inputs WHERE run_id = ?", [f.run_id])
    inputs = [
        (f.run_id, i["path"], i["bytes"], i["mtime_ns"] / 1e9, i["hash"])
        for i in doc.get("inputs") or []
        if isinstance(i, dict) and {"path", "bytes", "mtime_ns", "hash"} <= i.keys()
    ]
    if inputs:
        con.executemany("INSERT INTO data_inputs VALUES (?, ?, ?, to_timestamp(?), ?)", inputs)
    con.execute("DELETE FROM args WHERE run_id = ?", [f.run_id])
    rows = [(f.run_id, name, *split_value(v)) for name, v in (doc.get("args") or {}).items()]
    if rows:
        con.executemany("INSERT INTO args VALUES (?, ?, ?, ?, ?, ?)", rows)


def run_files(doc: dict[str, Any]) -> list[str]:
    """The repository files a run executed: its ``files`` (main script and imported modules);
    runs recorded before florsql listed them have their main script only."""
    files = doc.get("files")
    if isinstance(files, list) and files:
        return [str(f) for f in files]
    return [str(doc["filename"])] if doc.get("filename") else []


def load_manifest(con: duckdb.DuckDBPyConnection, f: RunFiles) -> None:
    if not _changed(con, f.run_id, layout.MANIFEST, f.manifest):
        return
    rows = []
    for line in f.manifest.read_text(encoding="utf-8").splitlines():
        try:
            r: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill: its checkpoint is not trusted
        keys = ("loop", "iteration", "position", "file", "bytes")
        keys2 = ("copy_seconds", "write_seconds")
        rows.append((f.run_id, *(r[k] for k in keys), *(r.get(k) for k in keys2)))
    con.execute("DELETE FROM checkpoints WHERE run_id = ?", [f.run_id])
    if rows:
        con.executemany("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def ingest_segments(con: duckdb.DuckDBPyConnection, files: list[RunFiles]) -> tuple[int, int]:
    """Load every segment not yet ingested; returns (segments, rows)."""
    import pyarrow as pa

    done = {
        (r, s)
        for r, s in con.execute(
            "SELECT run_id, source FROM ingested WHERE source LIKE 'seg:%'"
        ).fetchall()
    }
    tables = []
    marks = []
    for f in files:
        for seg in f.segments:
            key = "seg:" + seg.name
            if (f.run_id, key) in done:
                continue
            t = read_segment(seg)
            tables.append(t.append_column("run_id", pa.array([f.run_id] * t.num_rows)))
            marks.append((f.run_id, key, seg.stat().st_mtime_ns, seg.stat().st_size))
    if not tables:
        return 0, 0
    new = pa.concat_tables(tables)
    con.register("new_rows", new)
    try:
        _insert_new_rows(con)
    finally:
        con.unregister("new_rows")
    con.executemany("INSERT OR REPLACE INTO ingested VALUES (?, ?, ?, ?)", marks)
    return len(marks), new.num_rows


def _insert_new_rows(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """INSERT INTO loops SELECT run_id, ctx, parent, name, iteration, vtype, v_int, v_float,
               v_str, t, seconds FROM new_rows WHERE kind = 'loop'"""
    )
    con.execute(
        """UPDATE loops SET seconds = e.t FROM (SELECT run_id, ctx, t FROM new_rows
           WHERE kind = 'end') e WHERE loops.run_id = e.run_id AND loops.ctx_id = e.ctx"""
    )
    con.execute(
        """INSERT INTO log_records SELECT run_id, seq, ctx, name, vtype, v_int, v_float, v_str
           FROM new_rows WHERE kind = 'log'"""
    )
    con.execute(
        """INSERT INTO ctx_path
        WITH RECURSIVE p(run_id, ctx_id, anc, loop_name, iteration, hops) AS (
            SELECT run_id, ctx, parent, name, iteration, 0 FROM new_rows WHERE kind = 'loop'
            UNION ALL
            SELECT p.run_id, p.ctx_id, l.parent_ctx, l.loop_name, l.iteration, p.hops + 1
            FROM p JOIN loops l ON l.run_id = p.run_id AND l.ctx_id = p.anc
        )
        SELECT run_id, ctx_id, loop_name, iteration,
               max(hops) OVER (PARTITION BY run_id, ctx_id) - hops AS depth FROM p"""
    )
