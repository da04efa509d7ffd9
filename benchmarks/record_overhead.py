"""Recording overhead: one training loop run plain and recorded, in interleaved pairs.

The script logs 3 values per step of a small MLP (a step well under 0.5 ms), in the environment
users have: pandas and polars installed (the dev extras). Each pair runs the plain script, then
the recorded one, in the same run of this benchmark; the overhead is the median over the pairs
of (recorded - plain) / plain loop time. Also printed: the training thread's own CPU time (so
the slowdown the loop feels is told apart from the writer thread's work), florsql's own cost
(log and loop calls, checkpoint copies, the writer's CPU), whether the recorded process ever
imported pandas, microseconds per ``flor.log`` call, checkpoint cost and the time of
``import florsql``. Goals (issue 12): overhead <= 1% (median of 5 interleaved pairs), <= 2 us
per log call, import <= 50 ms. For reference, FlorDB 4.0.1 measured on these machines: ~0.2 ms
per log call at 10k calls, 3 ms at 100 calls, 0.5 s to import, +15% on this kind of script.

Then a sweep of the log calls per step (1, 3 and 10; ``--sweep-pairs`` interleaved pairs at 1
and 10, the headline pairs at 3): the overhead against log calls per second, the series of the
report's "overhead_vs_logs" plot. Every figure goes to ``benchmarks/results/record_overhead.json``.

    python benchmarks/record_overhead.py [--pairs 5] [--epochs 20] [--steps 400] [--src DIR]
        [--sweep-pairs 3] [--quick]

``--src DIR`` records with the florsql package found in DIR (an older checkout, say) instead of
the installed one: the before/after figures of a change come from one machine and one run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Row, Series, write

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
th0 = time.thread_time()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for step in flor.loop("step", range(steps)):
            out = net(x)
            loss = loss_fn(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
{logs}
flor.commit()
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
thread = time.thread_time() - th0
out = {{"seconds": seconds, "cpu": cpu, "thread": thread, "start_ms": start_ms}}
print(json.dumps({{**out, "pandas": "pandas" in sys.modules, "pyarrow": "pyarrow" in sys.modules}}))
"""

#: The log calls of one step: the first 3 are the headline script's; more are extra metrics.
LOG_LINES = (
    'flor.log("loss", loss.item())',
    'flor.log("lr", 0.01)',
    'flor.log("step_in_epoch", step)',
)
#: Log calls per step of the sweep behind the "overhead against log calls per second" plot.
SWEEP = (1, 3, 10)


def train_source(epochs: int, steps: int, logs: int = 3) -> str:
    """The training script with ``logs`` flor.log calls per step."""
    lines = [*LOG_LINES, *(f'flor.log("m{k}", step * 0.5)' for k in range(3, logs))][:logs]
    body = "\n".join(" " * 12 + line for line in lines)
    return textwrap.dedent(TRAIN.format(epochs=epochs, steps=steps, logs=body))


MICRO = """
import time, json
import florsql as flor
# The fastest of many short blocks: on a loaded machine a block's time is its cost plus
# whatever preempted it, so the minimum is the closest reading of the cost itself.
BLOCKS, N = 40, 5_000
def best(fn):
    times = []
    for _ in range(BLOCKS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) / N
def logs():
    for i in range(N):
        flor.log("x", 0.5)
def empty():
    for i in range(N):
        pass
def iters():
    for i in flor.loop("inner", range(N)):
        pass
for _ in flor.loop("warm", range(1)):
    flor.log("w", 0.0)
per_call, per_empty = best(logs), best(empty)
for e in flor.loop("outer", range(1)):
    per_iter = best(iters)
us = {"per_call_us": (per_call - per_empty) * 1e6, "per_iter_us": (per_iter - per_empty) * 1e6}
print(json.dumps(us))
"""


#: florsql's per-step cost where it runs, between training steps (their work evicts florsql's
#: code and data from the CPU caches, so a call costs several times its tight-loop time): one
#: recorded process runs blocks of steps plain, with a flor.loop, with 3 flor.log calls, with
#: both, and with the floor, in turn; the median block of each against the plain ones. Unlike
#: the pairs of processes above it is not moved by one process's luck with the machine (memory
#: layout, the other core's load), so it is the steadier reading of what the calls cost.
#: The floor is the least any Python-level record API costs there: a generator that yields the
#: items it is given, and 3 calls of a function that appends the value to an array and returns
#: it (no name, no context, no clock).
BLOCKS = """
import json, statistics, time
import torch
from torch import nn
import florsql as flor
torch.manual_seed(0)
torch.set_num_threads(1)
net = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(64, 128), torch.randint(0, 10, (64,))
loss_fn = nn.CrossEntropyLoss()
flor.arg("blocks", 1)
def step():
    out = net(x); loss = loss_fn(out, y); opt.zero_grad(); loss.backward(); opt.step()
    return loss
from array import array
kept = array("d")
def floor_log(name, value):
    kept.append(value)
    return value
def floor_loop(items):
    for item in items:
        yield item
N, KINDS = 300, ("plain", "loop", "logs", "both", "floor")
res = {k: [] for k in KINDS}
for block in flor.loop("block", range(60)):
    kind = KINDS[block % len(KINDS)]
    t = time.thread_time()
    if kind == "plain":
        for s in range(N):
            loss = step(); loss.item(); 0.01; s
    elif kind == "loop":
        for s in flor.loop("step", range(N)):
            loss = step(); loss.item(); 0.01; s
    elif kind == "logs":
        for s in range(N):
            loss = step()
            flor.log("loss", loss.item()); flor.log("lr", 0.01); flor.log("step_in_epoch", s)
    elif kind == "both":
        for s in flor.loop("step2", range(N)):
            loss = step()
            flor.log("loss", loss.item()); flor.log("lr", 0.01); flor.log("step_in_epoch", s)
    else:
        for s in floor_loop(range(N)):
            loss = step()
            floor_log("loss", loss.item()); floor_log("lr", 0.01); floor_log("step_in_epoch", s)
    res[kind].append((time.thread_time() - t) / N * 1e6)
plain = statistics.median(res["plain"][2:])
extra = {k: statistics.median(res[k][2:]) - plain for k in KINDS[1:]}
print(json.dumps({"step_us": plain, **extra}))
"""


def _run(repo: Path, script: str, *args: str, src: str | None = None) -> dict[str, float]:
    env = {"FLORSQL_CHECKPOINT_PERIOD": "1", "PATH": "/usr/bin:/bin"}
    if src:
        env["PYTHONPATH"] = src
    out = subprocess.run(
        [sys.executable, script, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _writer_cpu(repo: Path, key: str = "writer_cpu_seconds") -> float:
    """Median CPU seconds the background writer's threads spent per instrumented run."""
    docs = [json.loads(p.read_text()) for p in (repo / ".florsql" / "runs").glob("*/run.json")]
    return statistics.median(d.get(key, 0.0) for d in docs if d["argv"][1:2] == ["flor"])


def _import_ms(repeats: int, src: str | None) -> float:
    code = "import time; t = time.perf_counter(); import florsql; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": src} if src else None
    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
            ).stdout
        )
        for _ in range(repeats)
    ]
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--src", help="record with the florsql package in this folder")
    ap.add_argument(
        "--sweep-pairs", type=int, default=3, help="pairs at each other rate of log calls"
    )
    ap.add_argument("--quick", action="store_true", help="3 pairs of 5 epochs (about a minute)")
    ns = ap.parse_args()
    if ns.quick:
        ns.pairs, ns.epochs, ns.sweep_pairs = 3, 5, 2
    src = os.path.abspath(ns.src) if ns.src else None
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        (repo / "train.py").write_text(train_source(ns.epochs, ns.steps))
        (repo / "micro.py").write_text(MICRO)
        (repo / "blocks.py").write_text(BLOCKS)
        plain, instr = [], []
        for _ in range(ns.pairs):  # interleaved: drift and other load hit both sides alike
            plain.append(_run(repo, "train.py", "plain"))
            instr.append(_run(repo, "train.py", "flor", src=src))
        # The sweep: the same loop with fewer and more log calls per step (fewer pairs each),
        # in a repository of its own, so the figures read from this one's index stay the
        # headline script's.
        sweep: dict[int, tuple[list[dict[str, float]], list[dict[str, float]]]] = {
            3: (plain, instr)
        }
        other = repo / "sweep"
        other.mkdir()
        subprocess.run(["git", "init", "-q", str(other)], check=True)
        for logs in (n for n in SWEEP if n != 3):
            (other / f"train{logs}.py").write_text(train_source(ns.epochs, ns.steps, logs))
            sp: list[dict[str, float]] = []
            si: list[dict[str, float]] = []
            for _ in range(ns.sweep_pairs):
                sp.append(_run(other, f"train{logs}.py", "plain"))
                si.append(_run(other, f"train{logs}.py", "flor", src=src))
            sweep[logs] = (sp, si)
        micros = [_run(repo, "micro.py", src=src) for _ in range(3)]
        micro = statistics.median(m["per_call_us"] for m in micros)
        per_iter = statistics.median(m["per_iter_us"] for m in micros)
        blocks = [_run(repo, "blocks.py", src=src) for _ in range(3)]
        block = {k: statistics.median(b[k] for b in blocks) for k in blocks[0]}
        from florsql.store.index import Index

        with Index.open(repo) as ix:
            ix.refresh()
            writer_cpu = _writer_cpu(repo)
            copy_ms, write_ms, n = ix.con.sql(
                "SELECT avg(copy_seconds) * 1000, avg(write_seconds) * 1000, count(*) "
                "FROM checkpoints WHERE loop_name = 'epoch'"
            ).fetchall()[0]
        import_ms = _import_ms(7, src)

    def pct(
        key: str, pairs: tuple[list[dict[str, float]], list[dict[str, float]]] | None = None
    ) -> float:
        ps, xs = pairs or (plain, instr)
        return statistics.median(
            (i[key] - p[key]) / p[key] * 100 for p, i in zip(ps, xs, strict=True)
        )

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    p, i = med(plain, "seconds"), med(instr, "seconds")
    calls = ns.epochs * ns.steps * 3
    step_ms = p / (ns.epochs * ns.steps) * 1000
    print(
        f"training loop: {ns.epochs} epochs x {ns.steps} steps of {step_ms:.3f} ms, 3 flor.log "
        f"calls a step ({calls} in all), per-epoch checkpoints of a 35k-parameter MLP + SGD "
        f"momentum; median of {ns.pairs} interleaved plain/recorded pairs"
    )
    print(
        f"environment: pandas {_installed('pandas')}, polars {_installed('polars')}, "
        f"pyarrow {_installed('pyarrow')}; florsql from {src or 'the installed package'}"
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min) at the end: {load} on {os.cpu_count()} cores")
    print(f"{'':32}{'plain':>10}{'florsql':>10}{'goal':>10}")
    print(f"{'loop seconds':32}{p:10.3f}{i:10.3f}")
    print(f"{'overhead % (wall)':32}{'':10}{pct('seconds'):10.2f}{'<= 1':>10}")
    th_p, th_i = med(plain, "thread"), med(instr, "thread")
    print(f"{'training thread CPU seconds':32}{th_p:10.3f}{th_i:10.3f}")
    print(f"{'overhead % (training thread CPU)':32}{'':10}{pct('thread'):10.2f}")
    pc, ic = med(plain, "cpu"), med(instr, "cpu")
    print(f"{'process CPU seconds':32}{pc:10.3f}{ic:10.3f}")
    print(f"{'overhead % (CPU, all threads)':32}{'':10}{pct('cpu'):10.2f}")
    pairs = sorted(
        (x["seconds"] - y["seconds"]) / y["seconds"] * 100
        for y, x in zip(plain, instr, strict=True)
    )
    print(f"{'pair overheads % (sorted)':32}{'':10}  {', '.join(f'{v:.2f}' for v in pairs)}")
    spread = (max(r["seconds"] for r in plain) - min(r["seconds"] for r in plain)) / p * 100
    print(f"{'plain run-to-run spread %':32}{spread:10.1f}  (the noise floor of this machine)")
    imported = sum(bool(r.get("pandas")) for r in instr)
    print(f"{'recorded runs importing pandas':32}{'':10}{imported:10d}{'0':>10}")
    with_arrow = sum(bool(r.get("pyarrow")) for r in instr)
    print(
        f"{'recorded runs importing pyarrow':32}{'':10}{with_arrow:10d}"
        "  (row files: readers convert them)"
    )
    print(f"{'us per flor.log (min of blocks)':32}{'':10}{micro:10.3f}{'<= 2':>10}")
    print(f"{'us per flor.loop iteration':32}{'':10}{per_iter:10.3f}")
    both_pct = block["both"] / block["step_us"] * 100
    print(
        f"{'between steps, us a step':32}{'':10}{block['both']:10.2f}  (in-process blocks: "
        f"flor.loop {block['loop']:.2f} + 3 logs {block['logs']:.2f}; {both_pct:.2f}% of a "
        f"{block['step_us']:.0f} us step)"
    )
    floor_pct = block["floor"] / block["step_us"] * 100
    print(
        f"{'floor between steps, us a step':32}{'':10}{block['floor']:10.2f}  (a bare generator "
        f"and 3 calls of a bare function: {floor_pct:.2f}% of the step, the least a Python-level "
        "API costs here)"
    )
    print(f"{'writer CPU s / run':32}{'':10}{writer_cpu:10.3f}  (the writer threads)")
    iters = ns.epochs * (ns.steps + 1)
    own = (calls * micro + iters * per_iter) / 1e6 + ns.epochs * copy_ms / 1000 + writer_cpu
    print(
        f"{'florsql own cost % (sum)':32}{'':10}{own / p * 100:10.2f}{'<= 1':>10}"
        "  (training-thread calls + copies + writer CPU, over the plain loop time)"
    )
    print(f"{'checkpoint copy ms / epoch':32}{'':10}{copy_ms:10.3f}")
    print(f"{'checkpoint write ms / epoch':32}{'':10}{write_ms:10.3f}{'(background)':>14}")
    print(f"{'checkpoints taken':32}{'':10}{n / ns.pairs:10.1f}")
    print(f"{'import florsql ms':32}{'':10}{import_ms:10.1f}{'<= 50':>10}")
    print(f"{'first record call ms':32}{'':10}{med(instr, 'start_ms'):10.1f}")
    print("FlorDB 4.0.1 reference (measured here earlier): 200 us/log at 10k calls, import 500 ms")
    steps_total = ns.epochs * ns.steps
    points = []  # (log calls a step, calls per second of the plain loop, wall %, thread %)
    for logs in sorted(sweep):
        rate = logs * steps_total / med(sweep[logs][0], "seconds")
        points.append((logs, rate, pct("seconds", sweep[logs]), pct("thread", sweep[logs])))
    print(f"sweep of log calls per step (median of {ns.sweep_pairs} pairs each; 3: the above):")
    print(f"{'logs a step':>14}{'calls/s':>12}{'overhead %':>12}{'thread CPU %':>14}")
    for logs, rate, wall, thread in points:
        print(f"{logs:14d}{rate:12.0f}{wall:12.2f}{thread:14.2f}")
    rows = [
        Row("overhead % (wall), median of pairs", pct("seconds"), "%", 1, "<="),
        Row("overhead % (training thread CPU)", pct("thread"), "%"),
        Row("us per flor.log", micro, "us", 2, "<="),
        Row(
            "us a step for flor.loop + 3 flor.log, between torch steps",
            block["both"],
            "us",
            note=f"{both_pct:.2f}% of the step; in-process blocks, median of 3 processes",
        ),
        Row(
            "floor: a bare generator + 3 calls of a bare function, between torch steps",
            block["floor"],
            "us",
            note=f"{floor_pct:.2f}% of the step: the least any Python-level record API costs",
        ),
        Row("import florsql ms", import_ms, "ms", 50, "<="),
        Row("recorded runs importing pandas", imported, "", 0, "<="),
    ]
    for logs, rate, wall, _ in points:
        if logs != 3:  # the goal is for >= 3 log calls per step of <= 0.5 ms
            note = f"{rate:.0f} calls/s, median of {ns.sweep_pairs} pairs"
            rows.append(Row(f"overhead % (wall), {logs} log calls a step", wall, "%",
                            1 if logs >= 3 else None, "<=", note=note))  # fmt: skip
    xs = [rate for _, rate, _, _ in points]
    write(
        "record_overhead",
        rows,
        [
            Series("overhead_vs_logs", "wall, median of pairs", xs, [w for *_, w, _ in points]),
            Series("overhead_vs_logs", "training thread CPU", xs, [t for *_, t in points]),
        ],
        quick=ns.quick,
    )


if __name__ == "__main__":
    main()
