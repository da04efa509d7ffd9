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
strings its script holds there (the loop's frame and its module): one of the items in their
order and one of them sorted. A replay compares at the same point: the same items in another
order is that case, and the query warns, naming them. A run recorded with ``PYTHONHASHSEED``
set replays with that seed (:func:`hash_seed`), its order the run's.

Standard library only: it runs in the training process.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from typing import Any

#: Lists, tuples and dicts longer than this are left out (their digests would cost the run's
#: start more than a millisecond or so).
LIMIT = 20_000


def _digest(items: list[str]) -> str:
    data = "\0".join(items).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _sequences(name: str, value: Any) -> list[tuple[str, list[str]]]:
    """The sequences of strings ``value`` holds in an order: a list's or tuple's items, a
    dict's keys and its values (as ``name.values()``)."""
    kind = type(value)
    if kind not in (list, tuple, dict) or not 2 <= len(value) <= LIMIT:
        return []  # (a long dict's keys are not even listed)
    if kind is list or kind is tuple:
        return [(name, value)]
    if kind is dict:
        return [(name, list(value)), (f"{name}.values()", list(value.values()))]
    return []


def digests(values: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{name: [digest in order, digest sorted]}`` for the sequences of at least two strings,
    not all equal, among ``values`` (a frame's names; dunder names left out)."""
    out: dict[str, list[str]] = {}
    for name in list(values):
        if name.startswith("__"):
            continue
        try:
            value = values[name]
        except Exception:  # a proxy that cannot give it: not ours to fail on
            continue
        for key, items in _sequences(name, value):
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
