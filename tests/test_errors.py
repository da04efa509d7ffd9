from __future__ import annotations

import doctest

import florsql.errors as errors
from florsql.errors import FlorError, ParseError, SqlError, format_position


def test_doctests() -> None:
    assert doctest.testmod(errors).failed == 0


def test_hierarchy() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert issubclass(obj, errors.FlorWarning), name
        elif isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, FlorError), name
    assert issubclass(ParseError, SqlError)


def test_sql_error_shows_caret() -> None:
    e = ParseError("bad token", sql="SELECT 1\nFROM x y z", line=2, col=10)
    assert str(e).splitlines() == ["bad token", "  2 | FROM x y z", "    |          ^"]
    assert (e.line, e.col) == (2, 10)
    assert format_position("abc", 1, 1).endswith("| ^")
