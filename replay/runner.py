"""From "these runs lack these values" to finished replay tasks.

For each run: the new statements are propagated into its version, the patched script is
analysed for where they sit, iterations already replayed are dropped, the rest is cut into
chunks that start at checkpoints, and the executor runs them in isolated worktrees.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from florsql.errors import ReplayError, concat_messages
from florsql.fold import fold
from florsql.plan.patched import unplaced_reason
from florsql.plan.tasks import chunks_from_files
from florsql.replay.determinism import Verification, compare_task
from florsql.replay.executors import Executor, LocalExecutor
from florsql.replay.tasks import RunRequest, Task, TaskResult
from florsql.replay.worktree import head_gitdir, patch_hash, prepare
from florsql.store import layout, rundoc
from florsql.store.fingerprints import compare_inputs, recorded_inputs
from florsql.store.replays import (
    DONE,
    FAILED,
    REJECTED,
    ReplaySpec,
    clean_from_start,
    from_top,
    patched_hash,
    replays_dir,
    source_hash,
)
from florsql.versions import file_at, files_at, version_reader


@dataclass
class Patch:
    """A version's files with the new statements placed, and the names that could not be."""

    files: dict[str, str]
    failed: dict[str, str] = field(default_factory=dict)  # name -> reason
    #: path -> sha256 of today's text the statements were placed from (None: not known)
    read: dict[str, str] | None = None
    #: name -> ``"gated"`` / ``"uneven"``: placed texts that may draw in some iterations and not
    #: in others (:func:`florsql.propagate.identity.pieces_uneven`); a task that skipped
    #: iterations did not see what they drew there
    uneven: dict[str, str] = field(default_factory=dict)
    #: name -> a digest of the texts placed for it (the statement, the code carried with it):
    #: whether it drew in a run's loop is known per name across replays of other statements
    pieces: dict[str, str] = field(default_factory=dict)

    def planned(self, sources: dict[str, str]) -> bool:
        """Whether the statements were placed from the texts the planner fingerprinted
        (``sources``: path -> digest): a file edited since (or one the plan did not see that
        took a statement) means the code replayed is not the code planned."""
        if self.read is None or not sources:
            return True  # a caller's own patcher, or a request without sources: as given
        return all(
            sources.get(path, digest) == digest
            if path not in self.files
            else sources.get(path) == digest
            for path, digest in self.read.items()
        )


#: (version, the names a task computes, today's other names run beside them) -> the patch
Patcher = Callable[[str, list[str], list[str]], Patch]


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
    nondeterministic: list[str] = field(default_factory=list)  # full tasks that disagree
    rejected: list[str] = field(default_factory=list)  # rest tasks redone in full
    unverified: list[str] = field(default_factory=list)  # runs of tasks with nothing to compare
    #: "names of run R: ..." for tasks that ended raising their run's own error after its loop
    #: with names they stored nothing of (their statements come after the line that raised)
    not_reached: list[str] = field(default_factory=list)
    #: log name -> generators today's statement for it moved in some task
    drew: dict[str, list[str]] = field(default_factory=dict)
    #: runs replayed again from their start because today's statements drew from a global RNG
    #: in a task that restored a checkpoint after the draw (:func:`_from_the_start`)
    from_start: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[TaskResult]:
        return [r for r in self.results if not r.ok]


def default_patcher(repo: Path) -> Patcher:
    """Propagate today's statements with :mod:`florsql.propagate` (cached per version)."""
    from florsql.plan.patched import replay_files
    from florsql.propagate.identity import pieces_uneven

    def patch(vid: str, names: list[str], companions: list[str]) -> Patch:
        files, result = replay_files(repo, vid, names, companions)
        failed = {f.name: f.reason for r in result.files.values() for f in r.failed}
        if result.unplaced:
            py = [p for p in files_at(repo, vid) if p.endswith(".py")]
            for name in result.unplaced:
                failed.setdefault(name, unplaced_reason(repo, py, name))
        uneven: dict[str, str] = {}
        texts: dict[str, list[str]] = {}
        read = version_reader(
            repo, result.vid, {**result.added, **{p: r.source for p, r in result.files.items()}}
        )
        for path, r in sorted(result.files.items()):
            lines = r.source.splitlines()
            for p in r.placed:
                how = pieces_uneven(r.source, p.pieces, path, read)
                if how is not None:  # two pieces of one name: not one gate
                    uneven[p.name] = "uneven" if p.name in uneven else how
                texts.setdefault(p.name, []).append(path)
                texts[p.name] += ["\n".join(lines[a - 1 : b]) for a, b in p.pieces]
        for path, text in sorted(result.added.items()):  # what they run draws as theirs
            for t in texts.values():
                t += [path, text]
        pieces = {n: source_hash("\0".join(t)) for n, t in texts.items()}
        return Patch(files, failed, dict(result.read), uneven, pieces)

    return patch


def _run_error(doc: dict[str, Any]) -> dict[str, str] | None:
    """What a failed run raised (type, message, innermost frame as ``file:function``), for a
    task that goes on past its loop: such a task must raise it too, where the run did, and
    ends there as the run did (:meth:`florsql.record.replay_mode.ReplayRun.own_end`)."""
    error = doc.get("error")
    if doc.get("status") != "failed" or not isinstance(error, dict) or not error.get("type"):
        return None
    frames = re.findall(r'File "([^"]*)", line \d+, in (.+)', str(error.get("traceback") or ""))
    where = f"{os.path.basename(frames[-1][0])}:{frames[-1][1].strip()}" if frames else ""
    return {"type": str(error["type"]), "message": str(error.get("message") or ""), "at": where}


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
    t0 = time.perf_counter()  # the replay's time includes its worktrees, patches and specs
    tasks = _plan_tasks(repo, requests, patcher, executor.workers, replay_id, report)
    report.estimate = sum(t.estimate for t in tasks)
    by_id = {t.spec.task_id: t for t in tasks}
    total_iters = sum(len(t.spec.iterations or []) for t in tasks)
    finished: list[TaskResult] = []
    checks: dict[str, Verification] = {}

    def on_done(result: TaskResult) -> None:
        finished.append(result)
        task = by_id.get(result.task_id)
        if result.ok and task is not None and result.task_id not in checks:
            # compared now, while the other tasks run, not all after the last one
            with contextlib.suppress(Exception):  # _verify compares it again then
                checks[result.task_id] = compare_task(repo, Path(task.spec.out_dir))
        if progress:
            done_iters = sum(len(by_id[r.task_id].spec.iterations or []) for r in finished)
            elapsed = time.perf_counter() - t0
            eta = elapsed / len(finished) * (len(tasks) - len(finished))
            progress(Progress(len(finished), len(tasks), done_iters, total_iters, elapsed, eta))

    if progress:
        progress(Progress(0, len(tasks), 0, total_iters, 0.0, report.estimate or None))
    report.results = executor.run(tasks, on_done)
    _verify(repo, tasks, report, executor, on_done, checks)
    _from_the_start(repo, tasks, report, executor, on_done)
    _after_a_missing_file(repo, tasks, report, executor, on_done)
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
    patches: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Patch] = {}
    made = _Made(repo)
    parts = max(1, workers // max(1, len(requests)))
    tasks: list[Task] = []
    for req in requests:
        # today's other statements the version lacks are placed too (run, not stored): the
        # planner analysed the script with them; their own failures are not the request's
        companions = sorted(set(req.companions) - set(req.names))
        key = (req.vid, tuple(sorted(req.names)), tuple(companions))
        if key not in patches:
            patches[key] = patcher(req.vid, sorted(req.names), companions)
        patch = patches[key]
        for name, reason in patch.failed.items():
            if name in req.names:
                report.unplaced.append(f"{req.vid[:12]}: {name}: {reason}")
        names = [n for n in req.names if n not in patch.failed]
        if not names:
            continue
        changed = data_changes(repo, req.run_id)
        if changed:
            report.data_changed[req.run_id] = changed
        tasks += _run_tasks(repo, req, names, patch, parts, replay_id, changed, made)
    return tasks


class _Made:
    """The worktrees and git directories of one replay's tasks, each made (or found) once:
    the runs of one version share them, and finding one ready still ran git three times (its
    ignored paths linked again, its head checked), 2-4 ms a run (session 41)."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.trees: dict[tuple[str, str], Path] = {}
        self.gits: dict[str | None, Path | None] = {}

    def tree(self, vid: str, files: dict[str, str]) -> Path:
        key = (vid, patch_hash(files))
        if key not in self.trees:
            self.trees[key] = prepare(self.repo, vid, files)
        return self.trees[key]

    def git(self, head: str | None) -> Path | None:
        if head not in self.gits:
            self.gits[head] = head_gitdir(self.repo, head)
        return self.gits[head]


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
    made: _Made | None = None,
) -> list[Task]:
    """One task per planned chunk of ``req``, with the planner's steps, as given."""
    made = made or _Made(repo)
    source = patch.files.get(req.filename) or file_at(repo, req.vid, req.filename)
    chunks = req.chunks
    if not chunks:  # a caller that named the iterations itself: plan them from the files
        total = req.total if req.total is not None else len(req.iterations or [])
        placed = [c for c in req.companions if c not in patch.failed and c not in names]
        chunks = chunks_from_files(
            repo,
            req.run_id,
            source,
            tuple(names + placed),
            req.iterations,
            total=total,
            parts=parts,
            loop=req.loop,
        )
    run_dir = layout.run_dir(repo, req.run_id)
    doc = _run_doc(run_dir)
    counts = rundoc.torch_threads(doc)
    threads = [counts.intra_op, counts.inter_op] if counts else None
    environ = rundoc.environ(doc)
    tree = made.tree(req.vid, patch.files)
    head = doc.get("head")
    git_dir = made.git(head if isinstance(head, str) and head else None)
    digest = patched_hash(source, patch.files)
    # Placed from texts other than the ones the plan fingerprinted (the script was edited
    # while the query ran): the values are recorded without a fingerprint, never served.
    current = patch.planned(req.sources)
    # today's placed texts that may draw in iterations a task skips; one gated statement asked
    # alone sees each draw before a value it stores (pieces_uneven)
    ran = set(names) | {c for c in req.companions if c not in patch.failed}
    uneven = sorted(n for n in ran if n in patch.uneven)
    if len(ran) == 1 and uneven and patch.uneven[uneven[0]] == "gated":
        uneven = []
    out = []
    for k, chunk in enumerate(chunks):
        task_id = f"{req.run_id}-{k}"
        stored: list[int] | None = list(chunk.iterations)
        if chunk.kind == "all":
            stored = None
        spec = ReplaySpec(
            replay_id=replay_id,
            task_id=task_id,
            run_id=req.run_id,
            vid=req.vid,
            run_dir=str(run_dir),
            out_dir=str(replays_dir(repo) / replay_id / task_id),
            names=names,
            loop=chunk.loop or req.loop,
            iterations=stored,
            after_loop=chunk.to_end,
            run_error=_run_error(doc) if chunk.to_end else None,
            stop_at=getattr(chunk, "stop_at", None),
            total=req.total,
            inner=req.inner if stored is not None else {},
            compare=req.compare,
            source_hash=digest,
            steps=[[s.iteration, s.mode, s.restore] for s in chunk.steps],
            data_changed=data_changed,
            torch_threads=threads,
            environ=environ,
            fingerprints={
                fold(n): req.fingerprints[fold(n)]
                for n in names
                if fold(n) in req.fingerprints and current
            },
            estimate=round(chunk.seconds, 4),
            uneven=uneven,
            pieces={n: patch.pieces[n] for n in sorted(ran) if n in patch.pieces},
        )
        spec_path = replays_dir(repo) / replay_id / f"{task_id}.spec.json"
        spec.write(spec_path)
        fallback = None
        if chunk.fallback is not None:
            fallback = [[s.iteration, s.mode, s.restore] for s in chunk.fallback]
        out.append(
            Task(
                spec,
                spec_path,
                repo,
                tree / req.filename,
                tree / req.cwd,
                req.argv[1:],
                chunk.seconds,
                fallback,
                tree,
                dict(patch.files),
                module=req.module,
                import_path=rundoc.import_path(doc),
                git_dir=git_dir,
                hash_seed=rundoc.hash_seed(doc),
            )
        )
    return out


def _run_doc(run_dir: Path) -> dict[str, Any]:
    """The run's ``run.json`` (empty where it cannot be read)."""
    try:
        doc = layout.read_json(run_dir / layout.RUN_JSON)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _verify(
    repo: Path,
    tasks: list[Task],
    report: ReplayReport,
    executor: Executor,
    on_done: Callable[[TaskResult], None],
    checks: dict[str, Verification] | None = None,
) -> None:
    """Compare each finished task's run of the old code's own statements with the recording
    (``checks``: the comparisons already made as tasks finished, by task id).

    A ``rest`` task that disagrees is discarded (its ``done.json`` renamed away, so nothing of
    it is ingested) and run again with every step in full; a full task that disagrees keeps
    its values, marked, and the query warns. Each task's outcome is written into its
    ``done.json`` (``checked``: values compared; ``mismatch``: the first difference).
    """
    by_id = {t.spec.task_id: t for t in tasks}
    redo: list[Task] = []
    for result in report.results:
        task = by_id.get(result.task_id)
        if task is None or not result.ok:
            continue
        folder = Path(task.spec.out_dir)
        known = (checks or {}).get(result.task_id)
        check = known if known is not None else compare_task(repo, folder)
        if check.beyond is not None:
            _fail_beyond(folder, check.beyond, report, result)
            continue
        has_rest = any(step[1] == "rest" for step in task.spec.steps)
        if check.mismatch is not None and has_rest and task.fallback is not None:
            os.replace(folder / DONE, folder / REJECTED)
            report.rejected.append(f"{task.spec.task_id}: {check.mismatch}")
            redo.append(_full_task(task))
            continue
        mismatch = _mark(folder, check, report)
        if mismatch is not None:
            report.nondeterministic.append(mismatch)
        elif check.checked == 0:
            report.unverified.append(task.spec.run_id)
    if not redo:
        return
    results = executor.run(redo, on_done)
    report.results += results
    for task, result in zip(redo, results, strict=True):
        if not result.ok:
            continue
        folder = Path(task.spec.out_dir)
        check = compare_task(repo, folder)
        if check.beyond is not None:
            _fail_beyond(folder, check.beyond, report, result)
            continue
        mismatch = _mark(folder, check, report)
        if mismatch is not None:
            report.nondeterministic.append(mismatch)
        elif check.checked == 0:
            report.unverified.append(task.spec.run_id)


def _drew_before(repo: Path, group: list[Task], folders: set[str]) -> bool:
    """Whether an earlier replay of the run, of the same patched code, saw today's statements
    draw before the outer loop's end (``drew_in_loop`` in a stored ``done.json``), where this
    query's tasks of it did not: they restored a checkpoint past the draw (a probe every 30
    steps, seen by a first query run from the top; a second query restored the checkpoint
    after it, and its steps followed the recorded generator: wrong, silently, before session
    44)."""
    return bool(_drawn_before(repo, group, folders))


def _drawn_before(repo: Path, group: list[Task], folders: set[str]) -> set[tuple[str, str]]:
    """``(name, digest of its placed texts)`` of today's statements placed in the run's tasks
    that an earlier replay of the run saw drawing before the outer loop's end, whatever else
    it placed beside them (a probe drew as a companion of ``w0``; asked alone later, it was
    placed alone: session 45); ``("", source_hash)`` where that replay was of the same patched
    code."""
    first = group[0].spec
    hashes = {t.spec.source_hash for t in group}
    mine = {(n, h) for t in group for n, h in t.spec.pieces.items()}
    out: set[tuple[str, str]] = set()
    for done in (layout.store_dir(repo) / "replays").glob(f"*/{first.run_id}-*/{DONE}"):
        if str(done.parent) in folders:
            continue
        try:
            doc = layout.read_json(done)
        except (OSError, ValueError):
            continue
        drew = doc.get("drew_in_loop") or []
        if not drew or doc.get("run_id") != first.run_id:
            continue
        if doc.get("source_hash") in hashes:
            out.add(("", str(doc.get("source_hash"))))
        pieces = doc.get("pieces") or {}
        out |= {(n, pieces[n]) for n in drew if (n, pieces.get(n)) in mine}
    return out


def _unseen(repo: Path, group: list[Task], docs: list[dict[str, Any]], last: int) -> bool:
    """Whether the run's tasks skipped iterations (restored a checkpoint, or ran some in
    ``rest``) while today's texts placed in its loop may draw in some iterations and not in
    others (``spec.uneven``: ``if epoch % 2 == 1: noise = random.random()``), and no replay of
    the same code from the run's start saw them draw nothing up to ``last``: a draw in a skipped
    iteration was not seen, and every later value followed the recorded generator (session 45:
    a query for epoch 2 restored the checkpoint after epoch 1, whose probe drew; silently
    wrong before)."""
    if not any(t.spec.uneven for t in group):
        return False
    if len(group) == 1 and len(docs) == 1 and from_top(docs[0].get("steps") or []):
        return False  # ran from the top: it saw every draw up to its last step
    return not _clean_before(repo, group, last)


def _clean_before(repo: Path, group: list[Task], last: int) -> bool:
    """Whether a replay of the run, of the same patched code, ran from its start in full up
    to ``last`` at least and saw today's statements draw nothing before the loop's end."""
    hashes = {t.spec.source_hash for t in group}
    return clean_from_start(repo, group[0].spec.run_id, hashes, last)


def _stale(
    repo: Path, group: list[Task], folders: set[str], docs: list[dict[str, Any]]
) -> list[tuple[Path, dict[str, Any]]]:
    """Earlier replays' finished tasks of the run that did not run from its start, of the
    same patched code or with one of the statements in them seen drawing in its loop (by
    ``docs``, this replay's tasks of the run, or an earlier replay): their values rest on a
    checkpoint restored past a draw (session 45: served as they were)."""
    first = group[0].spec
    hashes = {t.spec.source_hash for t in group}
    drawing = _drawn_before(repo, group, folders)
    for doc in docs:
        pieces = doc.get("pieces") or {}
        drawing |= {(n, pieces[n]) for n in doc.get("drew_in_loop") or [] if n in pieces}
    out = []
    for done in (layout.store_dir(repo) / "replays").glob(f"*/{first.run_id}-*/{DONE}"):
        if str(done.parent) in folders or done.parent.parent.name == first.replay_id:
            continue
        try:
            doc = layout.read_json(done)
        except (OSError, ValueError):
            continue
        if doc.get("run_id") != first.run_id or from_top(doc.get("steps") or []):
            continue
        pieces = doc.get("pieces") or {}
        if doc.get("source_hash") in hashes or any(p in drawing for p in pieces.items()):
            out.append((done.parent, doc))
    return out


def _from_the_start(
    repo: Path,
    tasks: list[Task],
    report: ReplayReport,
    executor: Executor,
    on_done: Callable[[TaskResult], None],
) -> None:
    """Replay again, from its start with no checkpoint restored, each run whose tasks saw
    today's statements draw from a global RNG before the outer loop's end (``drew_in_loop`` in
    ``done.json``: a DataLoader's base seed, ``random.random()``), unless its one task ran
    from the top already. (A draw after the loop, a final evaluation, shifts nothing a
    checkpoint puts back.)

    A run of today's script trains on after such a draw with the generator moved (the next
    shuffle, dropout mask, ``randperm`` differ); a checkpoint restored after it puts the
    recorded generator back, so those values would follow the recorded run instead, matching
    neither that run nor a run of today's script. Run from the top in full, the task is a run
    of today's script (up to the last iteration needed, or to the end), the contract's
    oracle. Its values replace the tasks' (their ``done.json`` renamed away, as a rejected
    rest task's); old statements' values after the draw differ from the recording by design
    there, so its comparison is kept in ``done.json`` but raises no nondeterminism warning.
    """
    finished = {r.task_id for r in report.results if r.ok}
    by_run: dict[str, list[Task]] = {}
    for t in tasks:
        by_run.setdefault(t.spec.run_id, []).append(t)
    redo: list[Task] = []
    for run_id, group in by_run.items():
        folders = []  # each task's kept result: its own, or its redo in full
        for t in group:
            for folder in (Path(t.spec.out_dir), Path(t.spec.out_dir + "-full")):
                if (folder / DONE).exists() and folder.name in finished:
                    folders.append(folder)
        docs = [layout.read_json(f / DONE) for f in folders]
        # a draw after the outer loop ended shifts nothing a checkpoint put back (every
        # restore is at an iteration of that loop): only draws before its end count
        last = max((int(step[0]) for t in group for step in t.spec.steps), default=-1)
        if (
            not any(d.get("drew_in_loop", d.get("drew")) for d in docs)
            and not _drew_before(repo, group, {str(f) for f in folders})
            and not _unseen(repo, group, docs, last)
        ):
            continue
        # earlier replays' tasks of the same code that skipped iterations stored values past
        # a draw they did not see: set aside, their iterations stored again by this one
        stale = _stale(repo, group, {str(f) for f in folders}, docs)
        if (
            len(group) == 1
            and len(folders) == 1
            and from_top(docs[0].get("steps") or [])
            and not stale
        ):
            # already a run of today's script: its old statements' departures after the draw
            # are by design, as in a task replayed from its start (before session 35 they
            # raised a NondeterminismWarning beside exact values)
            _departed(folders[0], docs[0], report)
            continue
        if len({t.spec.loop for t in group}) > 1:
            continue  # tasks of two outer loops (a run of phases): left as they are, warned
        if last < 0:
            continue
        stored: list[int] | None = []
        for t in group:
            if t.spec.iterations is None or stored is None:
                stored = None
            else:
                stored += t.spec.iterations
        after = any(t.spec.after_loop for t in group)
        for _, doc in stale:
            its = doc.get("iterations")
            if its is None or stored is None:
                stored = None
            else:
                stored += [int(i) for i in its]
            last = max([last, *(int(step[0]) for step in doc.get("steps") or [])])
            after = after or bool(doc.get("after_loop"))
        first = group[0]
        spec = replace(
            first.spec,
            task_id=f"{run_id}-start",
            out_dir=str(Path(first.spec.out_dir).with_name(f"{run_id}-start")),
            iterations=sorted(set(stored)) if stored is not None else None,
            after_loop=after,
            inner=first.spec.inner if stored is not None and not stale else {},
            steps=[[i, "full", None] for i in range(last + 1)],
            estimate=0.0,  # not the planner's: kept out of its calibration
        )
        spec_path = first.spec_path.with_name(f"{spec.task_id}.spec.json")
        spec.write(spec_path)
        redo.append(replace(first, spec=spec, spec_path=spec_path, fallback=None, estimate=0.0))
        for folder in [*folders, *(f for f, _ in stale)]:
            with contextlib.suppress(FileNotFoundError):  # another query set it aside
                os.replace(folder / DONE, folder / REJECTED)
    if not redo:
        return
    # what the set-aside tasks said no longer stands (their departures after the draw were its
    # doing; their rest tasks' redos are set aside too)
    again = tuple(f"run {t.spec.run_id}:" for t in redo)
    report.nondeterministic[:] = [m for m in report.nondeterministic if not m.startswith(again)]
    ids = tuple(t.spec.run_id for t in redo)
    report.rejected[:] = [m for m in report.rejected if not m.startswith(ids)]
    results = executor.run(redo, on_done)
    report.results += results
    for task, result in zip(redo, results, strict=True):
        if not result.ok:
            continue
        report.from_start.append(task.spec.run_id)
        folder = Path(task.spec.out_dir)
        check = compare_task(repo, folder)
        done = layout.read_json(folder / DONE)
        reordered = _reordered(done)
        done.update(checked=check.checked, mismatch=reordered, departed=check.mismatch)
        layout.atomic_write_json(folder / DONE, done)
        if reordered is not None:
            report.nondeterministic.append(reordered)
        _note_draws(done, report)


def _after_a_missing_file(
    repo: Path,
    tasks: list[Task],
    report: ReplayReport,
    executor: Executor,
    on_done: Callable[[TaskResult], None],
) -> None:
    """Run again, from the run's start with no checkpoint restored, each task that restored a
    checkpoint and failed on a file it did not find (``FileNotFoundError``) or found written
    while its run ran (:class:`florsql.record.watch.SkippedWriteError`). A file not found is
    one the skipped iterations would have written only where the run wrote it (its
    ``outputs``, since session 36); one it never wrote fails a run from the start as well
    (today's statement's own error: before, such a task ran again from the start for nothing,
    and its failure was reported twice, the second at the run's first iteration).

    A run that writes files as its loop goes (``torch.save(net.state_dict(),
    f"ckpts/e{epoch}.pt")`` each epoch) and reads them later (the last epochs' weights
    averaged after the loop) reads what iterations a task skipped would have written: no
    checkpoint holds files, and the worktree has them only where the run's snapshot did. Run
    in full, each write happens in the task (into its private copies) before the read, as in
    a run of today's script (s35: the averaged model's loss stayed NULL, the task failing at
    ``torch.load``). A task that fails again in full fails as it would have.

    So does each task that failed while putting a checkpoint back (:func:`_failed_restoring`,
    session 42): a run from the start restores none."""
    by_id = {t.spec.task_id: t for t in tasks}
    redo: list[Task] = []
    failed: list[TaskResult] = []
    for result in report.results:
        task = by_id.get(result.task_id)
        if result.ok or task is None or from_top(task.spec.steps):
            continue
        if _failed_restoring(task):
            pass  # the checkpoint could not be put back: a run from the start needs none
        elif not (result.error or "").startswith(("FileNotFoundError", "SkippedWriteError")):
            continue
        elif _not_the_runs(task):
            continue  # a file the run never wrote: a run from the start fails on it too
        last = max((int(step[0]) for step in task.spec.steps), default=-1)
        if last < 0:
            continue
        spec = replace(
            task.spec,
            task_id=f"{task.spec.task_id}-start",
            out_dir=f"{task.spec.out_dir}-start",
            steps=[[i, "full", None] for i in range(last + 1)],
            estimate=0.0,  # not the planner's: kept out of its calibration
        )
        spec_path = task.spec_path.with_name(f"{spec.task_id}.spec.json")
        spec.write(spec_path)
        redo.append(replace(task, spec=spec, spec_path=spec_path, fallback=None, estimate=0.0))
        failed.append(result)
    if not redo:
        return
    results = executor.run(redo, on_done)
    for task, old, result in zip(redo, failed, results, strict=True):
        report.results.append(result)
        if not result.ok:
            continue
        report.results.remove(old)  # its values are the redo's: the failure no longer stands
        folder = Path(by_id[old.task_id].spec.out_dir)
        with contextlib.suppress(FileNotFoundError):
            os.replace(folder / FAILED, folder / REJECTED)
        check = compare_task(repo, Path(task.spec.out_dir))
        mismatch = _mark(Path(task.spec.out_dir), check, report)
        if mismatch is not None:
            report.nondeterministic.append(mismatch)


def _failed_restoring(task: Task) -> bool:
    """Whether the task failed while putting a checkpoint back (``restoring`` in its
    ``failed.json``): the run's objects changed in a way its recording did not mark unsound
    (``net = nn.Sequential(...)`` rebound to a grown model at epoch 2, an optimizer rebuilt
    over the unfrozen parameters: ``load_state_dict`` raises on the replay's objects, made as
    the script starts). Session 42: such values stayed NULL, with the error, where a run from
    the start needs no checkpoint and answers them."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        doc = layout.read_json(Path(task.spec.out_dir) / FAILED)
        return doc.get("restoring") is not None
    return False


def _not_the_runs(task: Task) -> bool:
    """Whether the task failed on a file not found that its run never wrote, or before it
    skipped any iteration (its worker compared the file with the run's ``outputs``: ``missing``
    in its ``failed.json``): today's statement's own error, or the old code's, which a run from
    the start raises too."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        missing = layout.read_json(Path(task.spec.out_dir) / FAILED).get("missing")
        if isinstance(missing, dict):
            return missing.get("skipped") is False or missing.get("written_by_run") is False
    return False


def _departed(folder: Path, done: dict[str, Any], report: ReplayReport) -> None:
    """A task that ran its run from the top and saw today's statements draw: its first
    difference from the recording is a departure (``departed`` in ``done.json``), not a
    nondeterminism to warn of, and a rest task of the run set aside before it was set aside
    for the draw's doing."""
    run_id = str(done.get("run_id"))
    # a rest task set aside for a difference the draw made (its full redo is this one)
    report.rejected[:] = [m for m in report.rejected if not m.startswith(run_id)]
    mismatch = done.get("mismatch")
    reordered = _reordered(done)  # not the draw's doing: it stays a mismatch
    if mismatch is None or mismatch == reordered:
        return
    done.update(mismatch=reordered, departed=mismatch)
    layout.atomic_write_json(folder / DONE, done)
    run = f"run {run_id}:"
    report.nondeterministic[:] = [
        m for m in report.nondeterministic if not m.startswith(run) or m == reordered
    ]
    if reordered is not None and reordered not in report.nondeterministic:
        report.nondeterministic.append(reordered)


def _full_task(task: Task) -> Task:
    """The same task with the planner's fallback steps (no ``rest`` step), in a new folder."""
    assert task.fallback is not None
    spec = replace(
        task.spec,
        task_id=task.spec.task_id + "-full",
        out_dir=task.spec.out_dir + "-full",
        steps=task.fallback,
    )
    spec_path = task.spec_path.with_name(f"{spec.task_id}.spec.json")
    spec.write(spec_path)
    return replace(task, spec=spec, spec_path=spec_path, fallback=None)


def _fail_beyond(
    folder: Path, beyond: tuple[int, str], report: ReplayReport, result: TaskResult
) -> None:
    """A finished task that ran an inner iteration its run never reached
    (:func:`florsql.replay.determinism.beyond_the_run`) becomes a failed one at that outer
    iteration: its values are not ingested, the planner blocks that iteration and what
    follows it, and plans the earlier ones again (session 49)."""
    j, why = beyond
    done = layout.read_json(folder / DONE)
    marker = {
        "task_id": done.get("task_id"),
        "run_id": done.get("run_id"),
        "vid": done.get("vid"),
        "iteration": j,
        "loop": done.get("loop"),
        "error": f"RunDeparted: {why}",
        "traceback": "",
        "frames": [],
    }
    layout.atomic_write_json(folder / FAILED, marker)
    os.replace(folder / DONE, folder / REJECTED)
    index = report.results.index(result)
    report.results[index] = replace(result, ok=False, error=marker["error"], iteration=j)


def _mark(folder: Path, check: Verification, report: ReplayReport) -> str | None:
    """Write a finished task's verification into its ``done.json``; the difference from the
    recording it found (None: none)."""
    done = layout.read_json(folder / DONE)
    # both, where both: a file read before the run wrote it explains the values' difference
    # (session 44: the difference alone was said, the file the task read not named)
    said = [m for m in (check.mismatch, _reordered(done)) if m]
    mismatch = "; ".join(said) or None
    done.update(checked=check.checked, mismatch=mismatch)
    layout.atomic_write_json(folder / DONE, done)
    _note_draws(done, report)
    missed = [str(n) for n in done.get("not_reached") or ()]
    if missed and done.get("own_end"):
        report.not_reached.append(
            f"{', '.join(missed)} of run {done.get('run_id')}: NULL: the run raised "
            f"{done['own_end']} after its loop, before reaching them, and so did its replay"
        )
    return mismatch


def _note_draws(done: dict[str, Any], report: ReplayReport) -> None:
    """Add the generators a task's statements drew from (``drew``) to the report's."""
    for name, kinds in (done.get("drew") or {}).items():
        known = report.drew.setdefault(str(name), [])
        known.extend(k for k in kinds if k not in known)


def _reordered(done: dict[str, Any]) -> str | None:
    """What a task holding the run's strings in another order before its loop means
    (``reordered`` in its ``done.json``: :mod:`florsql.record.order`), and one that read files
    its run wrote before writing them (``read_outputs``, since session 36: silently before);
    None: neither."""
    names = [str(n) for n in done.get("reordered") or ()]
    files = [str(n) for n in done.get("read_outputs") or ()]
    said = []
    if names:
        said.append(
            f"run {done.get('run_id')}: {', '.join(names)} held the same strings in another "
            "order than in the run as its loop started (a set of strings iterates in the order "
            "of the process's string hashing, random unless PYTHONHASHSEED fixes it; or a "
            "folder listed in another order); values computed from them are not the run's. "
            "Record with PYTHONHASHSEED set (e.g. PYTHONHASHSEED=0) to replay such runs exactly"
        )
    if files:
        said.append(
            f"run {done.get('run_id')}: read {', '.join(files[:5])}"
            f"{' ...' if len(files) > 5 else ''} before writing it, a file the run wrote "
            "itself: the replay read today's copy, and what the run found there (nothing, or "
            "what an earlier run left: a run resumed from its own last checkpoint) is not "
            "known; values computed from it are not the run's"
        )
    return "; ".join(said) or None


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
