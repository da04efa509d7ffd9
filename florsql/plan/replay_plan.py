"""The replay plan: what the replay engine must compute for a query, and from where.

The planner fills it in; the replay executor (``florsql.replay``) consumes it; ``EXPLAIN`` prints
it. Every field is plain data (tuples of frozen dataclasses), so a plan can be compared, cached
and sent to worker processes. ``docs/sql.md`` documents each field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CheckpointRef",
    "Chunk",
    "Cost",
    "InnerRestriction",
    "IterationNeed",
    "RememberedFailure",
    "ReplayPlan",
    "RunReplay",
    "Step",
    "Unreached",
    "VersionReplay",
]

ChunkKind = Literal["iterations", "head", "tail", "all"]
StepMode = Literal["full", "rest"]


@dataclass(frozen=True)
class CheckpointRef:
    """A recorded checkpoint a chunk restores before it starts.

    ``position`` is ``"after:<inner loop>"`` (taken when the first inner loop of outer iteration
    ``iteration`` exited: restore it, then run the rest of that iteration's body) or ``"end"``
    (taken at the end of the iteration).
    """

    loop: str
    iteration: int
    position: str
    file: str
    bytes: int


@dataclass(frozen=True)
class InnerRestriction:
    """Only these iterations of inner loop ``loop`` need their statements (a pushed predicate)."""

    loop: str
    iterations: tuple[int, ...]


@dataclass(frozen=True)
class IterationNeed:
    """One iteration of the outermost loop whose statements must run for ``names``.

    ``inner_loops`` are the inner loops this iteration must run (they hold a needed statement);
    the others may be skipped. ``inner`` narrows some of them to a few of their iterations.
    """

    loop: str
    iteration: int
    names: tuple[str, ...]
    inner_loops: tuple[str, ...] = ()
    inner: tuple[InnerRestriction, ...] = ()


@dataclass(frozen=True)
class Step:
    """How one outer iteration runs in a replay task (docs/replay.md, "Modes").

    Attributes:
        iteration: the outer iteration.
        mode: ``full`` (inner loops too) or ``rest`` (restore the checkpoint taken as the
            first inner loop exited, with the locals saved beside it, skip that loop, run the
            rest of the body).
        restore: the checkpoint restored first: for ``rest`` the iteration's own ``after:``
            checkpoint, for ``full`` an ``end`` checkpoint of the iteration before; None: the
            state comes from the steps before in the same task (or the top of the script).
        why: the reason for the mode, in words (EXPLAIN prints it).
    """

    iteration: int
    mode: StepMode
    restore: int | None
    why: str


@dataclass(frozen=True)
class Chunk:
    """One replay task: a stretch of one run, executed by one worker.

    Attributes:
        kind: ``iterations`` (outer iterations ``first..last``), ``head`` (the code before the
            first loop only), ``tail`` (from the last checkpoint to the end of the script) or
            ``all`` (the whole run: a statement whose loop context is unknown, or a wrapper of
            the outer loop read as a value; the steps say which).
        loop: the outermost loop (None for ``head``/``all`` without loops).
        iterations: the needed outer iterations in this chunk, ascending.
        start: the first outer iteration the worker executes (before ``iterations[0]`` when
            the nearest checkpoint is further back); None for ``head``/``all``.
        checkpoint: what to restore first; None means run from the top of the script.
        to_end: keep going after the loop to the end of the script (a needed statement there).
        seconds: the estimated wall time of this chunk.
        steps: every outer iteration the worker runs, in order, with its mode: the worker runs
            exactly these.
        fallback: the same needed iterations with no ``rest`` step, run instead when the old
            code's own recorded values disagree with a ``rest`` replay (verification).
    """

    kind: ChunkKind
    loop: str | None
    iterations: tuple[int, ...]
    start: int | None
    checkpoint: CheckpointRef | None
    to_end: bool
    seconds: float
    steps: tuple[Step, ...] = ()
    fallback: tuple[Step, ...] | None = None
    #: a later top loop where the task ends as it begins (``to_end`` of a run that failed or was
    #: killed in it: the statements between reached, that loop not run again)
    stop_at: str | None = None


@dataclass(frozen=True)
class RunReplay:
    """What to replay of one run.

    Attributes:
        run_id, vid, filename: the run and its code version.
        names: the hindsight names this run must compute.
        needs: the outer iterations that must run their statements (with inner restrictions).
        top_level: names logged outside every loop that this run must compute.
        skip_inner: inner loops that hold no needed statement: restored from the checkpoint
            of their outer iteration instead of run, where one exists.
        chunks: the tasks, each from its nearest checkpoint.
        seconds: estimated total work (sum of the chunks).
        threads: torch's intra-op thread count the run recorded (None: not recorded): its
            tasks replay with the same counts, and at most cores // threads run at once.
        companions: today's other statements its version lacks, placed and run beside
            ``names`` without their values stored: one may draw from an RNG, which a run of
            today's script does (docs/replay.md, "Today's statements that draw").
    """

    run_id: str
    vid: str
    filename: str
    names: tuple[str, ...]
    needs: tuple[IterationNeed, ...]
    top_level: tuple[str, ...]
    skip_inner: tuple[str, ...]
    chunks: tuple[Chunk, ...]
    seconds: float
    threads: int | None = None
    companions: tuple[str, ...] = ()


@dataclass(frozen=True)
class VersionReplay:
    """The runs of one code version (and script) to replay, with what the version cannot take.

    ``statements`` are ``(name, line, chain, file)`` of the log statements in the current code
    (the main script's or an imported module's) that the propagation step places into this
    version; ``unplaceable`` are names whose loop context
    this version never recorded (their values stay NULL, with a warning); ``unplaced`` are
    ``(name, reason)`` of statements propagation cannot place into this version (a statement
    inside a block the version lacks...): no task computes them, their values stay NULL, and
    the reason is said. ``lost`` are ``(name, reason)`` of today's other statements that may
    draw from an RNG and that propagation cannot place into this version: its replays run
    without them (a run of today's script has their draws), which EXPLAIN says. ``uneven``
    are ``(name, "gated"/"uneven")`` of the statements whose placed texts may draw in some
    iterations and not in others: a run whose task skips iterations is replayed again from
    its start (a gated statement asked alone excepted), which EXPLAIN says.
    """

    vid: str
    filename: str
    runs: tuple[RunReplay, ...]
    names: tuple[str, ...]
    statements: tuple[tuple[str, int, tuple[str, ...] | None, str], ...]
    skip_inner: tuple[str, ...]
    unplaceable: tuple[str, ...] = ()
    unplaced: tuple[tuple[str, str], ...] = ()
    lost: tuple[tuple[str, str], ...] = ()
    uneven: tuple[tuple[str, str], ...] = ()
    #: ``(name, functions)``: statements calling functions of their file this version defines
    #: otherwise than today's (a replay runs the version's own)
    edited: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)


@dataclass(frozen=True)
class RememberedFailure:
    """A replay task that failed before with the same patched source: not planned again.

    Attributes:
        replay_id, task_id: the failed task (``.florsql/replays/<replay_id>/<task_id>/``).
        run_id: its run.
        names: the query's names it leaves NULL.
        iterations: the query's outer iterations it leaves NULL (None: the top level).
        reason: run, version, iteration, exception, line and the traceback's tail.
        cause: where it raised, from its frames: ``"statement"`` (one of today's statements,
            or code carried for them), ``"restore"`` (putting the run's checkpoint back),
            ``"old code"`` (the version's own code), or ``""`` (not known: no frames).
    """

    replay_id: str
    task_id: str
    run_id: str
    names: tuple[str, ...]
    iterations: tuple[int | None, ...]
    reason: str
    cause: str = ""


@dataclass(frozen=True)
class Unreached:
    """A run that failed or was killed: the query's values it never reached stay NULL.

    ``names`` are the names left NULL in outer iterations it never finished or after its loop;
    ``reason`` says where it ended (``"killed during epoch 7"``). ``running``: the run is still
    recording (its process alive): no replay runs it before it ends, so ``names`` are NULL in the
    outer iterations it already ended (those it has not ended are not there yet, as for any
    run that is still going); a query after it ended computes them.
    """

    run_id: str
    names: tuple[str, ...]
    reason: str
    running: bool = False
    #: the run recorded ``names`` in other iterations with another statement than today's
    #: (``reason``: the old call): not replayed, lest the column mix two definitions
    statement: bool = False


@dataclass(frozen=True)
class Cost:
    """The estimate: recorded iteration times, checkpoint sizes and a per-task start-up.

    Attributes:
        seconds: the work, summed over the tasks (each with its start-up in a warm worker).
        wall: the estimated elapsed time: the tasks scheduled ``at_once`` at a time, plus the
            replay's fixed cost and, unless ``warm``, the warm worker's start.
        at_once: tasks run at once: cores // threads, at least 1 (and at most the executor's
            workers, once the engine knows its executor).
        threads: torch's intra-op threads per task (the most any replayed run recorded; 1 when
            none recorded them).
        cores: the cores counted.
        warm: whether the warm worker is already running (None: not known when planning;
            the estimate then counts its start).
        scale: what each task's estimate was multiplied by: the median ratio of the time
            recent tasks of this repository took to their estimates (1.0: none yet).
        scaled_from: how many recent tasks ``scale`` comes from (0: not calibrated from
            this repository's).
        machine_scale: ``scale`` comes from this machine's recent replays (of any repository:
            :mod:`florsql.replay.timings`), this repository having too few of its own.
        start: the warm worker's start counted in ``wall`` (0.0: none counted); without
            ``forks``, each task's start (its interpreter, imports and module-level code).
        start_measured: ``start`` is the median of this machine's recent warm worker starts
            (without ``forks``: of recent fresh-interpreter tasks' starts), not the constant
            (:data:`florsql.plan.tasks.WORKER_START_S`).
        forks: tasks fork from a warm worker (False: each starts an interpreter).
    """

    seconds: float
    tasks: int
    runs: int
    iterations: int
    checkpoint_bytes: int
    wall: float = 0.0
    at_once: int = 1
    threads: int = 1
    cores: int = 1
    warm: bool | None = None
    scale: float = 1.0
    scaled_from: int = 0
    machine_scale: bool = False
    start: float = 0.0
    start_measured: bool = False
    forks: bool = True


@dataclass(frozen=True)
class ReplayPlan:
    """Everything a query needs replayed. Empty when every value it reads exists.

    Attributes:
        names: the hindsight names the query references.
        versions: per (version, script), the runs to replay.
        cost: the estimate for the whole plan.
        pushed: per reference to ``logs``, the predicate pushed into the replay set (SQL over
            ``logs`` columns), ``"true"`` when nothing could be pushed.
        residual: per reference, whether some WHERE conjunct stays for DuckDB only.
        limit_runs: when ``ORDER BY <run column> LIMIT n`` cut the runs, those kept.
        lacking: per name, how many runs lack it before pushdown.
        unreplayable: per name, how many runs lack it with no statement to replay (their script
            does not log it now).
        orphaned: per script today's working tree no longer has (renamed or deleted), the
            names its runs lack and how many runs: no statement of today's is placed into
            them, so their values stay NULL (said at query time, not only by EXPLAIN).
        notes: plain-language remarks (a pushdown skipped and why...).
        failures: tasks that failed before with today's patched source: what they leave NULL
            and why (they are retried once the patched source changes).
        unreached: runs that failed or were killed, with the needed names they leave NULL:
            replay never runs past where a run ended.
        fingerprints: per name to replay (lower case), the fingerprint of today's statements
            for it: each task records it, and its values count only while it is current.
        sources: per file the fingerprints were computed from, the digest of its text: a
            task whose propagation read another text records no fingerprint (its values never
            count: the code changed while the query ran).
    """

    names: tuple[str, ...] = ()
    versions: tuple[VersionReplay, ...] = ()
    cost: Cost = field(default_factory=lambda: Cost(0.0, 0, 0, 0, 0))
    pushed: tuple[str, ...] = ()
    residual: tuple[bool, ...] = ()
    limit_runs: tuple[str, ...] | None = None
    lacking: tuple[tuple[str, int], ...] = ()
    #: of ``lacking``, per name, the runs that recorded it in some iterations only
    lacking_some: tuple[tuple[str, int], ...] = ()
    unreplayable: tuple[tuple[str, int], ...] = ()
    orphaned: tuple[tuple[str, tuple[str, ...], int], ...] = ()
    notes: tuple[str, ...] = ()
    failures: tuple[RememberedFailure, ...] = ()
    unreached: tuple[Unreached, ...] = ()
    #: ``(file, name, chain, runs, recorded chains)``: a log statement of today's at a loop
    #: chain (``"epoch"``; ``""`` outside every loop) where that many runs of the file that
    #: log the name never recorded it (only at the chains listed): a name a run logs is never
    #: replayed, so those rows are absent (session 48, sweep N)
    elsewhere: tuple[tuple[str, str, str, int, tuple[str, ...]], ...] = ()
    fingerprints: tuple[tuple[str, str], ...] = ()
    sources: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to replay."""
        return not self.versions

    def runs(self) -> Iterator[RunReplay]:
        for v in self.versions:
            yield from v.runs

    def replay_set(self) -> dict[str, dict[str, tuple[int, ...] | str]]:
        """``{run_id: {name: outer iterations, or "top"}}``: the golden-file form."""
        out: dict[str, dict[str, tuple[int, ...] | str]] = {}
        for run in self.runs():
            per: dict[str, list[int]] = {}
            for need in run.needs:
                for name in need.names:
                    per.setdefault(name, []).append(need.iteration)
            entry: dict[str, tuple[int, ...] | str] = {n: tuple(sorted(v)) for n, v in per.items()}
            entry.update({n: "top" for n in run.top_level})
            out[run.run_id] = dict(sorted(entry.items()))
        return dict(sorted(out.items()))
