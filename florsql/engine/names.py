"""Result column names as DuckDB names them for the query the user wrote.

DuckDB names an unaliased expression by its own text of it (``(tot ** 2)``, ``list(tot)``,
``date_trunc('hour', tstamp)``). florsql runs sqlglot's rewrite of the query, whose text can
differ (``power(tot, 2)``, ``array_agg(tot)``, ``date_trunc('HOUR', tstamp)``), so a column read
by name (``df["list(tot)"]``) was missing. :func:`written_names` asks DuckDB's own parser for the
names of the query as written (``json_serialize_sql``, then ``json_deserialize_sql`` of each
select item alone: DuckDB's text of a parsed expression is the name it gives the column).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

#: source text -> names (None: keep florsql's), the last few queries' (a query asked again, a
#: cursor's repeated execute, pays nothing)
_CACHE: OrderedDict[str, list[str | None] | None] = OrderedDict()
_KEEP = 256
_TEMPLATE: dict[str, Any] | None = None

#: The place of a star (``*``, ``COLUMNS(...)``) in what :func:`written_names` returns: the
#: columns it expands to keep florsql's names (:func:`apply`).
STAR = "\0*"
#: Before the name of an unaliased ``unnest(x)``: of a struct it expands to the struct's fields,
#: which keep florsql's names (DuckDB's), else it is named by its text (:func:`apply`).
UNNEST = "\0unnest:"


def written_names(con: Any, source: str) -> list[str | None] | None:
    """Per item of the outermost select list of ``source`` (of its first query, for a set
    operation): DuckDB's name of an unaliased expression that is not a column reference, None
    for the others (their names are right), :data:`STAR` for a star; None for the whole when
    the statement is not a query, has two stars, or DuckDB's parser does not take it
    (florsql's own syntax): then florsql's names stand."""
    if source in _CACHE:
        _CACHE.move_to_end(source)
        return _CACHE[source]
    try:
        names = _names(con, source)
    except Exception:  # only a name that stays as florsql gave it
        names = None
    _CACHE[source] = names
    if len(_CACHE) > _KEEP:
        _CACHE.popitem(last=False)
    return names


def _names(con: Any, source: str) -> list[str | None] | None:
    global _TEMPLATE
    row = con.execute("SELECT json_serialize_sql($1)", [source]).fetchall()[0]
    doc = json.loads(row[0])
    if doc.get("error") or len(doc.get("statements") or []) != 1:
        return None
    node = doc["statements"][0].get("node") or {}
    while node.get("type") == "SET_OPERATION_NODE":  # UNION...: named by its first query
        node = node.get("left") or (node.get("children") or [{}])[0] or {}
    if node.get("type") != "SELECT_NODE":
        return None
    items = node.get("select_list") or []
    stars = [i for i, e in enumerate(items) if _has_star(e)]
    wanted = [
        i
        for i, e in enumerate(items)
        if not e.get("alias") and e.get("class") not in _NAMED and i not in stars
    ]
    if not wanted:
        return [STAR if i in stars else None for i in range(len(items))]
    if _TEMPLATE is None:
        first = con.execute("SELECT json_serialize_sql('SELECT 1')").fetchall()[0][0]
        _TEMPLATE = json.loads(first)
    texts = []
    for i in wanted:
        one = json.loads(json.dumps(_TEMPLATE))
        one["statements"][0]["node"]["select_list"] = [items[i]]
        texts.append(json.dumps(one))
    said = con.execute(
        "SELECT list_transform($1::VARCHAR[], lambda x: json_deserialize_sql(x::JSON))", [texts]
    ).fetchall()[0][0]
    out: list[str | None] = [STAR if i in stars else None for i in range(len(items))]
    for i, text in zip(wanted, said, strict=True):
        if not isinstance(text, str) or not text.startswith("SELECT "):
            return None
        unnest = items[i].get("class") == "FUNCTION" and items[i].get("function_name") in _UNNESTS
        out[i] = (UNNEST if unnest else "") + text[len("SELECT ") :]
    return out


_UNNESTS = ("unnest", "unlist")
#: Items DuckDB names by the column they reference: a name, and ``#2`` (named ``run_id``, not
#: ``#2``, as florsql named it before session 43)
_NAMED = ("COLUMN_REF", "POSITIONAL_REFERENCE")


def _has_star(node: Any) -> bool:
    """Whether a select item expands to columns DuckDB names one by one: a star, or an
    expression over one (``* ILIKE 'loss'``, ``COLUMNS('L.*') * 2``), a subquery's aside. Named
    by its text, such an item that expanded to one column was called ``(* ~~* 'loss')``, where
    DuckDB calls it ``Loss`` (before s36)."""
    if isinstance(node, list):
        return any(_has_star(n) for n in node)
    if not isinstance(node, dict) or node.get("class") == "SUBQUERY":
        return False
    return node.get("class") == "STAR" or any(_has_star(v) for v in node.values())


def apply(names: list[str], written: list[str | None] | None) -> list[str]:
    """``names`` (a result's columns, as florsql named them) with :func:`written_names`'s
    names put in; the columns of a star, or of an ``unnest`` of a struct, between the items
    before and after it, keep theirs (as do all when two such items leave their places unknown).

    Example:
        >>> apply(["a", "power(x, 2)", "b", "c"], [None, "(x ** 2)", STAR])
        ['a', '(x ** 2)', 'b', 'c']
        >>> apply(["a", "b", "power(x, 2)"], [STAR, "(x ** 2)"])
        ['a', 'b', '(x ** 2)']
        >>> apply(["Loss", "UNNEST(xs)"], [UNNEST + "unnest(s)", UNNEST + "unlist(xs)"])
        ['Loss', 'unlist(xs)']
    """
    if written is None:
        return names
    if len(written) != len(names):
        expanding = [i for i, w in enumerate(written) if w is not None and w.startswith("\0")]
        if len(expanding) != 1:
            return names
        k = expanding[0]
        after = written[k + 1 :]
        if len(names) < k + len(after):
            return names
        middle = names[k : len(names) - len(after)]
        written = [*written[:k], *([None] * len(middle)), *after]
    out = []
    for w, n in zip(written, names, strict=True):
        if w is not None and w.startswith(UNNEST):
            text = w[len(UNNEST) :]
            out.append(text if n.lower().startswith(tuple(f + "(" for f in _UNNESTS)) else n)
        else:
            out.append(n if w is None or w == STAR else w)
    return out
