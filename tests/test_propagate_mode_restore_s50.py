"""A helper that saves its module's mode and puts it back (sweep T, sessions 50-51).

``was = model.training; model.eval(); ...; model.train(was)`` leaves the module as the call
found it, whatever the old version's modes are. Propagation refused it ("today's probe()
changes its argument, 'model.eval()'") where the old version switches modes itself (its own
validation), so the name stayed NULL with that reason. Now it is placed, and the replayed
values equal a run of today's script.
"""

from __future__ import annotations

from pathlib import Path

import florsql
from florsql.propagate import propagate
from tests.helpers import git, make_repo, run_script, write

OLD = """import torch
import florsql as flor

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.05)
x = torch.randn(32, 4)
y = torch.randn(32, 1)
with flor.checkpointing(net=net, opt=opt):
    for epoch in flor.loop("epoch", range(4)):
        net.train()
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        net.eval()
        with torch.no_grad():
            val = ((net(x) - y) ** 2).mean().item()
        net.train()
        flor.log("val", round(val, 6))
"""

HELPER = """

def probe(model):
    was = model.training
    model.eval()
    with torch.no_grad():
        out = round(model(x).abs().sum().item(), 6)
    model.train(was)
    return out
"""


def _today() -> str:
    head, loop = OLD.split("with flor.checkpointing", 1)
    return (
        head
        + HELPER
        + "\n\nwith flor.checkpointing"
        + loop
        + ('        flor.log("probe", probe(net))\n')
    )


def test_a_helper_that_puts_the_mode_back_is_placed() -> None:
    result = propagate(_today(), OLD)
    assert not result.failed, result.failed
    assert [p.name for p in result.placed] == ["probe"]


def test_its_replayed_values_equal_a_run_of_today_s_script(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    oracle = make_repo(tmp_path / "o", {"train.py": _today()})
    run_script(repo, "train.py")
    run_script(oracle, "train.py")
    write(repo / "train.py", _today())
    git(repo, "commit", "-qam", "today")
    sql = "SELECT epoch, probe FROM logs WHERE probe IS NOT NULL ORDER BY epoch"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    with florsql.connect(repo) as con:
        got = con.cursor().execute(sql).fetchall()
    assert len(want) == 4 and got == want
