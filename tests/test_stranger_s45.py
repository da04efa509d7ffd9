"""What session 45's stranger sweeps found in hindsight values and refusals, each against a
run of today's script (or the run's own values).

- A git-ignored module the run imported (``localcfg.py``, settings) changed since: the replay
  used today's module (``DECAY = 0.9`` for the run's 0.5: 0.05625 where the run had 0.03125),
  and nothing named it. Now the run lists it among its inputs, as a data file it read, and a
  replay with it changed says so.
- A statement logging ``os.getcwd()`` or ``os.path.abspath(__file__)`` got the replay
  worktree's path (``<repo>/.florsql/worktrees/...``); now the repository's.
- ``cb = lambda: flor.log("cb", v)`` then ``cb()``: the lambda's line was placed without its
  call, and the query answered no rows, silently. Now the name is unplaced, and the reason says
  why.
- ``flor.log("a", ...); flor.log("b", ...)`` on one line: ``a`` was refused with advice about
  ``from florsql import log`` that did not apply; now the reason says to split the line.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

import florsql
from florsql.errors import FlorError
from tests.helpers import make_repo, run_script, write

ENV = {"FLORSQL_CHECKPOINT_PERIOD": "1"}

CFG = """import florsql as flor
import localcfg


class S:
    def __init__(self):
        self.w = 1.0

    def state_dict(self):
        return {"w": self.w}

    def load_state_dict(self, d):
        self.w = d["w"]


s = S()
with flor.checkpointing(s=s):
    for epoch in flor.loop("epoch", range(4)):
        for step in flor.loop("step", range(2)):
            s.w = s.w * localcfg.DECAY
#@
flor.log("final", s.w)
"""


def test_an_ignored_module_changed_since_the_run_is_said(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "r",
        {"train.py": CFG.replace("#@\n", ""), ".gitignore": "localcfg.py\n"},
    )
    write(repo / "localcfg.py", "DECAY = 0.5\n")
    run_script(repo, "train.py", **ENV)
    write(repo / "localcfg.py", "DECAY = 0.9\n")
    write(repo / "train.py", CFG.replace("#@\n", '            flor.log("w2", s.w)\n'))
    with (
        florsql.connect(repo, replay="auto") as con,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        con.cursor().execute("SELECT epoch, step, w2 FROM logs WHERE epoch = 2").fetchall()
    said = " ".join(str(w.message) for w in caught)
    assert "localcfg.py (changed)" in said, said


PATHS = """import os
import florsql as flor

for epoch in flor.loop("epoch", range(2)):
    flor.log("v", epoch)
#@
"""


def test_paths_a_statement_logs_are_the_repository_s(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": PATHS.replace("#@\n", "")})
    run_script(repo, "train.py")
    new = (
        '    flor.log("cwd", os.getcwd())\n'
        '    flor.log("file", os.path.abspath(__file__))\n'
        '    flor.log("out", f"saved to {os.path.abspath(\'ckpt/m.pt\')}")\n'
    )
    write(repo / "train.py", PATHS.replace("#@\n", new))
    with florsql.connect(repo, replay="auto") as con:
        rows = con.cursor().execute("SELECT cwd, file, out FROM logs ORDER BY epoch").fetchall()
    where = os.path.realpath(repo)
    want = (where, os.path.join(where, "train.py"), f"saved to {where}/ckpt/m.pt")
    got = [tuple(os.path.realpath(v) if i < 2 else v for i, v in enumerate(r)) for r in rows]
    assert got == [want, want]


LOOP = """import torch
import florsql as flor

torch.manual_seed(0)
w = torch.zeros(2)
for epoch in flor.loop("epoch", range(3)):
    for s in flor.loop("step", range(2)):
        w += torch.randn(2)
        flor.log("loss", float(w.sum()))
    flor.log("val", float(w[0]))
#@
"""


def test_a_log_inside_a_lambda_is_refused_with_its_reason(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": LOOP.replace("#@\n", "")})
    run_script(repo, "train.py")
    write(
        repo / "train.py",
        LOOP.replace("#@\n", '    cb = lambda: flor.log("cb", float(w[1]))\n    cb()\n'),
    )
    with florsql.connect(repo, replay="auto") as con, pytest.raises(FlorError, match="lambda"):
        con.cursor().execute("SELECT epoch, cb FROM logs").fetchall()


def test_two_statements_on_one_line_say_to_split_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": LOOP.replace("#@\n", "")})
    run_script(repo, "train.py")
    new = '    flor.log("a", float(w[1])); flor.log("b", float(w.abs().sum()))\n'
    write(repo / "train.py", LOOP.replace("#@\n", new))
    with (
        florsql.connect(repo, replay="auto") as con,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        rows = con.cursor().execute("SELECT a, b FROM logs WHERE b IS NOT NULL").fetchall()
    said = " ".join(str(w.message) for w in caught)
    assert "shares line 11 with another statement" in said, said
    assert "from florsql import log" not in said
    assert len(rows) == 3 and all(a is None and b is not None for a, b in rows)


def test_a_script_that_does_not_parse_is_named_in_unknown_column(tmp_path: Path) -> None:
    """A line left unfinished at the end of train.py made its statements "Unknown column 'z'"
    with nothing on why (session 45's sweep)."""
    repo = make_repo(tmp_path / "r", {"train.py": LOOP.replace("#@\n", "")})
    run_script(repo, "train.py")
    broken = LOOP.replace("#@\n", '    flor.log("z", epoch * 10)\n') + "def unfinished(:\n"
    write(repo / "train.py", broken)
    said = r"Unknown column 'z'.*train.py does not parse"
    with florsql.connect(repo, replay="auto") as con, pytest.raises(FlorError, match=said):
        con.cursor().execute("SELECT epoch, z FROM logs").fetchall()


HELPER = """import torch
from torch import nn
import florsql as flor

torch.manual_seed(0)
X = torch.randn(32, 4)
Y = X.sum(1, keepdim=True)
net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.05)


def report():
    pass


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(3)):
        for s in flor.loop("step", range(4)):
            loss = ((net(X[s * 8 : (s + 1) * 8]) - Y[s * 8 : (s + 1) * 8]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        report()
"""


def test_a_log_put_into_an_empty_helper_the_old_loop_calls(tmp_path: Path) -> None:
    """``def report(): pass``, called each epoch, gets today's ``flor.log``: it was refused with
    "no context" (nothing around it in either version); it goes after the ``pass``."""
    repo = make_repo(tmp_path / "r", {"train.py": HELPER})
    run_script(repo, "train.py", **ENV)
    new = HELPER.replace("    pass\n", '    flor.log("rep", float(net[1].weight.sum()))\n')
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    run_script(oracle, "train.py", **ENV)
    write(repo / "train.py", new)
    sql = "SELECT epoch, rep FROM logs WHERE rep IS NOT NULL ORDER BY epoch"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    with florsql.connect(repo, replay="auto") as con:
        assert con.cursor().execute(sql).fetchall() == want
    assert len(want) == 3


GETATTR = """import types
import torch
from torch import nn
import florsql as flor

torch.manual_seed(0)
X = torch.randn(80, 8)
Y = X @ torch.randn(8, 1)
stats = types.SimpleNamespace(train=[], val=[])
seen = []
net = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.05)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(5)):
        perm = torch.randperm(80)
        for idx in flor.loop("step", perm.split(16)):
            loss = nn.functional.mse_loss(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            getattr(stats, "train").append(loss.item())
            getattr(seen, "append")(1)
        flor.log("w", float(net[0].weight.detach().sum()))
#@
"""


def test_objects_changed_through_getattr_are_restored(tmp_path: Path) -> None:
    """``getattr(stats, "train").append(v)`` and ``getattr(seen, "append")(1)`` in the step
    loop (sweep D): taken to change ``getattr``, not ``stats``/``seen``, so checkpoints did
    not save them and an epoch-level ``len(stats.train)`` read the lists the script's start
    made: 0 for 20, silently."""
    new = '        flor.log("n", len(stats.train))\n        flor.log("m", len(seen))\n'
    repo = make_repo(tmp_path / "r", {"train.py": GETATTR.replace("#@\n", "")})
    oracle = make_repo(tmp_path / "o", {"train.py": GETATTR.replace("#@\n", new)})
    run_script(repo, "train.py", **ENV)
    run_script(oracle, "train.py", **ENV)
    write(repo / "train.py", GETATTR.replace("#@\n", new))
    sql = "SELECT epoch, n, m FROM logs WHERE n IS NOT NULL AND {} ORDER BY epoch"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql.format("true")).fetchall()
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        assert cur.execute(sql.format("epoch = 3")).fetchall() == [w for w in want if w[0] == 3]
        assert cur.execute(sql.format("true")).fetchall() == want
    assert want[3] == (3, 20, 20)
