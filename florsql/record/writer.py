"""The run's background writer: segments, checkpoints and run.json leave the training thread here.

Jobs run in order on one daemon thread. A failed write warns once and is retried at the next
flush, so a store that becomes writable again loses nothing; training never dies of it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from florsql.errors import RecordWarning
from florsql.record import checkpoint as ckpt
from florsql.store import layout
from florsql.store.segments import Batch, batch_to_table, write_segment


class Writer:
    """Writes a run's batches, checkpoints and run.json in the background, in order."""

    def __init__(self, run_path: Path, *, first_segment: int = 1) -> None:
        # pyarrow takes ~0.2 s to import. Paid here, at the run's first record call, and not on
        # the writer thread during training, where it would hold the GIL against the loop; and
        # the first flush is then written within milliseconds.
        _warm_up()
        self.run_path = run_path
        self.segments = run_path / layout.SEGMENTS
        self.checkpoints = run_path / layout.CHECKPOINTS
        self.next_segment = first_segment
        self.pending: list[Batch] = []
        self.run_json: dict[str, Any] | None = None
        self._run_json_written = True
        self.pending_checkpoints = 0
        self.cpu_seconds = 0.0  # CPU this thread spent writing: recording's background cost
        self.last_write_seconds = 0.0
        self._warned = False
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="florsql-writer", daemon=True)
        self._thread.start()

    # -- called from the training thread -------------------------------------------------------
    def submit_batch(self, batch: Batch) -> None:
        self._jobs.put(lambda: self._write_batch(batch))

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

    def submit_run_json(self, doc: dict[str, Any]) -> None:
        snapshot = json.loads(json.dumps(doc, default=str))
        self._jobs.put(lambda: self._write_run_json(snapshot))

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every job submitted so far is done."""
        if not self._thread.is_alive():
            self._run_inline()
            return True
        done = threading.Event()
        self._jobs.put(done.set)
        return done.wait(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        self.drain(timeout)
        self._jobs.put(None)
        self._thread.join(timeout)

    # -- the writer thread ---------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            t0 = time.thread_time()
            job()
            self.cpu_seconds += time.thread_time() - t0

    def _run_inline(self) -> None:
        # At interpreter teardown the daemon thread may be gone: finish the queue here.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job()

    def _write_batch(self, batch: Batch) -> None:
        self.pending.append(batch)
        if not self._run_json_written and self.run_json is not None:
            self._run_json_written = self._guard(self._write_run_json_now)
        while self.pending:
            head = self.pending[0]
            if not self._guard(
                write_segment, self.segments, self.next_segment, batch_to_table(head)
            ):
                return  # keep it for the next flush
            self.pending.pop(0)
            self.next_segment += 1

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
            self._warn(e)
        finally:
            self.pending_checkpoints -= 1

    def _write_run_json(self, doc: dict[str, Any]) -> None:
        self.run_json = doc
        self._run_json_written = self._guard(self._write_run_json_now)

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
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"florsql could not write to {self.run_path} ({e}); training goes on and florsql "
                f"retries at the next flush",
                RecordWarning,
                stacklevel=2,
            )


def _warm_up() -> None:
    import pyarrow
    import pyarrow.ipc  # noqa: F401


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "loop"
