"""A warm worker: imports a script's heavy modules once, then forks a child per replay task.

Interpreter start and ``import torch`` (~1.5 s here) dominate short replay tasks. The zygote
pays them once; each task is a ``fork()`` of it that runs the script with ``runpy`` in its
worktree. Only modules from outside the user's repository are preloaded, so a version's own
modules are always imported fresh from its worktree.

The zygote leads its own process group. If its stdin closes without a ``{"quit": true}`` line
first, the query process is gone, and the zygote kills the group: no orphaned task finishes
behind a dead query.

Protocol (JSON lines): stdin ``{"id", "script", "cwd", "argv", "module", "env", "log", "threads"}``
(``threads``: torch's ``[intra_op, inter_op]`` counts to set before the script runs); stdout
``{"id", "returncode"}`` as each child ends. A first stdout line ``{"ready": [...]}`` lists the
modules preloaded.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import runpy
import select
import signal
import sys
import time
from typing import Any

#: Heavy modules their parents import lazily, on first use: preloaded along with the parent.
#: torch's optimizers import torch._dynamo at construction (1-2 s here, measured).
COMPANIONS = {"torch": ("torch._dynamo",)}


#: florsql's own replay worker (the record API in replay mode, its Arrow writer, pyarrow):
#: the same for every version, so imported once here instead of in every task. Nothing in them
#: reads the task's environment at import (``FLORSQL_REPLAY`` is read at the first record call).
WORKER_MODULES = ("florsql.record.api", "florsql.record.replay_mode")


#: ``"<task line read>,<script started>"`` (``time.time()``), set in each forked task for the
#: replay worker's phase timings (:mod:`florsql.record.replay_mode`).
TASK_TIMES = "FLORSQL_TASK_TIMES"

#: Names, in each forked task, the write end of a pipe to its warm worker (the zygote or the
#: replay service): a replay task writes its pid there once its done.json is written, right
#: before ``os._exit(0)`` (``florsql.record.replay_mode.DONE_FD``: the same name, kept apart by
#: the layering), so its query hears of it without waiting for the exit of a process with
#: torch mapped (10-40 ms per wave of tasks, measured).
DONE_FD = "FLORSQL_TASK_DONE_FD"
#: Names of environment variables a task must not have (its run found them unset),
#: comma-separated, in the task's environment (``florsql.replay.executors.task_environ``).
UNSET = "FLORSQL_REPLAY_UNSET"


#: Top-level modules a fresh interpreter has loaded before a script's first line: the others
#: this worker imported (the standard library's ``profile``, ``statistics``... that torch's
#: companions import) give way in a task to a module of the same name its script's folder
#: holds, as in its run (``florsql.replay.imports.unshadow``). Set by :func:`know_startup`.
STARTUP: set[str] = set()


def know_startup(proc: Any) -> None:
    """Keep what :func:`florsql.replay.imports.startup_modules` (started as ``proc``) says."""
    from florsql.replay import imports

    STARTUP.clear()
    STARTUP.update(imports.read_startup(proc))


def preload(modules: list[str]) -> list[str]:
    # No garbage collection while importing: torch and torch._dynamo allocate millions of
    # objects, and the collections that triggers walk the whole growing heap, for almost no
    # garbage (8.7k objects in all). Measured: 2.0-2.5 s of CPU instead of 2.5-3.0 s for
    # ``import torch, torch._dynamo``, the cold query's critical path.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        loaded = []
        for name in [m for base in modules for m in (base, *COMPANIONS.get(base, ()))]:
            try:
                importlib.import_module(name)
                loaded.append(name)
            except Exception:
                continue
        _warm_worker()
        # the real paths of the modules' files, for each task's follow_worktree
        # (imports.ORIGINS), frozen with the rest below
        with contextlib.suppress(Exception):
            importlib.import_module("florsql.replay.imports").know_origins()
    finally:
        if was_enabled:
            gc.enable()
    # What is loaded now moves to the permanent generation: the garbage collections of a task
    # forked later never walk (and so never copy-on-write copy) its pages. (No collection
    # first: it would walk everything once more, ~0.9 s, to free that little garbage.)
    gc.freeze()
    return loaded


def _warm_worker() -> None:
    """The replay worker's first-use costs (its writer's first Arrow write, torch's first
    checkpoint load: ~60 ms per task, measured), paid here once instead of in every task."""
    with contextlib.suppress(Exception):  # only a slower task if it fails
        # By name, as the worker modules are preloaded: the zygote runs the record side's
        # code for its tasks but does not depend on it (docs/architecture.md's layers).
        importlib.import_module("florsql.record.replay_mode").warm_up()


def _set_threads(counts: list[int] | None) -> None:
    """Give the task's torch the run's recorded ``[intra_op, inter_op]`` thread counts before the
    script runs: torch is preloaded here and has run nothing yet, so a forked child may still
    set both (the worker, :func:`florsql.record.replay_mode.set_torch_threads`, checks again)."""
    torch = sys.modules.get("torch")
    if not counts or torch is None:
        return
    torch.set_num_threads(int(counts[0]))
    if torch.get_num_interop_threads() != int(counts[1]):
        with contextlib.suppress(RuntimeError):  # torch's inter-op pool already started
            torch.set_num_interop_threads(int(counts[1]))
    real = torch.set_num_interop_threads

    def set_num_interop_threads(n: int) -> None:
        # The script pinning the count it ran with (``torch.set_num_interop_threads(1)`` at
        # its top, as recorded): torch allows one call per process, and this one made it
        # already; the same count again is a no-op, another one still raises.
        if int(n) != torch.get_num_interop_threads():
            real(n)

    set_num_interop_threads.__doc__ = real.__doc__
    setattr(torch, "set_num_interop_threads", set_num_interop_threads)  # noqa: B010


def _child(task: dict[str, Any], received: float | None = None) -> None:
    """Runs in the forked child; never returns. ``received``: when the zygote read the task
    (``time.time()``; default: now), where the task's phase timings start."""
    if received is None:
        received = time.time()
    code = 1
    try:
        os.chdir(task["cwd"])
        os.environ.update(task["env"])
        for name in os.environ.pop(UNSET, "").split(","):  # variables its run found unset
            if name:
                os.environ.pop(name, None)
        watch = sys.modules.get("florsql.record.watch")
        if watch is not None:  # the environment set above is the script's, not set by it
            watch.ENV_WATCH.reset()
            watch.WATCH.started_ns = time.time_ns()  # the run starts now
        spec = os.environ.get("FLORSQL_REPLAY")
        if spec:  # the worker keeps its writes out of the user's files from here on
            importlib.import_module("florsql.record.replay_mode").guard_spec(spec)
        log = os.open(task["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdin = open(os.devnull)  # noqa: SIM115
        sys.argv = [task["script"], *task["argv"]]
        module = task.get("module")
        # as ``python script`` puts the script's folder first on sys.path, ``python -m``
        # the folder it ran in
        sys.path[0] = os.getcwd() if module else os.path.dirname(os.path.abspath(task["script"]))
        # imports from the user's checkout (PYTHONPATH, an editable install) follow the worktree
        imports = importlib.import_module("florsql.replay.imports")
        imports.follow_from_environ()
        imports.unshadow(STARTUP)  # the script's own profile.py over the worker's import
        _set_threads(task.get("threads"))
        # The worker's phase timings (done.json) start from here: the task line read, then
        # the fork and the set-up above, until the script's first line.
        os.environ[TASK_TIMES] = f"{received!r},{time.time()!r}"
        try:
            if module:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(task["script"], run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(modules: list[str]) -> None:
    startup = importlib.import_module("florsql.replay.imports").startup_modules()
    preload(list(WORKER_MODULES))
    ready = preload(modules)
    know_startup(startup)
    try:
        print(json.dumps({"ready": ready}), flush=True)
    except BrokenPipeError:
        # the query that started it ended first (nothing left to replay after all): gone
        # quietly, not with a traceback on the query's stderr (session 47, sweep K)
        os._exit(0)
    children: dict[int, str] = {}
    # pid -> a pidfd of each child (Linux): select() wakes the moment a task ends, instead of
    # polling for it (up to 20 ms late per task, measured in the tasks' "other" time).
    watched: dict[int, int] = {}
    buffer = b""
    stdin_open = True
    quitting = False
    done_r, done_w = os.pipe()
    os.set_blocking(done_r, False)
    reported: set[int] = set()  # said they are done (DONE_FD), not yet reaped
    while stdin_open or children:
        if stdin_open:
            # Raw reads, not sys.stdin: a buffered reader can swallow a second task line that
            # select() then never reports.
            timeout = None if len(watched) == len(children) else 0.02
            readable, _, _ = select.select([0, done_r, *watched.values()], [], [], timeout)
            if done_r in readable:
                _finished(done_r, children, reported)
            if 0 in readable:
                chunk = os.read(0, 65536)
                if not chunk and not quitting:
                    # The query process died (kill -9, crash): end every task now, so nothing
                    # of this replay keeps going unobserved. Unfinished tasks stay invisible.
                    os.killpg(0, signal.SIGKILL)
                stdin_open = bool(chunk)
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    task = json.loads(line)
                    if task.get("quit"):
                        quitting = True
                        continue
                    if "preload" in task:
                        print(json.dumps({"ready": preload(task["preload"])}), flush=True)
                        continue
                    received = time.time()
                    pid = os.fork()
                    if pid == 0:
                        os.close(done_r)
                        os.environ[DONE_FD] = str(done_w)
                        _child(task, received)
                    children[pid] = task["id"]
                    with contextlib.suppress(AttributeError, OSError):  # no pidfds: poll
                        watched[pid] = os.pidfd_open(pid)
        _reap(children, watched, reported, block=not stdin_open)


def _finished(done_r: int, children: dict[int, str], reported: set[int]) -> None:
    """Report the tasks that wrote their pid on the done pipe (exit status 0: they write it
    right before ``os._exit(0)``); their exit is reaped later and not reported again."""
    data = b""
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while chunk := os.read(done_r, 4096):
            data += chunk
    for token in data.split():
        pid = int(token) if token.isdigit() else -1
        if pid in children and pid not in reported:
            reported.add(pid)
            print(json.dumps({"id": children[pid], "returncode": 0}), flush=True)


def _reap(
    children: dict[int, str], watched: dict[int, int], reported: set[int], block: bool
) -> None:
    while children:
        pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        if pid in watched:
            os.close(watched.pop(pid))
        task_id = children.pop(pid)
        if pid in reported:
            reported.discard(pid)
        else:
            code = os.waitstatus_to_exitcode(status)
            print(json.dumps({"id": task_id, "returncode": code}), flush=True)
        if block:
            return


if __name__ == "__main__":
    serve([m for m in sys.argv[1].split(",") if m] if len(sys.argv) > 1 else [])
