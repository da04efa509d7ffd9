"""Replayed values count only while today's statement for their name is the one that computed
them: an edited hindsight statement is computed again, never answered from the old one.

Real git repositories, real recorded runs, real replays; the oracle is a full re-run of the old
version with today's statement inserted by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from florsql.engine.session import Engine
from florsql.plan import hindsight
from florsql.plan.hindsight import scan_source, statement_fingerprints
from florsql.propagate.identity import statement_keys
from florsql.replay import LocalExecutor, PlanExecutor
from florsql.replay.runner import Patch, default_patcher
from florsql.store import layout
from florsql.store.replays import replays_dir
from tests.helpers import copy_repo, make_repo, script_env, write
from tests.helpers_replay import Job, warm_runs, warm_script
from tests.replay_scripts import OLD

# -- the scenario, on the torch script of the differential tests ----------------------

ANCHOR = "        sched.step()\n"
FIRST = '        flor.log("extra9", 9.0)\n'
EDITED = '        flor.log("extra9", float(sum(p.detach().sum() for p in net.parameters())))\n'
assert ANCHOR in OLD


def _with(statement: str) -> str:
    return OLD.replace(ANCHOR, ANCHOR + statement)


Rows = list[tuple[float, int, float]]


def _record(repo: Path, **env: str) -> None:
    """Two runs (lr 0.1 and 0.3, 4 epochs), side by side."""
    argvs = [("--lr", lr, "--epochs", "4") for lr in ("0.1", "0.3")]
    warm_runs(*[[Job(repo, "train.py", argv, env)] for argv in argvs])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs of the old version (no ``extra9``), checkpointed every epoch."""
    repo = make_repo(tmp_path_factory.mktemp("stale") / "h", {"train.py": OLD})
    _record(repo, FLORSQL_CHECKPOINT_PERIOD="1")
    return repo


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Rows:
    """Full re-runs of the old version with today's (edited) statement inserted by hand."""
    repo = make_repo(tmp_path_factory.mktemp("stale-oracle") / "o", {"train.py": _with(EDITED)})
    _record(repo)
    with Engine(repo, replay="off") as eng:
        return _rows(
            eng, "SELECT lr, epoch, extra9 FROM logs WHERE extra9 IS NOT NULL ORDER BY 1, 2"
        )


def _engine(repo: Path) -> Engine:
    return Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(2)))


def _rows(eng: Engine, sql: str) -> Rows:
    return [tuple(r.values()) for r in eng.execute(sql).table.to_pylist()]  # type: ignore[misc]


def _tasks(repo: Path) -> int:
    return len(list(replays_dir(repo).glob("*/*/done.json")))


def _explain(eng: Engine, sql: str) -> str:
    return "\n".join(eng.execute(f"EXPLAIN {sql}").table.column("plan").to_pylist())


NOTHING = "Replay plan: nothing to replay"


def _cli_query(repo: Path, sql: str) -> list[dict[str, object]]:
    """``florsql query --format json SQL`` as its own process, in ``repo``."""
    cli = "from florsql.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", cli, "query", "--format", "json", sql],
        cwd=repo,
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list)
    return rows


def test_edited_statement_is_computed_again_for_every_row(
    recorded: Path, oracle: Rows, tmp_path: Path
) -> None:
    repo = copy_repo(recorded, tmp_path / "h")
    write(repo / "train.py", _with(FIRST))
    with _engine(repo) as eng:
        first = _rows(eng, "SELECT lr, epoch, extra9 FROM logs WHERE epoch = 1 ORDER BY 1")
        assert first == [(0.1, 1, 9.0), (0.3, 1, 9.0)]
        n = _tasks(repo)
        # Today's statement changes: nothing the old one computed may answer for it.
        write(repo / "train.py", _with(EDITED))
        sql = "SELECT lr, epoch, extra9 FROM logs ORDER BY 1, 2"
        explain = _explain(eng, sql)
        assert NOTHING not in explain and "epoch 0-3" in explain, explain
        assert _rows(eng, sql) == oracle
        assert _tasks(repo) > n
        # Asked again: everything is current, nothing to replay.
        assert NOTHING in _explain(eng, sql)
    # The old statement's values stay on disk, unserved.
    with_old = [
        r
        for r in replays_dir(repo).glob("*/*/done.json")
        if "extra9" in json.loads(r.read_text())["names"]
    ]
    assert len(with_old) == _tasks(repo)


def test_one_shot_cli_query_after_an_edit(recorded: Path, oracle: Rows, tmp_path: Path) -> None:
    repo = copy_repo(recorded, tmp_path / "h")
    write(repo / "train.py", _with(FIRST))
    rows = _cli_query(repo, "SELECT lr, epoch, extra9 FROM logs WHERE epoch = 1 ORDER BY 1")
    assert [r["extra9"] for r in rows] == [9.0, 9.0]
    write(repo / "train.py", _with(EDITED))
    rows = _cli_query(repo, "SELECT lr, epoch, extra9 FROM logs ORDER BY 1, 2")
    assert [(r["lr"], r["epoch"], r["extra9"]) for r in rows] == oracle


# -- a pure-Python script: edits back and forth, a second name, unrelated edits ---------------

SCRIPT = """
import random
import florsql as flor
import util

lr = flor.arg("lr", 0.1)
random.seed(flor.arg("seed", 0))
w = 1.0
for epoch in flor.loop("epoch", range(4)):
    for step in flor.loop("step", range(3)):
        w -= lr * (w - random.random())
        flor.log("loss", w * w)
    w = util.shrink(w)
    flor.log("w", w)
"""
UTIL = """
import florsql as flor


def shrink(w):
    flor.log("before_shrink", w)
    return w * 0.9
"""
W_LINE = '    flor.log("w", w)\n'


def _script(*statements: str) -> str:
    return SCRIPT.replace(W_LINE, W_LINE + "".join(f"    {s}\n" for s in statements))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(
        tmp_path_factory.mktemp("stale-plain") / "p", {"train.py": SCRIPT, "util.py": UTIL}
    )
    for seed in ("0", "1"):
        warm_script(repo, "train.py", "--seed", seed)
    return repo


def _ws(eng: Engine, name: str, where: str = "") -> list[tuple[float, float]]:
    sql = f"SELECT w, {name} FROM logs WHERE w IS NOT NULL {where} ORDER BY seed, epoch"
    rows = [(r["w"], r[name]) for r in eng.execute(sql).table.to_pylist()]
    assert rows and all(v is not None for _, v in rows)
    return rows


def _specs(repo: Path) -> dict[Path, list[str]]:
    """Each task spec written so far, and the names it computes."""
    return {p: json.loads(p.read_text())["names"] for p in replays_dir(repo).glob("*/*.spec.json")}


def test_edit_and_edit_back(plain: Path, tmp_path: Path) -> None:
    repo = copy_repo(plain, tmp_path / "p")
    one = "AND epoch = 1"
    sql = f"SELECT seed, epoch, w2 FROM logs WHERE w IS NOT NULL {one}"
    write(repo / "train.py", _script('flor.log("w2", w * 2)'))
    with _engine(repo) as eng:
        assert all(v == w * 2 for w, v in _ws(eng, "w2", one))
        doubled = _tasks(repo)
        write(repo / "train.py", _script('flor.log("w2", w * 3)'))
        assert NOTHING not in _explain(eng, sql)
        assert all(v == w * 3 for w, v in _ws(eng, "w2", one))
        tripled = _tasks(repo)
        assert tripled > doubled
        # Back to the first statement: its values count again, nothing is replayed.
        write(repo / "train.py", _script('flor.log("w2", w * 2)'))
        assert NOTHING in _explain(eng, sql)
        assert all(v == w * 2 for w, v in _ws(eng, "w2", one))
        # Formatting and comments are not a change of the statement.
        write(repo / "train.py", _script('flor.log( "w2",  w*2 )  # doubled'))
        assert NOTHING in _explain(eng, sql)
        assert all(v == w * 2 for w, v in _ws(eng, "w2", one))
        write(repo / "train.py", _script('flor.log("w2", w * 3)'))
        assert NOTHING in _explain(eng, sql)
        assert all(v == w * 3 for w, v in _ws(eng, "w2", one))
        # Other epochs were never computed by either statement.
        assert all(v == w * 3 for w, v in _ws(eng, "w2"))
        assert _tasks(repo) > tripled


def test_an_edit_that_keeps_the_files_size_and_mtime(plain: Path, tmp_path: Path) -> None:
    """``* 2`` edited to ``* 3``, the file's size and modification time kept (two saves in one
    timestamp tick on a coarse-timestamp filesystem, a file put back by ``cp -p`` or ``rsync
    -t``): the engine's scripts key and the in-memory scan cache were keyed on (mtime, size),
    so the same connection, or a new one in the same process, served the ``* 2`` values as
    the ``* 3`` statement's, with no warning (found by the s31 live sweep). Both are keyed on
    the file's content now."""
    import os

    repo = copy_repo(plain, tmp_path / "p")
    path = repo / "train.py"
    write(path, _script('flor.log("w2", w * 2)'))
    with _engine(repo) as eng:
        assert all(v == w * 2 for w, v in _ws(eng, "w2"))
        st = path.stat()
        write(path, _script('flor.log("w2", w * 3)'))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
        assert all(v == w * 3 for w, v in _ws(eng, "w2"))
    write(path, _script('flor.log("w2", w * 4)'))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with _engine(repo) as eng:  # a new engine in the same process: the scan cache
        assert all(v == w * 4 for w, v in _ws(eng, "w2"))


def test_an_edited_statement_that_travels_with_it(plain: Path, tmp_path: Path) -> None:
    """``g = w * 2`` travels into the old version with ``flor.log("g", g)``: editing only it is
    an edit of the statement (and not served from the propagation cache either)."""
    repo = copy_repo(plain, tmp_path / "p")
    write(repo / "train.py", _script("g = w * 2", 'flor.log("g", g)'))
    with _engine(repo) as eng:
        assert all(v == w * 2 for w, v in _ws(eng, "g"))
        write(repo / "train.py", _script("g = w * 3", 'flor.log("g", g)'))
        assert all(v == w * 3 for w, v in _ws(eng, "g"))


def test_a_second_name_does_not_replay_the_first(plain: Path, tmp_path: Path) -> None:
    """A second name whose statement surely draws nothing (no call in it or in what may
    travel with it: ``epoch * 4``) leaves the first's values standing; one that may draw
    (``w * 4`` may carry ``w = util.shrink(w)``) computes them again, since a replay runs it
    beside the first and its draws would move a run of today's script (session 35, gap 2)."""
    repo = copy_repo(plain, tmp_path / "p")
    write(repo / "train.py", _script('flor.log("w2", w * 2)'))
    with _engine(repo) as eng:
        assert all(v == w * 2 for w, v in _ws(eng, "w2"))
        before = _specs(repo)
        write(repo / "train.py", _script('flor.log("w2", w * 2)', 'flor.log("e4", epoch * 4)'))
        assert NOTHING in _explain(eng, "SELECT seed, epoch, w2 FROM logs")
        sql = "SELECT w, w2, e4, epoch FROM logs WHERE w IS NOT NULL"
        rows = eng.execute(sql).table.to_pylist()
        assert all(r["w2"] == r["w"] * 2 and r["e4"] == r["epoch"] * 4 for r in rows)
        new = [names for path, names in _specs(repo).items() if path not in before]
        assert new and all(names == ["e4"] for names in new), new
        # A statement of the second name placed before the first one: still not a change.
        write(repo / "train.py", _script('flor.log("e4", epoch * 4)', 'flor.log("w2", w * 2)'))
        assert NOTHING in _explain(eng, "SELECT seed, epoch, w2 FROM logs")
        # One that may draw: the first name's values are computed again (the same here).
        write(repo / "train.py", _script('flor.log("w2", w * 2)', 'flor.log("w4", w * 4)'))
        assert NOTHING not in _explain(eng, "SELECT seed, epoch, w2 FROM logs")
        assert all(v == w * 2 for w, v in _ws(eng, "w2"))


def test_edits_elsewhere_keep_the_values(plain: Path, tmp_path: Path) -> None:
    repo = copy_repo(plain, tmp_path / "p")
    write(repo / "train.py", _script('flor.log("w2", w * 2)'))
    with _engine(repo) as eng:
        assert all(v == w * 2 for w, v in _ws(eng, "w2"))
        n = _tasks(repo)
        # Another file some run executed, with log statements of its own.
        write(repo / "util.py", UTIL.replace("w * 0.9", "w * 0.8  # gentler"))
        # The same file, outside the statement's block.
        today = _script('flor.log("w2", w * 2)').replace("w = 1.0\n", "w = 1.0\nprint('hi')\n")
        write(repo / "train.py", today)
        assert NOTHING in _explain(eng, "SELECT seed, epoch, w2 FROM logs")
        assert all(v == w * 2 for w, v in _ws(eng, "w2"))
        assert _tasks(repo) == n


def test_replays_without_a_fingerprint_are_computed_again(plain: Path, tmp_path: Path) -> None:
    repo = copy_repo(plain, tmp_path / "p")
    write(repo / "train.py", _script('flor.log("w2", w * 2)'))
    with _engine(repo) as eng:
        _ws(eng, "w2")
    for done in replays_dir(repo).glob("*/*/done.json"):  # as written before fingerprints
        doc = json.loads(done.read_text())
        del doc["fingerprints"]
        layout.atomic_write_json(done, doc)
    (layout.store_dir(repo) / "index.duckdb").unlink()
    with _engine(repo) as eng:
        assert NOTHING not in _explain(eng, "SELECT seed, epoch, w2 FROM logs")
        n = _tasks(repo)
        assert all(v == w * 2 for w, v in _ws(eng, "w2"))
        assert _tasks(repo) > n


def test_values_replayed_under_older_replay_rules_are_computed_again(
    plain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade that fixes what replay computes bumps ``REPLAY_RULES``: the values replayed
    before it stop counting, as an edited statement's do (a since-fixed bug's values were
    served from the store forever)."""
    repo = copy_repo(plain, tmp_path / "p")
    write(repo / "train.py", _script('flor.log("w2", w * 2)'))
    sql = "SELECT seed, epoch, w2 FROM logs"
    with _engine(repo) as eng:
        _ws(eng, "w2")
        assert NOTHING in _explain(eng, sql)
    n = _tasks(repo)
    monkeypatch.setattr(hindsight, "REPLAY_RULES", hindsight.REPLAY_RULES + 1)
    with _engine(repo) as eng:
        assert NOTHING not in _explain(eng, sql)
        assert all(v == w * 2 for w, v in _ws(eng, "w2"))
        assert _tasks(repo) > n
        assert NOTHING in _explain(eng, sql)


# -- the keys themselves ----------------------------------------------------------------------

LOOP = """
import florsql as flor
for epoch in flor.loop("epoch", range(3)):
    x = epoch * 2
    for step in flor.loop("step", range(2)):
        y = step
    g = x + 1
    flor.log("g", g)
"""


def _key(text: str, name: str = "g", recorded: frozenset[str] = frozenset()) -> str:
    code = scan_source(text, "t.py")
    assert code is not None
    return statement_fingerprints([code], recorded)[name]


def test_what_changes_a_statement_key() -> None:
    base = _key(LOOP)
    same = [
        LOOP.replace('flor.log("g", g)', 'flor.log("g", g)  # note'),
        # another name's statement that surely draws nothing (no call: session 35, gap 2)
        LOOP.replace('flor.log("g", g)', 'flor.log("g", g)\n    flor.log("h", 1)'),
        LOOP.replace("import florsql as flor", "import florsql as flor\nprint(0)"),
        LOOP.replace("y = step", "y = step * 5"),
    ]
    for text in same:
        assert _key(text) == base, text
    changed = [
        LOOP.replace("g = x + 1", "g = x + 2"),  # a statement that travels with it
        LOOP.replace("x = epoch * 2", "x = epoch * 3"),  # and one it reads through that one
        LOOP.replace('flor.log("g", g)', 'flor.log("g", g * 1)'),
        LOOP.replace('    flor.log("g", g)\n', "").replace(
            "    for step", '    g = x + 1\n    flor.log("g", g)\n    for step'
        ),  # moved before the inner loop
    ]
    for text in changed:
        assert _key(text) != base, text
    # Another name's statement that may draw: a replay of g runs it beside g (session 35).
    drawing = LOOP.replace('flor.log("g", g)', 'flor.log("g", g)\n    flor.log("h", f(1))')
    assert _key(drawing) != base
    assert _key(drawing) != _key(drawing.replace("f(1)", "f(2)"))
    # A neighbour of another name counts once some run recorded it (an anchor): where it sits.
    h = frozenset({"h"})
    beside = LOOP.replace('flor.log("g", g)', 'flor.log("g", g)\n    flor.log("h", 1)')
    before = LOOP.replace("    g = x + 1\n", '    flor.log("h", 1)\n    g = x + 1\n')
    assert _key(beside, recorded=h) != base
    assert _key(before, recorded=h) not in (base, _key(beside, recorded=h))
    assert _key(beside, recorded=frozenset({"other"})) == base
    assert statement_keys("def broken(:\n") == []


def test_moving_a_recorded_neighbour_that_anchors_the_statement(
    plain: Path, tmp_path: Path
) -> None:
    """``flor.log("w", w)`` is in the old version: propagation places ``h`` by it. Moving only
    that neighbour moves ``h`` across ``shrink`` in the old version, so ``h`` replays again
    (its fingerprint covers the recorded neighbours beside it; before, the values of the first
    placement were served)."""
    repo = copy_repo(plain, tmp_path / "p")
    old = '    w = util.shrink(w)\n    flor.log("w", w)\n'
    assert old in SCRIPT
    # h is written after the neighbour: placed after it in the old version, after shrink.
    after = '    flor.log("w", w)\n    flor.log("h", w)\n    w = util.shrink(w)\n'
    # the neighbour moved below shrink (h's own block context is the same): h before shrink.
    before = '    flor.log("h", w)\n    w = util.shrink(w)\n    flor.log("w", w)\n'
    write(repo / "train.py", SCRIPT.replace(old, after))
    with _engine(repo) as eng:
        assert all(h == w for w, h in _ws(eng, "h"))
        write(repo / "train.py", SCRIPT.replace(old, before))
        assert NOTHING not in _explain(eng, "SELECT seed, epoch, h FROM logs")
        assert all(h * 0.9 == w for w, h in _ws(eng, "h"))


def test_an_edit_while_the_replay_runs_is_never_served(plain: Path, tmp_path: Path) -> None:
    """The user edits the statement after the query planned (fingerprint of ``w * 2``) and
    before propagation read the file (placing ``w * 3``): those values carry no fingerprint.
    Editing back to ``w * 2`` replays again; before, the ``w * 3`` values, recorded under the
    planned fingerprint, were served as ``w * 2``'s."""
    repo = copy_repo(plain, tmp_path / "p")
    planned, edited = _script('flor.log("w2", w * 2)'), _script('flor.log("w2", w * 3)')
    write(repo / "train.py", planned)
    place = default_patcher(repo)
    edits = []

    def edit_then_place(vid: str, names: list[str], companions: list[str]) -> Patch:
        if not edits:  # the user's edit lands between planning and propagation, once
            edits.append(vid)
            write(repo / "train.py", edited)
        return place(vid, names, companions)

    executor = PlanExecutor(LocalExecutor(2), patcher=edit_then_place)
    sql = "SELECT w, w2 FROM logs WHERE w IS NOT NULL ORDER BY seed, epoch"
    with Engine(repo, replay="auto", executor=executor) as eng:
        rows = eng.execute(sql).table.to_pylist()
        assert edits and not any(r["w2"] is not None and r["w2"] != r["w"] * 3 for r in rows)
        write(repo / "train.py", planned)
        assert NOTHING not in _explain(eng, sql)
        assert all(v == w * 2 for w, v in _ws(eng, "w2"))
