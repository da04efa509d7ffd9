"""Whether a replay's state before its loop holds the run's strings in the run's order.

A set of strings iterates in an order that follows the interpreter's string hashing, which is
random per process unless ``PYTHONHASHSEED`` fixes it. ``chars = list(set(text))``,
``stoi = {c: i for i, c in enumerate(chars)}`` then map the same text to other indices in each
process: a replay that restores the run's model weights and encodes its data with another
``stoi`` computes its hindsight values on the wrong encoding, silently (measured: a character
model's hindsight probability of ``e`` after ``h`` came back 0.036 to 0.010 over 4 epochs,
where a run of the patched script gives 0.27 to 0.90). A folder listing in another order does
the same.

So a run notes, as its first outer loop starts, a digest of each list, tuple and dict of
strings its script holds there (the loop's frame and its module, and one level into what
those hold: an object's attributes, a module of the script's own; a set of strings where
the script's text iterates it): one of the items in their order and one of them sorted. A
replay compares at the same point: the same items in another order is that case, and the
query warns, naming them. A run recorded with ``PYTHONHASHSEED``
set replays with that seed (:func:`hash_seed`), its order the run's.

Standard library only: it runs in the training process.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

#: Lists, tuples and dicts longer than this are left out (their digests would cost the run's
#: start more than a millisecond or so).
LIMIT = 20_000
#: An object or a module with more attributes than this is not looked into; nor past
#: :data:`SCAN` attributes in all.
MAX_ATTRS = 256
SCAN = 4096
#: Calls whose result follows their argument's order (``list(vocab)``, ``enumerate(vocab)``,
#: ``"".join(vocab)``): a set passed to one is iterated.
_ORDERED_CALLS = frozenset({"list", "tuple", "enumerate", "iter", "zip", "next", "map", "filter"})


def _digest(items: list[str]) -> str:
    data = "\0".join(items).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _sequences(
    name: str, value: Any, iterated: Callable[[str], bool]
) -> list[tuple[str, list[str]]]:
    """The sequences of strings ``value`` holds in an order: a list's or tuple's items, a
    dict's keys and its values (as ``name.values()``), a set's items where the script
    iterates it (``iterated(name)``)."""
    kind = type(value)
    if kind not in (list, tuple, dict, set, frozenset) or not 2 <= len(value) <= LIMIT:
        return []  # (a long dict's keys are not even listed)
    if kind is list or kind is tuple:
        return [(name, value)]
    if kind is dict:
        return [(name, list(value)), (f"{name}.values()", list(value.values()))]
    if iterated(name):
        return [(name, list(value))]  # (most sets are only asked for membership)
    return []


def _named(values: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """A frame's names (dunder names left out) and what they hold, then one level into them:
    the attributes of an object (``tok.stoi``), of a class of the frame's module and of a
    module outside the interpreter's folders (the script's own ``vocab.chars``)."""
    level: list[tuple[str, Any]] = []
    for name in list(values):
        if name.startswith("__"):
            continue
        try:
            value = values[name]
        except Exception:  # a proxy that cannot give it: not ours to fail on
            continue
        level.append((name, value))
        yield name, value
    here = values.get("__name__")
    budget = SCAN
    for name, value in level:
        if budget <= 0:
            return
        attrs = _attributes(value, here)
        if not attrs or len(attrs) > MAX_ATTRS:
            continue
        budget -= len(attrs)
        try:
            held = list(attrs.items())
        except RuntimeError:  # changed by another thread meanwhile
            continue
        for key, item in held:
            if isinstance(key, str) and not key.startswith("__"):
                yield f"{name}.{key}", item


def _attributes(value: Any, here: Any) -> Any:
    """The attributes :func:`_named` looks into (None: none)."""
    cls = type(value)
    if cls in _ATOMS or cls in (list, tuple, dict, set, frozenset):
        return None
    if isinstance(value, types.ModuleType):
        file = getattr(value, "__file__", None)
        if not isinstance(file, str) or file.startswith(_PREFIXES) or "-packages" in file:
            return None  # the standard library's, an installed package's
        if value.__name__.split(".", 1)[0] == "florsql":
            return None  # (``flor``: an editable install lies outside the interpreter's)
    elif isinstance(value, type):
        if value.__module__ != here:
            return None  # a class of a library
    elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return None
    try:
        held = object.__getattribute__(value, "__dict__")  # never a __getattr__ of the class
    except Exception:
        return None
    return held if isinstance(held, (dict, types.MappingProxyType)) else None


_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})
_PREFIXES = tuple(
    os.path.join(os.path.realpath(p), "") for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}
) + tuple(os.path.join(p, "") for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})


def iterated(source: str) -> frozenset[str]:
    """The names and dotted attribute paths (``vocab``, ``tok.vocab``) the script's text
    iterates: a ``for`` or a comprehension over it, ``*`` of it, or one of
    :data:`_ORDERED_CALLS` and ``str.join`` given it. Empty where the text does not parse."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return frozenset()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            found = [node.iter]
        elif isinstance(node, ast.Starred):
            found = [node.value]
        elif isinstance(node, ast.Call) and (
            (isinstance(node.func, ast.Name) and node.func.id in _ORDERED_CALLS)
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "join")
        ):
            found = list(node.args)
        else:
            continue
        for expr in found:
            dotted = _dotted(expr)
            if dotted is not None:
                out.add(dotted)
    return frozenset(out)


def _dotted(expr: Any) -> str | None:
    import ast

    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    return ".".join([expr.id, *reversed(parts)])


def digests(
    values: Mapping[str, Any], source: Callable[[], str] | None = None
) -> dict[str, list[str]]:
    """``{name: [digest in order, digest sorted]}`` for the sequences of at least two strings,
    not all equal, among ``values`` (a frame's names; dunder names left out) and their
    attributes (:func:`_named`); sets where the script's text (``source()``, read and parsed
    only where a set is met) iterates them (:func:`iterated`; None: every set)."""
    text: list[str] = []
    names: list[AbstractSet[str]] = []

    def iterates(name: str) -> bool:
        if source is None:
            return True
        if not text:
            text.append(source())
        if name.rsplit(".", 1)[-1] not in text[0]:
            return False  # (the text is parsed only where it may iterate the set)
        if not names:
            names.append(iterated(text[0]))
        return name in names[0]

    out: dict[str, list[str]] = {}
    for name, value in _named(values):
        for key, items in _sequences(name, value, iterates):
            if not all(type(x) is str for x in items):
                continue
            ordered = list(items)
            ranked = sorted(ordered)
            if ranked[0] == ranked[-1]:
                continue
            out[key] = [_digest(ordered), _digest(ranked)]
    return out


def reordered(recorded: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    """The names whose sequences hold the recorded strings in another order now."""
    now = digests(values)
    out = []
    for name, pair in recorded.items():
        mine = now.get(name)
        if not (isinstance(pair, list) and len(pair) == 2 and mine is not None):
            continue
        if mine[1] == pair[1] and mine[0] != pair[0]:
            out.append(name)
    return out


def hash_seed() -> str | None:
    """The ``PYTHONHASHSEED`` this interpreter hashes strings with, when it is fixed: ``"0"``
    when hashing is not randomized, the variable's number when it is set (None: random)."""
    if not sys.flags.hash_randomization:
        return "0"
    seed = os.environ.get("PYTHONHASHSEED", "")
    return seed if seed.isdigit() and int(seed) <= 4294967295 else None
