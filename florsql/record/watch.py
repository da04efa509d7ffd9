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
import re
import sys
import time
from typing import Any, NoReturn

__all__ = [
    "ENV_WATCH",
    "WATCH",
    "WRITABLE",
    "EnvWatch",
    "OpenWatch",
    "SkippedWriteError",
    "WriteSandbox",
    "write_through",
]

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
#: Bytes of a file appended to whose digest a run keeps (:meth:`OpenWatch._note_start`).
START_BYTES = 1 << 16


def _real_io_open(*args: Any, **kw: Any) -> Any:
    """``io.open`` as it was before the watch wrapped it (its own reads are not the run's)."""
    import io

    return getattr(io.open, "__wrapped__", io.open)(*args, **kw)


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
        #: 1 while a recording run's outer loop runs (0 before, 2 after): set by the run
        self.phase = 0
        #: Absolute normalized paths written while an outer loop ran (iterations a replay
        #: skips may write them; not those written only before or after it)
        self.in_loop: set[str] = set()
        self._loop_raw: set[str] = set()
        #: Absolute normalized paths ``torch.save`` wrote (:meth:`watch_saves`)
        self.saved: set[str] = set()
        #: Those of :attr:`saved` the run wrote before it first read them (early stopping's
        #: ``best.pt``, loaded after the loop): what it read is what it wrote, so they are no
        #: data of its (a replay writes them too); a file read first, then saved, is
        #: (``during:``). Session 51: each such run's replay warned "best.pt (changed while its
        #: run ran: what it read is not known)".
        self.own_first: set[str] = set()
        #: When the watch was installed (as the record API was imported; a forked worker sets
        #: it again): files modified since changed while the run ran
        #: (``florsql.store.fingerprints.DURING``).
        self.started_ns = time.time_ns()
        #: Files first opened to append: (size, digest of the first bytes) as the run found
        #: them (:meth:`_note_start`)
        self.starts: dict[str, tuple[int, str]] = {}
        #: Absolute normalized paths that were not there when the run first wrote them (not
        #: read before either): the run made them (``created_outputs``); a replay shows none
        #: of them until it writes it (session 49: a run resuming from its own ``ckpt.pt``
        #: if present found none, and its replay found today's, another run's last epoch)
        self.absent: set[str] = set()
        #: In a replay worker: where a path opened is really read or written
        #: (:class:`WriteSandbox`); None elsewhere.
        self.sandbox: WriteSandbox | None = None

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
        watch = self

        def open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            opened((file, mode, None))
            if watch.sandbox is not None:
                file = watch.sandbox.path(
                    file, writing=any(c in mode for c in "wax+"), fresh=any(c in mode for c in "wx")
                )
            return real_open(file, mode, *args, **kwargs)

        def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if sys._getframe(1).f_globals.get("__name__") == "tempfile":
                # a fresh file of a random name (mkstemp, NamedTemporaryFile): no one's
                # output, and in a replay nothing of the user's to keep
                if watch.sandbox is not None:
                    watch.sandbox.temporary(path)
                return real_os_open(path, flags, *args, **kwargs)
            opened((path, None, flags))
            if watch.sandbox is not None:
                path = watch.sandbox.path(
                    path,
                    writing=bool(flags & _WRITE_FLAGS),
                    fresh=bool(flags & os.O_TRUNC)
                    or flags & (os.O_CREAT | os.O_EXCL) == os.O_CREAT | os.O_EXCL,
                )
            return real_os_open(path, flags, *args, **kwargs)

        for wrapper, real in ((open, real_open), (os_open, real_os_open)):
            for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
                setattr(wrapper, attr, getattr(real, attr))
            setattr(wrapper, "__wrapped__", real)  # noqa: B010 (a function attribute)
            setattr(wrapper, "__florsql_watch__", True)  # noqa: B010
        builtins.open = io.open = open
        os.open = os_open
        for name in ("rename", "replace"):
            # the target of a move is written (``os.replace("out/last.json", "out/prev.json")``:
            # ``prev.json`` is the run's output, and one it made; session 49)
            real_move = getattr(os, name)

            def move(src: Any, dst: Any, *args: Any, _real: Any = real_move, **kw: Any) -> Any:
                opened((dst, "w", None))
                return _real(src, dst, *args, **kw)

            for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
                setattr(move, attr, getattr(real_move, attr))
            setattr(move, "__wrapped__", real_move)  # noqa: B010 (a function attribute)
            setattr(move, "__florsql_watch__", True)  # noqa: B010
            setattr(os, name, move)

    def watch_saves(self) -> None:
        """Note the paths ``torch.save`` writes too, where torch is loaded (it writes a path
        from C++, past ``open``): a run's ``outputs`` hold them (s36); and the databases
        ``sqlite3.connect`` opens, where ``sqlite3`` is loaded (session 44). Called as a run
        starts and as its outer loop starts; once each."""
        self._watch_sqlite()
        torch = sys.modules.get("torch")
        real_save = getattr(torch, "save", None)
        if real_save is None or getattr(real_save, "__florsql_watch__", False):
            return
        watch = self

        def save(obj: Any, f: Any, *args: Any, **kw: Any) -> Any:
            if isinstance(f, (str, bytes, os.PathLike)):
                watch._note_saved(f)
            return real_save(obj, f, *args, **kw)

        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(save, attr, getattr(real_save, attr, None))
        save.__wrapped__ = real_save  # type: ignore[attr-defined]
        save.__florsql_watch__ = True  # type: ignore[attr-defined]
        setattr(torch, "save", save)  # noqa: B010 (torch is a module found at run time)
        serialization = sys.modules.get("torch.serialization")
        if serialization is not None and getattr(serialization, "save", None) is real_save:
            setattr(serialization, "save", save)  # noqa: B010

    def _watch_sqlite(self) -> None:
        sqlite3 = sys.modules.get("sqlite3")
        real_connect = getattr(sqlite3, "connect", None)
        if real_connect is None or getattr(real_connect, "__florsql_watch__", False):
            return
        watch = self

        def connect(database: Any, *args: Any, **kw: Any) -> Any:
            if isinstance(database, (str, bytes, os.PathLike)) and _a_database_file(database):
                watch._note_saved(database)  # written from C, past ``open``
            return real_connect(database, *args, **kw)

        connect.__wrapped__ = real_connect  # type: ignore[attr-defined]
        connect.__florsql_watch__ = True  # type: ignore[attr-defined]
        connect.__doc__ = real_connect.__doc__
        setattr(sqlite3, "connect", connect)  # noqa: B010 (a module found at run time)

    def _note_saved(self, file: Any) -> None:
        """A path ``torch.save`` wrote: an output, kept apart from :attr:`written` (a file the
        run read and then overwrote by ``torch.save`` stays a ``during:`` input, as before)."""
        if not self.active:
            return
        try:
            path = os.fsdecode(os.fspath(file))
            if not os.path.isabs(path):
                path = os.path.join(os.getcwd(), path)
            path = os.path.normpath(path)
            self._note_absent(path)
            if len(self.saved) < self.LIMIT:
                self.saved.add(path)
            if self.phase == 1:
                self.in_loop.add(path)
        except Exception:
            return

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
            looping = writing and self.phase == 1 and path not in self._loop_raw
            if (key in self._raw and not looping) or len(self._raw) >= self.LIMIT:
                return
            self._raw.add(key)
            raw = path
            if not os.path.isabs(path):  # relative to the cwd of the open, not of the commit
                path = os.path.join(os.getcwd(), path)
            norm = os.path.normpath(path)
            appending = ("a" in mode) if mode is not None else bool(flags & os.O_APPEND)
            if writing and appending and norm not in self.written:
                self._note_start(norm)
            if writing:
                self._note_absent(norm)
            elif norm in self.saved and norm not in self.read:
                self.own_first.add(norm)
            (self.written if writing else self.read).add(norm)
            if looping:
                self._loop_raw.add(raw)
                self.in_loop.add(os.path.normpath(path))
        except Exception:
            return

    def _note_absent(self, path: str) -> None:
        """Before the run's first write of ``path`` (absolute, normalized): note it in
        :attr:`absent` where nothing is there and the run read nothing there before."""
        if path in self.written or path in self.saved or path in self.read:
            return
        if len(self.absent) < self.LIMIT and not os.path.lexists(path):
            self.absent.add(path)

    def _note_start(self, path: str) -> None:
        """A file first opened to append: its size and a digest of its first
        :data:`START_BYTES` as the run found it (:attr:`starts`), so a replay's private copy
        can start as the run's did (``f.tell()``, ``os.path.getsize`` after appending a line
        each epoch: today's file held every run's lines, session 44)."""
        if len(self.starts) >= self.LIMIT:
            return
        try:
            with _real_io_open(path, "rb") as f:
                head = f.read(START_BYTES)
                size = os.fstat(f.fileno()).st_size
        except OSError:
            head, size = b"", 0  # not there yet: the run started it
        import hashlib

        self.starts[path] = (size, hashlib.sha256(head[:size]).hexdigest()[:16])

    def snapshot(self) -> tuple[set[str], set[str]]:
        """Absolute normalized paths read and written so far."""
        return set(self.read), set(self.written)


class EnvWatch:
    """Remembers the environment variables code of the repository reads through
    ``os.environ`` (``os.environ[k]``, ``.get``, ``in``, ``os.getenv``): per name, the value
    the first such read saw (None: not set). A replay sets them so again: a run trained with
    ``AUX_W=0.5 python train.py`` replays with ``AUX_W=0.5`` whatever the querying shell has.

    Installed by giving ``os.environ`` a subclass of its own class (the same object, so every
    reference to it sees the change). A read counts where the first frame outside ``os`` and
    ``collections.abc`` runs a file of the repository (:meth:`snapshot` filters by path), so
    torch's and other libraries' own reads are left out, and where that line read at most
    ``BULK`` names (more: a copy of the whole environment, for a subprocess). Names the
    script set before it read them, ``FLORSQL_*`` (florsql's own settings) and names that
    look like secrets (``KEY``, ``TOKEN``, ``SECRET``, ``PASSWORD``...: never written down)
    are left out too. Not seen: reads before ``import florsql``, and reads from C
    (``getenv``).
    """

    #: At most this many names are kept.
    LIMIT = 1000
    #: A line that read more names than this copied the environment (``dict(os.environ)``,
    #: ``{**os.environ}`` for a subprocess): its reads do not count.
    BULK = 8

    def __init__(self) -> None:
        self.active = True
        #: name -> (value at the first read, (file, line) of the code that read it)
        self.seen: dict[str, tuple[str | None, set[tuple[str, int]]]] = {}
        #: (file, line) -> the names read there (up to ``BULK`` + 1)
        self.per_site: dict[tuple[str, int], set[str]] = {}
        self.set_first: set[str] = set()
        #: bumped at every change of what :meth:`snapshot` reads; its latest answer per root
        self.generation = 0
        self._snapshots: dict[str, tuple[int, dict[str, str | None]]] = {}

    def install(self) -> None:
        environ = os.environ
        cls = type(environ)
        if getattr(cls, "__florsql_watch__", False):
            return
        watch = self

        class _Environ(cls):  # type: ignore[valid-type,misc]
            __florsql_watch__ = True

            def __getitem__(self, key: Any) -> Any:
                try:
                    value = super().__getitem__(key)
                except KeyError:
                    watch.read(key, None)
                    raise
                watch.read(key, value)
                return value

            def __contains__(self, key: Any) -> bool:
                try:
                    self[key]
                except KeyError:
                    return False
                return True

            def __setitem__(self, key: Any, value: Any) -> None:
                watch.wrote(key)
                super().__setitem__(key, value)

            def __delitem__(self, key: Any) -> None:
                watch.wrote(key)
                super().__delitem__(key)

        _Environ.__name__ = _Environ.__qualname__ = cls.__name__
        _Environ.__module__ = cls.__module__
        try:
            environ.__class__ = _Environ
        except TypeError:
            return  # not a plain os._Environ (replaced by someone): left alone

    def stop(self) -> None:
        self.active = False

    def reset(self) -> None:
        """Forget every read and write: a process forked to run a script
        (:mod:`florsql.replay.zygote`) starts as a fresh interpreter would."""
        self.seen.clear()
        self.set_first.clear()
        self.per_site.clear()
        self.generation += 1

    def read(self, key: Any, value: str | None) -> None:
        if not self.active or not isinstance(key, str) or key.startswith("FLORSQL_"):
            return
        try:
            if key in self.set_first:
                return
            entry = self.seen.get(key)
            if entry is None and len(self.seen) >= self.LIMIT:
                return
            frame = sys._getframe(2)
            while frame is not None and frame.f_code.co_filename in _PLUMBING:
                frame = frame.f_back  # type: ignore[assignment]
            where = (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("", 0)
            if where[0] and not where[0].startswith("<") and not os.path.isabs(where[0]):
                where = (os.path.abspath(where[0]), where[1])  # ``python train.py``: cwd-relative
            if entry is None:
                entry = self.seen[key] = (value, set())
                self.generation += 1
            if len(entry[1]) < 8 and where not in entry[1]:
                entry[1].add(where)
                self.generation += 1
            names = self.per_site.setdefault(where, set())
            if len(names) <= self.BULK and key not in names:
                names.add(key)
                self.generation += 1
        except Exception:
            return

    def wrote(self, key: Any) -> None:
        if self.active and isinstance(key, str) and key not in self.seen:
            self.set_first.add(key)

    def snapshot(self, root: str) -> dict[str, str | None]:
        """name -> value (None: unset) of the variables code under ``root`` read. Kept until
        the next read that changes it (a run asks at every flush; torch alone reads hundreds of
        names, so working it out took ~0.7 ms)."""
        kept = self._snapshots.get(root)
        if kept is not None and kept[0] == self.generation:
            return dict(kept[1])
        generation = self.generation
        out = self._compute(root)
        self._snapshots[root] = (generation, out)
        return dict(out)

    def _compute(self, root: str) -> dict[str, str | None]:
        prefix = os.path.join(os.path.normpath(root), "")
        out: dict[str, str | None] = {}
        for key, (value, sites) in list(self.seen.items()):
            if _SECRET.search(key):
                continue
            for f, line in sites:
                bulk = len(self.per_site.get((f, line), ())) > self.BULK
                if not bulk and os.path.isabs(f) and os.path.normpath(f).startswith(prefix):
                    out[key] = value
                    break
        return dict(sorted(out.items()))


#: Names never written down (their values are secrets): a replay leaves them as they are.
_SECRET = re.compile(r"(?i)key|token|secret|passw|credential|auth|cookie|session")

#: Files whose frames stand between a read of ``os.environ`` and the code that asked.
_PLUMBING = frozenset(
    {
        __file__,
        os.__file__,
        "<frozen os>",
        "<frozen _collections_abc>",
        getattr(sys.modules.get("_collections_abc"), "__file__", "") or "<frozen os>",
    }
)


class SkippedWriteError(RuntimeError):
    """A replay task that restored a checkpoint read a file its run wrote while it ran (the
    epochs' weight files averaged after the loop): iterations the task skipped would have
    written it, and the file there now may be another run's (:class:`WriteSandbox`'s
    ``skipped``). Not an ``OSError``: code that goes on without a file it cannot open does not
    take it for one. The runner replays the task again from the run's start."""


class WriteSandbox:
    """Keeps a replay worker's writes out of the user's files.

    A replay runs old code in a worktree whose ignored top-level paths (``data/``,
    ``checkpoints/``) are symlinks to the user's (docs/replay.md); old code that saves a
    checkpoint each epoch would overwrite the user's newest one with a replayed, older state
    (losing it), and a task replaying another run that reads that file (a run resumed from it)
    would read what a replay wrote. So, in a replay worker, a file under ``roots`` (the
    repository and the worktree, less florsql's store; with ``everywhere``, every path but
    :func:`write_through` folders: session 44, a replayed ``torch.save(state, "/tmp/x.pt")``
    overwrote the user's file) opened for writing is written to a
    private copy under ``private`` instead (copied first where the mode keeps the old content:
    append, ``r+``); the task's later opens of that path read its copy. ``os.rename``,
    ``os.replace``, ``os.remove`` and ``os.unlink`` of such paths act on the copies, never on
    the user's file; ``torch.save`` to a path is redirected too (torch writes it from C++).
    Files and folders ``tempfile`` makes (random names, made by this task) are written as they
    are, and so is a path that exists and is not a regular file (a FIFO, a device).
    Not covered: other writers that open files outside Python (h5py, safetensors, a
    subprocess), and other ways to change a file (``shutil.rmtree``, ``os.truncate``).
    """

    def __init__(
        self,
        roots: list[str],
        exclude: list[str],
        private: str,
        version: tuple[str, str] | None = None,
        everywhere: bool = False,
    ) -> None:
        self.roots = [os.path.join(os.path.realpath(r), "") for r in roots]
        self.exclude = [os.path.join(os.path.realpath(r), "") for r in exclude]
        #: Where the script's own code lies (the repository, the worktrees): a stat made by
        #: it, not by a library (``shutil.copy`` checking its target), is a read
        self.code = list(self.roots)
        #: File names of :attr:`outputs` and of the private copies' originals: a stat of
        #: any other name passes straight through (:meth:`stat_path`)
        self.names: set[str] = set()
        #: Folders holding :attr:`outputs` (:meth:`listed`)
        self.folders: set[str] = set()
        #: Outputs the run first opened to append: their size and first bytes' digest as the
        #: run found them (``append_starts``)
        self.starts: dict[str, tuple[int, str]] = {}
        if everywhere:
            self.roots.append(os.sep)
            self.exclude += [os.path.join(os.path.realpath(r), "") for r in write_through()]
        #: Real paths of files and folders ``tempfile`` made in this task (folders also with a
        #: trailing separator in ``made_dirs``): written as they are
        self.made: set[str] = set()
        self.made_dirs: set[str] = set()
        #: Real paths of the user's folders the task removed (``os.rmdir``, ``rmtree``): they
        #: stay, and making them again is no error
        self.emptied: set[str] = set()
        self.private = private
        self.moved: dict[str, str] = {}  # a real path -> its private copy
        #: Real paths of files the run wrote while it ran and read (``during:`` inputs), in a
        #: task that restores a checkpoint; they go into :attr:`skipped` as it restores one.
        self.during: set[str] = set()
        #: Reading one of these that the task did not write itself raises
        #: :class:`SkippedWriteError` (session 35: the skipped epochs' files were read as the
        #: user's folder held them, another seed's, silently but for a data warning)
        self.skipped: set[str] = set()
        #: Real paths of the files the run wrote (its ``outputs``), None where its run.json
        #: does not list them (recorded before session 36, or too many): a file not found
        #: after a restore is one skipped iterations would have written only if among them
        self.outputs: dict[str, str] | None = None  # real path -> repository-relative
        #: what the run raised, where it failed after its loop (ReplaySpec.run_error): a
        #: write it names, into a folder that is not there, fails as the run's did
        self.raised = ""
        #: Real paths of the outputs the run wrote while its outer loop ran: what skipped
        #: iterations may have written (None: not listed, taken as all its outputs)
        self.loop_outputs: set[str] | None = None
        #: Whether the task restored a checkpoint (skipping iterations) yet
        self.restored = False
        #: Outputs of the run the task read before it wrote them (real paths): what the run
        #: found there is not known (a run resumed from its own ``last.pt``), the task read
        #: today's copy (s36: silently where no old statement's value showed it)
        self.foreign: set[str] = set()
        #: Outputs of the run the task opened to append to (or ``r+``), their private copy
        #: starting from today's file: read back, they are :attr:`foreign`
        self.appended: set[str] = set()
        #: Real paths of the outputs that were not there when the run first wrote them
        #: (``created_outputs``): until the task writes one, it is not there either (today's
        #: copy is another run's; session 49)
        self.absent: set[str] = set()
        self._copying = False
        #: ``os.stat`` as it was before :meth:`install` wrapped it (the sandbox's own looks)
        self._stat = os.stat
        #: ``(repository, worktree)``: a file of the user's checkout that the worktree holds as
        #: the version's own, opened for reading by its path in the checkout (an absolute path:
        #: ``--config $PWD/configs/base.json``), is read from the worktree (session 34: it was
        #: today's file, and an old version's replay read today's configuration, silently)
        self.mapper: Any = None
        if version is not None:
            from florsql.store.checkout import CheckoutMapper

            self.mapper = CheckoutMapper(*version)

    def _inside(self, real: str) -> bool:
        """Under a root, unless a longer excluded folder holds it (the worktrees lie in the
        store, which is excluded), or ``tempfile`` made it (or a folder holding it) here."""
        root = max((len(r) for r in self.roots if real.startswith(r)), default=-1)
        if root <= max((len(e) for e in self.exclude if real.startswith(e)), default=-1):
            return False
        if real in self.made or any(real.startswith(m) for m in self.made_dirs):
            return False
        try:
            import stat

            return stat.S_ISREG(self._stat(real).st_mode)  # a FIFO, a device: as it is
        except OSError:
            return True  # not there yet

    def _start_as_found(self, real: str, private: str, start: tuple[int, str]) -> bool:
        """Write to ``private`` the first ``size`` bytes of today's ``real``, where they are
        what the run found (today's file at least that long, its first bytes' digest the
        run's: a file only appended to since); False (nothing written) where not."""
        import hashlib

        size, digest = start
        self._copying = True
        try:
            try:
                with _real_io_open(real, "rb") as f:
                    data = f.read(size)
            except FileNotFoundError:
                data = b""
            if len(data) != size:
                return False
            if hashlib.sha256(data[:START_BYTES]).hexdigest()[:16] != digest:
                return False
            with _real_io_open(private, "wb") as f:
                f.write(data)
            return True
        except OSError:
            return False
        finally:
            self._copying = False

    def _emptied(self, real: str) -> bool:
        """Whether ``real`` is, or lies in, a folder the task removed (:attr:`emptied`)."""
        folder = os.path.join(real, "")
        return any(folder.startswith(os.path.join(e, "")) for e in self.emptied)

    def _inside_folder(self, real: str) -> bool:
        """Whether a folder lies where the task's writes are private (as :meth:`_inside` for
        a file)."""
        folder = os.path.join(real, "")
        root = max((len(r) for r in self.roots if folder.startswith(r)), default=-1)
        if root <= max((len(e) for e in self.exclude if folder.startswith(e)), default=-1):
            return False
        return not any(folder.startswith(m) for m in self.made_dirs)

    def _is_dir(self, real: str) -> bool:
        try:
            import stat

            return stat.S_ISDIR(self._stat(real).st_mode)
        except (OSError, ValueError):
            return False

    def _regular(self, real: str) -> bool:
        """``os.path.isfile``, by the sandbox's own stat (not a read of the task's)."""
        try:
            import stat

            return stat.S_ISREG(self._stat(real).st_mode)
        except (OSError, ValueError):
            return False

    def temporary(self, path: Any) -> None:
        """Note a file or folder ``tempfile`` makes (a random, fresh name): the task's own,
        written as it is."""
        real = self.real(path)
        if real is not None:
            self.made.add(real)
            if self._is_dir(real):
                self.made_dirs.add(os.path.join(real, ""))

    def path(self, file: Any, writing: bool, keep: bool = True, fresh: bool = False) -> Any:
        """Where to open ``file``: its private copy when it has one or is written now.
        ``fresh``: written from nothing (``"w"`` mode, ``torch.save``), so what it holds is
        the task's, whatever the skipped iterations wrote."""
        if isinstance(file, int) or self._copying:
            return file  # (the sandbox's own copy of a file: as it is)
        real = self.real(file)
        if real is None:
            return file
        if real in self.skipped:
            if not writing:
                # also where the task wrote it before it restored (a file written before the
                # loop, that the skipped iterations wrote again: session 36) or appended to it
                # since (on top of what it held then)
                raise SkippedWriteError(
                    f"{os.fsdecode(os.fspath(file))} was written while the run ran, by "
                    "iterations this task skipped (it restored a checkpoint)"
                )
            if fresh:
                self.skipped.discard(real)
        hit = self.moved.get(real)
        if hit is not None:
            if not writing and real in self.appended:
                self.foreign.add(real)  # read back: what it held before the task is not known
            return hit
        if not writing and real in self.absent:
            self._nowhere(file)  # the run found none here: nor does the task
        if not writing and self.outputs is not None and real in self.outputs:
            self.foreign.add(real)
        if not writing and self.mapper is not None:
            tree = self.mapper.moved(os.path.abspath(os.fsdecode(os.fspath(file))))
            if tree is not None and os.path.isfile(tree):
                return tree  # the version's own copy of a file of the user's checkout
            return file
        if not writing or not self._inside(real):
            return file
        if self._no_folder(file, real):
            return file  # written where it is: it fails there, as the run's write did
        root = max((r for r in self.roots if real.startswith(r)), key=len)
        private = os.path.join(self.private, str(self.roots.index(root)), real[len(root) :])
        os.makedirs(os.path.dirname(private), exist_ok=True)
        start = self.starts.get(real) if not self.restored else None
        found = keep and not fresh and start is not None
        if real in self.absent:
            pass  # the run found none here: its copy starts empty, as the run's file did
        elif found and start is not None and self._start_as_found(real, private, start):
            pass  # as the run found it (the run's first append: ``append_starts``, s44)
        elif keep and not fresh and start is not None and not self._regular(real):
            if start[0] and self.outputs is not None and real in self.outputs:
                self.appended.add(real)  # the run found it holding bytes: they are gone
        elif keep and not fresh and self._regular(real):
            import shutil

            if self.outputs is not None and real in self.outputs:
                # appended to (or opened ``r+``): what it held before is today's copy, not
                # what the run found there; read back, it is a read before writing (before
                # session 43 a metrics file appended each epoch and read back counted today's
                # rows too: 4, 5, 6 for 1, 2, 3, silently)
                self.appended.add(real)

            self._copying = True  # (its own read of the file is not the task's)
            try:
                shutil.copyfile(real, private)  # append and r+ see the old content
            finally:
                self._copying = False
        self.moved[real] = private
        self.names.add(os.path.basename(real))
        return private

    def stat_path(self, file: Any) -> Any:
        """Where to look ``file`` up for ``os.stat``/``os.lstat`` (``os.path.exists``,
        ``getsize``, ``isfile``, ``Path.exists``...): its private copy where the task has one
        (none: removed by the task). Asked by the script's own code, a stat of one of the
        run's outputs the task has not written is a read of it (:attr:`foreign`; after a
        restore, :class:`SkippedWriteError`), and so is one of a copy that started from
        today's file (:attr:`appended`). Session 44: ``os.path.getsize(log)`` and ``if
        os.path.exists(f"e{epoch}.done"): continue`` read today's files, silently (120 for
        20; an epoch skipped that the run ran)."""
        if isinstance(file, int) or self._copying or not self.names:
            return file
        try:
            raw = os.fsdecode(os.fspath(file))
        except TypeError:
            return file
        if os.path.basename(raw.rstrip(os.sep)) not in self.names:
            return file  # (the common case: no realpath for each stat a library makes)
        self._copying = True  # (realpath's own lstat calls are the sandbox's)
        try:
            return self._stat_path(file, raw)
        finally:
            self._copying = False

    def _stat_path(self, file: Any, raw: str) -> Any:
        real = os.path.realpath(raw)
        hit = self.moved.get(real)
        if hit is not None:
            if real in self.appended and self._by_script():
                self.foreign.add(real)
            return hit
        script = self.outputs is not None and real in self.outputs and self._by_script()
        if script and real in self.skipped:
            raise SkippedWriteError(
                f"{raw} was written while the run ran, by iterations this task skipped "
                "(it restored a checkpoint)"
            )
        if real in self.absent and real not in self.skipped:
            self._nowhere(file)  # (``os.path.exists``: False, as the run found it)
        if script:
            self.foreign.add(real)
        return file

    def _no_folder(self, file: Any, real: str) -> bool:
        """Whether ``file``, to be written, is one the run could not write: its folder is not
        there, and the run never wrote the file (not among its outputs) or raised naming it
        (:attr:`raised`: ``torch.save(net, "out/model.pt")`` with no ``out/``, after its
        loop). Such a write is left to fail as the run's did (nothing is written: there is
        no folder); before session 50 it went to a private copy, the task went on past the
        line the run raised at, and a statement after it had values the run never reached. A
        file the run did write is written to its copy where its folder is gone since (the user
        cleaned ``out/``)."""
        folder = os.path.dirname(real)
        self._copying = True  # (the sandbox's own stat)
        try:
            there = os.path.isdir(folder)
        finally:
            self._copying = False
        if there:
            return False
        if self.outputs is None or real not in self.outputs:
            return True
        raw = os.fsdecode(os.fspath(file))
        return bool(self.raised) and any(
            p and p in self.raised for p in (raw, os.path.dirname(raw), self.outputs[real])
        )

    @staticmethod
    def _nowhere(file: Any) -> NoReturn:
        """Raise ``FileNotFoundError`` for ``file``: an output the run made, which the task
        has not written yet (:attr:`absent`)."""
        import errno

        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), file)

    def _by_script(self, depth: int = 3) -> bool:
        """Whether the code that asked is the script's (a file under :attr:`code`), past the
        frames of ``os``, ``genericpath``, ``posixpath``, ``pathlib``, ``glob`` and this
        module's wrappers; ``depth``: the wrapper's frame (3: under :meth:`stat_path`)."""
        frame = sys._getframe(depth)
        while frame is not None and frame.f_globals.get("__name__") in _PATH_MODULES:
            if frame.f_globals.get("__name__") == __name__ and frame.f_code.co_name not in (
                "stat",
                "listdir",
                "scandir",
            ):
                return False  # the sandbox's own look (``realpath`` in :meth:`path`)
            frame = frame.f_back  # type: ignore[assignment]
        if frame is None:
            return False
        name = os.path.realpath(frame.f_code.co_filename)
        return any(name.startswith(r) for r in self.code)

    def install_sqlite(self) -> None:
        """Keep ``sqlite3.connect`` off the user's databases (C writes past ``open``; session
        44: a replayed ``INSERT`` went into the user's database). The task works on a private copy
        of today's database, and one of the run's outputs so copied counts as read (its rows
        are today's, not what the run found)."""
        import sqlite3  # (a replay worker's: the script may import it after this)

        real_connect = sqlite3.connect
        if getattr(real_connect, "__florsql_sandbox__", False):
            return
        sandbox = self

        def connect(database: Any, *args: Any, **kw: Any) -> Any:
            if isinstance(database, (str, bytes, os.PathLike)) and _a_database_file(database):
                real = sandbox.real(database)
                private = sandbox.path(database, writing=True)
                if real is not None and private is not database and real in sandbox.appended:
                    sandbox.foreign.add(real)  # its rows are today's
                database = private
            return real_connect(database, *args, **kw)

        connect.__wrapped__ = real_connect  # type: ignore[attr-defined]
        connect.__florsql_sandbox__ = True  # type: ignore[attr-defined]
        connect.__doc__ = real_connect.__doc__
        setattr(sqlite3, "connect", connect)  # noqa: B010 (a module found at run time)

    def listed(self, folder: Any) -> None:
        """A listing of ``folder`` (``os.listdir``, ``os.scandir``: ``glob``,
        ``Path.iterdir``) by the script: where it holds outputs of the run the task has not
        written, it shows today's files, not what the run saw (a count of the epochs' files,
        the newest checkpoint to resume from): they count as read (:attr:`foreign`).
        Session 44: ``len(glob("out/e*.npy"))`` gave 3, 3, 3 for 1, 2, 3, silently."""
        if not self.folders or isinstance(folder, int) or self._copying:
            return
        try:
            raw = os.fsdecode(os.fspath(folder)) if folder is not None else "."
        except TypeError:
            return
        self._copying = True
        try:
            real = os.path.realpath(raw)
            if real not in self.folders or not self._by_script(depth=3):
                return
            assert self.outputs is not None
            for out in self.outputs:
                if os.path.dirname(out) == real and out not in self.moved:
                    self.foreign.add(out)
        finally:
            self._copying = False

    def real(self, file: Any) -> str | None:
        """The real path of ``file`` (None: a file descriptor, or not a path), resolved with
        the sandbox's stat redirection off: ``realpath``'s ``lstat`` of a link whose name the
        task wrote (the worktree's ``best.pt``, a link to the repository's) would otherwise
        see the task's private copy, a regular file, and resolve the link to itself (session
        50, sweep U: a ``torch.load("best.pt")`` after the loop read the file the last
        recorded run left, another run's weights, silently but for a data warning)."""
        copying, self._copying = self._copying, True
        try:
            return os.path.realpath(os.fsdecode(os.fspath(file)))
        except TypeError:
            return None
        finally:
            self._copying = copying

    def install(self) -> None:
        """Wrap ``os.rename``/``os.replace``/``os.remove``/``os.unlink`` and, where torch is
        loaded, ``torch.save``, to act on private copies."""
        sandbox = self
        for name in ("rename", "replace"):
            real_move = getattr(os, name)

            def move(src: Any, dst: Any, *args: Any, _real: Any = real_move, **kw: Any) -> Any:
                origin = sandbox.real(src)
                stale = origin in sandbox.skipped  # what it holds comes with it
                # the run's output the task has not written (or a copy that started from
                # today's): the moved copy is today's file, not what the run moved (session 44:
                # ``os.replace("last.npy", "prev.npy")``, then ``np.load("prev.npy")``)
                todays = origin is not None and (
                    origin in sandbox.appended
                    or (
                        origin not in sandbox.moved
                        and sandbox.outputs is not None
                        and origin in sandbox.outputs
                    )
                )
                to = sandbox.real(dst)
                src = sandbox.path(src, writing=True)  # the user's file stays: moved is a copy
                dst = sandbox.path(dst, writing=True, keep=False, fresh=True)
                if stale and to is not None:
                    sandbox.skipped.add(to)
                if todays and to is not None:
                    sandbox.appended.add(to)
                return _real(src, dst, *args, **kw)

            setattr(os, name, move)
        for name in ("stat", "lstat"):
            real_stat = getattr(os, name)

            def stat(path: Any, *args: Any, _real: Any = real_stat, **kw: Any) -> Any:
                return _real(sandbox.stat_path(path), *args, **kw)

            for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
                setattr(stat, attr, getattr(real_stat, attr))
            stat.__wrapped__ = real_stat  # type: ignore[attr-defined]
            setattr(os, name, stat)
        real_listdir, real_scandir = os.listdir, os.scandir

        def listdir(path: Any = None, *args: Any, **kw: Any) -> Any:
            sandbox.listed(path)
            return real_listdir(*([] if path is None else [path]), *args, **kw)

        def scandir(path: Any = None, *args: Any, **kw: Any) -> Any:
            sandbox.listed(path)
            return real_scandir(*([] if path is None else [path]), *args, **kw)

        listers: tuple[tuple[Any, Any], ...] = (
            (listdir, real_listdir),
            (scandir, real_scandir),
        )
        for lister, real_lister in listers:
            for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
                setattr(lister, attr, getattr(real_lister, attr))
            setattr(lister, "__wrapped__", real_lister)  # noqa: B010 (a function attribute)
        setattr(os, "listdir", listdir)  # noqa: B010 (overloaded in the stubs)
        setattr(os, "scandir", scandir)  # noqa: B010
        real_mkdir = os.mkdir

        def mkdir(path: Any, *args: Any, **kw: Any) -> Any:
            if kw.get("dir_fd") is None and sandbox.emptied:
                real = sandbox.real(path)
                if real is not None and sandbox._emptied(real) and sandbox._is_dir(real):
                    return None  # removed for this task only: made again, as it stands
            done = real_mkdir(path, *args, **kw)
            if sys._getframe(1).f_globals.get("__name__") == "tempfile":
                sandbox.temporary(path)  # mkdtemp, TemporaryDirectory
            return done

        real_rmdir = os.rmdir

        def rmdir(path: Any, *args: Any, **kw: Any) -> Any:
            # A folder of the user's is never removed: ``shutil.rmtree(out)`` removes nothing
            # (its files' unlinks act on private copies), and the folder counts as removed
            # for this task, so ``os.makedirs(out)`` after it does not fail (session 44: every
            # replay of a script starting so failed with FileExistsError)
            full = path
            if kw.get("dir_fd") is not None:  # inside ``rmtree``: a subfolder, by its fd
                full = _at(path, kw["dir_fd"])
            real = sandbox.real(full) if full is not None else None
            if real is not None and sandbox._inside_folder(real):
                sandbox.emptied.add(real)
                return None
            return real_rmdir(path, *args, **kw)

        import shutil

        real_rmtree = shutil.rmtree

        def rmtree(path: Any, *args: Any, **kw: Any) -> Any:
            # the user's folder stays (its files' removals would act on private copies, and
            # a folder that is a link to the user's, as the worktree's ``out``, is refused by
            # rmtree itself): it counts as removed for this task
            real = sandbox.real(path)
            if real is not None and sandbox._inside_folder(real):
                sandbox.emptied.add(real)
                return None
            return real_rmtree(path, *args, **kw)

        for wrapper, real_fn in (
            (mkdir, real_mkdir),
            (rmdir, real_rmdir),
            (rmtree, real_rmtree),
        ):
            for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
                setattr(wrapper, attr, getattr(real_fn, attr))
            setattr(wrapper, "__wrapped__", real_fn)  # noqa: B010 (a function attribute)
        rmtree.avoids_symlink_attacks = real_rmtree.avoids_symlink_attacks  # type: ignore[attr-defined]
        os.mkdir = mkdir
        os.rmdir = rmdir
        setattr(shutil, "rmtree", rmtree)  # noqa: B010 (a stand-in of a typed protocol)
        for name in ("remove", "unlink"):
            real_rm = getattr(os, name)

            def remove(path: Any, *args: Any, _real: Any = real_rm, **kw: Any) -> Any:
                if kw.get("dir_fd") is not None:  # ``rmtree``'s: a name in a folder's fd
                    full = _at(path, kw["dir_fd"])
                    if full is None:
                        return _real(path, *args, **kw)
                    path = full
                    kw = {k: v for k, v in kw.items() if k != "dir_fd"}
                private = sandbox.path(path, writing=True, keep=False, fresh=True)
                if private is not path and not os.path.lexists(private):
                    return None  # the user's file: it stays, as if removed for this task
                return _real(private, *args, **kw)

            setattr(os, name, remove)
        self.install_sqlite()
        torch = sys.modules.get("torch")
        if torch is not None and hasattr(torch, "save"):
            real_save = torch.save

            def save(obj: Any, f: Any, *args: Any, **kw: Any) -> Any:
                if isinstance(f, (str, bytes, os.PathLike)):
                    f = sandbox.path(f, writing=True, keep=False, fresh=True)
                return real_save(obj, f, *args, **kw)

            save.__wrapped__ = real_save  # type: ignore[attr-defined]
            setattr(torch, "save", save)  # noqa: B010 (torch is a module found at run time)
            serialization = sys.modules.get("torch.serialization")
            if serialization is not None:
                setattr(serialization, "save", save)  # noqa: B010


def _a_database_file(database: Any) -> bool:
    """A path ``sqlite3.connect`` opens as a file (not ``:memory:``, not a ``file:`` URI)."""
    name = os.fsdecode(os.fspath(database))
    return bool(name) and name != ":memory:" and not name.startswith("file:")


def _at(name: Any, dir_fd: int) -> str | None:
    """The path of ``name`` in the folder open as ``dir_fd`` (``shutil.rmtree``'s calls), read
    from ``/proc/self/fd``; None where that cannot tell."""
    try:
        folder = os.readlink(f"/proc/self/fd/{dir_fd}")
        return os.path.join(folder, os.fsdecode(os.fspath(name)))
    except (OSError, TypeError, ValueError):
        return None


#: Modules whose frames stand between a stat and the code that asked for it.
_PATH_MODULES = frozenset(
    {"os", "genericpath", "posixpath", "ntpath", "pathlib", "glob", "fnmatch", __name__}
)

#: Environment variable: more folders a replay writes to as they are (``os.pathsep``
#: separated), beside :func:`write_through`'s own: a cache the replays share on purpose.
WRITABLE = "FLORSQL_REPLAY_WRITABLE"


#: Tools whose caches under ``~/.cache`` a replay writes as they are (not the whole of
#: ``~/.cache``: a sweep kept its own resume file in ``~/.cache/proj/last.pt``, session 44).
_CACHED_TOOLS = (
    "torch", "huggingface", "matplotlib", "pip", "triton", "fontconfig", "torch_extensions",
    "numba", "jax", "clip", "uv", "pypoetry",
)  # fmt: skip


def write_through() -> list[str]:
    """Folders outside the repository a replay task writes to as they are, not to private
    copies (:class:`WriteSandbox` with ``everywhere``): the system's (``/dev``, ``/proc``,
    ``/sys``, ``/run``), Python's installation, and the caches tools keep for themselves
    (torch's, Hugging Face's, matplotlib's, pip's, Triton's... under ``~/.cache`` or
    ``$XDG_CACHE_HOME``: :data:`_CACHED_TOOLS`; torch's compile cache), plus
    :data:`WRITABLE`'s. A run's outputs outside the
    repository are listed without these (:func:`florsql.record.inputs.record_outputs`)."""
    home = os.path.expanduser("~")
    env = os.environ
    cache = env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    try:
        import getpass

        user = getpass.getuser()
    except Exception:  # no name for this uid
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    import tempfile

    paths = [
        "/dev",
        "/proc",
        "/sys",
        "/run",
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        *(os.path.join(cache, tool) for tool in _CACHED_TOOLS),
        os.path.join(home, ".triton"),
        os.path.join(home, ".nv"),
        os.path.join(home, ".config", "matplotlib"),
        os.path.join(tempfile.gettempdir(), f"torchinductor_{user}"),
    ]
    for name in (
        "TORCHINDUCTOR_CACHE_DIR",
        "TRITON_CACHE_DIR",
        "TORCH_HOME",
        "HF_HOME",
        "MPLCONFIGDIR",
        "PYTHONPYCACHEPREFIX",
    ):
        if env.get(name):
            paths.append(env[name])
    paths += [p for p in (env.get(WRITABLE) or "").split(os.pathsep) if p]
    return paths


#: This process's watches.
WATCH = OpenWatch()
WATCH.install()
ENV_WATCH = EnvWatch()
ENV_WATCH.install()
