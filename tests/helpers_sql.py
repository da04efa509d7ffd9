"""Shared helpers for the SQL tests: synthetic run histories in the real on-disk format.

Run folders are written the way a recording process writes them (``run.json`` plus Arrow
segments through :func:`florsql.store.segments.write_segment`), then ingested by the real index.
:class:`RunBuilder` also keeps the flat table a query should see (the oracle of the differential
tests); :func:`write_bulk_run` writes large regular runs fast (benchmarks).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from florsql.store import layout
from florsql.store.segments import split_value, write_segment

if TYPE_CHECKING:
    import pyarrow as pa

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def run_doc(
    run_id: str,
    args: dict[str, Any],
    *,
    vid: str = "v1",
    filename: str = "train.py",
    tstamp: datetime | None = None,
    projid: str = "proj",
    status: str = "finished",
) -> dict[str, Any]:
    """A ``run.json`` document as the record API writes it."""
    ts = (tstamp or BASE_TIME).isoformat(timespec="microseconds")
    return {
        "run_id": run_id,
        "projid": projid,
        "tstamp": ts,
        "vid": vid,
        "head": vid,
        "dirty": False,
        "filename": filename,
        "argv": [filename],
        "python": "3.11",
        "torch": None,
        "host": "synthetic",
        "pid": 0,
        "pid_start": None,
        "status": status,
        "error": None,
        "ended": ts,
        "args": args,
    }


@dataclass
class RunBuilder:
    """Build one run's events by hand; :meth:`write` stores it, :attr:`rows` is the oracle.

    Example:
        >>> b = RunBuilder("r1", {"lr": 0.1})
        >>> with b.loop("epoch", 0):
        ...     b.log("loss", 1.5)
        >>> b.rows[0]["loss"], b.rows[0]["epoch"]
        (1.5, 0)
    """

    run_id: str
    args: dict[str, Any]
    vid: str = "v1"
    filename: str = "train.py"
    tstamp: datetime = BASE_TIME
    events: list[dict[str, Any]] = field(default_factory=list)
    #: ctx -> {loop name: iteration} of the enclosing loops
    ctx_loops: dict[int, dict[str, int]] = field(default_factory=lambda: {0: {}})
    #: (ctx, name) -> last logged value, in first-logged order per ctx
    values: dict[int, dict[str, Any]] = field(default_factory=dict)
    _stack: list[int] = field(default_factory=lambda: [0])
    _next_ctx: int = 1
    _seq: int = 0
    _t: float = 1_700_000_000.0

    @contextmanager
    def loop(
        self, name: str, iteration: int, item: Any = None, seconds: float = 0.5
    ) -> Iterator[int]:
        ctx, parent = self._next_ctx, self._stack[-1]
        self._next_ctx += 1
        self.ctx_loops[ctx] = {**self.ctx_loops[parent], name: iteration}
        self._event("loop", ctx=ctx, parent=parent, name=name, iteration=iteration, value=item)
        self._stack.append(ctx)
        try:
            yield ctx
        finally:
            self._stack.pop()
            self._event("end", ctx=ctx, t=seconds)

    def log(self, name: str, value: Any) -> None:
        ctx = self._stack[-1]
        self._event("log", seq=self._seq, ctx=ctx, name=name, value=value)
        self._seq += 1
        self.values.setdefault(ctx, {})[name] = value

    def _event(self, kind: str, **kw: Any) -> None:
        self._t += 0.001
        kw.setdefault("t", self._t)
        self.events.append({"kind": kind, **kw})

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One flat row per context that logged something: loops, args, last values."""
        out = []
        for ctx, vals in sorted(self.values.items()):
            out.append({"run_id": self.run_id, **self.args, **self.ctx_loops[ctx], **vals})
        return out

    def write(self, repo: Path, segment_size: int = 0) -> Path:
        """Write run.json and the segments (``segment_size`` events each; 0: one segment)."""
        import pyarrow as pa

        folder = layout.run_dir(repo, self.run_id)
        (folder / layout.SEGMENTS).mkdir(parents=True, exist_ok=True)
        doc = run_doc(
            self.run_id, self.args, vid=self.vid, filename=self.filename, tstamp=self.tstamp
        )
        layout.atomic_write_json(folder / layout.RUN_JSON, doc)
        size = segment_size or max(1, len(self.events))
        for n, start in enumerate(range(0, len(self.events), size), start=1):
            cols: dict[str, list[Any]] = {f: [] for f in first_format_schema().names}
            for ev in self.events[start : start + size]:
                vtype, v_int, v_float, v_str = split_value(ev.get("value"))
                row = {
                    "kind": ev["kind"],
                    "seq": ev.get("seq"),
                    "ctx": ev.get("ctx"),
                    "parent": ev.get("parent"),
                    "name": ev.get("name"),
                    "iteration": ev.get("iteration"),
                    "vtype": vtype,
                    "v_int": v_int,
                    "v_float": v_float,
                    "v_str": v_str,
                    "t": ev.get("t"),
                }
                for k, v in row.items():
                    cols[k].append(v)
            write_segment(folder / layout.SEGMENTS, n, pa.table(cols, schema=first_format_schema()))
        return folder


def write_bulk_run(
    repo: Path,
    run_id: str,
    args: dict[str, Any],
    *,
    epochs: int,
    steps: int,
    step_names: Sequence[str] = ("loss",),
    epoch_names: Sequence[str] = ("val_acc",),
    seed: int = 0,
    tstamp: datetime | None = None,
    vid: str = "v1",
    filename: str = "train.py",
) -> int:
    """Write a regular run (``epochs`` x ``steps``, float logs) with numpy; returns log records."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    folder = layout.run_dir(repo, run_id)
    (folder / layout.SEGMENTS).mkdir(parents=True, exist_ok=True)
    ts = tstamp or BASE_TIME + timedelta(seconds=seed)
    doc = run_doc(run_id, args, vid=vid, filename=filename, tstamp=ts)
    layout.atomic_write_json(folder / layout.RUN_JSON, doc)
    per_epoch = 1 + steps
    kinds: list[Any] = []
    ks, ns, seq_total = len(step_names), len(epoch_names), 0
    for e in range(epochs):
        ectx = 1 + e * per_epoch
        sctx = ectx + 1 + np.arange(steps)
        n_logs = steps * ks + ns
        seq = seq_total + np.arange(n_logs)
        seq_total += n_logs
        log_ctx = np.concatenate([np.repeat(sctx, ks), np.full(ns, ectx)])
        log_name = list(step_names) * steps + list(epoch_names)
        cols = {
            "kind": ["loop"] + ["loop"] * steps + ["end"] * steps + ["end"] + ["log"] * n_logs,
            "seq": [None] * (2 * steps + 2) + seq.tolist(),
            "ctx": [ectx, *sctx.tolist(), *sctx.tolist(), ectx, *log_ctx.tolist()],
            "parent": [0] + [ectx] * steps + [None] * (steps + 1 + n_logs),
            "name": ["epoch"] + ["step"] * steps + [None] * (steps + 1) + log_name,
            "iteration": [e, *range(steps)] + [None] * (steps + 1 + n_logs),
            "vtype": ["int"] * (steps + 1) + ["null"] * (steps + 1) + ["float"] * n_logs,
            "v_int": [e, *range(steps)] + [None] * (steps + 1 + n_logs),
            "v_float": [None] * (2 * steps + 2) + rng.random(n_logs).tolist(),
            "v_str": [None] * (2 * steps + 2 + n_logs),
            "t": [1.7e9 + e]
            + [1.7e9 + e] * steps
            + [0.01] * steps
            + [0.01 * steps + 0.1]
            + [None] * n_logs,
        }
        kinds.append(pa.table(cols, schema=first_format_schema()))
        write_segment(folder / layout.SEGMENTS, e + 1, kinds[-1])
        kinds.clear()
    return seq_total


def first_format_schema() -> pa.Schema:
    """Segments as florsql first wrote them (an ``end`` row per iteration, no ``seconds``):
    the fixtures keep the reader of that format exercised."""
    import pyarrow as pa

    from florsql.store.segments import schema

    return pa.schema([f for f in schema() if f.name != "seconds"])


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


# -- the planner fixtures' history -------------------------------------------------------------

FIXTURE_SCRIPT = """
import florsql as flor

lr = flor.arg("lr", 0.1)
opt = flor.arg("opt", "sgd")
flor.log("pre", 1)
for epoch in flor.loop("epoch", range(4)):
    for step in flor.loop("step", range(3)):
        flor.log("loss", lr * step)
        flor.log("grad", 2 * lr)
    flor.log("acc", epoch / 4)
    flor.log("val", epoch / 8)
flor.log("final", 1.0)
flor.log("summary", 2.0)
"""

EVAL_SCRIPT = """
import florsql as flor

flor.log("score", 0.5)
"""


def fixture_history(repo: Path) -> Path:
    """Runs r1-r3 of train.py (recorded: loss, acc, final; hindsight: pre, grad, val, summary)
    and r4 of eval.py. r1 is version v1, the others v2; r1 and r2 have a checkpoint after the
    step loop of every epoch, r3 none."""
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "train.py").write_text(FIXTURE_SCRIPT.lstrip())
    (repo / "eval.py").write_text(EVAL_SCRIPT.lstrip())
    specs = [("r1", 0.1, "sgd", "v1"), ("r2", 0.2, "sgd", "v2"), ("r3", 0.3, "adam", "v2")]
    for i, (run_id, lr, opt, vid) in enumerate(specs):
        b = RunBuilder(run_id, {"lr": lr, "opt": opt}, vid=vid, tstamp=BASE_TIME + timedelta(i))
        for epoch in range(4):
            with b.loop("epoch", epoch, epoch, seconds=10.0):
                for step in range(3):
                    with b.loop("step", step, step, seconds=3.0):
                        b.log("loss", lr * step)
                b.log("acc", epoch / 4)
        b.log("final", 1.0)
        folder = b.write(repo)
        if run_id != "r3":
            write_manifest(folder, "epoch", range(4), "after:step", 1000)
    b = RunBuilder("r4", {}, vid="v2", filename="eval.py", tstamp=BASE_TIME + timedelta(5))
    b.log("score", 0.5)
    b.write(repo)
    return repo


def write_manifest(
    folder: Path, loop: str, iterations: Iterable[int], position: str, size: int
) -> None:
    """A checkpoint manifest as the record API writes it (the files themselves are not read)."""
    lines = [
        json.dumps(
            {
                "loop": loop,
                "iteration": it,
                "position": position,
                "file": f"{loop}-{it}.ckpt",
                "bytes": size,
                "copy_seconds": 0.01,
                "write_seconds": 0.02,
            }
        )
        for it in iterations
    ]
    path = folder / layout.CHECKPOINTS / layout.MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
