"""Replay mode of the record runtime: values equal a full re-run of the hand-patched old code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from florsql.plan.patched import analyze_patched
from florsql.plan.replay_plan import CheckpointRef
from florsql.plan.tasks import RunFacts, plan_steps
from florsql.store.replays import DONE, FAILED, ReplaySpec, manifest_records
from florsql.store.segments import join_value, list_segments, read_segments
from tests.helpers import (
    make_repo,
    run_dirs,
    script_env,
    stop_replay_services,
    write,
)
from tests.helpers_replay import warm_script
from tests.replay_scripts import OLD, PATCHED

Key = tuple[str, int | None, int | None]


def _values(folder: Path, kinds: tuple[str, ...] = ("log",)) -> dict[Key, object]:
    """(name, epoch, step) -> value from a run's or a task's segments."""
    t = read_segments(list_segments(folder / "segments")).to_pylist()
    ctx: dict[int, tuple[int | None, int | None]] = {0: (None, None)}
    for r in t:
        if r["kind"] == "loop":
            e, s = ctx[r["parent"]]
            ctx[r["ctx"]] = (r["iteration"], s) if r["name"] == "epoch" else (e, r["iteration"])
    out: dict[Key, object] = {}
    for r in t:
        if r["kind"] in kinds:
            e, s = ctx[r["ctx"]]
            out[(r["name"], e, s)] = join_value(r["vtype"], r["v_int"], r["v_float"], r["v_str"])
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Key, object]]:
    """One recorded run of OLD (checkpoints every 2 epochs), and the oracle's full re-run."""
    base = tmp_path_factory.mktemp("replay")
    repo = make_repo(base / "old", {"train.py": OLD})
    warm_script(repo, "train.py", "--lr", "0.2", FLORSQL_CHECKPOINT_PERIOD="2")
    oracle = make_repo(base / "oracle", {"train.py": PATCHED})
    warm_script(oracle, "train.py", "--lr", "0.2")
    write(repo / "patched.py", PATCHED)
    return repo, _values(run_dirs(oracle)[0])


def _steps(repo: Path, names: list[str], iters: list[int], to_end: bool = False) -> list[list]:
    """The planner's steps for this run (its checkpoints and saved locals), as the engine's."""
    run = run_dirs(repo)[0]
    facts = RunFacts()
    facts.seconds["epoch"] = {i: (1.0, 0.5) for i in range(6)}
    for it, rec in manifest_records(run, "epoch").items():
        ref = CheckpointRef("epoch", it, rec["position"], rec["file"], rec["bytes"])
        facts.checkpoints.setdefault("epoch", {})[it] = ref
        names_restored = {n for frame in rec.get("restores", {}).values() for n in frame}
        facts.restores.setdefault("epoch", {})[it] = frozenset(names_restored)
    patched = analyze_patched(PATCHED, tuple(names))
    steps, _ = plan_steps("epoch", iters, patched, facts, to_end=to_end)
    return [[s.iteration, s.mode, s.restore] for s in steps]


def _replay(repo: Path, task: str, **kw: object) -> Path:
    run = run_dirs(repo)[0]
    out = repo.parent / "out" / task
    spec = ReplaySpec(
        replay_id="r",
        task_id=task,
        run_id=run.name,
        vid="v",
        run_dir=str(run),
        out_dir=str(out),
        total=6,
        loop="epoch",
        **kw,  # type: ignore[arg-type]
    )
    path = repo.parent / f"{task}.json"
    spec.write(path)
    proc = subprocess.run(
        [sys.executable, "patched.py", "--lr", "0.2"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=script_env(FLORSQL_REPLAY=str(path)),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / DONE).exists()
    return out


CASES = {
    "epoch-level after the inner loop, from checkpoints": (["wnorm"], [3, 4], "rest"),
    "epoch-level, an epoch without its own checkpoint": (["wnorm"], [1, 5], "full"),
    "step-level inside the inner loop": (["grad_norm"], [3], "full"),
    "step-level, two chunks": (["grad_norm"], [0, 4, 5], "full"),
    "before the inner loop": (["lr_now"], [2, 3], "full"),
}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=() if i < 2 else pytest.mark.slow) for i, c in enumerate(CASES)]
)
def test_replayed_values_equal_a_full_rerun(
    recorded: tuple[Path, dict[Key, object]], case: str
) -> None:
    repo, oracle = recorded
    names, iters, mode = CASES[case]
    steps = _steps(repo, names, iters)
    modes = {m for it, m, _ in steps if it in iters}
    assert mode in modes and (mode == "rest" or modes == {"full"})
    out = _replay(
        repo,
        case.replace(" ", "_").replace(",", ""),
        names=names,
        iterations=iters,
        steps=steps,
        compare=["loss", "acc"],
    )
    got = _values(out)
    want = {k: v for k, v in oracle.items() if k[0] in names and k[1] in iters}
    assert want and got == want
    checks = _values(out, ("check",))
    assert checks  # the old code's own statements ran too: verification has values
    for key, value in checks.items():
        assert oracle[key] == value


def test_after_the_loop_statement_runs_to_the_end(recorded: tuple[Path, dict[Key, object]]) -> None:
    repo, oracle = recorded
    steps = _steps(repo, ["final_w"], [], to_end=True)
    out = _replay(repo, "after", names=["final_w"], iterations=[], after_loop=True, steps=steps)
    assert _values(out) == {("final_w", None, None): oracle[("final_w", None, None)]}


def test_old_code_after_the_needed_iterations_never_runs(recorded: tuple[Path, dict]) -> None:
    repo, _ = recorded
    write(repo / "side.py", PATCHED + "\nopen('side_effect.txt', 'w').write('ran')\n")
    run = run_dirs(repo)[0]
    spec = ReplaySpec(
        replay_id="r",
        task_id="side",
        run_id=run.name,
        vid="v",
        run_dir=str(run),
        out_dir=str(repo.parent / "out" / "side"),
        names=["wnorm"],
        loop="epoch",
        iterations=[2],
        steps=_steps(repo, ["wnorm"], [2]),
        total=6,
    )
    spec.write(repo.parent / "side.json")
    subprocess.run(
        [sys.executable, "side.py"],
        cwd=repo,
        check=True,
        env=script_env(FLORSQL_REPLAY=str(repo.parent / "side.json")),
    )
    assert not (repo / "side_effect.txt").exists()
    assert set(_values(repo.parent / "out" / "side")) == {("wnorm", 2, None)}


def test_a_failing_replay_writes_its_failure_marker(recorded: tuple[Path, dict]) -> None:
    repo, _ = recorded
    write(
        repo / "bad.py",
        PATCHED.replace('        flor.log("wnorm"', '        1 / 0\n        flor.log("wnorm"'),
    )
    run = run_dirs(repo)[0]
    out = repo.parent / "out" / "bad"
    spec = ReplaySpec(
        replay_id="r",
        task_id="bad",
        run_id=run.name,
        vid="v",
        run_dir=str(run),
        out_dir=str(out),
        names=["wnorm"],
        loop="epoch",
        iterations=[4],
        steps=_steps(repo, ["wnorm"], [4]),
        total=6,
    )
    spec.write(repo.parent / "bad.json")
    proc = subprocess.run(
        [sys.executable, "bad.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=script_env(FLORSQL_REPLAY=str(repo.parent / "bad.json")),
    )
    assert proc.returncode == 1
    marker = json.loads((out / FAILED).read_text())
    assert marker["iteration"] == 4 and "ZeroDivisionError" in marker["error"]
    assert not (out / DONE).exists()


#: The phases a task's done.json times (seconds), as florsql.record.replay_mode.Phases says.
PHASES = ("start", "setup", "module", "load", "restore", "loop", "after", "write")


@pytest.mark.parametrize("start", ["fresh interpreter", "private zygote", "replay service"])
def test_done_marker_carries_the_tasks_phase_timings(
    recorded: tuple[Path, dict[Key, object]], start: str
) -> None:
    """done.json says where the task's time went; every way a task starts (a fresh
    interpreter, or a fork of a warm worker: the executor's own or the repository's service)
    fills every phase, and the replay's values are unchanged."""
    from florsql.replay.executors import LocalExecutor
    from florsql.replay.tasks import Task

    repo, oracle = recorded
    run = run_dirs(repo)[0]
    name = "timed_" + start.split()[-1]
    out = repo.parent / "out" / name
    steps = _steps(repo, ["wnorm"], [3, 4])
    spec = ReplaySpec(
        replay_id="r",
        task_id=name,
        run_id=run.name,
        vid="v",
        run_dir=str(run),
        out_dir=str(out),
        names=["wnorm"],
        loop="epoch",
        iterations=[3, 4],
        steps=steps,
        total=6,
    )
    spec_path = repo.parent / f"{name}.json"
    spec.write(spec_path)
    task = Task(spec, spec_path, repo, repo / "patched.py", repo, ["--lr", "0.2"])
    warm, service = start != "fresh interpreter", start == "replay service"
    executor = LocalExecutor(1, warm=warm, service=service)
    try:
        [result] = executor.run([task])
    finally:
        executor.close()
        stopped = stop_replay_services(repo.parent)
    assert result.ok, result
    assert bool(stopped) == service  # the task ran where the case says
    assert _values(out) == {k: v for k, v in oracle.items() if k[0] == "wnorm" and k[1] in (3, 4)}
    timings = json.loads((out / DONE).read_text())["timings"]
    assert set(timings) == {*PHASES, "total", "restores", "forked"}
    assert timings["forked"] is warm  # a fresh interpreter's start is counted apart (EXPLAIN)
    # One checkpoint load per restore the plan asked for, and no more.
    assert timings["restores"] == sum(1 for _, mode, restore in steps if restore is not None)
    assert timings["restores"] >= 1
    assert all(isinstance(timings[p], float) and timings[p] >= 0 for p in (*PHASES, "total"))
    assert timings["start"] > 0 and timings["module"] > 0 and timings["load"] > 0
    # The phases are consecutive pieces of the task's time (rounded to the microsecond).
    assert sum(timings[p] for p in PHASES) <= timings["total"] + 1e-4
    # Its rows leave in one segment at the end, not one per iteration (invisible until done).
    assert len(list_segments(out / "segments")) == 1
