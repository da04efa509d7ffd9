"""From "these runs lack these values" to finished replay tasks.

For each run: the new statements are propagated into its version, the patched script is
analysed for where they sit, iterations already replayed are dropped, the rest is cut into
chunks that start at checkpoints, and the executor runs them in isolated worktrees.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from florsql.errors import ReplayError, concat_messages
from florsql.replay.analysis import analyze
from florsql.replay.executors import Executor, LocalExecutor
from florsql.replay.tasks import RunRequest, Task, TaskResult, split
from florsql.replay.worktree import prepare
from florsql.store import layout
from florsql.store.fingerprints import compare_inputs, recorded_inputs
from florsql.store.replays import ReplaySpec, read_manifest, replays_dir
from florsql.versions import file_at


@dataclass
class Patch:
    """A version's files with the new statements placed, and the names that could not be."""

    files: dict[str, str]
    failed: dict[str, str] = field(default_factory=dict)  # name -> reason


Patcher = Callable[[str, list[str]], Patch]


@dataclass
class Progress:
    """Where a replay stands, for progress bars."""

    tasks_done: int
    tasks_total: int
    iterations_done: int
    iterations_total: int
    elapsed: float
    eta: float | None


@dataclass
class ReplayReport:
    """What a replay did: tasks, what it could not compute, time against the estimate."""

    replay_id: str
    results: list[TaskResult] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)  # "vid: name: reason"
    skipped_runs: int = 0  # runs whose values were all there already
    data_changed: dict[str, list[str]] = field(default_factory=dict)  # run -> "path (changed)"
    seconds: float = 0.0
    estimate: float = 0.0

    @property
    def failures(self) -> list[TaskResult]:
        return [r for r in self.results if not r.ok]


def default_patcher(repo: Path) -> Patcher:
    """Propagate today's statements with :mod:`florsql.propagate` (cached per version)."""
    import florsql.propagate as propagate

    def patch(vid: str, names: list[str]) -> Patch:
        result = propagate.for_version(repo, vid, names=names)
        files = {path: r.source for path, r in result.files.items() if r.placed}
        failed = {f.name: f.reason for r in result.files.values() for f in r.failed}
        for name in result.unplaced:
            failed.setdefault(name, "no file of this version can take it")
        return Patch(files, failed)

    return patch


def run_replay(
    repo: Path,
    requests: Sequence[RunRequest],
    *,
    patcher: Patcher | None = None,
    executor: Executor | None = None,
    progress: Callable[[Progress], None] | None = None,
    replay_id: str | None = None,
    fail: bool = True,
) -> ReplayReport:
    """Replay ``requests`` and leave their values under ``.florsql/replays/<replay_id>``.

    A failed task raises :class:`ReplayError` (with version, iteration and traceback tail)
    after every other task finished, so finished values are kept; ``fail=False`` only reports.
    """
    repo = Path(repo)
    patcher = patcher or default_patcher(repo)
    executor = executor or LocalExecutor()
    replay_id = replay_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    report = ReplayReport(replay_id)
    tasks = _plan_tasks(repo, requests, patcher, executor.workers, replay_id, report)
    report.estimate = sum(t.estimate for t in tasks)
    t0 = time.perf_counter()
    by_id = {t.spec.task_id: t for t in tasks}
    total_iters = sum(len(t.spec.iterations or []) for t in tasks)
    finished: list[TaskResult] = []

    def on_done(result: TaskResult) -> None:
        finished.append(result)
        if progress:
            done_iters = sum(len(by_id[r.task_id].spec.iterations or []) for r in finished)
            elapsed = time.perf_counter() - t0
            eta = elapsed / len(finished) * (len(tasks) - len(finished))
            progress(Progress(len(finished), len(tasks), done_iters, total_iters, elapsed, eta))

    if progress:
        progress(Progress(0, len(tasks), 0, total_iters, 0.0, report.estimate or None))
    report.results = executor.run(tasks, on_done)
    report.seconds = time.perf_counter() - t0
    if fail and report.failures:
        raise ReplayError(_failure_text(report, tasks))
    return report


def _plan_tasks(
    repo: Path,
    requests: Sequence[RunRequest],
    patcher: Patcher,
    workers: int,
    replay_id: str,
    report: ReplayReport,
) -> list[Task]:
    patches: dict[tuple[str, tuple[str, ...]], Patch] = {}
    parts = max(1, workers // max(1, len(requests)))
    tasks: list[Task] = []
    for req in requests:
        key = (req.vid, tuple(sorted(req.names)))
        if key not in patches:
            patches[key] = patcher(req.vid, sorted(req.names))
        patch = patches[key]
        for name, reason in patch.failed.items():
            report.unplaced.append(f"{req.vid[:12]}: {name}: {reason}")
        names = [n for n in req.names if n not in patch.failed]
        if not names:
            continue
        changed = data_changes(repo, req.run_id)
        if changed:
            report.data_changed[req.run_id] = changed
        tasks += _run_tasks(repo, req, names, patch, parts, replay_id, changed)
    return tasks


def data_changes(repo: Path, run_id: str) -> list[str]:
    """``"path (changed)"`` / ``"path (missing)"`` for each file the run read from an ignored
    path (its data) that differs today; replayed values of the run then rest on other data."""
    try:
        doc = layout.read_json(layout.run_dir(repo, run_id) / layout.RUN_JSON)
    except (OSError, ValueError):
        return []
    return [f"{path} ({how})" for path, how in compare_inputs(repo, recorded_inputs(doc))]


def _run_tasks(
    repo: Path,
    req: RunRequest,
    names: list[str],
    patch: Patch,
    parts: int,
    replay_id: str,
    data_changed: list[str],
) -> list[Task]:
    source = patch.files.get(req.filename) or file_at(repo, req.vid, req.filename)
    where = analyze(source, set(names))
    if where.found != set(names):
        # A statement placed in another file (a helper module): the safe answer. The loops
        # around it and the locals they carry (a counter in trainer.fit) are not analysed here,
        # so no iteration may start from a checkpoint: the whole run replays in one task from
        # the top of the script, every iteration in full.
        where.need_start = where.after_loop = True
        parts = 1
        req = replace(req, iterations=None, inner={})
    run_dir = layout.run_dir(repo, req.run_id)
    manifest = read_manifest(run_dir)
    loop = req.loop or (where.outer_loops[0] if where.outer_loops else None)
    iters = req.iterations if req.iterations is not None else list(range(req.total or 0))
    chunks = split(iters, set(manifest), parts) if iters else []
    if not chunks and where.after_loop:
        chunks = [[]]
    tree = prepare(repo, req.vid, patch.files)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    out = []
    for k, chunk in enumerate(chunks):
        task_id = f"{req.run_id}-{k}"
        last = k == len(chunks) - 1
        spec = ReplaySpec(
            replay_id=replay_id,
            task_id=task_id,
            run_id=req.run_id,
            vid=req.vid,
            run_dir=str(run_dir),
            out_dir=str(replays_dir(repo) / replay_id / task_id),
            names=names,
            loop=loop,
            iterations=chunk,
            need_start=where.need_start,
            after_loop=where.after_loop and last,
            total=req.total,
            inner=req.inner,
            compare=req.compare,
            source_hash=digest,
            data_changed=data_changed,
        )
        spec_path = replays_dir(repo) / replay_id / f"{task_id}.spec.json"
        spec.write(spec_path)
        est = (len(chunk) + 1) * req.iteration_seconds
        out.append(
            Task(spec, spec_path, repo, tree / req.filename, tree / req.cwd, req.argv[1:], est)
        )
    return out


def _failure_text(report: ReplayReport, tasks: list[Task]) -> str:
    by_id = {t.spec.task_id: t for t in tasks}
    lines = []
    for r in report.failures:
        spec = by_id[r.task_id].spec
        where = f" at {spec.loop} {r.iteration}" if r.iteration is not None else ""
        tail = (r.traceback or "").strip().splitlines()[-1:] or [""]
        lines.append(f"run {spec.run_id} (version {spec.vid[:12]}){where}: {r.error} {tail[0]}")
        if spec.data_changed:  # the likely reason: the data the run read is not there as it was
            lines.append(f"  data differs from the recording: {', '.join(spec.data_changed)}")
    ok = len(report.results) - len(report.failures)
    return (
        f"{len(report.failures)} of {len(report.results)} replay tasks failed "
        f"({ok} finished and kept):\n" + concat_messages(lines)
    )
