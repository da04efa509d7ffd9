"""SQL for the wide ``logs`` relation: the pivot of log records, and its row grain.

The pivot is a conditional aggregation with an explicit column list, one
``arg_max_null(<typed value>, seq) FILTER (WHERE name = '<name>')`` per log name, grouped by
(run, loop context), joined with ``runs`` (metadata and args) and ``__flor_ctx`` (loop columns).
Measured against DuckDB's ``PIVOT ... ON name IN (...) USING arg_max(...)`` at 1M records the two
take the same time within noise; the conditional form types each column on its own (``PIVOT``
takes one value expression for all names), so it is the one used. Where a name was logged
several times in one context, the last value (largest ``seq``) wins, ``None`` included. A
column gathers every spelling of its name (``loss`` and ``Loss`` are one column: SQL names ignore
case), so no value of either spelling is lost.

Row grain: a row per (run, context) where at least one of the log names the query references
was logged (:func:`grain_predicate`).

The inner aggregation's columns are its keys (``run_id``, ``ctx_id``) and one per log name,
named :func:`_inner` (prefixed): a log may have any name, ``ctx_id`` too, and is never taken for
a key (a log ``ctx_id`` answered the context ids). The loop columns of ``__flor_ctx`` are
prefixed alike (:func:`florsql.plan.stats.loop_column`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import partial

from florsql.fold import fold
from florsql.plan.catalog import Catalog, LogsColumn
from florsql.plan.stats import loop_column, string_literal
from florsql.store.schema import quote

__all__ = [
    "WIDE_TABLE",
    "ctx_column",
    "grain_predicate",
    "hidden_prefix",
    "logs_from_wide",
    "logs_live",
    "presence_column",
    "value_expr",
    "wide_columns",
    "wide_delta",
    "wide_select",
]

WIDE_TABLE = "__flor_wide"


def value_expr(sql_type: str) -> str:
    """The typed value of a log record for a column of ``sql_type``.

    Example:
        >>> value_expr("DOUBLE")
        'coalesce(value_float, value_int::DOUBLE)'
    """
    if sql_type == "BIGINT":
        return "value_int"
    if sql_type == "BOOLEAN":
        return "value_int::BOOLEAN"
    if sql_type == "DOUBLE":
        return "coalesce(value_float, value_int::DOUBLE)"
    return (
        "CASE WHEN vtype = 'bool' THEN (value_int::BOOLEAN)::VARCHAR "
        "ELSE coalesce(value_str, value_int::VARCHAR, value_float::VARCHAR) END"
    )


def hidden_prefix(catalog: Catalog) -> str:
    """The prefix of the pivot's hidden columns: ``__`` and as many more ``_`` as it takes for
    no column of ``logs`` to start with it, so a log named ``__ctx`` or ``__has:x`` is never
    taken for one (``__has:x`` was read as x's presence column, keeping no row of x).

    """
    return _prefix_before(c.name for c in catalog.columns)


def _prefix_before(names: Iterable[str]) -> str:
    """``__``, lengthened until none of ``names`` (in any case) starts with it.

    Example:
        >>> _prefix_before(["loss", "__ctx"]), _prefix_before(["a"]), _prefix_before(["___x"])
        ('___', '__', '____')
    """
    lowered = [fold(n) for n in names]
    prefix = "__"
    while any(n.startswith(prefix) for n in lowered):
        prefix += "_"
    return prefix


def ctx_column(catalog: Catalog) -> str:
    """The hidden column of the materialized pivot holding each row's context id (quoted)."""
    return quote(f"{hidden_prefix(catalog)}ctx")


def presence_column(catalog: Catalog, name: str, prefix: str | None = None) -> str:
    """The hidden column that says a name was logged where its value may be NULL (quoted)."""
    return quote(_presence_name(prefix or hidden_prefix(catalog), name))


def _presence_name(prefix: str, name: str) -> str:
    return f"{prefix}has:{name}"


def _valued(catalog: Catalog) -> list[str]:
    """Log names with a typed value column (some record holds a value that is not None)."""
    return [c.name for c in catalog.columns if c.kind == "log" and c.sql_type != "NULL"]


def _logged(catalog: Catalog) -> list[str]:
    """Log names some record holds (values or None)."""
    return [c.name for c in catalog.columns if c.kind == "log" and c.recorded_runs > 0]


def _presence(catalog: Catalog) -> list[str]:
    """Names whose rows a NULL value cannot reveal: some were logged as None."""
    return [n for n in _logged(catalog) if n in catalog.nullable_logs]


def _spelled(catalog: Catalog, names: Iterable[str]) -> str:
    """``name IN (...)`` over every spelling runs recorded these names under."""
    spellings: list[str] = []
    for name in names:
        col = catalog.column(name)
        spellings += (col.spellings if col is not None else ()) or (name,)
    return f"name IN ({', '.join(map(string_literal, dict.fromkeys(spellings)))})"


def _aggregates(catalog: Catalog) -> list[tuple[str, str]]:
    out = []
    for name in _valued(catalog):
        col = catalog.column(name)
        assert col is not None
        out.append(
            (
                name,
                f"arg_max_null({value_expr(col.sql_type)}, seq) "
                f"FILTER (WHERE {_spelled(catalog, [name])})",
            )
        )
    for col in catalog.columns:  # a log named like another script's arg or loop
        for kind, sql_type in col.shared:
            if kind == "log":
                out.append(
                    (
                        col.name,
                        f"arg_max_null({value_expr(sql_type)}, seq) "
                        f"FILTER (WHERE {_spelled(catalog, [col.name])})",
                    )
                )
    prefix = hidden_prefix(catalog)
    for name in _presence(catalog):
        where = _spelled(catalog, [name])
        out.append((_presence_name(prefix, name), f"bool_or(true) FILTER (WHERE {where})"))
    return out


#: From this many aggregates on, the pivot takes each context's last record per name in one
#: aggregation and reads the columns from a map (:func:`_by_map`): DuckDB's hash aggregation
#: costs per aggregate and per row, so one ``FILTER`` aggregate per name grew with the square
#: of the names (per-layer metrics, session 45: 300 names 1.6 s, 600 names 4.3 s, 3000 names
#: past 21 GB of memory, for 2 contexts; the map form: 0.03 s, 0.06 s). Below it the
#: conditional aggregation, measured as fast as DuckDB's ``PIVOT`` at 1M records, stays.
MAP_PIVOT_FROM = 48


def wide_select(catalog: Catalog, having: str | None = None, contexts: str | None = None) -> str:
    """The full pivot: every column of ``logs`` that has values, plus hidden helper columns.

    ``contexts``: a relation of ``(run_id, ctx_id)``; only those contexts' rows (the refresh
    after a replay re-pivots the contexts it gave values, :func:`wide_delta`).
    """
    outer, inner = wide_columns(catalog)
    where = (
        f"\n      WHERE (run_id, ctx_id) IN (SELECT run_id, ctx_id FROM {contexts})"
        if contexts
        else ""
    )
    if len(inner) >= MAP_PIVOT_FROM:
        pivot = _by_map(catalog, having, where)
    else:
        having_sql = f" HAVING {having}" if having else ""
        inner_sql = ", ".join(["run_id", "ctx_id", *(f"{e} AS {_inner(a)}" for a, e in inner)])
        pivot = (
            f"SELECT {inner_sql}\n      FROM all_log_records{where}"
            f" GROUP BY run_id, ctx_id{having_sql}"
        )
    return (
        f"SELECT {', '.join(outer)}\n"
        f"FROM ({pivot}) p\n"
        f"JOIN runs r ON r.run_id = p.run_id\n"
        f"LEFT JOIN __flor_ctx c ON c.run_id = p.run_id AND c.ctx_id = p.ctx_id"
    )


def _by_map(catalog: Catalog, having: str | None, where: str) -> str:
    """The pivot's aggregation (the columns :func:`_aggregates` names), for many names: the
    last record (by ``seq``, None included) of each name's spellings per context, gathered in
    a map per context, each column read from it as its aggregate would compute it. ``having``
    (``false``, or a ``bool_or`` over the records) holds per context as in the conditional
    form."""
    prefix = hidden_prefix(catalog)
    presence = f"{prefix}has:"

    def logged(column: str) -> str:  # the log name an aggregate reads
        return column[len(presence) :] if column.startswith(presence) else column

    keys: dict[str, str] = {}  # spelling -> the column key of its name
    for a, _ in _aggregates(catalog):
        name = logged(a)
        col = catalog.column(name)
        spellings = (col.spellings if col is not None else ()) or (name,)
        for spelling in spellings:
            keys.setdefault(spelling, fold(name))
    pairs = ", ".join(f"({string_literal(k)}, {string_literal(v)})" for k, v in keys.items())
    flag = f", ({having}) AS hv" if having and having != "false" else ""
    last = (
        "SELECT run_id, ctx_id, s.k AS k, arg_max_null({'vtype': vtype, 'value_int': value_int, "
        "'value_float': value_float, 'value_str': value_str, 'neg': signbit(value_float)}, seq) "
        f"AS rec{flag}\n"
        f"      FROM all_log_records JOIN (VALUES {pairs}) AS s(spelling, k) ON s.spelling = name"
        f"{where} GROUP BY run_id, ctx_id, s.k"
    )
    having_sql = ""
    if having == "false":
        having_sql = " HAVING false"
    elif having:
        having_sql = " HAVING bool_or(hv)"
    gathered = (
        f"SELECT run_id, ctx_id, map_from_entries(list((k, rec))) AS m FROM ({last}) l"
        f" GROUP BY run_id, ctx_id{having_sql}"
    )
    columns = ["run_id", "ctx_id"]
    for a, expr in _aggregates(catalog):
        rec = f"m[{string_literal(fold(logged(a)))}]"
        if a.startswith(presence):
            columns.append(f"CASE WHEN {rec} IS NOT NULL THEN true END AS {_inner(a)}")
            continue
        sql_type = expr.split("arg_max_null(", 1)[1].split(", seq)", 1)[0]
        # DuckDB 2.0's arg_max of a STRUCT keeps its fields as sort keys, which read -0.0 as
        # 0.0 (session 57, sweep AJ: a logged -0.0 read 0.0, and 1/z inf, once the repository
        # had 48 names): the sign comes back from ``neg``. One pass: a replacement is never
        # read again (a log named ``value_str`` is in ``rec``'s key)
        fields = {
            "vtype": f"{rec}.vtype",
            "value_int": f"{rec}.value_int",
            "value_float": (
                f"CASE WHEN {rec}.neg THEN -abs({rec}.value_float) ELSE {rec}.value_float END"
            ),
            "value_str": f"{rec}.value_str",
        }
        value = re.sub(
            r"\b(vtype|value_int|value_float|value_str)\b", partial(_field, fields), sql_type
        )
        columns.append(f"{value} AS {_inner(a)}")
    return f"SELECT {', '.join(columns)} FROM ({gathered}) g"


def _field(fields: dict[str, str], match: re.Match[str]) -> str:
    return f"({fields[match.group(1)]})"


def wide_columns(catalog: Catalog) -> tuple[list[str], list[tuple[str, str]]]:
    """The pivot's output expressions, and its aggregates as (column, expression) pairs."""
    outer = [f"r.{quote(n)}" for n in catalog.names("meta")]
    outer += [_source(c) for c in catalog.columns if c.kind == "loop"]
    outer += [_source(c) for c in catalog.columns if c.kind == "arg"]
    outer += [_from_inner(n) for n in _valued(catalog)]
    prefix = hidden_prefix(catalog)
    outer += [_from_inner(_presence_name(prefix, n)) for n in _presence(catalog)]
    outer.append(f"p.ctx_id AS {ctx_column(catalog)}")
    return outer, _aggregates(catalog)


def wide_delta(before: Catalog, after: Catalog) -> list[str] | None:
    """The columns the pivot of ``after`` adds to the pivot of ``before``, when re-pivoting
    only the contexts that gained values makes the same table as a full pivot; else None.

    That holds when every column of ``before`` is computed the same way in ``after`` and each
    added column is an aggregate of a name no column of ``before`` reads (a name only new
    values carry): a context without new values has none of its records, so the added column
    is NULL there, as the full pivot makes it (``FILTER`` over no row). A name that gained a
    spelling, a type, or a presence column (a None among its new values) changes what its
    columns hold in contexts the replay did not touch: None.
    """
    outer_b, inner_b = wide_columns(before)
    outer_a, inner_a = wide_columns(after)
    if not set(outer_b) <= set(outer_a) or not set(inner_b) <= set(inner_a):
        return None
    read = {_logged_name(a) for a, _ in inner_b}
    added = [a for a, e in inner_a if (a, e) not in set(inner_b)]
    if any(_logged_name(a) in read for a in added):
        return None
    if sorted(o for o in outer_a if o not in set(outer_b)) != sorted(_from_inner(a) for a in added):
        return None  # a column that is not one of the added aggregates (a loop, an arg)
    return added


def _logged_name(column: str) -> str:
    """The log name a pivot aggregate reads, in lower case (``__has:Loss`` reads ``loss``; a
    log named ``__has:x`` is taken to read ``x`` too, which only makes a full rebuild)."""
    return fold(_PRESENCE.sub("", column))


_PRESENCE = re.compile(r"^__+has:")


def _inner(column: str) -> str:
    """The name of a log's column (or its presence column) in the pivot's aggregation."""
    return quote(f"log:{column}")


def _from_inner(column: str) -> str:
    return f"p.{_inner(column)} AS {quote(column)}"


def _column_of(kind: str, name: str) -> str:
    """Where the pivot reads ``name`` of this kind: the loop contexts, the run or its logs."""
    if kind == "loop":
        return f"c.{quote(loop_column(name))}"
    if kind == "log":
        return f"p.{_inner(name)}"
    return f"r.{quote(name)}"


def _source(col: LogsColumn) -> str:
    """A loop or arg column of the pivot; one some runs have as another kind (an arg ``x`` of
    ``a.py``, a log ``x`` of ``b.py``) takes each row's value from whichever has one."""
    own = _column_of(col.kind, col.name)
    if not col.shared:
        return f"{own} AS {quote(col.name)}"
    parts = [own, *(_column_of(k, col.name) for k, _ in col.shared)]
    cast = ", ".join(f"CAST({p} AS {col.sql_type})" for p in parts)
    return f"coalesce({cast}) AS {quote(col.name)}"


def _projection(catalog: Catalog, source: str) -> str:
    valued = set(_valued(catalog))
    cols = []
    for c in catalog.columns:
        if c.kind == "log" and c.name not in valued:
            cols.append(f"NULL AS {quote(c.name)}")  # no value yet: an untyped NULL
        else:
            cols.append(f"{source}.{quote(c.name)}")
    return ", ".join(cols)


def grain_predicate(catalog: Catalog, names: Iterable[str] | None) -> str:
    """The WHERE over the wide table that keeps the rows where a referenced name was logged.

    ``names`` None (or naming no log) means every log name: ``SELECT *``, ``count(*)``.
    """
    logged = _logged(catalog)
    log_names = set(catalog.names("log"))
    chosen = [n for n in (names or ()) if n in log_names]
    if not chosen:
        return "true"
    present = [n for n in chosen if n in logged]
    if not present:
        return "false"
    if set(present) == set(logged):
        return "true"
    prefix = hidden_prefix(catalog)
    parts = [
        presence_column(catalog, n, prefix)
        if n in catalog.nullable_logs
        else f"{quote(n)} IS NOT NULL"
        for n in present
    ]
    return " OR ".join(parts)


def logs_from_wide(catalog: Catalog, names: Sequence[str] | None) -> str:
    """``logs`` for one reference, read from the materialized pivot."""
    grain = grain_predicate(catalog, names)
    where = "" if grain == "true" else f" WHERE {grain}"
    return f"SELECT {_projection(catalog, 'w')} FROM {WIDE_TABLE} w{where}"


def logs_live(catalog: Catalog, names: Sequence[str] | None) -> str:
    """``logs`` for one reference, pivoted from the log records by this query itself."""
    grain = grain_predicate(catalog, names)
    having = None
    if grain == "false":
        having = "false"
    elif grain != "true":
        chosen = [n for n in (names or ()) if n in set(_logged(catalog))]
        having = f"bool_or({_spelled(catalog, chosen)})"
    return f"SELECT {_projection(catalog, 'w')} FROM ({wide_select(catalog, having)}) w"
