"""Volatile functions: whose value may change between planning and running the query.

The planner evaluates pushed predicates before the query runs (the replay set, the ``LIMIT``
cut), so a predicate that holds one of these functions is never pushed: ``now()`` at planning
is not ``now()`` when the query runs, ``random()`` differs at every call, ``nextval`` changes
state. The list is DuckDB's own (``duckdb_functions()``): every function with a ``VOLATILE``
overload, and every function with no ``CONSISTENT`` overload (``now``, ``today``,
``current_setting``..., fixed only within one query). Functions that are consistent within a
query only for a ``TIMESTAMPTZ`` argument (``year``, ``date_trunc``, ``+``) depend on the session
time zone, which florsql never changes: they stay pushable. SQL's keyword forms
(``CURRENT_TIMESTAMP``, ``LOCALTIME``...) are added by name.
"""

from __future__ import annotations

import functools

from sqlglot import exp

__all__ = ["KEYWORD_FUNCTIONS", "is_volatile", "volatile_functions"]

#: Functions SQL writes as keywords, without parentheses: all read the clock or the session.
KEYWORD_FUNCTIONS = frozenset(
    {
        "current_timestamp",
        "current_time",
        "current_date",
        "localtimestamp",
        "localtime",
        "current_user",
        "session_user",
        "user",
        "current_role",
        "current_catalog",
        "current_schema",
    }
)

_QUERY = """
    SELECT function_name FROM duckdb_functions() GROUP BY function_name
    HAVING bool_or(stability = 'VOLATILE') OR bool_and(stability <> 'CONSISTENT')
"""


@functools.cache
def volatile_functions() -> frozenset[str]:
    """The lower-case names of DuckDB's volatile functions, plus the keyword forms.

    Example:
        >>> {"now", "today", "random", "nextval", "current_timestamp"} <= volatile_functions()
        True
        >>> "abs" in volatile_functions() or "year" in volatile_functions()
        False
    """
    import duckdb

    with duckdb.connect() as con:
        names = {row[0].lower() for row in con.execute(_QUERY).fetchall()}
    return frozenset(names | KEYWORD_FUNCTIONS)


def is_volatile(node: exp.Func) -> bool:
    """Whether the function call ``node`` is volatile, however sqlglot spelled or typed it.

    Example:
        >>> from sqlglot import parse_one
        >>> [is_volatile(parse_one(f"SELECT {f}", read="duckdb").selects[0])
        ...  for f in ("now()", "CURRENT_TIMESTAMP", "today()", "random()", "abs(1)")]
        [True, True, True, True, False]
    """
    names = volatile_functions()
    return any(name in names for name in _names(node))


def _names(node: exp.Func) -> set[str]:
    """The names a call goes by: as written, sqlglot's, and the one DuckDB SQL gives it."""
    if type(node) is exp.Cast:  # a bound parameter's type: rendering each took seconds for 5,000
        return {"cast"}
    out = {node.sql_name().lower()}
    if isinstance(node, exp.Anonymous):
        out.add(node.name.lower())
    rendered = exp.Anonymous if isinstance(node, exp.Anonymous) else None
    head = node.sql(dialect="duckdb") if rendered is None else node.name
    out.add(head.split("(", 1)[0].strip().lower())
    return out
