"""Today's statement calling an old helper that leaves the model in eval mode does not change
the old code's training.

Found by session 44's second sweep: the old script calls ``net.train()`` once, before its loop,
and an old ``evaluate()`` helper (used after training) calls ``net.eval()``. Today's
``flor.log("val", evaluate(X, Y))`` after the step loop: a run of the patched script trains the
later epochs without dropout. A replay restoring checkpoints followed the recorded training,
while iterations it ran in full trained in eval mode: one answer mixed two trainings (a
step-level name from one, the epoch-level one from the other), silently. Modes switched by a
statement written in today's code were already put back (``flor._restore_modes``); now the
replay puts back the training flags of every watched module after each of today's statements,
whatever switched them (``rng_guard.RngGuard.end``): every value follows the recorded
training, as a run of the old script with today's statements only observing it."""

from __future__ import annotations

from pathlib import Path

import florsql
from tests.helpers import make_repo, run_script, write

OLD = """import torch
from torch import nn
import florsql as flor

torch.set_num_threads(1)
seed = flor.arg("seed", 0)
torch.manual_seed(seed)
X = torch.randn(64, 8)
Y = (X[:, :2].sum(dim=1) > 0).long()
net = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()


@torch.no_grad()
def evaluate(xs, ys):
    net.eval()
    return float(loss_fn(net(xs), ys))


net.train()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        for idx in flor.loop("step", torch.randperm(64).split(16)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
"""
TODAY = OLD + '            flor.log("bl", loss.item())\n        flor.log("val", evaluate(X, Y))\n'
#: the oracle: the old script with today's statements observing only (modes put back)
OBSERVED = (
    OLD
    + '            flor.log("bl", loss.item())\n'
    + "        was = net.training\n"
    + '        flor.log("val", evaluate(X, Y))\n'
    + "        net.train(was)\n"
)


def test_an_old_helper_leaving_eval_mode_does_not_change_the_training(tmp_path: Path) -> None:
    env = {"FLORSQL_CHECKPOINT_PERIOD": "1"}
    repo = make_repo(tmp_path / "r", {"train.py": OLD})
    run_script(repo, "train.py", **env)
    oracle = make_repo(tmp_path / "o", {"train.py": OBSERVED})
    run_script(oracle, "train.py", **env)
    write(repo / "train.py", TODAY)
    sql = "SELECT epoch, step, loss, bl FROM logs WHERE step IS NOT NULL ORDER BY 1, 2"
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        partial = cur.execute("SELECT epoch, val FROM logs WHERE epoch = 2").fetchall()
        val = cur.execute("SELECT epoch, val FROM logs WHERE val IS NOT NULL ORDER BY 1")
        val_rows = val.fetchall()
        steps = cur.execute(sql).fetchall()
    with florsql.connect(oracle, replay="off") as con:
        want = (
            con.cursor()
            .execute("SELECT epoch, val FROM logs WHERE val IS NOT NULL ORDER BY 1")
            .fetchall()
        )
    assert all(loss == bl for _e, _s, loss, bl in steps), steps  # the recorded training
    assert len(steps) == 16
    assert [(e, round(v, 6)) for e, v in val_rows] == [(e, round(v, 6)) for e, v in want]
    assert [(e, round(v, 6)) for e, v in partial] == [(e, round(v, 6)) for e, v in want if e == 2]
