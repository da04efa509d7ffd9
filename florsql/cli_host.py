"""The query host: one-shot ``florsql query`` commands run in a process that has imported
florsql's query side already.

A one-shot query pays its interpreter's imports (DuckDB, pyarrow, sqlglot, libcst: about
0.7 s of CPU here) before its first row. While the repository's replay service runs, the
service keeps a *query host* beside it (started after its first tasks, so it never competes
with a cold query): a process that imported all of that once, listening on
``.florsql/query.sock``. ``florsql query`` hands the host its arguments, working folder,
environment, umask and its standard input, output and error (the file descriptors themselves,
over the socket); the host forks, and the child runs the very same command on them, as the
command would have run in its own process, and reports its exit status. The command's process
forwards Ctrl-C (and SIGTERM, SIGHUP, SIGQUIT) to the child and exits with the child's status.

Nothing depends on the host: the command runs in its own process whenever the host is absent,
busy starting, from another interpreter or florsql, or started under other ``FLORSQL_*``,
``PYTHON*``, locale or time-zone variables or interpreter flags (values some modules read once,
at import). ``FLORSQL_QUERY_HOST=0`` turns it off (the service then starts none either).

Protocol: one JSON line from the client with the request (and its three descriptors), then JSON
lines back: ``{"declined": why}``, or ``{"pid": n}`` and, when the command ends,
``{"exit": code}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

SOCKET = "query.sock"
#: Environment variables a module may read once, at import: the host's and the command's must
#: agree on these for the command to run in the host.
_PREFIXES = ("FLORSQL_", "PYTHON", "LC_")
_NAMES = ("TZ", "LANG", "LANGUAGE")
#: Set in the host's children, so the command they run does not hand itself over again.
_IN_HOST = False
#: What a one-shot query imports: loaded by the host before it listens.
_MODULES = (
    "florsql.cli",
    "florsql.repl.backend",
    "florsql.repl.render",
    "florsql.engine.session",
    "florsql.plan.scan_code",
    "florsql.plan.scan_ast",
    "florsql.propagate.version",  # placing statements: libcst (the package loads it lazily)
    "florsql.replay",
    "florsql.replay.service",
    "florsql.replay.plan_executor",
    "florsql.replay.executors",
    "florsql.replay.runner",
    "florsql.replay.tasks",
    "florsql.replay.worktree",
    "florsql.replay.determinism",
    "florsql.store.fingerprints",
    "pyarrow.compute",
    "libcst.native",
    "filelock",  # the index's lock
)


def _warm() -> None:
    """Run the pure-Python parts a query meets first (parsers' lazily built tables) once, so
    every child starts with them built. Nothing that starts threads (DuckDB): the host forks."""
    from florsql.grammar import parse
    from florsql.plan.hindsight import scan_source

    parse("SELECT a, count(*) FROM logs WHERE b = ? AND c IN (1, 2) GROUP BY ALL ORDER BY 1")
    src = "import florsql as flor\nfor e in flor.loop('epoch', range(2)):\n    flor.log('x', e)\n"
    scan_source(src, "warm.py")


def enabled() -> bool:
    value = os.environ.get("FLORSQL_QUERY_HOST", "1").lower()
    return value not in ("0", "off", "false", "no")


def _identity() -> dict[str, Any]:
    package = os.path.dirname(os.path.abspath(__file__))
    flags = {n: getattr(sys.flags, n) for n in dir(sys.flags) if not n.startswith(("_", "n_"))}
    flags.pop("hash_randomization", None)  # the service's PYTHONHASHSEED: compared apart
    flags = {k: v for k, v in flags.items() if not callable(v)}
    import florsql
    from florsql.replay.sockets import SOURCE

    version = florsql.__version__
    return {
        "python": sys.executable,
        "florsql": package,
        "version": version,
        "source": SOURCE,
        "flags": flags,
    }


#: Variables read for each replay task from its environment (the command's, which the host's
#: child takes), never at import: they need not agree.
_PER_TASK = ("FLORSQL_REPLAY_WRITABLE",)


def _env_key(env: dict[str, str]) -> dict[str, str]:
    """The variables that must agree (``PYTHONHASHSEED`` only where the command sets it)."""
    return {
        k: v
        for k, v in env.items()
        if (k.startswith(_PREFIXES) or k in _NAMES) and k not in _PER_TASK
    }


# -- the command's side ---------------------------------------------------------------------------


def delegate(root: Path, argv: list[str]) -> int | None:
    """Run ``florsql`` with ``argv`` in ``root``'s query host; its exit status, or None when
    there is no host to run it (the caller then runs it itself)."""
    if _IN_HOST or not enabled():
        return None
    store = Path(root) / ".florsql"
    if not (store / SOCKET).exists():
        return None
    from florsql.replay.sockets import dial  # the standard library only: light

    try:
        sock = dial(store, SOCKET)
    except OSError:
        return None  # a stale socket (a host that died): run here
    with sock:
        try:
            cwd = os.getcwd()
            umask = os.umask(0o022)
            os.umask(umask)
            request = {
                "argv": argv,
                "cwd": cwd,
                "env": dict(os.environ),
                "umask": umask,
                "path": list(sys.path),
                "stdio": [_stream(s) for s in (sys.stdin, sys.stdout, sys.stderr)],
                **_identity(),
            }
            sys.stdout.flush()
            sys.stderr.flush()
            socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
            reader = sock.makefile("rb")
            first = _line(reader)
        except (OSError, ValueError):
            return None
        if first is None or "pid" not in first:
            return None  # declined (another environment...) or the host is going away
        pid = int(first["pid"])
        return _wait(reader, pid)


def _stream(stream: Any) -> dict[str, Any] | None:
    """How this process's standard stream is set up (the child sets up its own alike)."""
    if not isinstance(stream, io.TextIOWrapper):
        return None
    return {
        "encoding": stream.encoding,
        "errors": stream.errors,
        "line_buffering": stream.line_buffering,
    }


def _line(reader: Any) -> dict[str, Any] | None:
    raw = reader.readline()
    if not raw:
        return None
    msg = json.loads(raw)
    return msg if isinstance(msg, dict) else None


def _wait(reader: Any, pid: int) -> int:
    """Forward signals to the child ``pid`` until it reports its exit status."""

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    previous = {s: signal.signal(s, forward) for s in forwarded}
    try:
        while True:
            try:
                msg = _line(reader)
            except InterruptedError:
                continue
            except (OSError, ValueError):
                msg = None
            if msg is None:
                print(
                    f"florsql: the query's process (pid {pid}) in the query host ended without "
                    "an exit status",
                    file=sys.stderr,
                )
                return 1
            if "exit" in msg:
                return int(msg["exit"])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# -- the host's side ------------------------------------------------------------------------------


class Host:
    def __init__(self, store: Path) -> None:
        self.store = store
        self.env = _env_key(dict(os.environ))
        self.identity = _identity()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.inode: int | None = None
        self.served = 0

    def bind(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET)  # a dead host's: the service starts one host at a time
        old = os.umask(0o077)
        try:
            self.listener.bind(SOCKET)  # relative to the store (the working folder)
        finally:
            os.umask(old)
        self.listener.listen(16)
        self.inode = os.stat(SOCKET).st_ino

    def _ours(self) -> bool:
        try:
            return os.stat(SOCKET).st_ino == self.inode
        except OSError:
            return False

    def release(self) -> None:
        if self.inode is not None and self._ours():
            with contextlib.suppress(OSError):
                os.unlink(SOCKET)
        self.inode = None
        self.listener.close()

    def serve(self) -> None:
        """Until the service goes (standard input closes) or the socket file is not ours."""
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ, "listen")
        selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "service")
        while self._ours():
            for key, _ in selector.select(1.0):
                if key.data == "service":
                    if not os.read(sys.stdin.fileno(), 512):
                        return  # the service exited
                else:
                    self._accept()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        fds: list[int] = []
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            if struct.unpack("3i", creds)[1] != os.getuid():
                return
            conn.settimeout(10.0)
            data, fds = _receive(conn)
            request = json.loads(data)
            why = self._decline(request, fds)
            if why is not None:
                conn.sendall(json.dumps({"declined": why}).encode() + b"\n")
                return
            pid = os.fork()
            if pid == 0:
                _child(self.listener, conn, request, fds)  # never returns
            self.served += 1
            print(f"{time.strftime('%H:%M:%S')} query {self.served}: pid {pid}", flush=True)
        except (OSError, ValueError) as e:
            print(f"{time.strftime('%H:%M:%S')} a request failed: {e}", flush=True)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            conn.close()

    def _decline(self, request: Any, fds: list[int]) -> str | None:
        if not isinstance(request, dict) or len(fds) != 3:
            return "not a request"
        theirs = {k: request.get(k) for k in self.identity}
        if theirs != self.identity:
            return "another interpreter, florsql or interpreter flags"
        env = _env_key(dict(request.get("env") or {}))
        mine = dict(self.env)
        if "PYTHONHASHSEED" not in env:
            mine.pop("PYTHONHASHSEED", None)  # the service's own choice, not the command's
        if env != mine:
            return "other FLORSQL_/PYTHON/locale variables"
        return None


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    """One request line and the descriptors sent with it."""
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    while not data.endswith(b"\n"):
        more = conn.recv(1 << 20)
        if not more:
            raise ValueError("the request was cut short")
        data += more
    return data, list(fds)


def _child(
    listener: socket.socket, conn: socket.socket, request: dict[str, Any], fds: list[int]
) -> None:
    """In the forked child: become the command's process, run it, report its exit status."""
    code = 1
    try:
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, 0)
        listener.close()
        conn.settimeout(None)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _stdio(request.get("stdio") or [None, None, None])
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        global _IN_HOST
        _IN_HOST = True
        argv = [str(a) for a in request["argv"]]
        sys.argv = ["florsql", *argv]
        sys.path[:] = [str(p) for p in request.get("path") or sys.path]
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        _end_with(conn)
        from florsql.cli import main

        try:
            main.main(args=argv, prog_name="florsql", standalone_mode=True)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        with contextlib.suppress(Exception):
            import atexit

            atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
        os._exit(code)


def _end_with(conn: socket.socket) -> None:
    """End this child if the command's process goes without waiting for it (``kill -9``): the
    command must not run on unobserved, as it would not alone. (Its replay tasks end with it:
    the replay service kills the tasks of a connection that closes.)"""
    import threading

    def watch() -> None:
        with contextlib.suppress(OSError):
            while conn.recv(64):
                pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="florsql-query-host-client", daemon=True).start()


def _stdio(setups: list[Any]) -> None:
    """Standard streams on descriptors 0-2 as the command's process had them."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        setup = setups[fd] if fd < len(setups) and isinstance(setups[fd], dict) else {}
        raw = open(fd, mode + "b", closefd=False)  # noqa: SIM115
        stream = io.TextIOWrapper(
            raw,
            encoding=setup.get("encoding") or "utf-8",
            errors=setup.get("errors") or "strict",
            line_buffering=bool(setup.get("line_buffering")),
            write_through=name == "stderr",
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def main(store: Path | str) -> None:
    """Become ``store``'s query host (the service starts it, its standard input a pipe the
    service holds): import, listen, serve until the service goes."""
    store = Path(store).resolve()
    os.chdir(store)
    import gc
    import importlib

    t0 = time.perf_counter()
    gc.disable()  # as the replay service's preload: no collections walking a growing heap
    for name in _MODULES:
        try:
            importlib.import_module(name)
        except Exception as e:  # a child imports it itself
            print(f"query host: cannot preload {name}: {e}", flush=True)
    try:
        _warm()
    except Exception as e:
        print(f"query host: warm-up failed: {e}", flush=True)
    gc.enable()
    gc.freeze()  # the children's collections never walk (nor copy) the host's objects
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
    host = Host(store)
    try:
        host.bind()
        took = time.perf_counter() - t0
        print(
            f"{time.strftime('%H:%M:%S')} query host pid {os.getpid()}: ready in {took:.2f} s",
            flush=True,
        )
        host.serve()
    finally:
        host.release()
        print(f"{time.strftime('%H:%M:%S')} query host pid {os.getpid()}: exit", flush=True)
