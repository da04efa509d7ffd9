"""Session 47: today's statement calls a helper of a module that is new today.

``from metrics import wnorm`` with ``metrics.py`` added after the old runs were recorded: the
import was carried into the old script, the version's worktree had no ``metrics.py``, and
every replay task failed with ``ModuleNotFoundError`` (NULL with a warning). A replay now
writes today's module (with its packages and the new modules it imports) beside the
version's files, and an edit of that module replays the values again (it is part of the
statement's fingerprint while some recorded version lacks it).

Oracle: a run of today's script (the old script plus the statement and its module) records
the values for real; the old runs' replayed values must equal them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import florsql
from tests.helpers import git, make_repo, run_script, write

OLD = """import florsql as flor
#@imports
seed = flor.arg("seed", 1)
w = float(seed)
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(4)):
        w = w * 0.5 + epoch
        flor.log("w", w)
#@log
"""


def _today(imports: str, log: str) -> str:
    return OLD.replace("#@imports\n", imports).replace("#@log\n", log)


def _rows(con: Any, sql: str) -> list[tuple[Any, ...]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = list(con.cursor().execute(sql).fetchall())
    loud = [str(w.message) for w in caught if "NULL" in str(w.message)]
    assert not loud, loud
    return rows


def _compare(repo: Path, name: str) -> list[tuple[Any, ...]]:
    """The old run's replayed values beside a run of today's script: equal, per epoch."""
    sql = f"SELECT epoch, {name} FROM logs WHERE seed = 3 ORDER BY tstamp, epoch"
    with florsql.connect(repo, replay="auto") as con:
        replayed = _rows(con, sql)
    assert len(replayed) == 4 and all(v is not None for _, v in replayed), replayed
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "today")
    run_script(repo, "train.py", "--seed", "3")  # the oracle: today's script, run for real
    with florsql.connect(repo, replay="off") as con:
        both = _rows(con, sql)
    assert both[:4] == replayed and both[4:] == replayed, both
    return replayed


CASES = {
    "from": (
        "from metrics import wnorm\n",
        '        flor.log("wn", wnorm(w, epoch))\n',
        {"metrics.py": "def wnorm(v, e):\n    return round(v * v + e, 6)\n"},
    ),
    "module": (
        "import metrics as mx\n",
        '        flor.log("wn", mx.wnorm(w, epoch))\n',
        {"metrics.py": "def wnorm(v, e):\n    return round(v * v + e, 6)\n"},
    ),
    # a new package, its module importing a new sibling relatively
    "package": (
        "from tools.norms import wnorm\n",
        '        flor.log("wn", wnorm(w, epoch))\n',
        {
            "tools/__init__.py": "",
            "tools/norms.py": "from .common import square\n\n"
            "def wnorm(v, e):\n    return square(v) + e\n",
            "tools/common.py": "def square(v):\n    return round(v * v, 6)\n",
        },
    ),
    # the import inside today's helper function of the script, called in the loop
    "in_a_helper": (
        'def report(v, e):\n    from metrics import wnorm\n    flor.log("wn", wnorm(v, e))\n\n',
        "        report(w, epoch)\n",
        {"metrics.py": "def wnorm(v, e):\n    return round(v * v + e, 6)\n"},
    ),
}


OLD_METRICS = "import os\n\n\ndef other(v):\n    return v\n"
TODAY_METRICS = (
    "import math\nimport os\n\nZERO = 0\n\n\ndef other(v):\n    return v\n\n\n"
    "def _sq(v):\n    return v * v\n\n\n"
    "def wnorm(v, e):\n    return round(_sq(v) + math.fabs(e) + ZERO, 6)\n"
)
#: a module the old version has, to which today's code added the function the statement calls
EXTENDED = {
    "extended_from": (
        "from metrics import wnorm\n",
        '        flor.log("wn", wnorm(w, epoch))\n',
        {"metrics.py": TODAY_METRICS},
    ),
    "extended_attribute": (
        "import metrics\n",
        '        flor.log("wn", metrics.wnorm(w, epoch))\n',
        {"metrics.py": TODAY_METRICS},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES) + sorted(EXTENDED))
def test_a_module_new_today_is_replayed_beside_the_old_version(tmp_path: Path, case: str) -> None:
    imports, log, modules = {**CASES, **EXTENDED}[case]
    files = {"train.py": _today("", "")}
    if case in EXTENDED:  # the old version has the module, without the function
        files["metrics.py"] = OLD_METRICS
        if case == "extended_attribute":
            files["train.py"] = _today("import metrics\n", "        metrics.other(w)\n")
            log = "        metrics.other(w)\n" + log
    repo = make_repo(tmp_path / "r", files)
    run_script(repo, "train.py", "--seed", "3")
    write(repo / "train.py", _today(imports, log))
    for path, text in modules.items():
        write(repo / path, text)
    got = _compare(repo, "wn")
    w, want = 3.0, []
    for e in range(4):
        w = w * 0.5 + e
        want.append((e, round(w * w, 6) + e))
    assert [(e, pytest.approx(v)) for e, v in want] == got


def test_an_edit_of_the_new_module_replays_again(tmp_path: Path) -> None:
    """The module's text is part of the statement's fingerprint: before, the values replayed
    with the first text stayed served after the helper changed (in a long-lived connection and
    in a fresh one)."""
    repo = make_repo(tmp_path / "r", {"train.py": _today("", "")})
    run_script(repo, "train.py", "--seed", "3")
    write(repo / "train.py", _today("from metrics import f\n", '        flor.log("f", f(w))\n'))
    write(repo / "metrics.py", "def f(v):\n    return v + 1\n")
    sql = "SELECT epoch, f FROM logs ORDER BY epoch"
    with florsql.connect(repo, replay="auto") as con:
        assert _rows(con, sql) == [(0, 2.5), (1, 2.75), (2, 3.875), (3, 5.4375)]
        write(repo / "metrics.py", "def f(v):\n    return v * 2\n")
        assert _rows(con, sql) == [(0, 3.0), (1, 3.5), (2, 5.75), (3, 8.875)]
    write(repo / "metrics.py", "def f(v):\n    return v - 1\n")
    with florsql.connect(repo, replay="auto") as con:
        assert _rows(con, sql) == [(0, 0.5), (1, 0.75), (2, 1.875), (3, 3.4375)]


def test_an_edit_of_a_function_added_to_an_old_module_replays_again(tmp_path: Path) -> None:
    """Today's function appended to the version's module runs as it is today: an edit of it
    replays the values again (the module's digest is in the fingerprint where a version's
    module lacks the function); the version's own module text stays the version's."""
    from florsql.propagate.version import for_version

    repo = make_repo(tmp_path / "r", {"train.py": _today("", ""), "metrics.py": OLD_METRICS})
    run_script(repo, "train.py", "--seed", "3")
    (vid,) = {line.split()[0] for line in git(repo, "for-each-ref", "refs/florsql").splitlines()}
    write(repo / "train.py", _today("from metrics import f\n", '        flor.log("f", f(w))\n'))
    write(repo / "metrics.py", TODAY_METRICS + "\n\ndef f(v):\n    return other(v) + 1\n")
    added = for_version(repo, vid).added["metrics.py"]
    assert added.startswith(OLD_METRICS.rstrip("\n")) and "def f(v):" in added
    assert "def wnorm" not in added  # only what f needs
    sql = "SELECT epoch, f FROM logs ORDER BY epoch"
    with florsql.connect(repo, replay="auto") as con:
        assert _rows(con, sql) == [(0, 2.5), (1, 2.75), (2, 3.875), (3, 5.4375)]
        write(repo / "metrics.py", TODAY_METRICS + "\n\ndef f(v):\n    return other(v) * 2\n")
        assert _rows(con, sql) == [(0, 3.0), (1, 3.5), (2, 5.75), (3, 8.875)]


def test_what_extend_module_appends() -> None:
    from florsql.propagate.modules import extend_module

    old = "import torch\n\ndef a(x):\n    return x\n"
    assert extend_module(old, old + "\ndef b(x):\n    return a(x)\n", ["a"]) is None  # has it
    assert extend_module(old, old, ["b"]) is None  # not defined today either
    # needs a name today binds by a call: not carried
    assert extend_module(old, old + "K = f()\ndef b(x):\n    return K\n", ["b"]) is None
    assert extend_module("from x import *\n", "def b():\n    return 1\n", ["b"]) is None
    got = extend_module(
        old,
        "import numpy as np\n@deco\ndef b(x):\n    return np.sum(x)\ndef deco(f):\n    return f\n",
        ["b"],
    )
    assert got is not None
    tail = got.split("\n\n\n", 1)[1]
    assert "import numpy as np" in tail and "@deco\ndef b(x):" in tail and "def deco(f):" in tail
    # imports first: a default argument runs as the module is imported (sweep M)
    got = extend_module(
        old, "def b(x, s=np.sqrt(2.0)):\n    return x * s\nimport numpy as np\n", ["b"]
    )
    assert got is not None
    tail = got.split("\n\n\n", 1)[1]
    assert tail.index("import numpy as np") < tail.index("def b(")


def test_propagate_shows_the_new_module(tmp_path: Path) -> None:
    from florsql.propagate.version import version_diff

    repo = make_repo(tmp_path / "r", {"train.py": _today("", "")})
    run_script(repo, "train.py")
    (vid,) = {line.split()[0] for line in git(repo, "for-each-ref", "refs/florsql").splitlines()}
    write(repo / "train.py", _today("from metrics import f\n", '        flor.log("f", f(w))\n'))
    write(repo / "metrics.py", "def f(v):\n    return v + 1\n")
    diff = version_diff(repo, vid)
    assert "--- /dev/null\n+++ b/metrics.py\n" in diff
    assert "+from metrics import f\n" in diff


def test_an_ignored_module_is_the_user_s_own(tmp_path: Path) -> None:
    """A module git ignores (a local config) is linked into every replay's tree already: it is
    not copied as new, and so not frozen at the text the first replay saw."""
    from florsql.propagate.version import for_version

    repo = make_repo(tmp_path / "r", {"train.py": _today("", ""), ".gitignore": "local_cfg.py\n"})
    run_script(repo, "train.py")
    (vid,) = {line.split()[0] for line in git(repo, "for-each-ref", "refs/florsql").splitlines()}
    write(repo / "train.py", _today("from local_cfg import K\n", '        flor.log("k", w * K)\n'))
    write(repo / "local_cfg.py", "K = 2\n")
    assert dict(for_version(repo, vid).added) == {}
    with florsql.connect(repo, replay="auto") as con:
        assert _rows(con, "SELECT epoch, k FROM logs ORDER BY 1")[:2] == [(0, 1.0), (1, 2.5)]


def test_today_s_code_reading_the_version_s_own_names_is_said(tmp_path: Path) -> None:
    """Sweep M (F3, F4): a function appended to the version's module reads that module's own
    ``EPS`` and ``_h`` (the version's, by the version-code rule), and a module new today takes
    ``sq`` from a module the version has: where today's definitions differ, the values are
    not a run of today's code's, which nothing said. The replaying query warns now."""
    old_utils = "EPS = 1000.0\n\n\ndef _h(v):\n    return v\n"
    today_utils = "EPS = 0.0\n\n\ndef _h(v):\n    return v * v\n\n\ndef new_fn(v):\n"
    today_utils += "    return _h(v) + EPS\n"
    for case in ("appended", "new_module"):
        files = {"train.py": _today("", ""), "utils.py": old_utils}
        repo = make_repo(tmp_path / case, files)
        run_script(repo, "train.py", "--seed", "3")
        write(repo / "utils.py", today_utils)
        if case == "appended":
            write(
                repo / "train.py",
                _today("import utils\n", '        flor.log("x", utils.new_fn(w))\n'),
            )
            said = "utils.EPS, utils._h"
        else:
            write(repo / "metrics.py", "from utils import _h\n\n\ndef f(v):\n    return _h(v)\n")
            write(
                repo / "train.py",
                _today("from metrics import f\n", '        flor.log("x", f(w))\n'),
            )
            said = "utils._h"
        with (
            florsql.connect(repo, replay="auto") as con,
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            rows = con.cursor().execute("SELECT epoch, x FROM logs ORDER BY 1").fetchall()
        assert rows[0] == (0, 1001.5 if case == "appended" else 1.5)  # the version's names
        text = " ".join(str(w.message) for w in caught)
        assert f"computes x with {said} as that version defines it" in text, text
