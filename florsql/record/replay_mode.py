"""Replay mode of the record API: the same calls, restoring and skipping what replay needs.

A replay worker runs a patched old script with ``FLORSQL_REPLAY=<spec.json>`` in its
environment. ``flor.arg`` then returns the run's recorded values, ``flor.loop`` yields only the
outer iterations the schedule needs (restoring checkpoints, skipping inner loops), and
``flor.log`` stores only the names the replay computes. Once nothing needed remains the worker
flushes, writes its ``done.json`` marker and exits, so later side effects of old code never run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from threading import get_ident
from types import FrameType, TracebackType
from typing import Any

from florsql.record import checkpoint as ckpt
from florsql.record import frame_state, order
from florsql.record.args import given_arg, replayed_arg, scan_argv, scan_flags
from florsql.record.consumer import Consumer, consumer_of
from florsql.record.rng_guard import RngGuard
from florsql.record.values import normalize
from florsql.record.writer import Writer
from florsql.store import layout, rundoc
from florsql.store.replays import DONE, FAILED, ReplaySpec, read_manifest
from florsql.store.segments import Batch, Tagged

ENV = "FLORSQL_REPLAY"

#: Rows a worker gathers before it hands them to the writer, between outer iterations. A task's
#: values are invisible until its done.json, so flushing every iteration bought nothing but a
#: segment file (an Arrow conversion and a write, and a file for the index to read) per
#: iteration; now most tasks write one segment, at their end.
FLUSH_ROWS = 50_000


@dataclass(frozen=True)
class _Step:
    mode: str  # "full" or "rest"
    restore: int | None


def set_torch_threads(counts: list[int] | None) -> None:
    """Give the worker's torch the run's recorded ``[intra_op, inter_op]`` thread counts, where
    the script imported torch (the warm worker preloads it and has run nothing yet, so a forked
    task may still set both; a fresh interpreter got its intra-op count from OMP_NUM_THREADS).
    An inter-op count that can no longer be set is left: verification reports any difference."""
    torch = sys.modules.get("torch")
    if not counts or torch is None:
        return
    if torch.get_num_threads() != int(counts[0]):
        torch.set_num_threads(int(counts[0]))
    if torch.get_num_interop_threads() != int(counts[1]):
        with contextlib.suppress(RuntimeError):  # torch's pool already started
            torch.set_num_interop_threads(int(counts[1]))


def warm_up() -> None:
    """Do once in a warm worker (:mod:`florsql.replay.zygote`), before it forks tasks, what every
    task's worker would otherwise do first: its writer's first Arrow conversion and IPC write
    (replays write Arrow segments), and, where torch is loaded, a first checkpoint load."""
    from florsql.record.writer import warm_up as warm_writer

    warm_writer()
    torch = sys.modules.get("torch")
    if torch is not None:
        payload = ckpt.capture({})
        payload["states"]["warm"] = {"weight": torch.zeros(2)}
        ckpt.load_bytes(ckpt.serialize(payload), "warm-up")


class Phases:
    """Where a replay task's time goes (seconds, in its ``done.json`` as ``"timings"``).

    ``start``: from the task's process start (the fork, or a fresh interpreter's exec) to the
    script's first line (a fresh interpreter: to ``import florsql``, the script's imports before
    it included); ``module``: the script's module-level code until the outer ``flor.loop``, less
    ``setup`` (this worker's own start: the spec, the run's files, its writer);
    ``load``: reading checkpoints (``restores`` of them); ``restore``: putting their state into
    the registered objects and locals; ``loop``: the iterations run, less ``load`` and
    ``restore``; ``after``: the script after the loop (``after_loop`` tasks); ``write``: the last
    flush and the writer's end, before ``done.json``; ``total``: process start to ``done.json``;
    ``forked``: the task was forked from a warm worker (False: a fresh interpreter, whose
    ``start`` and ``module`` hold the interpreter's start and the imports: EXPLAIN counts those
    apart, :func:`florsql.replay.plan_executor.note_timings`).
    """

    def __init__(self) -> None:
        self.forked = bool(os.environ.get("FLORSQL_TASK_TIMES"))
        self.process, self.script = _task_start()
        self.created = time.time()
        self.setup = 0.0
        self.loop_in: float | None = None  # the outer loop's first call
        self.loop_out: float | None = None  # the outer loop's end
        self.load = 0.0
        self.restore = 0.0
        self.restores = 0

    def done(self, write: float) -> dict[str, Any]:
        now = time.time()
        loop_in = self.loop_in if self.loop_in is not None else now
        loop_out = self.loop_out if self.loop_out is not None else now - write
        out = {
            "start": self.script - self.process,
            "setup": self.setup,
            "module": loop_in - self.script - self.setup,
            "load": self.load,
            "restore": self.restore,
            "loop": loop_out - loop_in - self.load - self.restore,
            "after": max(0.0, now - write - loop_out),
            "write": write,
            "total": now - self.process,
        }
        timings: dict[str, Any] = {k: round(max(0.0, v), 6) for k, v in out.items()}
        timings["restores"] = self.restores
        timings["forked"] = self.forked
        return timings


def _task_start() -> tuple[float, float]:
    """(process start, script start) of this task, as ``time.time()``: a forked task's come from
    the warm worker (``FLORSQL_TASK_TIMES``); a fresh interpreter's from /proc (Linux) and from
    when the script imported florsql."""
    from florsql.record import api

    times = os.environ.get("FLORSQL_TASK_TIMES", "")
    with contextlib.suppress(ValueError):
        received, script = (float(t) for t in times.split(","))
        return received, script
    return _process_start(api.IMPORTED), api.IMPORTED


def _process_start(fallback: float) -> float:
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return fallback
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def _version_roots() -> tuple[str, str] | None:
    """``(repository, worktree)`` from the task's ``FLORSQL_REPLAY_ROOTS`` (None: unnamed)."""
    import json

    from florsql.store.checkout import ROOTS

    try:
        roots = json.loads(os.environ.get(ROOTS) or "{}")
        return str(roots["repo"]), str(roots["tree"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _places() -> list[tuple[str, str]]:
    """``(worktree path, repository path)`` pairs, as written and resolved, longest first:
    the task's worktree stands for the repository (:meth:`ReplayMode._as_run`)."""
    roots = _version_roots()
    if roots is None:
        return []
    repo, tree = roots
    pairs = {(tree, repo), (os.path.realpath(tree), os.path.realpath(repo))}
    return sorted(pairs, key=lambda p: len(p[0]), reverse=True)


def guard_files(spec: ReplaySpec) -> None:
    """Keep this worker's writes out of the user's repository and the shared worktree
    (:class:`florsql.record.watch.WriteSandbox`): private copies under the task's folder,
    removed when it ends. Called as the task starts (the warm worker's child, before the
    script runs) and again, doing nothing, when the record API starts."""
    from florsql.record.watch import WATCH, WriteSandbox

    if WATCH.sandbox is not None:
        return
    from florsql.record.rng_guard import hook_draws

    hook_draws()  # before the script's ``from random import shuffle``
    store = Path(spec.run_dir).parent.parent  # <repo>/.florsql/runs/<run_id>
    if store.name != layout.STORE_DIRNAME:
        # materialized elsewhere (a Ray node's temporary folder, which it may write): the
        # node's other paths (an absolute ``/tmp/last.pt``) are still kept from it, as other
        # tasks on the node, or the user there, may read them
        sandbox = WriteSandbox(
            [],
            [str(Path(spec.run_dir).parent), spec.out_dir, spec.run_dir],
            str(Path(spec.out_dir) / "files"),
            everywhere=True,
        )
        sandbox.install()
        WATCH.sandbox = sandbox
        return
    repo = store.parent
    sandbox = WriteSandbox(
        [str(repo), str(store / "worktrees")],
        [str(store), spec.out_dir, spec.run_dir],  # the task's own results, the run's files
        str(Path(spec.out_dir) / "files"),
        _version_roots(),
        everywhere=True,  # not only the repository's files: session 44, ``/tmp/x.pt``
    )
    sandbox.during, sandbox.outputs, sandbox.loop_outputs = _written_while_it_ran(spec, repo)
    sandbox.starts = _append_starts(spec, repo)
    sandbox.absent = _created_outputs(spec, repo)
    if spec.run_error is not None:
        sandbox.raised = f"{spec.run_error.get('type')}: {spec.run_error.get('message')}"
    sandbox.names |= {os.path.basename(r) for r in sandbox.outputs or ()}
    sandbox.folders |= {os.path.dirname(r) for r in sandbox.outputs or ()}
    sandbox.install()
    WATCH.sandbox = sandbox


def _written_while_it_ran(
    spec: ReplaySpec, repo: Path
) -> tuple[set[str], dict[str, str] | None, set[str] | None]:
    """Real paths of the files the run read that changed while it ran (``during:`` inputs:
    it wrote them itself, ``torch.save`` each epoch), and of those it wrote (``outputs``, each
    with its repository-relative path; None where its run.json does not list them). Where the
    task skips iterations (restores a checkpoint or runs an iteration's rest), what it would
    read there is not what the skipped iterations wrote
    (:class:`florsql.record.watch.SkippedWriteError`); an output read before the task wrote
    it holds today's copy, not what the run found (``read_outputs`` in ``done.json``). Third,
    those the run wrote while its outer loop ran (None: not listed)."""
    from florsql.store.fingerprints import DURING, recorded_inputs

    try:
        doc = layout.read_json(Path(spec.run_dir) / layout.RUN_JSON)
    except (OSError, ValueError):
        return set(), None, None
    roots = [repo]
    version = _version_roots()
    if version is not None:
        roots.append(Path(version[1]))
    during = {
        os.path.realpath(root / inp.path)
        for inp in recorded_inputs(doc)
        if inp.hash.startswith(DURING)
        for root in roots
    }
    listed, looped = doc.get(rundoc.OUTPUTS), doc.get(rundoc.LOOP_OUTPUTS)
    if not isinstance(listed, list):
        return during, None, None
    outputs = {os.path.realpath(root / str(p)): str(p) for p in listed for root in roots}
    if not isinstance(looped, list):
        return during, outputs, None
    return during, outputs, {os.path.realpath(root / str(p)) for p in looped for root in roots}


def _append_starts(spec: ReplaySpec, repo: Path) -> dict[str, tuple[int, str]]:
    """Real paths of the outputs the run first opened to append, with their size and the
    digest of their first bytes as the run found them (``append_starts`` in run.json)."""
    try:
        doc = layout.read_json(Path(spec.run_dir) / layout.RUN_JSON)
    except (OSError, ValueError):
        return {}
    listed = doc.get(rundoc.APPEND_STARTS)
    if not isinstance(listed, dict):
        return {}
    roots = [repo]
    version = _version_roots()
    if version is not None:
        roots.append(Path(version[1]))
    out: dict[str, tuple[int, str]] = {}
    for name, start in listed.items():
        if isinstance(start, list) and len(start) == 2:
            for root in roots:
                out[os.path.realpath(root / str(name))] = (int(start[0]), str(start[1]))
    return out


def _created_outputs(spec: ReplaySpec, repo: Path) -> set[str]:
    """Real paths of the outputs that were not there when the run first wrote them
    (``created_outputs`` in run.json; none for a run recorded before session 49)."""
    try:
        doc = layout.read_json(Path(spec.run_dir) / layout.RUN_JSON)
    except (OSError, ValueError):
        return set()
    listed = doc.get(rundoc.CREATED_OUTPUTS)
    if not isinstance(listed, list):
        return set()
    roots = [repo]
    version = _version_roots()
    if version is not None:
        roots.append(Path(version[1]))
    return {os.path.realpath(root / str(name)) for name in listed for root in roots}


def guard_spec(path: str) -> None:
    """:func:`guard_files` for the spec at ``path`` (the warm worker's child, by name)."""
    guard_files(ReplaySpec.read(path))


def drop_private_files(spec: ReplaySpec) -> None:
    """Remove the task's private copies of the files it wrote."""
    import shutil

    shutil.rmtree(Path(spec.out_dir) / "files", ignore_errors=True)


@dataclass
class _Open:
    """An open loop of a replay: its name, the context outside it, whether florsql took it
    as left (its generator still open)."""

    name: str
    outside: int
    detached: bool = False
    outer: bool = False  # the task's outer loop (``ReplayRun._outer``)
    #: its generator (weakly), for a run recorded before session 48 (``ReplayRun.keeps_open``)
    gen: weakref.ref[Iterator[Any]] | None = None


class ReplayRun:
    """The record API's state in a replay worker."""

    def __init__(self, spec: ReplaySpec) -> None:
        self.phases = Phases()
        self.spec = spec
        guard_files(spec)
        set_torch_threads(spec.torch_threads)
        self.out = Path(spec.out_dir)
        self.run_dir = Path(spec.run_dir)
        doc = layout.read_json(self.run_dir / layout.RUN_JSON)
        self.recorded_args: dict[str, Any] = doc.get("args") or {}
        #: a fetch's values go to the iteration it starts, as the run recorded them
        self.fetch_in_iteration = bool(doc.get(rundoc.FETCH_IN_ITERATION))
        #: a run recorded before session 48 closed a loop it took as left: so does its replay
        self.keeps_open = bool(doc.get(rundoc.KEEPS_LOOPS_OPEN))
        self.arg_tags: dict[str, str] = doc.get("arg_tags") or {}
        #: the order of strings the run held as its first outer loop started (order.py), and
        #: the names this replay holds in another order there
        orders = doc.get(rundoc.ORDERS)
        self.orders: dict[str, Any] | None = orders if isinstance(orders, dict) else None
        self.reordered: list[str] = []
        self.names = set(spec.names)
        self.compare = set(spec.compare) - self.names
        self.places = _places()
        self.needed = set(spec.iterations) if spec.iterations is not None else None
        self.manifest = read_manifest(self.run_dir, spec.loop)
        self.plan = {int(it): _Step(str(mode), restore) for it, mode, restore in spec.steps}
        self.writer = Writer(self.out)
        self.batch = Batch()
        self.seq = 0
        self.logged: set[str] = set()  # the names this task stored a value of
        self.ctx = 0
        self.next_ctx = 1
        self.frames: list[str] = []
        #: the open loops' states, beside ``frames`` (florsql.record.runtime's ``_detach``)
        self.opens: list[_Open] = []
        #: the innermost inner loop iterated through a wrapper kept open, as in the recording
        #: (florsql.record.consumer): its name and its consumer
        self.watched: tuple[str, Consumer] | None = None
        self.consumers: dict[str, Consumer] = {}
        self.thread = get_ident()  # the script's thread
        self.iters: dict[str, int] = {}
        self.objs: dict[str, Any] = {}
        self.scopes: list[Any] = []
        self.outer: int | None = None
        self.step: _Step | None = None
        self.outer_frame: FrameType | None = None
        self.restored = True
        self.warned: set[str] = set()
        self.finished = False
        self.started = time.time()
        self.ran: dict[str, list[int]] = {"full": [], "rest": []}
        self.left_at: int | None = None
        #: the task raised the run's own error where the run did (spec.run_error): it ended
        #: as the run did, its values kept
        self.own_ended: str | None = None
        #: the later top loop (spec.stop_at) where the task ended as it began
        self.stopped_at: str | None = None
        #: the checkpoint being put back (None: none now): a failure meanwhile is the
        #: checkpoint's, and the runner runs the task again from the run's start
        #: (``restoring`` in ``failed.json``; runner._after_a_failed_restore)
        self.restoring: int | None = None
        #: today's statements leave the global RNGs as they found them (rng_guard.py)
        self.rng = RngGuard(self.objs)
        self.rng.check_always(spec.uneven)
        #: names whose statement drew before the outer loop ended (a draw after it shifts
        #: nothing a checkpoint restores: runner._from_the_start)
        self.drew_in_loop: set[str] = set()
        self.phases.setup = time.time() - self.phases.created

    # -- record API ----------------------------------------------------------------------------
    def arg(self, name: str, default: Any) -> Any:
        if name not in self.recorded_args:
            # an arg the old run did not read: its command line's value, as a run of today's
            # script given that line reads it (session 53, sweep AA: ``--every 3`` given to a
            # script that hard-coded 2 took today's default), else its default
            line = sys.argv[1:]
            return given_arg(name, default, scan_argv(line), scan_flags(line))
        return replayed_arg(name, default, self.recorded_args[name], self.arg_tags.get(name))

    def hindsight_begin(self, name: str, frame: FrameType | None = None) -> None:
        if get_ident() == self.thread:
            before = len(self.rng.moved.get(name, ()))
            self.rng.begin(name, frame)  # ends a piece of ``name`` an exception left first
            if self.phases.loop_out is None and len(self.rng.moved.get(name, ())) > before:
                self.drew_in_loop.add(name)

    def hindsight_end(self, name: str, frame: FrameType | None = None) -> None:
        if get_ident() == self.thread:
            before = len(self.rng.moved.get(name, ()))
            self.rng.end(name, frame)
            if self.phases.loop_out is None and len(self.rng.moved.get(name, ())) > before:
                self.drew_in_loop.add(name)  # before the outer loop's end: it shifts the run

    def log(self, name: str, value: Any) -> Any:
        if self.watched is not None and get_ident() == self.thread and self.watched[1].left():
            self._close_left()  # only the script's thread: it is the one iterating
        if name in self.names:
            if self._storing():
                v = self._as_run(normalize(name, value, self.warned))
                self.batch.logs.append((self.ctx, name, v))
                self.logged.add(name)
        elif name in self.compare and self.restored:
            # Verification: the old code's own statements, wherever they ran on true state.
            v = self._as_run(normalize(name, value, self.warned))
            self.batch.events.append(("check", self.ctx, None, name, None, v, None))
        return value

    def _as_run(self, value: Any) -> Any:
        """``value`` with the worktree's path written as the repository's: a statement that
        logs ``os.getcwd()``, ``os.path.abspath(__file__)`` or an output's absolute path gets
        the path a run of today's script in the repository has (session 45: it got
        ``<repo>/.florsql/worktrees/...``, silently)."""
        if isinstance(value, str):
            text = value
        elif isinstance(value, Tagged):
            text = value.text
        else:
            return value
        if not self.places or not any(tree in text for tree, _ in self.places):
            return value
        for tree, repo in self.places:
            text = text.replace(tree, repo)
        return text if isinstance(value, str) else Tagged(value.vtype, text)

    def _storing(self) -> bool:
        if not self.restored:
            return False  # before a "rest" restore the state is not the run's
        if self.outer is not None and self.needed is not None and self.outer not in self.needed:
            return False
        return all(
            self.iters.get(loop) in allowed
            for loop, allowed in self.spec.inner.items()
            if loop in self.iters
        )

    def loop(self, name: str, iterable: Iterable[Any]) -> Iterator[Any]:
        if get_ident() != self.thread:
            if self.frames:  # another thread's loop, unrecorded (as the recording does)
                return iter(iterable)
            self.thread = get_ident()
        if self.watched is not None and get_ident() == self.thread and self.watched[1].left():
            self._close_left()  # only the script's thread: it is the one iterating
        if (
            not self.frames
            and self.spec.stop_at is not None
            and name == self.spec.stop_at
            and self.phases.loop_out is not None
        ):
            # the later loop the run ended in (failed or was killed): what comes before it
            # was the task's; the loop itself is not run again (a script that killed itself
            # there, or ran out of memory, would end the task the same way)
            self.stopped_at = name
            self.finish()
            _stop()
        if not self.frames and self.orders is not None and name == self.orders.get("loop"):
            self._compare_orders()
        if not self.frames and name == self.spec.loop:
            if self.phases.loop_in is None:
                self.phases.loop_in = time.time()
            self.outer_frame = frame_state.user_frame()
            line = self.outer_frame.f_lineno if self.outer_frame is not None else 0
            ref: list[weakref.ref[Iterator[Any]]] = []
            return self._held(self._outer(name, iterable, line, ref), ref)
        if (
            len(self.frames) == 1
            and self.frames[0] == self.spec.loop
            and self.step is not None
            and self.step.mode == "rest"
            and not self.restored
        ):
            position = self.manifest.get(self.outer, ("", ""))[0] if self.outer is not None else ""
            if position != f"after:{name}":
                # The plan skips the loop the checkpoint was taken after; another loop met
                # first would run on state that is not the run's.
                raise RuntimeError(
                    f"rest mode met flor.loop({name!r}) first, but the checkpoint of "
                    f"{self.spec.loop} {self.outer} was taken at {position or 'no position'}"
                )
            return self._skipped(name, frame_state.user_frame())
        owner = frame_state.user_frame()
        line = owner.f_lineno if owner is not None else 0
        held: list[weakref.ref[Iterator[Any]]] = []
        return self._held(self._plain(name, iter(iterable), owner, line, ref=held), held)

    @staticmethod
    def _held(gen: Iterator[Any], ref: list[weakref.ref[Iterator[Any]]]) -> Iterator[Any]:
        """``gen``, its weak reference put in ``ref`` for :meth:`_open` (a run recorded before
        session 48 closes it, as its recording did)."""
        ref.append(weakref.ref(gen))
        return gen

    def _unwatch(self, name: str) -> None:
        """As an inner loop ends: watch the next watched loop below it, if any."""
        self.consumers.pop(name, None)
        if self.watched is not None and self.watched[0] == name:
            self.watched = None
            for below in reversed(self.frames):
                if below in self.consumers and below != name:
                    self.watched = (below, self.consumers[below])
                    break

    def _close_left(self) -> None:
        """The script left the ``for`` that iterated the watched loop through a wrapper that
        keeps it open: take it (and what is open inside it) as left now, as the recording
        does."""
        assert self.watched is not None
        name = self.watched[0]
        while name in self.frames:
            self._close_top(0)
        self._unwatch(name)

    def _close_stale(self) -> None:
        """Take the inner loops still open as an outer iteration ends as left (a wrapper that
        holds the ``flor.loop`` outlived a ``break``), as the recording does: they ended in
        it."""
        while len(self.frames) > 1:
            self._close_top(1)

    def _close_top(self, keep: int) -> None:
        """Take the innermost open loop as left, as its generator's ``finally`` would, leaving
        the generator open: iterated on, it goes on as the same loop entered again where the
        script then is, numbered on (as the recording does since session 48; it closed the
        generator before, and the script's loop stopped early)."""
        state = self.opens[-1]
        gen = state.gen() if state.gen is not None else None
        if not self.keeps_open and gen is not None:
            # recorded before session 48: the recording closed it (its ``finally`` pops it)
            with contextlib.suppress(Exception):
                gen.close()  # type: ignore[attr-defined]
            if len(self.frames) > keep and self.opens and self.opens[-1] is state:
                self.frames.pop()
                self.opens.pop()
                self._unwatch(state.name)
            return
        top = self.frames.pop()
        state = self.opens.pop()
        state.detached = True
        self.ctx = state.outside
        self.iters.pop(top, None)
        self._unwatch(top)
        if state.outer:  # as its ``break`` does: what runs next is outside every iteration
            if self.outer is not None:
                self.left_at = self.outer
            self.outer, self.step, self.restored = None, None, True

    def _close_above(self, state: _Open) -> None:
        """Take the loops open above ``state``'s as left (they ended in its iteration)."""
        if not any(o is state for o in self.opens):
            return
        while self.opens and self.opens[-1] is not state:
            self._close_top(0)

    def _open(self, name: str, ref: list[weakref.ref[Iterator[Any]]] | None = None) -> _Open:
        self.frames.append(name)
        state = _Open(name, self.ctx, gen=ref[0] if ref else None)
        self.opens.append(state)
        return state

    def _shut(self, state: _Open) -> None:
        """Take ``state``'s loop off the stack (the innermost, by identity)."""
        for k in range(len(self.opens) - 1, -1, -1):
            if self.opens[k] is state:
                del self.opens[k]
                del self.frames[k]
                break
        self._unwatch(state.name)

    def checkpointing(self, objs: dict[str, Any]) -> dict[str, Any]:
        self.objs.update(objs)
        return objs

    # -- loops ---------------------------------------------------------------------------------
    def _enter(self, name: str, iteration: int, item: Any) -> tuple[int, int]:
        parent = self.ctx
        ctx = self.next_ctx
        self.next_ctx += 1
        self.ctx = ctx
        self.iters[name] = iteration
        value = item if type(item) in (int, float, str, bool) else None
        self.batch.events.append(("loop", ctx, parent, name, iteration, value, time.time()))
        return parent, ctx

    def _leave(self, name: str, parent: int, ctx: int, t0: float) -> None:
        self.batch.events.append(("end", ctx, None, None, None, None, time.perf_counter() - t0))
        self.ctx = parent
        self.iters.pop(name, None)

    def _plain(
        self,
        name: str,
        items: Iterator[Any],
        owner: FrameType | None,
        call_line: int,
        start: int = 0,
        ref: list[weakref.ref[Iterator[Any]]] | None = None,
    ) -> Iterator[Any]:
        if get_ident() != self.thread:
            if self.frames:  # another thread's loop, unrecorded (as the recording does)
                yield from items
                return
            self.thread = get_ident()
        state = self._open(name, ref)
        found = consumer_of(owner, call_line, sys._getframe())
        if found is not None:
            self.consumers[name] = found
            self.watched = (name, found)
        outside = self.ctx
        i = start - 1
        try:
            # what fetching an item logs goes to the iteration it starts, as in a recording
            # (florsql.record.runtime: session 45); the last fetch's, to the loop's parent
            if self.fetch_in_iteration:
                self.ctx = self.next_ctx
            for i, item in enumerate(items, start):
                self.ctx = outside
                parent, ctx = self._enter(name, i, item)
                t0 = time.perf_counter()
                try:
                    yield item
                except GeneratorExit:  # ``break``: what follows the loop is outside it
                    if not state.detached:
                        self.ctx = parent
                        self.iters.pop(name, None)
                    raise
                if state.detached:  # taken as left and iterated on: see after ``finally``
                    break
                if self.keeps_open and self.opens and self.opens[-1] is not state:
                    self._close_above(state)  # as the recording does (session 48)
                self._leave(name, parent, ctx, t0)
                if self.fetch_in_iteration:
                    self.ctx = self.next_ctx
        finally:
            if not state.detached:
                self._plain_end(state, outside)
        if state.detached:
            yield from self._plain(name, items, owner, call_line, i + 1)

    def _plain_end(self, state: _Open, outside: int) -> None:
        """What a plain loop's ``finally`` does: the last fetch's values to the loop's parent,
        its frame off the stack."""
        pending = self.next_ctx
        if self.ctx == pending:
            self.ctx = outside
            logs, events = self.batch.logs, self.batch.events
            j = len(logs) - 1  # the last fetch's values: the last ones logged
            while j >= 0 and logs[j][0] == pending:
                logs[j] = (outside, *logs[j][1:])
                j -= 1
            j = len(events) - 1
            while j >= 0 and events[j][0] == "check" and events[j][1] == pending:
                events[j] = (events[j][0], outside, *events[j][2:])
                j -= 1
        self._shut(state)

    def _skipped(self, name: str, frame: FrameType | None) -> Iterator[Any]:
        # The first inner loop of a "rest" iteration: its effect, on the registered objects
        # and on the locals it changes, comes from the checkpoint taken as it exited.
        assert self.outer is not None and self.step is not None
        self._restore(self.outer, inner_frame=frame)
        self.restored = True
        return
        yield  # a generator that yields nothing

    def _compare_orders(self) -> None:
        """At the run's first outer loop: the names whose strings this replay holds in
        another order than the run did (once)."""
        recorded, self.orders = (self.orders or {}).get("names"), None
        owner = frame_state.user_frame()
        if isinstance(recorded, dict) and recorded and owner is not None:
            with contextlib.suppress(Exception):  # a check, never the replay's failure
                self.reordered = order.reordered(recorded, frame_state.frame_values(owner))

    def _outer(
        self,
        name: str,
        iterable: Iterable[Any],
        call_line: int,
        ref: list[weakref.ref[Iterator[Any]]] | None = None,
    ) -> Iterator[Any]:
        state = self._open(name, ref)
        state.outer = True
        found = consumer_of(self.outer_frame, call_line, sys._getframe())
        if found is not None:
            self.consumers[name] = found
            self.watched = (name, found)
        last = max(self.plan, default=-1)
        outside = self.ctx
        restored_for: list[int] = []  # the iteration whose checkpoint its fetch restored
        try:
            before = -1
            for j, item in _pick(
                iterable, sorted(self.plan), self._fetching(outside, restored_for)
            ):
                step = self.plan[j]
                if j != before + 1:
                    _skipping()  # what iterations before j wrote is not this task's
                before = j
                if step.mode == "full" and step.restore is not None and j not in restored_for:
                    self._restore(step.restore)
                self.outer, self.step = j, step
                self.restored = step.mode != "rest"
                self.ran[step.mode].append(j)
                parent, ctx = self._enter(name, j, item)
                t0 = time.perf_counter()
                try:
                    yield item
                    if state.detached:
                        # taken as left (a wrapper kept it open past a ``break``) and iterated
                        # on: the same loop entered again, numbered on, as the recording does
                        state = self._open(name)
                        state.outer = True
                    self._close_stale()
                except GeneratorExit:
                    if state.detached:  # taken as left before: nothing of it is open
                        raise
                    self._close_stale()
                    # ``break`` (early stopping), or an exception leaving the loop: what runs
                    # next is outside every iteration, on true state. (The two cannot be told
                    # apart here, so the worker does not stop: an exception must reach the
                    # failure hook, and after a ``break`` the code after the loop runs on.)
                    self.ctx = parent
                    self.iters.pop(name, None)
                    self.left_at = j  # where a failure happened, for its marker
                    self.outer, self.step, self.restored = None, None, True
                    raise
                self._leave(name, parent, ctx, t0)
                self.outer, self.step, self.restored = None, None, True
                if len(self.batch.events) + len(self.batch.logs) >= FLUSH_ROWS:
                    self.flush()
                if j == last and not self.spec.after_loop:
                    self.phases.loop_out = time.time()
                    self.finish()
                    _stop()
        finally:
            if not state.detached:
                self._shut(state)
        if self.phases.loop_out is None:
            self.phases.loop_out = time.time()
        if not self.spec.after_loop:
            self.finish()
            _stop()

    def _fetching(self, outside: int, restored_for: list[int]) -> Callable[[int, bool], None]:
        """What the outer loop calls around fetching item ``k`` (``done``: after it).

        - A ``full`` iteration that restores a checkpoint restores it before its item is
          fetched, as the recording fetched it: after the iteration before (an epoch-level
          generator reading the model, ``yield loader_for(difficulty(net))``, read the
          script's start state before session 46); ``restored_for`` notes it.
        - What the fetch logs (the generator's body) goes to iteration ``k``'s context when
          the task runs it, as in the recording (session 45's ``fetch_in_iteration``); a
          skipped iteration's is dropped (not this task's). Before session 46 both went to the
          loop's parent, where verification compared them with other recorded values and a
          new statement there answered in no epoch's row."""
        moved = self.fetch_in_iteration

        def note(k: int, done: bool) -> None:
            if not done:
                step = self.plan.get(k)
                if step is not None and step.mode == "full" and step.restore is not None:
                    self._restore(step.restore)
                    restored_for.append(k)
                if moved:
                    self.ctx = self.next_ctx if step is not None else _NOWHERE
                return
            if not moved:
                return
            if self.ctx == _NOWHERE:
                logs, events = self.batch.logs, self.batch.events
                while logs and logs[-1][0] == _NOWHERE:
                    logs.pop()
                while events and events[-1][0] == "check" and events[-1][1] == _NOWHERE:
                    events.pop()
            self.ctx = outside

        return note

    def _restore(self, iteration: int, inner_frame: FrameType | None = None) -> None:
        if iteration not in self.manifest:
            raise RuntimeError(f"the run has no checkpoint at {self.spec.loop} {iteration}")
        t0 = time.time()
        self.restoring = iteration
        payload = ckpt.load(self.run_dir / layout.CHECKPOINTS / self.manifest[iteration][1])
        t1 = time.time()
        missing = set(payload["states"]) | set(payload["pickled"])
        ckpt.restore({k: v for k, v in self.objs.items() if k in missing}, payload)
        _skipping()
        saved = payload.get("locals") or {}
        if self.outer_frame is not None:
            frame_state.restore(
                self.outer_frame, frame_state.Capture.from_payload(saved.get("outer")), self.objs
            )
        if inner_frame is not None and inner_frame is not self.outer_frame:
            frame_state.restore(
                inner_frame, frame_state.Capture.from_payload(saved.get("inner")), self.objs
            )
        frames = [f for f in (self.outer_frame, inner_frame) if f is not None]
        ckpt.revive_lazy([*self.objs.values(), *(v for f in frames for v in f.f_locals.values())])
        self.restoring = None
        self.phases.load += t1 - t0
        self.phases.restore += time.time() - t1
        self.phases.restores += 1

    # -- ending --------------------------------------------------------------------------------
    def flush(self) -> None:
        batch = self.batch
        if not batch:
            return
        batch.first_seq = self.seq
        self.seq += len(batch.logs)
        self.batch = Batch()
        self.writer.submit_batch(batch)

    def commit(self, status: str = "finished", error: dict[str, Any] | None = None) -> None:
        del status, error  # a replay's outcome is its marker file
        self.flush()
        self.writer.drain()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        unreached = sorted(set(self.plan) - set(self.ran["full"]) - set(self.ran["rest"]))
        raised = self.spec.run_error
        if self.stopped_at:
            raised = None  # it ended where the later loop the run ended in begins (stop_at)
        if raised is not None and self.own_ended is None and not unreached:
            # The run raised after its loop; this task got to the end of the script without
            # raising it: the code after the loop ran past where the run stopped
            self.fail(
                RuntimeError,
                RuntimeError(
                    f"the replay ran to the end of the script, where the run raised "
                    f"{raised['type']}: {raised['message']} after its loop: the code after the "
                    "loop did not run as the run's did"
                ),
                None,
            )
            self.writer.stop()
            return
        if unreached:
            # The run reached these iterations and this replay did not (its loop's iterable
            # ended sooner, or the script left the loop sooner): their values would be missing
            # without a word. A failed task says so, and its values stay NULL with a warning.
            read = _read_outputs()
            why = (
                f"it read {', '.join(read[:3])}, which the run wrote itself, before writing "
                "it: the replay read today's copy, not what the run found there (a run "
                "resuming from its own checkpoint file): put the file back as the run found "
                "it to replay this run"
                if read
                else "the loop's iterable or the script's path differs from the recording's"
            )
            error = RuntimeError(
                f"the replay never reached {self.spec.loop} "
                f"{', '.join(map(str, unreached[:5]))}{' ...' if len(unreached) > 5 else ''}, "
                f"which the run reached: {why}"
            )
            self.left_at = unreached[0]
            self.fail(RuntimeError, error, None)
            self.writer.stop()
            return
        t0 = time.time()
        self.flush()
        self.writer.stop()
        marker = {
            **asdict(self.spec),
            "status": "done",
            "started": self.started,
            "seconds": time.time() - self.started,
            "logs": self.seq,
            "pid": os.getpid(),
            "ran": self.ran,
            "timings": self.phases.done(time.time() - t0),
            # today's statements that moved a global RNG: name -> generators
            "drew": {n: sorted(g) for n, g in sorted(self.rng.moved.items())},
            "drew_in_loop": sorted(self.drew_in_loop),
            # names holding the run's strings in another order before its loop (order.py)
            "reordered": self.reordered,
            # ended raising the run's own error where the run did (spec.run_error), and the
            # names it then stored no value of (after that line, as for the run)
            "own_end": self.own_ended,
            "not_reached": sorted(set(self.spec.names) - self.logged) if self.own_ended else [],
            # files the run wrote that the task read before writing them (today's copies)
            "read_outputs": _read_outputs(),
        }
        layout.atomic_write_json(self.out / DONE, marker, fsync=True)
        drop_private_files(self.spec)

    def own_end(
        self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> bool:
        """Whether an uncaught exception is the run's own end: the run raised the same error
        (type and message, the worktree's paths read as the repository's) in the same
        function of the same file, after its loop (``torch.save`` into a folder that is not
        there), and so did this task, past the loop. The values logged before it stand:
        the run reached those lines too (sweep S F4: a tail statement placed before the line
        that raised was NULL, "failed after epoch 4")."""
        error = self.spec.run_error
        if error is None or self.outer is not None or self.phases.loop_out is None:
            return False
        if kind.__name__ != error.get("type"):
            return False
        message = self._as_run(str(exc))
        if message != error.get("message") and str(exc) != error.get("message"):
            return False
        frames = traceback.extract_tb(tb) if tb is not None else []
        at = f"{os.path.basename(frames[-1].filename)}:{frames[-1].name}" if frames else ""
        if error.get("at") and at != error.get("at"):
            return False
        self.own_ended = f"{kind.__name__}: {error.get('message')} ({at or 'where the run raised'})"
        return True

    def fail(self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        tail = "".join(traceback.format_exception(kind, exc, tb)[-4:])[-3000:]
        marker: dict[str, Any] = {
            "task_id": self.spec.task_id,
            "run_id": self.spec.run_id,
            "vid": self.spec.vid,
            "iteration": self.outer if self.outer is not None else self.left_at,
            "loop": self.spec.loop,
            "error": f"{kind.__name__}: {exc}",
            "traceback": tail,
            # Where it raised, outermost first: the planner tells from them whether one of
            # today's statements raised (florsql.plan.blame), so that the others go on.
            "frames": _frames(tb),
        }
        if self.restoring is not None:
            marker["restoring"] = self.restoring
        read = _read_output_stamps()
        if read:
            # the run's own files it read as today's copies: put back as the run found them,
            # the failure is tried again (florsql.plan.replay_set)
            marker["read_outputs"] = read
        missing = _missing_file(kind, exc)
        if missing is not None:
            marker["missing"] = missing
            if missing["skipped"] and missing["written_by_run"]:
                marker["error"] = (
                    f"SkippedWriteError: {missing['path']} was written while the run ran, by "
                    f"iterations this task skipped (it restored a checkpoint), and is not here "
                    f"({marker['error']})"
                )
        self.out.mkdir(parents=True, exist_ok=True)
        layout.atomic_write_json(self.out / FAILED, marker)
        drop_private_files(self.spec)


def _read_outputs() -> list[str]:
    """The run's outputs this task read before writing them (:class:`WriteSandbox`'s
    ``foreign``), repository-relative."""
    from florsql.record.watch import WATCH

    sandbox = WATCH.sandbox
    if sandbox is None or not sandbox.outputs:
        return []
    return sorted({sandbox.outputs[r] for r in sandbox.foreign if r in sandbox.outputs})


def _read_output_stamps() -> dict[str, list[int] | None]:
    """:func:`_read_outputs` with each file's stamp now (real path -> ``[size, mtime_ns]``;
    None: not there)."""
    from florsql.record.watch import WATCH

    sandbox = WATCH.sandbox
    if sandbox is None or not sandbox.outputs:
        return {}
    from florsql.store.replays import output_stamp

    out: dict[str, list[int] | None] = {}
    for real in sorted(r for r in sandbox.foreign if r in sandbox.outputs):
        out[real] = output_stamp(real)
    return out


def _skipping() -> None:
    """The task skips iterations (restores a checkpoint; leaves out those before its first):
    from here on, what they wrote is unknown (the run's ``during:`` inputs and the outputs it
    wrote while its outer loop ran), until the task writes a file anew."""
    from florsql.record.watch import WATCH

    sandbox = WATCH.sandbox
    if sandbox is not None:
        looped = sandbox.loop_outputs
        sandbox.skipped = sandbox.during | set(sandbox.outputs or () if looped is None else looped)
        sandbox.restored = True


def _missing_file(kind: type[BaseException], exc: BaseException) -> dict[str, Any] | None:
    """For a ``FileNotFoundError`` in a replay worker: the file, whether the task had skipped
    iterations by then (restored a checkpoint, or started past iteration 0) and whether the run
    wrote it (its ``outputs``; None: unknown, a run whose run.json does not list them). Only a
    file the run wrote may be missing because the task skipped the iterations that write it:
    the runner replays such a task again from the run's start, and no other (s36: every
    ``FileNotFoundError`` in a task that skipped iterations was, today's statement's own too,
    costing a run from the start that failed as well). None where not known (no file name)."""
    from florsql.record.watch import WATCH

    sandbox = WATCH.sandbox
    name = getattr(exc, "filename", None)
    # (any output of the run: one written only before or after the loop, the task wrote too)
    if not issubclass(kind, FileNotFoundError) or sandbox is None:
        return None
    if not isinstance(name, (str, bytes, os.PathLike)):
        return None
    path = os.fsdecode(os.fspath(name))
    written = None if sandbox.outputs is None else os.path.realpath(path) in sandbox.outputs
    return {"path": path, "skipped": sandbox.restored, "written_by_run": written}


#: Frames a failure marker keeps (the innermost ones).
MAX_FRAMES = 200


def _frames(tb: TracebackType | None) -> list[list[Any]]:
    """``[file, line, the line's text]`` per frame of ``tb``, outermost first."""
    return [[f.filename, f.lineno, f.line or ""] for f in traceback.extract_tb(tb)[-MAX_FRAMES:]]


#: The context of what fetching a skipped item logs: dropped as the fetch ends.
_NOWHERE = -7


def _pick(
    iterable: Iterable[Any],
    wanted: list[int],
    fetching: Callable[[int, bool], None] | None = None,
) -> Iterator[tuple[int, Any]]:
    """(index, item) for the wanted indices; sequences are indexed, not walked. ``fetching``
    is called with ``(k, False)`` before item ``k`` is fetched and ``(k, True)`` after."""
    note = fetching or _no_note
    if isinstance(iterable, (Sequence, range)) and not isinstance(iterable, (str, bytes)):
        for j in wanted:
            if j < len(iterable):  # each time: the body may extend the list (plan.append(...))
                note(j, False)
                try:
                    item = iterable[j]
                finally:
                    note(j, True)
                yield j, item
        return
    wanted_set = set(wanted)
    last = max(wanted, default=-1)
    items = iter(iterable)
    j = 0
    while True:
        note(j, False)
        try:
            item = next(items)
        except StopIteration:
            return
        finally:
            note(j, True)
        if j in wanted_set:
            yield j, item
        if j >= last:
            return
        j += 1


def _no_note(k: int, done: bool) -> None:
    pass


#: A pipe to the replay service that forked this task (its descriptor number): a finished
#: task says so there before it exits, so its query learns it without waiting for the exit of
#: a process that has torch mapped (10-40 ms measured, per wave of tasks).
DONE_FD = "FLORSQL_TASK_DONE_FD"


def _stop() -> None:
    """End the worker now, its ``done.json`` written: nothing after the needed iterations of old
    code may run."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.environ.get(DONE_FD, "")
    if fd.isdigit():
        with contextlib.suppress(OSError):
            os.write(int(fd), f"{os.getpid()}\n".encode())  # one atomic pipe write
    os._exit(0)


def install_hooks(run: ReplayRun) -> None:
    """Write the failure marker on an uncaught exception, and ``done`` at a normal exit."""
    import atexit

    prev = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if run.own_end(kind, exc, tb):  # raised where the run raised: it ends as the run did
            prev(kind, exc, tb)
            run.finish()
            _stop()
        run.fail(kind, exc, tb)
        run.finished = True  # no done marker for a failed task
        prev(kind, exc, tb)

    sys.excepthook = hook
    atexit.register(run.finish)
