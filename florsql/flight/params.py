"""The parameter schema of a prepared statement: one field per ``?``, typed from where it is
used (compared with, or in a list or range against, a column of a relation the statement
reads), else Arrow's ``null`` type (any value)."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
from sqlglot import exp

__all__ = ["parameter_schema"]

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
            columns.setdefault(f.name.lower(), f.type)
    fields = []
    placeholders = [p for p in tree.find_all(exp.Placeholder) if p.this is None]
    placeholders.sort(key=lambda p: int((p.meta or {}).get("start", 0)))
    for i, p in enumerate(placeholders, 1):
        column = _compared_column(p)
        dtype = columns.get(column.lower(), pa.null()) if column else pa.null()
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
