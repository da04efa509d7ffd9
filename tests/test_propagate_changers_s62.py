"""The old file's functions that change what they are given, worked out lazily (session 62).

``api._Session.old_changers`` ran every rule over every function of the old file for each
version: three quarters of propagating into a version (benchmarks/propagate.py: 25.7 s for 100
versions in one process, 6.4 s after). ``_Changers`` now asks ``_Session.old_changer`` for the
functions travelling code calls only. These pin the answers it must keep: a helper that changes
its argument through an earlier helper, a helper that changes a module-level name, and the
whole table, which still says what the old file's functions do.
"""

from __future__ import annotations

import ast

import pytest

from florsql.propagate import propagate
from florsql.propagate.api import _Changers, _Session
from florsql.propagate.source import analyze

OLD = """\
import florsql as flor
import types

hist = []


def bump(s):
    s.n += 1


def tick(s):
    bump(s)
    return s.n


def record(v):
    hist.append(v)
    return len(hist)


def pure(v):
    return v * 2


st = types.SimpleNamespace(n=0)
for epoch in flor.loop("epoch", range(3)):
    flor.log("old_n", st.n)
"""


def _today(line: str) -> str:
    return OLD.replace(
        '    flor.log("old_n", st.n)\n',
        f'    {line}\n    flor.log("h", h)\n    flor.log("old_n", st.n)\n',
    )


def _refusal(new: str) -> str:
    result = propagate(new, OLD)
    assert "h" not in {p.name for p in result.placed}, result.source
    return " ".join(str(f) for f in result.failed)


def test_a_helper_changing_its_argument_through_an_earlier_one_is_seen() -> None:
    """``tick(s)`` changes ``s`` only through ``bump(s)``, defined before it: carried, today's
    ``h = tick(st)`` would add to the old run's ``st.n``."""
    assert "the old version's tick() changes its argument" in _refusal(_today("h = tick(st)"))


def test_a_helper_changing_a_module_level_name_is_seen() -> None:
    """``record(v)`` appends to the module's ``hist``: any call changes it."""
    why = _refusal(_today("h = record(epoch)"))
    assert "'hist' (the old version's record() changes it" in why


def test_a_pure_helper_is_carried() -> None:
    result = propagate(_today("h = pure(epoch)"), OLD)
    assert "h" in {p.name for p in result.placed}, result.failed


def test_the_table_and_the_lazy_view_agree() -> None:
    """The whole table (``old_changers``) holds what the lazy view answers, name by name, and
    a function's view holds only what is defined before it (``bump`` does not see ``tick``)."""
    new = _today("h = pure(epoch)")
    session = _Session(new=analyze(new), old=analyze(OLD), skip=frozenset())
    table = session.old_changers
    assert set(table) == {"bump", "tick", "record", "record()"}
    view = _Changers(session)
    for name in ("bump", "tick", "record", "record()", "pure", "pure()", "tick()", "len"):
        assert view.get(name) == table.get(name), name
    body = analyze(OLD).tree.body
    at_bump = next(
        k for k, n in enumerate(body) if isinstance(n, ast.FunctionDef) and n.name == "bump"
    )
    assert session.old_changer("tick", before=at_bump) is None
    assert session.old_changer("record()", before=at_bump) is None
    view["tick"] = "today's tick() changes its argument"
    assert view.get("tick") == "today's tick() changes its argument"
    view.pop("tick")
    assert "tick" not in view


MODULE_CHANGE = """\
import florsql as flor
import random

import numpy as np

buf = np.zeros(1)
data = [1, 2, 3, 4]


def grow():
    np.copyto(buf, buf + 1)
    return float(buf[0])


def reshuffle():
    random.shuffle(data)
    return data[0]


for epoch in flor.loop("epoch", range(3)):
    flor.log("old_b", float(buf[0]))
"""


@pytest.mark.parametrize(
    ("line", "name"),
    [("h = grow()", "buf"), ("h = reshuffle()", "data")],
    ids=["copyto", "shuffle"],
)
def test_an_old_helper_changing_a_module_level_name_through_a_module_function(
    line: str, name: str
) -> None:
    """``np.copyto(buf, buf + 1)`` and ``random.shuffle(data)`` in an old helper change the
    module's ``buf`` and ``data``. Until session 62 the helper was read without the file's
    imports (``slice.changes`` kept its answer without ``modules`` and served it to every
    caller): the call changed ``np``, a module, so nothing. Today's ``h = grow()`` was carried,
    and the patched old run logged ``old_b`` 1, 2, 3 where the run logged 0, 0, 0, silently."""
    new = MODULE_CHANGE.replace(
        '    flor.log("old_b", float(buf[0]))\n',
        f'    {line}\n    flor.log("h", h)\n    flor.log("old_b", float(buf[0]))\n',
    )
    result = propagate(new, MODULE_CHANGE)
    assert "h" not in {p.name for p in result.placed}, result.source
    assert f"changes {name!r}" in " ".join(str(f) for f in result.failed)
