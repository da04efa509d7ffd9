"""The recording run: one per training process, started by its first record call."""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import platform
import secrets
import signal
import sys
import threading
import time
import traceback
import warnings
import weakref
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from threading import get_ident
from types import CodeType, FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from florsql.errors import RecordError, RecordWarning
from florsql.fold import fold
from florsql.record import checkpoint as ckpt
from florsql.record import frame_state, order
from florsql.record.args import given_arg, scan_argv, scan_flags, stored_arg
from florsql.record.consumer import Consumer, consumer_of
from florsql.record.inputs import imported_files, record_inputs, record_outputs
from florsql.record.policy import CheckpointPolicy
from florsql.record.values import normalize
from florsql.record.watch import ENV_WATCH, WATCH
from florsql.record.writer import EXIT_TIMEOUT, FLUSH_INTERVAL, ROW_FILES, Writer
from florsql.store import layout, rundoc
from florsql.store.fingerprints import InputFile, combined_digest
from florsql.store.rows import INT, LOOP_SCALARS, Columns, NameTable, loop_scalar
from florsql.versions import files_at

if TYPE_CHECKING:
    from florsql.code.effects import LoopFacts

#: Names the ``logs`` relation uses for run metadata; a log or arg may not take them.
RESERVED = frozenset({"projid", "run_id", "tstamp", "vid", "filename", "status"})


@dataclass
class _Frame:
    """An active ``flor.loop``."""

    name: str
    depth: int
    checkpoint_scope: _Scope | None = None
    iteration: int = -1
    inner_checkpoint_taken: bool = False
    #: an inner loop of this iteration was closed stale: no later one takes the ``after:``
    #: checkpoint (replay skips the first inner loop it meets; that one had none)
    inner_left_stale: bool = False
    user: FrameType | None = None  # the script's frame that runs this loop
    facts: LoopFacts | None = None  # what the loop changes (florsql.code.effects)
    #: the loop's generator (weakly: a break must still close it when the script drops it)
    gen: weakref.ref[Iterator[Any]] | None = None
    stale: bool = False  # closed by florsql after it was left unclosed (see _close_stale)
    #: the frame that called ``flor.loop``, and the line it called it from
    owner: FrameType | None = None
    call_line: int = 0
    #: the ``for`` that iterates it through a wrapper (florsql.record.consumer)
    consumer: Consumer | None = None
    #: the tensors the names the loop changes held as it began (weakly): one that still holds
    #: it at a checkpoint was changed in place only, and is restored in place (aliases kept)
    born: dict[str, weakref.ref[Any]] = field(default_factory=dict)
    #: the classes of what those names held as the loop began (a name not bound then: absent)
    kinds: dict[str, type] = field(default_factory=dict)
    #: the classes of what the names this loop's body assigns before its inner loop held as
    #: that inner loop began, this iteration (``metric = Accuracy()`` each epoch): a replay
    #: restoring there holds an object of that class too
    inner_kinds: dict[str, type] = field(default_factory=dict)
    parent: int = 0  # the context the loop runs in (its iterations' parent)
    run: _InnerRun | None = None  # an inner loop's bulk rows (``Run._iterate_inner``)
    #: taken as left by florsql (:meth:`Run._detach`), its generator still open: iterated on,
    #: it goes on as the same loop entered again where the script then is (``Run._resume``)
    detached: bool = False
    resumed: bool = False  # such a re-entry: it takes no checkpoint scope


#: Inner loops build their rows in bulk (``Run._iterate_inner``). ``FLORSQL_BULK_INNER_ROWS=0``
#: gives them the row-at-a-time path of outer loops: the oracle of tests/test_record_rows.py.
_BULK_INNER_ROWS = os.environ.get("FLORSQL_BULK_INNER_ROWS", "1") != "0"

#: Loop items stored in a loop row's value columns (exact types, as ``Columns.loop`` takes them).
_SCALARS = LOOP_SCALARS
#: Modules of the scalar kinds :func:`~florsql.store.rows.loop_scalar` keeps as Python's.
_ARRAY_MODULES = frozenset({"numpy", "torch"})


class _InnerRun:
    """One run of an inner loop whose rows :meth:`Run._materialize` builds in bulk."""

    __slots__ = ("base", "cursor", "done", "ends", "frame", "jumps", "key", "open", "parent",
                 "range", "scalars", "t0")  # fmt: skip

    def __init__(
        self, frame: _Frame, parent: int, key: int, first_ctx: int, t0: float, ranged: range | None
    ) -> None:
        self.frame = frame
        self.parent = parent
        self.key = key
        self.t0 = t0  # perf_counter at the loop's start: the first iteration's start
        self.range = ranged  # the items, where they are a range
        self.ends = array("d")  # perf_counter at each iteration's end
        self.jumps: dict[int, int] = {}  # iteration -> its context, where not the previous + 1
        self.scalars: dict[int, Any] = {}  # iteration -> its item, where a scalar (no range)
        self.done = 0  # iterations whose rows are built
        self.cursor = first_ctx  # the context of iteration ``done`` unless it jumped
        self.open: tuple[int, int] | None = None  # (iteration, ctx) built without duration
        self.base = 0  # the first iteration's number (a loop resumed: where it had got to)

    def start_of(self, j: int) -> float:
        return self.t0 if j == 0 else self.ends[j - 1]


@dataclass
class _Scope:
    """An active ``flor.checkpointing`` block."""

    objs: dict[str, Any]
    depth: int
    policy: CheckpointPolicy = field(default_factory=CheckpointPolicy)
    #: the registered objects' structure as the block starts (florsql.record.checkpoint)
    structure: dict[str, Any] = field(default_factory=dict)


class Run:
    """What one recording process knows: identity, buffers, loop stack, writer."""

    def __init__(
        self, repo: Path, script: Path | None, argv: list[str], cwd: str | None = None
    ) -> None:
        from florsql.versions import snapshot

        self.repo = repo
        self.argv = argv
        WATCH.watch_saves()  # its outputs: torch.save writes past open
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
        self.path = layout.run_dir(repo, self.run_id)
        try:
            layout.ensure_store(repo)
            (self.path / layout.SEGMENTS).mkdir(parents=True)
        except OSError as e:
            # Training never dies of logging: values stay in memory and the writer retries.
            warnings.warn(
                f"florsql cannot write its store under {layout.store_dir(repo)} ({e}); training "
                f"goes on, recorded values are kept in memory and written if it becomes writable",
                RecordWarning,
                stacklevel=4,
            )
        snap = snapshot(repo)
        self.names = NameTable()
        self.rows = Columns(self.names)  # what the next flush hands to the writer
        self.log_keys: dict[str, int] = {}  # log name -> its key in self.names
        self.owner = get_ident()  # the training thread: the one that appends to self.rows
        self.foreign: deque[tuple[int, int, Any]] = deque()  # logs from other threads
        self.seq = 0
        self.ctx = 0
        self.next_ctx = 1
        self.frames: list[_Frame] = []
        #: every flor.loop name this run has used, ended loops too: a log or arg of that name
        #: would be one column with the loop's (before s37 accepted once the loop had ended:
        #: ``SELECT max(epoch)`` answered the logged 5 of a run of 2 epochs)
        self.loop_names: set[str] = set()
        #: the innermost loop iterated through a wrapper kept open (florsql.record.consumer)
        self.watched: tuple[_Frame, Consumer] | None = None
        self.inner_runs: list[_InnerRun] = []  # inner loops running, rows not all built yet
        self.scopes: list[_Scope] = []
        self.log_names: set[str] = set()
        self.args: dict[str, Any] = {}  # as run.json keeps them (florsql.record.args.stored_arg)
        self.arg_tags: dict[str, str] = {}  # the args run.json keeps rendered: "json" or "repr"
        self.arg_values: dict[str, Any] = {}  # what flor.arg returned, for a second call
        self.warned: set[str] = set()
        self.cli = scan_argv(argv[1:])
        self.flags = scan_flags(argv[1:])  # ``--name`` given without a value
        self.writer = Writer(self.path, row_files=ROW_FILES)
        self.finished = False
        self.drained = True  # False once a bounded wait left the writer behind
        self.last_flush = 0.0
        self.refused: dict[CodeType, dict[str, str]] = {}  # locals that could not be saved
        self.sources: dict[str, Any] = {}  # file -> ScriptFacts, parsed once
        self.doc: dict[str, Any] = {
            "run_id": self.run_id,
            "projid": repo.name,
            "tstamp": datetime.now(UTC).isoformat(timespec="microseconds"),
            "vid": snap.vid,
            "head": snap.head,
            "dirty": snap.dirty,
            "snapshot_skipped": list(snap.skipped),
            "filename": _relative(script, repo),
            "cwd": _relative(_launched_in(cwd, repo, argv, script), repo),
            "argv": argv,
            # ``python -m pkg.train``: the module it ran as (replay runs it so again: its
            # ``from pkg import ...`` needs the cwd on sys.path, not the script's folder)
            "module": _main_module(),
            rundoc.IMPORT_PATH: _import_path(repo),
            rundoc.HASH_SEED: order.hash_seed(),
            rundoc.FETCH_IN_ITERATION: True,
            rundoc.KEEPS_LOOPS_OPEN: True,
            "python": platform.python_version(),
            "torch": _torch_version(),
            rundoc.TORCH_THREADS: None,
            rundoc.TORCH_INTEROP_THREADS: None,
            "host": platform.node(),
            "pid": os.getpid(),
            "pid_start": layout.process_start(os.getpid()),
            "status": "running",
            "error": None,
            "ended": None,
            "args": self.args,
            "arg_tags": self.arg_tags,
            "florsql": "0.1.0",
        }
        self._note_torch_threads()
        self.writer.submit_run_json(self.doc)
        self.writer.drain()
        # The version's file list (two git calls) is read now, on the writer thread, rather
        # than at commit, where the training thread waits for it.
        self.version_files: set[str] | None = None
        self.writer.submit_job(self._list_version_files)
        self.writer.submit_job(self._prefetch_facts)

    # -- record calls --------------------------------------------------------------------------
    def arg(self, name: str, default: Any) -> Any:
        if not isinstance(name, str) or not name:  # as flor.log and flor.loop (s37: an int
            # failed with AttributeError, an empty name was recorded)
            raise RecordError(f"flor.arg needs a non-empty string name, got {name!r}")
        if name in self.args:
            return self.arg_values[name]
        if name in self.log_names or name in RESERVED or self._is_loop(name):
            raise RecordError(f"{name!r} is already used as a log, loop or metadata name")
        self._check_case(name, "flor.arg")
        # (`--batch-size 8` for flor.arg("batch_size", ...), as argparse maps it: before s37
        # the dashed spelling was left to the script's argparse and the arg kept its default)
        value = given_arg(name, default, self.cli, self.flags)
        stored, tag = stored_arg(normalize(name, value, self.warned))
        if tag is not None:
            self.arg_tags[name] = tag
        self.args[name] = stored
        self.arg_values[name] = value
        self.writer.submit_run_json(self.doc)
        return value

    def log(self, name: str, value: Any) -> Any:
        if self.watched is not None and get_ident() == self.owner and self.watched[1].left():
            self._close_left()  # only the training thread: it is the one iterating
        key = self.log_keys.get(name)
        if key is None:
            key = self._first_log(name)
        t = type(value)
        if get_ident() != self.owner:
            # Another thread: one atomic append to a queue the next flush drains, never the
            # columns, whose appends the training thread makes several at a time.
            stored = value if t is float or t is int else normalize(name, value, self.warned)
            self.foreign.append((self.ctx, key, stored))
        elif t is float:  # Columns.log's first case, inlined: the common one, and the hot path
            rows = self.rows
            rows.log_f.append(value)
            rows.log_ctx.append(self.ctx)
            rows.log_key.append(key)
        elif t is int:  # Columns.log's int case, inlined too (a step counter, a count)
            rows = self.rows
            try:
                rows.log_i.append(value)
            except OverflowError:  # past int64: stored as an other value, as Columns.log does
                rows.log(self.ctx, key, value)
            else:
                rows.log_ctx.append(self.ctx)
                rows.log_key.append(key | INT)
        else:
            self.rows.log(self.ctx, key, normalize(name, value, self.warned))
        return value

    def _first_log(self, name: str) -> int:
        if not isinstance(name, str) or not name:
            raise RecordError(f"flor.log needs a non-empty string name, got {name!r}")
        if name in self.args:
            raise RecordError(f"{name!r} is an arg of this run; give the logged value another name")
        if name in RESERVED:
            raise RecordError(f"{name!r} is a run metadata column; pick another log name")
        if self._is_loop(name):
            raise RecordError(f"{name!r} names a flor.loop; pick another log name")
        self._check_case(name, "flor.log")
        self.log_names.add(name)
        key = self.log_keys[name] = self.names.key(name)
        return key

    def _is_loop(self, name: str) -> bool:
        return name in self.loop_names or any(f.name == name for f in self.frames)

    def _check_case(self, name: str, call: str) -> None:
        """Refuse a new name that differs only in case from a name of this run: queries read
        names ignoring case (as DuckDB), so the two would be one column and one value would
        hide the other (``loss`` and ``Loss`` logged in one context: only the last is read)."""
        folded = fold(name)
        used = [("log", n) for n in self.log_names] + [("arg", n) for n in self.args]
        used += [("flor.loop", n) for n in self.loop_names | {f.name for f in self.frames}]
        used += [("metadata", n) for n in RESERVED]
        for kind, other in used:
            if other != name and fold(other) == folded:
                raise RecordError(
                    f"{call}({name!r}): this run already has the {kind} name {other!r}, which "
                    "differs only in case; queries read names ignoring case, so the two would "
                    "be one column: pick another name, or spell it the same"
                )

    def loop(self, name: str, iterable: Iterable[Any]) -> Iterator[Any]:
        if not isinstance(name, str) or not name:
            raise RecordError(f"flor.loop needs a non-empty string name, got {name!r}")
        if get_ident() != self.owner and self.frames:
            return self._foreign(name, iter(iterable))
        if self.watched is not None and get_ident() == self.owner and self.watched[1].left():
            self._close_left()  # only the training thread: it is the one iterating
        if any(f.name == name for f in self.frames):
            raise RecordError(
                f"flor.loop({name!r}) is nested inside another flor.loop({name!r}); "
                f"give the inner loop its own name"
            )
        if name in self.log_names or name in self.args or name in RESERVED:
            raise RecordError(f"{name!r} is already used as a log, arg or metadata name")
        self._check_case(name, "flor.loop")
        self.loop_names.add(name)
        scope = self.scopes[-1] if self.scopes else None
        owns_scope = scope is not None and scope.depth == len(self.frames)
        frame = _Frame(name, len(self.frames), scope if owns_scope else None)
        frame.owner = frame_state.user_frame()
        frame.call_line = frame.owner.f_lineno if frame.owner is not None else 0
        if not self.frames:
            WATCH.watch_saves()  # torch imported after the run's start
        if not self.frames and rundoc.ORDERS not in self.doc and frame.owner is not None:
            self._note_orders(name, frame.owner)
        if self.scopes:  # only checkpointed loops save locals
            frame.user = frame.owner
            frame.facts = self._facts(frame.user, name)
            if frame.facts is not None and frame.user is not None:
                values = frame_state.frame_values(frame.user)
                frame.born, frame.kinds = frame_state.held_at_start(values, frame.facts.changed)
                parent = self.frames[-1] if self.frames else None
                if parent is not None and parent.user is frame.user and parent.facts is not None:
                    parent.inner_kinds = {
                        n: type(values[n]) for n in parent.facts.before_inner if n in values
                    }
        return self._iterate(frame, iterable)

    def _note_orders(self, name: str, owner: FrameType) -> None:
        """As the first outer loop starts: the order of the strings the script holds
        (:mod:`florsql.record.order`), for replays to compare theirs with."""
        filename = owner.f_code.co_filename

        def source() -> str:  # the script's text: which of its sets it iterates
            import linecache

            return "".join(linecache.getlines(filename))

        try:
            found = order.digests(frame_state.frame_values(owner), source)
        except Exception:  # never the training's failure
            found = {}
        self.doc[rundoc.ORDERS] = {"loop": name, "names": found}
        if found:
            self.writer.submit_run_json(self.doc)

    def _facts(self, user: FrameType | None, name: str) -> LoopFacts | None:
        if user is None:
            return None
        from florsql.code.effects import analyze_source, loop_at

        filename = user.f_code.co_filename
        facts = self.sources.get(filename)
        if facts is None:
            import linecache

            facts = analyze_source("".join(linecache.getlines(filename)))
            self.sources[filename] = facts
        return loop_at(facts, name, user.f_lineno)

    def _foreign(self, name: str, items: Iterator[Any]) -> Iterator[Any]:
        """A loop iterated by another thread while the recording thread's loops are open:
        its items, unrecorded (one loop stack records one thread's loops; before session 48
        the two threads' loops closed each other's generators, and the script's own loops
        stopped early: 3 of 10 epochs, sweep O)."""
        key = f"thread:{name}"
        if key not in self.warned:
            self.warned.add(key)
            open_loops = ", ".join(repr(f.name) for f in self.frames)
            warnings.warn(
                f"flor.loop({name!r}) runs in another thread than the open flor.loop "
                f"{open_loops}: its iterations are not recorded as a loop (values logged in "
                "it go to the other thread's current iteration); the loop itself runs as "
                "written",
                RecordWarning,
                stacklevel=3,
            )
        yield from items

    def _entered_by_another_thread(self, name: str) -> bool:
        """As a loop's generator first runs: whether another thread than the recording one
        iterates it while loops are open (then it only passes its items on). With no loop
        open, the thread iterating it becomes the recording one (training in a thread the
        script started after ``flor.arg``)."""
        me = get_ident()
        if me == self.owner:
            return False
        if not self.frames:
            self.owner = me
            return False
        return True

    def _resume(self, old: _Frame, items: Iterator[Any], start: int) -> Iterator[Any]:
        """The script iterates a loop on after florsql took it as left (:meth:`_detach`):
        it goes on as the same loop entered again where the script now is, its iterations
        numbered on from ``start``; the run then replays whole (:data:`rundoc.RESUMED`)."""
        if old.name not in self.doc.get(rundoc.RESUMED, []):
            self.doc.setdefault(rundoc.RESUMED, []).append(old.name)
            self.writer.submit_run_json(self.doc)
        frame = _Frame(old.name, len(self.frames), None)
        frame.owner, frame.call_line = old.owner, old.call_line
        frame.resumed = frame.stale = True
        if frame.depth == 0 or not _BULK_INNER_ROWS:
            yield from self._iterate_hooked(frame, items, start)
        else:
            yield from self._iterate_inner(frame, items, None, start)

    def _iterate(self, frame: _Frame, iterable: Iterable[Any]) -> Iterator[Any]:
        items = iter(iterable)  # a TypeError here, at the flor.loop call, not at its first step
        gen: Iterator[Any]
        if frame.checkpoint_scope is None and frame.depth > 0 and _BULK_INNER_ROWS:
            ranged = iterable if type(iterable) is range else None
            gen = self._iterate_inner(frame, items, ranged)
        else:
            gen = self._iterate_hooked(frame, items)
        frame.gen = weakref.ref(gen)
        return gen

    def _watch(self, frame: _Frame, gen_frame: FrameType) -> None:
        """As a loop's generator first runs: watch it when a wrapper the script keeps iterates
        it (florsql.record.consumer)."""
        frame.consumer = consumer_of(frame.owner, frame.call_line, gen_frame)
        if frame.consumer is not None:
            self.watched = (frame, frame.consumer)

    def _unwatch(self, frame: _Frame) -> None:
        """As a loop ends: watch the next watched loop below it, if any."""
        if self.watched is not None and self.watched[0] is frame:
            self.watched = None
            for f in reversed(self.frames):
                if f.consumer is not None and f is not frame:
                    self.watched = (f, f.consumer)
                    break

    def _close_left(self) -> None:
        """The script left the ``for`` that iterated the watched loop through a wrapper that
        keeps it open (``pbar = tqdm(flor.loop(...))``, then ``break``): close it (and what
        is open inside it) now, so what follows lands where a plain ``break`` puts it."""
        assert self.watched is not None
        frame = self.watched[0]
        if any(f is frame for f in self.frames):
            self._close_stale(frame, keep=False)
        self._unwatch(frame)

    def _close_stale(self, frame: _Frame, keep: bool = True) -> None:
        """Take the loops still open above ``frame`` (and ``frame`` too unless ``keep``) as
        left, as one of its iterations ends: they were left without being closed (a wrapper
        that holds the ``flor.loop``, as a progress bar kept in a variable does, outlived a
        ``break``), so they ended in that iteration. Their exit took no ``after:`` checkpoint
        (its place is not known); the iteration then takes its ``end`` checkpoint. Their
        generators stay open: the script may iterate them on (:meth:`_resume`; before session
        48 they were closed, and a loop kept across epochs, two loops zipped or generators
        read in turn stopped early, sweep O)."""
        at = next((i for i, f in enumerate(self.frames) if f is frame), None)
        if at is None:
            return
        depth = at + (1 if keep else 0)
        while len(self.frames) > depth:
            self._detach(self.frames[-1])

    def _detach(self, top: _Frame) -> None:
        """End the loop record of ``top``, the innermost open loop, as its generator's
        ``finally`` would have, leaving the generator open."""
        top.stale = top.detached = True
        try:
            if top.run is not None:
                self._end_inner(top, exhausted=False)
            else:
                self._end_hooked(top, exhausted=False)
        finally:
            if self.frames and self.frames[-1] is top:
                self.frames.pop()
                self._unwatch(top)

    def _drop(self, frame: _Frame) -> None:
        """Take ``frame`` off the loop stack (the innermost one, but by identity)."""
        if self.frames and self.frames[-1] is frame:
            self.frames.pop()
        else:
            for k in range(len(self.frames) - 1, -1, -1):
                if self.frames[k] is frame:
                    del self.frames[k]
                    break
        self._unwatch(frame)

    def _end_hooked(self, frame: _Frame, exhausted: bool) -> None:
        self._rehome(self.next_ctx, frame.parent)
        if frame.depth == 0:
            WATCH.phase = 2
        if self.frames and self.frames[-1] is not frame:
            self._close_stale(frame)
        self._drop(frame)
        self.ctx = frame.parent
        self._after_inner_loop(frame, left=not exhausted)
        if frame.depth == 0:  # the last iterations' rows, not left to the run's end
            pending = bool(self.rows) or bool(self.foreign)
            self._flush_now()
            if pending and not frame.detached:  # on disk before what follows the loop
                self.writer.rows_written()

    def _flush_now(self) -> None:
        self.last_flush = time.perf_counter()
        self.flush()

    def _end_inner(self, frame: _Frame, exhausted: bool) -> None:
        run = frame.run
        assert run is not None
        self._rehome(self.next_ctx, frame.parent)
        if self.frames and self.frames[-1] is not frame:
            self._close_stale(frame)
        # An iteration left by break, return or an exception keeps no duration, as on the
        # hooked path.
        self._materialize(run)  # then out of the list: a flush between finds it built
        if run in self.inner_runs:
            self.inner_runs.remove(run)
        self._drop(frame)
        self.ctx = frame.parent
        self._after_inner_loop(frame, left=not exhausted)

    def _iterate_hooked(self, frame: _Frame, items: Iterator[Any], start: int = 0) -> Iterator[Any]:
        """An outermost loop, or one that checkpoints: a row per iteration as it starts, and the
        after-iteration hook (checkpoints, flushes) as it ends."""
        if self._entered_by_another_thread(frame.name):
            yield from self._foreign(frame.name, items)
            return
        parent = frame.parent = self.ctx
        if (
            frame.checkpoint_scope is None
            and not frame.resumed
            and self.scopes
            and frame.depth == len(self.frames)
        ):
            # Called before ``flor.checkpointing`` was entered, run inside it (``bar =
            # tqdm(flor.loop("epoch", ...))``, then ``with flor.checkpointing(...): for e in
            # bar``): it checkpoints as a loop called inside would (it took none before).
            scope = self.scopes[-1]
            if scope.depth == frame.depth:
                frame.checkpoint_scope = scope
                frame.user = frame.owner
                frame.facts = self._facts(frame.user, frame.name)
        self.frames.append(frame)
        self._watch(frame, sys._getframe())
        outer = frame.depth == 0
        if outer:
            WATCH.phase = 1  # the files written from here on: ``loop_outputs``
            # what was logged before the loop goes to disk as it starts: a kill in a long
            # first iteration lost it (sweep O: ``n_params``, logged 0.6 s before; sweep Q:
            # handed to the writer only, a kill soon after still lost it, so its row file is
            # waited for, once, at most a second)
            if self.rows or self.foreign:  # (nothing else: the first iteration's end still
                # flushes whatever the interval, ``last_flush`` being 0 until then)
                self.flush()
                self.writer.rows_written()
        key = self.names.key(frame.name)
        clock = time.perf_counter
        exhausted = False  # False in ``finally``: left by break, return or an exception
        i = start - 1
        try:
            self.ctx = self.next_ctx  # a fetch's logs: the iteration it starts (as above)
            for item in items:
                i += 1
                ctx = self.next_ctx
                self.next_ctx = ctx + 1
                self.ctx = ctx
                frame.iteration = i
                rows = self.rows
                t0 = clock()
                row = rows.loop(ctx, parent, key, i, item, t0)
                yield item
                if frame.detached:  # taken as left, and iterated on: see after ``finally``
                    break
                if self.frames[-1] is not frame:
                    self._close_stale(frame)
                elapsed = clock() - t0
                if self.rows is rows:  # one row per iteration: its duration goes in place
                    rows.loop_s[row] = elapsed
                else:  # flushed meanwhile (flor.commit() inside the loop)
                    self.rows.ends.append((ctx, elapsed))
                self.ctx = parent
                self._after_iteration(frame, elapsed)
                frame.inner_checkpoint_taken = False  # for the next iteration
                frame.inner_left_stale = False
                self.ctx = self.next_ctx
            exhausted = True
        finally:
            if not frame.detached:  # else :meth:`_detach` ended its record already
                self._end_hooked(frame, exhausted)
        if frame.detached:
            yield from self._resume(frame, items, i + 1)

    def _iterate_inner(
        self, frame: _Frame, items: Iterator[Any], ranged: range | None, start: int = 0
    ) -> Iterator[Any]:
        """An inner loop without checkpoints: the hot path of recording, once per step.

        It runs between steps whose work has pushed florsql's data out of the CPU's caches, so
        every attribute, append and clock read costs many times what it costs in a tight loop
        (benchmarks/record_overhead.py). So an iteration only takes its context and, as it
        ends, appends one clock reading; its row (context, parent, name, iteration, item, start
        and duration) is built from those by :meth:`_materialize`, in bulk, when the loop ends
        and before every flush, so a flush still carries the row of every iteration begun. An
        iteration's time runs from the previous one's end (the loop's start for the first), so
        it includes fetching its item.
        """
        if self._entered_by_another_thread(frame.name):
            yield from self._foreign(frame.name, items)
            return
        parent = frame.parent = self.ctx
        frames = self.frames
        frames.append(frame)
        self._watch(frame, sys._getframe())
        clock = time.perf_counter
        run = _InnerRun(frame, parent, self.names.key(frame.name), self.next_ctx, clock(), ranged)
        run.base = start
        frame.run = run
        self.inner_runs.append(run)
        ends, jumps, scalars = run.ends, run.jumps, run.scalars
        computed = ranged is not None
        exhausted = False  # False in ``finally``: left by break, return or an exception
        i = -1
        try:
            want = run.cursor
            # what fetching an item logs (a generator's body, a Dataset's __getitem__) goes
            # to the iteration it starts (session 45: to the loop's parent, where the last
            # value wins: 2 of 6 values kept); the last fetch's, to the parent (_rehome)
            self.ctx = self.next_ctx
            for item in items:
                i += 1
                ctx = self.next_ctx
                self.next_ctx = ctx + 1
                if ctx != want:  # a nested loop took the contexts in between
                    jumps[i] = ctx
                want = ctx + 1
                if not computed:
                    kind = type(item)
                    if kind in _SCALARS:
                        scalars[i] = item
                    elif kind.__module__ in _ARRAY_MODULES and getattr(item, "ndim", 1) == 0:
                        scalar = loop_scalar(item)  # np.float64, a 0-d tensor (not a batch)
                        if scalar is not None:
                            scalars[i] = scalar
                frame.iteration = i  # a flush (a signal's) builds its row from here on
                self.ctx = ctx
                yield item
                if frame.detached:  # taken as left, and iterated on: see after ``finally``
                    break
                if frames[-1] is not frame:  # a loop left open in this iteration: it ended in
                    # it (``zip(flor.loop("train"), flor.loop("val"))`` in an epoch: before
                    # session 48 ``val`` stayed open under ``train`` 0, sweep Q)
                    self._close_stale(frame)
                ends.append(clock())
                self.ctx = self.next_ctx
            exhausted = True
        finally:
            if not frame.detached:  # else :meth:`_detach` ended its record already
                self._end_inner(frame, exhausted)
        if frame.detached:
            yield from self._resume(frame, items, start + i + 1)

    def _rehome(self, pending: int, parent: int) -> None:
        """Values logged under ``pending``, the context the next iteration would have had,
        by a fetch that ended the loop (a generator's code after its last ``yield``) or
        raised: no iteration has that context, so they are the loop parent's."""
        ctxs = self.rows.log_ctx
        j = len(ctxs) - 1  # the last fetch's values: the last ones the training thread logged
        while j >= 0 and ctxs[j] == pending:
            ctxs[j] = parent
            j -= 1

    def _materialize(self, run: _InnerRun) -> None:
        """Append to ``self.rows`` the rows of ``run``'s iterations begun since the last call.

        An iteration still running gets its row with no duration; the duration follows in an
        ``end`` row once it is known (as a flush in the middle of an iteration does on the
        hooked path)."""
        rows = self.rows
        ends = run.ends
        if run.open is not None and run.open[0] < len(ends):
            j, ctx = run.open
            rows.ends.append((ctx, ends[j] - run.start_of(j)))
            run.open = None
        done, started = run.done, run.frame.iteration + 1
        if started <= done:
            return
        jumps = run.jumps
        if not jumps or max(jumps) < done:  # contexts in a row: the common, leaf loop
            ctxs: Sequence[int] = range(run.cursor, run.cursor + started - done)
            cursor = run.cursor + started - done
        else:
            ctxs, cursor = [], run.cursor
            for j in range(done, started):
                ctx = jumps.get(j, cursor)
                ctxs.append(ctx)
                cursor = ctx + 1
        finished = min(len(ends), started)
        starts = (
            ends[done - 1 : started - 1] if done else array("d", [run.t0]) + ends[: started - 1]
        )
        seconds = array("d", [e - t for t, e in zip(starts, ends[done:finished], strict=False)])
        seconds.extend([math.nan] * (started - finished))
        if run.range is not None:
            items: Sequence[Any] | None = run.range[done:started]
        elif run.scalars:
            items = [run.scalars.get(j) for j in range(done, started)]
        else:
            items = None
        rows.loop_span(ctxs, run.parent, run.key, run.base + done, items, starts, seconds)
        run.done, run.cursor = started, cursor
        if finished < started:
            run.open = (started - 1, ctxs[-1])

    def _after_iteration(self, frame: _Frame, elapsed: float) -> None:
        scope = frame.checkpoint_scope
        if scope is not None:
            scope.policy.iteration_done(elapsed)
            if not frame.inner_checkpoint_taken:
                self._checkpoint(scope, frame, "end")
        if frame.depth == 0:
            now = time.perf_counter()
            # Very short outer iterations share a flush, so a 10k-iteration outermost loop
            # does not write 10k files. Their rows still reach the disk within FLUSH_INTERVAL:
            # the writer writes them up to the mark (before session 56 they waited for the
            # next flush, so a kill in a long iteration lost the short ones before it).
            if now - self.last_flush >= FLUSH_INTERVAL:
                self.last_flush = now
                self.flush()
            elif not self.inner_runs:  # (an inner run left open: its rows are not built)
                if self.finished:
                    self._reopen()
                self.writer.mark(self.rows)

    def _after_inner_loop(self, frame: _Frame, left: bool = False) -> None:
        if not self.frames:
            return
        outer = self.frames[-1]
        scope = outer.checkpoint_scope
        if frame.stale:
            outer.inner_left_stale = True
        if (
            scope is not None
            and not outer.inner_checkpoint_taken
            and not frame.stale
            and not outer.inner_left_stale
        ):
            # The checkpoint sits where the first inner loop exits, so code
            # after it (scheduler steps, evaluation) re-runs once on restored state in replay.
            # ``left``: the loop did not run out (break, return or an exception left it), so
            # skipping it in replay may not take the same path on (docs/replay.md).
            outer.inner_checkpoint_taken = True
            self._checkpoint(scope, outer, f"after:{frame.name}", inner=frame, left=left)

    def _checkpoint(
        self,
        scope: _Scope,
        frame: _Frame,
        position: str,
        inner: _Frame | None = None,
        left: bool = False,
    ) -> None:
        if not scope.policy.due(frame.iteration):
            return
        if self.writer.pending_checkpoints > 1 and scope.policy.fixed is None:
            return  # the writer is behind: skip rather than pile copies up in memory
        t0 = time.perf_counter()
        try:
            payload = ckpt.capture(scope.objs)
        except Exception as e:  # never fail a run over a checkpoint: replay starts earlier
            self._checkpoint_failed(frame, e)
            return
        captures = self._capture_locals(scope, frame, inner)
        payload["locals"] = {role: c.payload() for role, c in captures.items()}
        copy_s = time.perf_counter() - t0
        scope.policy.taken(frame.iteration, copy_s, self.writer.last_write_seconds)
        extra: dict[str, Any] = {
            "restores": {role: c.restores() for role, c in captures.items()},
            "misses": {role: c.missed for role, c in captures.items() if c.missed},
        }
        busy = {role: c.busy for role, c in captures.items() if c.busy}
        if busy:
            extra["busy"] = busy
        # A checkpoint a replay that starts as the script starts cannot be put back into: the
        # planner starts from an earlier one, or the top (docs/replay.md).
        unsound = ckpt.structure_change(scope.structure, ckpt.structure(scope.objs))
        made = [n for c in captures.values() for n in c.made]
        if unsound is None and made:
            unsound = (
                f"{made[0]} was made during the run (saved by its state_dict, which only an "
                "object of its kind takes)"
            )
        if unsound is not None:
            extra["unsound"] = unsound
        if left:
            extra["left"] = True
        # it holds the gradients, and a local bound to one is saved as a reference to it
        # (2; 1, session 42's first form: gradients, locals as copies; before: none)
        extra["grads"] = 2
        self.writer.submit_checkpoint(
            payload, frame.name, frame.iteration, position, copy_s, extra=extra
        )

    def _checkpoint_failed(self, frame: _Frame, e: Exception) -> None:
        """A registered object's ``state_dict()`` raised (an optimizer whose state keeps a
        parameter its groups no longer hold: torch's own ``state_dict`` fails on it). Before
        session 37 the exception left the training run; now the checkpoint is not taken (a
        replay of a later iteration starts from an earlier one, or the top) and the run warns
        once."""
        if "checkpoint" in self.warned:
            return
        self.warned.add("checkpoint")
        warnings.warn(
            f"florsql could not checkpoint {frame.name} {frame.iteration} "
            f"({type(e).__name__}: {e}); no checkpoint is taken where this recurs, and a "
            "replay of the iterations after it starts from an earlier one",
            RecordWarning,
            stacklevel=4,
        )

    def _capture_locals(
        self, scope: _Scope, outer: _Frame, inner: _Frame | None
    ) -> dict[str, frame_state.Capture]:
        """Save what the loops change besides the registered objects (docs/replay.md)."""
        registered = {id(o): name for name, o in scope.objs.items()}
        views = frame_state.RegisteredViews(scope.objs)
        wanted: list[tuple[str, _Frame]] = [("outer", outer)]
        if inner is not None and inner.user is not None and inner.user is not outer.user:
            wanted.append(("inner", inner))
        out: dict[str, frame_state.Capture] = {}
        for role, fr in wanted:
            if fr.user is None or fr.facts is None:
                out[role] = frame_state.Capture(missed={"*": "the loop's source was not found"})
                continue
            names = set(fr.facts.changed)
            span = (fr.user.f_code.co_filename, fr.facts.line, fr.facts.end_line)
            if role == "outer" and inner is not None and inner.user is outer.user:
                if inner.facts is None:
                    out[role] = frame_state.Capture(missed={"*": "the loop's source was not found"})
                    continue
                names |= inner.facts.changed
            refused = self.refused.setdefault(fr.user.f_code, {})
            values = frame_state.frame_values(fr.user)
            busy = frame_state.busy_objects(fr.user)
            out[role] = frame_state.capture(
                values,
                names,
                registered,
                refused,
                span,
                busy,
                born=fr.born,
                views=views,
                kinds={**fr.kinds, **fr.inner_kinds},
            )
        return out

    def checkpointing(self, objs: dict[str, Any]) -> _Scope:
        for name, obj in objs.items():
            ckpt.check_registrable(name, obj)
        # The first capture and serialization carry one-time costs (torch.save's machinery):
        # pay them here, before the loop, not inside its first iteration.
        ckpt.serialize(ckpt.capture({}))
        return _Scope(dict(objs), len(self.frames), structure=ckpt.structure(objs))

    # -- durability ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the buffered rows to the writer (called at every outermost iteration's end)."""
        for run in self.inner_runs:  # outermost first: a row for every iteration begun
            self._materialize(run)
        rows = self.rows
        foreign = self.foreign
        while foreign:
            rows.log(*foreign.popleft())
        if not rows:
            return
        if self.finished:
            self._reopen()
        rows.first_seq = self.seq
        self.seq += rows.log_count
        self.rows = Columns(self.names, first_seq=self.seq)
        self.writer.submit_batch(rows)
        if self._note_torch_threads() | self._note_environ():
            self.writer.submit_run_json(self.doc)

    def _note_environ(self) -> bool:
        """Put the environment variables the repository's code read in the run's document
        (``environ``: name -> value, null where unset); True if they changed. Replay sets them
        so (docs/replay.md)."""
        seen = ENV_WATCH.snapshot(str(self.repo))
        if seen == self.doc.get(rundoc.ENVIRON, {}):
            return False
        self.doc[rundoc.ENVIRON] = seen
        return True

    def _note_torch_threads(self) -> bool:
        """Put torch's thread counts in the run's document (only where the script imported
        torch: florsql never does); True if they changed. Replay runs with the same counts."""
        counts = _torch_threads()
        if counts is None:
            return False
        keys = (rundoc.TORCH_THREADS, rundoc.TORCH_INTEROP_THREADS)
        if (self.doc[keys[0]], self.doc[keys[1]]) == counts:
            return False
        self.doc[keys[0]], self.doc[keys[1]] = counts
        self.doc["torch"] = self.doc["torch"] or _torch_version()
        return True

    def _reopen(self) -> None:
        """Records after ``flor.commit()``: the run is running again until it ends (session
        56, sweep AG: one committed in its loop and killed later read ``finished``, the lost
        iterations said nowhere). run.json says so before the rows reach the disk."""
        self.finished = False
        self.doc["status"] = "running"
        self.doc["error"] = None
        self.doc["ended"] = None
        self.writer.submit_run_json(self.doc)

    def commit(self, status: str = "finished", error: dict[str, Any] | None = None) -> None:
        """Flush and mark the run ``status``. Every wait on the writer is bounded (see
        :meth:`Writer.drain`); ``self.drained`` says whether the writer kept up."""
        self.flush()
        self.doc["status"] = status
        self.doc["error"] = error
        self.doc["ended"] = datetime.now(UTC).isoformat(timespec="microseconds")
        self.doc["torch"] = self.doc["torch"] or _torch_version()
        self._note_torch_threads()
        self._note_environ()
        self.writer.submit_job(self._describe_files)
        drained = self.writer.drain()
        self.doc["writer_cpu_seconds"] = round(self.writer.cpu_seconds, 6)
        self.writer.submit_run_json(self.doc)
        # (left behind a stuck checkpoint: run.json, on the rows' own thread, is still waited
        # for, briefly, so the run's status reaches the disk)
        if drained:
            self.drained = self.writer.drain()
        else:
            self.writer.rows_written()
            self.drained = False
        self.finished = True

    def _prefetch_facts(self) -> None:
        """On the writer thread at the run's start: the loop facts of the main script, which
        its first checkpointed ``flor.loop`` needs (importing the analysis and reading the
        script took ~8 ms, inside the training loop, at its first epoch). Only for a script
        that checkpoints; another file's loops are read when they are met."""
        main = sys.modules.get("__main__")
        filename = getattr(main, "__file__", None)
        if not isinstance(filename, str):
            return
        with contextlib.suppress(Exception):  # else read as the loop starts, as before
            import linecache

            text = "".join(linecache.getlines(filename))
            if "checkpointing" in text:
                from florsql.code.effects import analyze_source

                self.sources.setdefault(filename, analyze_source(text))

    def _list_version_files(self) -> None:
        """On the writer thread at the run's start: the paths of the run's code version."""
        with contextlib.suppress(Exception):  # else read again at commit
            self.version_files = set(files_at(self.repo, self.doc["vid"]))

    def _describe_files(self) -> None:
        """On the writer thread at commit: the repository files the run imported (``files``)
        and the ignored files it read, fingerprinted (``inputs``, ``data_fingerprint``).
        Its modules are imported with this one: nothing is imported at interpreter exit."""
        main = self.doc["filename"]
        try:
            in_version = self.version_files
            if in_version is None:
                in_version = set(files_at(self.repo, self.doc["vid"]))
            files = imported_files(self.repo, main)
            unversioned = [f for f in files if f not in in_version and f != main]
            inputs = record_inputs(self.repo, WATCH, since_ns=WATCH.started_ns, modules=unversioned)
            outputs = record_outputs(self.repo, WATCH)
            listed = {}
            if outputs is not None:
                listed = {
                    rundoc.OUTPUTS: outputs[0],
                    rundoc.LOOP_OUTPUTS: outputs[1],
                    rundoc.APPEND_STARTS: outputs[2],
                    rundoc.CREATED_OUTPUTS: outputs[3],
                }
            # One update at the end: the training thread may be serializing the doc meanwhile.
            self.doc.update(
                files=[f for f in files if f in in_version or f == main],
                inputs=inputs,
                data_fingerprint=combined_digest(InputFile.from_json(i) for i in inputs),
                **listed,
            )
        except Exception as e:  # never fail a run over its description
            if "files" not in self.warned:
                self.warned.add("files")
                warnings.warn(
                    f"florsql could not list the files this run imported or read ({e}); "
                    "hindsight statements in imported modules and data checks are unavailable "
                    "for it",
                    RecordWarning,
                    stacklevel=2,
                )


def _main_module() -> str | None:
    """The module ``__main__`` was run as (``python -m pkg.train``: ``"pkg.train"``); None for
    a script run by its path (or by ``runpy.run_path``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    return name if isinstance(name, str) and name and name != "__main__" else None


def _import_path(repo: Path) -> list[list[str]]:
    """The import path entries inside the repository besides the script's own folder
    (``PYTHONPATH=src``, a ``.pth`` line of an editable install), relative to it, each "front"
    (before the standard library: ``PYTHONPATH``) or "end" (after it): a replay task puts them
    back in its worktree (``florsql.replay.imports``), wherever the query runs."""
    root = os.path.realpath(repo)
    store = os.path.join(root, layout.STORE_DIRNAME)
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    out: list[list[str]] = []
    where = "front"
    for entry in sys.path[1:]:
        if not isinstance(entry, str):
            continue
        path = os.path.realpath(entry or os.curdir)
        if path == stdlib or path.endswith(".zip"):
            where = "end"
        inside = path == root or path.startswith(root + os.sep)
        if inside and not (path == store or path.startswith(store + os.sep)):
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if [rel, where] not in out:
                out.append([rel, where])
    return out


def _launched_in(
    cwd: str | None, repo: Path, argv: list[str] | None = None, script: Path | None = None
) -> Path:
    """The folder the script was launched in, where it is inside the repository: the one a
    relative ``argv[0]`` was given from (``python sub/a.py``: the script's path less
    ``sub/a.py``; sweep Q: a script that ran ``os.chdir("sub")`` before ``import florsql``),
    else ``cwd`` (as florsql was imported), else the current one (a process that imported
    florsql elsewhere and moved into the repository before recording)."""
    here = Path.cwd()
    for found in (_argv_folder(argv, script), cwd):
        if found is None:
            continue
        try:
            Path(found).resolve().relative_to(repo.resolve())
        except (OSError, ValueError):
            continue
        return Path(found)
    return here


def _argv_folder(argv: list[str] | None, script: Path | None) -> str | None:
    """The folder ``argv[0]`` (relative) was given from: ``script`` (absolute) less it.

    Example:
        >>> _argv_folder(["sub/a.py"], Path("/r/sub/a.py")), _argv_folder(["/r/a.py"], None)
        ('/r', None)
    """
    if not argv or script is None or not argv[0] or os.path.isabs(argv[0]):
        return None
    given = os.path.normpath(argv[0])
    full = os.path.normpath(str(script))
    if given.startswith("..") or not full.endswith(os.sep + given):
        return None
    return full[: -len(given) - 1] or os.sep


def _relative(script: Path | None, repo: Path) -> str:
    if script is None:
        return "<interactive>"
    try:
        return script.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return str(script)


def _torch_threads() -> tuple[int, int] | None:
    torch = sys.modules.get("torch")
    try:
        return int(torch.get_num_threads()), int(torch.get_num_interop_threads())  # type: ignore[union-attr]
    except Exception:  # no torch, or one still being imported
        return None


def _torch_version() -> str | None:
    torch = sys.modules.get("torch")
    return getattr(torch, "__version__", None) if torch is not None else None


# -- process lifecycle -------------------------------------------------------------------------
class Lifecycle:
    """Marks the run finished, failed or killed however the process ends."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.error: dict[str, Any] | None = None
        self.killed_by: str | None = None
        self.ended = False  # at_exit ran: later record calls are not written (_after_end)
        self.exiting = False  # at_exit is writing the run: a signal waits for it (_on_signal)
        self.pending_signal: int | None = None
        self.forked = False  # this process was forked from the recording one (_in_child)
        self._prev_hook = sys.excepthook
        sys.excepthook = self._excepthook
        atexit.register(self.at_exit)
        # A process forked from this one (a DataLoader worker, a multiprocessing child, os.fork)
        # must not write this run: its at_exit rewrote run.json and segment numbers the training
        # process was still writing (a child's sys.exit() replaced a segment of later epochs).
        os.register_at_fork(after_in_child=self._in_child)
        # A run started in a multiprocessing child: such a child ends with os._exit, past every
        # atexit handler, so the run ends where multiprocessing ends the child (all was lost).
        mp = sys.modules.get("multiprocessing")
        if mp is not None and mp.parent_process() is not None:
            from multiprocessing import util

            util.Finalize(None, self._at_child_end, exitpriority=0)
        self._prev_handlers: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            # SIGHUP too (a terminal or ssh session closed without nohup): it kept 4 of 10
            # values where SIGTERM kept 10 (session 45)
            hup = [signal.SIGHUP] if hasattr(signal, "SIGHUP") else []
            for sig in (signal.SIGTERM, signal.SIGINT, *hup):
                # A signal the process ignores stays ignored (a job started with ``&`` by a
                # non-interactive shell ignores SIGINT): before, a Ctrl-C killed such a run.
                with contextlib.suppress(ValueError, OSError):
                    if signal.getsignal(sig) is not signal.SIG_IGN:
                        self._prev_handlers[sig] = signal.signal(sig, self._on_signal)

    def _in_child(self) -> None:
        """In a process forked from the recording one: its record calls are not recorded."""
        self.forked = True
        _disable(self.run, "in a process forked from the one that records the run", self)

    def _at_child_end(self) -> None:
        """Where multiprocessing ends the child that started this run (its ``finally``: an
        exception that ends the target is still being raised)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, KeyboardInterrupt):
            self.killed_by = self.killed_by or "SIGINT"
        elif isinstance(exc, Exception) and self.error is None:
            self._excepthook(type(exc), exc, exc.__traceback__, chain=False)
        self.at_exit()

    def _excepthook(
        self,
        kind: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
        chain: bool = True,
    ) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self.killed_by = self.killed_by or "SIGINT"
        else:
            tail = "".join(traceback.format_exception(kind, exc, tb)[-3:])
            self.error = {"type": kind.__name__, "message": str(exc), "traceback": tail[-2000:]}
        if chain:
            self._prev_hook(kind, exc, tb)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.exiting:
            # at_exit is writing the run (the script had ended, or an earlier signal): the
            # signal takes effect once it is done. Before session 45 this handler found the
            # run ended and killed the process mid-flush: a Pool's terminate() or a Ctrl-C at
            # exit lost the last values and left run.json "running".
            self.pending_signal = signum
            return
        name = signal.Signals(signum).name
        prev = self._prev_handlers.get(signum)
        if prev is not signal.default_int_handler:
            # Python's own SIGINT handler raises KeyboardInterrupt, which the script may catch
            # and end normally after (an evaluation on Ctrl-C): the excepthook marks the run
            # killed where it is not caught (sweep O: such a run said "killed", exit code 0)
            self.killed_by = name
        if prev in (signal.SIG_DFL, None):  # the default action (SIGINT's, when set so)
            self.at_exit()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if callable(prev):  # Python's own SIGINT handler raises KeyboardInterrupt
            prev(signum, frame)

    def at_exit(self) -> None:
        """Flush and mark the run, waiting on the writer at most ``FLORSQL_EXIT_TIMEOUT``
        seconds without progress; one line on stderr says what could not be written."""
        if self.forked or self.ended:
            return  # a forked child's copy of the run is not its to write; or it ran already
        self.ended = True
        self.exiting = True
        try:
            self._write_end()
        finally:
            self.exiting = False
            pending, self.pending_signal = self.pending_signal, None
            if pending is not None and self._prev_handlers.get(pending) in (signal.SIG_DFL, None):
                signal.signal(pending, signal.SIG_DFL)
                os.kill(os.getpid(), pending)

    def _write_end(self) -> None:
        run = self.run
        if self.killed_by:
            run.commit("killed", {"type": "signal", "message": self.killed_by})
        elif self.error:
            run.commit("failed", self.error)
        elif not run.finished:
            run.commit("finished")
        else:  # flor.commit() ran: write what was logged after it
            run.flush()
            if not run.finished:  # (it was: the run is finished again)
                run.commit("finished")
        drained = run.drained and run.writer.stop()
        missing = run.writer.unwritten()
        if missing:
            why = (
                f"the writer made no progress for {EXIT_TIMEOUT:g} s (FLORSQL_EXIT_TIMEOUT)"
                if not drained
                else (run.writer.last_error or "the write failed")
            )
            print(
                f"florsql: {missing} of run {run.run_id} not written to {run.path}: {why}",
                file=sys.stderr,
                flush=True,
            )
        # Record calls after this (an atexit handler registered before the run's first record
        # call runs after this one) would be kept in memory and never written: say so.
        _disable(run, "after the run ended (florsql's exit handler already ran)", self)


def _disable(run: Run, where: str, lifecycle: Lifecycle) -> None:
    """Make ``run``'s record calls return what they are given without recording it, with one
    :class:`RecordWarning` naming ``where`` (instance attributes: the hot path keeps its cost)."""
    warned: list[bool] = []

    def warn(call: str) -> None:
        if warned:
            return
        warned.append(True)
        hint = (
            "log in the process that started it; a DataLoader worker's values can be returned "
            "with its batch"
            if lifecycle.forked
            else "register that atexit handler after the run's first record call (atexit runs "
            "handlers last-registered first), or log before the script ends"
        )
        warnings.warn(
            f"{call} {where} is not recorded in run {run.run_id}: {hint}",
            RecordWarning,
            stacklevel=4,
        )

    def log(name: str, value: Any) -> Any:
        warn(f"flor.log({name!r}, ...)")
        return value

    def loop(name: str, iterable: Iterable[Any]) -> Iterator[Any]:
        warn(f"flor.loop({name!r}, ...)")
        return iter(iterable)

    def commit(status: str = "finished", error: dict[str, Any] | None = None) -> None:
        pass

    run.log = log  # type: ignore[method-assign]
    run.loop = loop  # type: ignore[method-assign]
    run.commit = commit  # type: ignore[method-assign]
