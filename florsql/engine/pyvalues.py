"""Python values of an exact result (see :mod:`florsql.engine.exact`): the values DuckDB's own
Python API returns, wherever that value is exact; text where it is not and text is asked for;
else an error rather than a wrong value.

Two uses: the DB-API hands out ``python_columns(table)``; the shell and ``florsql query`` print
``python_columns(table, text=True)``. The differences from ``pyarrow``'s ``to_pylist``:

- ``HUGEINT``, ``UHUGEINT`` and ``BIGNUM`` are ``int``; ``UUID`` is ``uuid.UUID``; ``TIME WITH
  TIME ZONE`` is a ``datetime.time`` with its offset; a ``MAP`` is a ``dict`` (one whose keys
  are nested, ``{'key': [...], 'value': [...]}``; in text, :class:`MapPairs`); an ``ARRAY`` and
  an unnamed struct (``TUPLE``: ``row(1, 'a')``) a ``tuple`` (all as DuckDB's API gives them).
- ``TIME '24:00:00'`` is the string ``'24:00:00'`` (DuckDB's API), not midnight.
- ``infinity``/``-infinity`` dates and timestamps are ``date.max``/``date.min`` (and the
  ``datetime`` ones), as DuckDB's API gives them; in text, ``infinity``/``-infinity``. A date or
  timestamp Python cannot hold (year past 9999, BC) is DuckDB's text, as in DuckDB's API.
- An ``INTERVAL`` is a ``timedelta`` when it has no months; one with months has no exact
  ``timedelta`` (DuckDB's API counts a month as 30 days), so the DB-API raises
  :class:`InexactValueError` for it, and text shows DuckDB's text (``1 year 2 months 3 days``).
- A ``TIMESTAMP_NS`` with digits below the microsecond has no exact ``datetime`` (DuckDB's API
  drops them): :class:`InexactValueError`; text shows all nine digits.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import duckdb
import pyarrow as pa
from duckdb.sqltypes import DuckDBPyType

from florsql.engine.exact import TYPE_KEY, children, members, parse_type
from florsql.errors import SqlError

__all__ = ["InexactValueError", "MapPairs", "interval_text", "python_columns"]

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DATE = dt.date(1970, 1, 1)
_DATE_INF = 2**31 - 1
_TS_INF = 2**63 - 1
_DAY_US = 86_400_000_000
_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_TIMESTAMPS = ("timestamp", "timestamp with time zone", "timestamp_s", "timestamp_ms")
_NESTED = ("list", "array", "map", "struct", "union", "tuple")
#: Map keys that make DuckDB's API answer {'key': [...], 'value': [...]} (a union's is a dict)
_NESTED_KEYS = ("list", "array", "map", "struct", "tuple")
_SPECIAL = frozenset(
    {"bignum", "hugeint", "uhugeint", "uuid", "time with time zone", "time", "date",
     "interval", "timestamp_ns", "map", "array", "tuple", "variant", "float", *_TIMESTAMPS}
)  # fmt: skip


class MapPairs(list[tuple[Any, Any]]):
    """In text (``python_columns(..., text=True)``), a ``MAP`` whose keys are lists, structs or
    other nested values: its (key, value) pairs, which a ``dict`` cannot hold. Without text
    such a map is ``{'key': [...], 'value': [...]}``, as DuckDB's API gives it (before s36 both
    failed with ``TypeError: unhashable type: 'list'``: ``SELECT histogram([1, 2])``).
    ``key_type`` is the keys' Arrow type (to write them as DuckDB does: ``(1, a)``)."""

    def __init__(self, pairs: Iterable[tuple[Any, Any]], key_type: pa.DataType) -> None:
        super().__init__(pairs)
        self.key_type = key_type


class InexactValueError(SqlError):
    """A value has no exact Python form (an INTERVAL with months, a nanosecond timestamp)."""


@functools.lru_cache(maxsize=256)
def _parse(name: str) -> DuckDBPyType:
    return parse_type(name)


def _special(t: DuckDBPyType) -> bool:
    return t.id in _SPECIAL or any(_special(c) for c in children(t))


def python_columns(table: pa.Table, *, text: bool = False) -> list[list[Any]]:
    """Each column of ``table`` as a list of Python values (see the module).

    Columns without the DuckDB type in their metadata (tables florsql built itself) convert
    as ``to_pylist`` does.
    """
    out = []
    for field, column in zip(table.schema, table.columns, strict=True):
        name = (field.metadata or {}).get(TYPE_KEY)
        t = _parse(name.decode()) if name else None
        if t is None or not _special(t):
            out.append(column.to_pylist())
        else:
            out.append(_values(column.combine_chunks(), t, text))
    return out


def _values(arr: pa.Array, t: DuckDBPyType, text: bool) -> list[Any]:
    if not _special(t):
        return arr.to_pylist()
    if t.id in _NESTED:
        return _nested(arr, t, text)
    if t.id == "variant":
        return _variant(arr, text)
    if pa.types.is_string(arr.type) and t.id in ("hugeint", "uhugeint"):
        arr = arr.cast(pa.decimal256(39, 0))  # inside a union, these stay text
    convert = _LEAVES[t.id]
    return convert(arr, t, text)


_VARIANT = {b"ARROW:extension:name": b"arrow.parquet.variant", b"ARROW:extension:metadata": b""}


def _variant(arr: pa.Array, text: bool) -> list[Any]:
    """A ``VARIANT`` column (Arrow's ``arrow.parquet.variant``: binary metadata and value), read
    back by DuckDB: the values its API gives (``'abc'``, ``[1, 2]``, ``Decimal('2.5')``), or its
    text. Before s36 each was a dict of the encoded bytes (``{'metadata': b'...', 'value':
    b'...'}``)."""
    table = pa.Table.from_arrays([arr], schema=pa.schema([pa.field("v", arr.type, True, _VARIANT)]))
    with duckdb.connect() as db:
        db.register("variants", table)
        read = "SELECT v::VARCHAR FROM variants" if text else "SELECT v FROM variants"
        return [v for (v,) in db.execute(read).fetchall()]


def _nested(arr: pa.Array, t: DuckDBPyType, text: bool) -> list[Any]:
    kids = children(t)
    valid = arr.is_valid().to_pylist()
    if t.id in ("struct", "tuple"):
        fields = [_values(f, k, text) for f, k in zip(arr.flatten(), kids, strict=True)]
        if t.id == "tuple":  # an unnamed struct (row(1, 'a')): a tuple, as in DuckDB's API
            members_ = zip(*fields, strict=True)
            return [tuple(v) if ok else None for v, ok in zip(members_, valid, strict=True)]
        names = [n for n, _ in members(t)]
        rows = [dict(zip(names, vals, strict=True)) for vals in zip(*fields, strict=True)]
        return [r if ok else None for r, ok in zip(rows, valid, strict=True)]
    if t.id == "union":
        return _union(arr, kids, text)
    if t.id == "array":
        size = arr.type.list_size
        flat = _values(arr.values.slice(arr.offset * size, len(arr) * size), kids[0], text)
        return [
            tuple(flat[i * size : (i + 1) * size]) if ok else None for i, ok in enumerate(valid)
        ]
    offsets = arr.offsets.to_pylist()  # into the whole child, also for a slice
    first, last = (offsets[0], offsets[-1]) if offsets else (0, 0)
    spans = [(a - first, b - first) for a, b in itertools.pairwise(offsets)]
    if t.id == "map":
        keys = _values(arr.keys.slice(first, last - first), kids[0], text)
        items = _values(arr.items.slice(first, last - first), kids[1], text)
        if kids[0].id in _NESTED_KEYS:  # keys a dict cannot hold (lists, structs): MapPairs
            if text:
                return [
                    MapPairs(zip(keys[a:b], items[a:b], strict=True), arr.type.key_type)
                    if ok
                    else None
                    for (a, b), ok in zip(spans, valid, strict=True)
                ]
            return [
                {"key": keys[a:b], "value": items[a:b]} if ok else None
                for (a, b), ok in zip(spans, valid, strict=True)
            ]
        return [
            dict(zip(keys[a:b], items[a:b], strict=True)) if ok else None
            for (a, b), ok in zip(spans, valid, strict=True)
        ]
    values = _values(arr.values.slice(first, last - first), kids[0], text)
    return [values[a:b] if ok else None for (a, b), ok in zip(spans, valid, strict=True)]


def _union(arr: pa.Array, kids: list[DuckDBPyType], text: bool) -> list[Any]:
    """Each row's value from its member's child array, converted a child at a time (no
    ``pa.array`` of Python objects: that imports pandas where it is installed)."""
    import numpy as np

    position = {code: i for i, code in enumerate(arr.type.type_codes)}
    # From the buffers: pyarrow's type_codes and offsets properties ignore a slice's offset.
    span = slice(arr.offset, arr.offset + len(arr))
    buffers = arr.buffers()
    codes = np.frombuffer(buffers[1], dtype=np.int8)[span].tolist()
    if arr.type.mode == "dense":
        offsets = np.frombuffer(buffers[2], dtype=np.int32)[span].tolist()
    else:
        offsets = list(range(len(arr)))  # field() of a sparse union is sliced already
    children = [_values(arr.field(i), kids[i], text) for i in range(arr.type.num_fields)]
    return [children[position[c]][o] for c, o in zip(codes, offsets, strict=True)]


# -- leaves -------------------------------------------------------------------------------------

Leaf = Callable[[pa.Array, DuckDBPyType, bool], list[Any]]


def _integer(arr: pa.Array, t: DuckDBPyType, text: bool) -> list[Any]:
    return [None if v is None else int(v) for v in arr.to_pylist()]


def _uuid(arr: pa.Array, t: DuckDBPyType, text: bool) -> list[Any]:
    values = arr.to_pylist()
    return values if text else [None if v is None else uuid.UUID(v) for v in values]


def _timetz(arr: pa.Array, t: DuckDBPyType, text: bool) -> list[Any]:
    values = arr.to_pylist()
    return values if text else [None if v is None else _parse_timetz(v) for v in values]


def _parse_timetz(v: str) -> dt.time | str:
    try:
        return dt.time.fromisoformat(v)
    except ValueError:  # 24:00:00+00, which DuckDB's API also returns as text
        return v


def _time(arr: pa.Array, t: DuckDBPyType, text: bool) -> list[Any]:
    import pyarrow.compute as pc  # 0.1 s to import: only where a TIME column comes back

    raw = arr.cast(pa.int64())
    if pc.max(raw).as_py() != _DAY_US:
        return arr.to_pylist()
    return [_clock(v) for v in raw.to_pylist()]


def _clock(micros: int | None) -> dt.time | str | None:
    if micros is None:
        return None
    if micros == _DAY_US:
        return "24:00:00"  # DuckDB's API returns it as text: datetime.time stops at 23:59
    return (_EPOCH + dt.timedelta(microseconds=micros)).time()


def _date(arr: pa.Array, t: DuckDBPyType, text: bool) -> list[Any]:
    try:
        return arr.to_pylist()
    except (OverflowError, ValueError):
        pass
    out: list[Any] = []
    for days in arr.cast(pa.int32()).to_pylist():
        if days is None:
            out.append(None)
        elif abs(days) == _DATE_INF:
            out.append(_infinity(days > 0, dt.date, text))
        else:
            try:
                out.append(_EPOCH_DATE + dt.timedelta(days=days))
            except OverflowError:
                out.append(_duck_text("(DATE '1970-01-01' + ?::INTEGER)::VARCHAR", days))
    return out


def _timestamp(arr: pa.Array, t: DuckDBPyType, text: bool) -> list[Any]:
    unit, tz = arr.type.unit, arr.type.tz
    if unit != "ns":
        try:
            return arr.to_pylist()
        except (OverflowError, ValueError):
            pass
    zone = dt.UTC if tz is None else _zone(tz)
    out: list[Any] = []
    for v in arr.cast(pa.int64()).to_pylist():
        if v is None:
            out.append(None)
        elif abs(v) == _TS_INF:
            out.append(_infinity(v > 0, dt.datetime, text))
        else:
            out.append(_one_timestamp(v * _UNIT_NS[unit], tz is not None, zone, text))
    return out


def _one_timestamp(ns: int, aware: bool, zone: dt.tzinfo, text: bool) -> Any:
    micros, rest = divmod(ns, 1000)
    try:
        value = _EPOCH + dt.timedelta(microseconds=micros)
    except OverflowError:
        sql = "make_timestamp(?::BIGINT)" + ("::TIMESTAMPTZ" if aware else "")
        return _duck_text(f"({sql})::VARCHAR", micros)
    if aware:
        value = value.replace(tzinfo=dt.UTC).astimezone(zone)
    if rest == 0:
        return value
    if text:
        base = value.isoformat(sep=" ", timespec="microseconds")
        cut = 26  # YYYY-MM-DD HH:MM:SS.ffffff
        return f"{base[:cut]}{rest:03d}{base[cut:]}"
    raise InexactValueError(
        f"the timestamp {value.isoformat(sep=' ')} has nanoseconds ({rest} past the "
        "microsecond), which a Python datetime cannot hold: use fetch_arrow_table() (exact, "
        "timestamp[ns]) or select it as VARCHAR or as epoch_ns(...)"
    )


def _interval(arr: pa.Array, t: DuckDBPyType, text: bool) -> list[Any]:
    out: list[Any] = []
    for v in arr.to_pylist():
        if v is None:
            out.append(None)
        elif text:
            out.append(interval_text(v.months, v.days, v.nanoseconds // 1000))
        elif v.months == 0:
            out.append(dt.timedelta(days=v.days, microseconds=v.nanoseconds // 1000))
        else:
            shown = interval_text(v.months, v.days, v.nanoseconds // 1000)
            raise InexactValueError(
                f"the INTERVAL '{shown}' has months, which a Python timedelta cannot hold "
                "exactly: use fetch_arrow_table() (exact, month_day_nano_interval) or select "
                "it as VARCHAR, or as a number with epoch(...) or datediff(...)"
            )
    return out


def interval_text(months: int, days: int, micros: int) -> str:
    """An interval as DuckDB prints it.

    Example:
        >>> interval_text(14, 3, 14_706_789_012), interval_text(-1, 5, 0), interval_text(0, 0, 0)
        ('1 year 2 months 3 days 04:05:06.789012', '-1 month 5 days', '00:00:00')
    """
    years, rest = int(months / 12), months - int(months / 12) * 12
    parts = [
        f"{n} {unit}{'' if abs(n) == 1 else 's'}"
        for n, unit in ((years, "year"), (rest, "month"), (days, "day"))
        if n
    ]
    if micros or not parts:
        sign = "-" if micros < 0 else ""
        seconds, frac = divmod(abs(micros), 1_000_000)
        clock = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        parts.append(clock + (f".{frac:06d}".rstrip("0") if frac else ""))
    return " ".join(parts)


def _infinity(positive: bool, kind: type[dt.date], text: bool) -> Any:
    if text:
        return "infinity" if positive else "-infinity"
    return kind.max if positive else kind.min


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> dt.tzinfo:
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


@functools.lru_cache(maxsize=1)
def _text_con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _duck_text(sql: str, value: int) -> str:
    """DuckDB's text of a date or timestamp Python cannot hold (DuckDB's API returns it so)."""
    row = _text_con().cursor().execute(f"SELECT {sql}", [value]).fetchone()
    return str(row[0]) if row else ""


def _float(arr: pa.Array, t: DuckDBPyType, text: bool) -> list[Any]:
    """A ``FLOAT``: the double holding its value; in text, the double of DuckDB's text of it,
    whose ``repr`` is that text (``0.1``, where the float32's double is 0.10000000149011612,
    which the shell and ``florsql query`` printed before s36)."""
    if not text:
        return arr.to_pylist()
    with duckdb.connect() as db:
        db.register("floats", pa.table({"v": arr}))
        return [None if v is None else float(v) for (v,) in db.execute(_FLOAT_TEXT).fetchall()]


_FLOAT_TEXT = "SELECT v::VARCHAR FROM floats"


_LEAVES: dict[str, Leaf] = {
    "float": _float,
    "bignum": _integer,
    "hugeint": _integer,
    "uhugeint": _integer,
    "uuid": _uuid,
    "time with time zone": _timetz,
    "time": _time,
    "date": _date,
    "interval": _interval,
    "timestamp_ns": _timestamp,
    **dict.fromkeys(_TIMESTAMPS, _timestamp),
}
