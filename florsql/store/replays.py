"""Replay results on disk: task specs, done/failed markers, and where they live.

``.florsql/replays/<replay_id>/<task_id>/`` holds a task's ``segments/`` (the same Arrow format
as a run's) and, once it finished, ``done.json`` written atomically last: a task without it is
invisible to the index, whatever else it left behind. A task whose script raised writes
``failed.json`` instead (the error, the outer iteration, the traceback's tail); with its spec
(``<replay_id>/<task_id>.spec.json``) it becomes a row of the index's ``replay_failures``: the
failure is remembered until the patched source changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from florsql.store import layout

SPEC = "spec.json"
DONE = "done.json"
FAILED = "failed.json"
#: A finished task whose values verification discarded (a ``rest`` replay that disagreed with
#: the recording); it is never ingested.
REJECTED = "rejected.json"


def replays_dir(repo: Path) -> Path:
    return layout.store_dir(repo) / "replays"


@dataclass
class ReplaySpec:
    """What one replay task computes. Written by the scheduler, read by the worker."""

    replay_id: str
    task_id: str
    run_id: str
    vid: str
    run_dir: str
    out_dir: str
    names: list[str]
    loop: str | None = None
    iterations: list[int] | None = None  # outer iterations whose values are stored; None: all
    after_loop: bool = False  # go on past the loop to the end of the script
    #: a later top ``flor.loop`` where the task ends as it begins (the run failed or was
    #: killed in it; the code between the loops is what the task computes)
    stop_at: str | None = None
    #: a failed run's error (``type``, ``message``, ``at``: its innermost frame as
    #: ``file:function``) where the task goes past the loop: it must raise it there too, and
    #: then ends as the run did; None: the run did not fail
    run_error: dict[str, str] | None = None
    total: int | None = None  # recorded number of outer iterations
    inner: dict[str, list[int]] = field(default_factory=dict)  # store-only filters
    compare: list[str] = field(default_factory=list)  # recorded names: verification
    source_hash: str = ""
    data_changed: list[str] = field(default_factory=list)  # inputs that differ today
    #: The planner's steps, run exactly: ``[iteration, "full"|"rest", restore or None]``.
    steps: list[list[Any]] = field(default_factory=list)
    #: torch's ``[intra_op, inter_op]`` thread counts the run recorded: the task uses the same.
    torch_threads: list[int] | None = None
    #: The environment variables the run's code read, as it read them (None: unset): the task
    #: runs with them (docs/replay.md, "The environment").
    environ: dict[str, str | None] = field(default_factory=dict)
    #: Per name in lower case: the fingerprint of today's statements for it, from the planner
    #: (:attr:`florsql.plan.catalog.Catalog.fingerprints`); the task's values of a name are
    #: served only while today's code has the same one. Empty: never served (a direct
    #: :func:`florsql.replay.run_replay` call that gave none).
    fingerprints: dict[str, str] = field(default_factory=dict)
    #: The planner's estimate of this task's wall time in seconds (0.0: none). Kept in
    #: ``done.json`` and the index beside the time the task took: later estimates are
    #: calibrated against them (:func:`florsql.plan.tasks.calibration`).
    estimate: float = 0.0
    #: Today's names whose placed texts may draw in some iterations and not in others
    #: (:func:`florsql.propagate.identity.pieces_uneven`): a task that skipped iterations saw
    #: none of their draws there, so its run is replayed from its start
    #: (:func:`florsql.replay.runner._from_the_start`) unless a replay of the same code from
    #: its start saw no draw that far.
    uneven: list[str] = field(default_factory=list)
    #: Per name placed in the task (asked or run beside): a digest of its placed texts. An
    #: earlier replay that saw it draw in the run's loop, whatever else it placed, makes this
    #: one run from the start (:func:`florsql.replay.runner._drawn_before`).
    pieces: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> ReplaySpec:
        return cls(**json.loads(Path(path).read_text()))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        layout.atomic_write_json(path, asdict(self))


def read_manifest(run_dir: Path, loop: str | None) -> dict[int, tuple[str, str]]:
    """iteration -> (position, file) of a run's checkpoints of outer loop ``loop`` (a line cut
    by a kill is skipped)."""
    return {it: (r["position"], r["file"]) for it, r in manifest_records(run_dir, loop).items()}


def manifest_records(run_dir: Path, loop: str | None) -> dict[int, dict[str, Any]]:
    """iteration -> the manifest line of each checkpoint of a run's outer loop ``loop``:
    position, file, bytes, and (runs recorded since locals are saved) ``restores``: the locals
    it puts back, per frame (``outer``/``inner``), and ``misses``: those it could not save, with
    the reason. Per loop: a run with two checkpointed outer loops (pretraining, then
    fine-tuning) has an iteration 0 in each. A line that is not a checkpoint entry (cut by a
    kill, or damaged) is skipped, as an unreadable manifest is; the index reports the damage
    (:func:`florsql.store.ingest.load_manifest`)."""
    return manifest_by_loop(run_dir).get(str(loop), {})


def manifest_by_loop(run_dir: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """loop -> :func:`manifest_records` of that loop."""
    path = run_dir / layout.CHECKPOINTS / layout.MANIFEST
    out: dict[str, dict[int, dict[str, Any]]] = {}
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            r = json.loads(line.decode("utf-8"))
            rec = dict(r, position=str(r["position"]), file=str(r["file"]))
            out.setdefault(str(r["loop"]), {})[int(r["iteration"])] = rec
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return out


def finished_tasks(repo: Path) -> list[Path]:
    """Task folders with a done marker, in a stable order."""
    root = replays_dir(repo)
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.glob(f"*/*/{DONE}"))


def output_stamp(path: str) -> list[int] | None:
    """``[size, mtime_ns]`` of the file at ``path`` (None: not there): a failure marker's
    ``read_outputs`` (florsql.plan.replay_set)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def failed_tasks(repo: Path) -> list[Path]:
    """Task folders with a failure marker and no done marker, in a stable order."""
    root = replays_dir(repo)
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.glob(f"*/*/{FAILED}") if not (p.parent / DONE).exists())


def spec_path(task_dir: Path) -> Path:
    """Where the scheduler wrote the spec of the task whose output folder is ``task_dir``."""
    return task_dir.parent / f"{task_dir.name}.spec.json"


def source_hash(source: str) -> str:
    """A short hash of one text."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


#: The version of replay's rules (its history: ``florsql.plan.hindsight.REPLAY_RULES``). Part
#: of :func:`patched_hash`, so a failure remembered under older rules (a task that failed where
#: a later florsql plans it otherwise) is tried again after an upgrade, not kept NULL.
REPLAY_RULES = 49


def patched_hash(script: str, files: dict[str, str]) -> str:
    """The hash a replay task records of the code it runs (``ReplaySpec.source_hash``): the
    patched main script and every patched file of the version (path and text), under these
    :data:`REPLAY_RULES`."""
    parts = [script, *(f"{path}\0{files[path]}" for path in sorted(files))]
    return source_hash("\0\0".join([f"rules {REPLAY_RULES}", *parts]))


def from_top(steps: list[list[object]]) -> bool:
    """Whether a task's steps run its loop from the first iteration on, every one in full,
    restoring no checkpoint (a run of today's script up to its last step)."""
    its = [int(str(s[0])) for s in steps]
    return (
        bool(steps)
        and its == list(range(len(its)))
        and all(s[1] == "full" and s[2] is None for s in steps)
    )


def clean_from_start(repo: Path, run_id: str, hashes: set[str], last: int) -> bool:
    """Whether a replay of run ``run_id``, of patched code with one of ``hashes``
    (:func:`patched_hash`), ran from its start in full up to iteration ``last`` at least and
    saw today's statements draw nothing before the loop's end: a task of that code that skips
    iterations then misses no draw (the runner's check, and the planner's since session 53)."""
    for done in replays_dir(repo).glob(f"*/{run_id}-*/{DONE}"):
        try:
            doc = layout.read_json(done)
        except (OSError, ValueError):
            continue
        steps = doc.get("steps") or []
        if (
            doc.get("source_hash") in hashes
            and not doc.get("drew_in_loop", doc.get("drew"))
            and from_top(steps)
            and len(steps) > last
        ):
            return True
    return False


_FRAME = re.compile(r'File "(?P<file>[^"]*)", line (?P<line>\d+)(?:, in (?P<func>\S+))?')


#: The global generators a replay task's ``done.json`` names under ``drew`` (today's statements
#: that moved them: florsql/record/rng_guard.py), as the query's warning calls them.
RNG_NAMES = {
    "torch": "torch's global generator",
    "cuda": "torch's CUDA generators",
    "python": "Python's random module",
    "numpy": "numpy's global random state",
}


#: The RNG guard's calls in a line of a replayed file (florsql.propagate.model.guarded), with the
#: "; " that joins each to its statement.
_GUARD = re.compile(
    r"""__import__\("florsql"\)\._hindsight_(?:begin|end)\((?:'[^']*'|"[^"]*")\)(?:; )?"""
    r"""|; (?=__import__\("florsql"\)\._hindsight_end)"""
)


def _without_guards(lines: list[str]) -> list[str]:
    """A traceback's lines without the RNG guard's calls, and without the caret line under a
    line they were taken out of (its columns no longer match)."""
    out: list[str] = []
    cut = False
    for line in lines:
        if cut and line.strip() and set(line.strip()) <= set("~^"):
            cut = False
            continue
        clean = strip_guards(line)
        cut = clean != line
        out.append(clean)
    return out


def strip_guards(line: str) -> str:
    """``line`` of a replayed file without the RNG guard's calls (what ``florsql propagate``
    shows there).

    Example:
        >>> g = '__import__("florsql")._hindsight_{}("x")'
        >>> strip_guards("    " + g.format("begin") + '; flor.log("x", 1); ' + g.format("end"))
        '    flor.log("x", 1)'
    """
    return _GUARD.sub("", line)


def describe_failure(
    *,
    run_id: str,
    vid: str,
    loop: str | None,
    iteration: int | None,
    error: str | None,
    traceback: str | None,
) -> str:
    r"""The full reason a replay task failed: run, version, iteration, exception, line, and the
    traceback's tail (indented).

    Example:
        >>> tb = 'Traceback:\n  File "/r/.florsql/worktrees/ab-cd/train.py", line 9, in <module>'
        >>> tb += "\n    flor.log('x', 1 / 0)\nZeroDivisionError: division by zero\n"
        >>> print(describe_failure(run_id="r1", vid="abcdef", loop="epoch", iteration=0,
        ...                        error="ZeroDivisionError: division by zero", traceback=tb))
        run r1 (version abcdef) at epoch 0: ZeroDivisionError: division by zero (train.py line 9: flor.log('x', 1 / 0))
            Traceback:
              File "/r/.florsql/worktrees/ab-cd/train.py", line 9, in <module>
                flor.log('x', 1 / 0)
            ZeroDivisionError: division by zero
    """  # noqa: E501
    where = f" at {loop} {iteration}" if loop and iteration is not None else ""
    text = f"run {run_id} (version {vid[:12]}){where}: {error or 'failed'}"
    lines = _without_guards((traceback or "").rstrip().splitlines())
    frames = [(k, m) for k, line in enumerate(lines) if (m := _FRAME.search(line))]
    if frames:
        k, m = frames[-1]
        file = m["file"]
        if "/worktrees/" in file:
            file = file.split("/worktrees/", 1)[1].split("/", 1)[-1]
        code = (
            lines[k + 1].strip() if k + 1 < len(lines) and not _FRAME.search(lines[k + 1]) else ""
        )
        text += f" ({file} line {m['line']}{': ' + code if code else ''})"
    if lines:
        text += "\n" + "\n".join("    " + line for line in lines)
    return text
