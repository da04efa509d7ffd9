"""Replay tasks on a Ray cluster whose nodes share no filesystem with the driver.

Everything a task needs travels through Ray's object store, and nothing on a Ray node reads a
path of the driver:

- the version's files: a ``git archive`` tarball of the vid, ``ray.put`` once per vid per
  :meth:`RayExecutor.run`, shared by every task of that version;
- the patched files (path -> source) and the files the run's ``inputs`` list from ignored
  paths (its data), as far as they are there today;
- the run's ``run.json`` and checkpoint manifest, and only the checkpoint files the task's
  steps restore (each ``ray.put`` once per run).

On the node, :func:`_run_task` materializes them in a temporary folder, rewrites the spec's
``run_dir`` and ``out_dir`` to it, runs the worker (forked from a warm zygote kept by the Ray
worker process, or a fresh interpreter) and returns the task's output folder as a tarball. The
driver unpacks it into ``.florsql/replays/<replay_id>/<task_id>/`` and writes ``done.json`` last,
atomically, with the driver's paths in it: a task is visible to the index only once complete.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from florsql.errors import ReplayError
from florsql.replay.executors import OnDone, _Zygote, collect, task_environ
from florsql.replay.tasks import Task, TaskResult, heavy_imports
from florsql.store import layout
from florsql.store.fingerprints import recorded_inputs
from florsql.store.replays import DONE, ReplaySpec, read_manifest
from florsql.versions.git import run_git

#: Data files larger than this are not shipped (the task then fails on the node, saying so).
MAX_DATA_BYTES = int(os.environ.get("FLORSQL_RAY_MAX_DATA_BYTES", str(512 << 20)))


@dataclass
class Shipment:
    """What one task carries to its node, besides the shared version tarball."""

    spec: dict[str, Any]
    script: str  # relative to the version's tree
    cwd: str  # relative to the version's tree
    argv: list[str]
    patches: dict[str, str] = field(default_factory=dict)
    run_files: dict[str, bytes] = field(default_factory=dict)  # relative to the run folder
    checkpoints: dict[str, Any] = field(default_factory=dict)  # file name -> ObjectRef
    data: dict[str, Any] = field(default_factory=dict)  # repo-relative path -> ObjectRef
    warm: bool = True
    module: str | None = None  # ``python -m module`` (the run's; None: the script by its path)
    import_path: list[list[str]] = field(default_factory=list)  # run.json's, inside the repo
    #: the driver's repository: a node that sees it too (one machine, a shared filesystem)
    #: may have import paths or an editable install naming it; they follow the shipped tree
    checkout: str | None = None
    hash_seed: str | None = None  # the run's PYTHONHASHSEED (a task with one starts fresh)


def parse_executor(value: str) -> tuple[str, str | None]:
    """``'local'``, ``'ray'`` or ``'ray://HOST:PORT'`` -> (kind, address).

    Raises:
        ReplayError: any other value, saying which are accepted.
    """
    text = value.strip()
    low = text.lower()
    if low == "local":
        return "local", None
    if low == "ray":
        return "ray", None
    if low.startswith("ray://") and len(text) > len("ray://"):
        return "ray", text
    raise ReplayError(
        f"unknown executor {value!r}: use 'local' (processes on this machine), 'ray' (the Ray "
        "cluster in RAY_ADDRESS, else a local one) or 'ray://HOST:PORT' (a Ray cluster's client "
        "address)"
    )


class RayExecutor:
    """Tasks as Ray remote functions (``pip install 'florsql[ray]'``), no shared filesystem.

    Every node needs Python with florsql and the scripts' own dependencies installed; nothing
    else: the code, checkpoints and data a task reads are shipped (module docstring).

    Args:
        workers: tasks a run is cut into at most (default: the cluster's CPUs).
        address: ``ray.init`` address (``ray://HOST:PORT``, ``HOST:PORT``); default: the
            cluster in ``RAY_ADDRESS``, else a local one with ``workers`` CPUs. A ``ray://``
            address goes through Ray Client (the head started with
            ``GRPC_ENABLE_FORK_SUPPORT=0``, docs/replay.md); nothing listening there fails at
            once.
        resources: custom Ray resources each task asks for (to place tasks on some nodes);
            default: the JSON object in ``FLORSQL_RAY_RESOURCES``, if set.
        warm: fork tasks from a zygote kept warm in each Ray worker process.
    """

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        *,
        resources: dict[str, float] | None = None,
        num_cpus: float = 1.0,
        warm: bool = True,
    ) -> None:
        try:
            import ray
        except ImportError as e:
            raise ReplayError("the ray executor needs Ray: pip install 'florsql[ray]'") from e
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            where = address or os.environ.get("RAY_ADDRESS") or ""
            if where.lower().startswith("ray://"):
                _probe_client_server(where)
            try:
                if where:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(
                        num_cpus=max(1, workers or os.cpu_count() or 1),
                        include_dashboard=False,
                        log_to_driver=False,
                    )
            except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError...
                raise ReplayError(_connect_error(where or "a local cluster", e)) from e
            self._owns = True
        if workers is None:
            cpus = ray.cluster_resources().get("CPU", 0)
            workers = int(cpus // max(num_cpus, 1e-9)) or 1
        self.workers = max(1, workers)
        self.warm = warm
        options: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": 0}
        if resources is None and os.environ.get("FLORSQL_RAY_RESOURCES"):
            try:
                resources = json.loads(os.environ["FLORSQL_RAY_RESOURCES"])
            except ValueError as e:
                raise ReplayError(
                    f"FLORSQL_RAY_RESOURCES is not a JSON object of resource amounts: {e}"
                ) from None
        if resources:
            options["resources"] = dict(resources)
        self._remote = ray.remote(_run_task).options(**options)
        # One warm-up task per worker slot, spread over the nodes (:meth:`prewarm`).
        self._warm_up = ray.remote(_warm_up).options(**options, scheduling_strategy="SPREAD")
        #: The warm-up tasks of :meth:`prewarm` (None: not asked for yet); each returns the
        #: node it ran on and its zygote's pid.
        self.warming: list[Any] | None = None
        #: Per task of the last :meth:`run`: (node, pid of the zygote it forked from; None: it
        #: ran in a fresh interpreter).
        self.forked_from: dict[str, tuple[str, int | None]] = {}
        self._inflight: list[Any] = []
        # Kept across queries in Ray's object store: a version's tarball (a commit's files never
        # change) and recent checkpoints (a checkpoint file is written once), up to KEEP_BYTES.
        self._trees: dict[tuple[str, str], Any] = {}
        self._kept: OrderedDict[tuple[str, str], tuple[Any, int]] = OrderedDict()
        self._kept_bytes = 0

    def close(self) -> None:
        """Disconnect from Ray if this executor connected (a local cluster it started stops)."""
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def prewarm(self, scripts: Sequence[Path], repo: Path) -> None:
        """Start the zygotes of the cluster's worker processes now, with these scripts' heavy
        imports (``torch``), while the query is still being planned: one warm-up task per
        worker slot (:attr:`workers`, at most :data:`PREWARM`: each zygote holds its imports in
        memory), spread over the nodes, each starting the zygote of the
        Ray worker process it runs in, which that process's later tasks fork from. Returns at
        once; a replay planned meanwhile queues behind the warm-ups (it would pay the same
        imports itself). Once per executor: Ray keeps its worker processes between queries."""
        if not self.warm or self.warming is not None:
            return
        modules: list[str] = []
        for script in scripts:
            with contextlib.suppress(OSError):
                modules += heavy_imports(script.read_text(errors="replace"), repo)
        wanted = list(dict.fromkeys(modules))
        try:
            count = min(self.workers, PREWARM)
            self.warming = [self._warm_up.remote(wanted) for _ in range(count)]
        except Exception:  # a warm-up that cannot be submitted only means a colder replay
            self.warming = []

    def interrupt(self) -> None:
        """Cancel the running replay's tasks (their worker processes are killed)."""
        for ref in list(self._inflight):
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)

    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[TaskResult]:
        if not tasks:
            return []
        ray = self._ray
        trees: dict[str, Any] = {}
        blobs: dict[tuple[str, str], Any] = {}
        refs: dict[Any, tuple[Task, float]] = {}
        for task in tasks:
            vid = task.spec.vid
            if vid not in trees:
                key = (str(task.repo), vid)
                if key not in self._trees:
                    self._trees[key] = ray.put(run_git(task.repo, "archive", "--format=tar", vid))
                trees[vid] = self._trees[key]
            ship = self._shipment(task, blobs)
            refs[self._remote.remote(trees[vid], ship)] = (task, time.perf_counter())
        self._inflight = list(refs)
        self.forked_from = {}
        results: dict[str, TaskResult] = {}
        waiting = list(refs)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for ref in done:
                    task, t0 = refs[ref]
                    result = self._receive(task, ref, t0)
                    results[task.spec.task_id] = result
                    if on_done:
                        on_done(result)
        finally:
            if waiting:  # Ctrl-C or an error here: stop the rest of this replay
                self.interrupt()
            self._inflight = []
        return [results[t.spec.task_id] for t in tasks]

    # -- driver side ---------------------------------------------------------------------------
    def _shipment(self, task: Task, blobs: dict[tuple[str, str], Any]) -> Shipment:
        ray = self._ray
        spec = task.spec
        tree = task.tree if task.tree is not None else task.script.parent
        run_dir = Path(spec.run_dir)
        run_files = {layout.RUN_JSON: (run_dir / layout.RUN_JSON).read_bytes()}
        manifest = run_dir / layout.CHECKPOINTS / layout.MANIFEST
        if manifest.exists():
            run_files[f"{layout.CHECKPOINTS}/{layout.MANIFEST}"] = manifest.read_bytes()
        entries = read_manifest(run_dir, spec.loop)
        checkpoints: dict[str, Any] = {}
        for iteration in restored_iterations(spec.steps):
            if iteration not in entries:
                continue  # the worker says which checkpoint is missing
            name = entries[iteration][1]
            checkpoints[name] = self._checkpoint(run_dir, name)
        data: dict[str, Any] = {}
        doc = json.loads(run_files[layout.RUN_JSON])
        for item in recorded_inputs(doc):
            src = task.repo / item.path
            key = ("data", str(src))
            if key not in blobs:
                if not src.is_file() or src.stat().st_size > MAX_DATA_BYTES:
                    continue
                blobs[key] = ray.put(src.read_bytes())
            data[item.path] = blobs[key]
        return Shipment(
            spec=asdict(spec),
            script=task.script.relative_to(tree).as_posix(),
            cwd=task.cwd.relative_to(tree).as_posix(),
            argv=list(task.argv),
            patches=dict(task.patches),
            run_files=run_files,
            checkpoints=checkpoints,
            data=data,
            warm=self.warm and task.forks,
            module=task.module,
            import_path=list(task.import_path),
            checkout=str(task.repo),
            hash_seed=task.hash_seed,
        )

    def _checkpoint(self, run_dir: Path, name: str) -> Any:
        """The object reference of a checkpoint file, put once and kept for later queries
        while the kept checkpoints add up to at most :data:`KEEP_BYTES` (oldest use dropped)."""
        key = (str(run_dir), name)
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept[0]
        blob = (run_dir / layout.CHECKPOINTS / name).read_bytes()
        ref = self._ray.put(blob)
        self._kept[key] = (ref, len(blob))
        self._kept_bytes += len(blob)
        while self._kept_bytes > KEEP_BYTES and len(self._kept) > 1:
            _, (_, size) = self._kept.popitem(last=False)
            self._kept_bytes -= size
        return ref

    def _receive(self, task: Task, ref: Any, t0: float) -> TaskResult:
        seconds = time.perf_counter() - t0
        try:
            code, outbox, node, zygote = self._ray.get(ref)
        except Exception as e:  # the task never ran its worker: a node lost, a Ray error
            return TaskResult(
                task.spec.task_id, False, -1, seconds, f"the Ray task failed: {_first_line(e)}"
            )
        self.forked_from[task.spec.task_id] = (node, zygote)
        unpack(task.spec, outbox, node)
        return collect(task, code, seconds)


#: Bytes of checkpoints an executor keeps in Ray's object store between queries
#: (``FLORSQL_RAY_KEEP_MB``, default 256): a repeated or widened query ships none of them again.
KEEP_BYTES = int(float(os.environ.get("FLORSQL_RAY_KEEP_MB", "256")) * (1 << 20))

#: Warm-up tasks :meth:`RayExecutor.prewarm` starts at most (``FLORSQL_RAY_PREWARM``, default
#: 16; 0: none): a large cluster's later workers start their zygotes with their first task.
PREWARM = int(os.environ.get("FLORSQL_RAY_PREWARM", "16"))

#: Seconds to wait for a TCP connection to a ``ray://`` address before asking Ray to connect
#: (Ray Client itself retries for about 30 s before it gives up on an address nothing answers).
CONNECT_PROBE_SECONDS = float(os.environ.get("FLORSQL_RAY_CONNECT_TIMEOUT", "10"))


def _probe_client_server(address: str) -> None:
    """Fail fast, with florsql's error, when nothing accepts connections at ``ray://HOST:PORT``.

    Raises:
        ReplayError: the host does not resolve, refuses the connection or does not answer.
    """
    parts = urlsplit(address)
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port or 10001  # Ray Client's default port
    except ValueError:
        raise ReplayError(
            f"could not connect to Ray at {address}: the port is not a number; use "
            "'ray://HOST:PORT' (the head's --ray-client-server-port)"
        ) from None
    try:
        socket.create_connection((host, port), timeout=CONNECT_PROBE_SECONDS).close()
    except OSError as e:
        why = "it did not answer in time" if isinstance(e, TimeoutError) else str(e)
        raise ReplayError(
            f"could not connect to Ray at {address}: no Ray Client server accepts connections "
            f"at {host}:{port} ({why}); start the head with `ray start --head "
            "--ray-client-server-port=PORT` and check the address (ray status on the head)"
        ) from None


def _connect_error(where: str, e: BaseException) -> str:
    """florsql's message for a failed ``ray.init``: Ray's last line, and what to do."""
    text = f"could not connect to Ray at {where}: {_first_line(e)}"
    if "Ray client server failed" in str(e) or "Proxy failed to Connect" in str(e):
        return (
            f"{text}; the head's Ray Client server could not start a server process for this "
            "client. If the head's logs/ray_client_server_<port>.err is empty, that process "
            "crashed while forking: start the head with GRPC_ENABLE_FORK_SUPPORT=0 in its "
            "environment (docs/replay.md, Ray Client)"
        )
    return f"{text}; check the address and that the cluster runs (ray status)"


def restored_iterations(steps: Sequence[Sequence[Any]]) -> list[int]:
    """The checkpoints (by outer iteration) a worker running ``steps`` loads: a ``full`` step's
    ``restore``, and the iteration's own ``after:`` checkpoint for a ``rest`` step."""
    out: list[int] = []
    for iteration, mode, restore in steps:
        if mode == "rest":
            out.append(int(iteration))
        elif restore is not None:
            out.append(int(restore))
    return sorted(set(out))


def unpack(spec: ReplaySpec, outbox: bytes, node: str) -> None:
    """Write a task's returned output folder under the driver's ``out_dir``; ``done.json``
    last, atomically, with the driver's paths (and the node that ran it)."""
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Any] | None = None
    with tarfile.open(fileobj=io.BytesIO(outbox)) as tar:
        for member in tar.getmembers():
            if member.name == DONE and member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                done = json.loads(f.read())
            else:
                tar.extract(member, out, filter="data")
    if done is not None:
        done.update(run_dir=spec.run_dir, out_dir=spec.out_dir, node=node)
        layout.atomic_write_json(out / DONE, done, fsync=True)


def _first_line(e: BaseException) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__


# -- node side ---------------------------------------------------------------------------------
#: The warm zygote of this Ray worker process (started by its first task, kept for the next).
_ZYGOTE: _Zygote | None = None


def _warm_up(modules: list[str]) -> tuple[str, int | None]:
    """Runs on a Ray node: start this worker process's zygote with ``modules`` (its later
    tasks fork from it at once); the node's id and the zygote's pid."""
    import ray

    global _ZYGOTE
    if _ZYGOTE is None:
        _ZYGOTE = _Zygote()
    proc = _ZYGOTE.ensure(modules)
    return ray.get_runtime_context().get_node_id(), proc.pid


def _run_task(tree_tar: bytes, ship: Shipment) -> tuple[int, bytes, str, int | None]:
    """Runs on a Ray node: materialize the task, run its worker; return its exit status, its
    output folder (a tarball), the node's id and the pid of the zygote it forked from (None:
    a fresh interpreter)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    root = Path(tempfile.mkdtemp(prefix="florsql-task-"))
    try:
        tree, run_dir, out = root / "tree", root / "run", root / "out"
        tree.mkdir()
        with tarfile.open(fileobj=io.BytesIO(tree_tar)) as tar:
            tar.extractall(tree, filter="tar")
        for rel, source in ship.patches.items():
            _write(tree / rel, source.encode())
        for rel, ref in ship.data.items():
            _write(tree / rel, ray.get(ref))
        for rel, blob in ship.run_files.items():
            _write(run_dir / rel, blob)
        for name, ref in ship.checkpoints.items():
            _write(run_dir / layout.CHECKPOINTS / name, ray.get(ref))
        spec = ReplaySpec(**{**ship.spec, "run_dir": str(run_dir), "out_dir": str(out)})
        spec_path = root / "spec.json"
        spec.write(spec_path)
        out.mkdir(parents=True)
        task = Task(
            spec,
            spec_path,
            tree,
            tree / ship.script,
            tree / ship.cwd,
            ship.argv,
            tree=tree,  # no user's checkout here: the run's import path is put back in it
            module=ship.module,
            import_path=ship.import_path,
            checkout=Path(ship.checkout) if ship.checkout else None,
            hash_seed=ship.hash_seed,
        )
        code = _run_worker(task, ship.warm)
        zygote = _ZYGOTE.proc.pid if ship.warm and _ZYGOTE and _ZYGOTE.proc else None
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    tar.add(path, path.relative_to(out).as_posix())
        return code, buf.getvalue(), node, zygote
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_worker(task: Task, warm: bool) -> int:
    """The worker's exit status; its environment is the local executor's (:func:`_env`), with
    this node's spec path."""
    global _ZYGOTE
    if warm and hasattr(os, "fork"):
        if _ZYGOTE is None:
            _ZYGOTE = _Zygote()
        return _ZYGOTE.run([task], 1, None)[0].returncode
    with open(task.log_path, "wb") as log:
        return subprocess.run(
            task.command(sys.executable),
            cwd=task.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=task_environ(task, os.environ),
            check=False,
        ).returncode


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
