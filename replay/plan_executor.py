"""The engine's replay hook: a :class:`ReplayPlan` in, replayed values in the store out.

``florsql.engine`` calls ``run(plan, repo=...)`` once per query, then refreshes its index. This
adapter turns each planned run into a :class:`RunRequest` (its recorded argv and working
folder, needed outer iterations, how many outer iterations it recorded),
runs them through :func:`run_replay`, and checks replayed values of recorded names against the
records (nondeterminism).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from florsql.errors import ReplayError
from florsql.fold import fold
from florsql.plan.replay_plan import ReplayPlan, RunReplay
from florsql.replay.executors import Executor, LocalExecutor
from florsql.replay.runner import Patcher, Progress, ReplayReport, default_patcher, run_replay
from florsql.replay.tasks import RunRequest, TaskResult
from florsql.store import layout
from florsql.store.replays import describe_failure
from florsql.store.segments import list_segments, read_segments

if TYPE_CHECKING:
    import pyarrow as pa


class Outcome:
    """What the engine's hook expects back (duck-typed against ``ReplayOutcome``).

    ``failures`` holds each failed task's full reason (run, version, iteration, exception, line,
    traceback tail); ``failed_ids`` the same tasks as ``<replay_id>/<task_id>``.
    """

    def __init__(self, report: ReplayReport, specs: dict[str, RunReplay]) -> None:
        self.report = report
        self.tasks = len(report.results)
        failed = report.failures
        self.failures = tuple(_reason(r, specs.get(r.task_id)) for r in failed)
        self.failed_ids = tuple(f"{report.replay_id}/{r.task_id}" for r in failed)
        self.nondeterministic = tuple(report.nondeterministic)
        self.rejected = tuple(report.rejected)
        self.unverified = tuple(dict.fromkeys(report.unverified))
        self.not_reached = tuple(dict.fromkeys(report.not_reached))
        self.drew = dict(sorted(report.drew.items()))
        self.from_start = tuple(dict.fromkeys(report.from_start))
        self.data_changed = tuple(
            f"run {run_id}: {', '.join(files)}"
            for run_id, files in sorted(report.data_changed.items())
        )


def _reason(result: TaskResult, run: RunReplay | None) -> str:
    return describe_failure(
        run_id=run.run_id if run else result.task_id,
        vid=run.vid if run else "?",
        loop=next((c.loop for c in run.chunks if c.loop), None) if run else None,
        iteration=result.iteration,
        error=result.error,
        traceback=result.traceback,
    )


class PlanExecutor:
    """Runs replay plans on an :class:`Executor` (local processes by default).

    Attributes:
        progress: called with :class:`Progress` as tasks finish (front ends draw a bar).
        fail: raise :class:`ReplayError` when a task fails (the query fails, every finished
            task's values are kept); False, the default, leaves the failed task's values NULL
            and reports it in the outcome (the engine warns with the full reason).
        last: the report of the last replay (tasks, seconds, estimate).
    """

    def __init__(
        self,
        executor: Executor | None = None,
        *,
        patcher: Patcher | None = None,
        progress: Callable[[Progress], None] | None = None,
        fail: bool = False,
    ) -> None:
        self.executor = executor or LocalExecutor()
        self.patcher = patcher
        self.progress = progress
        self.fail = fail
        self.last: ReplayReport | None = None

    def prewarm(self, repo: Path) -> None:
        """Warm the workers up for this repository's scripts (those of its recent runs)."""
        prewarm = getattr(self.executor, "prewarm", None)
        if callable(prewarm):
            prewarm(recent_scripts(Path(repo)), Path(repo))

    def note_repository(self, repo: Path) -> None:
        """The repository the next plans are for: :meth:`capacity` then sees its replay
        service running even where another process started it and this executor ran nothing
        yet (a one-shot ``florsql explain``)."""
        note = getattr(self.executor, "note_repository", None)
        if callable(note):
            note(Path(repo))

    def capacity(self) -> dict[str, object]:
        """What the plan's wall-time estimate needs of the executor: ``workers`` (tasks at
        once, at most), ``forks`` (tasks fork from a warm worker), ``warm`` (it already
        runs, so a replay pays no interpreter start) and ``start_s`` (a local warm worker's
        start measured on this machine, :mod:`florsql.replay.timings`; None: not known)."""
        ex = self.executor
        forks = bool(getattr(ex, "warm", False))

        return {
            "workers": getattr(ex, "workers", None),
            "forks": forks,
            "warm": bool(getattr(ex, "running", False)),
            # how long a warm worker took to start on this machine lately, or, for tasks that
            # each start an interpreter, how long such a task took to reach its loop (None:
            # not known)
            "start_s": _start_s(ex, forks),
        }

    def interrupt(self) -> None:
        """Stop the running replay's tasks now (from another thread), if the executor can."""
        interrupt = getattr(self.executor, "interrupt", None)
        if callable(interrupt):
            interrupt()

    def close(self) -> None:
        """Stop the executor's warm worker, if it has one."""
        close = getattr(self.executor, "close", None)
        if callable(close):
            close()

    def run(self, plan: ReplayPlan, *, repo: Path) -> Outcome:
        repo = Path(repo)
        prints = dict(plan.fingerprints)
        requests = [request_for(repo, run, prints, dict(plan.sources)) for run in plan.runs()]
        report = run_replay(
            repo,
            requests,
            patcher=self.patcher or default_patcher(repo),
            executor=self.executor,
            progress=self.progress,
            fail=self.fail,
        )
        self.last = report
        if isinstance(self.executor, LocalExecutor):
            note_timings(repo, report)
        if report.unplaced and not report.results:
            raise ReplayError(
                "no statement could be placed into the old versions:\n" + "\n".join(report.unplaced)
            )
        by_task = {
            r.task_id: run
            for r in report.results
            for run in plan.runs()
            if r.task_id.startswith(f"{run.run_id}-")
        }
        return Outcome(report, by_task)


def _start_s(executor: Executor, forks: bool) -> float | None:
    """The start EXPLAIN counts for a local executor: its warm worker's (once per replay), or a
    fresh interpreter's task's (per task; the warm worker's until one was measured)."""
    if not isinstance(executor, LocalExecutor):
        return None
    from florsql.replay import timings

    if not forks:
        return timings.recent("cold_start") or timings.recent("worker_start")
    return timings.recent("worker_start")


def note_timings(repo: Path, report: ReplayReport) -> None:
    """Write down for this machine (:mod:`florsql.replay.timings`) the median ratio of the
    time this replay's finished forked tasks took (their ``done.json`` timings) to their
    estimates: EXPLAIN scales a repository's first estimates by it, before the repository has
    tasks of its own to calibrate from (:func:`florsql.plan.tasks.calibration` takes the same
    ratio); and, for tasks that each started a fresh interpreter, the median of their start-up
    (the interpreter, the worker's set-up, the script's imports and module-level code): the
    per-task start EXPLAIN counts for such an executor (``cold_start``). A fresh interpreter's
    task counted in the ratio (3.3 s against a 0.1 s estimate) pushed the factor to its bound,
    and the next replays' estimates to three times their time."""
    import json
    import statistics

    from florsql.plan.tasks import CALIBRATION_MIN_ESTIMATE_S
    from florsql.replay import timings
    from florsql.store.replays import DONE, replays_dir

    folder = replays_dir(repo) / report.replay_id
    ratios = []
    starts = []
    for result in report.results:
        if not result.ok:
            continue
        try:
            done = json.loads((folder / result.task_id / DONE).read_text())
        except (OSError, ValueError):
            continue
        phases = done.get("timings") or {}
        if phases.get("forked") is False:
            start = sum(phases.get(k, 0.0) for k in ("start", "setup", "module"))
            if isinstance(start, (int, float)) and start > 0:
                starts.append(float(start))
            continue
        estimate = done.get("estimate")
        took = phases.get("total")
        if not (isinstance(estimate, (int, float)) and isinstance(took, (int, float))):
            continue
        if estimate >= CALIBRATION_MIN_ESTIMATE_S and took > 0:
            ratios.append(took / estimate)
    if ratios:
        timings.note("task_factor", statistics.median(ratios))
    if starts:
        timings.note("cold_start", statistics.median(starts))


def request_for(
    repo: Path,
    run: RunReplay,
    fingerprints: dict[str, str] | None = None,
    sources: dict[str, str] | None = None,
) -> RunRequest:
    """The scheduler's request for one planned run (``fingerprints``: the plan's, per name in
    lower case; ``sources``: the digests of the texts they were computed from)."""
    doc = layout.read_json(layout.run_dir(repo, run.run_id) / layout.RUN_JSON)
    loop = next((c.loop for c in run.chunks if c.loop), None)
    kinds = {c.kind for c in run.chunks}
    iterations: list[int] | None = sorted({n.iteration for n in run.needs})
    if "all" in kinds:
        iterations = None
    table = _segments(repo, run.run_id)  # read once for both
    total = outer_iterations(repo, run.run_id, loop, table=table) if loop else None
    n = max(1, len(iterations or []) or (total or 1))
    recorded = recorded_names(repo, run.run_id, table=table)
    names = sorted(set(run.names) | set(run.top_level))
    prints = fingerprints or {}
    return RunRequest(
        run_id=run.run_id,
        vid=run.vid,
        filename=run.filename,
        names=names,
        iterations=iterations,
        inner={},  # a replayed outer iteration stores every inner iteration (coverage grain)
        cwd=doc.get("cwd") or ".",
        argv=list(doc.get("argv") or [run.filename]),
        module=doc.get("module") if isinstance(doc.get("module"), str) else None,
        loop=loop,
        total=total,
        iteration_seconds=run.seconds / n,
        compare=sorted(recorded - set(run.names)),
        chunks=run.chunks,
        fingerprints={fold(n): prints[fold(n)] for n in names if fold(n) in prints},
        sources=dict(sources or {}),
        companions=[c for c in run.companions if c not in names],
    )


def _segments(repo: Path, run_id: str) -> pa.Table:
    return read_segments(list_segments(layout.run_dir(repo, run_id) / layout.SEGMENTS))


def outer_iterations(
    repo: Path, run_id: str, loop: str, *, table: pa.Table | None = None
) -> int | None:
    """How many iterations of its top-level loop ``loop`` a run recorded (``table``: its
    segments, when read already)."""
    import pyarrow.compute as pc

    from florsql.store.rows import int64_array, strings_array

    table = _segments(repo, run_id) if table is None else table
    top = pc.and_(
        pc.is_in(table["kind"], value_set=strings_array(["loop"])),
        pc.and_(
            pc.is_in(table["parent"], value_set=int64_array([0])),
            pc.is_in(table["name"], value_set=strings_array([loop])),
        ),
    )
    its = table.filter(top)["iteration"]
    return int(pc.max(its).as_py()) + 1 if len(its) else None


def recorded_names(repo: Path, run_id: str, *, table: pa.Table | None = None) -> set[str]:
    """The names a run logged (columnar: a run of 50k rows took 0.1 s as Python rows;
    ``table``: its segments, when read already)."""
    import pyarrow.compute as pc

    from florsql.store.rows import strings_array

    table = _segments(repo, run_id) if table is None else table
    logs = table.filter(pc.is_in(table["kind"], value_set=strings_array(["log"])))
    return {str(n) for n in pc.unique(logs["name"]).to_pylist()}


def recent_scripts(repo: Path, runs: int = 20) -> list[Path]:
    """Today's version of the scripts of the ``runs`` most recent runs."""
    root = layout.runs_dir(repo)
    if not root.is_dir():
        return []
    names: set[str] = set()
    for run in sorted(root.iterdir(), reverse=True)[:runs]:
        try:
            names.add(str(layout.read_json(run / layout.RUN_JSON)["filename"]))
        except (OSError, KeyError, ValueError):
            continue
    return [repo / n for n in sorted(names) if (repo / n).is_file()]


def default_executor() -> PlanExecutor:
    """What ``florsql.engine`` uses when replay is on: local processes, one per core."""
    return PlanExecutor()


def executor_for(value: str) -> PlanExecutor:
    """The engine's executor for a ``SET executor`` / ``--executor`` value: ``'local'``,
    ``'ray'`` or ``'ray://HOST:PORT'`` (:func:`florsql.replay.remote.parse_executor`)."""
    from florsql.replay.remote import RayExecutor, parse_executor

    kind, address = parse_executor(value)
    if kind == "local":
        return PlanExecutor()
    return PlanExecutor(RayExecutor(address=address))
