"""Arrow IPC segment files: the append-only truth of what a run (or a replay) recorded.

A segment is one Arrow IPC file holding one table in :data:`SCHEMA`. It is written to a temporary
name and renamed into place, so a reader sees whole segments only, and a process killed mid-write
leaves at most a stray temporary file (ignored by readers).

Row kinds:

- ``loop``: one iteration. ``ctx`` is its context id, ``parent`` the enclosing context
  (0 at top level), ``name`` the loop name, ``iteration`` the 0-based index, the value columns the
  item when it is a scalar, ``t`` the wall-clock start (epoch seconds), ``seconds`` its duration
  (null while it had not ended when its row was written).
- ``end``: iteration ``ctx`` ended after its ``loop`` row was written; ``t`` is its duration.
  Segments written before the ``seconds`` column existed have one of these for every iteration.
- ``log``: ``flor.log(name, value)`` in context ``ctx``; ``seq`` orders logs within the run.
- ``check`` (replays only): a replayed value of a name the run recorded, for comparison.

Segments without a ``seconds`` column (the first format) are read as if it were null.

pyarrow is imported lazily: in a recording process only the background writer thread needs it.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

SEGMENT_SUFFIX = ".arrow"
#: A recording run's segments: its rows as written on the training process's writer thread,
#: converted to Arrow by the reader (florsql.store.rows.dump_rows).
ROWS_SUFFIX = ".rows"
_SUFFIXES = (SEGMENT_SUFFIX, ROWS_SUFFIX)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Tagged:
    """A value already rendered to text on the training thread: JSON or a repr."""

    __slots__ = ("text", "vtype")

    def __init__(self, vtype: str, text: str) -> None:
        self.vtype = vtype
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tagged) and (self.vtype, self.text) == (other.vtype, other.text)

    def __hash__(self) -> int:
        return hash((self.vtype, self.text))

    def __repr__(self) -> str:
        return f"Tagged({self.vtype!r}, {self.text!r})"


def schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("kind", pa.string()),
            ("seq", pa.int64()),
            ("ctx", pa.int64()),
            ("parent", pa.int64()),
            ("name", pa.string()),
            ("iteration", pa.int64()),
            ("vtype", pa.string()),
            ("v_int", pa.int64()),
            ("v_float", pa.float64()),
            ("v_str", pa.string()),
            ("t", pa.float64()),
            ("seconds", pa.float64()),
        ]
    )


def split_value(value: Any) -> tuple[str, int | None, float | None, str | None]:
    """(vtype, v_int, v_float, v_str) for a value stored by the record API."""
    t = type(value)
    if t is bool:
        return "bool", int(value), None, None
    if t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return "int", value, None, None
        return "str", None, None, str(value)
    if t is float:
        return "float", None, value, None
    if t is str:
        return "str", None, None, value
    if value is None:
        return "null", None, None, None
    if t is Tagged:
        return value.vtype, None, None, value.text
    return "repr", None, None, repr(value)


def join_value(vtype: str, v_int: int | None, v_float: float | None, v_str: str | None) -> Any:
    """Inverse of :func:`split_value` (JSON and repr values come back as their text)."""
    if vtype == "bool":
        return bool(v_int)
    if vtype == "int":
        return v_int
    if vtype == "float":
        return v_float if v_float is not None else math.nan
    if vtype == "null":
        return None
    return v_str


@dataclass
class Batch:
    """Rows as tuples, as a replay worker gathers them (a recording run uses the column-wise
    :class:`florsql.store.rows.Columns`)."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    logs: list[tuple[int, str, Any]] = field(default_factory=list)
    first_seq: int = 0

    def __bool__(self) -> bool:
        return bool(self.events or self.logs)

    @property
    def log_count(self) -> int:
        return len(self.logs)

    def to_table(self) -> pa.Table:
        return batch_to_table(self)


def batch_to_table(batch: Batch) -> pa.Table:
    """Convert a :class:`Batch` to one Arrow table in :func:`schema` (never through
    ``pa.array``, which imports pandas where it is installed: see ``florsql.store.rows``)."""
    from florsql.store.rows import Columns, NameTable

    cols = Columns(NameTable(), first_seq=batch.first_seq, clock_offset=0.0)
    rows: dict[int, int] = {}
    for kind, ctx, parent, name, iteration, value, t in batch.events:
        if kind == "loop":
            rows[ctx] = cols.loop(ctx, parent, cols.names.key(name), iteration, value, t)
        elif kind == "end" and ctx in rows:
            cols.loop_s[rows[ctx]] = t
        elif kind == "end":
            cols.ends.append((ctx, t))
        elif kind == "check":
            cols.checks.append((ctx, name, value))
    for ctx, name, value in batch.logs:
        cols.log(ctx, cols.names.key(name), value)
    return cols.to_table()


def segment_name(number: int) -> str:
    return f"{number:06d}{SEGMENT_SUFFIX}"


def write_segment(folder: Path, number: int, table: pa.Table) -> Path:
    """Write ``table`` as segment ``number`` in ``folder`` atomically; returns its path."""
    import pyarrow as pa

    folder.mkdir(parents=True, exist_ok=True)
    final = folder / segment_name(number)
    fd, tmp = tempfile.mkstemp(prefix=".seg-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f, pa.ipc.new_file(f, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return final


def write_rows(folder: Path, number: int, rows: Any) -> Path:
    """Write a recording run's :class:`~florsql.store.rows.Columns` as row file ``number`` in
    ``folder`` atomically (no pyarrow: see :func:`florsql.store.rows.dump_rows`)."""
    from florsql.store import layout
    from florsql.store.rows import dump_rows

    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{number:06d}{ROWS_SUFFIX}"
    layout.write_bytes_atomic(final, dump_rows(rows), prefix=".seg-")
    return final


def list_segments(folder: Path) -> list[Path]:
    """Whole segments in ``folder`` (Arrow segments and row files), in order (temporary files
    are skipped)."""
    if not folder.is_dir():
        return []
    return sorted(
        (p for p in folder.iterdir() if p.name.endswith(_SUFFIXES) and p.name[0] != "."),
        key=lambda p: (len(p.stem), p.name),  # by number, past 999999 too
    )


#: Segments read in this process, by path, with the file's identity when read (inode, size,
#: mtime): a segment is written once, to a temporary name renamed into place, so another file
#: at that path is another inode. A query reads the same recorded segments several times (the
#: replay request's loop bounds and names, the verification of each task, the index); they
#: are memory-mapped, so an entry holds no copy of the rows. Least recently used goes first.
_READ: OrderedDict[str, tuple[tuple[int, int, int], pa.Table]] = OrderedDict()
_READ_MAX = 8192
_READ_LOCK = threading.Lock()


def read_segment(path: Path) -> pa.Table:
    """One segment's rows in :func:`schema` (a first-format segment gains a null ``seconds``)."""
    import pyarrow as pa

    key = str(path)
    st = os.stat(key)
    ident = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _READ_LOCK:
        hit = _READ.get(key)
        if hit is not None and hit[0] == ident:
            _READ.move_to_end(key)
            return hit[1]
    if key.endswith(ROWS_SUFFIX):
        from florsql.store.rows import load_rows

        with open(key, "rb") as f:
            table = load_rows(f.read()).to_table()
    else:
        with pa.memory_map(key) as source:
            table = pa.ipc.open_file(source).read_all()
    if "seconds" not in table.column_names:
        table = table.append_column("seconds", pa.nulls(table.num_rows, pa.float64()))
    table = table.select(schema().names)
    with _READ_LOCK:
        _READ[key] = (ident, table)
        if len(_READ) > _READ_MAX:
            _READ.popitem(last=False)
    return table


def read_checked_segment(path: Path) -> pa.Table:
    """Read a segment and check it is one: its columns cast to :func:`schema`'s.

    Raises:
        OSError, ValueError (``pyarrow.ArrowInvalid``), KeyError or ``pyarrow.ArrowException``:
            the file is truncated, garbage, or an Arrow file of other columns.
    """
    table, target = read_segment(path), schema()
    if table.schema.equals(target):  # florsql's own files: no cast (it imports
        return table  # pyarrow.compute, 0.1-0.3 s, on a query's first read)
    return table.cast(target)


def read_segments(paths: Sequence[Path] | Iterable[Path]) -> pa.Table:
    import pyarrow as pa

    tables = [read_segment(p) for p in paths]
    if not tables:
        return schema().empty_table()
    return pa.concat_tables(tables)
