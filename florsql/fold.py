"""The one rule by which florsql compares names (logs, args, loops), in Python and in SQL.

Names compare as DuckDB compares identifiers: the 26 ASCII letters ignore case, every other
character is itself. ``valAcc`` and ``VALACC`` are one name; ``Точность`` and ``точность`` are
two, as are ``İx`` and ``ix`` (DuckDB binds ``"точность"`` to no column ``Точность``, so a
catalog that merged them would name a column no query can read). Python's ``str.lower`` and
DuckDB's ``lower()`` both fold every Unicode letter, and differently from each other (``İ``:
``i̇`` in Python, ``i`` in DuckDB), so neither is used on a name: :func:`fold` in Python,
:func:`fold_sql` in SQL text. Imports nothing of the package (every layer may use it).
"""

from __future__ import annotations

import string

__all__ = ["fold", "fold_sql"]

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold(name: str) -> str:
    """``name`` with its ASCII letters in lower case, every other character kept."""
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


def fold_sql(expr: str) -> str:
    """SQL text folding the VARCHAR ``expr`` as :func:`fold` does. An ASCII string (its byte
    length equals its character length) takes DuckDB's ``lower()``, as fast as before; any other
    has only its ASCII letters translated."""
    return (
        f"(CASE WHEN strlen({expr}) = length({expr}) THEN lower({expr}) "
        f"ELSE translate({expr}, '{string.ascii_uppercase}', '{string.ascii_lowercase}') END)"
    )
