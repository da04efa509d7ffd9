"""Session 48: stranger cases the earlier sweeps left refused or wrong.

A name added today to an import line the old file has (``from utils import LR, new_fn``
where the old file says ``from utils import LR``) was "unbound name 'new_fn'" (sweep M F7):
today's import line is the old one edited, so it anchored and never travelled. The old
file now gets an import of just the added name, right after its own line.

Oracle for the replays: a run of today's script records the values for real.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import florsql
from florsql.propagate import propagate
from tests.helpers import git, make_repo, run_script, write

OLD_UTILS = "import math\n\nLR = 0.5\n"
TODAY_UTILS = OLD_UTILS + "\n\ndef wnorm(v, e):\n    return round(math.fabs(v) * 2 + e, 6)\n"


def _script(imports: str, log: str, in_main: bool = False) -> str:
    body = (
        "seed = flor.arg('seed', 1)\n"
        "w = float(seed)\n"
        "with flor.checkpointing():\n"
        "    for epoch in flor.loop('epoch', range(4)):\n"
        "        w = w * LR + epoch\n"
        "        flor.log('w', w)\n" + log
    )
    if in_main:
        body = "def main():\n" + "".join("    " + ln + "\n" for ln in body.splitlines())
        body += "\n\nif __name__ == '__main__':\n    main()\n"
    return "import florsql as flor\n" + imports + "\n" + body


OLD_IMPORT = "from utils import LR\n"
WIDENED = {
    "from": ("from utils import LR, wnorm\n", "wnorm(w, epoch)", "from utils import wnorm"),
    "alias": (
        "from utils import wnorm as wn, LR\n",
        "wn(w, epoch)",
        "from utils import wnorm as wn",
    ),
    "parenthesised": (
        "from utils import (\n    LR,  # the rate\n    wnorm,\n)\n",
        "wnorm(w, epoch)",
        "from utils import wnorm",
    ),
}


@pytest.mark.parametrize("case", sorted(WIDENED))
def test_a_name_added_to_an_old_import_line_is_imported_after_it(case: str) -> None:
    imports, call, added = WIDENED[case]
    old = _script(OLD_IMPORT, "")
    new = _script(imports, f"        flor.log('wn', {call})\n")
    result = propagate(new, old)
    assert not result.failed, result.failed
    lines = result.source.splitlines()
    assert lines[1:3] == [OLD_IMPORT.strip(), added], lines[:4]
    assert f"        flor.log('wn', {call})" in lines


def test_a_module_name_added_to_an_import_line_is_imported() -> None:
    old = "import os\n" + _script("LR = 0.5\n", "")
    new = "import os, json\n" + _script("LR = 0.5\n", "        flor.log('j', json.dumps(w))\n")
    result = propagate(new, old)
    assert not result.failed, result.failed
    assert result.source.splitlines()[:2] == ["import os", "import json"]


def test_an_added_import_goes_in_only_for_a_statement_placed() -> None:
    """A statement refused for another reason leaves no import behind (an import of a name the
    old module lacks would fail the whole replay)."""
    old = _script(OLD_IMPORT, "")
    new = _script("from utils import LR, wnorm\n", "        flor.log('wn', wnorm(w, undefined))\n")
    result = propagate(new, old)
    assert result.failed and not result.placed
    assert "from utils import wnorm" not in result.source


def test_a_name_the_old_module_binds_otherwise_is_not_imported_again() -> None:
    old = _script(OLD_IMPORT, "").replace("seed = ", "def wnorm(v, e):\n    return v\n\nseed = ")
    new = _script("from utils import LR, wnorm\n", "        flor.log('wn', wnorm(w, epoch))\n")
    result = propagate(new, old)
    assert "from utils import wnorm" not in result.source


def _rows(con: Any, sql: str) -> list[tuple[Any, ...]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = list(con.cursor().execute(sql).fetchall())
    loud = [str(w.message) for w in caught if "NULL" in str(w.message)]
    assert not loud, loud
    return rows


@pytest.mark.parametrize("in_main", [False, True], ids=["module", "main"])
def test_a_function_added_to_an_old_import_line_replays_like_todays_run(
    tmp_path: Path, in_main: bool
) -> None:
    """Differential: the helper is appended to the version's ``utils.py`` and imported after
    its line; the replayed values equal a run of today's script."""
    files = {"train.py": _script(OLD_IMPORT, "", in_main), "utils.py": OLD_UTILS}
    repo = make_repo(tmp_path / "r", files)
    run_script(repo, "train.py", "--seed", "3")
    log = "        flor.log('wn', wnorm(w, epoch))\n"
    write(repo / "train.py", _script("from utils import LR, wnorm\n", log, in_main))
    write(repo / "utils.py", TODAY_UTILS)
    sql = "SELECT epoch, wn FROM logs WHERE seed = 3 ORDER BY tstamp, epoch"
    with florsql.connect(repo, replay="auto") as con:
        replayed = _rows(con, sql)
    assert len(replayed) == 4 and all(v is not None for _, v in replayed), replayed
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "today")
    run_script(repo, "train.py", "--seed", "3")
    with florsql.connect(repo, replay="off") as con:
        both = _rows(con, sql)
    assert both[:4] == replayed and both[4:] == replayed, both


ELSEWHERE_V1 = """import florsql as flor
state = {"w": 1.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(2)):
            state["w"] *= 0.5
            flor.log("loss", state["w"])
"""


def test_a_name_logged_today_at_a_level_the_runs_never_logged_it_is_said(
    tmp_path: Path,
) -> None:
    """Sweep N: today's new epoch-level ``flor.log("loss", ...)`` beside the step-level one the
    runs recorded has no values in them (a name a run logs is never replayed); the query said
    nothing and EXPLAIN said every value it reads exists. Now both say so; a query that
    reads only other names says nothing."""
    repo = make_repo(tmp_path / "r", {"train.py": ELSEWHERE_V1})
    run_script(repo, "train.py")
    write(repo / "train.py", ELSEWHERE_V1 + '        flor.log("loss", state["w"] * 1000)\n')
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = cur.execute("SELECT epoch, step, loss FROM logs ORDER BY 1, 2").fetchall()
        assert len(rows) == 6
        said = [str(w.message) for w in caught if "never did" in str(w.message)]
        assert said and "logs loss in epoch" in said[0] and "epoch/step" in said[0], said
        plan = "\n".join(r[0] for r in cur.execute("EXPLAIN SELECT loss FROM logs"))
        assert "not replayed: loss in epoch" in plan, plan
        assert "every value the query reads exists" not in plan
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cur.execute("SELECT epoch FROM logs").fetchall()
        assert not [w for w in caught if "never did" in str(w.message)]


def test_a_replaying_query_leaves_no_pipe_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sweep N: every replaying query left the worker's stdout pipe to the garbage collector
    (``ResourceWarning: unclosed file``, with warnings on)."""
    import gc

    monkeypatch.setenv("FLORSQL_REPLAY_SERVICE", "0")  # this process's own worker
    repo = make_repo(tmp_path / "r", {"train.py": ELSEWHERE_V1})
    run_script(repo, "train.py")
    write(repo / "train.py", ELSEWHERE_V1 + '        flor.log("w", state["w"])\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with florsql.connect(repo, replay="auto") as con:
            rows = con.cursor().execute("SELECT epoch, w FROM logs ORDER BY 1").fetchall()
        gc.collect()
    assert rows == [(0, 0.25), (1, 0.0625), (2, 0.015625)]
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks


def test_a_reserved_word_after_a_dot_names_a_column(tmp_path: Path) -> None:
    """Sweep N: ``SELECT l.select FROM logs l`` was a syntax error ("something is missing
    after it"); DuckDB reads it as the column ``select``, and so does florsql now."""
    script = 'import florsql as flor\nflor.log("select", 3)\nflor.log("from", 4)\n'
    repo = make_repo(tmp_path / "r", {"train.py": script})
    run_script(repo, "train.py")
    sql = "SELECT l.select, logs.from FROM logs, logs l WHERE l.select IS NOT NULL"
    assert _rows_off(repo, sql + " AND logs.from IS NOT NULL") == [(3, 4)]
    assert _rows_off(repo, "SELECT l.* FROM logs l WHERE l.select = 3")


def _rows_off(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with florsql.connect(repo, replay="off") as con:
        return list(con.cursor().execute(sql).fetchall())


NOISY = """import torch
import florsql as flor
class Noisy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.on = True
    def forward(self, h):
        return h + torch.randn_like(h) if self.on else h
def evaluate(m):
    m.eval()
    out = float(m(X).sum())
    m.train()
    return out
net = torch.nn.Sequential(torch.nn.Linear(2, 2), Noisy())
for epoch in flor.loop("epoch", range(4)):
    net[1].on = epoch < 2
    flor.log("ev", evaluate(net))
"""


def test_an_eval_first_helper_is_uneven_where_a_class_draws_in_eval_mode() -> None:
    """Sweep Q: ``evaluate`` puts the model in eval mode first, which stops library dropout,
    not a noise layer of the user's drawing behind a flag the loop sets (``epoch < 2``): taken
    for drawing nothing, a query for epoch 3 restored past epochs 0-1's draws (0.4427 for a
    run of today's script's 0.7165, silently). Without such a class it stays even."""
    from florsql.propagate.identity import pieces_uneven

    line = NOISY.splitlines().index('    flor.log("ev", evaluate(net))') + 1
    assert pieces_uneven(NOISY, ((line, line),)) == "uneven"
    plain = NOISY.replace("h + torch.randn_like(h) if self.on else h", "h * 2")
    assert pieces_uneven(plain, ((line, line),)) is None


def test_a_function_the_version_s_module_defines_otherwise_is_said(tmp_path: Path) -> None:
    """Sweep Q: today's ``from utils import LR, wnorm`` where the version's ``utils.py`` has a
    ``wnorm`` of its own: the replay computes with the version's (by design), and now says so,
    as for a function of the script edited since."""
    old_utils = OLD_UTILS + "\n\ndef wnorm(v, e):\n    return -1.0\n"
    files = {"train.py": _script(OLD_IMPORT, ""), "utils.py": old_utils}
    repo = make_repo(tmp_path / "r", files)
    run_script(repo, "train.py")
    log = "        flor.log('wn', wnorm(w, epoch))\n"
    write(repo / "train.py", _script("from utils import LR, wnorm\n", log))
    write(repo / "utils.py", TODAY_UTILS)
    with (
        florsql.connect(repo, replay="auto") as con,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        rows = con.cursor().execute("SELECT wn FROM logs WHERE wn IS NOT NULL").fetchall()
    assert rows == [(-1.0,)] * 4
    said = [str(w.message) for w in caught if "utils.wnorm" in str(w.message)]
    assert said and "today's definition differs" in said[0], [str(w.message) for w in caught]


MODES_V1 = """import torch
from torch import nn
import florsql as flor
torch.manual_seed(0)
X, XV = torch.randn(48, 4), torch.randn(16, 4)
Y, YV = (X[:, 0] > 0).long(), (XV[:, 0] > 0).long()
net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        for idx in flor.loop("step", torch.randperm(48).split(12)):
            loss = nn.functional.cross_entropy(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", round(loss.item(), 6))
"""


@pytest.mark.parametrize("period", ["100", "1"])
def test_a_mode_switch_carried_with_the_statement_is_undone_in_every_iteration(
    tmp_path: Path, period: str
) -> None:
    """Differential: today's ``net.eval()`` before an accuracy travels with it between
    ``flor._save_modes(net)`` and ``flor._restore_modes(net)``; the replay's draw guard then
    put back the eval mode it saw as the statement's piece began, undoing the restore, so a
    replay running iterations in full (the whole run: checkpoints every 100 epochs; or a run
    replayed from its start as unverified) trained on without dropout after the first epoch
    (found through test_propagate_old_modes; aab5999 answered other accuracies for one of
    the two, with only a NondeterminismWarning).
    The step loop matters: with the statement alone in the epoch body the piece began before
    ``net.eval()``."""
    today = MODES_V1 + (
        "        net.eval()\n"
        '        flor.log("acc", round((net(XV).argmax(1) == YV).float().mean().item(), 6))\n'
        "        net.train()\n"
    )
    repo = make_repo(tmp_path / "r", {"train.py": MODES_V1})
    oracle = make_repo(tmp_path / "o", {"train.py": today})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD=period)
    run_script(oracle, "train.py", FLORSQL_CHECKPOINT_PERIOD=period)
    write(repo / "train.py", today)
    sql = "SELECT epoch, step, loss, acc FROM logs WHERE acc IS NOT NULL OR step = 3 ORDER BY 1, 2"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    with florsql.connect(repo, replay="auto") as con:
        got = con.cursor().execute(sql).fetchall()
    assert len(want) == 8 and got == want
