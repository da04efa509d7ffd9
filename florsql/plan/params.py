"""Parameters: each ``?`` takes the value at its place in the query *text*, as an exact literal.

The values are written into the tree before planning, so a parameter restricts the replay set
as a literal would. Placeholders are matched to values by where they start in the text (the
parser records it), not by tree order: sqlglot keeps ``LIMIT`` before ``WHERE`` and a ``WITH``
after the body, and a DB-API client counts ``?`` left to right.

Each value becomes a literal of its own SQL type, never rounded and never re-read as something
else: a Python ``float`` (and ``numpy.float64``) is a ``DOUBLE`` (NaN and the infinities
included), ``numpy.float32``/``float16`` a ``FLOAT``, an ``int`` of the type DuckDB's Python
API binds it as (``INTEGER``, ``BIGINT``, ``UBIGINT``, ``HUGEINT``: the first that holds it;
an integer literal where that is the literal's type) and numpy integers of their own width
(``int64`` is ``BIGINT``, ``uint8`` ``UTINYINT``...), ``bool`` (and ``numpy.bool_``) a
``BOOLEAN``, ``Decimal`` a ``DECIMAL`` of its own digits, ``str`` a ``VARCHAR``, ``bytes`` a
``BLOB``, ``datetime``/``date``/``time`` a ``TIMESTAMP`` (``TIMESTAMPTZ`` when aware)/``DATE``/
``TIME`` (``TIMETZ`` when aware: its fixed offset; a zone without one is refused),
``timedelta`` an ``INTERVAL``, ``uuid.UUID`` a ``UUID``, ``None`` a ``NULL``; lists and tuples
become lists.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.expressions import apply_index_offset

from florsql.errors import PlanError
from florsql.grammar.safety import item_clause
from florsql.plan.state import PlanState

__all__ = [
    "INT_TYPES",
    "TypedValue",
    "bind_parameters",
    "bound_key",
    "placeholders",
    "sql_literal",
]

#: Fixed-width integer type names (numpy's dtypes, Arrow's types) as the DuckDB types that hold
#: them.
INT_TYPES = {
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
}
_NUMPY_FLOATS = {"float16": "FLOAT", "float32": "FLOAT", "float64": "DOUBLE"}
_HUGEINT = 2**127
_INT_MIN = -(2**31)  # the one INTEGER whose literal is not one: -(2147483648), a BIGINT
_BIGINT_END = 2**63
_UBIGINT_END = 2**64
_DECIMAL_WIDTH = 38  # DuckDB's widest DECIMAL
_EPOCH = datetime.datetime(1970, 1, 1)


@dataclass(frozen=True)
class TypedValue:
    """A value as DuckDB's text of a SQL type: what a client sends that no Python value holds
    exactly (an Arrow interval with months, a timestamp with nanoseconds)."""

    text: str
    sql_type: str


def placeholders(tree: exp.Expr) -> list[exp.Placeholder]:
    """The unnamed ``?`` placeholders of ``tree``, in the order they appear in the text."""
    holes = [p for p in tree.find_all(exp.Placeholder) if p.this is None]
    return sorted(holes, key=lambda p: p.meta.get("start", 0) if p.meta else 0)


def bind_parameters(state: PlanState) -> None:
    """Rule: replace the ``?`` placeholders by the given values, in text order."""
    holes = placeholders(state.tree)
    if len(holes) != len(state.params):
        raise PlanError(
            f"the query has {len(holes)} parameter(s) (?), {len(state.params)} value(s) given",
            sql=state.source,
        )
    literals = []
    for number, value in enumerate(state.params, start=1):
        try:
            literals.append(sql_literal(value))
        except (TypeError, ValueError) as e:
            raise PlanError(f"parameter {number}: {e}", sql=state.source) from None
    brackets = _subscripts_over(holes)
    for bracket in reversed(brackets):  # each index as written, while the ? are still there
        bracket.set("expressions", apply_index_offset(bracket.this, bracket.expressions, 1))
    if brackets:  # that rewrite copies an index it changes (`?::INT`), ? included
        holes = placeholders(state.tree)
    for hole, literal, value in zip(holes, literals, state.params, strict=True):
        bare = isinstance(value, int | str) and not isinstance(value, bool)
        if bare and item_clause(hole, (exp.Paren, exp.Neg)):
            # `ORDER BY -?` bound to -1 was `ORDER BY - -1`, which DuckDB folds into the
            # position 1 (a constant to DuckDB given the parameter): a typed constant instead
            if isinstance(value, str):
                literal = _typed(str.__str__(value), "VARCHAR")
            else:
                literal = _typed(str(int(value)), _int_type(int(value)))
        if hole is state.tree:
            state.tree = literal
        else:
            hole.replace(literal)
    for bracket in brackets:  # ... and stored again as the parser stores it, values in
        for node in bracket.walk():
            node.type = None
        bracket.set("expressions", apply_index_offset(bracket.this, bracket.expressions, -1))


def bound_key(params: Sequence[Any]) -> tuple[str, ...] | None:
    """What ``params`` bind to: equal keys bind equal queries. A value's ``repr`` where that is
    all of its value (an ``int``, a ``str``, a naive ``datetime``...), else the SQL text of the
    literal it binds as.

    The key of the engine's plan cache. A value's ``repr`` is not one: a ``memoryview``'s, or a
    ``datetime``'s with a ``tzinfo`` of a class without its own ``repr``, names only where the
    object lies in memory, which the next value may reuse holding other bytes or another offset
    (the cached plan then answered the previous value, silently). None when a value does not
    bind (planning says why).

    Example:
        >>> bound_key([memoryview(b"a"), 0.1]) == bound_key([memoryview(b"b"), 0.1])
        False
    """
    try:
        return tuple(_key(value) for value in params)
    except (TypeError, ValueError):
        return None


#: Types whose ``repr`` is their value, all of it: the key of such a value is its repr (cheap;
#: writing a 10,000-value list as SQL takes half a second).
_REPR_EXACT: frozenset[type] = frozenset(
    {int, float, str, bool, bytes, type(None), decimal.Decimal, uuid.UUID, datetime.date,
     datetime.timedelta}
)  # fmt: skip


def _key(value: Any) -> str:
    kind = type(value)
    if kind in _REPR_EXACT:
        return f"{kind.__name__}:{value!r}"
    if kind in (datetime.datetime, datetime.time) and (
        value.tzinfo is None or type(value.tzinfo) is datetime.timezone
    ):
        return f"{kind.__name__}:{value!r}"
    if kind in (list, tuple):
        return "[" + ",".join(_key(v) for v in value) + "]"
    return "sql:" + sql_literal(value).sql(dialect="duckdb")


def _subscripts_over(holes: list[exp.Placeholder]) -> list[exp.Bracket]:
    """The subscripts ``x[i]`` with a ``?`` in ``x`` or ``i``, innermost first.

    sqlglot stores DuckDB's 1-based index 0-based when it parses ``x[i]`` with ``x`` a list or
    of unknown type and ``i`` an integer, and adds the 1 back when it writes the SQL, each time
    by the types it sees then. A ``?`` has no type at parse time and its value has one after:
    ``[10, 20][?]`` bound to 1 was written ``[10, 20][2]``, and ``?[1]`` bound to ``'xy'``
    ``'xy'[0]``. So such an index is taken back to the text's before binding and stored again
    once the values are in, as parsing the query with the values written in would store it.
    """
    found: dict[int, exp.Bracket] = {}
    for hole in holes:
        parent = hole.parent
        while parent is not None:
            if isinstance(parent, exp.Bracket) and not (
                parent.args.get("json_access") or parent.args.get("offset")
            ):
                found.setdefault(id(parent), parent)
            parent = parent.parent
    return sorted(found.values(), key=lambda b: -b.depth)


def sql_literal(value: Any) -> exp.Expr:
    """``value`` as a SQL literal of its exact type.

    Raises:
        TypeError: a value of a type florsql cannot bind.
        ValueError: an integer beyond the SQL integer types.

    Example:
        >>> sql_literal(0.1).sql(dialect="duckdb")
        "CAST('0.1' AS DOUBLE)"
        >>> sql_literal(float("nan")).sql(dialect="duckdb")
        "CAST('nan' AS DOUBLE)"
        >>> sql_literal(-float("inf")).sql(dialect="duckdb")
        "CAST('-inf' AS DOUBLE)"
        >>> sql_literal(True).sql(dialect="duckdb"), sql_literal(3).sql(dialect="duckdb")
        ('TRUE', '3')
    """
    numpy_type = _numpy_type(value)
    if numpy_type is not None:
        return numpy_type
    if value is None or _pandas_missing(value):
        return exp.Null()
    value = _plain(value)
    if isinstance(value, TypedValue):
        return _typed(value.text, value.sql_type)
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return _integer(value)
    if isinstance(value, float):
        return _typed(repr(value), "DOUBLE")
    if isinstance(value, decimal.Decimal):
        return _decimal(value)
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return exp.convert(bytes(value))
    if isinstance(value, datetime.timedelta):
        if getattr(value, "nanoseconds", 0):  # pandas.Timedelta
            raise ValueError(f"the interval {value} has nanoseconds; DuckDB's INTERVAL holds µs")
        micros = value.seconds * 1_000_000 + value.microseconds
        return _typed(f"{value.days} days {micros} microseconds", "INTERVAL")
    if isinstance(value, uuid.UUID):
        return _typed(str(value), "UUID")
    if isinstance(value, datetime.datetime) and getattr(value, "nanosecond", 0) != 0:
        if value.tzinfo is not None:  # pandas.Timestamp: DuckDB has no zoned nanoseconds
            raise ValueError(f"the timestamp {value} has nanoseconds and a time zone")
        return _typed(value.isoformat(sep=" ", timespec="nanoseconds"), "TIMESTAMP_NS")
    if isinstance(value, datetime.time) and value.tzinfo is not None:
        return _time_with_zone(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return exp.convert(value)
    if isinstance(value, list | tuple):
        return exp.Array(expressions=[sql_literal(v) for v in value])
    raise TypeError(f"cannot bind a value of type {type(value).__name__}")


def _plain(value: Any) -> Any:
    """A subclass of ``int``, ``float`` or ``str`` (an ``Enum`` mixing one in, ``StrEnum``...) as
    the plain value it holds, as DuckDB's Python API binds it. Its ``str``/``repr`` is its own:
    ``class Color(str, Enum)`` bound as the text ``'Color.RED'`` (not ``'red'``), silently;
    ``class Num(int, Enum)`` was written ``Num.ONE`` into the SQL (a table ``Num`` not found).

    Example:
        >>> import enum
        >>> class Color(str, enum.Enum):
        ...     RED = "red"
        >>> _plain(Color.RED), type(_plain(Color.RED)).__name__
        ('red', 'str')
    """
    kind = type(value)
    if kind in (int, float, str, bool):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    return value


def _pandas_missing(value: Any) -> bool:
    """``pandas.NaT`` and ``pandas.NA`` (without importing pandas): NULL, as DuckDB's Python API
    binds them. ``NaT`` is a ``datetime`` whose fields are NaN: it was written ``CAST('NaT' AS
    TIMESTAMP_NS)`` and failed "Could not convert string 'NaT' to INT64"; ``NA`` was refused."""
    kind = type(value)
    return kind.__module__.startswith("pandas") and kind.__name__ in ("NaTType", "NAType")


def _int_type(value: int) -> str:
    """The type DuckDB's Python API binds an integer as (INTEGER when it fits...)."""
    if -(2**31) <= value < 2**31:
        return "INTEGER"
    if -(2**63) <= value < 2**63:
        return "BIGINT"
    return "UBIGINT" if 0 <= value < 2**64 else "HUGEINT"


def _time_with_zone(value: datetime.time) -> exp.Expr:
    """An aware ``time`` as a ``TIME WITH TIME ZONE`` (DuckDB's Python API binds it so): sqlglot
    wrote ``CAST('01:02:03+05:00' AS TIME)``, which drops the offset, silently.

    Example:
        >>> tz = datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))
        >>> _time_with_zone(datetime.time(1, 2, 3, 7, tzinfo=tz)).sql(dialect="duckdb")
        "CAST('01:02:03.000007-05:30' AS TIMETZ)"
    """
    if value.utcoffset() is None:
        raise ValueError(
            f"the time {value} has a time zone ({value.tzinfo}) but no fixed offset: a time has"
            " no date to find it on; bind a datetime, or a time with datetime.timezone(offset)"
        )
    return _typed(value.isoformat(), "TIMETZ")


def _typed(text: str, sql_type: str) -> exp.Expr:
    return exp.cast(exp.Literal.string(text), sql_type, dialect="duckdb")


def _integer(value: int) -> exp.Expr:
    if not -_HUGEINT <= value < _HUGEINT:
        raise ValueError(
            f"the integer {value} is beyond SQL's integer types (HUGEINT holds up to 2**127 - 1);"
            " pass it as a float or a Decimal"
        )
    if value == _INT_MIN or _BIGINT_END <= value < _UBIGINT_END:
        # The literal -2147483648 is the negation of a BIGINT and 2**63 a HUGEINT, where DuckDB's
        # Python API binds an INTEGER and a UBIGINT (`bit_count(?)`, `~?` answer differently).
        return _typed(str(value), "INTEGER" if value == _INT_MIN else "UBIGINT")
    return exp.Literal.number(value)


def _decimal(value: decimal.Decimal) -> exp.Expr:
    """A ``DECIMAL(p, s)`` of the value's own digits, as DuckDB's Python API types it
    (``Decimal('1')`` is ``DECIMAL(1,0)``, ``Decimal('0.05')`` ``DECIMAL(3,2)``); past 38 digits,
    where no DECIMAL holds it, the exact numeric literal.

    Example:
        >>> [_decimal(decimal.Decimal(t)).sql(dialect="duckdb") for t in ("1E+2", "-0.05")]
        ["CAST('100' AS DECIMAL(3, 0))", "CAST('-0.05' AS DECIMAL(3, 2))"]
    """
    if not value.is_finite():
        return _typed(str(float(value)), "DOUBLE")
    text = format(value, "f")
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    scale = max(0, -exponent)
    width = len(digits) + max(0, exponent)
    width = scale + 1 if scale > len(digits) else max(width, scale)
    if width > _DECIMAL_WIDTH:
        return exp.Literal.number(text)
    return _typed(text, f"DECIMAL({width}, {scale})")


def _numpy_time(value: Any, name: str) -> exp.Expr:
    """A ``numpy.datetime64``/``timedelta64``: ``item()`` gives a plain integer for nanoseconds
    (and months or years of a timedelta), which would bind as a number."""
    unit = name.split("[", 1)[1].rstrip("]") if "[" in name else ""
    item = value.item()
    if item is None:  # NaT
        return exp.Null()
    if not isinstance(item, int):
        return sql_literal(item)  # a date, datetime or timedelta: exact
    if name.startswith("timedelta64") and unit in ("Y", "M"):
        return _typed(f"{item} {'years' if unit == 'Y' else 'months'}", "INTERVAL")
    if unit == "ns" and name.startswith("datetime64"):
        return _nanos_timestamp(item)
    if unit == "ns" and item % 1000 == 0:
        return _typed(f"{item // 1000} microseconds", "INTERVAL")
    raise ValueError(f"a numpy.{name} below the microsecond has no exact SQL value here")


def _nanos_timestamp(nanos: int) -> exp.Expr:
    """A naive timestamp given in nanoseconds since the epoch, as exact as DuckDB holds it."""
    micros, rest = divmod(nanos, 1000)
    when = _EPOCH + datetime.timedelta(microseconds=micros)
    if rest == 0:
        return exp.convert(when)
    return _typed(when.isoformat(sep=" ", timespec="microseconds") + f"{rest:03d}", "TIMESTAMP_NS")


def _numpy_type(value: Any) -> exp.Expr | None:
    """numpy scalars (without importing numpy): bound as their own SQL type."""
    kind = type(value)
    if not kind.__module__.startswith("numpy") or not hasattr(value, "item"):
        return None
    name = getattr(getattr(value, "dtype", None), "name", "")
    if name == "bool":
        return exp.Boolean(this=bool(value))
    if name in INT_TYPES:
        return _typed(str(int(value)), INT_TYPES[name])
    if name in _NUMPY_FLOATS:
        return _typed(repr(float(value)), _NUMPY_FLOATS[name])
    if name.startswith(("datetime64", "timedelta64")):
        return _numpy_time(value, name)
    item = value.item()
    if type(item) is kind:  # no Python equivalent (longdouble, complex...)
        raise TypeError(f"cannot bind a value of type numpy.{kind.__name__}")
    return sql_literal(item)
