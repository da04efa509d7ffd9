"""A statement that draws only now and then is seen, and a later query does not restore a
checkpoint past a draw an earlier query saw.

Found by session 44's second sweep: today's step-level statement draws from Python's
``random`` every 30 global steps (``if gstep % 30 == 0: vi = random.sample(...)``). The
replay's guard compared Python's and numpy's generator states only at a statement's first 16
executions in a task and one in 64 after, so a first query run from the top never saw the draw
at step 30; a second, wider query then restored the checkpoint after it, and every later step
followed the recorded generator, not a run of today's script: wrong, silently. Now draws
through ``random``'s and ``np.random``'s functions are counted at every execution
(``rng_guard.hook_draws``), and a run an earlier replay of the same patched code saw drawing in
its loop is replayed from its start (``runner._drew_before``)."""

from __future__ import annotations

from pathlib import Path

import florsql
from tests.helpers import make_repo, run_script, write

OLD = """import random
import torch
from torch import nn
import florsql as flor

torch.set_num_threads(1)
seed = flor.arg("seed", 0)
torch.manual_seed(seed)
random.seed(seed)
X = torch.randn(96, 8)
Y = (X[:, :2].sum(1) > 0).long()
net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
order = list(range(96))
gstep = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        random.shuffle(order)
        for b in flor.loop("step", range(12)):
            idx = order[b * 8 : (b + 1) * 8]
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            gstep += 1
#@
        flor.log("lr", opt.param_groups[0]["lr"])
"""
NEW = """            flor.log("w0", round(net[0].weight.sum().item(), 6))
            if gstep % 30 == 0:
                vi = random.sample(range(96), 8)
                flor.log("probe", round(loss_fn(net(X[vi]), Y[vi]).item(), 6))
"""


def test_a_probe_drawing_every_thirty_steps(tmp_path: Path) -> None:
    env = {"FLORSQL_CHECKPOINT_PERIOD": "1", "PYTHONHASHSEED": "0"}
    repo = make_repo(tmp_path / "r", {"train.py": OLD.replace("#@\n", "")})
    oracle = make_repo(tmp_path / "o", {"train.py": OLD.replace("#@\n", NEW)})
    for seed in ("0", "1"):
        run_script(repo, "train.py", "--seed", seed, **env)
        run_script(oracle, "train.py", "--seed", seed, **env)
    write(repo / "train.py", OLD.replace("#@\n", NEW))
    sql = "SELECT seed, epoch, step, w0 FROM logs WHERE w0 IS NOT NULL ORDER BY 1, 2, 3"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        first = cur.execute(
            "SELECT seed, epoch, step, w0 FROM logs WHERE seed = 0 AND epoch <= 2 ORDER BY 2, 3"
        ).fetchall()
        got = cur.execute(sql).fetchall()
    assert first == [r for r in want if r[0] == 0 and r[1] <= 2]
    assert got == want
