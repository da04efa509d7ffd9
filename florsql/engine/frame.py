"""``flor.dataframe(*names)``: the FlorDB-style pivot of chosen names, as Arrow or pandas.

Columns, as FlorDB's ``flor.dataframe``: ``projid``, ``tstamp``, ``filename``, the loop columns
that apply to the chosen names (a loop name chosen is its loop column, in loop order), then the
other names in the order given (a name given twice, in any case, or one of the first three, is
not repeated). One row per run and loop
context where a chosen log name was logged (args are repeated on each row); with only args
chosen, one row per run. Rows are ordered by ``tstamp`` and then by the loop columns.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from florsql.engine.replay_decision import SET_REPLAY_HINT
from florsql.errors import PlanError
from florsql.store.schema import quote

__all__ = ["dataframe", "dataframe_sql"]

#: What the replay-off warning tells a ``flor.dataframe`` caller, who has no ``SET``.
DATAFRAME_HINT = "flor.dataframe(..., replay='auto') computes them"


def dataframe_sql(loops: list[str], names: list[str], *, logs: bool) -> str:
    """The SQL behind :func:`dataframe` (``logs`` False: only args were chosen).

    Example:
        >>> dataframe_sql(["epoch"], ["loss"], logs=True)  # doctest: +NORMALIZE_WHITESPACE
        'SELECT projid, tstamp, filename, "epoch", "loss" FROM logs
         ORDER BY tstamp, run_id, "epoch"'
    """
    if not logs:
        cols = ", ".join(["projid", "tstamp", "filename", *map(quote, names)])
        return f"SELECT {cols} FROM runs ORDER BY tstamp, run_id"
    cols = ", ".join(["projid", "tstamp", "filename", *map(quote, loops), *map(quote, names)])
    order = ", ".join(["tstamp", "run_id", *map(quote, loops)])
    return f"SELECT {cols} FROM logs ORDER BY {order}"


def dataframe(
    *names: str,
    repo: Path | str = ".",
    as_pandas: bool = False,
    engine: Any = None,
    replay: str | None = None,
) -> Any:
    """The pivot of ``names`` (args and log names) over every run, FlorDB-compatible.

    Args:
        names: arg and log names, in the column order wanted.
        repo: the repository (ignored when ``engine`` is given).
        as_pandas: return a pandas DataFrame (pandas must be installed).
        engine: an open :class:`~florsql.engine.session.Engine` to use, or an open
            ``florsql.connect()`` connection (its engine).
        replay: ``"auto"`` computes hindsight values never recorded (replaying old runs);
            ``"off"`` leaves them NULL with a warning; None: the engine's setting (``"off"``
            for the engine ``dataframe`` opens itself, the connection's for ``engine=con``).

    Example:
        >>> import florsql as flor
        >>> flor.dataframe("lr", "loss")  # doctest: +SKIP
        pyarrow.Table
        projid: string, tstamp: timestamp[us, tz=UTC], filename: string, epoch: int64, ...
    """
    from florsql.engine.session import Engine

    if not names:
        raise PlanError("flor.dataframe needs at least one name")
    own = engine is None
    if engine is not None and not hasattr(engine, "catalog"):
        engine = getattr(engine, "engine", engine)  # a florsql.connect() connection: its engine
        if engine is None:
            raise PlanError("flor.dataframe: the connection given as engine= is closed")
    eng = Engine(repo) if own else engine
    try:
        table = _pivot(eng, list(names), replay)
    finally:
        if own:
            eng.close()
    if as_pandas:
        try:
            return table.to_pandas()
        except ImportError as e:
            raise PlanError("as_pandas=True needs pandas: pip install pandas") from e
    return table


def _no_runs(eng: Any) -> bool:
    with eng.cursor(replay="off", warn=False) as cursor:
        rows = cursor.execute("SELECT count(*) FROM runs").table.column(0).to_pylist()
    return rows == [0]


def _pivot(eng: Any, names: list[str], replay: str | None) -> Any:
    catalog = eng.catalog()
    unknown = [n for n in names if catalog.column(n) is None]
    if unknown and _no_runs(eng):
        # a script's first run asking for its own history (FlorDB's pattern, at the top of
        # train.py): nothing is known yet, so the frame is empty (session 46: "Unknown name"
        # killed the run before it started)
        import pyarrow as pa

        first = ["projid", "tstamp", "filename"]
        cols = [*first, *(n for n in dict.fromkeys(names) if n not in first)]
        return pa.table({c: pa.array([], pa.null()) for c in cols})
    if unknown:
        hint = catalog.suggest(unknown[0])
        raise PlanError(f"Unknown name '{unknown[0]}'.{hint}")
    # a name given twice (in any case) or a column every frame has is one column
    fixed = {"projid", "tstamp", "filename"}
    names = [n for n in dict.fromkeys(catalog.canonical(n) for n in names) if n not in fixed]
    kinds = {n: catalog.column(n).kind for n in names}
    # a name some runs log (also one that is another script's arg) picks rows per context
    logs = any(k == "log" or "log" in dict(catalog.column(n).shared) for n, k in kinds.items())
    if not logs and any(k == "loop" for k in kinds.values()):
        logs = True
    # a loop name chosen is its loop column, in loop order (rows are ordered by every loop)
    chosen_loops = {n for n, k in kinds.items() if k == "loop"}
    loops = list(catalog.loops)
    names = [n for n in names if n not in chosen_loops]
    with eng.cursor(replay=replay, warn=False) as cursor:
        result = cursor.execute(dataframe_sql(loops, names, logs=logs))
    for category, message in result.warning_records:  # the hint a dataframe user can follow
        warnings.warn(message.replace(SET_REPLAY_HINT, DATAFRAME_HINT), category, stacklevel=3)
    table = result.table
    keep = [
        c
        for c in table.column_names
        if c not in loops or c in chosen_loops or table.column(c).null_count < len(table)
    ]
    return table.select(keep)
