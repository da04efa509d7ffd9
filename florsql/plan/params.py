"""Parameters: each ``?`` takes the value at its place in the query *text*, as an exact literal.

The values are written into the tree before planning, so a parameter restricts the replay set
as a literal would. Placeholders are matched to values by where they start in the text (the
parser records it), not by tree order: sqlglot keeps ``LIMIT`` before ``WHERE`` and a ``WITH``
after the body, and a DB-API client counts ``?`` left to right.

Each value becomes a literal of its own SQL type, never rounded and never re-read as something
else: a Python ``float`` (and ``numpy.float64``) is a ``DOUBLE`` (NaN and the infinities
included), ``numpy.float32``/``float16`` a ``FLOAT``, an ``int`` of the type DuckDB's Python API
binds it as (``INTEGER``, ``BIGINT``, ``UBIGINT``, ``HUGEINT``: the first that holds it; always
written with its type: a bare integer literal is narrowed by DuckDB to the other operand's type,
so ``20::TINYINT * ?`` bound to 10 overflowed a TINYINT where DuckDB given the parameter answers
the INTEGER 200) and numpy integers of their own width (``int64`` is ``BIGINT``, ``uint8``
``UTINYINT``...), ``bool`` (and ``numpy.bool_``) a ``BOOLEAN``, ``Decimal`` a ``DECIMAL`` of its
own digits (NaN and the infinities a ``FLOAT``), ``str`` a ``VARCHAR``, ``bytes`` a ``BLOB``,
``datetime``/``date``/``time`` a ``TIMESTAMP`` (``TIMESTAMPTZ`` when aware)/``DATE``/``TIME``
(``TIMETZ`` when aware: its fixed offset; a zone without one is refused), ``timedelta`` an
``INTERVAL``, ``uuid.UUID`` a ``UUID``, ``None`` a ``NULL``; lists and tuples become lists, of
the element type DuckDB's Python API gives them (``(1, 'a')`` is the ``VARCHAR[]`` ``['1',
'a']``; a list DuckDB cannot type is refused with its message).
"""

from __future__ import annotations

import datetime
import decimal
import functools
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlglot import exp
from sqlglot.expressions import apply_index_offset

from florsql.errors import PlanError
from florsql.grammar.safety import PLUS_PARAMETER, item_clause
from florsql.plan.state import PlanState

if TYPE_CHECKING:
    import duckdb

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
    bound: list[tuple[exp.Expr, exp.Expr]] = []
    for hole, literal, value in zip(holes, literals, state.params, strict=True):
        if isinstance(value, str) and item_clause(hole, (exp.Paren, exp.Neg)):
            # `ORDER BY -?`: a constant to DuckDB given the parameter; a string literal there
            # would be a column's name (an integer is a typed constant already: `ORDER BY -?`
            # bound to -1 was `- -1`, which DuckDB folds into the position 1)
            literal = _typed(str.__str__(value), "VARCHAR")
        if hole.find_ancestor(exp.TableSample) is not None and _typed_integer(literal):
            # a sample's size and seed are literals in DuckDB's grammar (no CAST there; DuckDB
            # takes no parameter there either): the integer as written
            literal = exp.Literal.number(literal.this.name)
        if (hole.meta or {}).get(PLUS_PARAMETER):
            # `+?`: sqlglot dropped the plus, which DuckDB applies (`+?` of 'x' is refused, of
            # NULL a constant where a bare NULL in ORDER BY is refused): written as its function
            literal = exp.Anonymous(this=exp.to_identifier("+", quoted=True), expressions=[literal])
        if hole is state.tree:
            state.tree = literal
        else:
            bound.append((hole, literal))
    _replace_all(bound)
    for bracket in brackets:  # ... and stored again as the parser stores it, values in
        for node in bracket.walk():
            node.type = None
        bracket.set("expressions", apply_index_offset(bracket.this, bracket.expressions, -1))


def _replace_all(pairs: list[tuple[exp.Expr, exp.Expr]]) -> None:
    """Replace each node by its new one. Those held in one list (the values of an ``IN (?, ?,
    ...)``) in one step: sqlglot's ``replace`` re-links the whole list each time, and 5,000
    parameters of one IN list took seconds to bind."""
    lists: dict[tuple[int, str], tuple[exp.Expr, str, dict[int, exp.Expr]]] = {}
    for old, new in pairs:
        parent, key, index = old.parent, old.arg_key, old.index
        held = parent.args.get(key) if parent is not None and key is not None else None
        if parent is not None and key is not None and index is not None and isinstance(held, list):
            lists.setdefault((id(parent), key), (parent, key, {}))[2][index] = new
        else:
            old.replace(new)
    for parent, key, by_index in lists.values():
        items = list(parent.args[key])
        for index, new in by_index.items():
            items[index] = new
        parent.set(key, items)


def _typed_integer(literal: exp.Expr) -> bool:
    """Whether ``literal`` is an integer written with its type, ``CAST('3' AS INT)``."""
    return (
        isinstance(literal, exp.Cast)
        and literal.to.is_type(*exp.DataType.INTEGER_TYPES)
        and isinstance(literal.this, exp.Literal)
        and literal.this.is_string
    )


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
        ('TRUE', "CAST('3' AS INT)")
        >>> sql_literal((1, "a")).sql(dialect="duckdb")
        "CAST([CAST(CAST('1' AS INT) AS TEXT), CAST('a' AS TEXT)] AS TEXT[])"
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
        ints = _int_list_type(value)
        if ints is not None:  # one CAST, not one per value (20,000 of them took seconds)
            items = [exp.Null() if v is None else exp.Literal.number(int(v)) for v in value]
            return exp.Cast(
                this=exp.Array(expressions=items),
                to=exp.DataType.build(ints + "[]", dialect="duckdb"),
            )
        kinds = _leaf_kinds(value)
        if _TEXT in kinds and len(kinds) > 1:
            return _mixed_list(value)
        return exp.Array(expressions=[sql_literal(v) for v in value])
    raise TypeError(f"cannot bind a value of type {type(value).__name__}")


def _int_list_type(value: list[Any] | tuple[Any, ...]) -> str | None:
    """The type DuckDB's Python API gives the elements of a flat list of integers (and None):
    the widest of theirs, a HUGEINT where a UBIGINT meets a signed type; None for any other
    list."""
    kinds = set()
    for item in value:
        if item is None:
            continue
        if not isinstance(item, int) or isinstance(item, bool):
            return None
        if not -_HUGEINT <= item < _HUGEINT:
            return None  # the values' own literals say why it does not bind
        kinds.add(_int_type(int(item)))
    if not kinds:
        return None
    if kinds == {"UBIGINT"}:
        return "UBIGINT"
    for widest in ("HUGEINT", "UBIGINT", "BIGINT", "INTEGER"):
        if widest in kinds:
            return "HUGEINT" if widest == "UBIGINT" else widest
    return None


#: The kind of a ``str`` (:func:`_leaf_kinds`).
_TEXT = "builtins.str"


def _leaf_kinds(value: list[Any] | tuple[Any, ...]) -> set[str]:
    """The kinds of the values in a list and the lists in it (None left out). A list literal
    has the type DuckDB's Python API gives the list unless it mixes text with other kinds: a
    string literal takes the other values' type (``[1, 'a']`` reads 'a' as an INTEGER) where
    the API makes them all text. (Numbers of several types, integers apart, type alike.)"""
    kinds: set[str] = set()
    for item in value:
        if isinstance(item, list | tuple):
            kinds |= _leaf_kinds(item)
        elif item is not None and not _pandas_missing(item):
            plain = _plain(item)
            if isinstance(plain, TypedValue):
                kinds.add(plain.sql_type)
            elif isinstance(plain, int) and not isinstance(plain, bool):
                kinds.add(_int_type(plain))
            else:
                kinds.add(f"{type(plain).__module__}.{type(plain).__qualname__}")
    return kinds


_TYPER_LOCK = threading.Lock()


@functools.cache
def _typer() -> duckdb.DuckDBPyConnection:
    import duckdb

    return duckdb.connect()


def _mixed_list(value: list[Any] | tuple[Any, ...]) -> exp.Expr:
    """A list whose values have several kinds, of the type DuckDB's Python API gives it (its
    values' common type: ``(1, 'a')`` is ``['1', 'a']``, a ``VARCHAR[]``), each value cast to
    it. Written as literals, ``[1, 'a']`` read 'a' as an INTEGER (an error), ``[1, '2']`` was
    ``[1, 2]`` where DuckDB given the parameter has ``['1', '2']`` (``x IN ?`` then fails to
    compare a number with text), silently.

    Raises:
        ValueError: a list DuckDB cannot type (``['a', [1]]``), with DuckDB's reason.
    """
    import duckdb

    if any(isinstance(item, TypedValue) for item in _leaves(value)):
        raise ValueError("a list mixes values of several types; bind values of one type")
    with _TYPER_LOCK:
        try:
            row = _typer().execute("SELECT typeof($1)", [list(value)]).fetchone()
        except duckdb.Error as e:
            reason = str(e).split("\n", 1)[0]
            raise ValueError(f"DuckDB cannot type this list ({reason})") from None
    assert row is not None
    return _cast_items(value, exp.DataType.build(row[0], dialect="duckdb"))


def _leaves(value: list[Any] | tuple[Any, ...]) -> Iterator[Any]:
    for item in value:
        if isinstance(item, list | tuple):
            yield from _leaves(item)
        else:
            yield item


def _cast_items(value: Any, sql_type: exp.DataType) -> exp.Expr:
    """``value`` cast to ``sql_type``: a list's values each to its element type, as DuckDB's
    Python API converts them."""
    if isinstance(value, list | tuple):
        if not sql_type.is_type(exp.DataType.Type.ARRAY, exp.DataType.Type.LIST):
            raise ValueError(f"a list where DuckDB types a {sql_type.sql(dialect='duckdb')}")
        element = sql_type.expressions[0]
        items = [_cast_items(item, element) for item in value]
        return exp.Cast(this=exp.Array(expressions=items), to=sql_type.copy())
    return exp.Cast(this=sql_literal(value), to=sql_type.copy())


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
    # Typed, never a bare literal: DuckDB narrows an integer literal to the other operand's type
    # (`20::TINYINT * 10` is a TINYINT product, which overflows), and reads -2147483648 as the
    # negation of a BIGINT and 2**63 as a HUGEINT, where its Python API binds the parameter as an
    # INTEGER, a UBIGINT... (`20::TINYINT * ?` is 200, `bit_count(?)`, `~?` answer otherwise).
    return _typed(str(value), _int_type(value))


def _decimal(value: decimal.Decimal) -> exp.Expr:
    """A ``DECIMAL(p, s)`` of the value's own digits, as DuckDB's Python API types it
    (``Decimal('1')`` is ``DECIMAL(1,0)``, ``Decimal('0.05')`` ``DECIMAL(3,2)``); past 38 digits,
    where no DECIMAL holds it, the exact numeric literal.

    Example:
        >>> [_decimal(decimal.Decimal(t)).sql(dialect="duckdb") for t in ("1E+2", "-0.05")]
        ["CAST('100' AS DECIMAL(3, 0))", "CAST('-0.05' AS DECIMAL(3, 2))"]
    """
    if not value.is_finite():  # a FLOAT, as DuckDB's Python API binds it (a signaling NaN fails)
        if value.is_snan():
            raise ValueError("a signaling NaN (Decimal('sNaN')) has no SQL value")
        return _typed(str(float(value)), "FLOAT")
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
    if getattr(value, "ndim", 0) >= 1:  # an array: a list, as DuckDB binds it (before s37
        # refused, "only 0-dimensional arrays can be converted to Python scalars")
        return sql_literal(value.tolist())
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
