"""Replaying runs whose torch uses every core: 1 vs 2 workers (issue 12, item 0).

Two runs of a 2->256->256->2 MLP on 12k points, recorded with torch's default thread count (every
core), then a step-level hindsight query (the last epochs, each replayed in full) on
``LocalExecutor(1)`` and ``LocalExecutor(2)``. Before the executor ran at most cores // threads
tasks at once, 2 workers oversubscribed the cores (2 x 2 threads on 2 cores). Printed per
configuration: the query's wall and CPU seconds, the executor's wall time, EXPLAIN's wall-time
estimate and tasks at once, and whether the values equal the 1-worker answer.

    python benchmarks/threads.py [--quick] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Row, Series, write  # noqa: E402

from florsql.engine.session import Engine  # noqa: E402
from florsql.replay import LocalExecutor, PlanExecutor  # noqa: E402
from florsql.store import layout  # noqa: E402

TRAIN = """
import torch
from torch import nn
import florsql as flor

lr = flor.arg("lr", 0.05)
epochs = flor.arg("epochs", 6)
torch.manual_seed(0)
x = torch.randn(12000, 2)
y = (x[:, 0] * x[:, 1] > 0).long()
net = nn.Sequential(
    nn.Linear(2, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2)
)
opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(12000).split(1000)):
            loss = loss_fn(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("acc", (net(x).argmax(dim=1) == y).float().mean().item())
flor.commit()
"""
ANCHOR = '            flor.log("loss", loss.item())\n'
NEW = '            flor.log("grad_norm", float(sum(p.grad.norm() for p in net.parameters())))\n'


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def record(where: Path, epochs: int, lrs: Sequence[float]) -> Path:
    repo = where / "history"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    (repo / "train.py").write_text(TRAIN.lstrip())
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "v1")
    env = {**os.environ, "PYTHONHASHSEED": "0", "FLORSQL_CHECKPOINT_PERIOD": "1"}
    for lr in lrs:  # one after another, as a user's runs: each with every core
        argv = [sys.executable, "train.py", "--lr", str(lr), "--epochs", str(epochs)]
        subprocess.run(argv, cwd=repo, env=env, check=True, capture_output=True)
    (repo / "train.py").write_text(TRAIN.lstrip().replace(ANCHOR, ANCHOR + NEW))
    return repo


def fresh(history: Path, where: Path) -> Path:
    dst = Path(tempfile.mkdtemp(prefix="cfg-", dir=where)) / "repo"
    shutil.copytree(history, dst, symlinks=True)
    store = layout.store_dir(dst)
    for p in store.glob("index.*"):
        p.unlink()
    for name in ("replays", "worktrees", "cache"):
        shutil.rmtree(store / name, ignore_errors=True)
    return dst


def measure(history: Path, where: Path, sql: str, workers: int) -> dict[str, object]:
    repo = fresh(history, where)
    executor = PlanExecutor(LocalExecutor(workers))
    cpu0 = cpu_seconds()
    with Engine(repo, replay="auto", executor=executor) as eng:
        cost = eng.plan(sql).replay.cost
        t0 = time.perf_counter()
        table = eng.execute(sql).table
        wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    report = executor.last
    assert report is not None
    values = sorted(
        (r["lr"], r["epoch"], r["step"], round(r["grad_norm"], 9))
        for r in table.to_pylist()
        if r["grad_norm"] is not None
    )
    shutil.rmtree(repo.parent, ignore_errors=True)
    return {
        "workers": workers,
        "wall": wall,
        "cpu": cpu,
        "replay": report.seconds,
        "estimate": getattr(cost, "wall", cost.seconds),
        "at_once": getattr(cost, "at_once", workers),
        "tasks": len(report.results),
        "values": values,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (about a minute)")
    parser.add_argument("--dir", type=Path, help="work here and keep it (default: a temp dir)")
    ns = parser.parse_args(argv)
    epochs, k = (4, 2) if ns.quick else (10, 4)
    where = ns.dir or Path(tempfile.mkdtemp(prefix="florsql-threads-"))
    where.mkdir(parents=True, exist_ok=True)
    print(
        f"threads benchmark: 2 runs, {epochs} epochs of 12 steps (2->256->256->2 MLP, 12k "
        f"points), torch's default threads; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    t0 = time.perf_counter()
    history = record(where, epochs, (0.05, 0.1))
    recorded = time.perf_counter() - t0
    sql = f"SELECT lr, epoch, step, grad_norm FROM logs WHERE epoch >= {epochs - k}"
    rows = [measure(history, where, sql, w) for w in (1, 2)]
    print(f"recording both runs, one after another: {recorded:.1f} s")
    print(f"step-level statement, last {k} of {epochs} epochs:")
    print(f"  {'workers':>7} {'at once':>7} {'tasks':>5} {'query s':>8} {'cpu s':>6} "
          f"{'replay s':>8} {'EXPLAIN s':>9} {'est/act':>7} {'values equal':>12}")  # fmt: skip
    for r in rows:
        ratio = float(r["estimate"]) / float(r["replay"]) if r["replay"] else 0.0  # type: ignore[arg-type]
        equal = "yes" if r["values"] == rows[0]["values"] else "NO"
        print(
            f"  {r['workers']:>7} {r['at_once']:>7} {r['tasks']:>5} {r['wall']:>8.2f} "
            f"{r['cpu']:>6.1f} {r['replay']:>8.2f} {r['estimate']:>9.2f} {ratio:>7.2f} "
            f"{equal:>12}"
        )
    one, two = float(rows[0]["wall"]), float(rows[1]["wall"])  # type: ignore[arg-type]
    print(f"2 workers / 1 worker, query time: {two / one:.2f} (goal <= 1.1: never oversubscribed)")
    out = [
        Row("2 workers / 1 worker, runs using every core", two / one, "x", 1.1, "<="),
        *(
            Row(
                f"EXPLAIN estimate / replay time, {r['workers']} worker(s)",
                float(r["estimate"]) / float(r["replay"]),  # type: ignore[arg-type]
                "x",
                1.5,
                "within",
            )
            for r in rows
        ),
    ]
    series = [
        Series(
            "replay_vs_workers",
            "torch-threaded runs (step-level)",
            [float(r["workers"]) for r in rows],  # type: ignore[arg-type]
            [float(r["wall"]) for r in rows],  # type: ignore[arg-type]
        )
    ]
    write("threads", out, series, quick=ns.quick)
    if ns.dir is None:
        shutil.rmtree(where, ignore_errors=True)
    return 0 if all(r["values"] == rows[0]["values"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
