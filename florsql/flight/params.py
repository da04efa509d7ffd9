"""Parameters over Flight SQL: the parameter schema of a prepared statement (one field per
``?``, typed from where it is used: compared with, or in a list or range against, a column of a
relation the statement reads; else Arrow's ``null`` type, any value), and the value a client
bound, read exactly from its Arrow type (:func:`parameter_value`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pyarrow as pa
from sqlglot import exp

from florsql.errors import PlanError
from florsql.fold import fold
from florsql.plan.params import INT_TYPES, TypedValue

__all__ = ["parameter_schema", "parameter_value"]

_NANOS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
#: Arrow's fixed-width numbers, as the DuckDB types that hold them: an ``int64`` parameter is a
#: ``BIGINT`` even when its value would fit an ``INTEGER`` literal (``? * ?`` must not overflow
#: where the client's own type does not).
_NUMBERS = {**INT_TYPES, "halffloat": "FLOAT", "float": "FLOAT"}
_EPOCH = dt.datetime(1970, 1, 1)


def parameter_value(scalar: pa.Scalar, number: int) -> object:
    """The value of one bound Arrow parameter, for :func:`florsql.plan.params.sql_literal`.

    ``as_py`` would lose what Python's types cannot hold: an interval (``month_day_nano``: a
    tuple, bound as a list), a timestamp's nanoseconds. Those become DuckDB text of their type;
    a value DuckDB cannot hold exactly (nanoseconds in an interval or a time) and a MAP or
    STRUCT (no literal form here) are refused with the parameter's number.

    Example:
        >>> parameter_value(pa.scalar((1, 2, 3000), pa.month_day_nano_interval()), 1)
        TypedValue(text='1 months 2 days 3 microseconds', sql_type='INTERVAL')
        >>> parameter_value(pa.scalar(1, pa.timestamp("ns")), 1)
        TypedValue(text='1970-01-01 00:00:00.000000001', sql_type='TIMESTAMP_NS')
        >>> parameter_value(pa.scalar(7, pa.int64()), 1)
        TypedValue(text='7', sql_type='BIGINT')
    """
    t = scalar.type
    if not scalar.is_valid:
        return None
    if pa.types.is_interval(t):
        months, days, nanos = scalar.as_py()
        return TypedValue(_interval_text(months, days, nanos, number), "INTERVAL")
    if pa.types.is_duration(t):
        nanos = scalar.cast(pa.int64()).as_py() * _NANOS[t.unit]
        return TypedValue(_interval_text(0, 0, nanos, number), "INTERVAL")
    if pa.types.is_timestamp(t) and t.unit == "ns":
        nanos = scalar.cast(pa.int64()).as_py()
        if nanos % 1000:
            if t.tz is not None:
                raise PlanError(_refusal(number, "a timestamp with time zone has nanoseconds"))
            micros, rest = divmod(nanos, 1000)
            when = _EPOCH + dt.timedelta(microseconds=micros)
            text = when.isoformat(sep=" ", timespec="microseconds") + f"{rest:03d}"
            return TypedValue(text, "TIMESTAMP_NS")
    if pa.types.is_time(t) and t.unit == "ns" and scalar.cast(pa.int64()).as_py() % 1000:
        raise PlanError(_refusal(number, "a time has nanoseconds (DuckDB's TIME holds µs)"))
    if pa.types.is_map(t) or pa.types.is_struct(t):
        kind = "MAP" if pa.types.is_map(t) else "STRUCT"
        raise PlanError(f"parameter {number}: a {kind} parameter is not supported; bind its "
                        "members as separate parameters")  # fmt: skip
    if isinstance(scalar, pa.ListScalar | pa.LargeListScalar | pa.FixedSizeListScalar):
        return [parameter_value(item, number) for item in scalar.values]
    if str(t) in _NUMBERS:
        return TypedValue(repr(scalar.as_py()), _NUMBERS[str(t)])
    return scalar.as_py()


def _interval_text(months: int, days: int, nanos: int, number: int) -> str:
    if nanos % 1000:
        raise PlanError(
            _refusal(number, "an interval has nanoseconds (DuckDB's INTERVAL holds µs)")
        )
    return f"{months} months {days} days {nanos // 1000} microseconds"


def _refusal(number: int, what: str) -> str:
    return f"parameter {number}: {what}, which florsql cannot bind exactly"


_BETWEEN_OR_IN = (exp.Between, exp.In)


def parameter_schema(tree: exp.Expr, schemas: Mapping[str, pa.Schema]) -> pa.Schema:
    """Fields ``parameter_1``... for the ``?`` placeholders of ``tree``, in text order.

    Example:
        >>> from florsql.grammar import parse
        >>> q = parse("SELECT * FROM logs WHERE lr > ? AND run_id = ? LIMIT ?").query
        >>> parameter_schema(q, {"logs": pa.schema([("lr", pa.float64()), ("run_id", pa.utf8())])})
        parameter_1: double
        parameter_2: string
        parameter_3: null
    """
    read = [t.name.lower() for t in tree.find_all(exp.Table)]
    columns: dict[str, pa.DataType] = {}
    for name in read:
        schema = schemas.get(name)
        for f in schema or []:
            columns.setdefault(fold(f.name), f.type)
    fields = []
    placeholders = [p for p in tree.find_all(exp.Placeholder) if p.this is None]
    placeholders.sort(key=lambda p: int((p.meta or {}).get("start", 0)))
    for i, p in enumerate(placeholders, 1):
        column = _compared_column(p)
        dtype = columns.get(fold(column), pa.null()) if column else pa.null()
        fields.append(pa.field(f"parameter_{i}", dtype))
    return pa.schema(fields)


def _compared_column(p: exp.Expr) -> str | None:
    parent = p.parent
    while isinstance(parent, exp.Paren | exp.Tuple):
        parent = parent.parent
    if isinstance(parent, exp.Binary) and not isinstance(parent, exp.Connector):
        other = parent.right if parent.left is p else parent.left
        if isinstance(other, exp.Column):
            return other.name
    if isinstance(parent, _BETWEEN_OR_IN) and isinstance(parent.this, exp.Column):
        return str(parent.this.name)
    return None
