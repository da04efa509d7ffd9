"""A file saved at the worktree's root, read back after the loop (sweep U, session 50).

Early stopping: each epoch that improves saves the model to ``best.pt`` (ignored, at the
repository's root), the code after the loop loads it back. A replay's worktree holds the
ignored ``best.pt`` as a link to the repository's, the file the last recorded run left. The
task's save went to its private copy; then the sandbox's own stat redirection answered for the
link with that copy, so ``realpath`` took the link for a regular file, the load missed the copy
and followed the link: a run's value after the loop was the last recorded run's (0.775 for
0.875), said only by a misleading data warning. Only where the task saved the file once (a
second save went to a copy of the link's own path, which the load then found) and the run
did not make it (the first run, which did, finds none: ``created_outputs``). Now the sandbox
resolves paths with its redirection off.

Oracle: today's script recorded for real with the same args.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import florsql
from tests.helpers import git, make_repo, run_script, write

PLAIN = """import florsql as flor

seed = flor.arg("seed", 1)
w = float(seed)
with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(4)):
        w = (w * 7 + 3) % 11
        flor.log("score", w)
        if epoch == seed:  # the best epoch: saved once
            with open("best.txt", "w") as f:
                f.write(f"{epoch} {w}")
with open("best.txt") as f:
    kept = f.read()
"""

TORCH = """import torch
import florsql as flor

seed = flor.arg("seed", 1)
torch.manual_seed(seed)
net = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x = torch.randn(16, 3)
y = torch.randn(16, 1)
with flor.checkpointing(net=net, opt=opt):
    for epoch in flor.loop("epoch", range(4)):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        flor.log("loss", round(loss.item(), 6))
        if epoch == seed:  # the best epoch: saved once
            torch.save(net.state_dict(), "best.pt")
net.load_state_dict(torch.load("best.pt"))
kept = round(float(net.weight.sum()), 6)
"""

SCRIPTS = {"plain": (PLAIN, "best.txt"), "torch": (TORCH, "best.pt")}


@pytest.mark.parametrize("kind", sorted(SCRIPTS))
def test_a_file_saved_at_the_root_is_read_back_from_the_task_s_own_copy(
    tmp_path: Path, kind: str
) -> None:
    script, ignored = SCRIPTS[kind]
    today = script + 'flor.log("kept", kept)\n'
    files = {"train.py": script, ".gitignore": ignored + "\n"}
    repo = make_repo(tmp_path / "r", files)
    oracle = make_repo(tmp_path / "o", {**files, "train.py": today})
    for where in (repo, oracle):
        for seed in ("1", "2", "3"):
            run_script(where, "train.py", "--seed", seed)
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    sql = "SELECT seed, kept FROM logs WHERE kept IS NOT NULL ORDER BY seed"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert len(want) == 3 and len({v for _, v in want}) == 3, want
    left = (repo / ignored).read_bytes()
    with florsql.connect(repo) as con, warnings.catch_warnings():
        # each run wrote the file before it read it: what it read is its own, no data that
        # changed (session 51: "best.pt (changed while its run ran ...)" for each run)
        warnings.simplefilter("error", florsql.errors.DataChangedWarning)
        got = con.cursor().execute(sql).fetchall()
    assert got == want
    assert (repo / ignored).read_bytes() == left  # the user's file is as the last run left it
