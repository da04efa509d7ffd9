"""The planner: golden replay sets, chunks from checkpoints, EXPLAIN, the rewrite runs."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from florsql.engine import Engine
from florsql.plan.explain import explain_lines, ranges
from florsql.plan.replay_plan import ReplayPlan, RunReplay
from florsql.plan.tasks import TASK_OVERHEAD_S
from tests.helpers_sql import fixture_history


@dataclass(frozen=True)
class PlanCase:
    """One case of a ``tests/fixtures/plan/*.sql`` file."""

    title: str
    sql: str
    params: list[Any]
    expected: list[str]


def read_cases(path: Path) -> list[PlanCase]:
    """Cases start at ``-- title:``; then ``-- params: [json]`` (optional), the query, and after
    ``-- expect`` the expected lines, each behind ``-- ``."""
    cases: list[PlanCase] = []
    block: list[str] = []
    for line in [*path.read_text().splitlines(), "-- title: <end>"]:
        if line.startswith("-- title:"):
            if block:
                cases.append(_case(block))
            block = [line]
        elif block:
            block.append(line)
    return cases


def _case(block: list[str]) -> PlanCase:
    title = block[0].removeprefix("-- title:").strip()
    params: list[Any] = []
    sql: list[str] = []
    expected: list[str] = []
    in_expect = False
    for line in block[1:]:
        if line.strip() == "-- expect":
            in_expect = True
        elif in_expect:
            if line.startswith("-- "):
                expected.append(line[3:])
        elif line.startswith("-- params:"):
            params = json.loads(line.removeprefix("-- params:"))
        elif line.strip():
            sql.append(line)
    return PlanCase(title, "\n".join(sql).rstrip(";"), params, expected)


def render_plan(plan: ReplayPlan) -> list[str]:
    """The replay set of a :class:`~florsql.plan.replay_plan.ReplayPlan`, as fixture lines."""
    from florsql.plan.explain import ranges

    lines = []
    for i, pushed in enumerate(plan.pushed):
        label = "pushed" if len(plan.pushed) == 1 else f"pushed#{i + 1}"
        lines.append(f"{label}: {pushed}")
    if plan.limit_runs is not None:
        lines.append(f"limit: {', '.join(plan.limit_runs) or '(no runs)'}")
    for run in plan.runs():
        per: dict[str, list[int]] = {}
        inner: dict[str, set[int]] = {}
        for need in run.needs:
            for name in need.names:
                per.setdefault(name, []).append(need.iteration)
            for r in need.inner:
                inner.setdefault(r.loop, set()).update(r.iterations)
        parts = [f"{n} {ranges(v)}" for n, v in sorted(per.items())]
        parts += [f"{n} top" for n in run.top_level]
        tail = "".join(f" | {lp} {ranges(sorted(v))}" for lp, v in sorted(inner.items()))
        lines.append(f"{run.run_id}: {'; '.join(parts)}{tail}")
    if plan.empty:
        lines.append("(nothing to replay)")
    return lines


FIXTURES = sorted((Path(__file__).parent / "fixtures" / "plan").glob("*.sql"))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    repo = fixture_history(tmp_path_factory.mktemp("plan") / "repo")
    with Engine(repo) as eng:
        yield eng


def check_file(engine: Engine, path: Path) -> None:
    """Every case of a golden file plans to its expected replay set, and its rewrite runs."""
    failures = []
    for case in read_cases(path):
        got = render_plan(engine.plan(case.sql, case.params).replay)
        if got != case.expected:
            failures.append(f"{case.title}\n  expected {case.expected}\n  got      {got}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            engine.execute(case.sql, case.params)  # the rewritten SQL runs on DuckDB
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_golden(engine: Engine, path: Path) -> None:
    check_file(engine, path)


def test_fixture_files_cover_the_required_cases() -> None:
    titles = " ".join(c.title for p in FIXTURES for c in read_cases(p)).lower()
    for word in ("and", "or", "in", "between", "not", "parameter", "cte", "subquery", "self-join"):
        assert word in titles, word
    assert "hindsight column stays residual" in titles


def _run(engine: Engine, sql: str, run_id: str) -> tuple[RunReplay, ReplayPlan]:
    plan = engine.plan(sql).replay
    return next(r for r in plan.runs() if r.run_id == run_id), plan


def test_chunk_starts_from_the_nearest_checkpoint_before_it(engine: Engine) -> None:
    run, _ = _run(engine, "SELECT grad FROM logs WHERE epoch >= 2", "r2")
    (chunk,) = run.chunks
    assert chunk.kind == "iterations" and chunk.iterations == (2, 3)
    assert chunk.checkpoint is not None and chunk.checkpoint.iteration == 1
    # the task starts with the rest of epoch 1 (its after:step checkpoint), then runs 2 and 3
    assert chunk.checkpoint.position == "after:step" and chunk.start == 1
    assert [(s.iteration, s.mode) for s in chunk.steps] == [(1, "rest"), (2, "full"), (3, "full")]
    # start-up + rest of epoch 1 after its steps (10 - 3*3) + epochs 2, 3 (restores ~0 s),
    # less the checkpoints' own recorded copy and write (a replay takes none): a little
    assert TASK_OVERHEAD_S + 1 + 20 - 0.3 < chunk.seconds <= TASK_OVERHEAD_S + 1 + 20 + 0.01
    assert run.skip_inner == ()  # grad sits in the step loop


def test_without_checkpoints_a_chunk_runs_from_the_top(engine: Engine) -> None:
    run, _ = _run(engine, "SELECT grad FROM logs WHERE epoch >= 2", "r3")
    (chunk,) = run.chunks
    assert chunk.checkpoint is None and chunk.start == 0 and chunk.iterations == (2, 3)
    assert chunk.seconds == pytest.approx(TASK_OVERHEAD_S + 4 * 10)


def test_epoch_level_names_skip_the_inner_loop(engine: Engine) -> None:
    run, plan = _run(engine, "SELECT val FROM logs WHERE epoch IN (1, 3)", "r1")
    assert run.skip_inner == ("step",)
    assert all(n.inner_loops == () for n in run.needs)
    # each needed epoch has its own after:step checkpoint, and the rest of the body reads
    # nothing the step loop changes: two independent rest steps (in one task or two, as the
    # estimate of each compares with MIN_TASK_S)
    steps = [s for c in run.chunks for s in c.steps]
    assert [(s.iteration, s.mode, s.restore) for s in steps] == [(1, "rest", 1), (3, "rest", 3)]
    assert run.chunks[0].checkpoint is not None and run.chunks[0].checkpoint.iteration == 1
    # each needed epoch restores its own after:step checkpoint instead of running its steps:
    # start-up + the rest of each (10 - 3*3), less its checkpoint's own recorded copy and write
    rest = sum(c.seconds - TASK_OVERHEAD_S for c in run.chunks)
    assert 2 - 0.3 < rest <= 2 + 0.01
    assert plan.versions[0].skip_inner == ("step",)


def test_top_level_statements_become_head_and_tail_tasks(engine: Engine) -> None:
    run, _ = _run(engine, "SELECT pre, summary FROM logs WHERE run_id = 'r1'", "r1")
    assert {c.kind for c in run.chunks} == {"head", "tail"}
    tail = next(c for c in run.chunks if c.kind == "tail")
    assert tail.to_end and tail.checkpoint is not None and tail.checkpoint.iteration == 3
    assert run.top_level == ("pre", "summary") and run.needs == ()


def test_versions_group_runs_and_list_statements(engine: Engine) -> None:
    plan = engine.plan("SELECT grad, val FROM logs").replay
    assert [(v.vid, [r.run_id for r in v.runs]) for v in plan.versions] == [
        ("v1", ["r1"]),
        ("v2", ["r2", "r3"]),
    ]
    v2 = plan.versions[1]
    statements = [(s[0], s[2]) for s in v2.statements]
    assert statements == [("grad", ("epoch", "step")), ("val", ("epoch",))]
    assert plan.cost.runs == 3 and plan.cost.iterations == 12 and plan.cost.tasks == 3
    assert dict(plan.lacking) == {"grad": 3, "val": 3}
    assert dict(plan.unreplayable) == {"grad": 1, "val": 1}  # r4, an eval.py run


def test_explain_shows_plan_cost_and_sql(engine: Engine) -> None:
    result = engine.execute("EXPLAIN SELECT lr, avg(grad) FROM logs WHERE lr >= 0.2 GROUP BY lr")
    text = "\n".join(result.table.column("plan").to_pylist())
    assert text.startswith("Replay plan: 2 run(s), 8 outer iteration(s), 2 task(s)")
    assert "pushed into the replay set (logs): lr >= 0.2" in text
    assert "version v2 train.py: 2 run(s)" in text
    assert "statement: grad (train.py line 9, in epoch/step)" in text
    assert "task: epoch 0-3 from the top of the script" in text
    assert "inner loops skipped: none" in text
    assert "DuckDB SQL:" in text and "__flor_logs_1 AS logs" in text
    assert result.plan is not None and result.plan.cost.runs == 2


def test_explain_runs_nothing_and_warns_nothing(engine: Engine) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.execute("EXPLAIN SELECT grad FROM logs")


def test_explain_of_nothing_to_replay() -> None:
    assert explain_lines(ReplayPlan(), "SELECT 1")[0].startswith("Replay plan: nothing")
    assert ranges([3, 1, 2, 7]) == "1-3, 7"


def test_parameter_count_must_match(engine: Engine) -> None:
    from florsql.errors import PlanError

    with pytest.raises(PlanError, match="1 parameter"):
        engine.plan("SELECT val FROM logs WHERE lr = ?", [])
