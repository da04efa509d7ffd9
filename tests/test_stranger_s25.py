"""Stranger sweep s25: several code versions in one history, scripts shaped as real projects
(main()/argparse, a trainer module, a Trainer class), SQL over hindsight columns (windows,
self-joins, parameters, case, predicates on hindsight columns only, ORDER BY ... LIMIT), and a
killed run in a multi-version history.

Oracle: a second repository that records the *same sequence* of versions, each hand-patched
with today's statement (the ``# hindsight`` lines), with the same runs in the same order; its
answers (replay off) must equal the history's (replay auto) for any query that reads no
metadata column (run_id, tstamp, vid differ between the two repositories)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import florsql
from florsql.replay import PlanExecutor
from tests.helpers import copy_repo, git, make_repo, write
from tests.helpers_replay import (
    Job,
    KeptWorkers,
    Recorder,
    fetch,
    old_source,
    patched_source,
)

PRE = """
import torch
from torch import nn
import florsql as flor

torch.set_num_threads(1)
seed = flor.arg("seed", 0)
epochs = flor.arg("epochs", 3)
torch.manual_seed(seed)
X = torch.randn(36, 6)
Y = (X[:, :2].sum(dim=1) > 0).long()
net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
loss_fn = nn.CrossEntropyLoss()
"""

Version = tuple[dict[str, str], Sequence[Sequence[str]]]  # files (with # hindsight), runs


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    r = Recorder(tmp_path_factory.mktemp("runlogs"), parallel=2)
    yield r
    r.close()


WORKERS: list[KeptWorkers] = []


@pytest.fixture(scope="module", autouse=True)
def workers() -> Iterator[KeptWorkers]:
    """One warm local replay worker for the module's queries (no per-repository service)."""
    w = KeptWorkers(2)
    WORKERS.append(w)
    yield w
    WORKERS.remove(w)
    w.shutdown()


def record_versions(
    recorder: Recorder,
    root: Path,
    versions: Sequence[Version],
    *,
    script: str = "train.py",
    period: int = 1,
    commit: bool = True,
) -> tuple[Path, Path]:
    """History: each version committed (without its ``# hindsight`` lines) and its runs
    recorded, in order (``commit=False``: versions after the first are only edits of the
    working tree, as a user who runs before committing); then the last version's patched text
    written as today's working tree.
    Oracle: the same sequence, each version hand-patched. Files a version lacks are removed."""
    history = make_repo(root / "history")
    oracle = make_repo(root / "oracle")
    seen: set[str] = set()
    for i, (files, runs) in enumerate(versions):
        for repo, conv in ((history, old_source), (oracle, patched_source)):
            for gone in seen - set(files):
                (repo / gone).unlink()
            for name, text in files.items():
                write(repo / name, conv(text))
            if commit or i == 0:
                git(repo, "add", "-A")
                git(repo, "commit", "-q", "--allow-empty", "-m", f"version {i}")
        seen |= set(files)
        env = {"FLORSQL_CHECKPOINT_PERIOD": str(period)}
        recorder.run(
            [
                [Job(history, script, tuple(a), env) for a in runs],
                [Job(oracle, script, tuple(a), env) for a in runs],
            ]
        )
    for name, text in versions[-1][0].items():
        write(history / name, patched_source(text))
    return history, oracle


class Compare:
    def __init__(self, history: Path, oracle: Path) -> None:
        executor = PlanExecutor(WORKERS[-1]) if WORKERS else None
        self.history = florsql.connect(history, replay="auto", executor=executor)
        self.oracle = florsql.connect(oracle, replay="off")
        self.items: list[str] = []
        self.notes: list[str] = []

    def __call__(
        self, sql: str, params: Sequence[Any] = (), *, ordered: bool = False
    ) -> list[tuple[Any, ...]]:
        want, _ = fetch(self.oracle, sql, params, ordered=ordered)
        try:
            got, notes = fetch(self.history, sql, params, ordered=ordered)
        except Exception as e:
            self.items.append(f"{sql} {params}: raised {type(e).__name__}: {e}")
            return []
        self.notes += notes
        if got != want:
            extra = [r for r in got if r not in want][:6]
            missing = [r for r in want if r not in got][:6]
            self.items.append(
                f"{sql} {params}: {len(got)} rows vs {len(want)}\n  replay {extra}\n"
                f"  oracle {missing}\n  notes {notes}"
            )
        return got

    def close(self) -> None:
        self.history.close()
        self.oracle.close()

    def assert_none(self) -> None:
        assert not self.items, "replay differs from the full re-run:\n" + "\n".join(self.items)


def compare(history: Path, oracle: Path, sqls: Sequence[str]) -> None:
    c = Compare(history, oracle)
    try:
        for sql in sqls:
            c(sql)
    finally:
        c.close()
    c.assert_none()


# --- 1. several versions ---------------------------------------------------------------------

RENAME_A = (
    PRE
    + """
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
        flor.log("w0", float(net[0].weight.sum()))  # hindsight
"""
)

RENAME_B = (
    PRE
    + """
optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
with flor.checkpointing(model=net, optimizer=optimizer):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            batch_loss = loss_fn(out, Y[idx])
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            flor.log("loss", batch_loss.item())
            flor.log("acc", float((out.argmax(1) == Y[idx]).float().mean()))
            flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
        flor.log("w0", float(net[0].weight.sum()))  # hindsight
"""
)


@pytest.mark.slow
def test_two_versions_renamed_variable_other_optimizer_and_an_extra_metric(
    recorder: Recorder, tmp_path: Path
) -> None:
    """Version A (SGD, ``loss``) then B (Adam, ``batch_loss``, a new recorded ``acc``): today's
    statements replay in each run's own version; ``acc`` (recorded by B) reads ``out``, which
    A lacks, and stays NULL for A's runs (placing it would be a guess)."""
    history, oracle = record_versions(
        recorder,
        tmp_path,
        [
            ({"train.py": RENAME_A}, [("--seed", "0"), ("--seed", "1")]),
            ({"train.py": RENAME_B}, [("--seed", "2"), ("--seed", "3")]),
        ],
    )
    compare(
        history,
        oracle,
        [
            "SELECT seed, epoch, step, gnorm FROM logs WHERE epoch >= 1",
            "SELECT seed, epoch, w0 FROM logs",
            "SELECT seed, epoch, step, loss, gnorm FROM logs",
            "SELECT seed, epoch, step, acc FROM logs WHERE seed >= 2",
        ],
    )


ACCUM_A = (
    PRE
    + """
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        total = 0.0  # hindsight
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()  # hindsight
            flor.log("loss", loss.item())
        flor.log("total", total)  # hindsight
"""
)

ACCUM_B = (
    PRE
    + """
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        total = 0.0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            flor.log("loss", loss.item())
        flor.log("total", total)
"""
)


def test_an_accumulated_metric_added_in_the_newer_version(
    recorder: Recorder, tmp_path: Path
) -> None:
    """Version B added an epoch metric in three blocks (``total = 0.0`` before the step loop,
    ``total += loss.item()`` in it, the log after it). Silently 0.0 for A's runs in session
    22, NULL with a warning in session 23; since session 24 each statement goes into its own
    block of A, and the planner runs A's step loops (``total`` is no checkpoint's)."""
    history, oracle = record_versions(
        recorder,
        tmp_path,
        [
            ({"train.py": ACCUM_A}, [("--seed", "0")]),
            ({"train.py": ACCUM_B}, [("--seed", "1")]),
        ],
    )
    compare(history, oracle, ["SELECT seed, epoch, total FROM logs"])


RUNNING_A = (
    ACCUM_A.replace(
        "with flor.checkpointing", "running = 0.0  # hindsight\nwith flor.checkpointing"
    )
    .replace(
        "            total += loss.item()  # hindsight\n",
        "            total += loss.item()  # hindsight\n"
        "            running += loss.item()  # hindsight\n",
    )
    .replace(
        '        flor.log("total", total)  # hindsight\n',
        '        flor.log("total", total)  # hindsight\n'
        '        flor.log("running", running)  # hindsight\n',
    )
)


@pytest.mark.slow
def test_a_running_sum_over_every_epoch_added_in_the_newer_version(
    recorder: Recorder, tmp_path: Path
) -> None:
    """A sum kept across epochs (``running = 0.0`` before the outer loop, ``+=`` in the step
    loop): a query of the last epoch cannot start from its checkpoint, which lacks ``running``;
    it replays from the top, and equals a re-run of each version patched by hand."""
    history, oracle = record_versions(
        recorder,
        tmp_path,
        [({"train.py": RUNNING_A}, [("--seed", "0"), ("--seed", "1")])],
    )
    compare(
        history,
        oracle,
        [
            "SELECT seed, epoch, running FROM logs WHERE epoch = 2",
            "SELECT seed, epoch, total, running FROM logs",
        ],
    )


def test_propagate_does_not_carry_an_initialisation_without_its_update() -> None:
    from florsql.propagate import propagate

    old = (
        "import florsql as flor\n"
        'for epoch in flor.loop("epoch", range(3)):\n'
        '    for x in flor.loop("step", [1, 2, 3]):\n'
        "        loss = x * 2.0\n"
        '        flor.log("loss", loss)\n'
    )
    new = (
        "import florsql as flor\n"
        'for epoch in flor.loop("epoch", range(3)):\n'
        "    total = 0.0\n"
        '    for x in flor.loop("step", [1, 2, 3]):\n'
        "        loss = x * 2.0\n"
        "        total += loss\n"
        '        flor.log("loss", loss)\n'
        '    flor.log("total", total)\n'
    )
    r = propagate(new, old)
    # either the update travels too, or the statement is refused: never total = 0.0 logged
    if r.placed:
        assert "total += loss" in r.source, r.source
    else:
        assert r.failed


BEST_OLD = """
import florsql as flor
best = 99.0
for epoch in flor.loop("epoch", range(4)):
    val = [5.0, 3.0, 4.0, 1.0][epoch]
    flor.log("val", val)
"""

BEST_NEW = """
import florsql as flor
best = 99.0
for epoch in flor.loop("epoch", range(4)):
    val = [5.0, 3.0, 4.0, 1.0][epoch]
    if val < best:
        best = val
    flor.log("val", val)
    flor.log("best", best)
"""


def test_propagate_best_so_far_updated_in_an_if() -> None:
    """``best`` is updated in a new ``if`` the old version lacks: placing only the log would
    log 99.0 each epoch; it must carry the ``if`` or refuse."""
    from florsql.propagate import propagate

    r = propagate(BEST_NEW.lstrip(), BEST_OLD.lstrip())
    if r.placed:
        assert "best = val" in r.source, r.source
    else:
        assert r.failed


GN_A = (
    PRE
    + """
epochs = flor.arg("epochs", 3)
opt = torch.optim.SGD(net.parameters(), lr=flor.arg("lr", 0.1))
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
        flor.log("bias", float(net[2].bias.sum()))  # hindsight
"""
)

GN_B = (
    PRE
    + """
epochs = flor.arg("epochs", 3)
wd = flor.arg("wd", 0.01)
opt = torch.optim.SGD(net.parameters(), lr=flor.arg("lr", 0.1), weight_decay=wd)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            flor.log("gnorm", float(net[0].weight.grad.norm()))
            opt.step()
            flor.log("loss", loss.item())
        flor.log("bias", float(net[2].bias.sum()))  # hindsight
"""
)

GN_C = GN_B.replace("weight_decay=wd)", "weight_decay=wd, momentum=0.9)")


@pytest.mark.parametrize(
    "commit",
    [
        pytest.param(True, id="commits"),
        pytest.param(False, id="dirty-edits", marks=pytest.mark.slow),
    ],
)
def test_a_metric_recorded_since_version_b_replayed_for_version_a(
    recorder: Recorder, tmp_path: Path, commit: bool
) -> None:
    """A (no gnorm), B (records gnorm, adds an arg wd), C (momentum): gnorm for A's runs is
    replayed, B's and C's are recorded; bias (today's) is replayed in all three versions.
    ``dirty-edits``: B and C are runs of uncommitted edits."""
    history, oracle = record_versions(
        recorder,
        tmp_path,
        [
            ({"train.py": GN_A}, [("--seed", "0"), ("--seed", "1", "--lr", "0.05")]),
            ({"train.py": GN_B}, [("--seed", "0"), ("--seed", "1", "--wd", "0.1")]),
            ({"train.py": GN_C}, [("--seed", "2", "--epochs", "4")]),
        ],
        commit=commit,
    )
    compare(
        history,
        oracle,
        [
            "SELECT seed, lr, wd, epoch, step, gnorm FROM logs WHERE wd IS NULL AND epoch >= 1",
            "SELECT seed, lr, wd, epoch, bias FROM logs WHERE epoch = 2",
            "SELECT seed, lr, wd, epoch, step, gnorm, loss FROM logs",
            "SELECT seed, lr, wd, epoch, bias FROM logs",
            "SELECT lr, wd, avg(gnorm), count(gnorm), max(bias) FROM logs GROUP BY ALL",
            "SELECT a.seed, a.epoch, a.bias - b.bias FROM logs a JOIN logs b ON a.seed = b.seed "
            "AND a.epoch = b.epoch WHERE a.wd IS NULL AND b.wd IS NOT NULL "
            "AND a.bias IS NOT NULL AND b.bias IS NOT NULL",
        ],
    )


VAL_SCRIPT = (
    PRE
    + """
XV = torch.randn(12, 6)
YV = (XV[:, :2].sum(dim=1) > 0).long()
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)


def evaluate():
    with torch.no_grad():
        return float(loss_fn(net(XV), YV))


val_loss = evaluate()
flor.log("init_val", val_loss)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        val_loss = evaluate()  # hindsight
        flor.log("val_loss", val_loss)  # hindsight
"""
)


def test_an_evaluation_the_old_version_ran_only_before_training(
    recorder: Recorder, tmp_path: Path
) -> None:
    history, oracle = record_versions(
        recorder, tmp_path, [({"train.py": VAL_SCRIPT}, [("--seed", "0")])]
    )
    compare(history, oracle, ["SELECT seed, epoch, val_loss FROM logs"])


def test_propagate_does_not_drop_an_assignment_found_verbatim_outside_the_block() -> None:
    from florsql.propagate import propagate

    old = (
        "import florsql as flor\n"
        "loss = 0.0\n"
        "gn = loss * 3\n"
        'for epoch in flor.loop("epoch", range(3)):\n'
        '    for step in flor.loop("step", range(4)):\n'
        "        loss = step * 2.0 + epoch\n"
        '        flor.log("loss", loss)\n'
    )
    new = old.replace(
        '        flor.log("loss", loss)\n',
        '        gn = loss * 3\n        flor.log("gn", gn)\n        flor.log("loss", loss)\n',
    )
    r = propagate(new, old)
    if r.placed:
        assert r.source.count("gn = loss * 3") == 2, r.source
    else:
        assert r.failed


LOOPVAR_A = (
    PRE
    + """
shift = []
for i in range(4):  # a module-level loop: i stays bound (3) after it
    shift.append(torch.randn(6) * 0.01)
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for j, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
            loss = loss_fn(net(X[idx] + shift[j]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("batch_i", j)  # hindsight
"""
)

LOOPVAR_B = (
    LOOPVAR_A.replace("for j, idx in", "for i, idx in")
    .replace("shift[j]", "shift[i]")
    .replace('flor.log("batch_i", j)', 'flor.log("batch_i", i)')
)


def test_a_renamed_loop_index_shadowed_by_a_module_level_name(
    recorder: Recorder, tmp_path: Path
) -> None:
    """Version B renamed the step loop's index j -> i; A's module binds an unrelated i (3).
    Silently wrong until session 24 (batch_i = 3 at every step of A): today's ``i`` is what the
    step loop binds, so in A it is ``j``."""
    history, oracle = record_versions(
        recorder,
        tmp_path,
        [
            ({"train.py": LOOPVAR_A}, [("--seed", "0")]),
            ({"train.py": LOOPVAR_B}, [("--seed", "1")]),
        ],
    )
    compare(history, oracle, ["SELECT seed, epoch, step, batch_i FROM logs"])


BOUND_ELSEWHERE = [
    pytest.param(
        # the epoch loop's target renamed ep -> e; the old module binds e = 0 before it
        'e = 0\nfor ep in flor.loop("epoch", range(3)):\n    flor.log("x", ep)\n',
        'e = 0\nfor e in flor.loop("epoch", range(3)):\n    flor.log("x", e)\n'
        '    flor.log("e2", e * 2)\n',
        'flor.log("e2", ep * 2)',
        id="epoch-target-renamed",
    ),
    pytest.param(
        # a plain inner for loop renamed k -> m; the old module binds an unrelated m = 10
        'm = 10\nfor x in flor.loop("step", [1, 2]):\n    for k in range(2):\n'
        '        flor.log("y", x + k)\n',
        'm = 10\nfor x in flor.loop("step", [1, 2]):\n    for m in range(2):\n'
        '        flor.log("y", x + m)\n        flor.log("z", x * m)\n',
        'flor.log("z", x * k)',
        id="plain-for-target-renamed",
    ),
    pytest.param(
        # both flor loops renamed, targets unpacked: (e, (i, b)) -> (ep, (j, b))
        'for ep in flor.loop("epoch", range(2)):\n'
        '    for j, b in enumerate(flor.loop("step", "ab")):\n        flor.log("b", b)\n',
        'j = 7\nfor e in flor.loop("epoch", range(2)):\n'
        '    for i, b in enumerate(flor.loop("step", "ab")):\n        flor.log("b", b)\n'
        '        flor.log("ij", (e, i, j))\n',
        None,  # j is the new module's 7, which the old file does not bind: refused
        id="nested-loops-renamed-and-an-unbound-name",
    ),
    pytest.param(
        # the new step loop has an index the old one lacks; the old module binds i = 5
        'i = 5\nfor b in flor.loop("step", "ab"):\n    flor.log("b", b)\n',
        'i = 5\nfor i, b in enumerate(flor.loop("step", "ab")):\n    flor.log("b", b)\n'
        '    flor.log("i", i)\n',
        None,
        id="loop-index-the-old-loop-lacks",
    ),
    pytest.param(
        # the old loop lacks the index but its body computes one: that binding is the one
        'for b in flor.loop("step", "ab"):\n    i = "ab".index(b)\n    flor.log("b", b)\n',
        'for i, b in enumerate(flor.loop("step", "ab")):\n    flor.log("b", b)\n'
        '    flor.log("i", i)\n',
        'flor.log("i", i)',
        id="loop-index-the-old-body-binds",
    ),
    pytest.param(
        # new: out is the logits; old: out is the loss (the logits are called logits)
        'for x in flor.loop("step", [1.0, 2.0]):\n    logits = x * 2.0\n'
        '    loss = logits - 1.0\n    out = loss\n    flor.log("loss", out)\n',
        'for x in flor.loop("step", [1.0, 2.0]):\n    out = x * 2.0\n    loss = out - 1.0\n'
        '    flor.log("loss", loss)\n    flor.log("logit", out)\n',
        'flor.log("logit", logits)',
        id="name-reused-for-another-value",
    ),
]


@pytest.mark.parametrize("old,new,want", BOUND_ELSEWHERE)
def test_propagate_a_name_the_old_version_binds_to_something_else(
    old: str, new: str, want: str
) -> None:
    """Today's statement reads a name the old version also binds, but to another value: it must
    read the old version's counterpart (or be refused), never the unrelated binding."""
    from florsql.propagate import propagate

    r = propagate("import florsql as flor\n" + new, "import florsql as flor\n" + old)
    if want is None:
        assert r.failed and not r.placed, r.source
    else:
        assert r.placed and want in r.source, (r.source, r.failed)


NORM_SCRIPT = (
    PRE
    + """
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        norm = float(net[0].weight.norm())
        flor.log("w_norm", norm)
        norm = float(net[2].weight.norm())  # hindsight
        flor.log("w2_norm", norm)  # hindsight
"""
)


def test_a_variable_reused_for_a_second_metric_in_the_same_block(
    recorder: Recorder, tmp_path: Path
) -> None:
    history, oracle = record_versions(
        recorder, tmp_path, [({"train.py": NORM_SCRIPT}, [("--seed", "0")])]
    )
    compare(history, oracle, ["SELECT seed, epoch, w_norm, w2_norm FROM logs"])


ODD_SCRIPT = (
    PRE
    + """
XV = torch.randn(12, 6)
YV = (XV[:, :2].sum(dim=1) > 0).long()
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            out = net(X[idx])
            loss = loss_fn(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("acc", float((out.argmax(1) == Y[idx]).float().mean()))  # hindsight
        total = 0.0
        for name, p in net.named_parameters():
            total += float(p.abs().sum())
            flor.log("pnorm", float(p.norm()))  # hindsight
        flor.log("total", total)
        with torch.no_grad():
            vout = net(XV)
            flor.log("acc", float((vout.argmax(1) == YV).float().mean()))  # hindsight
        flor.log("vmax", float(vout.max()))  # hindsight
"""
)


@pytest.mark.slow
def test_one_name_at_two_grains_and_statements_in_plain_loops_and_with_blocks(
    recorder: Recorder, tmp_path: Path
) -> None:
    """Today's ``acc`` is logged per step and per epoch (two statements, one name); ``pnorm``
    in a plain for over parameters (the last value of each epoch wins); one in a with-block."""
    history, oracle = record_versions(
        recorder, tmp_path, [({"train.py": ODD_SCRIPT}, [("--seed", "0"), ("--seed", "1")])]
    )
    compare(
        history,
        oracle,
        [
            "SELECT seed, epoch, step, acc FROM logs WHERE epoch = 1",
            "SELECT seed, epoch, step, acc FROM logs WHERE step IS NULL",
            "SELECT seed, epoch, pnorm, vmax, total FROM logs",
            "SELECT seed, epoch, step, acc, loss FROM logs",
        ],
    )


TWO_CALLERS = (
    PRE
    + """
XV = torch.randn(12, 6)
YV = (XV[:, :2].sum(dim=1) > 0).long()
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)


def forward(x):
    out = net(x)
    flor.log("out_mean", float(out.mean()))  # hindsight
    return out


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(forward(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            for vidx in flor.loop("vstep", torch.arange(len(XV)).split(6)):
                vloss = loss_fn(forward(XV[vidx]), YV[vidx])
                flor.log("vloss", vloss.item())
"""
)


def test_a_function_called_from_the_train_and_the_validation_loops(
    recorder: Recorder, tmp_path: Path
) -> None:
    """Today's statement in forward(), which both the step and the vstep loops call: values
    at both grains, partial query first."""
    history, oracle = record_versions(
        recorder, tmp_path, [({"train.py": TWO_CALLERS}, [("--seed", "0")])]
    )
    compare(
        history,
        oracle,
        [
            "SELECT epoch, step, vstep, out_mean FROM logs WHERE epoch = 1",
            "SELECT epoch, vstep, out_mean FROM logs WHERE vstep IS NOT NULL",
            "SELECT epoch, step, vstep, out_mean FROM logs",
        ],
    )


# --- 2. scripts shaped as projects ---------------------------------------------------------

PROJECT_MAIN = """
import argparse

import torch
from torch import nn

import florsql as flor
from trainer import Trainer


def make_data(seed):
    torch.manual_seed(seed)
    X = torch.randn(36, 6)
    Y = (X[:, :2].sum(dim=1) > 0).long()
    return X, Y


def train(args):
    seed = flor.arg("seed", args.seed)
    lr = flor.arg("lr", args.lr)
    epochs = flor.arg("epochs", args.epochs)
    X, Y = make_data(seed)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    trainer = Trainer(net, torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9))
    with flor.checkpointing(model=net, optimizer=trainer.opt):
        for epoch in flor.loop("epoch", range(epochs)):
            trainer.fit_epoch(X, Y)
            flor.log("w_norm", float(net[0].weight.norm()))  # hindsight
            flor.log("steps", trainer.steps)  # hindsight


def main():
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    train(parser.parse_args())


if __name__ == "__main__":
    main()
"""

PROJECT_TRAINER = """
import torch
from torch import nn

import florsql as flor


class Trainer:
    def __init__(self, net, opt):
        self.net = net
        self.opt = opt
        self.loss_fn = nn.CrossEntropyLoss()
        self.steps = 0

    def fit_epoch(self, X, Y):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = self.loss_fn(self.net(X[idx]), Y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.steps += 1
            flor.log("loss", loss.item())
            flor.log("gnorm", float(self.net[0].weight.grad.norm()))  # hindsight
"""

PROJECT_RUNS = [("--seed", "0", "--lr", "0.1"), ("--seed", "1", "--lr", "0.05")]


@pytest.fixture(scope="module")
def project(recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("project")
    return record_versions(
        recorder,
        root,
        [({"train.py": PROJECT_MAIN, "trainer.py": PROJECT_TRAINER}, PROJECT_RUNS)],
    )


def fresh(rec: tuple[Path, Path], dest: Path) -> tuple[Path, Path]:
    return copy_repo(rec[0], dest / "history"), copy_repo(rec[1], dest / "oracle")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT seed, lr, epoch, step, gnorm FROM logs WHERE epoch >= 1",
        *(
            pytest.param(q, marks=pytest.mark.slow)
            for q in (
                "SELECT seed, epoch, w_norm, steps FROM logs WHERE epoch = 2",
                "SELECT seed, lr, epoch, w_norm, steps FROM logs",
                "SELECT seed, epoch, step, loss, gnorm FROM logs",
            )
        ),
    ],
)
def test_project_main_argparse_and_a_trainer_class_in_a_module(
    project: tuple[Path, Path], tmp_path: Path, sql: str
) -> None:
    """main() -> train(args) with argparse beside flor.arg, the step loop in Trainer.fit_epoch
    of trainer.py; each query on a fresh store."""
    compare(*fresh(project, tmp_path), [sql])


FLAT_A = (
    PRE
    + """
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        seen = 0
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(idx)
            flor.log("loss", loss.item())
            flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
        flor.log("seen", seen)  # hindsight
        flor.log("w0", float(net[0].weight.sum()))  # hindsight
"""
)

WRAPPED_B = """
import torch
from torch import nn
import florsql as flor


def run_epoch(net, opt, loss_fn, X, Y):
    seen = 0
    for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
        loss = loss_fn(net(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(idx)
        flor.log("loss", loss.item())
        flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
    return seen


def main():
    torch.set_num_threads(1)
    seed = flor.arg("seed", 0)
    epochs = flor.arg("epochs", 3)
    torch.manual_seed(seed)
    X = torch.randn(36, 6)
    Y = (X[:, :2].sum(dim=1) > 0).long()
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            seen = run_epoch(net, opt, loss_fn, X, Y)
            flor.log("seen", seen)  # hindsight
            flor.log("w0", float(net[0].weight.sum()))  # hindsight


if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_a_flat_script_then_main_and_a_run_epoch_helper(recorder: Recorder, tmp_path: Path) -> None:
    """A: a flat script; B: the same training in main() with the step loop in run_epoch().
    Today's statements (in run_epoch's step loop, and in main's epoch loop) go into each
    version's own place; A's runs equal a re-run of A patched by hand. Where florsql cannot
    place one into A it must say so (a warning), never answer wrong."""
    history, oracle = record_versions(
        recorder,
        tmp_path,
        [
            ({"train.py": FLAT_A}, [("--seed", "0")]),
            ({"train.py": WRAPPED_B}, [("--seed", "1")]),
        ],
    )
    c = Compare(history, oracle)
    try:
        for sql in (
            "SELECT seed, epoch, step, gnorm FROM logs WHERE epoch >= 1",
            "SELECT seed, epoch, seen, w0 FROM logs",
            "SELECT seed, epoch, step, gnorm FROM logs",
        ):
            want, _ = fetch(c.oracle, sql)
            got, notes = fetch(c.history, sql)
            for row in got:
                if row not in want:  # a value not the re-run's: always wrong
                    c.items.append(f"{sql}: {row} not in the re-run's {want}")
            if len(got) != len(want) or any(r[-1] is None for r in got):
                placed_all = not any("cannot" in n or "NULL" in n for n in notes)
                if placed_all:
                    c.items.append(f"{sql}: {len(got)} rows vs {len(want)}, no warning")
    finally:
        c.close()
    c.assert_none()


def test_the_same_query_twice_when_one_version_cannot_take_the_statement(
    recorder: Recorder, tmp_path: Path
) -> None:
    history, _ = record_versions(
        recorder,
        tmp_path,
        [
            ({"train.py": FLAT_A}, [("--seed", "0")]),
            ({"train.py": WRAPPED_B}, [("--seed", "1")]),
        ],
    )
    sql = "SELECT seed, epoch, seen, w0 FROM logs"
    with florsql.connect(history, replay="auto", executor=PlanExecutor(WORKERS[-1])) as con:
        first, notes = fetch(con, sql)
        assert any("seen" in n and "NULL" in n for n in notes), notes
        second, _ = fetch(con, sql)
    assert second == first


def test_a_metric_only_the_newer_version_records_and_the_older_cannot_take(
    recorder: Recorder, tmp_path: Path
) -> None:
    b = WRAPPED_B.replace('flor.log("seen", seen)  # hindsight', 'flor.log("seen", seen)')
    b = b.replace(
        'flor.log("w0", float(net[0].weight.sum()))  # hindsight',
        'flor.log("w0", float(net[0].weight.sum()))',
    )
    history, oracle = record_versions(
        recorder,
        tmp_path,
        [
            ({"train.py": FLAT_A}, [("--seed", "0")]),
            ({"train.py": b}, [("--seed", "1")]),
        ],
    )
    with florsql.connect(history, replay="auto", executor=PlanExecutor(WORKERS[-1])) as con:
        got, _ = fetch(con, "SELECT seed, epoch, seen, w0 FROM logs")
    with florsql.connect(oracle) as ora:
        want, _ = fetch(ora, "SELECT seed, epoch, seen, w0 FROM logs WHERE seed = 1")
    assert [r for r in got if r[0] == 1] == want
    assert all(r[2] is None and r[3] is None for r in got if r[0] == 0), got


FIT_MAIN = """
import argparse

import torch

import florsql as flor
from trainer import Trainer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seed = flor.arg("seed", args.seed)
    torch.manual_seed(seed)
    trainer = Trainer(hidden=flor.arg("hidden", args.hidden))
    trainer.fit(flor.arg("epochs", args.epochs))
    flor.log("best_epoch", trainer.best_epoch)  # hindsight


if __name__ == "__main__":
    main()
"""

FIT_TRAINER = """
import torch
from torch import nn

import florsql as flor


class Trainer:
    def __init__(self, hidden):
        self.X = torch.randn(36, 6)
        self.Y = (self.X[:, :2].sum(dim=1) > 0).long()
        self.XV = torch.randn(12, 6)
        self.YV = (self.XV[:, :2].sum(dim=1) > 0).long()
        self.net = nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=0.02)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=2, gamma=0.5)
        self.loss_fn = nn.CrossEntropyLoss()
        self.best, self.best_epoch = float("inf"), -1
        self.history = []

    def step(self, idx):
        loss = self.loss_fn(self.net(self.X[idx]), self.Y[idx])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()

    def validate(self):
        with torch.no_grad():
            return float(self.loss_fn(self.net(self.XV), self.YV))

    def fit(self, epochs):
        with flor.checkpointing(model=self.net, optimizer=self.opt, sched=self.sched):
            for epoch in flor.loop("epoch", range(epochs)):
                for idx in flor.loop("step", torch.randperm(len(self.X)).split(12)):
                    loss = self.step(idx)
                    flor.log("loss", loss)
                val = self.validate()
                self.history.append(val)
                if val < self.best:
                    self.best, self.best_epoch = val, epoch
                self.sched.step()
                flor.log("val", val)
                flor.log("lr", self.sched.get_last_lr()[0])  # hindsight
                flor.log("best_so_far", self.best)  # hindsight
                flor.log("n_hist", len(self.history))  # hindsight
"""


@pytest.fixture(scope="module")
def fitproject(recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fitproject")
    return record_versions(
        recorder,
        root,
        [
            (
                {"train.py": FIT_MAIN, "trainer.py": FIT_TRAINER},
                [("--seed", "0"), ("--seed", "1", "--hidden", "4")],
            )
        ],
        period=2,
    )


@pytest.mark.parametrize(
    "sqls",
    [
        [
            "SELECT seed, epoch, lr, best_so_far, n_hist FROM logs WHERE epoch >= 2",
            "SELECT seed, hidden, epoch, lr, best_so_far, n_hist FROM logs",
            "SELECT seed, best_epoch FROM logs WHERE best_epoch IS NOT NULL",
        ],
        [
            "SELECT seed, best_epoch FROM logs WHERE best_epoch IS NOT NULL",
            "SELECT seed, epoch, val, best_so_far FROM logs WHERE epoch = 3",
        ],
    ],
    ids=["partial-then-wide", "tail-first"],
)
def test_project_trainer_fit_checkpoints_inside_a_method(
    fitproject: tuple[Path, Path], tmp_path: Path, sqls: list[str]
) -> None:
    """flor.checkpointing inside Trainer.fit (trainer.py), state on the trainer that no
    checkpoint holds (best, best_epoch, history), a scheduler registered, argparse in main();
    checkpoints every 2 epochs."""
    compare(*fresh(fitproject, tmp_path), sqls)


INLINE_A = (
    PRE
    + """
opt = torch.optim.SGD(net.parameters(), lr=flor.arg("lr", 0.1), momentum=0.9)
steps = 0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            flor.log("loss", loss.item())
        flor.log("w_norm", float(net[0].weight.norm()))  # hindsight
"""
)


def test_refactor_from_an_inline_script_to_main_and_a_trainer_module(
    recorder: Recorder, tmp_path: Path
) -> None:
    """Version A: one flat script; version B: main()/argparse and trainer.py. B's runs replay
    exactly; A's runs cannot take today's statements (train() has no counterpart in A,
    trainer.py does not exist there): no invented values, a warning naming the name, or an
    error when nothing at all can be placed."""
    from florsql.errors import ReplayError

    history, oracle = record_versions(
        recorder,
        tmp_path,
        [
            ({"train.py": INLINE_A}, [("--seed", "0", "--lr", "0.1")]),
            (
                {"train.py": PROJECT_MAIN, "trainer.py": PROJECT_TRAINER},
                [("--seed", "1", "--lr", "0.05")],
            ),
        ],
    )
    c = Compare(history, oracle)
    try:
        c("SELECT seed, epoch, w_norm FROM logs WHERE seed = 1")
        c("SELECT seed, epoch, step, gnorm FROM logs WHERE seed = 1")
        c("SELECT seed, epoch, steps FROM logs WHERE seed = 1")
        for name in ("w_norm", "gnorm", "steps"):
            try:
                rows, notes = fetch(c.history, f"SELECT seed, {name} FROM logs WHERE seed = 0")
            except ReplayError as e:
                assert name in str(e)
                continue
            assert all(r[-1] is None for r in rows), (name, rows)
            if name != "gnorm":
                assert any(name in n and "NULL" in n for n in notes), (name, notes)
            # gnorm: trainer.py is no file A's run executed, so gnorm is no hindsight column
            # of that run (docs/sql.md): no rows, and (today) no warning either
    finally:
        c.close()
    c.assert_none()


# --- 3. SQL over hindsight columns ---------------------------------------------------------

SQL_SCRIPT = (
    PRE
    + """
lr = flor.arg("lr", 0.1)
opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("grad_norm", float(net[0].weight.grad.norm()))  # hindsight
        flor.log("w_norm", float(net[0].weight.norm()))  # hindsight
"""
)

SQL_RUNS = [
    ("--seed", "0", "--lr", "0.1"),
    ("--seed", "1", "--lr", "0.1"),
    ("--seed", "0", "--lr", "0.05"),
    ("--seed", "1", "--lr", "0.05"),
]


@pytest.fixture(scope="module")
def sqlrec(recorder: Recorder, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sql")
    return record_versions(recorder, root, [({"train.py": SQL_SCRIPT}, SQL_RUNS)], period=2)


SQLS: list[tuple[str, tuple[Any, ...], bool]] = [
    ("SELECT seed, lr, epoch, avg(grad_norm) AS g FROM logs GROUP BY ALL", (), False),
    (
        "SELECT seed, lr, epoch, step, grad_norm, avg(grad_norm) OVER (PARTITION BY seed, lr "
        "ORDER BY epoch, step ROWS 2 PRECEDING) AS ma FROM logs WHERE epoch >= 1",
        (),
        False,
    ),
    (
        "SELECT a.lr, a.epoch, a.w_norm - b.w_norm AS d FROM logs a JOIN logs b "
        "ON a.epoch = b.epoch AND a.lr = b.lr WHERE a.seed = 0 AND b.seed = 1 "
        "AND a.w_norm IS NOT NULL AND b.w_norm IS NOT NULL",
        (),
        False,
    ),
    (
        "SELECT seed, lr, epoch, step, grad_norm FROM logs WHERE epoch >= ? AND seed = ?",
        (1, 1),
        False,
    ),
    (
        "SELECT seed, lr, epoch, step, grad_norm FROM logs WHERE lr = ? AND epoch = ?",
        (0.05, 2),
        False,
    ),
    ("SELECT Seed, LR, Epoch, Step, Grad_Norm FROM logs WHERE EPOCH >= 2", (), False),
    ('SELECT seed, lr, epoch, "W_NORM" FROM logs', (), False),
    ("SELECT seed, lr, epoch, step FROM logs WHERE grad_norm > 0.5", (), False),
    ("SELECT seed, lr, epoch FROM logs WHERE w_norm > 1.7", (), False),
    ("SELECT seed, lr, epoch, step FROM logs WHERE NOT (grad_norm <= 0.5)", (), False),
    ("SELECT count(*) FROM logs WHERE grad_norm IS NULL", (), False),
    ("SELECT count(*), count(grad_norm) FROM logs", (), False),
    (
        "SELECT seed, lr, epoch, step, grad_norm FROM logs ORDER BY grad_norm DESC LIMIT 3",
        (),
        True,
    ),
    ("SELECT seed, lr, epoch, w_norm FROM logs ORDER BY w_norm LIMIT 2", (), True),
    (
        "SELECT seed, lr, epoch, step, grad_norm FROM logs ORDER BY lr, seed, epoch, step LIMIT 5",
        (),
        True,
    ),
    (
        "SELECT seed, lr, epoch, step, grad_norm FROM logs ORDER BY seed DESC, lr DESC, epoch "
        "DESC, step DESC LIMIT 4",
        (),
        True,
    ),
    (
        "SELECT seed, lr, epoch, step, grad_norm FROM logs QUALIFY row_number() OVER "
        "(PARTITION BY seed, lr ORDER BY grad_norm DESC) = 1",
        (),
        False,
    ),
    (
        "SELECT seed, lr, epoch, step FROM logs WHERE grad_norm > (SELECT avg(grad_norm) "
        "FROM logs WHERE seed = 1)",
        (),
        False,
    ),
    (
        "SELECT seed, lr, epoch, step, loss FROM logs WHERE epoch = (SELECT max(epoch) "
        "FROM logs WHERE w_norm IS NOT NULL) AND grad_norm IS NOT NULL",
        (),
        False,
    ),
    (
        "SELECT DISTINCT seed, lr FROM logs WHERE seed IN (SELECT seed FROM logs "
        "WHERE w_norm > 1.75)",
        (),
        False,
    ),
    (
        "WITH l AS (SELECT * FROM logs WHERE epoch >= 2) SELECT seed, lr, epoch, step, "
        "grad_norm FROM l WHERE grad_norm IS NOT NULL",
        (),
        False,
    ),
    ("SELECT seed, lr, epoch, step, grad_norm FROM logs WHERE step = 2 AND epoch = 1", (), False),
    (
        "SELECT lr, epoch, max(grad_norm) - min(grad_norm) AS spread FROM logs "
        "GROUP BY lr, epoch HAVING max(grad_norm) > 0 ORDER BY lr, epoch",
        (),
        True,
    ),
    (
        "SELECT seed, lr, epoch, w_norm, w_norm - lag(w_norm) OVER (PARTITION BY seed, lr "
        "ORDER BY epoch) AS dw FROM logs WHERE epoch >= 1",
        (),
        False,
    ),
    ("SELECT seed, lr, epoch, step, grad_norm, w_norm FROM logs WHERE epoch >= 2", (), False),
    (
        "SELECT seed, lr, epoch, step, grad_norm FROM logs WHERE epoch >= 2 OR grad_norm > 1",
        (),
        False,
    ),
    ("SELECT seed, lr, epoch, step, grad_norm FROM logs WHERE lr > 0.07 LIMIT 100", (), False),
    (
        "SELECT seed, lr, epoch, step, grad_norm FROM logs WHERE epoch BETWEEN ? AND ? "
        "AND seed IN (?, ?) AND lr = ?",
        (1, 1, 1, 5, 0.1),
        False,
    ),
    (
        "SELECT seed, lr, epoch, w_norm, '?' AS q FROM logs WHERE w_norm > ? AND lr < ?",
        (1.0, 0.07),
        False,
    ),
    (
        "SELECT seed, lr, epoch, step, grad_norm FROM logs WHERE seed = ? "
        "ORDER BY lr, epoch, step LIMIT ?",
        (1, 4),
        True,
    ),
]


@pytest.mark.parametrize(
    "sql,params,ordered",
    # every third query in the default run, all of them in the slow run
    [
        pytest.param(*q, id=str(i), marks=() if i % 6 == 0 else pytest.mark.slow)
        for i, q in enumerate(SQLS)
    ],
)
def test_sql_over_hindsight_columns_on_a_fresh_store(
    sqlrec: tuple[Path, Path], tmp_path: Path, sql: str, params: tuple[Any, ...], ordered: bool
) -> None:
    history, oracle = fresh(sqlrec, tmp_path)
    c = Compare(history, oracle)
    try:
        c(sql, params, ordered=ordered)
    finally:
        c.close()
    c.assert_none()


# --- 4. a killed run in a multi-version history --------------------------------------------

KILL_A = (
    PRE
    + """
import os
import sys

opt = torch.optim.SGD(net.parameters(), lr=0.1)
running = 0.0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for i, idx in enumerate(flor.loop("step", torch.randperm(len(X)).split(12))):
            if os.environ.get("KILL_AT") == f"{epoch},{i}":
                print("waiting", flush=True)
                sys.stdin.readline()  # the test kills the process here (SIGKILL)
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            flor.log("loss", loss.item())
            flor.log("gnorm", float(net[0].weight.grad.norm()))  # hindsight
        flor.log("running", running)  # hindsight
"""
)

KILL_B = KILL_A.replace(
    "opt = torch.optim.SGD(net.parameters(), lr=0.1)",
    "opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.5)",
).replace(
    'flor.log("loss", loss.item())', 'flor.log("loss", loss.item())\n            flor.log("b", 1)'
)


def test_a_killed_run_of_the_newer_version_beside_finished_runs_of_the_older(
    recorder: Recorder, tmp_path: Path
) -> None:
    """A's run (seed 0) finishes; B's run (seed 1) is SIGKILLed at epoch 1, step 1, every
    record on disk. Hindsight values of every epoch a run ended equal the re-run's; the epoch
    B's run died in gets none (replay runs whole outer iterations: its rows are there, NULL,
    as tests/test_replay_corpus_stranger.py pins), and nothing past it is invented."""
    from tests.test_replay_corpus_stranger import _kill_when_flushed

    history, oracle = record_versions(
        recorder, tmp_path, [({"train.py": KILL_A}, [("--seed", "0")])]
    )
    for repo, conv in ((history, old_source), (oracle, patched_source)):
        write(repo / "train.py", conv(KILL_B))
        git(repo, "commit", "-qam", "B")
        env = {"KILL_AT": "1,1", "FLORSQL_FLUSH_INTERVAL": "0", "FLORSQL_CHECKPOINT_PERIOD": "1"}
        _kill_when_flushed(repo, env, rows=9 + 3)  # A: 3 epochs x 3 steps; B: epoch 0
    write(history / "train.py", patched_source(KILL_B))
    ended = "NOT (seed = 1 AND epoch >= 1)"
    c = Compare(history, oracle)
    try:
        c(f"SELECT seed, epoch, step, gnorm FROM logs WHERE epoch >= 1 AND {ended}")
        c(f"SELECT seed, epoch, running FROM logs WHERE {ended}")
        c(f"SELECT seed, epoch, step, loss, gnorm FROM logs WHERE {ended}")
        died = fetch(
            c.history, "SELECT epoch, step, gnorm, running FROM logs WHERE seed = 1 AND epoch >= 1"
        )[0]
        assert all(r[2] is None and r[3] is None for r in died), died
        counts = fetch(
            c.history, "SELECT seed, count(gnorm), count(running) FROM logs GROUP BY seed"
        )[0]
        assert counts == [(0, 9, 3), (1, 3, 1)], counts
    finally:
        c.close()
    c.assert_none()


@pytest.mark.slow
def test_a_killed_run_of_the_older_version_checkpointed_every_two_epochs(
    recorder: Recorder, tmp_path: Path
) -> None:
    """A's run (seed 1) is SIGKILLed at epoch 2, step 1 with checkpoints every 2 epochs (so
    epoch 1 has none); B's run (seed 0) finishes. Partial queries first: epochs 0-1 of the
    killed run equal the re-run's, epoch 2 gets nothing."""
    from tests.test_replay_corpus_stranger import _kill_when_flushed

    history = make_repo(tmp_path / "history", {"train.py": old_source(KILL_A)})
    oracle = make_repo(tmp_path / "oracle", {"train.py": patched_source(KILL_A)})
    env = {"KILL_AT": "2,1", "FLORSQL_FLUSH_INTERVAL": "0", "FLORSQL_CHECKPOINT_PERIOD": "2"}
    for repo in (history, oracle):
        _kill_when_flushed(repo, env, rows=6)  # epochs 0 and 1, 3 steps each
    for repo, conv in ((history, old_source), (oracle, patched_source)):
        write(repo / "train.py", conv(KILL_B))
        git(repo, "commit", "-qam", "B")
    recorder.run(
        [
            [Job(history, "train.py", ("--seed", "0"), {"FLORSQL_CHECKPOINT_PERIOD": "2"})],
            [Job(oracle, "train.py", ("--seed", "0"), {"FLORSQL_CHECKPOINT_PERIOD": "2"})],
        ]
    )
    write(history / "train.py", patched_source(KILL_B))
    c = Compare(history, oracle)
    try:
        c("SELECT seed, epoch, step, gnorm FROM logs WHERE epoch = 1")
        c("SELECT seed, epoch, running FROM logs WHERE epoch >= 1 AND seed = 1")
        c("SELECT seed, epoch, step, loss, gnorm FROM logs")
        c("SELECT seed, epoch, running FROM logs")
        counts = fetch(
            c.history, "SELECT seed, count(gnorm), count(running) FROM logs GROUP BY seed"
        )[0]
        assert counts == [(0, 9, 3), (1, 6, 2)], counts
    finally:
        c.close()
    c.assert_none()
