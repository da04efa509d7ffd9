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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from florsql.errors import ReplayError
from florsql.replay.tasks import Task, TaskResult, heavy_imports
from florsql.store.replays import DONE, FAILED

OnDone = Callable[[TaskResult], None]


class Executor(Protocol):
    """Runs tasks, calling ``on_done`` as each finishes; returns every result."""

    workers: int

    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[TaskResult]: ...


def _env(task: Task) -> dict[str, str]:
    env = {"FLORSQL_REPLAY": str(task.spec_path), "PYTHONHASHSEED": "0"}
    if task.spec.torch_threads:  # a fresh interpreter's torch takes its intra-op count from here
        env["OMP_NUM_THREADS"] = str(task.spec.torch_threads[0])
    return env


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
    heavy modules (torch, numpy...), instead of starting an interpreter each.
    """

    def __init__(self, workers: int | None = None, *, warm: bool = True) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.warm = warm and hasattr(os, "fork")
        self._zygote = _Zygote()
        # The warm worker ends with this executor (or at exit), never outliving its user.
        self._finalizer = weakref.finalize(self, self._zygote.close)

    def close(self) -> None:
        """Stop the warm worker (also done when the executor is collected, and at exit)."""
        self._finalizer()

    def interrupt(self) -> None:
        """Stop the running replay's tasks now, from another thread (Ctrl-C, a server's
        timeout): the warm worker and every task it forked are killed, so no task finishes
        afterwards; the replay fails, and the next one starts a new warm worker."""
        self._zygote.kill()

    def prewarm(self, scripts: Sequence[Path], repo: Path) -> None:
        """Start the warm worker now, in the background, with these scripts' heavy imports,
        so a replay later (a REPL's first hindsight query) finds it ready."""
        if not self.warm:
            return
        modules: list[str] = []
        for script in scripts:
            with contextlib.suppress(OSError):
                modules += heavy_imports(script.read_text(errors="replace"), repo)
        if modules:
            threading.Thread(
                target=self._prewarm, args=(list(dict.fromkeys(modules)),), daemon=True
            ).start()

    def _prewarm(self, modules: list[str]) -> None:
        with contextlib.suppress(Exception):  # a failed prewarm only means a colder replay
            self._zygote.ensure(modules)

    @property
    def running(self) -> bool:
        """Whether the warm worker is already up (a replay now pays no interpreter start)."""
        proc = self._zygote.proc
        return self.warm and proc is not None and proc.poll() is None

    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[TaskResult]:
        if not tasks:
            return []
        slots = at_once(tasks, self.workers)
        if self.warm:
            return self._zygote.run(tasks, slots, on_done)
        with ThreadPoolExecutor(slots) as pool:
            futures = [pool.submit(self._cold, t, on_done) for t in tasks]
            return [f.result() for f in futures]

    @staticmethod
    def _cold(task: Task, on_done: OnDone | None) -> TaskResult:
        t0 = time.perf_counter()
        task.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(task.log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(task.script), *task.argv],
                cwd=task.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **_env(task)},
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

    def ensure(self, modules: list[str]) -> subprocess.Popen[str]:
        with self.lock:
            return self._ensure(modules)

    def _ensure(self, modules: list[str]) -> subprocess.Popen[str]:
        if self.proc is not None and self.proc.poll() is None:
            missing = [m for m in modules if m not in self.loaded]
            if missing:
                self._send({"preload": missing})
                self.loaded.update(self._ready())
            return self.proc
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
        modules: list[str] = []
        for t in tasks:
            modules += heavy_imports(t.script.read_text(errors="replace"), t.repo)
        proc = self.ensure(list(dict.fromkeys(modules)))
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
                if on_done:
                    on_done(result)
                if pending:
                    self._submit(pending.pop(0), started)
            finished = True
        finally:
            if not finished:  # Ctrl-C or an error here: stop every task of this replay now
                self.kill()
        order = list(by_id)
        return sorted(results, key=lambda r: order.index(r.task_id))

    def _submit(self, task: Task, started: dict[str, float]) -> None:
        task.log_path.parent.mkdir(parents=True, exist_ok=True)
        started[task.spec.task_id] = time.perf_counter()
        self._send(
            {
                "id": task.spec.task_id,
                "script": str(task.script),
                "cwd": str(task.cwd),
                "argv": task.argv,
                "env": _env(task),
                "log": str(task.log_path),
                "threads": task.spec.torch_threads,
            }
        )

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._send({"quit": True})
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)
        self.proc = None


def _kill_group(proc: subprocess.Popen[str]) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
