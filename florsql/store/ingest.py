"""Reading run folders into the index, incrementally: each source is ingested once per change.

A damaged history costs only the damaged files. A file that cannot be read (a truncated or
garbage segment, a ``run.json`` that is not a run's identity, a checkpoint manifest with lines
that are not checkpoints) is skipped, the rest is ingested, and :class:`Damage` notes it once:
the index remembers it in table ``damaged`` (so later refreshes skip it silently; a rebuilt index
notes it again, once). A run whose ``run.json`` is missing or unreadable but whose segments
remain is kept, with status ``damaged``. Nothing here ever writes, moves or deletes a file of
the store.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from florsql.store import layout
from florsql.store.rows import repeat_string
from florsql.store.segments import list_segments, read_checked_segment, split_value

if TYPE_CHECKING:
    import duckdb

DAMAGE_SQL = """
CREATE TABLE IF NOT EXISTS damaged (path VARCHAR PRIMARY KEY, skipped VARCHAR, reason VARCHAR);
"""

#: The status a run gets when its run.json is missing or unreadable but its segments remain.
DAMAGED = "damaged"


@dataclass
class Damage:
    """The damaged files met by one refresh, each noted once per index.

    Attributes:
        notes: (path relative to the repo, what was skipped, why) of files damaged and not
            noted before by this index, in the order they were met.
    """

    con: duckdb.DuckDBPyConnection
    repo: Path
    notes: list[tuple[str, str, str]] = field(default_factory=list)

    def relative(self, path: Path) -> str:
        try:
            return Path(path).relative_to(self.repo).as_posix()
        except ValueError:
            return Path(path).as_posix()

    #: the ``damaged`` table's paths, read once (a statement per file asked cost milliseconds
    #: per run on every refresh), kept in step by :meth:`report` and :meth:`clear`
    _paths: set[str] | None = None

    def _known_paths(self) -> set[str]:
        if self._paths is None:
            rows = self.con.execute("SELECT path FROM damaged").fetchall()
            self._paths = {r[0] for r in rows}
        return self._paths

    def known(self, path: Path) -> bool:
        """Whether ``path`` was found damaged before (it is skipped without reading it)."""
        return self.relative(path) in self._known_paths()

    def report(self, path: Path, skipped: str, reason: str) -> None:
        """Note ``path`` as damaged (once: a path already noted is not noted again)."""
        if self.known(path):
            return
        rel = self.relative(path)
        self.con.execute("INSERT INTO damaged VALUES (?, ?, ?)", [rel, skipped, reason])
        self._known_paths().add(rel)
        self.notes.append((rel, skipped, reason))

    def clear(self, path: Path) -> None:
        """``path`` reads fine now (a rewritten run.json): forget that it was damaged."""
        rel = self.relative(path)
        self.con.execute("DELETE FROM damaged WHERE path = ?", [rel])
        self._known_paths().discard(rel)


def is_int64(value: object) -> bool:
    """Whether ``value`` is an int (not a bool) DuckDB's BIGINT holds."""
    return type(value) is int and -(2**63) <= value < 2**63


def is_epoch_seconds(value: object) -> bool:
    """Whether ``value`` is a number of seconds DuckDB's ``to_timestamp`` takes."""
    return type(value) in (int, float) and math.isfinite(value) and abs(value) < 1e11  # type: ignore[arg-type]


def describe_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
        try:
            segments = tuple(list_segments(path / layout.SEGMENTS))
        except OSError:
            segments = ()
        if not segments and not run_json.exists():
            return None  # a run that died before writing its identity holds nothing
        return cls(
            run_id=path.name,
            path=path,
            run_json=run_json,
            segments=segments,
            manifest=path / layout.CHECKPOINTS / layout.MANIFEST,
        )


#: ``ingested`` as a refresh began, by (run id, source): (mtime_ns, size)
Seen = dict[tuple[str, str], tuple[int, int]]


def ingested_now(con: duckdb.DuckDBPyConnection) -> Seen:
    """The ``ingested`` table in one statement, for a refresh that checks every run's files
    (one lookup per run and file cost a statement each: milliseconds per run)."""
    rows = con.execute("SELECT run_id, source, mtime_ns, size FROM ingested").fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def _changed(
    con: duckdb.DuckDBPyConnection, run_id: str, source: str, path: Path, seen: Seen | None = None
) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if seen is not None:
        known = seen.get((run_id, source))
    else:
        row = con.execute(
            "SELECT mtime_ns, size FROM ingested WHERE run_id = ? AND source = ?",
            [run_id, source],
        ).fetchone()
        known = None if row is None else (row[0], row[1])
    if known is not None and tuple(known) == (st.st_mtime_ns, st.st_size):
        return False
    if seen is not None:
        seen[(run_id, source)] = (st.st_mtime_ns, st.st_size)
    con.execute(
        "INSERT OR REPLACE INTO ingested VALUES (?, ?, ?, ?)",
        [run_id, source, st.st_mtime_ns, st.st_size],
    )
    return True


def ingest_run_json(
    con: duckdb.DuckDBPyConnection, f: RunFiles, damage: Damage, seen: Seen | None = None
) -> bool:
    """Ingest a run's run.json if it changed; False when it was already ingested as it is
    (nothing written: the ``runs`` view's arg columns stay as they are). ``seen``:
    :func:`ingested_now` of this refresh."""
    if not f.run_json.exists():
        # segments without an identity: shown as a damaged run, not dropped
        con.execute("DELETE FROM ingested WHERE run_id = ? AND source = ?", [f.run_id, "run.json"])
        if seen is not None:
            seen.pop((f.run_id, "run.json"), None)
        if con.execute("SELECT 1 FROM run_meta WHERE run_id = ?", [f.run_id]).fetchone() is None:
            _insert_damaged_run(con, f.run_id)
        damage.report(
            f.run_json,
            f"run {f.run_id}'s identity, args and version (the run is shown with status "
            f"'{DAMAGED}')",
            "it is missing but the run's segments remain",
        )
        return True
    if not _changed(con, f.run_id, layout.RUN_JSON, f.run_json, seen):
        return False
    try:
        doc = read_run_doc(f.run_json)
    except (OSError, ValueError) as error:
        for table in ("run_meta", "args", "data_inputs"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [f.run_id])
        _insert_damaged_run(con, f.run_id)
        damage.report(
            f.run_json,
            f"run {f.run_id}'s identity, args and version (the run is shown with status "
            f"'{DAMAGED}')",
            describe_error(error),
        )
        return True
    damage.clear(f.run_json)
    failure = json.dumps(doc["error"]) if doc.get("error") else None
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
            failure,
            [str(a) for a in doc.get("argv") or []],
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
        if _data_input(i)
    ]
    if inputs:
        con.executemany("INSERT INTO data_inputs VALUES (?, ?, ?, to_timestamp(?), ?)", inputs)
    con.execute("DELETE FROM args WHERE run_id = ?", [f.run_id])
    rows = [
        (f.run_id, name, *split_value(_arg_text(v)))
        for name, v in (doc.get("args") or {}).items()
        if isinstance(name, str) and name  # flor.arg("", ...) before s37 recorded one
    ]
    if rows:
        con.executemany("INSERT INTO args VALUES (?, ?, ?, ?, ?, ?)", rows)
    return True


#: A list, tuple or dict arg as runs recorded before session 33 kept it: the repr of florsql's
#: rendered value (``Tagged('json', '[16, 8]')``), shown as its text as newer runs keep it.
_LEGACY_ARG = re.compile(r"^Tagged\('(?:json|repr)', (.*)\)$", re.S)


def _arg_text(value: Any) -> Any:
    """An arg's value as SQL shows it: ``[16, 8]``, whichever florsql recorded the run.

    Example:
        >>> _arg_text("Tagged('json', '[16, 8]')"), _arg_text(0.1), _arg_text("adam")
        ('[16, 8]', 0.1, 'adam')
    """
    if isinstance(value, str) and (m := _LEGACY_ARG.match(value)):
        with contextlib.suppress(ValueError, SyntaxError):
            text = ast.literal_eval(m.group(1))
            if isinstance(text, str):
                return text
    return value


def run_files(doc: dict[str, Any]) -> list[str]:
    """The repository files a run executed: its ``files`` (main script and imported modules);
    runs recorded before florsql listed them have their main script only."""
    files = doc.get("files")
    if isinstance(files, list) and files:
        return [str(f) for f in files]
    return [str(doc["filename"])] if doc.get("filename") else []


def _data_input(entry: object) -> bool:
    """Whether ``entry`` of run.json's ``inputs`` is a data file's fingerprint (others are
    skipped: a wrong type would fail the whole refresh in DuckDB)."""
    if not isinstance(entry, dict) or not {"path", "bytes", "mtime_ns", "hash"} <= entry.keys():
        return False
    return (
        isinstance(entry["path"], str)
        and is_int64(entry["bytes"])
        and is_epoch_seconds(entry["mtime_ns"] / 1e9 if is_int64(entry["mtime_ns"]) else None)
        and isinstance(entry["hash"], str)
    )


def _insert_damaged_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    con.execute("INSERT INTO run_meta (run_id, status) VALUES (?, ?)", [run_id, DAMAGED])


_TEXT_FIELDS = (
    "projid",
    "vid",
    "head",
    "filename",
    "status",
    "python",
    "torch",
    "host",
    "data_fingerprint",
)


def _utf8(value: Any) -> Any:
    """``value`` (a run.json document or a part of it) with every lone surrogate in its text
    written as a backslash escape: DuckDB takes only UTF-8. A command line, a file name or a
    working folder with a byte that is not UTF-8 (``train.py $'caf\\xe9.csv'``) reaches Python
    as a surrogate (``caf\\udce9.csv``), and such a run made every later query of the
    repository fail, deleting the index too (session 45); the index now shows ``caf\\xe9.csv``.
    run.json keeps the original (a replay runs with the run's own command line)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            try:
                raw = value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
            return raw.decode("utf-8", "backslashreplace")
        return value
    if isinstance(value, dict):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utf8(v) for v in value]
    return value


def read_run_doc(path: Path) -> dict[str, Any]:
    """A run.json document, checked field by field (ValueError names what is wrong).

    Timestamps come back in the ISO form DuckDB reads.
    """
    doc = layout.read_json(path)  # OSError, or ValueError (JSONDecodeError, UnicodeDecodeError)
    if not isinstance(doc, dict):
        raise ValueError(f"not a JSON object but {type(doc).__name__}")
    doc = _utf8(doc)
    for key in _TEXT_FIELDS:
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise ValueError(f"{key} is {type(doc[key]).__name__}, not text")
    for key in ("tstamp", "ended"):
        value = doc.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"{key} is {type(value).__name__}, not a timestamp")
            doc[key] = datetime.fromisoformat(value).isoformat()
    pid = doc.get("pid")
    if pid is not None and not (is_int64(pid) and pid >= 0):
        raise ValueError(f"pid is {pid!r}, not a process id")
    if doc.get("pid_start") is not None:
        doc["pid_start"] = str(doc["pid_start"])
    if doc.get("dirty") is not None and not isinstance(doc["dirty"], bool):
        raise ValueError(f"dirty is {doc['dirty']!r}, not true or false")
    if doc.get("args") is not None and not isinstance(doc["args"], dict):
        raise ValueError("args is not an object")
    if doc.get("argv") is not None and not isinstance(doc["argv"], list):
        raise ValueError("argv is not a list")
    return doc


def load_manifest(
    con: duckdb.DuckDBPyConnection, f: RunFiles, damage: Damage, seen: Seen | None = None
) -> None:
    if not _changed(con, f.run_id, layout.MANIFEST, f.manifest, seen):
        return
    try:
        lines = f.manifest.read_bytes().splitlines(keepends=True)
    except OSError as error:
        con.execute("DELETE FROM checkpoints WHERE run_id = ?", [f.run_id])
        damage.report(f.manifest, f"run {f.run_id}'s checkpoints", describe_error(error))
        return
    rows, bad = [], 0
    for n, line in enumerate(lines):
        try:
            rows.append((f.run_id, *manifest_entry(line.decode("utf-8"))))
        except ValueError:  # not UTF-8, not JSON, not an entry
            if n == len(lines) - 1 and not line.endswith(b"\n"):
                continue  # the last line cut short by a kill: its checkpoint is not trusted
            bad += 1
    con.execute("DELETE FROM checkpoints WHERE run_id = ?", [f.run_id])
    if rows:
        con.executemany("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    if bad:
        damage.report(
            f.manifest,
            f"{bad} of its {len(lines)} lines (checkpoints of run {f.run_id})",
            "lines that are not checkpoint entries",
        )


def manifest_entry(line: str) -> tuple[Any, ...]:
    """(loop, iteration, position, file, bytes, copy_seconds, write_seconds) of one manifest
    line; ValueError if it is not a checkpoint entry."""
    r = json.loads(line)
    if not isinstance(r, dict):
        raise ValueError("not an object")
    loop, iteration, position, file, size = (r.get(k) for k in _MANIFEST_KEYS)
    if not (isinstance(loop, str) and isinstance(position, str) and isinstance(file, str)):
        raise ValueError("loop, position and file must be text")
    if not (is_int64(iteration) and is_int64(size)):
        raise ValueError("iteration and bytes must be integers")
    extra = [r.get(k) for k in ("copy_seconds", "write_seconds")]
    if any(x is not None and type(x) not in (int, float) for x in extra):
        raise ValueError("seconds must be numbers")
    return (loop, iteration, position, file, size, *extra)


_MANIFEST_KEYS = ("loop", "iteration", "position", "file", "bytes")


def ingest_segments(
    con: duckdb.DuckDBPyConnection, files: list[RunFiles], damage: Damage
) -> tuple[int, int]:
    """Load every segment not yet ingested; returns (segments, rows). An unreadable segment is
    skipped (noted in ``damage``) and the run's other segments are loaded."""
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
            if (f.run_id, key) in done or damage.known(seg):
                continue
            try:
                st = os.stat(seg)
                t = read_checked_segment(seg)
            except (OSError, ValueError, KeyError, pa.ArrowException) as error:
                damage.report(seg, f"its rows of run {f.run_id}", describe_error(error))
                continue
            tables.append(t.append_column("run_id", repeat_string(f.run_id, t.num_rows)))
            marks.append((f.run_id, key, st.st_mtime_ns, st.st_size))
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
