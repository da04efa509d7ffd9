"""What sees every ``open`` of a recording process (see :mod:`.inputs`): ``open``/``io.open``
and ``os.open``, wrapped.

Not an audit hook (``sys.addaudithook``), which this was: a Python audit hook runs for every
audit event of the process, and torch raises several per training step (``builtins.id``, from
``Tensor.__hash__``, each time an optimizer looks a parameter up), so the hook cost recording
more than every ``flor.log`` call of the step together (benchmarks/record_overhead.py). The
wrappers cost nothing until a file is opened.

Kept apart and free of imports beyond ``os`` and ``sys`` (``builtins`` and ``io`` are loaded
with the interpreter): it is installed when the record API is imported (so data read before a
script's first record call is seen too), and ``import florsql`` stays light.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["WATCH", "OpenWatch"]

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class OpenWatch:
    """Remembers paths opened for reading and for writing, nothing more.

    :meth:`stop` makes the wrappers pass straight through. Noting a path never raises (an
    exception there would fail the ``open`` it watches).
    """

    #: At most this many paths are kept per set (a long-lived process opens many files).
    LIMIT = 50_000

    def __init__(self) -> None:
        self.read: set[str] = set()  # absolute paths
        self.written: set[str] = set()
        self.active = True
        self._raw: set[tuple[str, bool]] = set()  # as given, to skip repeated opens cheaply

    def install(self) -> None:
        """Wrap ``open`` (``builtins.open`` and ``io.open``, one function) and ``os.open``.

        The wrappers keep the originals' names, documentation and ``__wrapped__``, so
        ``open is io.open`` stays true, ``inspect.signature(open)`` reads the original's, and
        pickling ``open`` still names ``io.open``. Code that took its own reference to the
        original before ``import florsql`` (``from io import open as o``, ``tarfile``'s
        ``bltn_open``) and ``io.FileIO`` called directly are not seen.
        """
        import builtins
        import io

        if getattr(io.open, "__florsql_watch__", False):
            return  # installed already (a reloaded module)
        real_open, real_os_open = io.open, os.open
        opened = self._opened

        def open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            opened((file, mode, None))
            return real_open(file, mode, *args, **kwargs)

        def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            opened((path, None, flags))
            return real_os_open(path, flags, *args, **kwargs)

        for wrapper, real in ((open, real_open), (os_open, real_os_open)):
            for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
                setattr(wrapper, attr, getattr(real, attr))
            setattr(wrapper, "__wrapped__", real)  # noqa: B010 (a function attribute)
            setattr(wrapper, "__florsql_watch__", True)  # noqa: B010
        builtins.open = io.open = open
        os.open = os_open

    def stop(self) -> None:
        self.active = False

    def _opened(self, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        try:
            path, mode, flags = args
            if not isinstance(path, str):
                if isinstance(path, int):
                    return  # a file descriptor: the path was seen when it was opened
                path = os.fsdecode(os.fspath(path))  # bytes, a pathlib.Path
            # os.open gives flags only; open() and io.open_code a mode string.
            writing = bool(flags & _WRITE_FLAGS) if mode is None else any(c in mode for c in "wax+")
            key = (path, writing)
            if key in self._raw or len(self._raw) >= self.LIMIT:
                return
            self._raw.add(key)
            if not os.path.isabs(path):  # relative to the cwd of the open, not of the commit
                path = os.path.join(os.getcwd(), path)
            (self.written if writing else self.read).add(os.path.normpath(path))
        except Exception:
            return

    def snapshot(self) -> tuple[set[str], set[str]]:
        """Absolute normalized paths read and written so far."""
        return set(self.read), set(self.written)


#: This process's watch.
WATCH = OpenWatch()
WATCH.install()
