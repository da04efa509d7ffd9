"""Hindsight replay (issue 5): answer queries over old runs by replaying only what they need.

One recorded history (2 versions x 2 runs of a small torch MLP, 20 epochs of ~0.4 s, a
checkpoint every epoch; ``--checkpoint-period 0`` keeps florsql's adaptive period), then today's
script gains log statements no run has: ``wnorm`` after the inner loop (epoch level),
``grad_norm`` inside it (step level) and ``vnorm`` in a helper (f). Each configuration below
starts from a fresh copy of that history (no replayed values, index, worktrees or propagation
cache) and its answers are checked against a full re-run of the hand-patched old versions
("values equal: yes/no").

(a) epoch-level statement over every run vs full re-runs of those runs (same 2 workers):
    goal >= 20x faster.
(b) step-level statement over the last k of E epochs: goal <= 1.2 x k/E of the full re-run
    (both on 2 workers, i.e. a serial re-run divided by the workers).
(c) 1 vs 2 workers, and warm workers (a forked zygote that imported torch once) vs cold ones
    (a fresh interpreter per task).
(d) FlorDB 4.0.1 (its own venv, subprocess only) on the runs of one version, as its replay
    recomputes every run from iteration 0 and aborts at the first change of code version:
    goal florsql >= 10x faster.
(e) EXPLAIN's estimate vs the actual replay time, per replay.
(f) today's third statement, ``vnorm``, sits in the ``evaluate()`` helper the loop calls after
    the step loop: its query over every run against (a)'s (before session 52 a statement in a
    helper replayed whole runs; now it is placed at the helper's call). It runs the model, which
    may draw (a dropout), so a first query's tasks replay their runs from the start (florsql
    cannot tell from the text that this model draws nothing). Only (f)'s configurations have it
    in today's code: (a)-(e) measure today's code with ``wnorm`` and ``grad_norm`` alone, as
    before session 52 (with it, every first query of theirs replayed from the start too, since
    today's statements all run beside the asked one: the ``f_companion`` row measures that).

Wall times are what a user waits; CPU times (the workers' included) are printed too, as other
load on a small machine disturbs them less.

Run: ``.venv/bin/python benchmarks/hindsight.py [--quick] [--no-flordb] [--dir DIR]``
(``--quick``: small sizes, about a minute; default: about 4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Row, Series, write  # noqa: E402

from florsql.engine.session import Engine  # noqa: E402
from florsql.replay import LocalExecutor, PlanExecutor  # noqa: E402
from florsql.store import layout  # noqa: E402
from florsql.store.replays import DONE, read_manifest, replays_dir  # noqa: E402

FLORDB_VENV = Path("/tmp/flordb-venv")
WORKERS = 2

#: (lr, name, epoch, step) -> value
Key = tuple[float, str, int | None, int | None]
Values = dict[Key, object]


#: The runs of each version: their learning rates.
VERSIONS = {"v1": (0.05, 0.1), "v2": (0.03, 0.07)}


@dataclass(frozen=True)
class Sizes:
    epochs: int
    steps: int  # minibatches of 64 per epoch
    k: int  # epochs the step-level query reads (the last k)
    runs: int  # runs per version

    def lrs(self, version: str) -> tuple[float, ...]:
        return VERSIONS[version][: self.runs]


QUICK = Sizes(epochs=4, steps=8, k=1, runs=1)
FULL = Sizes(epochs=20, steps=96, k=5, runs=2)

TRAIN = """
import torch
from torch import nn
import MODULE as flor

lr = flor.arg("lr", 0.05)
epochs = flor.arg("epochs", 20)
steps = flor.arg("steps", 96)
torch.set_num_threads(1)
torch.manual_seed(0)
x_all = torch.randn(steps * 64, 64)
y_all = (x_all[:, :8].sum(dim=1) > 0).long()
x_val = torch.randn(512, 64)
y_val = (x_val[:, :8].sum(dim=1) > 0).long()
net = nn.Sequential(
    nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 2)
)
opt = torch.optim.SGD(net.parameters(), lr=lr, OPTIMIZER)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
loss_fn = nn.CrossEntropyLoss()


def evaluate():
    with torch.no_grad():
        return (net(x_val).argmax(dim=1) == y_val).float().mean().item()


with flor.checkpointing(model=net, optimizer=opt, scheduler=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        order = torch.randperm(len(x_all))
        for idx in flor.loop("step", order.split(64)):
            loss = loss_fn(net(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        sched.step()
        flor.log("acc", evaluate())
flor.commit()
"""

OPTIMIZERS = {"v1": "momentum=0.9", "v2": "momentum=0.8, weight_decay=1e-4"}

#: The statements today's code gains: (anchor line, the line to add after it).
STEP_STMT = (
    '            flor.log("loss", loss.item())\n',
    '            flor.log("grad_norm", float(sum(p.grad.norm() for p in net.parameters())))\n',
)
EPOCH_STMT = (
    "        sched.step()\n",
    '        flor.log("wnorm", float(sum(p.detach().norm() for p in net.parameters())))\n',
)


#: one in a helper the loop calls after the step loop (placed at that call since session 52;
#: before, a statement in a helper replayed whole runs)
HELPER_STMT = (
    "    with torch.no_grad():\n",
    '        flor.log("vnorm", float(net(x_val).norm()))\n',
)


#: today's statements of (a)-(e), and of (f)
TODAY_STMTS = (STEP_STMT, EPOCH_STMT)
ALL_STMTS = (STEP_STMT, EPOCH_STMT, HELPER_STMT)


def script(version: str, module: str = "florsql") -> str:
    return TRAIN.lstrip().replace("MODULE", module).replace("OPTIMIZER", OPTIMIZERS[version])


def patched(source: str, stmts: Sequence[tuple[str, str]] = ALL_STMTS) -> str:
    """``source`` with the new statements inserted by hand (the oracle's code)."""
    for anchor, line in stmts:
        assert source.count(anchor) == 1, anchor
        source = source.replace(anchor, anchor + line)
    return source


def run_args(lr: float, sizes: Sizes) -> list[str]:
    return ["--lr", str(lr), "--epochs", str(sizes.epochs), "--steps", str(sizes.steps)]


@dataclass
class Timer:
    """Wall time, and CPU time of this process and every child it waited for."""

    wall: float = 0.0
    cpu: float = 0.0


def cpu_seconds() -> float:
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def timed() -> Iterator[Timer]:
    """Times the block. CPU time (the replay workers' included, as they are waited for) is
    less sensitive than wall time to other load on the machine."""
    t = Timer()
    wall, cpu = time.perf_counter(), cpu_seconds()
    try:
        yield t
    finally:
        t.wall, t.cpu = time.perf_counter() - wall, cpu_seconds() - cpu


# -- git repositories and recording ---------------------------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=b@localhost", *args],
        check=True,
        capture_output=True,
    )


def new_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    return path


def commit_script(repo: Path, source: str, message: str) -> None:
    (repo / "train.py").write_text(source)
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", message)


def run_all(
    repo: Path,
    argvs: Sequence[list[str]],
    *,
    python: str = sys.executable,
    workers: int = WORKERS,
    env: dict[str, str] | None = None,
) -> list[float]:
    """Run ``python train.py ARGV`` for each argv, ``workers`` at a time; each one's seconds."""
    env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}

    def one(argv: list[str]) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [python, "train.py", *argv], cwd=repo, env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"train.py {argv} failed:\n{proc.stdout[-2000:]}{proc.stderr}")
        return time.perf_counter() - t0

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, argvs))


@dataclass
class Recording:
    """A repository and what recording its runs cost."""

    repo: Path
    times: dict[str, Timer] = field(default_factory=dict)  # per version: its runs, in parallel
    run_seconds: list[float] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # set for the recordings

    @property
    def total(self) -> float:
        return sum(t.wall for t in self.times.values())

    @property
    def cpu(self) -> float:
        return sum(t.cpu for t in self.times.values())


def record(
    repo: Path, sources: dict[str, str], sizes: Sizes, env: dict[str, str] | None = None
) -> Recording:
    """Commit each version's source in turn and run its runs, ``WORKERS`` at a time."""
    out = Recording(repo, env=env or {})
    for version, source in sources.items():
        commit_script(repo, source, version)
        argvs = [run_args(lr, sizes) for lr in sizes.lrs(version)]
        with timed() as out.times[version]:
            out.run_seconds += run_all(repo, argvs, env=out.env)
    return out


def record_history(where: Path, sizes: Sizes, period: int) -> Recording:
    """The old runs; then today's train.py gains the new statements (not run, not committed).

    ``period``: checkpoint every ``period`` epochs (``FLORSQL_CHECKPOINT_PERIOD``); 0 leaves
    florsql's adaptive default, which widens the period when checkpoints cost over 2%.
    """
    env = {"FLORSQL_CHECKPOINT_PERIOD": str(period)} if period else {}
    rec = record(new_repo(where / "history"), {v: script(v) for v in VERSIONS}, sizes, env)
    (rec.repo / "train.py").write_text(patched(script("v2"), TODAY_STMTS))
    return rec


def full_rerun(where: Path, sizes: Sizes) -> tuple[Recording, Values]:
    """Full re-runs of the hand-patched old versions, run as a user would (``python train.py``,
    so florsql records them): the baseline time, and the oracle values."""
    rec = record(new_repo(where / "oracle"), {v: patched(script(v)) for v in VERSIONS}, sizes)
    with Engine(rec.repo) as eng:
        table = eng.execute("SELECT lr, epoch, step, wnorm, grad_norm, vnorm FROM logs").table
    return rec, table_values(table, ("wnorm", "grad_norm", "vnorm"))


def table_values(table: object, names: Sequence[str]) -> Values:
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    out: Values = {}
    for row in table.to_pylist():
        for name in names:
            if row.get(name) is not None:
                out[(row["lr"], name, row["epoch"], row.get("step"))] = row[name]
    return out


def checkpoint_counts(repo: Path) -> list[int]:
    runs = sorted(p for p in layout.runs_dir(repo).iterdir() if p.is_dir())
    return [len(read_manifest(run, "epoch")) for run in runs]


# -- florsql measurements -------------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """One hindsight query, and which oracle values it must return."""

    label: str
    sql: str
    name: str
    keep: Callable[[Key], bool]
    #: the statements today's train.py has for this query
    stmts: tuple[tuple[str, str], ...] = ()

    def expected(self, oracle: Values) -> Values:
        return {k: v for k, v in oracle.items() if k[1] == self.name and self.keep(k)}


def works(sizes: Sizes) -> dict[str, Work]:
    first = sizes.epochs - sizes.k
    v2 = sizes.lrs("v2")
    in_v2 = ", ".join(str(lr) for lr in v2)
    return {
        "epoch": Work(
            "epoch-level, all runs", "SELECT lr, epoch, wnorm FROM logs", "wnorm", lambda k: True
        ),
        "step": Work(
            f"step-level, epochs {first}..{sizes.epochs - 1}",
            f"SELECT lr, epoch, step, grad_norm FROM logs WHERE epoch >= {first}",
            "grad_norm",
            lambda k: (k[2] or 0) >= first,
        ),
        "warmup": Work(
            "step-level, epoch 0 of one run (a first query)",
            f"SELECT lr, epoch, step, grad_norm FROM logs WHERE epoch = 0 AND lr = {v2[0]}",
            "grad_norm",
            lambda k: k[0] == v2[0] and k[2] == 0,
        ),
        "helper": Work(
            "epoch-level in an evaluate() helper, all runs",
            "SELECT lr, epoch, vnorm FROM logs",
            "vnorm",
            lambda k: True,
            ALL_STMTS,
        ),
        "epoch_companion": Work(
            "epoch-level, all runs, today's code also runs the model in a new statement",
            "SELECT lr, epoch, wnorm FROM logs",
            "wnorm",
            lambda k: True,
            ALL_STMTS,
        ),
        "v2": Work(
            "epoch-level, runs of v2",
            f"SELECT lr, epoch, wnorm FROM logs WHERE lr IN ({in_v2})",
            "wnorm",
            lambda k: k[0] in v2,
        ),
    }


@dataclass
class Measured:
    """One florsql configuration's answer to one query, from a fresh copy of the history."""

    label: str
    seconds: float  # the query, replay included (what the user waits)
    cpu: float  # CPU seconds of the query, its workers included
    replay: float  # the executor's wall time
    estimate: float  # EXPLAIN's estimate
    tasks: int
    task: float  # mean seconds of one task (fork or interpreter start to done)
    equal: bool
    fixed: float = 0.0  # query start to the first task running, plus last task end to answer
    phases: dict[str, float] = field(default_factory=dict)  # mean seconds per task, per phase


#: The phases of a replay task's time, as its worker records them in done.json ("timings"; see
#: florsql/record/replay_mode.py, Phases), and "exit": from done.json to the executor seeing
#: the task end (handing the task over, the process's exit, noticing it, reading its markers).
PHASES = ("start", "setup", "module", "load", "restore", "loop", "after", "write", "other")


def task_phases(repo: Path, seconds: dict[str, float]) -> dict[str, float]:
    """Mean seconds per task of each phase, from the tasks' done.json (``seconds``: each task's
    wall time as the executor saw it, by task id)."""
    sums: dict[str, float] = dict.fromkeys((*PHASES, "restores"), 0.0)
    n = 0
    for path in replays_dir(repo).glob(f"*/*/{DONE}"):
        doc = json.loads(path.read_text())
        timings = doc.get("timings")
        if not timings:
            continue
        n += 1
        for key in (*PHASES, "restores"):
            sums[key] += float(timings.get(key, 0.0))
        if doc["task_id"] in seconds:  # the executor's clock starts at submission
            sums["other"] += max(0.0, seconds[doc["task_id"]] - float(timings["total"]))
    return {k: v / n for k, v in sums.items()} if n else {}


def fresh_copy(history: Path, where: Path) -> Path:
    """A copy of the recorded history with nothing replayed, indexed or cached."""
    dst = Path(tempfile.mkdtemp(prefix="cfg-", dir=where)) / "repo"
    shutil.copytree(history, dst, symlinks=True)
    store = layout.store_dir(dst)
    for p in store.glob("index.*"):
        p.unlink()
    for name in ("replays", "worktrees", "cache"):
        shutil.rmtree(store / name, ignore_errors=True)
    return dst


def fixed_cost(repo: Path, start: float, end: float) -> float:
    """Seconds of a query (``start`` to ``end``, wall clock) outside its tasks: from the start
    to the first task running (its record runtime started), plus from the last task's end to
    the answer. Read from the tasks' ``done.json`` of replays that ended after ``start``."""
    spans = []
    for done in layout.store_dir(repo).glob("replays/*/*/done.json"):
        doc = json.loads(done.read_text())
        begin = float(doc.get("started", 0))
        if begin >= start:
            spans.append((begin, begin + float(doc.get("seconds", 0))))
    if not spans:
        return float("nan")
    return (min(b for b, _ in spans) - start) + (end - max(e for _, e in spans))


def measure(
    history: Path,
    where: Path,
    work: Work,
    oracle: Values,
    workers: int,
    warm: bool = True,
    *,
    service: bool = False,
    warmup: Work | None = None,
) -> Measured:
    """``work`` on a fresh copy of the history, on ``workers`` workers: warm (forked from a
    zygote) or cold (an interpreter per task). ``service``: the zygote is the repository's
    replay service, started by this query (cold), or by ``warmup``, a query answered first
    (warm). Without it the executor keeps a private zygote, whose tasks' CPU time is counted
    (a service's children are not this process's)."""
    repo = fresh_copy(history, where)
    if work.stmts:  # today's code for this query
        (repo / "train.py").write_text(patched(script("v2"), work.stmts))
    executor = PlanExecutor(LocalExecutor(workers, warm=warm, service=service))
    cpu0 = cpu_seconds()
    with Engine(repo, replay="auto", executor=executor) as eng:
        if warmup is not None:
            eng.execute(warmup.sql)
        estimate = eng.plan(work.sql).replay.cost.wall
        began = time.time()
        with timed() as t:
            table = eng.execute(work.sql).table
        fixed = fixed_cost(repo, began, time.time())
    # Closing the engine stops the warm worker, which reaps its forked tasks: only now do their
    # CPU seconds reach this process's RUSAGE_CHILDREN.
    t.cpu = cpu_seconds() - cpu0
    report = executor.last
    assert report is not None, "nothing was replayed"
    got = table_values(table, (work.name,))
    start = "warm" if warm else "cold"
    if service:
        start = "service, warm" if warmup else "service, cold"
    label = f"{work.label}, {workers} worker{'s' * (workers > 1)} {start}"
    equal = got == work.expected(oracle)
    n = len(report.results)
    task = sum(r.seconds for r in report.results) / max(1, n)
    phases = task_phases(repo, {r.task_id: r.seconds for r in report.results})
    shutil.rmtree(repo.parent, ignore_errors=True)  # its service, if any, exits with it
    return Measured(
        label, t.wall, t.cpu, report.seconds, estimate, n, task, equal, fixed=fixed, phases=phases
    )


# -- FlorDB 4.0.1, by subprocess from its own venv ------------------------------------------------


def flordb_python() -> Path | None:
    """FlorDB 4.0.1's interpreter (with torch), installed into its venv when missing."""
    python = FLORDB_VENV / "bin" / "python"
    probe = "import importlib.metadata as m, torch; print(m.version('flordb'))"
    ok = python.exists() and _quiet([str(python), "-c", probe], 120) == "4.0.1"
    if ok:
        return python
    print("  installing FlorDB 4.0.1 (and torch) into", FLORDB_VENV, flush=True)
    deadline = time.monotonic() + 300
    steps = [[sys.executable, "-m", "venv", str(FLORDB_VENV)]] if not python.exists() else []
    steps.append([str(python), "-m", "pip", "install", "-q", "flordb==4.0.1", "torch==2.13.0"])
    for cmd in steps:
        if _quiet(cmd, max(1.0, deadline - time.monotonic())) is None:
            print("FlorDB not available (install failed or took over 5 minutes)")
            return None
    return python if _quiet([str(python), "-c", probe], 120) == "4.0.1" else None


def _quiet(cmd: list[str], timeout: float) -> str | None:
    """``cmd``'s stripped stdout, or None when it fails or times out."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def flordb_record(repo: Path, python: Path, sizes: Sizes, versions: Sequence[str]) -> None:
    """Record ``versions``' runs with FlorDB, one at a time (each run is a git commit)."""
    new_repo(repo)
    for version in versions:
        commit_script(repo, script(version, "flordb"), version)
        for lr in sizes.lrs(version):
            argv = ["--kwargs", f"lr={lr}", f"epochs={sizes.epochs}", f"steps={sizes.steps}"]
            run_all(repo, [argv], python=str(python), workers=1)


def flordb_replay(repo: Path, python: Path, version: str) -> tuple[Timer, str]:
    """Add the epoch-level statement and run ``python -m flordb replay --apply wnorm``."""
    (repo / "train.py").write_text(patched(script(version, "flordb"), [EPOCH_STMT]))
    env = {**os.environ, "PYTHONHASHSEED": "0", "PATH": f"{python.parent}:{os.environ['PATH']}"}
    cmd = [str(python), "-m", "flordb", "replay", "--apply", "wnorm"]
    with timed() as t:
        proc = subprocess.run(cmd, cwd=repo, env=env, input="y\n", capture_output=True, text=True)
    (repo.parent / f"{repo.name}-replay.log").write_text(proc.stdout + proc.stderr)
    return t, proc.stdout + proc.stderr


def flordb_values(repo: Path) -> Values:
    """The values FlorDB's replay wrote to its sqlite cache, keyed like florsql's."""
    db = next((repo / ".flor").glob("*.db"))
    with contextlib.closing(sqlite3.connect(db)) as con:
        lrs = dict(
            con.execute(
                "SELECT tstamp, value FROM logs WHERE value_name = 'lr' AND ctx IS NULL "
                "AND source = 'forward'"
            ).fetchall()
        )
        rows = con.execute(
            "SELECT tstamp, ctx, value FROM logs WHERE value_name = 'wnorm' AND source = 'replay'"
        ).fetchall()
    out: Values = {}
    for tstamp, ctx, value in rows:
        epoch = json.loads(ctx)[0]["iteration"]
        out[(float(lrs[tstamp]), "wnorm", int(epoch), None)] = float(value)
    return out


def flordb_error(output: str) -> str:
    """What FlorDB's output says made it stop."""
    cmd = re.search(r"cmdline: (git \w+ [0-9a-f]{12})", output)
    err = re.search(r"error: (.+?)\n\s+(\S+)", output)
    if cmd and err:
        return f"`{cmd.group(1)}` failed: {err.group(1)} {err.group(2)}"
    found = re.search(r"\w+(?:Error|Exception): [^\n]+", output)
    return found.group(0) if found else "no error message (see its replay log)"


@dataclass
class FlorDB:
    """FlorDB's side: its replay time on the runs of one version, and what it cannot do."""

    time: Timer | None = None  # None: no replay to compare
    equal: bool = False
    runs: int = 0
    notes: list[str] = field(default_factory=list)


def flordb_compare(where: Path, sizes: Sizes, oracle: Values) -> FlorDB:
    python = flordb_python()
    if python is None:
        return FlorDB(notes=["FlorDB not available"])
    out = FlorDB(runs=len(sizes.lrs("v2")))
    repo = where / "flordb"
    print(f"  FlorDB: recording {out.runs} run(s) of v2, one at a time", flush=True)
    flordb_record(repo, python, sizes, ["v2"])
    print("  FlorDB: python -m flordb replay --apply wnorm", flush=True)
    timer, output = flordb_replay(repo, python, "v2")
    got = flordb_values(repo)
    expected = {k: v for k, v in oracle.items() if k[1] == "wnorm" and k[0] in sizes.lrs("v2")}
    out.equal = got == expected
    if got:
        out.time = timer
    else:
        out.notes.append(f"FlorDB's replay produced no values: {flordb_error(output)}")
    out.notes.append(flordb_two_versions(where, python))
    return out


def flordb_two_versions(where: Path, python: Path) -> str:
    """What FlorDB does with runs of two code versions (tiny runs: only the outcome counts)."""
    tiny = Sizes(epochs=2, steps=2, k=1, runs=1)
    repo = where / "flordb-two-versions"
    print("  FlorDB: one run of v1 and one of v2, then replay", flush=True)
    flordb_record(repo, python, tiny, ["v1", "v2"])
    _, output = flordb_replay(repo, python, "v2")
    replayed = {k[0] for k in flordb_values(repo)}
    if len(replayed) == 2:
        return "FlorDB replayed runs of two code versions (2 of 2)"
    return (
        f"FlorDB across two code versions: replayed {len(replayed)} of 2 runs, then stopped: "
        f"{flordb_error(output)}"
    )


# -- the run and the report -----------------------------------------------------------------------

#: key -> (section, work, workers, warm[, service]): every florsql configuration measured, in
#: table order. service "cold": the query starts the repository's replay service; "warm": a
#: query before it (step-level, one epoch of one run) did, as a user's second query finds it.
CONFIGS: dict[str, tuple[str, str, int, bool] | tuple[str, str, int, bool, str]] = {
    "a_svc_cold": ("a", "epoch", WORKERS, True, "cold"),
    "a_svc_warm": ("a", "epoch", WORKERS, True, "warm"),
    "a": ("a", "epoch", WORKERS, True),
    "b": ("b", "step", WORKERS, True),
    "a1": ("c", "epoch", 1, True),
    "a_cold": ("c", "epoch", WORKERS, False),
    "b1": ("c", "step", 1, True),
    "b_cold": ("c", "step", WORKERS, False),
    "f": ("f", "helper", WORKERS, True),
    "f_companion": ("f", "epoch_companion", WORKERS, True),
    "d": ("d", "v2", WORKERS, True),
    "d_svc_warm": ("d", "v2", WORKERS, True, "warm"),
    "d1": ("d", "v2", 1, True),
}


def measure_all(
    history: Path, where: Path, sizes: Sizes, oracle: Values, quick: bool
) -> dict[str, Measured]:
    todo = works(sizes)
    out: dict[str, Measured] = {}
    for key, (_, work, workers, warm, *svc) in CONFIGS.items():
        if quick and key == "d1":
            continue  # only informative; --quick stays under 2 minutes
        warmup = todo["warmup"] if svc == ["warm"] else None
        m = measure(
            history, where, todo[work], oracle, workers, warm, service=bool(svc), warmup=warmup
        )
        print(f"  {m.label}: {m.seconds:.1f} s, values equal: {_yes(m.equal)}", flush=True)
        out[key] = m
    return out


def epochs_sweep(
    history: Path, where: Path, sizes: Sizes, oracle: Values, quick: bool
) -> list[tuple[int, Measured]]:
    """The epoch-level statement over the last k epochs of every run, for several k."""
    e = sizes.epochs
    ks = sorted({1, e} if quick else {1, max(1, e // 4), max(1, e // 2), e})
    out = []
    for k in ks:
        work = Work(
            f"epoch-level, last {k} of {e} epochs",
            f"SELECT lr, epoch, wnorm FROM logs WHERE epoch >= {e - k}",
            "wnorm",
            lambda key, first=e - k: (key[2] or 0) >= first,
        )
        m = measure(history, where, work, oracle, WORKERS)
        print(f"  {m.label}: {m.seconds:.1f} s, values equal: {_yes(m.equal)}", flush=True)
        out.append((k, m))
    return out


def write_results(
    m: dict[str, Measured],
    sweep: list[tuple[int, Measured]],
    rerun: Recording,
    sizes: Sizes,
    fdb: FlorDB,
    quick: bool,
) -> None:
    """This run's figures for benchmarks/report.md."""
    full, a, b, k, e = rerun.total, m["a"], m["b"], sizes.k, sizes.epochs
    cold, hot = m["a_svc_cold"], m["a_svc_warm"]
    rows = [
        Row("(a) epoch-level, all runs: full re-run / query, service cold (first query)",
            full / cold.seconds, "x", 8, ">="),
        Row("(a) epoch-level, all runs: full re-run / query, service warm",
            full / hot.seconds, "x", 20, ">="),
        Row("(a) fixed cost, in-process engine, service cold", cold.fixed, "s", 1.5, "<="),
        Row("(a) fixed cost, in-process engine, service warm", hot.fixed, "s", 0.3, "<="),
        Row("(a) epoch-level, all runs: full re-run / query, private warm worker",
            full / a.seconds, "x"),
        Row(f"(b) step-level, last {k} of {e} epochs: query / full re-run", b.seconds / full,
            "x", 1.2 * k / e, "<="),
        Row("(c) epoch-level: 1 worker / 2 workers", m["a1"].seconds / a.seconds, "x"),
        Row("(c) warm worker instead of cold, per task (s saved)", m["a_cold"].task - a.task, "s"),
        Row("(f) epoch-level statement in an evaluate() helper / the same in the loop body, "
            "query time (whole runs replayed before session 52)", m["f"].seconds / a.seconds, "x"),
        Row("(f) (a)'s query where today's code also runs the model in a new statement (a "
            "companion that may draw: runs replayed from the start) / (a)",
            m["f_companion"].seconds / a.seconds, "x"),
    ]  # fmt: skip
    imports = sum(startup_costs())
    rows.insert(2, Row("(a) floor of the service-cold figure: full re-run / (import torch and "
                       "torch._dynamo + the query's tasks, 2 at once)",
                       full / (imports + waves(cold) * cold.task), "x"))  # fmt: skip
    if fdb.time is not None:
        d, dw = m["d"], m["d_svc_warm"]
        rows.append(Row("(d) epoch-level, runs of v2: query s (its own warm worker)", d.seconds,
                        "s", flordb=fdb.time.wall, flordb_goal=10))  # fmt: skip
        rows.append(Row("(d) floor of that figure against FlorDB: FlorDB / (import torch and "
                        "torch._dynamo + the query's tasks, 2 at once)",
                        fdb.time.wall / (imports + waves(d) * d.task), "x"))  # fmt: skip
        rows.append(Row("(d) epoch-level, runs of v2: query s (replay service warm)",
                        dw.seconds, "s", flordb=fdb.time.wall, flordb_goal=10))  # fmt: skip
    for key, r in m.items():
        if r.replay:
            rows.append(Row(f"(e) EXPLAIN / actual replay, {key}", r.estimate / r.replay, "x",
                            1.5, "within"))  # fmt: skip
    series = [
        Series("replay_vs_epochs", "epoch-level statement, 2 workers",
               [float(k) for k, _ in sweep], [r.seconds for _, r in sweep]),
        Series("replay_vs_workers", "epoch-level, all runs",
               [1.0, float(WORKERS)], [m["a1"].seconds, a.seconds]),
        Series("replay_vs_workers", f"step-level, last {k} of {e}",
               [1.0, float(WORKERS)], [m["b1"].seconds, b.seconds]),
    ]  # fmt: skip
    phases = {key: r.phases for key, r in m.items() if r.phases}
    write("hindsight", rows, series, quick=quick, extra={"task_phases": phases})


@functools.cache
def startup_costs() -> tuple[float, float]:
    """Seconds a fresh interpreter takes to import torch, then torch._dynamo (which
    torch.optim imports when the first optimizer is built). Measured once per run."""
    code = (
        "import time; t = time.perf_counter(); import torch; a = time.perf_counter() - t; "
        "import torch._dynamo; print(a, time.perf_counter() - t - a)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch_s, dynamo_s = out.stdout.split()
    return float(torch_s), float(dynamo_s)


def waves(r: Measured) -> int:
    """How many tasks one worker of the query ran at most (its tasks over the workers)."""
    return -(-r.tasks // WORKERS)


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


#: (title, width) of the table's columns; the first is left-aligned.
COLUMNS = (
    ("configuration", 46),
    ("tasks", 5),
    ("task s", 6),
    ("query s", 7),
    ("cpu s", 6),
    ("replay s", 8),
    ("fixed s", 7),
    ("EXPLAIN s", 9),
    ("est/act", 7),
    ("values equal", 12),
)


def _line(cells: Sequence[str]) -> str:
    first, *rest = zip(cells, COLUMNS, strict=True)
    return "  " + first[0].ljust(first[1][1]) + "".join(f" {c:>{w}}" for c, (_, w) in rest)


def table_rows(m: dict[str, Measured], rerun: Recording, fdb: FlorDB) -> list[list[str]]:
    n = len(rerun.run_seconds)
    full = f"full re-run, {n} runs, {WORKERS} at once"
    rows = [[full, "-", "-", f"{rerun.total:.2f}", f"{rerun.cpu:.1f}", "", "", "", "", "(oracle)"]]
    rows += [_measured_row(key, r) for key, r in m.items()]
    if fdb.time is not None:
        label = f"(d) FlorDB 4.0.1 replay, {fdb.runs} run(s) of v2"
        wall, cpu = f"{fdb.time.wall:.2f}", f"{fdb.time.cpu:.1f}"
        rows.append([label, "-", "-", wall, cpu, "", "", "", "", _yes(fdb.equal)])
    return rows


def _measured_row(key: str, r: Measured) -> list[str]:
    ratio = f"{r.estimate / r.replay:.2f}" if r.replay else "-"
    label = f"({CONFIGS[key][0]}) {r.label}"
    times = [f"{r.task:.2f}", f"{r.seconds:.2f}", f"{r.cpu:.1f}", f"{r.replay:.2f}"]
    times.append(f"{r.fixed:.2f}")
    return [label, str(r.tasks), *times, f"{r.estimate:.2f}", ratio, _yes(r.equal)]


def print_table(m: dict[str, Measured], rerun: Recording, fdb: FlorDB) -> None:
    print(_line([title for title, _ in COLUMNS]))
    print("  " + "-" * (sum(w + 1 for _, w in COLUMNS) - 1))
    for row in table_rows(m, rerun, fdb):
        print(_line(row))
    print("  task s: mean wall time of one task; query s: what the user waits (replay included);")
    print("  cpu s: CPU time of the query and its workers; replay s: the executor's wall time;")
    print("  fixed s: query start to the first task running, plus the last task's end to the")
    print("  answer; cpu s misses the tasks of a replay service (not this process's children);")
    print("  EXPLAIN s: EXPLAIN's estimate of the replay's wall time (start-ups, tasks at once)")


def print_phases(m: dict[str, Measured]) -> None:
    """Where a replay task's time goes: the mean per task of each phase, per configuration."""
    print("where a task's time goes (mean s per task, from the tasks' done.json):")
    cols = (*PHASES, "restores")
    print("  " + "configuration".ljust(8) + "".join(f" {c:>8}" for c in cols))
    for key, r in m.items():
        if r.phases:
            cells = "".join(f" {r.phases.get(c, 0.0):8.3f}" for c in cols)
            print("  " + f"({key})".ljust(8) + cells)
    print("  start: fork (warm) or interpreter start and the imports before florsql's (cold) to")
    print("  the script; setup: the worker's own start; module: the script's module-level code")
    print("  to its outer loop; load/restore: reading checkpoints / putting them back (restores:")
    print("  how many); loop: the iterations run; after: code after the loop; write: the last")
    print("  flush; other: the executor's time around the task (hand-over, exit, reaping)")


def goal_lines(m: dict[str, Measured], rerun: Recording, sizes: Sizes, fdb: FlorDB) -> list[str]:
    full, a, b, k, e = rerun.total, m["a"], m["b"], sizes.k, sizes.epochs
    bound = 1.2 * k / e
    cold, hot = m["a_svc_cold"], m["a_svc_warm"]
    lines = [
        f"(a) epoch-level, all runs, replay service cold (the first query of the day): "
        f"{full / cold.seconds:.1f}x faster (goal >= 8x): {_met(full / cold.seconds >= 8)}; "
        f"fixed cost {cold.fixed:.2f} s (goal <= 1.5 s): {_met(cold.fixed <= 1.5)}; this "
        f"workload's floor, importing torch and torch._dynamo ({sum(startup_costs()):.2f} s) "
        f"then its tasks: {full / (sum(startup_costs()) + waves(cold) * cold.task):.1f}x",
        f"(a) epoch-level, all runs, replay service warm (a second query): "
        f"{full / hot.seconds:.1f}x faster (goal >= 20x): {_met(full / hot.seconds >= 20)}; "
        f"fixed cost {hot.fixed:.2f} s (goal <= 0.3 s): {_met(hot.fixed <= 0.3)}",
        f"(a) epoch-level, all runs, a private warm worker: full re-run {full:.1f} s / query "
        f"{a.seconds:.2f} s = {full / a.seconds:.1f}x faster; in CPU time "
        f"{rerun.cpu / a.cpu:.1f}x",
        f"(b) step-level, last {k} of {e} epochs: query {b.seconds:.2f} s = "
        f"{b.seconds / full:.2f} of the full re-run (goal <= 1.2 x {k}/{e} = {bound:.2f}, both "
        f"on {WORKERS} workers): {_met(b.seconds / full <= bound)}; in CPU time "
        f"{b.cpu / rerun.cpu:.2f}",
        f"(c) 1 -> {WORKERS} workers: {m['a1'].seconds / a.seconds:.2f}x faster epoch-level, "
        f"{m['b1'].seconds / b.seconds:.2f}x step-level; warm instead of cold workers save "
        f"{m['a_cold'].seconds - a.seconds:+.2f} s and {m['b_cold'].seconds - b.seconds:+.2f} s "
        f"per query, {m['a_cold'].task - a.task:+.2f} s and {m['b_cold'].task - b.task:+.2f} s "
        "per task (epoch-, step-level)",
    ]
    if fdb.time is not None:
        d, t = m["d"], fdb.time
        one = f"; florsql on 1 worker: {t.wall / m['d1'].seconds:.1f}x" if "d1" in m else ""
        dw = m["d_svc_warm"]
        lines.append(
            f"(d) FlorDB {t.wall:.1f} s / florsql {d.seconds:.2f} s = {t.wall / d.seconds:.1f}x "
            f"(goal >= 10x): {_met(t.wall / d.seconds >= 10)}{one}; in CPU time "
            f"{t.cpu / d.cpu:.1f}x; with the replay service warm {dw.seconds:.2f} s = "
            f"{t.wall / dw.seconds:.1f}x: {_met(t.wall / dw.seconds >= 10)}; the floor of its "
            f"own warm worker's figure (its imports, then its tasks): "
            f"{t.wall / (sum(startup_costs()) + waves(d) * d.task):.1f}x"
        )
    ratios = [r.estimate / r.replay for r in m.values() if r.replay]
    lines.append(
        f"(e) EXPLAIN estimate / actual replay time: {min(ratios):.2f} .. {max(ratios):.2f}"
    )
    return lines


FLORDB_LIMITS = (
    "FlorDB 4.0.1 (from its source, flordb/api.py and repl.py): replay keeps no checkpoints "
    "inside a run (flor.checkpointing is a retired no-op), so every run is recomputed from "
    "iteration 0 through the last needed one, inner loops in full; runs replay one at a time "
    "(no parallelism); it asks for confirmation on stdin and commits the working tree to git."
)


def print_flordb(fdb: FlorDB) -> None:
    print("FlorDB:")
    for note in fdb.notes:
        print("  " + note)
    if fdb.time is not None:
        print("  " + FLORDB_LIMITS)


def print_setup(hist: Recording, rerun: Recording, sizes: Sizes) -> None:
    runs = len(hist.run_seconds)
    counts = ", ".join(str(c) for c in checkpoint_counts(hist.repo))
    period = hist.env.get("FLORSQL_CHECKPOINT_PERIOD")
    how = f"FLORSQL_CHECKPOINT_PERIOD={period}" if period else "florsql's adaptive period"
    mean = sum(hist.run_seconds) / runs
    print(f"recorded history: {runs} runs, {mean:.1f} s each on average (interpreter start incl.)")
    print(f"  checkpoints per run: {counts} of {sizes.epochs} epochs ({how})")
    walls = ", ".join(f"{v}: {t.wall:.1f} s" for v, t in rerun.times.items())
    print(f"full re-run of the hand-patched old versions, {WORKERS} at once: {rerun.total:.1f} s")
    print(f"  ({walls}; the oracle every replayed value is checked against)")
    cores = rerun.cpu / rerun.total
    print(f"  it kept {cores:.1f} of {WORKERS} cores busy on average", end="")
    if cores < 0.8 * WORKERS:
        print(" (other work on the machine: wall times, above all 1 vs 2 workers,")
        print("  are disturbed; CPU times less so)", end="")
    print()
    torch_s, dynamo_s = startup_costs()
    print(
        f"fixed costs now: a fresh interpreter imports torch in {torch_s:.2f} s, then "
        f"torch._dynamo (imported by torch.optim's first optimizer) in {dynamo_s:.2f} s"
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes")
    parser.add_argument("--no-flordb", action="store_true", help="skip the FlorDB comparison")
    parser.add_argument(
        "--checkpoint-period",
        type=int,
        default=1,
        help="record the history with a checkpoint every N epochs (0: florsql's adaptive period)",
    )
    parser.add_argument("--dir", type=Path, help="work here and keep it (default: a temp dir)")
    return parser.parse_args(argv)


def report(
    sizes: Sizes, hist: Recording, rerun: Recording, m: dict[str, Measured], fdb: FlorDB
) -> bool:
    print()
    print_setup(hist, rerun, sizes)
    print_table(m, rerun, fdb)
    print_phases(m)
    print("goals:")
    for line in goal_lines(m, rerun, sizes, fdb):
        print("  " + line)
    print_flordb(fdb)
    equal = all(r.equal for r in m.values()) and (fdb.time is None or fdb.equal)
    print(f"values equal: {'yes' if equal else 'no'}")
    return equal


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse(argv)
    sizes = QUICK if ns.quick else FULL
    where = ns.dir or Path(tempfile.mkdtemp(prefix="florsql-hindsight-"))
    where.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(
        f"florsql hindsight benchmark ({'quick' if ns.quick else 'full'}): 2 versions x "
        f"{sizes.runs} run(s), {sizes.epochs} epochs x {sizes.steps} steps, {WORKERS} workers; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    from florsql.replay import timings

    start, factor = timings.recent("worker_start"), timings.recent("task_factor")
    print(
        f"  this machine's replay timings as the run begins ({timings.path()}): warm worker "
        f"start {'not yet measured' if start is None else f'{start:.2f} s'}, task factor "
        f"{'none yet' if factor is None else f'{factor:.2f}'} (EXPLAIN's estimates use them)",
        flush=True,
    )
    print("  recording the history (old runs of v1 and v2)", flush=True)
    hist = record_history(where, sizes, ns.checkpoint_period)
    print("  full re-runs of the hand-patched old versions", flush=True)
    rerun, oracle = full_rerun(where, sizes)
    measured = measure_all(hist.repo, where, sizes, oracle, ns.quick)
    sweep = epochs_sweep(hist.repo, where, sizes, oracle, ns.quick)
    fdb = FlorDB(notes=["FlorDB skipped (--no-flordb)"])
    if not ns.no_flordb:
        fdb = flordb_compare(where, sizes, oracle)
    equal = report(sizes, hist, rerun, measured, fdb)
    equal = equal and all(r.equal for _, r in sweep)
    write_results(measured, sweep, rerun, sizes, fdb, ns.quick)
    load = os.getloadavg()[0]
    print(f"({time.perf_counter() - t0:.0f} s in all; load average at the end {load:.1f})")
    if ns.dir is None:
        shutil.rmtree(where, ignore_errors=True)
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
