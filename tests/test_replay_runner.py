"""The replay runner end to end: real worktrees, real worker processes, real index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from florsql.errors import ReplayError
from florsql.replay import LocalExecutor, Patch, Progress, RunRequest, run_replay
from florsql.store.index import Index
from tests.helpers import copy_repo, git, make_repo, run_dirs, write
from tests.helpers_replay import Job, warm_runs
from tests.replay_scripts import OLD, PATCHED

Values = dict[tuple[float, str, int | None, int | None], object]


def _requests(repo: Path, names: list[str], iterations: list[int] | None) -> list[RunRequest]:
    out = []
    for run in run_dirs(repo):
        doc = json.loads((run / "run.json").read_text())
        out.append(
            RunRequest(
                run_id=doc["run_id"],
                vid=doc["vid"],
                filename=doc["filename"],
                names=names,
                iterations=iterations,
                cwd=doc["cwd"],
                argv=doc["argv"],
                total=6,
                compare=["loss"],
            )
        )
    return out


def _hand_patched(vid: str, names: list[str], companions: list[str]) -> Patch:
    return Patch({"train.py": PATCHED})


def _values(repo: Path, table: str) -> Values:
    with Index.open(repo) as ix:
        ix.refresh()
        rows = ix.con.sql(
            f"""SELECT r.lr, v.name, e.iteration, s.iteration, v.value_float
            FROM {table} v JOIN runs r USING (run_id)
            LEFT JOIN ctx_path e ON e.run_id = v.run_id AND e.ctx_id = v.ctx_id
                 AND e.loop_name = 'epoch'
            LEFT JOIN ctx_path s ON s.run_id = v.run_id AND s.ctx_id = v.ctx_id
                 AND s.loop_name = 'step'"""
        ).fetchall()
    return {(lr, n, e, s): v for lr, n, e, s, v in rows}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Values]:
    base = tmp_path_factory.mktemp("sched")
    repo = make_repo(base / "repo", {"train.py": OLD, ".gitignore": "data/\n"})
    oracle = make_repo(base / "oracle", {"train.py": PATCHED})
    ck = {"FLORSQL_CHECKPOINT_PERIOD": "2"}
    warm_runs(
        [Job(repo, "train.py", ("--lr", lr), ck) for lr in ("0.1", "0.3")],
        [Job(oracle, "train.py", ("--lr", lr)) for lr in ("0.1", "0.3")],
    )
    return repo, _values(oracle, "log_records")


def _fresh_copy(history: tuple[Path, Values], tmp_path: Path) -> Path:
    """A copy of the recorded repo, so each test replays from nothing."""
    import shutil

    repo = tmp_path / "repo"
    copy_repo(history[0], repo)
    shutil.rmtree(repo / ".florsql" / "index.duckdb", ignore_errors=True)
    for p in (repo / ".florsql").glob("index.*"):
        p.unlink()
    return repo


@pytest.mark.parametrize(
    ("names", "iterations"),
    [
        (["wnorm"], [1, 3, 4]),
        pytest.param(["grad_norm"], [4, 5], marks=pytest.mark.slow),
        pytest.param(["lr_now", "final_w"], None, marks=pytest.mark.slow),
    ],
)
def test_replayed_values_equal_the_oracle(
    history: tuple[Path, Values], tmp_path: Path, names: list[str], iterations: list[int] | None
) -> None:
    repo = _fresh_copy(history, tmp_path)
    report = run_replay(
        repo,
        _requests(repo, names, iterations),
        patcher=_hand_patched,
        executor=LocalExecutor(2),
    )
    assert not report.failures and report.results
    got = _values(repo, "replay_log_records")
    want = {
        k: v
        for k, v in history[1].items()
        if k[1] in names and (iterations is None or k[2] is None or k[2] in iterations)
    }
    assert got == want


def test_parallel_equals_serial_and_warm_equals_cold(
    history: tuple[Path, Values], tmp_path: Path
) -> None:
    answers = []
    for k, executor in enumerate([LocalExecutor(1, warm=False), LocalExecutor(2, warm=True)]):
        repo = _fresh_copy(history, tmp_path / str(k))
        reqs = _requests(repo, ["grad_norm", "wnorm"], [0, 1, 2, 3, 4, 5])
        run_replay(repo, reqs, patcher=_hand_patched, executor=executor)
        answers.append(_values(repo, "replay_log_records"))
    assert answers[0] == answers[1] and len(answers[0]) == 2 * (6 * 6 + 6)


def test_progress_is_reported(history: tuple[Path, Values], tmp_path: Path) -> None:
    repo = _fresh_copy(history, tmp_path)
    seen: list[Progress] = []
    run_replay(
        repo,
        _requests(repo, ["wnorm"], [2, 3]),
        patcher=_hand_patched,
        executor=LocalExecutor(2),
        progress=seen.append,
    )
    assert seen[0].tasks_done == 0 and seen[-1].tasks_done == seen[-1].tasks_total
    assert seen[-1].iterations_done == seen[-1].iterations_total


def test_user_tree_is_untouched_and_ignored_data_is_reachable(
    history: tuple[Path, Values], tmp_path: Path
) -> None:
    repo = _fresh_copy(history, tmp_path)
    write(repo / "data" / "scale.txt", "3.0\n")
    reading = PATCHED.replace(
        'flor.log("wnorm", ',
        'flor.log("wnorm", float(open("data/scale.txt").read()) * ',
    )
    before = (
        git(repo, "status", "--porcelain"),
        git(repo, "stash", "list"),
        git(repo, "rev-parse", "HEAD"),
        (repo / ".git" / "index").read_bytes(),
        (repo / "train.py").read_text(),
        git(repo, "for-each-ref", "refs/heads", "refs/tags", "refs/stash"),
    )
    run_replay(
        repo,
        _requests(repo, ["wnorm"], [4]),
        patcher=lambda vid, names, companions: Patch({"train.py": reading}),
        executor=LocalExecutor(1),
    )
    after = (
        git(repo, "status", "--porcelain"),
        git(repo, "stash", "list"),
        git(repo, "rev-parse", "HEAD"),
        (repo / ".git" / "index").read_bytes(),
        (repo / "train.py").read_text(),
        git(repo, "for-each-ref", "refs/heads", "refs/tags", "refs/stash"),
    )
    assert after == before
    got = _values(repo, "replay_log_records")
    for (lr, _, e, _), v in got.items():
        assert v == pytest.approx(3.0 * history[1][(lr, "wnorm", e, None)])


def test_failures_report_version_iteration_and_keep_finished_values(
    history: tuple[Path, Values], tmp_path: Path
) -> None:
    repo = _fresh_copy(history, tmp_path)
    lrs = {r.name: json.loads((r / "run.json").read_text())["args"]["lr"] for r in run_dirs(repo)}
    bad = PATCHED.replace(
        '        flor.log("wnorm"', '        assert lr < 0.2, "boom"\n        flor.log("wnorm"'
    )
    with pytest.raises(ReplayError) as err:
        run_replay(
            repo,
            _requests(repo, ["wnorm"], [4]),
            patcher=lambda vid, names, companions: Patch({"train.py": bad}),
            executor=LocalExecutor(2),
        )
    text = str(err.value)
    assert "1 of 2 replay tasks failed (1 finished and kept)" in text
    assert "at epoch 4" in text and "AssertionError: boom" in text
    got = _values(repo, "replay_log_records")
    assert {k[0] for k in got} == {lr for lr in lrs.values() if lr < 0.2}


def test_unplaceable_statement_is_reported_not_guessed(
    history: tuple[Path, Values], tmp_path: Path
) -> None:
    repo = _fresh_copy(history, tmp_path)
    report = run_replay(
        repo,
        _requests(repo, ["wnorm"], [1]),
        patcher=lambda vid, names, companions: Patch({}, {"wnorm": "unbound name 'net2'"}),
        executor=LocalExecutor(1),
    )
    assert report.results == [] and report.unplaced[0].endswith("wnorm: unbound name 'net2'")


def test_ray_executor_gives_the_same_values(
    history: tuple[Path, Values], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray  # installed by the dev extras (optional for users: florsql[ray])

    from florsql.replay import RayExecutor

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    repo = _fresh_copy(history, tmp_path)
    try:
        executor = RayExecutor(2)
        # Warmed up while a query would be planned: the tasks fork from those zygotes.
        executor.prewarm([repo / "train.py"], repo)
        assert executor.warming is not None and len(executor.warming) == 2
        warm = {pid for _, pid in ray.get(executor.warming)}
        executor.prewarm([repo / "train.py"], repo)  # once per executor
        report = run_replay(
            repo, _requests(repo, ["wnorm"], [1, 4]), patcher=_hand_patched, executor=executor
        )
    finally:
        ray.shutdown()
    assert report.results and not report.failures
    assert len(warm) == 2 and None not in warm
    assert {pid for _, pid in executor.forked_from.values()} <= warm
    got = _values(repo, "replay_log_records")
    want = {k: v for k, v in history[1].items() if k[1] == "wnorm" and k[2] in (1, 4)}
    assert got == want
