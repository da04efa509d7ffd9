"""Ctrl-C in the shell while a query replays (``.replay auto``): the replay's workers stop at
once (no task finishes afterwards) and, while it ran, the progress line's clock went on. The
Flight server's query timeout stops a replay the same way."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from florsql.engine import Engine
from florsql.repl.backend import EngineReplService
from florsql.repl.background import Bridge
from florsql.repl.dotcommands import Settings
from florsql.repl.shell import Shell
from florsql.replay import LocalExecutor, PlanExecutor
from florsql.store.replays import replays_dir
from tests.helpers import make_repo, run_script, service_task_pids, write

#: Three recorded runs of this; each replay task takes at least 2.4 s (6 epochs, 0.4 s each).
SLOW = """
import time
import florsql as flor
run = flor.arg("run", 0)
state = {"w": float(run)}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(6)):
        for step in flor.loop("step", range(2)):
            state["w"] += 0.5
        time.sleep(0.4)
        flor.log("w", state["w"])
"""
RUNS = 3
ELAPSED = re.compile(r" (\d+)/(\d+) tasks, .* ([\d.]+)s elapsed")


def _done(repo: Path) -> list[Path]:
    return sorted(replays_dir(repo).glob("*/*/done.json"))


def _wait_gone(pgid: int, timeout: float = 20.0) -> None:
    """Until no live process of group ``pgid`` remains (an event, polled; a hang guard)."""
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        assert time.monotonic() < deadline, f"processes of group {pgid} still run"
        time.sleep(0.01)


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of group ``pgid`` remains."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


class CtrlCAfterFirstTask:
    """The terminal: records what the shell says; "presses Ctrl-C" (raises KeyboardInterrupt
    where the shell's main thread draws the progress line) once a task has finished."""

    def __init__(self, executor: LocalExecutor, repo: Path) -> None:
        self.executor = executor
        self.repo = repo
        self.done_at_ctrl_c: int | None = None
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.worker_group: int | None = None

    def out(self, text: str) -> None:
        self.lines.append(text)

    def warn(self, text: str) -> None:
        self.lines.append(text)

    def error(self, text: str) -> None:
        self.errors.append(text)

    def status(self, line: str | None) -> None:
        if line is None:
            return
        self.lines.append(line)
        found = ELAPSED.search(line)
        if found and int(found.group(1)) >= 1 and self.done_at_ctrl_c is None:
            proc = self.executor._zygote.proc
            if proc is not None:  # a private warm worker leads its tasks' process group
                self.worker_group = proc.pid
            self.done_at_ctrl_c = len(_done(self.repo))
            raise KeyboardInterrupt

    def ask(self, question: str) -> bool:
        return True


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three recorded runs of SLOW, and today's script logging ``w2`` too (each test replays
    a copy)."""
    repo = make_repo(tmp_path_factory.mktemp("slow") / "r", {"train.py": SLOW})
    for run in range(RUNS):
        run_script(repo, "train.py", "--run", str(run), FLORSQL_CHECKPOINT_PERIOD="1")
    write(
        repo / "train.py",
        SLOW.replace(
            'flor.log("w", state["w"])',
            'flor.log("w", state["w"])\n        flor.log("w2", state["w"] * 2)',
        ),
    )
    return repo


def test_ctrl_c_during_a_replay_stops_its_workers(tmp_path: Path, recorded: Path) -> None:
    repo = tmp_path / "r"
    shutil.copytree(recorded, repo)
    local = LocalExecutor(1)
    engine = Engine(repo, replay="auto", executor=PlanExecutor(local))
    echo = CtrlCAfterFirstTask(local, repo)
    shell = Shell(EngineReplService(engine), echo, Settings(replay="auto"))
    try:
        assert shell.handle("SELECT run, epoch, w2 FROM logs;")
        assert echo.errors == ["cancelled"] and echo.done_at_ctrl_c is not None
        # Every process of the replay is gone: nothing can finish a task from now on. (They
        # were sent SIGKILL; the kernel may take a moment to end a process that has it.)
        if echo.worker_group is not None:
            _wait_gone(echo.worker_group)
        for pid in service_task_pids(repo):  # forked by the repository's replay service
            _wait_gone(pid)
        # The task running at Ctrl-C (2.4 s long, started when the first ended) never ended.
        finished = len(_done(repo))
        assert finished == echo.done_at_ctrl_c < RUNS
        # The session goes on, and the cancelled replay left nothing half-visible.
        assert shell.handle("SELECT count(*) AS n FROM runs;")
        assert len(_done(repo)) == finished
    finally:
        engine.close()
    # While the first task ran, the line's clock went on (it only reports when a task ends).
    first_task = [float(m.group(3)) for m in map(ELAPSED.search, echo.lines) if m and m[1] == "0"]
    assert first_task and max(first_task) > 0.0


def test_the_progress_clock_ticks_between_reports() -> None:
    from florsql.replay.runner import Progress

    now = [100.0]
    bridge = Bridge(clock=lambda: now[0])
    bridge.progress(Progress(0, 4, 0, 24, 0.0, 20.0))
    first = bridge.new_progress()
    assert first is not None and (first.elapsed, first.eta) == (0.0, 20.0)
    assert bridge.new_progress() is None  # nothing changed
    now[0] += 6.0
    later = bridge.new_progress()
    assert later is not None and (later.elapsed, later.eta) == (6.0, 14.0)
    assert later.tasks_done == 0 and later.tasks_total == 4
    now[0] += 30.0
    overdue = bridge.new_progress()  # past the estimate with tasks left: unknown, not 0.0s
    assert overdue is not None and overdue.eta is None


def test_a_new_query_forgets_the_last_one_s_progress() -> None:
    """Sweep AN (session 58): after a cancelled replay the next replay's first frames showed
    the cancelled one's counters ("1/1 tasks, 30/30 iterations"), and a late report of the
    cancelled replay's thread could still land."""
    from florsql.replay.runner import Progress

    bridge = Bridge(clock=lambda: 100.0)
    old = bridge.start()
    old(Progress(1, 1, 30, 30, 4.5, 0.0))
    assert bridge.new_progress() is not None
    new = bridge.start()
    assert bridge.new_progress() is None  # nothing of the last query
    old(Progress(1, 1, 30, 30, 4.5, 0.0))  # a late report of the cancelled replay
    assert bridge.new_progress() is None
    new(Progress(0, 2, 0, 60, 0.0, 9.0))
    shown = bridge.new_progress()
    assert shown is not None and (shown.tasks_done, shown.iterations_total) == (0, 60)


def test_the_flight_servers_timeout_stops_a_replay_and_its_workers(
    tmp_path: Path, recorded: Path
) -> None:
    import adbc_driver_flightsql.dbapi as adbc

    from florsql.flight.backend import EngineService
    from florsql.flight.limits import Limits
    from tests.test_flight_clients import serving

    repo = tmp_path / "r"
    shutil.copytree(recorded, repo)
    local = LocalExecutor(1)
    service = EngineService(Engine(repo, replay="off", executor=PlanExecutor(local)))
    try:
        # Three tasks of 2.4 s each, one at a time: the replay runs past a 3 s limit.
        with serving(service, allow_replay=True, limits=Limits(query_timeout=3.0)) as server:
            uri = f"grpc://127.0.0.1:{server.port}"
            with adbc.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
                with pytest.raises(adbc.OperationalError, match="longer than the server's limit"):
                    cur.execute("SELECT run, epoch, w2 FROM logs")
                finished = len(_done(repo))
                assert local._zygote.proc is None  # no private warm worker, or it was killed
                for pid in service_task_pids(repo):  # the tasks the replay service forked
                    _wait_gone(pid)
                cur.execute("SELECT count(*) FROM runs")
                assert cur.fetchall() == [(RUNS,)]
            assert finished < RUNS and len(_done(repo)) == finished
    finally:
        service.close()
