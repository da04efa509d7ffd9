"""The run's background writer: segments, checkpoints and run.json leave the training thread here.

Jobs run in order on one daemon thread. A failed write warns once and is retried at the next
flush, so a store that becomes writable again loses nothing; training never dies of it.

Everything the writer needs is imported and exercised when it starts (the run's first record
call), so nothing is imported lazily at interpreter exit, when imports that start threads fail.
Waits on the writer are bounded: :meth:`Writer.drain` gives up once the writer has finished no
job for ``FLORSQL_EXIT_TIMEOUT`` seconds, and :meth:`Writer.unwritten` says what is left.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from florsql.errors import RecordWarning
from florsql.record import checkpoint as ckpt
from florsql.store import layout
from florsql.store.rows import NO_ROWS, Columns
from florsql.store.segments import Tagged, write_rows, write_segment

if TYPE_CHECKING:
    import pyarrow as pa

#: Set to 0 to write a recording run's rows as Arrow segments, converted on the writer thread
#: (pyarrow imported at the run's first record call) instead of row files.
ROW_FILES = os.environ.get("FLORSQL_ROW_FILES", "1") != "0"

#: Seconds between writes of short outermost iterations' rows: the training thread hands its
#: rows over at most this often, and the writer writes those of ended iterations handed over
#: at most this long after they ended (a kill loses no more than that; session 56).
FLUSH_INTERVAL = float(os.environ.get("FLORSQL_FLUSH_INTERVAL", "0.1"))

#: Seconds a wait on the writer (at commit, at exit) lasts without the writer finishing a job.
EXIT_TIMEOUT = float(os.environ.get("FLORSQL_EXIT_TIMEOUT", "30"))


class Rows(Protocol):
    """One flush's rows: :class:`~florsql.store.rows.Columns` or a replay's ``Batch``."""

    @property
    def log_count(self) -> int: ...
    def to_table(self) -> pa.Table: ...


class Writer:
    """Writes a run's batches, checkpoints and run.json in the background: batches and run.json
    in order on one thread, checkpoints and other jobs in order on another."""

    def __init__(self, run_path: Path, *, first_segment: int = 1, row_files: bool = False) -> None:
        """``row_files``: write a recording run's rows as row files (:func:`.write_rows`: no
        pyarrow in this process, no conversion on its GIL); else as Arrow segments."""
        self._row_files = row_files
        if row_files:
            _warm_rows()
        else:
            # pyarrow takes ~0.2 s to import. Paid here, at the run's first record call, and not
            # on the writer thread during training, where it would hold the GIL against the
            # loop; and the first flush is then written within milliseconds.
            warm_up()
        self.run_path = run_path
        self.segments = run_path / layout.SEGMENTS
        self.checkpoints = run_path / layout.CHECKPOINTS
        self.next_segment = first_segment
        self.pending: list[Rows] = []
        #: (rows, lengths) where the training thread's latest outermost iteration ended in the
        #: rows it still appends to (:meth:`mark`); the rows thread writes up to it
        self.marked: tuple[Columns, int, int, int, int] | None = None
        self._armed = False  # a write up to the mark is due (the training thread sets it)
        self._due = threading.Event()  # wakes the timer thread
        self._stopped = False
        self._handed = 0  # batches handed over (training thread)
        self._handed_written = 0  # of them, written (rows thread)
        self._deferred = False  # a write up to the mark waits for a batch handed before it
        self.run_json: dict[str, Any] | None = None
        self._run_json_submitted = 0  # run.json versions handed over (training thread)
        self._run_json_number = 0  # the version in self.run_json
        self._run_json_written = 0  # the latest version on disk
        self.pending_checkpoints = 0
        self._thread_cpu = 0.0  # CPU this thread spent writing
        self.last_write_seconds = 0.0
        self._warned = False
        self.last_error: str | None = None
        self.jobs_done = 0
        self.logs_submitted = 0
        self.logs_written = 0
        self.checkpoints_lost = 0
        # Two threads: logged rows and run.json on one, checkpoints and other jobs on the other,
        # so a flush reaches the disk (where it outlives a kill of the process) without waiting
        # behind checkpoint writes: a kill right after an outermost
        # iteration's flush lost its rows while a checkpoint was being written (4 or 0 of 8
        # rows of two ended epochs, killed at epoch 2; tests/test_crash.py).
        self._cpu_lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._rows: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._work, args=(self._jobs,), name="florsql-writer", daemon=True
        )
        self._rows_thread = threading.Thread(
            target=self._work, args=(self._rows,), name="florsql-rows", daemon=True
        )
        # started here, not at the first mark: no thread starts during training (nor at
        # interpreter exit, where starting one fails)
        self._timer = threading.Thread(target=self._time, name="florsql-timer", daemon=True)
        self._thread.start()
        self._rows_thread.start()
        self._timer.start()

    # -- called from the training thread -------------------------------------------------------
    def submit_batch(self, batch: Rows) -> None:
        self.logs_submitted += batch.log_count
        self._handed += 1
        self._rows.put(lambda: self._write_rest(batch))

    def mark(self, rows: Columns) -> None:
        """An outermost iteration ended, its rows left in ``rows`` (a short one's: no flush
        each). Its rows and those before it are written within ``FLUSH_INTERVAL``, by the
        rows thread, from the rows the training thread goes on appending to; before session
        56 they waited for the next flush, so a kill in a long iteration lost them."""
        self.marked = (rows, len(rows.log_key), len(rows.loop_s), len(rows.ends), len(rows.checks))
        if not self._armed:
            self._armed = True
            self._due.set()

    def submit_checkpoint(
        self,
        payload: dict[str, Any],
        loop: str,
        iteration: int,
        position: str,
        copy_s: float,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write a checkpoint and its manifest line (``extra``: more fields for the line)."""
        self.pending_checkpoints += 1
        self._jobs.put(
            lambda: self._write_checkpoint(payload, loop, iteration, position, copy_s, extra)
        )

    def submit_job(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the writer thread, after the checkpoints and jobs submitted before it
        (rows and run.json go their own way: :meth:`drain` first to order a job after them)."""
        self._jobs.put(job)

    def submit_run_json(self, doc: dict[str, Any]) -> None:
        snapshot = json.loads(json.dumps(doc, default=str))
        self._run_json_submitted += 1
        number = self._run_json_submitted
        self._rows.put(lambda: self._write_run_json(snapshot, number))

    def rows_written(self, timeout: float = 1.0) -> bool:
        """Wait (at most ``timeout`` seconds) until the row batches submitted so far are on
        disk, leaving other jobs (checkpoints, git calls) running; False if not in time."""
        if not self._rows_thread.is_alive():
            return False
        done = threading.Event()
        self._rows.put(done.set)
        return done.wait(timeout)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every job submitted so far is done; False if the writer made no
        progress for ``timeout`` seconds (default ``FLORSQL_EXIT_TIMEOUT``) and was left."""
        limit = EXIT_TIMEOUT if timeout is None else timeout
        threads = ((self._rows_thread, self._rows), (self._thread, self._jobs))
        marks = []
        for thread, jobs in threads:
            done = threading.Event()
            jobs.put(done.set)
            marks.append((thread, jobs, done))
        seen, deadline = self.jobs_done, time.monotonic() + limit
        for thread, jobs, done in marks:
            while not done.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
                if not thread.is_alive():
                    self._run_inline(jobs)
                    break
                if self.jobs_done != seen:
                    seen, deadline = self.jobs_done, time.monotonic() + limit
                elif time.monotonic() >= deadline:
                    return False
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """Finish every job and end the thread; False if it was left (see :meth:`drain`)."""
        if not self.drain(timeout):
            return False
        self._stopped = True
        self._due.set()
        self._rows.put(None)
        self._jobs.put(None)
        self._rows_thread.join(1.0)
        self._thread.join(1.0)
        return True

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds the writer's threads spent writing: recording's background cost."""
        return self._thread_cpu

    def unwritten(self) -> str | None:
        """What submitted so far is not on disk, in words; None when everything is."""
        parts = []
        logs = self.logs_submitted - self.logs_written
        if logs > 0 or self.pending:
            parts.append(f"{logs} logged values")
        lost = self.checkpoints_lost + self.pending_checkpoints
        if lost:
            parts.append(f"{lost} checkpoint{'s' if lost != 1 else ''}")
        if self._run_json_written < self._run_json_submitted:
            parts.append("the latest run.json")
        if not parts:
            return None
        return ", ".join(parts)

    # -- the writer thread ---------------------------------------------------------------------
    def _work(self, jobs: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            t0 = time.thread_time()
            try:
                job()
            except Exception as e:  # a bug in a job must not end the thread: later jobs still run
                self._warn(e)
            with self._cpu_lock:
                self._thread_cpu += time.thread_time() - t0
                self.jobs_done += 1

    def _run_inline(self, jobs: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        # The thread is gone (it cannot be at a normal exit; this is a last resort): finish the
        # queue on the calling thread.
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                try:
                    job()
                except Exception as e:
                    self._warn(e)
                with self._cpu_lock:
                    self.jobs_done += 1

    def _time(self) -> None:
        while True:  # once armed: a write up to the mark FLUSH_INTERVAL later
            self._due.wait()
            self._due.clear()
            if self._stopped:
                return
            time.sleep(FLUSH_INTERVAL)
            self._rows.put(self._write_marked)

    def _write_marked(self) -> None:
        # Disarmed first: an iteration ending from here on arms another write. The mark is read
        # before anything else: every batch handed over before it (the rows before these) has
        # its job ahead of this one in the queue, so rows reach files in order.
        self._armed = False
        marked = self.marked
        if self._handed != self._handed_written:
            # a batch handed over before the marked rows began is still queued behind this
            # job (the training thread hands one over before it marks the next): it is written
            # first, then these (:meth:`_write_rest`), so the files hold the rows in order
            self._deferred = True
            return
        self._deferred = False
        if marked is None:
            return
        rows, stop = marked[0], marked[1:]
        start = rows.written
        if start is None:  # handed over and written whole since
            return
        if (start[0], start[4], start[8], start[9]) == stop:
            return
        piece, rows.written = rows.piece(start, stop)
        self._write_batch(piece)

    def _write_rest(self, batch: Rows) -> None:
        """A batch handed over: what of it was not written up to a mark."""
        if isinstance(batch, Columns):
            start, batch.written = batch.written, None
            if start is not None and start != NO_ROWS:
                batch, _ = batch.piece(start)
        self._write_batch(batch)
        self._handed_written += 1
        if self._deferred and self._handed_written == self._handed:
            self._write_marked()

    def _write_batch(self, batch: Rows) -> None:
        self.pending.append(batch)
        if self._run_json_written < self._run_json_number and self._guard(self._write_run_json_now):
            self._run_json_written = self._run_json_number
        while self.pending:
            head = self.pending[0]
            if not self._guard(self._write_rows, head):
                return  # keep it for the next flush
            self.pending.pop(0)
            self.next_segment += 1
            self.logs_written += head.log_count

    def _write_rows(self, rows: Rows) -> None:
        if self._row_files and isinstance(rows, Columns):
            write_rows(self.segments, self.next_segment, rows)
        else:
            write_segment(self.segments, self.next_segment, rows.to_table())

    def _write_checkpoint(
        self,
        payload: dict[str, Any],
        loop: str,
        iteration: int,
        position: str,
        copy_s: float,
        extra: dict[str, Any] | None = None,
    ) -> None:
        try:
            t0 = time.perf_counter()
            data = ckpt.serialize(payload)
            suffix = ".pt" if data[:2] == b"PK" else ".pkl"
            name = f"{_safe(loop)}-{iteration:06d}{suffix}"
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            layout.write_bytes_atomic(self.checkpoints / name, data)
            write_s = time.perf_counter() - t0
            self.last_write_seconds = write_s
            rec = ckpt.CheckpointRecord(loop, iteration, position, name, len(data), copy_s, write_s)
            with open(self.checkpoints / layout.MANIFEST, "a", encoding="utf-8") as f:
                f.write(json.dumps({**asdict(rec), **(extra or {})}) + "\n")
        except Exception as e:
            self.checkpoints_lost += 1
            self._warn(e)
        finally:
            self.pending_checkpoints -= 1

    def _write_run_json(self, doc: dict[str, Any], number: int) -> None:
        self.run_json, self._run_json_number = doc, number
        if self._guard(self._write_run_json_now):
            self._run_json_written = number

    def _write_run_json_now(self) -> None:
        self.run_path.mkdir(parents=True, exist_ok=True)
        layout.atomic_write_json(self.run_path / layout.RUN_JSON, self.run_json)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> bool:
        try:
            fn(*args)
            return True
        except Exception as e:
            self._warn(e)
            return False

    def _warn(self, e: Exception) -> None:
        self.last_error = f"{type(e).__name__}: {e}"
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"florsql could not write to {self.run_path} ({e}); training goes on and florsql "
                f"retries at the next flush",
                RecordWarning,
                stacklevel=2,
            )


def warm_up() -> None:
    """Import and run the conversion and the IPC writer once, on a tiny table in memory (~50 ms
    the first time in a process, under 1 ms after: a warm replay worker runs it once, before it
    forks its tasks)."""
    import pyarrow as pa
    import pyarrow.ipc

    from florsql.store.rows import Columns, NameTable
    from florsql.store.segments import Tagged

    cols = Columns(NameTable())
    row = cols.loop(1, 0, cols.names.key("warm"), 0, 0, 0.0)
    cols.loop_s[row] = 0.0
    for value in (0.5, 1, None, True, "s", Tagged("json", "[]"), 2**70):
        cols.log(1, cols.names.key("warm"), value)
    cols.ends.append((1, 0.0))
    cols.checks.append((1, "warm", 0.5))
    table = cols.to_table()
    sink = pa.BufferOutputStream()
    with pyarrow.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)


def _warm_rows() -> None:
    """Run the row file encoder once on a tiny batch in memory (its imports included), so
    nothing is imported at interpreter exit."""
    from florsql.store.rows import NameTable, dump_rows

    cols = Columns(NameTable())
    cols.log(1, cols.names.key("warm"), Tagged("json", "[]"))
    dump_rows(cols)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "loop"
