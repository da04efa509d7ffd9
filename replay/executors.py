"""Executors run replay tasks: a local process pool (default) or Ray (``florsql[ray]``,
:mod:`florsql.replay.remote`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from florsql.errors import ReplayError
from florsql.replay import imports, timings
from florsql.replay import service as replay_service
from florsql.replay.tasks import Task, TaskResult, heavy_imports
from florsql.replay.zygote import UNSET
from florsql.store import layout
from florsql.store.replays import DONE, FAILED
from florsql.versions.git import REPLAY_GIT

OnDone = Callable[[TaskResult], None]


class Executor(Protocol):
    """Runs tasks, calling ``on_done`` as each finishes; returns every result."""

    workers: int

    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[TaskResult]: ...


def _env(task: Task) -> dict[str, str]:
    """What a task's environment adds: the variables its run's code read, as it read them,
    then florsql's own (``UNSET`` names those to remove)."""
    env = {k: v for k, v in task.spec.environ.items() if v is not None}
    unset = sorted(k for k, v in task.spec.environ.items() if v is None)
    if unset:
        env[UNSET] = ",".join(unset)
    seed = task.hash_seed or "0"  # the run's, where it was fixed (a warm worker's: 0)
    env.update({"FLORSQL_REPLAY": str(task.spec_path), "PYTHONHASHSEED": seed})
    if task.tree is not None:  # imports from the user's checkout follow into the worktree
        checkout = task.checkout or task.repo
        roots = {"repo": str(checkout), "tree": str(task.tree), "path": task.import_path}
        env[imports.ROOTS] = json.dumps(roots)
        if task.git_dir is not None:  # git answers for the run's commit, not today's
            env.update(
                {"GIT_DIR": str(task.git_dir), "GIT_WORK_TREE": str(task.tree), REPLAY_GIT: "1"}
            )
    if task.spec.torch_threads:  # a fresh interpreter's torch takes its intra-op count from here
        env["OMP_NUM_THREADS"] = str(task.spec.torch_threads[0])
    return env


def task_environ(task: Task, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with the task's variables set and those its run found unset removed."""
    env = {**base, **_env(task)}
    unset_names(env)
    return env


def unset_names(env: MutableMapping[str, str]) -> None:
    """Remove from ``env`` the names its ``UNSET`` entry lists (and that entry)."""
    for name in env.pop(UNSET, "").split(","):
        if name:
            env.pop(name, None)


def at_once(tasks: Sequence[Task], workers: int) -> int:
    """How many of ``tasks`` to run at once: at most ``workers``, and never more torch threads
    than cores (cores // the most threads a task uses, at least 1)."""
    threads = max((t.threads for t in tasks), default=1)
    return max(1, min(workers, (os.cpu_count() or 1) // threads))


def collect(task: Task, returncode: int, seconds: float) -> TaskResult:
    """A task's outcome from its marker files (the worker's own word), not just its exit code."""
    from pathlib import Path

    out = Path(task.spec.out_dir)
    if (out / DONE).exists() and returncode == 0:
        return TaskResult(task.spec.task_id, True, returncode, seconds)
    if (out / FAILED).exists():
        info = json.loads((out / FAILED).read_text())
        return TaskResult(
            task.spec.task_id,
            False,
            returncode,
            seconds,
            info.get("error"),
            info.get("iteration"),
            info.get("traceback"),
        )
    tail = ""
    if task.log_path.exists():
        tail = task.log_path.read_text(errors="replace")[-2000:]
    return TaskResult(
        task.spec.task_id,
        False,
        returncode,
        seconds,
        f"the worker exited with status {returncode} without a result",
        None,
        tail,
    )


class LocalExecutor:
    """A local pool: ``workers`` processes at once (default: the machine's cores).

    With ``warm=True`` tasks fork from a warm worker that has already imported the scripts'
    heavy modules (torch, numpy...), instead of starting an interpreter each. That worker is
    the repository's replay service (:mod:`florsql.replay.service`), shared by every process
    that queries the repository and kept after the query, unless ``service=False`` (or
    ``FLORSQL_REPLAY_SERVICE=0``): then this executor keeps a private one, which ends with it.
    """

    def __init__(
        self, workers: int | None = None, *, warm: bool = True, service: bool | None = None
    ) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.warm = warm and hasattr(os, "fork")
        self.service = self.warm and (replay_service.enabled() if service is None else service)
        self._zygote = _Zygote()
        self._shared = _Shared()
        # The warm worker ends with this executor (or at exit), never outliving its user.
        self._finalizer = weakref.finalize(self, self._zygote.close)

    def close(self) -> None:
        """Stop the warm worker (also done when the executor is collected, and at exit)."""
        self._finalizer()

    def interrupt(self) -> None:
        """Stop the running replay's tasks now, from another thread (Ctrl-C, a server's
        timeout): every task it started is killed, so no task finishes afterwards, and the
        replay fails. A private warm worker is killed too (the next replay starts a new one);
        the shared service stays."""
        self._shared.kill()
        self._zygote.kill()

    def note_repository(self, repo: Path) -> None:
        """The repository the next replays are for, so :attr:`running` can tell a service
        that runs already (started by another process) before this executor ran anything."""
        if self.warm and self._shared.store is None:
            self._shared.store = layout.store_dir(repo)

    def prewarm(self, scripts: Sequence[Path], repo: Path) -> None:
        """Start the warm worker now, in the background, with these scripts' heavy imports,
        so a replay later (a REPL's first hindsight query) finds it ready."""
        if not self.warm:
            return
        modules: list[str] = []
        for script in scripts:
            with contextlib.suppress(OSError):
                modules += heavy_imports(script.read_text(errors="replace"), repo)
        self._shared.store = layout.store_dir(repo)
        if modules or self.service:
            threading.Thread(
                target=self._prewarm,
                args=(list(dict.fromkeys(modules)), layout.store_dir(repo)),
                daemon=True,
            ).start()

    def _prewarm(self, modules: list[str], store: Path) -> None:
        with contextlib.suppress(Exception):  # a failed prewarm only means a colder replay
            if self.service:
                try:
                    self._shared.prewarm(store, modules)
                    return
                except replay_service.ServiceUnavailable:
                    self.service = False
            self._zygote.ensure(modules)

    @property
    def running(self) -> bool:
        """Whether the warm worker is already up (a replay now pays no interpreter start)."""
        if not self.warm:
            return False
        if self.service and self._shared.alive():
            return True
        proc = self._zygote.proc
        return proc is not None and proc.poll() is None

    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[TaskResult]:
        if not tasks:
            return []
        fresh = [t for t in tasks if not t.forks]
        if self.warm and fresh and len(fresh) < len(tasks):
            # runs recorded with a PYTHONHASHSEED other than the warm worker's: their tasks
            # start fresh interpreters with it, after the others (results in the tasks' order)
            forked = [t for t in tasks if t.forks]
            done = dict(zip(map(id, forked), self.run(forked, on_done), strict=True))
            done.update(zip(map(id, fresh), self._run_cold(fresh, on_done), strict=True))
            return [done[id(t)] for t in tasks]
        if fresh:
            return self._run_cold(tasks, on_done)
        slots = at_once(tasks, self.workers)
        if self.warm and self.service:
            try:
                return self._shared.run(tasks, slots, on_done)
            except replay_service.ServiceUnavailable:
                self.service = False  # nothing ran: replay with a private warm worker
        if self.warm:
            return self._zygote.run(tasks, slots, on_done)
        return self._run_cold(tasks, on_done)

    def _run_cold(self, tasks: Sequence[Task], on_done: OnDone | None) -> list[TaskResult]:
        """Each task in a fresh interpreter, as many at once as the cores allow."""
        with ThreadPoolExecutor(at_once(tasks, self.workers)) as pool:
            futures = [pool.submit(self._cold, t, on_done) for t in tasks]
            return [f.result() for f in futures]

    @staticmethod
    def _cold(task: Task, on_done: OnDone | None) -> TaskResult:
        t0 = time.perf_counter()
        task.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(task.log_path, "wb") as log:
            proc = subprocess.Popen(
                task.command(sys.executable),
                cwd=task.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=task_environ(task, os.environ),
                start_new_session=True,
            )
            try:
                code = proc.wait()
            except BaseException:
                proc.kill()
                raise
        result = collect(task, code, time.perf_counter() - t0)
        if on_done:
            on_done(result)
        return result


class _Zygote:
    """One warm worker process, kept across replays (queries) of the executor that owns it.

    It is started with the heavy modules of the first replay's scripts; later replays send it
    the modules it lacks (``{"preload": [...]}``) instead of starting anew, so only the first
    query pays the interpreter start and ``import torch``.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.loaded: set[str] = set()
        self.lock = threading.Lock()  # a prewarm thread and a replay may both start it
        self.closed = False

    def ensure(self, modules: list[str]) -> subprocess.Popen[str]:
        with self.lock:
            return self._ensure(modules)

    def _ensure(self, modules: list[str]) -> subprocess.Popen[str]:
        if self.closed:
            # (a prewarm thread that got here after its executor closed would start a
            # worker nothing ends: its pipes left to the collector, session 57)
            raise ReplayError("the replay executor is closed")
        if self.proc is not None and self.proc.poll() is None:
            missing = [m for m in modules if m not in self.loaded]
            if missing:
                self._send({"preload": missing})
                self.loaded.update(self._ready())
            return self.proc
        self._release()  # a worker that died: its pipes
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "florsql.replay.zygote", ",".join(modules)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        self.loaded = set(self._ready())
        timings.note("worker_start", time.perf_counter() - t0)  # EXPLAIN's next cold start
        return self.proc

    def _send(self, msg: dict[str, object]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def _ready(self) -> list[str]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise ReplayError("the replay worker failed to start")
        return list(json.loads(line).get("ready", []))

    def run(self, tasks: Sequence[Task], workers: int, on_done: OnDone | None) -> list[TaskResult]:
        proc = self.ensure(_heavy(tasks))
        assert proc.stdout is not None
        by_id = {t.spec.task_id: t for t in tasks}
        pending = list(tasks)
        started: dict[str, float] = {}
        results: list[TaskResult] = []
        finished = False
        try:
            for _ in range(min(workers, len(pending))):
                self._submit(pending.pop(0), started)
            while len(results) < len(tasks):
                line = proc.stdout.readline()
                if not line:
                    raise ReplayError("the replay worker died")
                msg = json.loads(line)
                task = by_id[msg["id"]]
                result = collect(
                    task, int(msg["returncode"]), time.perf_counter() - started[msg["id"]]
                )
                results.append(result)
                if pending:  # first: on_done may take a while (the task's values checked)
                    self._submit(pending.pop(0), started)
                if on_done:
                    on_done(result)
            finished = True
        finally:
            if not finished:  # Ctrl-C or an error here: stop every task of this replay now
                self.kill()
        order = list(by_id)
        return sorted(results, key=lambda r: order.index(r.task_id))

    def _submit(self, task: Task, started: dict[str, float]) -> None:
        task.log_path.parent.mkdir(parents=True, exist_ok=True)
        started[task.spec.task_id] = time.perf_counter()
        self._send(_message(task))

    def close(self) -> None:
        with self.lock:  # after a start in progress (a prewarm thread's), and none after it
            self.closed = True
            self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._send({"quit": True})
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._release()

    def kill(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)
        self._release()

    def _release(self) -> None:
        """Close this side of the worker's pipes (a ResourceWarning per replaying query
        before session 48: sweep N) and forget it."""
        if self.proc is not None:
            for pipe in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError, ValueError):
                    if pipe is not None:
                        pipe.close()
        self.proc = None


def _heavy(tasks: Sequence[Task]) -> list[str]:
    modules: list[str] = []
    for t in tasks:
        modules += heavy_imports(t.script.read_text(errors="replace"), t.repo)
    return list(dict.fromkeys(modules))


def _message(task: Task) -> dict[str, object]:
    """A task as the warm worker takes it (:mod:`florsql.replay.zygote`)."""
    return {
        "id": task.spec.task_id,
        "script": str(task.script),
        "cwd": str(task.cwd),
        "argv": task.argv,
        "module": task.module,
        "env": _env(task),
        "log": str(task.log_path),
        "threads": task.spec.torch_threads,
    }


class _Shared:
    """Tasks forked by the repository's replay service, over one connection per replay."""

    def __init__(self) -> None:
        self.store: Path | None = None
        self.pid: int | None = None  # the service's, as last seen
        self.conn: replay_service.Connection | None = None
        self.started: dict[str, int] = {}  # task id -> its pid (its process group)
        self.lock = threading.Lock()

    def alive(self) -> bool:
        """Whether the service of the last repository seen runs now, its imports done (read
        from its state file: no connection made)."""
        if self.store is None:
            return False
        try:
            doc = json.loads((self.store / replay_service.STATE).read_text())
            os.kill(int(doc["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return bool(doc.get("ready"))

    def _connect(self, store: Path, modules: list[str]) -> replay_service.Connection:
        self.store = store
        conn = replay_service.connect(store)
        assert conn is not None
        try:
            self.pid = int(conn.info["pid"])
            missing = [m for m in modules if m not in conn.info.get("loaded", [])]
            if missing:
                conn.ask({"preload": missing})
        except (OSError, ConnectionError, ValueError, KeyError) as e:
            conn.close()
            raise replay_service.ServiceUnavailable(str(e)) from e
        return conn

    def prewarm(self, store: Path, modules: list[str]) -> None:
        with self.lock:
            self._connect(store, modules).close()

    def run(self, tasks: Sequence[Task], workers: int, on_done: OnDone | None) -> list[TaskResult]:
        store = layout.store_dir(tasks[0].repo)
        with self.lock:
            conn = self._connect(store, _heavy(tasks))
        self.conn = conn
        self.started = {}
        by_id = {t.spec.task_id: t for t in tasks}
        pending = list(tasks)
        begun: dict[str, float] = {}
        results: list[TaskResult] = []
        finished = False
        environ = dict(os.environ)
        try:
            for _ in range(min(workers, len(pending))):
                self._submit(conn, pending.pop(0), begun, environ)
            while len(results) < len(tasks):
                try:
                    msg = conn.receive()
                except (OSError, ConnectionError, ValueError) as e:
                    raise ReplayError(f"the replay service stopped during the replay: {e}") from e
                if "started" in msg:
                    self.started[str(msg["started"])] = int(msg["pid"])
                    continue
                if "refused" in msg:
                    raise ReplayError(str(msg["refused"]))
                if "returncode" not in msg:
                    continue
                task = by_id[msg["id"]]
                self.started.pop(task.spec.task_id, None)
                result = collect(
                    task, int(msg["returncode"]), time.perf_counter() - begun[msg["id"]]
                )
                results.append(result)
                if pending:  # first: on_done may take a while (the task's values checked)
                    self._submit(conn, pending.pop(0), begun, environ)
                if on_done:
                    on_done(result)
            finished = True
        finally:
            if not finished:  # Ctrl-C or an error here: stop every task of this replay now
                self.kill()
            conn.close()
            self.conn = None
        order = list(by_id)
        return sorted(results, key=lambda r: order.index(r.task_id))

    @staticmethod
    def _submit(
        conn: replay_service.Connection,
        task: Task,
        begun: dict[str, float],
        environ: dict[str, str],
    ) -> None:
        task.log_path.parent.mkdir(parents=True, exist_ok=True)
        begun[task.spec.task_id] = time.perf_counter()
        conn.send({**_message(task), "environ": environ})

    def kill(self) -> None:
        """Kill this replay's running tasks (each its own process group) and wait until they
        are gone, then drop the connection (the service kills anything it started since)."""
        import signal

        pids = list(self.started.values())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _exists(p)]
            if pids:
                time.sleep(0.005)
        if self.conn is not None:
            self.conn.shutdown()


def _exists(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its parent to reap it does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_group(proc: subprocess.Popen[str]) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
