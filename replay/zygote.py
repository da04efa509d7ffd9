"""A warm worker: imports a script's heavy modules once, then forks a child per replay task.

Interpreter start and ``import torch`` (~1.5 s here) dominate short replay tasks. The zygote
pays them once; each task is a ``fork()`` of it that runs the script with ``runpy`` in its
worktree. Only modules from outside the user's repository are preloaded, so a version's own
modules are always imported fresh from its worktree.

The zygote leads its own process group. If its stdin closes without a ``{"quit": true}`` line
first, the query process is gone, and the zygote kills the group: no orphaned task finishes
behind a dead query.

Protocol (JSON lines): stdin ``{"id", "script", "cwd", "argv", "env", "log", "threads"}``
(``threads``: torch's ``[intra_op, inter_op]`` counts to set before the script runs); stdout
``{"id", "returncode"}`` as each child ends. A first stdout line ``{"ready": [...]}`` lists the
modules preloaded.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import select
import signal
import sys
from typing import Any

#: Heavy modules their parents import lazily, on first use: preloaded along with the parent.
#: torch's optimizers import torch._dynamo at construction (1-2 s here, measured).
COMPANIONS = {"torch": ("torch._dynamo",)}


#: florsql's own replay worker (the record API in replay mode, the segment writer, pyarrow):
#: the same for every version, so imported once here instead of in every task. Nothing in them
#: reads the task's environment at import (``FLORSQL_REPLAY`` is read at the first record call).
WORKER_MODULES = ("florsql.record.api", "florsql.record.replay_mode")


def preload(modules: list[str]) -> list[str]:
    loaded = []
    for name in [m for base in modules for m in (base, *COMPANIONS.get(base, ()))]:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:
            continue
    return loaded


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


def _child(task: dict[str, Any]) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        os.chdir(task["cwd"])
        os.environ.update(task["env"])
        log = os.open(task["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdin = open(os.devnull)  # noqa: SIM115
        sys.argv = [task["script"], *task["argv"]]
        sys.path[0] = os.path.dirname(os.path.abspath(task["script"]))
        _set_threads(task.get("threads"))
        try:
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
    preload(list(WORKER_MODULES))
    ready = preload(modules)
    print(json.dumps({"ready": ready}), flush=True)
    children: dict[int, str] = {}
    buffer = b""
    stdin_open = True
    quitting = False
    while stdin_open or children:
        if stdin_open:
            # Raw reads, not sys.stdin: a buffered reader can swallow a second task line that
            # select() then never reports.
            readable, _, _ = select.select([0], [], [], 0.02)
            if readable:
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
                    pid = os.fork()
                    if pid == 0:
                        _child(task)
                    children[pid] = task["id"]
        _reap(children, block=not stdin_open)


def _reap(children: dict[int, str], block: bool) -> None:
    while children:
        pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        task_id = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        print(json.dumps({"id": task_id, "returncode": code}), flush=True)
        if block:
            return


if __name__ == "__main__":
    serve([m for m in sys.argv[1].split(",") if m] if len(sys.argv) > 1 else [])
