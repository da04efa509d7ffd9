"""Helpers for the replay-exactness tests: recorded torch histories and their oracles.

A training script is written once, as today's version: the lines that end with ``# hindsight``
are the statements the user adds after the runs were recorded. :func:`old_source` drops them
(the committed version the runs record), :func:`patched_source` keeps them without the marker
(the hand-patched old version: the oracle's code). The oracle is a full re-run of the patched
script, recorded by florsql in a separate repository: every value a replay computes must equal
its value there, floats bit for bit (the scripts pin ``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

import florsql
from florsql.dbapi import Connection
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import copy_repo, make_repo, script_env, write

MARK = "# hindsight"


def corpus_params(patterns: Iterable[Any], default: Iterable[str]) -> list[Any]:
    """pytest params for a corpus's patterns (``name``, ``bug``): a pattern with a known ``bug``
    is a strict xfail; one not named in ``default`` is marked ``slow``. The default run
    (``make test``) keeps one pattern per bug a corpus found and a few more; ``make test-all``
    (and CI, after ``make test``) runs every pattern."""
    keep = set(default)
    params, names = [], set()
    for p in patterns:
        names.add(p.name)
        marks = [pytest.mark.xfail(strict=True, reason=p.bug)] if getattr(p, "bug", None) else []
        if p.name not in keep:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(p, id=p.name, marks=marks))
    unknown = keep - names
    assert not unknown, f"default names no pattern: {sorted(unknown)}"
    return params


Row = tuple[Any, ...]


#: ``NEW  # hindsight: OLD``: today's line NEW stands where the recorded runs had OLD (a log
#: statement wrapped around old code: ``acc += flor.log("l", x)  # hindsight: acc += x``).
REPLACED = re.compile(r"\s*# hindsight: (.*)$")


def old_source(text: str) -> str:
    """The script as the recorded runs ran it: without the ``# hindsight`` lines, and with the
    old code of the ``# hindsight: OLD`` lines."""
    out = []
    for line in text.splitlines(True):
        if line.rstrip().endswith(MARK):
            continue
        if m := REPLACED.search(line):
            line = line[: len(line) - len(line.lstrip())] + m.group(1).rstrip() + "\n"
        out.append(line)
    return "".join(out)


def patched_source(text: str) -> str:
    """Today's script: the ``# hindsight`` lines kept, their marker removed."""
    out = []
    for line in text.splitlines(True):
        if line.rstrip().endswith(MARK):
            line = line.rstrip()[: -len(MARK)].rstrip() + "\n"
        elif m := REPLACED.search(line):
            line = line[: m.start()] + "\n"
        out.append(line)
    return "".join(out)


def hindsight_names(text: str) -> list[str]:
    """The names of the ``flor.log`` calls on ``# hindsight`` lines."""
    names = []
    for line in text.splitlines():
        if (line.rstrip().endswith(MARK) or REPLACED.search(line)) and 'flor.log("' in line:
            names.append(line.split('flor.log("', 1)[1].split('"', 1)[0])
    return names


@dataclass
class Recorded:
    """A history (old version recorded, today's version in the working tree) and its oracle."""

    history: Path
    oracle: Path


@dataclass
class Job:
    """One recorded run: ``python script argv...`` in ``repo`` with ``env`` added."""

    repo: Path
    script: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


class Recorder:
    """Records runs in processes forked from one warm interpreter (florsql's replay zygote,
    :mod:`florsql.replay.zygote`): each run is a real process running the script as
    ``__main__`` with florsql's real recording, but pays ``import torch`` once, not per run.
    (Plain ``python train.py`` runs are what tests/test_hindsight.py records.)"""

    def __init__(self, log_dir: Path, parallel: int = 2) -> None:
        env = script_env()
        for name in [k for k in env if k.startswith("FLORSQL_")]:
            del env[name]
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.parallel = parallel
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "florsql.replay.zygote", "torch,numpy"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._read_line()  # {"ready": [...]}

    def _read_line(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the recording zygote exited")
        out: dict[str, Any] = json.loads(line)
        return out

    def run(self, chains: Sequence[Sequence[Job]]) -> None:
        """Run every chain's jobs in order, chains side by side (``parallel`` runs at once);
        raise with the run's output if one fails."""
        with self._lock:
            queues = [list(c) for c in chains if c]
            running: dict[str, tuple[int, Job]] = {}
            failed: list[str] = []
            while any(queues) or running:
                for qi, q in enumerate(queues):
                    busy = any(ci == qi for ci, _ in running.values())
                    if q and not busy and len(running) < self.parallel:
                        job = q.pop(0)
                        running[self._send(job)] = (qi, job)
                done = self._read_line()
                _, job = running.pop(done["id"])
                if done["returncode"] != 0:
                    log = self.log_dir / f"{done['id']}.log"
                    text = log.read_text() if log.exists() else "(no output)"
                    failed.append(f"{job.repo.name} {job.script} {job.argv}:\n{text}")
            if failed:
                raise AssertionError("recording failed:\n" + "\n".join(failed))

    def _send(self, job: Job) -> str:
        task_id = f"run{next(self._ids)}"
        task = {
            "id": task_id,
            "script": job.script,
            "cwd": str(job.repo),
            "argv": list(job.argv),
            "env": job.env,
            "log": str(self.log_dir / f"{task_id}.log"),
        }
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(task) + "\n")
        self._proc.stdin.flush()
        return task_id

    def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self._proc.stdin.close()
        self._proc.wait(timeout=60)


_SHARED: Recorder | None = None


def shared_recorder() -> Recorder:
    """This test process's :class:`Recorder` (one per xdist worker), started on first use and
    closed at exit: for fixtures that need recorded runs, not a test of how a fresh
    interpreter records (those use :func:`tests.helpers.run_script`)."""
    global _SHARED
    if _SHARED is None:
        logs = Path(tempfile.mkdtemp(prefix="florsql-runlogs-"))
        _SHARED = Recorder(logs)
        atexit.register(_close_shared, logs)
    return _SHARED


def _close_shared(logs: Path) -> None:
    if _SHARED is not None:
        with contextlib.suppress(Exception):
            _SHARED.close()
    shutil.rmtree(logs, ignore_errors=True)


#: Variables the record side reads once, when the warm interpreter imports it: a forked run
#: never sees them (record them with :func:`tests.helpers.run_script`).
READ_AT_IMPORT = frozenset(
    {
        "FLORSQL_FLUSH_INTERVAL",
        "FLORSQL_BULK_INNER_ROWS",
        "FLORSQL_ROW_FILES",
        "FLORSQL_EXIT_TIMEOUT",
    }
)


def warm_script(repo: Path, script: str, *args: str, **env: str) -> None:
    """``python script args...`` in ``repo`` with ``env`` added, as :func:`run_script` runs it
    (a failed run raises with its output), forked from the shared warm interpreter."""
    warm_runs([Job(repo, script, tuple(args), dict(env))])


def warm_runs(*chains: Sequence[Job]) -> None:
    """Each chain's runs in order, chains side by side, forked from the shared warm
    interpreter (a failed run raises with its output)."""
    late = sorted({k for chain in chains for job in chain for k in job.env} & READ_AT_IMPORT)
    if late:
        raise ValueError(f"{late} are read at import, before a forked run: use run_script")
    shared_recorder().run(list(chains))


def record_pair(
    recorder: Recorder,
    root: Path,
    text: str,
    runs: Sequence[Sequence[str]],
    *,
    period: int = 1,
    script: str = "train.py",
    extra: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> Recorded:
    """Record the old version of ``text`` in ``root/history`` (checkpoints every ``period``
    outer iterations) and the patched one in ``root/oracle``, each repo's runs in order, then
    write today's version into the history's working tree (no new run). ``extra`` files are
    committed in both repos; ``env`` is added to both recordings' environment (not to the
    queries': a user who trained with a variable set queries without it)."""
    files = dict(extra or {})  # ``# hindsight`` lines in them are today's additions too
    old = {name: old_source(t) for name, t in files.items()}
    patched = {name: patched_source(t) for name, t in files.items()}
    history = make_repo(root / "history", {**old, script: old_source(text)})
    oracle = make_repo(root / "oracle", {**patched, script: patched_source(text)})
    ck = {**(env or {}), "FLORSQL_CHECKPOINT_PERIOD": str(period)}
    recorder.run(
        [
            [Job(history, script, tuple(argv), ck) for argv in runs],
            [Job(oracle, script, tuple(argv), dict(env or {})) for argv in runs],
        ]
    )
    for name, t in patched.items():
        write(history / name, t)
    write(history / script, patched_source(text))
    return Recorded(history, oracle)


def query(repo: Path, sql: str, params: Sequence[Any] = (), *, replay: str = "auto") -> list[Row]:
    """Rows of ``sql`` over ``repo`` through a new DB-API connection, normalized (sorted)."""
    with florsql.connect(repo, replay=replay) as con:
        return fetch(con, sql, params)[0]


def fetch(
    con: Connection, sql: str, params: Sequence[Any] = (), *, ordered: bool = False
) -> tuple[list[Row], list[str]]:
    """Rows of ``sql`` on ``con`` (sorted unless ``ordered``), and the warnings the query raised
    (replay notes: collected for the report, not errors here)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = [tuple(r) for r in con.execute(sql, list(params)).fetchall()]
    return (rows if ordered else normalize(rows)), [
        f"{w.category.__name__}: {w.message}" for w in caught
    ]


def normalize(rows: Iterable[Sequence[Any]]) -> list[Row]:
    """Sorted rows; floats compared exactly (NaN made comparable)."""

    def cell(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return "NaN"
        return v

    return sorted((tuple(cell(v) for v in r) for r in rows), key=repr)


def diff_rows(got: list[Row], want: list[Row], limit: int = 8) -> str:
    """A short description of how two normalized row lists differ."""
    extra = [r for r in got if r not in want]
    missing = [r for r in want if r not in got]
    lines = [f"  {len(got)} rows, oracle {len(want)}"]
    lines += [f"  replay {r!r}" for r in extra[:limit]]
    lines += [f"  oracle {r!r}" for r in missing[:limit]]
    return "\n".join(lines)


def copy_recorded(rec: Recorded, dest: Path) -> Recorded:
    """A copy of both repositories (stores too): a test starts from what was recorded, and
    test processes never share an index."""
    copy_repo(rec.history, dest / "history")
    copy_repo(rec.oracle, dest / "oracle")
    return Recorded(dest / "history", dest / "oracle")


def shared_dir(
    factory: pytest.TempPathFactory, worker_id: str, name: str, build: Callable[[Path], None]
) -> Path:
    """A folder built once per test session, also across pytest-xdist workers: the first
    process to ask builds it under a file lock, the others wait for it and reuse it. Treat it
    as read-only (copy what a test changes)."""
    base = factory.getbasetemp()
    root = base if worker_id == "master" else base.parent  # the session's folder under xdist
    path = root / f"shared-{name}"
    with FileLock(str(path) + ".lock"):
        if not (path / ".built").exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            build(path)
            (path / ".built").touch()
    return path


class KeptWorkers(LocalExecutor):
    """A local replay executor whose warm worker outlives the connections using it (each
    connection closes its executor when it closes): tests share one, so each query does not
    pay a fresh interpreter and ``import torch``. :meth:`shutdown` stops it."""

    def close(self) -> None:
        pass

    def shutdown(self) -> None:
        super().close()


class Mismatches:
    """Compares queries over a history (replaying) with the oracle's answers and collects every
    difference, so one test reports all of them (the failing cases are the bug list), then
    fails once. Each :meth:`session` is one connection per repository for a whole sequence of
    queries, as a user's session."""

    def __init__(self) -> None:
        self.items: list[str] = []

    @contextmanager
    def session(
        self, rec: Recorded, label: str, workers: KeptWorkers | None = None
    ) -> Iterator[Callable[..., list[Row]]]:
        executor = PlanExecutor(workers) if workers is not None else None
        with (
            florsql.connect(rec.history, replay="auto", executor=executor) as history,
            florsql.connect(rec.oracle, replay="off") as oracle,
        ):

            def check(sql: str, params: Sequence[Any] = ()) -> list[Row]:
                want, _ = fetch(oracle, sql, params)
                try:
                    got, notes = fetch(history, sql, params)
                except Exception as e:  # a failed replay is a mismatch too: report it
                    self.items.append(f"[{label}] {sql}\n  raised {type(e).__name__}: {e}")
                    return []
                if got != want:
                    text = f"[{label}] {sql} ({params})\n{diff_rows(got, want)}"
                    text += "".join(f"\n  warned {n}" for n in notes)
                    self.items.append(text)
                return got

            yield check

    def assert_none(self) -> None:
        assert not self.items, "replay differs from the full re-run:\n" + "\n".join(self.items)
