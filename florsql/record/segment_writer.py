"""The segment writer: a small process that turns a recording run's rows into segment files.

A recording run's writer thread hands each flush's rows here instead of converting them itself,
so the Arrow conversion and the file writes never hold the training process's GIL, and the
training process never imports pyarrow or numpy. The parent (:class:`SegmentProcess`) sends a
pickled :class:`~florsql.store.rows.Columns` (its typed arrays pickle as raw bytes) and waits
for the reply, so segments are written in order and a reply means the file is on disk.

The protocol, both ways: an 8-byte little-endian length, then that many bytes of pickle. A
request is ``(folder, number, rows)``; a reply is ``(error or None, cpu_seconds, start_cpu)``:
this process's CPU time spent on requests so far (the run's ``writer_cpu_seconds`` counts it),
and its start-up's (importing pyarrow: ``writer_start_cpu_seconds``, paid once per run).

The process ignores SIGINT and SIGTERM (a Ctrl-C or ``kill`` of the process group reaches the
training process, which flushes through this one) and exits when its input closes, after the
request it is writing: a killed training process loses nothing this process was handed.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

_LEN = struct.Struct("<Q")

#: Set to 0 to convert and write segments on the writer thread, in the training process.
ENABLED = os.environ.get("FLORSQL_WRITER_PROCESS", "1") != "0"

# ``-P``: the training script's folder is not put on the child's sys.path, so a user's
# ``numpy.py`` cannot shadow a library. The florsql package the parent runs comes first.
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from florsql.record.segment_writer import main; main()"
)


class SegmentProcessError(Exception):
    """The segment writer process is gone or answered nonsense: write in-process instead."""


class SegmentProcess:
    """The parent's handle on one segment writer process (used from the writer thread only)."""

    def __init__(self) -> None:
        if not sys.executable or getattr(sys, "frozen", False):
            # An embedded or frozen interpreter: sys.executable would not run ``-c`` code.
            raise OSError("no Python interpreter to start the segment writer with")
        root = str(Path(__file__).resolve().parents[2])
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-c", _BOOT, root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            close_fds=True,
        )
        self.cpu_seconds = 0.0  # the child's CPU time on requests, at its latest reply
        self.start_cpu_seconds = 0.0  # the child's start-up CPU time
        # A process forked from the training process (a data loader's worker) must not keep
        # this process's input open, or it would not see the end of its input with the run.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forgotten(ref))

    def write(self, folder: Path, number: int, rows: Any) -> None:
        """Write ``rows`` as segment ``number`` of ``folder``; raises ``OSError`` (the child's
        write failed: retry later) or :class:`SegmentProcessError` (the child is gone)."""
        data = pickle.dumps((str(folder), number, rows), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _send(self.proc.stdin, data)
            reply = _receive(self.proc.stdout)
        except (OSError, EOFError, ValueError) as e:
            raise SegmentProcessError(f"the segment writer process stopped ({e})") from e
        if reply is None:
            raise SegmentProcessError("the segment writer process stopped")
        error, self.cpu_seconds, self.start_cpu_seconds = pickle.loads(reply)
        if error is not None:
            raise OSError(error)

    def close(self) -> None:
        """Close the child's input: it exits once every request is written, and every one was
        answered before this is called. Not waited for (a forked grandchild that kept the
        pipe open would hold the training process's exit)."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(OSError):
            self.proc.poll()


def _forgotten(ref: weakref.ref[SegmentProcess]) -> None:
    """In a forked child: close the inherited ends of the pipes (the parent keeps its own)."""
    proc = ref()
    if proc is not None:
        for stream in (proc.proc.stdin, proc.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()  # unbuffered: closes this process's copy of the fd only


def _send(stream: Any, data: bytes) -> None:
    for part in (_LEN.pack(len(data)), data):
        view = memoryview(part)
        while view:
            view = view[stream.write(view) :]


def _receive(stream: Any) -> bytes | None:
    """One framed message, or None at a clean end of the stream."""
    head = _exactly(stream, _LEN.size)
    if head is None:
        return None
    (size,) = _LEN.unpack(head)
    body = _exactly(stream, size)
    if body is None:
        raise EOFError("the stream ended inside a message")
    return body


def _exactly(stream: Any, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            if left == size:
                return None
            raise EOFError("the stream ended inside a message")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def main() -> None:
    """The child: read requests from stdin until it closes, write each, reply on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from florsql.record.writer import warm_up
    from florsql.store.segments import write_segment

    warm_up()
    start_cpu = time.process_time()
    stdin = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
    stdout = open(sys.stdout.fileno(), "wb", buffering=0, closefd=False)  # noqa: SIM115
    while True:
        try:
            request = _receive(stdin)
        except EOFError:
            return
        if request is None:
            return
        error = None
        try:
            folder, number, rows = pickle.loads(request)
            write_segment(Path(folder), number, rows.to_table())
        except Exception as e:  # reported to the parent, which warns and retries
            error = f"{type(e).__name__}: {e}"
        _send(stdout, pickle.dumps((error, time.process_time() - start_cpu, start_cpu)))


if __name__ == "__main__":
    main()
