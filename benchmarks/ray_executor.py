"""Ray on two nodes vs the local executor, on the same replay tasks (issue 12 item 5).

Records R runs of a small torch MLP (E epochs, a checkpoint every epoch), then today's script
gains an epoch-level statement (``wnorm``, after the inner loop: ``rest`` tasks that restore a
checkpoint and skip the inner loop). Two copies of that history answer the same queries:

- local: ``LocalExecutor(2)`` (warm zygote, 2 workers);
- ray: a real two-node local cluster (head with 1 CPU, a second node with 1 CPU started with its
  own ``--temp-dir``; as root with ``unshare``, in a mount namespace where the repositories are
  hidden), tasks placed on both nodes, nothing shared but Ray's object store.

Each executor answers two queries, interleaved (local, ray, local, ray) so both see the same load:
the first one (cold: worker processes and their zygotes start) and a second with another
statement (warm). Printed: wall time per query, tasks, the per-task
overhead ``(ray - local) / tasks``, the ratio ray/local against the goal (<= 1.3x), the bytes
shipped (version tarball once per vid, checkpoint bytes per task), and whether the values equal.

Run: ``.venv/bin/python benchmarks/ray_executor.py [--runs 4] [--epochs 8] [--quick]`` (about 3
minutes on 2 loaded cores, most of it starting Ray; ``--quick``: 2 runs x 4 epochs). The figures
go to ``benchmarks/results/ray_executor.json``; without Ray (``pip install 'florsql[ray]'``) the
file has no rows, only a note saying so.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Row, write  # noqa: E402

from florsql.engine.session import Engine  # noqa: E402
from florsql.replay import LocalExecutor, PlanExecutor, RayExecutor  # noqa: E402
from florsql.replay.remote import restored_iterations  # noqa: E402
from florsql.store.replays import ReplaySpec, read_manifest, replays_dir  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
GOAL = 1.3

SCRIPT = """\
import torch
import florsql as flor

lr = flor.arg("lr", 0.05)
epochs = flor.arg("epochs", 8)
torch.manual_seed(0)
x = torch.randn(2048, 16)
y = (x.sum(dim=1, keepdim=True) > 0).float()
net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
opt = torch.optim.SGD(net.parameters(), lr=lr)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(2048).split(32)):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        flor.log("acc", ((net(x) > 0).float() == y).float().mean().item())
flor.commit()
"""
ANCHOR = '        flor.log("acc", ((net(x) > 0).float() == y).float().mean().item())\n'
STMTS = {
    "wnorm": '        flor.log("wnorm", float(sum(p.detach().norm() for p in net.parameters())))\n',
    "bnorm": '        flor.log("bnorm", float(sum(p.abs().sum() for p in net.parameters())))\n',
}


def env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def record(repo: Path, runs: int, epochs: int) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    (repo / "train.py").write_text(SCRIPT)
    (repo / ".gitignore").write_text(".florsql/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    for k in range(runs):
        subprocess.run(
            [sys.executable, "train.py", "--lr", str(0.02 + 0.01 * k), "--epochs", str(epochs)],
            cwd=repo,
            check=True,
            capture_output=True,
            env={**env(), "FLORSQL_CHECKPOINT_PERIOD": "1"},
        )
    (repo / "train.py").write_text(SCRIPT.replace(ANCHOR, ANCHOR + "".join(STMTS.values())))


def fresh_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_ports() -> list[str]:
    names = ["dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port"]
    names += ["metrics-export-port", "node-manager-port", "object-manager-port"]
    return [f"--{n}={free_port()}" for n in names]


def start_cluster(hide: Path, temp_dirs: list[str]) -> tuple[str, bool]:
    """A head (1 CPU) and a worker node (1 CPU); the worker node cannot see ``hide`` when this
    runs as root with unshare. Returns the GCS address and whether ``hide`` is hidden."""
    port = free_port()
    gcs = f"127.0.0.1:{port}"
    head, node = temp_dirs
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={head}",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
         *agent_ports()],
        env=env(), check=True, capture_output=True,
    )  # fmt: skip
    worker = [RAY, "start", f"--address={gcs}", "--num-cpus=1", f"--temp-dir={node}",
              "--node-ip-address=127.0.0.1", "--disable-usage-stats", *agent_ports()]  # fmt: skip
    hidden = os.geteuid() == 0 and shutil.which("unshare") is not None
    if hidden:
        empty = Path(head) / "empty"  # removed with the cluster's folders (stop_cluster)
        empty.mkdir()
        script = f"mount --bind {empty} {hide} && exec {' '.join(worker)}"
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        subprocess.run(cmd, env=env(), check=True, capture_output=True)
    else:
        subprocess.run(worker, env=env(), check=True, capture_output=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        out = subprocess.run(
            [RAY, "status", f"--address={gcs}"], capture_output=True, text=True, env=env()
        ).stdout
        if out.split("Active:", 1)[-1].split("Pending:", 1)[0].count("node_") >= 2:
            return gcs, hidden
        time.sleep(0.5)
    raise RuntimeError("the two-node cluster did not come up in 5 minutes")


def stop_cluster(temp_dirs: list[str]) -> None:
    """Kill the processes of this cluster only (their command lines name its temp folders)."""
    import psutil

    procs: list[Any] = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(t in part for t in temp_dirs for part in p.info["cmdline"] or []):
                procs += [p, *p.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for p in procs:
        if p.pid != os.getpid():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    psutil.wait_procs([p for p in procs if p.pid != os.getpid()], timeout=30)
    for t in temp_dirs:
        shutil.rmtree(t, ignore_errors=True)


def answer(repo: Path, executor: PlanExecutor, name: str) -> tuple[float, list[Any]]:
    with Engine(repo, replay="auto", executor=executor) as eng:
        eng.executor = executor
        t0 = time.perf_counter()
        rows = eng.execute(f"SELECT lr, epoch, {name} FROM logs ORDER BY lr, epoch").table
        seconds = time.perf_counter() - t0
        eng.executor = None  # the caller closes the executor after both queries
    return seconds, rows.to_pylist()


def shipped(repo: Path) -> tuple[int, int, int]:
    """(tasks, version tarball bytes, checkpoint bytes the tasks restored in all)."""
    tasks = ckpt = 0
    for spec_path in replays_dir(repo).glob("*/*.spec.json"):
        spec = ReplaySpec.read(spec_path)
        tasks += 1
        run_dir = Path(spec.run_dir)
        manifest = read_manifest(run_dir, spec.loop)
        for it in restored_iterations(spec.steps):
            if it in manifest:
                ckpt += (run_dir / "checkpoints" / manifest[it][1]).stat().st_size
    tar = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", "HEAD"], capture_output=True
    ).stdout
    return tasks, len(tar), ckpt


def unavailable() -> str | None:
    """Why this benchmark cannot run here, or None."""
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'florsql[ray]'): no figures"
    if not Path(RAY).exists():
        return "no `ray` command beside this Python (its venv's bin): no figures"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="2 runs x 4 epochs")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.epochs = 2, 4
    reason = unavailable()
    if reason is not None:
        print(reason)
        write("ray_executor", [], quick=args.quick, notes=reason)
        return
    base = args.dir or Path(tempfile.mkdtemp(prefix="florsql-ray-bench-"))
    if args.dir is None:  # also when the cluster does not start or a query fails
        atexit.register(shutil.rmtree, base, ignore_errors=True)
    hide = base / "repos"
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    t0 = time.perf_counter()
    record(hide / "history", args.runs, args.epochs)
    print(f"recorded {args.runs} runs x {args.epochs} epochs in {time.perf_counter() - t0:.1f} s")
    local_repo = fresh_copy(hide / "history", hide / "local")
    ray_repo = fresh_copy(hide / "history", hide / "ray")
    temp_dirs = [tempfile.mkdtemp(prefix="frbh"), tempfile.mkdtemp(prefix="frbw")]
    results: dict[str, list[float]] = {}
    values: dict[str, list[Any]] = {}
    hidden = False
    try:
        t0 = time.perf_counter()
        try:
            gcs, hidden = start_cluster(hide, temp_dirs)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            note = f"the two-node Ray cluster did not start ({e}): no figures"
            print(note)
            write("ray_executor", [], quick=args.quick, notes=note)
            raise SystemExit(1) from None
        seen = "hidden from" if hidden else "visible to"
        print(f"two-node cluster up in {time.perf_counter() - t0:.1f} s (repositories {seen} "
              "the worker node)")  # fmt: skip
        os.environ.update(RAY_AUTH_MODE="disabled", RAY_ADDRESS=gcs)
        local = PlanExecutor(LocalExecutor(2))
        ray_exec = PlanExecutor(RayExecutor(2))
        results = {"local": [], "ray": []}
        for name in STMTS:  # interleaved, so both see the same load
            for label, executor, repo in (
                ("local", local, local_repo),
                ("ray", ray_exec, ray_repo),
            ):
                s, rows = answer(repo, executor, name)
                results[label].append(s)
                values[f"{label}-{name}"] = rows
        local.close()
        ray_exec.close()
    finally:
        import ray

        ray.shutdown()
        stop_cluster(temp_dirs)
    tasks, tar_bytes, ckpt_bytes = shipped(ray_repo)
    per_query = tasks / len(STMTS)
    print(f"\n{'query':<22}{'local s':>10}{'ray s':>10}{'ratio':>8}{'goal':>7}"
          f"{'overhead/task':>15}")  # fmt: skip
    rows: list[Row] = []
    for k, label in enumerate(["first (cold workers)", "second (warm)"]):
        lo, ra = results["local"][k], results["ray"][k]
        over = (ra - lo) / per_query
        print(f"{label:<22}{lo:>10.2f}{ra:>10.2f}{ra / lo:>7.2f}x{GOAL:>6.1f}x{over:>13.3f} s")
        note = f"local {lo:.2f} s, Ray {ra:.2f} s, {per_query:.0f} tasks"
        rows.append(Row(f"Ray / local, {label} query", ra / lo, "x", GOAL, "<=", note=note))
        rows.append(Row(f"Ray per-task overhead, {label} query", over, "s"))
    print(f"\ntasks per query: {per_query:.0f}; version tarball: {tar_bytes / 1024:.0f} KiB, put "
          f"once per vid per replay; checkpoints restored: {ckpt_bytes / max(tasks, 1) / 1024:.1f}"
          " KiB per task")  # fmt: skip
    same = all(values[f"local-{n}"] == values[f"ray-{n}"] for n in STMTS)
    filled = all(any(r[n] is not None for r in values[f"ray-{n}"]) for n in STMTS)
    print(f"values equal: {'yes' if same and filled else 'no'}")
    rows.append(Row("checkpoint bytes shipped per task", ckpt_bytes / max(tasks, 1) / 1024, "KiB"))
    rows.append(Row("version tarball, put once per vid", tar_bytes / 1024, "KiB"))
    where = "hidden from" if hidden else "visible to (not root, or no unshare)"
    notes = (
        f"{args.runs} runs x {args.epochs} epochs; repositories {where} the worker node; "
        f"values equal: {'yes' if same and filled else 'NO'}"
    )
    write("ray_executor", rows, quick=args.quick, notes=notes)
    if not (same and filled):
        sys.exit(1)


if __name__ == "__main__":
    main()
