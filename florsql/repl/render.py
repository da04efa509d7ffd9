"""Text the REPL shows, as pure functions: results as aligned tables with a row limit and the
row count, CSV, JSON or one ``column = value`` line per field; the replay's progress line; the
question asked before a long replay."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
from wcwidth import wcswidth

from florsql.engine.exact import TYPE_KEY
from florsql.engine.pyvalues import MapPairs, python_columns
from florsql.fold import fold
from florsql.repl.service import Outcome, ReplayEstimate, ReplayProgress

__all__ = [
    "cell",
    "confirm_text",
    "display",
    "display_width",
    "duration",
    "progress_line",
    "render",
    "render_csv",
    "render_json",
    "render_lines",
    "render_table",
    "unique_names",
]

NULL = "NULL"
_OFFSET_HOUR = re.compile(r"([+-]\d\d):00$")
#: A fraction of a second's trailing zeros, which DuckDB's text leaves out (``03.5``, not
#: ``03.500000``; before s36 the shell and ``florsql query`` wrote all six digits).
_FRACTION_ZEROS = re.compile(r"(\.\d*?)0+(?=$|[+-])")


def cell(value: object, arrow_type: pa.DataType | None = None) -> str:
    """One value as the table shows it: DuckDB's text of it (``CAST(x AS VARCHAR)``).

    ``arrow_type`` (the column's) tells a ``MAP`` (``{k=v}``) from a ``STRUCT`` (``{'k': v}``);
    without it a ``dict`` is a struct.

    Example:
        >>> cell(None), cell(0.1 + 0.2), cell(3.0), cell(True), cell([1, 2])
        ('NULL', '0.30000000000000004', '3.0', 'true', '[1, 2]')
        >>> cell(["a", "b,c", "", "NULL", None])
        "[a, 'b,c', '', 'NULL', NULL]"
    """
    if value is None:
        return NULL
    if isinstance(value, list | tuple | dict):
        return _nested(value, arrow_type)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, datetime | time):
        text = value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
        text = _FRACTION_ZEROS.sub(r"\1", text)
        return _OFFSET_HOUR.sub(r"\1", text)  # +00:00 as DuckDB writes it: +00
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")  # str() writes 1E-9
    if isinstance(value, bytes):
        return _blob(value)
    return str(value)


#: Characters that make DuckDB quote a value's text inside a list, struct or map.
_QUOTE_CHARS = frozenset("\"'(),:=[]{}\\")
_SPACES = " \t\n\v\f\r"


def _nested(value: object, arrow_type: pa.DataType | None) -> str:
    """A value inside a list, struct or map, as DuckDB writes it there: NULL spelled out,
    scalars quoted where their text would be ambiguous (see :func:`_inner`)."""
    if value is None:
        return NULL
    if isinstance(value, MapPairs):  # a map whose keys are nested: {[1]=2}
        key_t, item_t = (arrow_type.key_type, arrow_type.item_type) if arrow_type else (None, None)
        return "{" + ", ".join(f"{_nested(k, key_t)}={_nested(v, item_t)}" for k, v in value) + "}"
    if isinstance(value, dict):
        if arrow_type is not None and pa.types.is_map(arrow_type):
            key_t, item_t = arrow_type.key_type, arrow_type.item_type
            return (
                "{"
                + ", ".join(f"{_nested(k, key_t)}={_nested(v, item_t)}" for k, v in value.items())
                + "}"
            )
        types = _member_types(arrow_type)
        return (
            "{"
            + ", ".join(
                f"{_quoted(str(k))}: {_nested(v, types.get(str(k)))}" for k, v in value.items()
            )
            + "}"
        )
    if isinstance(value, tuple) and arrow_type is not None and pa.types.is_struct(arrow_type):
        # an unnamed struct (row(1, 'a')), as DuckDB writes it: (1, a), and (1,) for one member
        items = [_nested(v, f.type) for v, f in zip(value, arrow_type, strict=True)]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, list | tuple):
        inner = _value_type(arrow_type)
        return "[" + ", ".join(_nested(v, inner) for v in value) + "]"
    return _inner(cell(value))


def _inner(text: str) -> str:
    """A scalar's text inside a nested value: quoted (``'`` and ``\\`` escaped with ``\\``)
    when it is empty, starts or ends with white space, reads ``null`` in any case, or holds
    a character of ``"'(),:=[]{}\\``, as DuckDB's cast to VARCHAR does.

    Example:
        >>> _inner("a b"), _inner(" a"), _inner("it's"), _inner("null"), _inner("12:00:00")
        ('a b', "' a'", "'it\\\\'s'", "'null'", "'12:00:00'")
    """
    plain = (
        text != ""
        and text[0] not in _SPACES
        and text[-1] not in _SPACES
        and text.lower() != "null"
        and not any(c in _QUOTE_CHARS for c in text)
    )
    return text if plain else _quoted(text)


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _value_type(arrow_type: pa.DataType | None) -> pa.DataType | None:
    if arrow_type is not None and (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
    ):
        return arrow_type.value_type
    return None


def _member_types(arrow_type: pa.DataType | None) -> dict[str, pa.DataType]:
    if arrow_type is None or not pa.types.is_struct(arrow_type):
        return {}
    return {f.name: f.type for f in arrow_type}


def _blob(value: bytes) -> str:
    """A BLOB as DuckDB prints it: printable ASCII as is, other bytes (and the backslash and
    both quotes) as ``\\xHH``.

    Example:
        >>> print(_blob(b"\\xaa\\x00b'"))
        \\xAA\\x00b\\x27
    """
    plain = range(32, 127)
    return "".join(
        chr(b) if b in plain and b not in _BLOB_ESCAPED else f"\\x{b:02X}" for b in value
    )


_BLOB_ESCAPED = frozenset(b"\\'\"")


#: Characters that would break a table's line or alignment: C0 and C1 controls (newline, tab,
#: carriage return, escape...), the line and paragraph separators, and the bidirectional
#: controls (which reorder the rest of the line on a terminal).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def display(text: str, *, name: bool = False) -> str:
    r"""``text`` (a cell's, a column name) as the table and line modes show it: on one line, so
    that it cannot break a row or the alignment, and unambiguously.

    Text shows as it is, unless it would be unclear: it holds a character of :data:`_UNSAFE`,
    starts or ends with a space (the padding would hide it), reads ``NULL`` in any case (the
    NULL cell reads so; not for a column ``name``, which is never NULL), or starts with ``E'``.
    (The empty string is an empty cell: NULL is never one.) Then it shows as a DuckDB escape
    string literal, ``E'...'``, with ``\\``, ``\'``, ``\n``, ``\t``, ``\r`` and other such
    characters as the ``\xHH`` escapes of their UTF-8 bytes: the literal reads back as the
    same text in a query (a NUL byte excepted: DuckDB takes none in a literal).

    Example:
        >>> display("loss"), display("a\nb\tc"), display("it's\n"), display("")
        ('loss', "E'a\\nb\\tc'", "E'it\\'s\\n'", '')
        >>> display("NULL"), display(" x"), display("E'x'"), display("C:\\dir")
        ("E'NULL'", "E' x'", "E'E\\'x\\''", 'C:\\dir')
    """
    plain = text == "" or (
        text[0] != " "
        and text[-1] != " "
        and (name or text.upper() != NULL)
        and not text.startswith("E'")
        and _UNSAFE.search(text) is None
    )
    if plain:
        return text
    out = []
    for ch in text:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif _UNSAFE.match(ch):
            out.append("".join(f"\\x{b:02X}" for b in ch.encode()))
        else:
            out.append(ch)
    return "E'" + "".join(out) + "'"


def display_width(text: str) -> int:
    """How many terminal columns ``text`` takes (wide East Asian characters two, combining
    marks none), for text :func:`display` made safe.

    Example:
        >>> display_width("abc"), display_width("日本"), display_width("e\u0301")
        (3, 4, 1)
    """
    width = wcswidth(text)
    return width if width >= 0 else len(text)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def _text_columns(table: pa.Table) -> list[list[object]]:
    """The columns' values for display: exact (big integers, DuckDB's text of intervals,
    nanosecond timestamps, infinite dates...), see :mod:`florsql.engine.pyvalues`."""
    return python_columns(table, text=True)


def _numeric(field: pa.Field) -> bool:
    t = field.type
    if (field.metadata or {}).get(TYPE_KEY) == b"BIGNUM":
        return True
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _count(n: int) -> str:
    return f"({n:,} row{'s' if n != 1 else ''})"


def render_table(table: pa.Table, limit: int | None = 100) -> str:
    """An aligned table of the first ``limit`` rows and a count line.

    Example:
        >>> print(render_table(pa.table({"run_id": ["a", "bb"], "loss": [0.5, None]})))
        run_id  loss
        ------  ----
        a        0.5
        bb      NULL
        (2 rows)
    """
    shown = table if limit is None else table.slice(0, limit)
    names = [display(n, name=True) for n in table.column_names]
    columns = [
        [NULL if v is None else display(cell(v, f.type)) for v in values]
        for values, f in zip(_text_columns(shown), shown.schema, strict=True)
    ]
    widths = [
        max([display_width(n), *map(display_width, col)])
        for n, col in zip(names, columns, strict=True)
    ]
    right = [_numeric(f) for f in table.schema]
    heads = [_pad(n, w, num) for n, w, num in zip(names, widths, right, strict=True)]
    lines = ["  ".join(heads).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in range(shown.num_rows):
        parts = [_pad(col[r], w, num) for col, w, num in zip(columns, widths, right, strict=True)]
        lines.append("  ".join(parts).rstrip())
    footer = _count(table.num_rows)
    if shown.num_rows < table.num_rows:
        footer = f"({table.num_rows:,} rows, first {shown.num_rows:,} shown; .mode csv for all)"
    return "\n".join([*lines, footer])


def render_csv(table: pa.Table) -> str:
    """Every row as CSV with a header, as DuckDB's ``COPY ... TO 'x.csv'`` writes it: NULL is
    an empty field, the empty string a quoted one (``""``), so a reader tells them apart.

    Example:
        >>> print(render_csv(pa.table({"s": ["", None, "a,b"], "n": [1, None, 2]})))
        s,n
        "",1
        ,
        "a,b",2
    """
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(table.column_names)
    line = io.StringIO()  # one line at a time (reading back all of `out` per line: n**2)
    writer = csv.writer(line, lineterminator="\n")
    for batch in table.to_batches(max_chunksize=10_000):
        columns = _text_columns(pa.Table.from_batches([batch]))
        types = [f.type for f in batch.schema]
        for row in zip(*columns, strict=True):
            texts = [None if v is None else cell(v, t) for v, t in zip(row, types, strict=True)]
            out.write(_csv_line(writer, line, texts))
    return out.getvalue().rstrip("\n")


_EMPTY = "\x00florsql-empty\x00"  # stands for an empty string while the csv module writes


def _csv_line(writer: Any, line: io.StringIO, texts: list[str | None]) -> str:
    """One CSV line, through ``writer``, which writes into ``line`` (emptied here): the csv
    module writes '' and None alike, so an empty string is written as a placeholder and turned
    into ``""`` (NULL stays an empty field). Before s36 the line was read back from the whole
    output: 30,000 rows took 5.6 s, 300,000 minutes."""
    writer.writerow([_EMPTY if t == "" else ("" if t is None else t) for t in texts])
    text = line.getvalue()
    line.seek(0)
    line.truncate()
    return text.replace(_EMPTY, '""')


def _json(value: object) -> str:
    """One value as JSON text. Integers and decimals keep every digit (a DECIMAL is a JSON
    number written exactly, never a float); NaN and infinities, which JSON lacks, are null."""
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value)
    if isinstance(value, float):
        return json.dumps(value) if math.isfinite(value) else "null"
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else "null"
    if isinstance(value, datetime | date | time):
        return json.dumps(value.isoformat())
    if isinstance(value, bytes):
        return json.dumps(value.hex())
    if isinstance(value, MapPairs):  # keys as DuckDB's text of them, as to_json writes them
        pairs = [f"{json.dumps(cell(k, value.key_type))}: {_json(v)}" for k, v in value]
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_json(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def render_json(table: pa.Table) -> str:
    """Every row as a JSON object, one per line, inside a JSON array. Columns that share a name
    (a self-join's ``a.epoch, b.epoch``) get the names DuckDB's own JSON export gives them
    (:func:`unique_names`), so none is lost.

    Example:
        >>> print(render_json(pa.table({"x": pa.array([Decimal("0.10")], pa.decimal128(3, 2))})))
        [
        {"x": 0.10}
        ]
    """
    columns = _text_columns(table)
    names = unique_names(table.column_names)
    rows = [_json(dict(zip(names, row, strict=True))) for row in zip(*columns, strict=True)]
    return "[\n" + ",\n".join(rows) + "\n]" if rows else "[]"


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique as DuckDB makes them for a JSON or CSV export: a name seen
    before (in any case) gets ``_1``, ``_2``... (the first suffix not taken).

    Example:
        >>> unique_names(["a", "a", "A", "a_1", "b"])
        ['a', 'a_1', 'A_2', 'a_1_1', 'b']
    """
    seen: set[str] = set()
    counts: dict[str, int] = {}
    out = []
    for name in names:
        key = fold(name)
        if key in seen:
            n = counts.get(key, 0) + 1
            while f"{key}_{n}" in seen:
                n += 1
            counts[key] = n
            name = f"{name}_{n}"
        seen.add(fold(name))
        out.append(name)
    return out


def render_lines(table: pa.Table, limit: int | None = 100) -> str:
    """One ``column = value`` line per field, a blank line between rows, and the count."""
    shown = table if limit is None else table.slice(0, limit)
    names = [display(n, name=True) for n in table.column_names]
    width = max(map(display_width, names), default=0)
    types = [f.type for f in shown.schema]
    blocks = [
        "\n".join(
            f"{_pad(k, width, True)} = {NULL if v is None else display(cell(v, t))}"
            for k, v, t in zip(names, row, types, strict=True)
        )
        for row in zip(*_text_columns(shown), strict=True)
    ]
    return "\n\n".join([*blocks, _count(table.num_rows)])


def render(table: pa.Table, mode: str, limit: int | None = 100) -> str:
    """``table`` in one of the REPL's modes (``table``, ``csv``, ``json``, ``line``)."""
    if mode == "csv":
        return render_csv(table)
    if mode == "json":
        return render_json(table)
    if mode == "line":
        return render_lines(table, limit)
    return render_table(table, limit)


def render_outcome(outcome: Outcome, mode: str, limit: int | None = 100) -> str | None:
    """What a statement's :class:`Outcome` prints in ``mode`` (None: nothing): its text, then
    its table. An EXPLAIN's plan is its lines in the table and line modes, a ``plan`` column
    in csv and json."""
    pieces = [outcome.text] if outcome.text else []
    if outcome.table is not None and outcome.plan and mode in ("table", "line"):
        pieces.extend(str(line) for line in outcome.table.column(0).to_pylist())
    elif outcome.table is not None:
        pieces.append(render(outcome.table, mode, limit))
    return "\n".join(pieces) if pieces else None


# -- replay progress and confirmation ---------------------------------------------------------


def duration(seconds: float | None) -> str:
    """A short human duration.

    Example:
        >>> duration(0.25), duration(42), duration(3725), duration(None)
        ('0.2s', '42s', '1h02m', '?')
    """
    if seconds is None:
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def progress_line(p: ReplayProgress, width: int = 24) -> str:
    """One line: a bar over iterations (tasks when no iteration is known), counts and ETA.

    Example:
        >>> from types import SimpleNamespace as P
        >>> progress_line(P(tasks_done=1, tasks_total=4, iterations_done=30, iterations_total=120,
        ...                 elapsed=5.0, eta=15.0), width=8)
        'replaying [##......] 1/4 tasks, 30/120 iterations, 5.0s elapsed, 15s left'
    """
    done, total = p.iterations_done, p.iterations_total
    if total <= 0:
        done, total = p.tasks_done, max(p.tasks_total, 1)
    filled = min(width, round(width * done / total))
    bar = "#" * filled + "." * (width - filled)
    counts = f"{p.tasks_done}/{p.tasks_total} tasks"
    if p.iterations_total > 0:
        counts += f", {p.iterations_done}/{p.iterations_total} iterations"
    return f"replaying [{bar}] {counts}, {duration(p.elapsed)} elapsed, {duration(p.eta)} left"


def confirm_text(estimate: ReplayEstimate) -> str:
    """The plan and the question asked before a long replay."""
    tasks = f" in {estimate.tasks} tasks" if estimate.tasks else ""
    return (
        f"{estimate.plan.rstrip()}\n"
        f"This query replays old runs{tasks}, estimated {duration(estimate.seconds)}. "
        "Run it? [y/N] "
    )
