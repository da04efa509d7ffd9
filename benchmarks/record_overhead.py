"""Recording overhead: one training loop run plain and instrumented, alternating.

Prints overhead %, microseconds per ``flor.log`` call, checkpoint cost per epoch and the time of
``import florsql``. Goals (issue 2): overhead <= 1%, <= 2 us per log call, import <= 50 ms.
For reference, FlorDB 4.0.1 measured on these machines: ~0.2 ms per log call at 10k calls,
3 ms at 100 calls, and 0.5 s to import.

    python benchmarks/record_overhead.py [--repeats 5] [--epochs 10] [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

TRAIN = """
import json, sys, time
import torch
from torch import nn
MODE = sys.argv[1]
if MODE == "plain":
    import contextlib
    class flor:  # the same script with florsql taken out
        arg = staticmethod(lambda name, default: default)
        log = staticmethod(lambda name, value: value)
        loop = staticmethod(lambda name, it: it)
        checkpointing = staticmethod(lambda **kw: contextlib.nullcontext())
        commit = staticmethod(lambda: None)
else:
    import florsql as flor

t_start = time.perf_counter()
epochs = flor.arg("epochs", {epochs})  # the first record call starts the run
start_ms = (time.perf_counter() - t_start) * 1000
steps = flor.arg("steps", {steps})
torch.manual_seed(0)
torch.set_num_threads(1)
net = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(64, 128), torch.randint(0, 10, (64,))
loss_fn = nn.CrossEntropyLoss()
t0 = time.perf_counter()
c0 = time.process_time()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for step in flor.loop("step", range(steps)):
            out = net(x)
            loss = loss_fn(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("lr", 0.01)
            flor.log("step_in_epoch", step)
flor.commit()
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({{"seconds": seconds, "cpu": cpu, "start_ms": start_ms}}))
"""

MICRO = """
import time, json
import florsql as flor
N = 200_000
for _ in flor.loop("warm", range(1)):
    flor.log("w", 0.0)
t0 = time.perf_counter()
for i in range(N):
    flor.log("x", 0.5)
per_call = (time.perf_counter() - t0) / N
t0 = time.perf_counter()
for i in range(N):
    pass
empty = (time.perf_counter() - t0) / N
t0 = time.perf_counter()
for e in flor.loop("outer", range(1)):
    for i in flor.loop("inner", range(N)):
        pass
per_iter = (time.perf_counter() - t0) / N
us = {"per_call_us": (per_call - empty) * 1e6, "per_iter_us": (per_iter - empty) * 1e6}
print(json.dumps(us))
"""


def _run(repo: Path, script: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, script, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env={"FLORSQL_CHECKPOINT_PERIOD": "1", "PATH": "/usr/bin:/bin"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _writer_cpu(repo: Path) -> float:
    """Median CPU seconds the background writer spent per instrumented run."""
    docs = [json.loads(p.read_text()) for p in (repo / ".florsql" / "runs").glob("*/run.json")]
    return statistics.median(
        d.get("writer_cpu_seconds", 0.0) for d in docs if d["argv"][1:2] == ["flor"]
    )


def _import_ms(repeats: int) -> float:
    code = "import time; t = time.perf_counter(); import florsql; print(time.perf_counter() - t)"
    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(repeats)
    ]
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=400)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        (repo / "train.py").write_text(
            textwrap.dedent(TRAIN.format(epochs=ns.epochs, steps=ns.steps))
        )
        (repo / "micro.py").write_text(MICRO)
        plain, instr, start, plain_cpu, instr_cpu = [], [], [], [], []
        for _ in range(ns.repeats):  # alternate so drift hits both sides alike
            out = _run(repo, "train.py", "plain")
            plain.append(out["seconds"])
            plain_cpu.append(out["cpu"])
            out = _run(repo, "train.py", "flor")
            instr.append(out["seconds"])
            instr_cpu.append(out["cpu"])
            start.append(out["start_ms"])
        micros = [_run(repo, "micro.py") for _ in range(3)]
        micro = statistics.median(m["per_call_us"] for m in micros)
        per_iter = statistics.median(m["per_iter_us"] for m in micros)
        from florsql.store.index import Index

        with Index.open(repo) as ix:
            ix.refresh()
            writer_cpu = _writer_cpu(repo)
            copy_ms, write_ms, n = ix.con.sql(
                "SELECT avg(copy_seconds) * 1000, avg(write_seconds) * 1000, count(*) "
                "FROM checkpoints WHERE loop_name = 'epoch'"
            ).fetchall()[0]
        import_ms = _import_ms(7)
    p, i = statistics.median(plain), statistics.median(instr)
    calls = ns.epochs * ns.steps * 3
    print(
        f"training loop: {ns.epochs} epochs x {ns.steps} steps, {calls} flor.log calls, "
        f"per-epoch checkpoints of a 35k-parameter MLP + SGD momentum; median of {ns.repeats}"
    )
    print(f"{'':28}{'plain':>10}{'florsql':>10}{'goal':>10}")
    print(f"{'loop seconds':28}{p:10.3f}{i:10.3f}")
    print(f"{'overhead % (wall)':28}{'':10}{(i - p) / p * 100:10.2f}{'<= 1':>10}")
    pc, ic = statistics.median(plain_cpu), statistics.median(instr_cpu)
    print(f"{'loop CPU seconds':28}{pc:10.3f}{ic:10.3f}")
    print(f"{'overhead % (CPU, all threads)':28}{'':10}{(ic - pc) / pc * 100:10.2f}{'<= 1':>10}")
    spread = (max(plain) - min(plain)) / p * 100
    print(f"{'plain run-to-run spread %':28}{spread:10.1f}  (the noise floor of this machine)")
    print(f"{'us per flor.log (200k calls)':28}{'':10}{micro:10.3f}{'<= 2':>10}")
    print(f"{'us per flor.loop iteration':28}{'':10}{per_iter:10.3f}")
    print(f"{'writer thread CPU s / run':28}{'':10}{writer_cpu:10.3f}")
    iters = ns.epochs * (ns.steps + 1)
    own = (calls * micro + iters * per_iter) / 1e6 + ns.epochs * copy_ms / 1000 + writer_cpu
    print(
        f"{'florsql own cost % (sum)':28}{'':10}{own / p * 100:10.2f}{'<= 1':>10}"
        "  (training-thread calls + copies + writer CPU, over the plain loop time)"
    )
    print(f"{'checkpoint copy ms / epoch':28}{'':10}{copy_ms:10.3f}")
    print(f"{'checkpoint write ms / epoch':28}{'':10}{write_ms:10.3f}{'(background)':>14}")
    print(f"{'checkpoints taken':28}{'':10}{n / ns.repeats:10.1f}")
    print(f"{'import florsql ms':28}{'':10}{import_ms:10.1f}{'<= 50':>10}")
    print(f"{'first record call ms':28}{'':10}{statistics.median(start):10.1f}")
    print("FlorDB 4.0.1 reference (measured here earlier): 200 us/log at 10k calls, import 500 ms")


if __name__ == "__main__":
    main()
