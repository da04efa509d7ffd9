"""The record API: ``flor.arg``, ``flor.log``, ``flor.loop``, ``flor.checkpointing``,
``flor.commit`` (FlorDB-compatible names).

A run begins at a script's first record call. Everything here is cheap on the hot path: a log
call appends one tuple to a list; segments, checkpoints and run.json are written by a background
thread.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

# Wraps open() and os.open() to note which files this process opens (data fingerprints):
# from import on, so that data a script loads before its first record call is seen.
from florsql.record import watch as _watch  # noqa: F401

if TYPE_CHECKING:  # the runtime loads at a script's first record call, keeping import light
    from pathlib import Path

    from florsql.record.runtime import Lifecycle

T = TypeVar("T")

#: When this process imported florsql: a fresh replay worker's script start (its phase timings).
IMPORTED = time.time()


def _launch_cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the folder was removed
        return None


#: The working folder as the script imported florsql: where it was launched, which run.json
#: keeps as ``cwd`` (replay starts there). Before session 48 the folder at the first record
#: call was kept: a script that ran ``os.chdir("sub")`` first replayed from ``sub`` and its own
#: ``chdir`` failed there (sweep O).
LAUNCH_CWD = _launch_cwd()


class Recorder(Protocol):
    """What the record API drives: a recording :class:`Run` or a replay worker's run."""

    scopes: list[Any]

    def arg(self, name: str, default: Any) -> Any: ...
    def log(self, name: str, value: Any) -> Any: ...
    def loop(self, name: str, iterable: Iterable[Any]) -> Iterator[Any]: ...
    def checkpointing(self, objs: dict[str, Any]) -> Any: ...
    def commit(self, status: str = ..., error: dict[str, Any] | None = ...) -> None: ...


_run: Recorder | None = None
_lifecycle: Lifecycle | None = None
_start_lock = threading.Lock()


def _start() -> Recorder:
    global _run, _lifecycle
    with _start_lock:
        if _run is None and os.environ.get("FLORSQL_REPLAY"):
            from florsql.record.replay_mode import ReplayRun, ReplaySpec, install_hooks

            replay = ReplayRun(ReplaySpec.read(os.environ["FLORSQL_REPLAY"]))
            install_hooks(replay)
            _run = replay
        if _run is None:
            from pathlib import Path

            from florsql.record.runtime import Lifecycle, Run
            from florsql.versions import find_repo_root

            script = _main_script()
            repo = find_repo_root(script.parent if script else Path.cwd(), script)
            run = Run(repo, script, list(sys.argv), cwd=LAUNCH_CWD)
            _lifecycle = Lifecycle(run)
            _run = run
        return _run


def _main_script() -> Path | None:
    from pathlib import Path

    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    return Path(file).resolve() if file else None


def current_run() -> Recorder | None:
    """The run this process is recording, if a record call has started one."""
    return _run


def arg(name: str, default: T) -> T:
    """A hyperparameter: ``--name value`` from the command line (typed like ``default``), else
    ``default``. Recorded with the run.

    Example:
        ``lr = flor.arg("lr", 1e-3)`` then ``python train.py --lr 0.01``
        (or ``--lr=0.01``, or FlorDB's ``--kwargs lr=0.01``).
    """
    run = _run if _run is not None else _start()
    return run.arg(name, default)


def log(name: str, value: T) -> T:
    """Record ``value`` under ``name`` in the current loop context and return it unchanged.

    Numbers stay numbers; strings, None, 0-d tensors and numpy scalars are stored as values,
    small lists and dicts as JSON, anything else as its repr (with one warning per name).
    """
    run = _run if _run is not None else _start()
    return run.log(name, value)


def loop(name: str, iterable: Iterable[T]) -> Iterator[T]:
    """Iterate ``iterable`` as the loop ``name`` (``"epoch"``, ``"step"``), recording each
    iteration's index, scalar item and wall time."""
    run = _run if _run is not None else _start()
    return run.loop(name, iterable)


@contextmanager
def checkpointing(**objs: Any) -> Iterator[None]:
    """Checkpoint ``objs`` (torch modules, optimizers, schedulers, or picklable objects) and
    the RNG states at the outermost ``flor.loop`` in the block, so replay can resume there."""
    run = _run if _run is not None else _start()
    scope = run.checkpointing(objs)
    run.scopes.append(scope)
    try:
        yield
    finally:
        run.scopes.remove(scope)


def _hindsight_begin(name: str) -> None:
    """Placed by propagation before today's statement for ``name`` (and the code carried with
    it): in a replay worker, snapshot the global RNGs (florsql/record/rng_guard.py). A piece
    before the script's first ``flor`` call (carried code at the top) starts the replay run:
    it did nothing there before session 35, and its draws went unnoticed."""
    run = _start() if _run is None and os.environ.get("FLORSQL_REPLAY") else _run
    begin = getattr(run, "hindsight_begin", None)
    if begin is not None:
        begin(name, sys._getframe(1))  # the code's frame: the generator objects it names


def _hindsight_end(name: str) -> None:
    """Placed after it: in a replay worker, note the global RNGs it moved."""
    end = getattr(_run, "hindsight_end", None)
    if end is not None:
        end(name, sys._getframe(1))


def commit() -> None:
    """Flush everything recorded so far and mark the run finished (also done at exit)."""
    if _run is not None:
        _run.commit("finished")
