"""The warm replay service of one repository: a zygote shared by every process that queries it.

A replay task's start-up (an interpreter, ``import torch``, torch's companions) costs more
than most tasks. :mod:`florsql.replay.zygote` pays it once per query process; this service
pays it once per repository, for every process that asks: one-shot ``florsql query`` runs, the
REPL, notebooks and the Flight server all fork their tasks from the same warm process.

* **Where.** A Unix socket ``.florsql/replay.sock`` (mode 0600, the peer's uid checked on
  every connection), state in ``.florsql/replay-service.json``, its log in
  ``.florsql/replay-service.log``. It runs as the user who started it and forks only tasks
  whose working folder lies inside its repository.
* **Lifetime.** The first replay that needs it starts it (:func:`connect`); it exits after
  ``FLORSQL_REPLAY_SERVICE_IDLE`` seconds (default 600) without a task, a preload or a new client
  (a status request does not count), when its
  socket file is removed or replaced (its repository deleted), or on ``stop``. A stale
  socket (a killed service) is noticed at connect, and a new service replaces it; two
  processes starting one at once meet on a lock file, so only one starts.
* **Tasks.** Each task is a ``fork()`` of the service in its own process group, with the
  submitting process's environment. The service reports ``{"started": id, "pid": pid}``,
  then ``{"id", "returncode"}`` when it ends. A connection that closes while its tasks run
  (the query process died or was interrupted) has them killed: nothing of an abandoned
  query finishes unobserved.

Protocol: JSON lines over the socket. Requests: ``{"hello": {}}``, ``{"preload": [...]}``, a
task (as :mod:`florsql.replay.zygote`, plus ``"environ"``), ``{"cancel": true}``,
``{"status": true}``, ``{"stop": true}``; every request but a task gets one reply line.
``python -m florsql.replay.service STORE_DIR`` starts one (the caller reads one line:
``{"listening": pid}`` or ``{"running": pid}`` when another already serves the repository).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from florsql.replay import sockets as _sockets

SOCKET = "replay.sock"
STATE = "replay-service.json"
LOCK = "replay-service.lock"  # held by the live service for its whole life
START_LOCK = "replay-service.start"  # held by a process while it starts a service
LOG = "replay-service.log"
DEFAULT_IDLE = 600.0
#: How long a starting process waits for a new service to listen (its own imports are light).
START_TIMEOUT = 60.0
#: Seconds the service stays idle after its first tasks before it starts the query host: the
#: host's imports (about 0.7 s of CPU) then do not slow the tasks of a query sent right after
#: the first one (a notebook's next cell, a script's second query). They did: tasks forked
#: meanwhile took 2.3x as long (0.28 s against 0.12 s, benchmarks/hindsight.py).
HOST_DELAY_S = 2.0
#: How a service is launched (``-m`` would warn: the package already imported this module).
_LAUNCH = "import sys; from florsql.replay.service import main; main(sys.argv[1])"
#: The query host (florsql.cli_host), started beside the service after its first tasks.
_HOST_LAUNCH = "import sys; from florsql.cli_host import main; main(sys.argv[1])"


def idle_timeout() -> float:
    """``FLORSQL_REPLAY_SERVICE_IDLE`` seconds (default 600)."""
    try:
        return max(0.0, float(os.environ.get("FLORSQL_REPLAY_SERVICE_IDLE", DEFAULT_IDLE)))
    except ValueError:
        return DEFAULT_IDLE


def enabled() -> bool:
    """Whether local replays use the shared service (``FLORSQL_REPLAY_SERVICE=0`` turns it
    off: each query process then keeps its own warm worker)."""
    return os.environ.get("FLORSQL_REPLAY_SERVICE", "1").lower() not in ("0", "off", "false", "no")


_PACKAGE = _sockets.PACKAGE
#: This process's florsql code (see :func:`florsql.replay.sockets.source_digest`), taken as it
#: imports this module.
SOURCE = _sockets.SOURCE
_source_digest = _sockets.source_digest


def outdated() -> bool:
    """Whether florsql's files changed since this process imported it (upgraded in place
    meanwhile): its code is then the old one, and it leaves a newer service alone."""
    return _source_digest(_PACKAGE) != SOURCE


def identity() -> dict[str, str]:
    """What a client and a service must share: the interpreter, this florsql's path, and its
    code (a service started before florsql was upgraded in place runs the old code: a client
    of the new one replaces it rather than send it tasks it cannot read)."""
    return {"python": sys.executable, "florsql": _PACKAGE, "source": SOURCE}


# -- the client side ---------------------------------------------------------------------------


class ServiceUnavailable(Exception):
    """The service could not be reached or started (the caller falls back to its own worker)."""


def dial(store: Path, name: str = SOCKET) -> socket.socket:
    """Connect to the socket ``name`` in ``store`` (see :func:`florsql.replay.sockets.dial`)."""
    return _sockets.dial(store, name)


class Connection:
    """One connection to a live service (JSON lines both ways)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.info: dict[str, Any] = {}

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def receive(self) -> dict[str, Any]:
        """The next line; raises :class:`ConnectionError` when the service is gone."""
        line = self.reader.readline()
        if not line:
            raise ConnectionError("the replay service closed the connection")
        msg = json.loads(line)
        assert isinstance(msg, dict)
        return msg

    def ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.send(msg)
        return self.receive()

    def shutdown(self) -> None:
        """Wake a thread blocked in :meth:`receive` (it then sees the connection closed)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()


#: Seconds a client waits for a live service's answer to its hello: a service stopped
#: (``kill -STOP``) or stuck answered nothing, and every hindsight query, ``replay-service
#: status`` and ``stop`` hung (session 46).
HELLO_TIMEOUT = float(os.environ.get("FLORSQL_REPLAY_SERVICE_HELLO_TIMEOUT", "") or 10.0)


class ServiceUnresponsive(OSError):
    """A service holds the socket and does not answer (``pid``: its, from its state file)."""

    def __init__(self, pid: int | None) -> None:
        shown = f" (pid {pid})" if pid else ""
        super().__init__(
            f"the replay service{shown} does not answer (stopped or stuck?); "
            "`florsql replay-service stop` ends it"
        )
        self.pid = pid


def _state_pid(store: Path) -> int | None:
    try:
        return int(json.loads((Path(store) / STATE).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _try_connect(store: Path, *, quiet: bool = False) -> Connection | None:
    """A connection that said hello (``quiet``: a hello that does not count as use, for
    ``status`` and ``stop``: the idle clock was reset by each status check before session
    46, so a service polled for its status never exited)."""
    try:
        sock = dial(store)
    except (FileNotFoundError, ConnectionRefusedError):
        return None  # none yet, or a stale socket of a dead service
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            return None
        raise
    conn = Connection(sock)
    try:
        sock.settimeout(HELLO_TIMEOUT)
        conn.info = conn.ask({"hello": identity(), **({"quiet": True} if quiet else {})})
        sock.settimeout(None)
    except TimeoutError:
        conn.close()
        raise ServiceUnresponsive(_state_pid(store)) from None
    except (OSError, ValueError):
        conn.close()
        return None  # a service exiting right now: like none
    return conn


def _serves(conn: Connection, store: Path) -> bool:
    """Whether the service serves the repository of ``store`` where it is now (a repository
    moved with ``mv`` keeps its service, which served the old path: every hindsight query
    failed "it serves only <old path>" before session 46)."""
    root = conn.info.get("repository")
    return root is None or root == os.path.realpath(Path(store).parent)


def connect(store: Path, *, start: bool = True) -> Connection | None:
    """A connection to ``store``'s service, starting one if none runs (and ``start``).

    A service from another interpreter or florsql checkout is asked to stop and replaced
    (its running tasks finish). Returns None when none runs and ``start`` is False.

    Raises:
        ServiceUnavailable: no service could be started (the caller replays without it).
    """
    store = Path(store)
    try:
        conn = _try_connect(store)
    except ServiceUnresponsive as e:
        import warnings

        from florsql.errors import ReplayFailedWarning

        warnings.warn(f"{e}; replaying without it", ReplayFailedWarning, stacklevel=2)
        raise ServiceUnavailable(str(e)) from e
    if conn is not None and conn.info.get("identity") == identity() and _serves(conn, store):
        return conn
    if conn is not None and outdated():
        conn.close()  # this process runs florsql's old code: the service is not the one to go
        raise ServiceUnavailable("florsql was upgraded since this process imported it")
    if conn is not None:  # another interpreter's service: let it wind down, start ours
        with contextlib.suppress(OSError, ValueError, ConnectionError):
            conn.ask({"stop": True})
        conn.close()
    if not start:
        return None
    try:
        with _start_lock(store):
            conn = _try_connect(store)  # started by another process while we waited
            if conn is None or conn.info.get("identity") != identity() or not _serves(conn, store):
                if conn is not None:
                    with contextlib.suppress(OSError, ValueError, ConnectionError):
                        conn.ask({"stop": True})  # it let go of the socket before answering
                    conn.close()
                _start(store)
                conn = _try_connect(store)
    except ServiceUnresponsive as e:
        raise ServiceUnavailable(str(e)) from e
    except OSError as e:
        raise ServiceUnavailable(f"cannot start the replay service: {e}") from e
    if conn is None:
        raise ServiceUnavailable("the replay service started but does not answer")
    if conn.info.get("identity") != identity():
        conn.close()  # another code's service still holds the repository: do without it
        raise ServiceUnavailable("another florsql's replay service still serves the repository")
    return conn


@contextlib.contextmanager
def _start_lock(store: Path) -> Iterator[None]:
    fd = os.open(store / START_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while another process starts one
        yield
    finally:
        os.close(fd)


def _start(store: Path) -> None:
    """Start a service for ``store`` and wait until it listens (or says another one does)."""
    log = os.open(store / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, str(store)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=str(store),
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    finally:
        os.close(log)
    assert proc.stdout is not None
    try:
        # The launched process forks the service and exits at once; the service keeps the
        # pipe's write end and writes one line when it listens (or fails to).
        line = proc.stdout.readline()
    finally:
        proc.stdout.close()
        proc.wait(timeout=START_TIMEOUT)
    try:
        msg = json.loads(line) if line else {}
    except ValueError:
        msg = {}
    if "listening" not in msg and "running" not in msg:
        tail = ""
        with contextlib.suppress(OSError):
            tail = (store / LOG).read_text(errors="replace")[-500:]
        raise OSError(f"the replay service did not start: {msg.get('error') or tail.strip()}")


def start_soon(store: Path) -> None:
    """Start ``store``'s service in the background (a daemon thread) unless one runs: a
    process that will likely replay calls this first thing, so the service's imports overlap
    its own. Failures are silent (the replay starts one, or replays without it)."""
    import threading

    def start() -> None:
        with contextlib.suppress(Exception):
            conn = connect(store)
            if conn is not None:
                conn.close()

    if enabled() and (Path(store) / "runs").is_dir():
        threading.Thread(target=start, name="florsql-replay-service-start", daemon=True).start()


def status(store: Path) -> dict[str, Any] | None:
    """The live service's status (pid, uptime, idle timeout, modules, tasks), or None; raises
    :class:`ServiceUnresponsive` for one that does not answer."""
    conn = _try_connect(Path(store), quiet=True)
    if conn is None:
        return None
    try:
        return conn.ask({"status": True})
    except (OSError, ValueError, ConnectionError):
        return None
    finally:
        conn.close()


def stop(store: Path, *, timeout: float = 30.0) -> int | None:
    """Ask the live service to stop; waits (up to ``timeout``) for it to exit. Returns its pid,
    or None when none ran. Tasks it runs finish first; it accepts no new ones meanwhile. One
    that does not answer (stopped, stuck) is ended by its pid: continued, terminated, killed
    if still there after ``timeout``."""
    try:
        conn = _try_connect(Path(store), quiet=True)
    except ServiceUnresponsive as e:
        if e.pid is None or not _is_service(e.pid):
            raise
        _end(e.pid, timeout)
        return e.pid
    if conn is None:
        return None
    try:
        pid = int(conn.info["pid"])
        conn.ask({"stop": True})
        # The service closes every connection as it exits: wait for ours to close.
        conn.sock.settimeout(timeout)
        with contextlib.suppress(OSError, ConnectionError, ValueError):
            while True:
                conn.receive()
    finally:
        conn.close()
    return pid


def _is_service(pid: int) -> bool:
    """Whether process ``pid`` is a replay service (not a pid reused since)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return sys.platform != "linux"  # no /proc to ask: trust the state file
    return b"florsql.replay.service" in cmdline


def _end(pid: int, timeout: float) -> None:
    """End an unresponsive service: SIGCONT (a stopped one handles nothing), SIGTERM, and
    SIGKILL if it is still there after ``timeout``."""
    for sig in (signal.SIGCONT, signal.SIGTERM):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)  # a process of another parent: no wait() to block on
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


# -- the service side --------------------------------------------------------------------------


@dataclass
class _Client:
    sock: socket.socket
    buffer: bytes = b""
    tasks: dict[int, str] = field(default_factory=dict)  # pid -> task id


class Service:
    def __init__(self, store: Path, lock_fd: int) -> None:
        self.store = store
        self.root = os.path.realpath(store.parent)
        self.lock_fd = lock_fd
        self.idle = idle_timeout()
        self.started = time.time()
        self.last = time.monotonic()
        self.tasks_run = 0
        self.loaded: list[str] = []
        self.clients: dict[int, _Client] = {}
        self.owner: dict[int, _Client] = {}  # task pid -> its client
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wake_r, self.wake_w = os.pipe()
        # Tasks write their pid here once their done.json is written, just before they exit:
        # the client hears of it without waiting for the exit (see replay_mode.DONE_FD).
        self.done_r, self.done_w = os.pipe()
        self.inode: int | None = None
        self.host: subprocess.Popen[bytes] | None = None
        self.host_tried = False
        self.host_state = "not started (starts once idle after the first tasks)"

    # setup / teardown
    def bind(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET)  # a stale one: we hold the lifetime lock, so its owner is gone
        old = os.umask(0o077)
        try:
            self.listener.bind(SOCKET)  # relative to the store: no path-length limit
        finally:
            os.umask(old)
        self.listener.listen(64)
        self.inode = os.stat(SOCKET).st_ino
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, "listen")
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._terminate)
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        os.set_blocking(self.done_r, False)
        self.selector.register(self.done_r, selectors.EVENT_READ, "done")
        self._write_state()

    def _write_state(self, ready: bool = False) -> None:
        doc = {
            "pid": os.getpid(),
            "ready": ready,  # its imports done: a replay now pays none of them
            "started": self.started,
            "idle_timeout": self.idle,
            **identity(),
        }
        tmp = f"{STATE}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, STATE)

    def _ours(self) -> bool:
        """Whether the socket file is still the one this service bound."""
        try:
            return os.stat(SOCKET).st_ino == self.inode
        except OSError:
            return False

    def _release(self) -> None:
        """Stop being the repository's service: the socket and state go, the lock is freed, so
        a new service may start while this one finishes what it runs."""
        if self.inode is None:
            return
        if self._ours():
            with contextlib.suppress(OSError):
                os.unlink(SOCKET)
            with contextlib.suppress(OSError):
                os.unlink(STATE)
        self.inode = None
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.selector.unregister(self.listener)
        self.listener.close()
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)

    def _terminate(self, signum: int, frame: object) -> None:
        self._kill_all()
        self._release()
        os._exit(0)

    def _kill_all(self) -> None:
        for pid in list(self.owner):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    # the loop
    def serve(self) -> None:
        from florsql.replay import zygote

        t0 = time.perf_counter()
        from florsql.replay import imports

        startup = imports.startup_modules()
        self.loaded = zygote.preload(list(zygote.WORKER_MODULES))
        # What the scripts of the repository's recent runs import (torch...): loaded before the
        # first request is read, so a service started early (a CLI query, the REPL's start)
        # is ready by the time its tasks come.
        self.loaded += [m for m in zygote.preload(self._recent_imports()) if m not in self.loaded]
        zygote.know_startup(startup)
        took = time.perf_counter() - t0
        from florsql.replay import timings

        timings.note("worker_start", took)  # EXPLAIN's estimate of the next cold start
        self.last = time.monotonic()  # idle from now: the imports were work
        if self._ours():
            self._write_state(ready=True)
        now = time.strftime("%H:%M:%S")
        print(f"{now} ready in {took:.2f} s: {', '.join(self.loaded)}", flush=True)
        while True:
            timeout = 1.0
            for key, _ in self.selector.select(timeout):
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_r, 512):
                            pass
                elif key.data == "done":
                    self._finished()
                else:
                    self._readable(key.data)
            self._reap()
            self._start_host()
            if self._should_exit():
                break
        self._release()

    def _start_host(self) -> None:
        """Once, when the first tasks are done and nothing came for :data:`HOST_DELAY_S` (so its
        imports never slow a cold query, nor one sent right after it): the query host, whose
        standard input is a pipe this process holds (it exits when this process does)."""
        if self.host_tried or self.owner or not self.tasks_run or self.stopping:
            return
        if time.monotonic() - self.last < HOST_DELAY_S:
            return
        self.host_tried = True
        if os.environ.get("FLORSQL_QUERY_HOST", "1").lower() in ("0", "off", "false", "no"):
            self.host_state = "off (FLORSQL_QUERY_HOST)"
            return
        try:
            self.host = subprocess.Popen(
                [sys.executable, "-c", _HOST_LAUNCH, str(self.store)],
                stdin=subprocess.PIPE,
                cwd=str(self.store),
            )
            self.host_state = "starting"
        except OSError as e:
            self.host_state = f"failed to start: {e}"

    def _recent_imports(self) -> list[str]:
        try:
            from florsql.replay.plan_executor import recent_scripts
            from florsql.replay.tasks import heavy_imports

            repo = Path(self.root)
            modules: list[str] = []
            for script in recent_scripts(repo):
                modules += heavy_imports(script.read_text(errors="replace"), repo)
            return list(dict.fromkeys(modules))
        except Exception:  # only a colder first task
            return []

    def _should_exit(self) -> bool:
        if self.owner:
            return False
        if self.stopping:
            return True
        if self.inode is not None and not self._ours():
            return True  # the repository (or its store) is gone, or another took over
        return time.monotonic() - self.last > self.idle

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid != os.getuid():
                sock.close()
                continue
            sock.setblocking(False)
            client = _Client(sock)
            self.clients[sock.fileno()] = client
            self.selector.register(sock, selectors.EVENT_READ, client)

    def _readable(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(client)
            return
        client.buffer += chunk
        while b"\n" in client.buffer:
            line, client.buffer = client.buffer.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                self._reply(client, {"error": "not a JSON line"})
                continue
            self._handle(client, msg)

    def _drop(self, client: _Client) -> None:
        """A closed connection: its running tasks are killed (their query is gone)."""
        for pid in client.tasks:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client.sock)
        self.clients.pop(client.sock.fileno(), None)
        client.sock.close()

    def _reply(self, client: _Client, msg: dict[str, Any]) -> None:
        data = json.dumps(msg).encode() + b"\n"
        try:
            client.sock.setblocking(True)
            client.sock.sendall(data)
            client.sock.setblocking(False)
        except OSError:
            pass  # the client is gone; its close is seen on the next read

    def _handle(self, client: _Client, msg: dict[str, Any]) -> None:
        from florsql.replay import zygote

        if "hello" in msg:
            if not msg.get("quiet"):
                self.last = time.monotonic()  # a client about to send work
            self._reply(
                client,
                {
                    "pid": os.getpid(),
                    "identity": identity(),
                    "loaded": self.loaded,
                    "repository": self.root,
                },
            )
        elif "preload" in msg:
            self.last = time.monotonic()
            ready = zygote.preload(list(msg["preload"]))
            self.loaded = list(dict.fromkeys([*self.loaded, *ready]))
            self._reply(client, {"ready": ready})
        elif "status" in msg:
            self._reply(client, self._status())
        elif "stop" in msg:
            self.stopping = True
            self._release()  # first: a client that reads the answer may start a new one
            self._reply(client, {"stopping": os.getpid(), "running": len(self.owner)})
        elif "cancel" in msg:
            for pid in client.tasks:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            self._reply(client, {"cancelled": list(client.tasks)})
        elif "id" in msg:
            self._fork(client, msg)
        else:
            self._reply(client, {"error": f"unknown request {sorted(msg)}"})

    def _status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "repository": self.root,
            "started": self.started,
            "uptime": time.time() - self.started,
            "idle_timeout": self.idle,
            "idle_for": time.monotonic() - self.last,
            "loaded": self.loaded,
            "tasks_run": self.tasks_run,
            "running": len(self.owner),
            "clients": len(self.clients),
            "stopping": self.stopping,
            "query_host": self._host_pid(),
            "query_host_state": self.host_state if self._host_pid() is None else "running",
            **identity(),
        }

    def _host_pid(self) -> int | None:
        if self.host is None or self.host.poll() is not None:
            if self.host is not None:
                self.host_state = f"exited ({self.host.returncode})"
            return None
        return self.host.pid

    def _fork(self, client: _Client, task: dict[str, Any]) -> None:
        from florsql.replay import zygote

        cwd = os.path.realpath(str(task.get("cwd", "")))
        if self.stopping or not (cwd == self.root or cwd.startswith(self.root + os.sep)):
            why = "it is stopping" if self.stopping else f"it serves only {self.root}"
            self._reply(client, {"id": task["id"], "refused": f"the replay service refused: {why}"})
            return
        received = time.time()
        pid = os.fork()
        if pid == 0:
            try:
                os.setpgid(0, 0)  # its own group: killed with its DataLoader workers, if any
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                self.selector.close()
                for fd in (self.wake_r, self.wake_w, self.lock_fd, self.done_r):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                if self.host is not None and self.host.stdin is not None:
                    with contextlib.suppress(OSError):  # the host's end-of-life pipe
                        os.close(self.host.stdin.fileno())
                with contextlib.suppress(OSError):
                    self.listener.close()
                for other in self.clients.values():
                    with contextlib.suppress(OSError):
                        other.sock.close()
                environ = task.get("environ")
                if isinstance(environ, dict):
                    os.environ.clear()
                    os.environ.update(environ)
                os.environ[zygote.DONE_FD] = str(self.done_w)
            finally:
                zygote._child(task, received)  # never returns
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.setpgid(pid, pid)  # also here: a kill right after the fork finds the group
        print(f"task {task['id']}: pid {pid}", flush=True)
        self.last = time.monotonic()
        client.tasks[pid] = str(task["id"])
        self.owner[pid] = client
        self.tasks_run += 1
        self._reply(client, {"started": task["id"], "pid": pid})

    def _finished(self) -> None:
        """Tasks that wrote their done.json and are exiting (their pids on the done pipe): their
        clients hear of them now, with exit status 0 (a task writes its pid only right before
        ``os._exit(0)``); the exit itself is reaped later, and not reported again."""
        data = b""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while chunk := os.read(self.done_r, 4096):
                data += chunk
        for token in data.split():
            pid = int(token) if token.isdigit() else -1
            client = self.owner.get(pid)
            if client is None:
                continue
            task_id = client.tasks.pop(pid, None)
            if task_id is not None and client.sock.fileno() in self.clients:
                self._reply(client, {"id": task_id, "returncode": 0})

    def _reap(self) -> None:
        while self.owner:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            client = self.owner.pop(pid, None)
            self.last = time.monotonic()
            if client is None:
                continue
            task_id = client.tasks.pop(pid, None)
            if task_id is not None and client.sock.fileno() in self.clients:
                code = os.waitstatus_to_exitcode(status)
                self._reply(client, {"id": task_id, "returncode": code})


def main(store: Path | str) -> None:
    """Become the repository's service (see the module's doc): fork, so the caller's
    ``subprocess`` child exits at once, then listen and say so on stdout."""
    store = Path(store).resolve()
    if os.fork() != 0:
        os._exit(0)
    os.setsid()  # no terminal's Ctrl-C, no parent's process group
    out = os.fdopen(os.dup(1), "w")
    os.chdir(store)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # the log file
    lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = json.loads(Path(STATE).read_text())["pid"]
        with contextlib.suppress(OSError):
            out.write(json.dumps({"running": pid}) + "\n")
            out.close()
        return
    service = Service(store, lock_fd)
    try:
        service.bind()
    except OSError as e:
        with contextlib.suppress(OSError):
            out.write(json.dumps({"error": f"cannot listen on {store / SOCKET}: {e}"}) + "\n")
            out.close()
        return
    with contextlib.suppress(OSError):  # the starter may be gone (it exited meanwhile)
        out.write(json.dumps({"listening": os.getpid()}) + "\n")
        out.close()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: listening", flush=True)
    try:
        service.serve()
    finally:
        service._kill_all()
        service._release()
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: exit", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
