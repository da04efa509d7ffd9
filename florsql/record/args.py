"""``flor.arg``: hyperparameters from the command line, typed like their defaults."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any

from florsql.errors import RecordError

_TRUE = {"true", "1", "yes", "y", "on", "t"}
_FALSE = {"false", "0", "no", "n", "off", "f"}


def scan_argv(argv: Sequence[str]) -> dict[str, str]:
    """Collect ``--name value``, ``--name=value`` and FlorDB's ``--kwargs a=1 b=2`` pairs.

    Flags florsql does not know are simply collected too; only names a script asks for with
    ``flor.arg`` are ever used, so the user's own argparse keeps working.

    Example:
        >>> scan_argv(["--lr", "0.1", "--epochs=3", "--kwargs", "seed=7", "x=y", "--dry"])
        {'lr': '0.1', 'epochs': '3', 'seed': '7', 'x': 'y'}

    A bare ``--`` ends the options, as in argparse: what follows is positional (before s37
    ``train.py --lr 0.1 -- tool --lr 0.9`` gave ``flor.arg("lr")`` 0.9, argparse 0.1).
    """
    found: dict[str, str] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":  # the rest is positional, as argparse reads it (s37)
            break
        if tok == "--kwargs":
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                key, sep, val = argv[i].partition("=")
                if sep and key:
                    found[key] = val
                i += 1
            continue
        if tok.startswith("--") and len(tok) > 2:
            key, sep, val = tok[2:].partition("=")
            if sep:
                found[key] = val
            elif i + 1 < len(argv) and not _is_flag(argv[i + 1]):
                found[key] = argv[i + 1]
                i += 1
        i += 1
    return found


def scan_flags(argv: Sequence[str]) -> set[str]:
    """The names given as ``--name`` with no value (the last token, or one followed by another
    flag): ``flor.arg(name, False)`` reads such a flag as True, as argparse's ``store_true``
    does; an arg of another type refuses it (:func:`flag_value`).

    Example:
        >>> sorted(scan_flags(["--debug", "--lr", "0.1", "--amp"]))
        ['amp', 'debug']
    """
    bare: set[str] = set()
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            break
        if tok == "--kwargs":
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                i += 1
            continue
        if tok.startswith("--") and len(tok) > 2 and "=" not in tok:
            if i + 1 < len(argv) and not _is_flag(argv[i + 1]):
                i += 1  # its value
            else:
                bare.add(tok[2:])
        i += 1
    return bare


def flag_value(name: str, default: Any) -> Any:
    """The value of ``--name`` given without a value: True for a bool arg, else a clear
    :class:`RecordError` (before, such an arg took its default, silently)."""
    if type(default) is bool:
        return True
    if type(default).__module__ == "numpy" and type(default).__name__ in ("bool", "bool_"):
        return type(default)(True)  # numpy's bool, as its default (s37)
    raise RecordError(
        f"--{name} is given without a value; flor.arg({name!r}, {default!r}) expects "
        f"{_article(type(default).__name__)} like its default: write --{name} VALUE or "
        f"--{name}=VALUE"
    )


def _article(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def given_arg(name: str, default: Any, cli: dict[str, str], flags: set[str]) -> Any:
    """``flor.arg(name, default)``'s value from a command line scanned into ``cli``
    (:func:`scan_argv`) and ``flags`` (:func:`scan_flags`): ``--name value``, or, where the
    line spells it with dashes as argparse maps it, ``--batch-size 8`` for ``batch_size``;
    else ``default``."""
    given = name
    if name not in cli and name not in flags:
        given = name.replace("_", "-")
    if given in cli:
        return coerce(given, cli[given], default)
    if given in flags:
        return flag_value(given, default)
    return default


def _is_flag(tok: str) -> bool:
    if not tok.startswith("-"):
        return False
    try:  # -0.5 is a value, not a flag
        float(tok)
        return False
    except ValueError:
        return True


def coerce(name: str, text: str, default: Any) -> Any:
    """Parse ``text`` the way ``default`` is typed; a clear :class:`RecordError` otherwise.

    A list, tuple or dict default reads JSON (a tuple from a JSON list); a number of another
    type than ``int`` and ``float`` (a numpy scalar, an ``IntEnum``) keeps its type. Before s37
    those got the text itself (``--widths '[4, 2]'`` was the string, ``len`` 6).

    Example:
        >>> coerce("lr", "0.01", 1e-3), coerce("bs", "64", 32), coerce("aug", "false", True)
        (0.01, 64, False)
        >>> coerce("widths", "[4, 2]", [16, 8]), coerce("betas", "[0.8, 0.9]", (0.9, 0.99))
        ([4, 2], (0.8, 0.9))
    """
    kind = type(default)
    if isinstance(default, list | tuple | dict):
        return _json_arg(name, text, default)
    if kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"):
        return kind(coerce(name, text, bool(default)))
    if kind not in (bool, int, float) and isinstance(default, numbers.Real):
        plain = int(default) if isinstance(default, numbers.Integral) else float(default)
        try:
            return kind(coerce(name, text, plain))
        except (RecordError, ValueError):
            expected = "an integer" if isinstance(plain, int) else "a number"
            raise RecordError(
                f"--{name} {text!r} is not {expected} of its default's type; flor.arg({name!r}, "
                f"{default!r}) expects {_article(kind.__name__)} like its default"
            ) from None
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        expected = {bool: "true/false/1/0", int: "an integer", float: "a number"}[kind]
        raise RecordError(
            f"--{name} {text!r} is not {expected}; flor.arg({name!r}, {default!r}) expects "
            f"{_article(kind.__name__)} like its default"
        ) from None
    return text


def _json_arg(name: str, text: str, default: list[Any] | tuple[Any, ...] | dict[Any, Any]) -> Any:
    """The JSON value of ``text`` for a list, tuple or dict default, of that kind."""
    import json

    want = "a JSON object" if isinstance(default, dict) else "a JSON list"
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(default, dict) and isinstance(value, dict):
        return value
    if not isinstance(default, dict) and isinstance(value, list):
        return tuple(value) if isinstance(default, tuple) else value
    example = '{"k": 1}' if isinstance(default, dict) else "[1, 2]"
    raise RecordError(
        f"--{name} {text!r} is not {want}; flor.arg({name!r}, {default!r}) expects "
        f"{_article(type(default).__name__)} like its default, written as JSON: --{name} "
        f"'{example}'"
    )


def stored_arg(value: Any) -> tuple[Any, str | None]:
    """The form ``run.json`` keeps of an arg's normalized value (florsql.record.values): plain
    values as they are, a rendered one (a list, tuple or dict as JSON, anything else as its
    repr) as its text, with the kind of rendering (``"json"``, ``"repr"``; None for plain).

    Example:
        >>> from florsql.store.segments import Tagged
        >>> stored_arg(0.1), stored_arg(Tagged("json", "[16, 8]"))
        ((0.1, None), ('[16, 8]', 'json'))
    """
    from florsql.store.segments import Tagged

    if isinstance(value, Tagged):
        return value.text, value.vtype
    return value, None


#: How runs recorded before ``arg_tags`` stored a rendered arg: the ``Tagged`` object's repr.
_LEGACY = re.compile(r"^Tagged\('(json|repr)', (.*)\)$", re.S)


def replayed_arg(name: str, default: Any, recorded: Any, tag: str | None) -> Any:
    """The value ``flor.arg(name, default)`` gives in a replay of a run that recorded
    ``recorded`` (``run.json``'s form, rendered as ``tag``): the value the run itself got.

    Where the run got the default (its stored form is the default's), the default itself: a
    tuple stays a tuple, a numpy scalar keeps its type. A rendered value that is not the
    default is rebuilt from its JSON (a tuple default gives a tuple); one kept only as its repr
    cannot be rebuilt, and the replay fails saying so rather than run on a string.

    Example:
        >>> replayed_arg("betas", (0.9, 0.99), "[0.9, 0.99]", "json")
        (0.9, 0.99)
        >>> replayed_arg("widths", [8, 4], "Tagged('json', '[8, 4]')", None)  # before arg_tags
        [8, 4]
        >>> replayed_arg("widths", [8, 4], "[16, 8]", "json"), replayed_arg("lr", 1.0, 2, None)
        ([16, 8], 2.0)
    """
    import ast
    import json

    from florsql.errors import ReplayError
    from florsql.record.values import normalize

    mine, mine_tag = stored_arg(normalize(name, default, {name}))
    if tag is None and isinstance(recorded, str) and (m := _LEGACY.match(recorded)):
        tag, recorded = m.group(1), ast.literal_eval(m.group(2))
    if tag == mine_tag and type(recorded) is type(mine) and recorded == mine:
        return default
    if tag == "json":
        value = json.loads(recorded)
        return tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
    if tag is not None:
        raise ReplayError(
            f"flor.arg({name!r}, ...): the run's value was kept only as its repr "
            f"({str(recorded)[:80]}), which a replay cannot rebuild"
        )
    if type(default) is float and type(recorded) is int:
        return float(recorded)
    kind = type(default)
    if kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"):
        return kind(recorded) if isinstance(recorded, bool) else recorded
    if (
        kind not in (bool, int, float)
        and isinstance(default, numbers.Real)
        and isinstance(recorded, int | float)
        and not isinstance(recorded, bool)
    ):
        return kind(recorded)  # a numpy scalar or IntEnum from the command line: its type (s37)
    return recorded
