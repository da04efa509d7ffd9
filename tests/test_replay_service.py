"""The warm replay service (issue 12, item 1): one per repository, shared by every process that
queries it, replaced when killed or stale, gone when idle or stopped.

Queries run as one-shot ``florsql query`` processes, as users run them; the service's log names
the pid each task was forked as, and ``/proc`` says whose child it was.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from florsql.replay import service
from florsql.store import layout
from tests.helpers import (
    copy_repo,
    make_repo,
    pid_alive,
    run_script,
    script_env,
    service_tasks,
    wait_gone,
    write,
)

SCRIPT = """
import random
import florsql as flor
run = flor.arg("run", 0)
random.seed(run)
state = {"w": float(run)}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(3)):
            state["w"] += random.random()
        flor.log("w", state["w"])
"""
NEW = 'flor.log("w", state["w"])\n        flor.log("w2", state["w"] * 2)'
NEW3 = NEW + '\n        flor.log("w3", state["w"] * 3)'
IGNORE_CACHES = shutil.ignore_patterns("__pycache__")
#: Imports the service module, says so, waits for a line, then connects to the service.
NOTEBOOK = """
import sys
from pathlib import Path
from florsql.replay import service
print("imported", flush=True)
sys.stdin.readline()
try:
    service.connect(Path(sys.argv[1]))
    print("connected")
except service.ServiceUnavailable as e:
    print(f"unavailable: {e}")
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Two recorded runs; today's script logs ``w2`` too."""
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT})
    for run in range(2):
        run_script(repo, "train.py", "--run", str(run), FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", SCRIPT.replace('flor.log("w", state["w"])', NEW))
    return repo


def florsql(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``florsql ARGS`` in its own process, in ``repo``."""
    proc = subprocess.run(
        [sys.executable, "-c", "from florsql.cli import main; main()", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=script_env(**env),
        timeout=300,
    )
    assert proc.returncode == 0, f"florsql {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def query(repo: Path, sql: str, **env: str) -> list[dict[str, object]]:
    out = florsql(repo, "query", "--format", "json", sql, **env).stdout
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


def state(repo: Path) -> dict[str, object]:
    doc = json.loads((layout.store_dir(repo) / service.STATE).read_text())
    assert isinstance(doc, dict)
    return doc


def check_values(rows: list[dict[str, object]], name: str, factor: int) -> None:
    assert rows and all(r[name] is not None for r in rows)
    for r in rows:
        assert r[name] == pytest.approx(factor * float(str(r["w"])), abs=0)


def test_two_processes_share_one_service(repo: Path) -> None:
    first = query(repo, "SELECT run, epoch, w, w2 FROM logs ORDER BY run, epoch")
    assert len(first) == 6
    check_values(first, "w2", 2)
    pid = int(str(state(repo)["pid"]))
    assert pid_alive(pid), "the service should outlive the query that started it"
    tasks = service_tasks(repo)
    assert tasks
    # A second process, a new statement: its tasks fork from the same service.
    write(repo / "train.py", SCRIPT.replace('flor.log("w", state["w"])', NEW3))
    second = query(repo, "SELECT run, epoch, w, w3 FROM logs ORDER BY run, epoch")
    check_values(second, "w3", 3)
    assert int(str(state(repo)["pid"])) == pid
    assert len(service_tasks(repo)) > len(tasks), "the second query replayed nothing"
    status = florsql(repo, "replay-service", "status").stdout
    assert f"pid           {pid}" in status
    assert f"tasks         {len(service_tasks(repo))} run, 0 running" in status
    # Every task process was the service's child (it is gone now; its log line says so).
    log = (layout.store_dir(repo) / service.LOG).read_text()
    assert log.count("listening") == 1


def test_task_parent_is_the_service(repo: Path) -> None:
    """While a task runs, its parent is the service (not the query process)."""
    script = SCRIPT.replace(
        'flor.log("w", state["w"])',
        NEW + '\n        flor.log("parent", __import__("os").getppid())',
    )
    write(repo / "train.py", script)
    rows = query(repo, "SELECT run, epoch, parent FROM logs WHERE parent IS NOT NULL")
    pid = int(str(state(repo)["pid"]))
    assert rows and {r["parent"] for r in rows} == {pid}


def test_a_killed_service_is_replaced(repo: Path) -> None:
    query(repo, "SELECT run, epoch, w2 FROM logs WHERE run = 0")
    old = int(str(state(repo)["pid"]))
    os.kill(old, signal.SIGKILL)
    wait_gone(old)
    sock = layout.store_dir(repo) / service.SOCKET
    assert sock.exists(), "a killed service leaves its socket behind (stale)"
    rows = query(repo, "SELECT run, epoch, w, w2 FROM logs WHERE run = 1")
    check_values(rows, "w2", 2)
    new = int(str(state(repo)["pid"]))
    assert new != old and pid_alive(new)


def test_a_stale_socket_is_replaced(repo: Path) -> None:
    """A socket file nobody listens on (e.g. left by a crash before a reboot)."""
    store = layout.store_dir(repo)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(store / service.SOCKET))
    stale.close()  # the file stays, connecting to it is refused
    (store / service.STATE).write_text(json.dumps({"pid": 999999999}))
    rows = query(repo, "SELECT run, epoch, w, w2 FROM logs")
    check_values(rows, "w2", 2)
    assert pid_alive(int(str(state(repo)["pid"])))


def listening(repo: Path) -> list[int]:
    """The pid of every service this repository had, from their log, in start order."""
    log = (layout.store_dir(repo) / service.LOG).read_text()
    return [int(x.split(" pid ")[1].split(":")[0]) for x in log.splitlines() if "listening" in x]


def test_idle_exit(repo: Path) -> None:
    query(repo, "SELECT run, epoch, w2 FROM logs WHERE run = 0", FLORSQL_REPLAY_SERVICE_IDLE="1")
    # (The state file may be gone already. With so short a timeout, the service the query
    # started at its beginning may also have timed out before the replay, which started
    # another: every one of them exits.)
    pids = listening(repo)
    assert pids
    for pid in pids:
        wait_gone(pid)  # after a second without work
    store = layout.store_dir(repo)
    assert not (store / service.SOCKET).exists() and not (store / service.STATE).exists()
    assert "no replay service runs" in florsql(repo, "replay-service", "status").stdout


def test_stop(repo: Path) -> None:
    assert "no replay service runs" in florsql(repo, "replay-service", "stop").stdout
    query(repo, "SELECT run, epoch, w2 FROM logs WHERE run = 0")
    pid = int(str(state(repo)["pid"]))
    out = florsql(repo, "replay-service", "stop").stdout
    assert f"stopped the replay service (pid {pid})" in out
    wait_gone(pid)
    rows = query(repo, "SELECT run, epoch, w, w2 FROM logs")  # a new one starts
    check_values(rows, "w2", 2)


def test_the_service_ends_with_its_repository(repo: Path) -> None:
    query(repo, "SELECT run, epoch, w2 FROM logs WHERE run = 0")
    pid = int(str(state(repo)["pid"]))
    (layout.store_dir(repo) / service.SOCKET).unlink()  # as `rm -rf repo` does
    wait_gone(pid)


def test_concurrent_starts_make_one_service(repo: Path) -> None:
    store = layout.store_dir(repo)
    code = (
        "import sys; from pathlib import Path; from florsql.replay import service; "
        "c = service.connect(Path(sys.argv[1])); print(c.info['pid'])"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(store)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    pids = {int(p.communicate(timeout=120)[0]) for p in procs}
    assert len(pids) == 1


def test_refuses_tasks_outside_its_repository(repo: Path, tmp_path: Path) -> None:
    conn = service.connect(layout.store_dir(repo))
    assert conn is not None
    try:
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        conn.send({"id": "x", "script": "x.py", "cwd": str(outside), "argv": [], "env": {}})
        reply = conn.receive()
        assert reply["id"] == "x" and "serves only" in str(reply["refused"])
    finally:
        conn.close()


def test_off_keeps_replays_in_process(repo: Path) -> None:
    rows = query(repo, "SELECT run, epoch, w, w2 FROM logs", FLORSQL_REPLAY_SERVICE="0")
    check_values(rows, "w2", 2)
    assert not (layout.store_dir(repo) / service.STATE).exists()


def test_a_deep_repository_path(repo: Path, tmp_path: Path) -> None:
    """A socket path may have 107 bytes; repositories lie deeper than that."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "r"
    copy_repo(repo, deep)
    assert len(str(layout.store_dir(deep) / service.SOCKET)) > 120
    rows = query(deep, "SELECT run, epoch, w, w2 FROM logs")
    check_values(rows, "w2", 2)
    assert pid_alive(int(str(state(deep)["pid"])))


def test_an_upgrade_in_place_replaces_the_service(repo: Path, tmp_path: Path) -> None:
    """florsql upgraded (same path, new code: a new task spec field) while its service runs:
    the next query replaces the service rather than hand it tasks it cannot read."""
    source = Path(service.__file__).parent.parent  # the florsql package
    site = tmp_path / "site"
    shutil.copytree(source, site / "florsql", symlinks=True, ignore=IGNORE_CACHES)
    for link in (site / "florsql").iterdir():  # a package folder kept beside it (a symlink)
        if link.is_symlink():
            target = (source / os.readlink(link)).resolve()
            shutil.copytree(
                target,
                site / os.readlink(link).split("/")[-1],
                dirs_exist_ok=True,
                ignore=IGNORE_CACHES,
            )
    env = {"PYTHONPATH": str(site)}
    first = query(repo, "SELECT run, epoch, w, w2 FROM logs WHERE run = 0", **env)
    check_values(first, "w2", 2)
    old = int(str(state(repo)["pid"]))
    assert str(state(repo)["florsql"]) == str(site / "florsql")
    # A long-lived process (a notebook) that imported florsql before the upgrade.
    notebook = subprocess.Popen(
        [sys.executable, "-c", NOTEBOOK, str(layout.store_dir(repo))],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=script_env(**env),
    )
    assert notebook.stdin is not None and notebook.stdout is not None
    assert notebook.stdout.readline().strip() == "imported"
    # The upgrade: the task spec gains a field (the old service's tasks could not read it).
    # It keeps the file's size and modification time (an installer may: a wheel's files carry
    # their archive's times), which the service's identity once rested on.
    spec = site / "florsql" / "store" / "replays.py"
    text = spec.read_text()
    before = spec.stat()
    anchor = "    fingerprints: dict[str, str] = field(default_factory=dict)\n"
    extra = "    upgraded: bool = True\n"
    first = text.split("\n", 1)[0]  # the docstring's first line, shortened by as much
    assert anchor in text and first.startswith('"""') and len(first) > len(extra) + 3
    spec.write_text(text.replace(anchor, anchor + extra).replace(first, first[: -len(extra)], 1))
    os.utime(spec, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = spec.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    rows = query(repo, "SELECT run, epoch, w, w2 FROM logs WHERE run = 1", **env)
    check_values(rows, "w2", 2)
    new = int(str(state(repo)["pid"]))
    assert new != old and pid_alive(new)
    wait_gone(old)  # told to stop, it had nothing left to run
    # The notebook's florsql is the old code now: it does without the service, never stops it.
    out, _ = notebook.communicate("go\n", timeout=120)
    assert out.strip() == "unavailable: florsql was upgraded since this process imported it"
    assert int(str(state(repo)["pid"])) == new and pid_alive(new)


#: A task that says it is done on the service's done pipe (as a finished replay task does just
#: before it exits), then stays alive until the test lets it go.
HOLD = """
import os, sys, time
from pathlib import Path
Path(sys.argv[1]).write_text(str(os.getpid()))
os.write(int(os.environ["FLORSQL_TASK_DONE_FD"]), f"{os.getpid()}\\n".encode())
release = Path(sys.argv[2])
while not release.exists():
    time.sleep(0.01)
"""


def test_a_task_that_says_it_is_done_is_reported_before_it_exits(
    repo: Path, tmp_path: Path
) -> None:
    """The client hears of a finished task without waiting for its exit, and only once: the
    later exit of the same process is not reported again."""
    write(repo / "hold.py", HOLD)
    alive, release = tmp_path / "alive", tmp_path / "release"
    conn = service.connect(layout.store_dir(repo))
    assert conn is not None
    try:
        task = {
            "id": "t1",
            "script": str(repo / "hold.py"),
            "cwd": str(repo),
            "argv": [str(alive), str(release)],
            "env": {},
            "log": str(tmp_path / "t1.log"),
        }
        conn.send(task)
        assert conn.receive()["started"] == "t1"
        assert conn.receive() == {"id": "t1", "returncode": 0}
        pid = int(alive.read_text()) if alive.exists() else None
        # reported while the task still runs (it waits for the release file)
        assert pid is not None and pid_alive(pid)
        release.write_text("go")
        wait_gone(pid)
        conn.send({"status": True})
        assert "pid" in conn.receive()  # the status answer: no second report of t1 came first
    finally:
        conn.close()


def test_the_done_pipe_has_one_name_on_both_sides() -> None:
    from florsql.record import replay_mode
    from florsql.replay import zygote

    assert replay_mode.DONE_FD == zygote.DONE_FD


def test_the_source_digest_sees_a_rewrite_that_keeps_size_and_time(tmp_path: Path) -> None:
    """Same size, same modification time, other code: another digest."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    mod = pkg / "mod.py"
    mod.write_text("A = 1\n")
    before = mod.stat()
    digest = service._source_digest(str(pkg))
    assert service._source_digest(str(pkg)) == digest  # stable while nothing changes
    # The kernel stamps files from a coarse clock (a tick of a few ms): wait until a write is
    # stamped later than the first one (an event: a probe file's change time).
    probe = tmp_path / "probe"
    probe.write_text("")
    while probe.stat().st_ctime_ns <= before.st_ctime_ns:
        probe.write_text("")
    mod.write_text("A = 2\n")
    os.utime(mod, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (mod.stat().st_size, mod.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert service._source_digest(str(pkg)) != digest


def test_explain_in_a_new_process_counts_the_running_service_as_warm(repo: Path) -> None:
    """A one-shot ``florsql explain`` (its executor ran nothing yet) sees the service another
    process started: its estimate adds no worker start (it added 2.2 s, for a replay that
    then took a fraction of a second). With the service stopped, the start is counted."""
    query(repo, "SELECT run, epoch, w2 FROM logs")
    pid = int(str(state(repo)["pid"]))
    write(repo / "train.py", SCRIPT.replace('flor.log("w", state["w"])', NEW3))
    out = florsql(repo, "explain", "SELECT run, epoch, w3 FROM logs").stdout
    assert "warm worker running" in out, out
    florsql(repo, "replay-service", "stop")
    wait_gone(pid)
    out = florsql(repo, "explain", "SELECT run, epoch, w3 FROM logs").stdout
    assert "warm worker start included" in out, out


def test_estimates_follow_what_the_repositorys_tasks_took(repo: Path) -> None:
    """Each task keeps the planner's estimate beside the time it took (done.json, the index);
    once 3 tasks have both, a plan's task estimates are scaled by the median ratio of the
    two, and EXPLAIN says so. With fewer, nothing is scaled."""
    from florsql.engine.session import Engine

    def ratios() -> list[float]:
        out = []
        for done in layout.store_dir(repo).glob("replays/*/*/done.json"):
            doc = json.loads(done.read_text())
            assert doc["estimate"] > 0, "a task's done.json keeps the planner's estimate"
            out.append(doc["timings"]["total"] / doc["estimate"])
        return sorted(out)

    with Engine(repo, replay="auto") as eng:
        eng.execute("SELECT run, epoch, w2 FROM logs")  # 2 runs: 2 tasks, too few
        assert len(ratios()) == 2
        write(repo / "train.py", SCRIPT.replace('flor.log("w", state["w"])', NEW3))
        cost = eng.plan("SELECT run, epoch, w3 FROM logs").replay.cost
        assert (cost.scale, cost.scaled_from) == (1.0, 0)
        eng.execute("SELECT run, epoch, w3 FROM logs")
        seen = ratios()
        assert len(seen) == 4
        four = NEW3 + '\n        flor.log("w4", state["w"] * 4)'
        write(repo / "train.py", SCRIPT.replace('flor.log("w", state["w"])', four))
        plan = eng.plan("SELECT run, epoch, w4 FROM logs").replay
        median = (seen[1] + seen[2]) / 2
        assert plan.cost.scaled_from == 4
        assert plan.cost.scale == pytest.approx(min(3.0, max(1 / 3, median)), abs=1e-3)
        text = "\n".join(
            r["plan"]
            for r in eng.execute("EXPLAIN SELECT run, epoch, w4 FROM logs").table.to_pylist()
        )
        assert f"task estimates x{plan.cost.scale:g}: the median of what the last 4" in text
