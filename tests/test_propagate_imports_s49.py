"""Import lines today's code widened, where the old line binds part of what today's binds.

Before session 49 ``import os, json as js`` today for ``import os`` in the old file refused
the statement reading ``js`` ("cannot tell its place among old statements that today's code
lacks or rewrote (os)": token similarity did not align the two lines), and an import line
widened inside ``def main()`` was "unbound name 'json'" (only the module's own lines were
widened). Now the old file gets an import of each added name right after its own line, in
today's order, in the function where the line is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import florsql
from florsql.propagate import propagate
from tests.helpers import make_repo, run_script, write

LOOP = 'for epoch in flor.loop("epoch", range(3)):\n    flor.log("a", epoch)\n'


def _module(imports: str, log: str = "") -> str:
    return imports + "\nimport florsql as flor\n" + LOOP + (f"    {log}\n" if log else "")


@pytest.mark.parametrize(
    ("old", "today", "expr", "added"),
    [
        ("import os", "import os, json as js", "js.dumps([epoch])", ["import json as js"]),
        (
            "import os",
            "import os, json, math as m",
            "json.dumps([m.floor(epoch)])",
            ["import json", "import math as m"],
        ),
        (
            "from os import sep",
            "from os import sep, getcwd as g, path",
            "len(g()) * 0 + epoch",
            ["from os import getcwd as g"],
        ),
    ],
)
def test_a_widened_module_import_line_gives_the_old_file_the_added_names(
    old: str, today: str, expr: str, added: list[str]
) -> None:
    r = propagate(_module(today, f'flor.log("b", {expr})'), _module(old), ["b"])
    assert [p.name for p in r.placed] == ["b"], r.failed
    assert r.source is not None
    lines = r.source.splitlines()
    # the old line kept, then the added names in today's order, nothing else moved
    assert lines[: 1 + len(added)] == [old, *added]
    assert lines[-1] == f'    flor.log("b", {expr})'
    compile(r.source, "patched.py", "exec")


def test_a_rewritten_import_line_still_says_why() -> None:
    """``import sys, json as js`` for ``import os`` is no widening: the old ``os`` line is
    one today's code dropped, and where the statement goes among such lines is unsure."""
    r = propagate(
        _module("import sys, json as js", 'flor.log("b", js.dumps([1]))'),
        _module("import os"),
        ["b"],
    )
    assert not r.placed
    assert "cannot tell its place" in r.failed[0].reason


MAIN_OLD = """import florsql as flor


def main():
    import os
    total = 0
    for epoch in flor.loop("epoch", range(4)):
        total += epoch * 3
        flor.log("a", total)


if __name__ == "__main__":
    main()
"""
MAIN_TODAY = MAIN_OLD.replace("    import os\n", "    import os, json as js\n").replace(
    '        flor.log("a", total)\n',
    '        flor.log("a", total)\n'
    '        flor.log("b", js.dumps({"t": total, "sep": bool(os.sep)}))\n',
)


def test_a_widened_import_line_inside_main_is_widened_there() -> None:
    r = propagate(MAIN_TODAY, MAIN_OLD, ["b"])
    assert [p.name for p in r.placed] == ["b"], r.failed
    assert r.source is not None
    assert "    import os\n    import json as js\n    total = 0\n" in r.source
    # a function of another name gets nothing
    other = MAIN_OLD.replace("def main", "def run").replace("    main()", "    run()")
    r = propagate(
        MAIN_TODAY.replace("def main", "def run").replace("    main()", "    run()"), other, ["b"]
    )
    assert [p.name for p in r.placed] == ["b"], r.failed
    assert r.source is not None and "    import json as js\n" in r.source


def test_an_old_main_binding_the_alias_is_not_widened_over() -> None:
    """The old ``main`` binds ``js`` itself (to something else): no import is added over it,
    and the statement is refused rather than reading the old ``js``."""
    old = MAIN_OLD.replace("    import os\n", "    import os\n    js = None\n")
    r = propagate(MAIN_TODAY, old, ["b"])
    assert not r.placed or "import json as js" not in (r.source or "")


def test_hindsight_through_a_widened_import_in_main_equals_a_run_of_todays_script(
    tmp_path: Path,
) -> None:
    """Differential, end to end: the old runs' ``b`` through the import widened in ``main``
    equals what today's script logs when run."""
    repo = make_repo(tmp_path / "r", {"train.py": MAIN_OLD})
    oracle = make_repo(tmp_path / "o", {"train.py": MAIN_TODAY})
    run_script(repo, "train.py")
    run_script(oracle, "train.py")
    write(repo / "train.py", MAIN_TODAY)
    sql = "SELECT epoch, a, b FROM logs WHERE epoch >= 1 ORDER BY epoch"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    with florsql.connect(repo, replay="auto") as con:
        got = con.cursor().execute(sql).fetchall()
    assert len(want) == 3 and got == want
