"""Reaching the replay service and the query host: their sockets, and the identity a process
must share with them (this florsql's code).

The standard library's ``os``, ``socket`` and ``hashlib`` only: a one-shot ``florsql query``
imports this module, not :mod:`florsql.replay.service` (dataclasses, subprocess, selectors:
~25 ms of its start, measured), to hand itself to a listening query host.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path


def source_digest(package: str) -> str:
    """A digest of florsql's source files (path, size, modification and change times, inode;
    ``__init__.py`` holds the version): an upgrade in place (same path, other files) changes
    it, also one that keeps a file's size and modification time (a wheel's files carry their
    archive's times): writing a file sets its change time, which no installer can set back, and
    replacing it gives another inode. One ``stat`` a file, as cheap as size and time alone
    (reading every file would cost each one-shot command ~5 ms more)."""
    import hashlib

    digest = hashlib.sha256()
    found = []
    for folder, dirs, files in os.walk(package, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with contextlib.suppress(OSError):
                    st = os.stat(path)
                    where = os.path.relpath(path, package)
                    found.append(
                        f"{where}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}"
                    )
    digest.update("\n".join(sorted(found)).encode())
    return digest.hexdigest()[:32]


#: The folder of this florsql package.
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: This process's florsql code (see :func:`source_digest`), taken as it imports this module.
SOURCE = source_digest(PACKAGE)


@contextlib.contextmanager
def _dir_fd(store: Path) -> Iterator[int]:
    fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def dial(store: Path, name: str) -> socket.socket:
    """Connect to the socket ``name`` in ``store`` (the service's, or the query host's). The
    path goes through ``/proc/self/fd`` so that a deep repository (beyond the 107 bytes a
    socket path may have) works too."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path = str(store / name)
        if len(os.fsencode(path)) < 100:
            sock.connect(path)
        else:
            with _dir_fd(store) as fd:
                sock.connect(f"/proc/self/fd/{fd}/{name}")
    except OSError:
        sock.close()
        raise
    return sock
