"""Today's statement under other conditions than the version's, and runs that ran it as it is
(session 53).

1. The old script logs ``val`` under ``if epoch % 2 == 0:``, today's under ``if epoch % 3 ==
   0:`` (or the step-level ``g`` under other ``step`` guards, or an ``else`` branch only
   today's has). The run's epoch 3 stayed NULL, said nowhere: the catalog took the gaps for
   iterations today's guarded statement skips too, and propagation took today's statement for
   the old one (the same call, in the twin block). Now a statement's conditions (the guards
   between it and its loop's body, and the early exits before it) count: the run's other
   iterations are replayed with today's statement placed under today's guard, and the values
   are the run's recorded ones plus today's where the run had none.
2. A run of a version that has today's statement as it is (guards and all) is not replayed in
   the iterations its guard skipped: it ran today's statement there, and a replay would log
   nothing either (before, every run of today's own code was replayed in each of those
   iterations once an older run lacked the name). EXPLAIN says so in a note.

Oracle: the old script recorded for real, and today's script recorded for real from the same
seed: where the old run has no value, today's.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import florsql
from tests.helpers import git, make_repo, run_script, write

HEAD = """import random
import florsql as flor

random.seed(3)
w = 1.0
with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(7)):
        for step in flor.loop("step", range(4)):
            w = w * 0.9 + random.random()
            flor.log("loss", round(w, 9))
"""

EPOCH_SQL = "SELECT epoch, val FROM logs WHERE step IS NULL AND val IS NOT NULL ORDER BY epoch"
STEP_SQL = "SELECT epoch, step, g FROM logs WHERE g IS NOT NULL ORDER BY epoch, step"

#: pattern -> (old tail, today's tail, query)
PATTERNS = {
    "every third epoch for every other": (
        '        if epoch % 2 == 0:\n            flor.log("val", round(w * 2, 9))\n',
        '        if epoch % 3 == 0:\n            flor.log("val", round(w * 2, 9))\n',
        EPOCH_SQL,
    ),
    "an else branch only today's has": (
        '        if epoch % 2 == 0:\n            flor.log("val", round(w * 2, 9))\n',
        '        if epoch % 2 == 0:\n            flor.log("val", round(w * 2, 9))\n'
        '        elif epoch == 5:\n            flor.log("val", round(w * 2, 9))\n',
        EPOCH_SQL,
    ),
    "step level": (
        '            if step % 2 == 0:\n                flor.log("g", round(w * 7, 9))\n',
        '            if step % 3 == 0:\n                flor.log("g", round(w * 7, 9))\n',
        STEP_SQL,
    ),
    "computed in the guard": (
        "        if epoch % 2 == 0:\n"
        "            acc = round(w * 3 + 1, 9)\n"
        '            flor.log("val", acc)\n',
        "        if epoch % 3 == 1:\n"
        "            acc = round(w * 3 + 1, 9)\n"
        '            flor.log("val", acc)\n',
        EPOCH_SQL,
    ),
}


def _values(repo: Path, sql: str) -> dict[tuple[int, ...], float]:
    with florsql.connect(repo, replay="off") as con, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {tuple(r[:-1]): r[-1] for r in con.cursor().execute(sql).fetchall()}


def _recorded(
    root: Path, old: str, today: str, sql: str
) -> tuple[Path, dict[tuple[int, ...], float], dict[tuple[int, ...], float]]:
    """A repository with a run of ``old``, and the values ``sql`` reads from real runs of
    ``old`` and of ``today`` in repositories of their own (the oracle)."""
    repo = make_repo(root / "r", {"train.py": old})
    run_script(repo, "train.py")
    was = make_repo(root / "was", {"train.py": old})
    run_script(was, "train.py")
    now = make_repo(root / "now", {"train.py": today})
    run_script(now, "train.py")
    return repo, _values(was, sql), _values(now, sql)


def _epoch_3_is_today_s(tmp_path: Path, old: str, today: str, *args: str) -> None:
    """The old run (``args`` on its command line) answers its recorded epochs 0, 2, 4, 6 and
    today's value at epoch 3, as a run of today's script with those args logs it."""
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py", *args)
    now = make_repo(tmp_path / "now", {"train.py": today})
    run_script(now, "train.py", *args)
    todays = _values(now, EPOCH_SQL)
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        got = con.cursor().execute(EPOCH_SQL).fetchall()
    assert [e for e, _ in got] == [0, 2, 3, 4, 6]
    assert dict(got)[3] == todays[(3,)]


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_the_iterations_today_s_guard_logs_in_are_replayed(tmp_path: Path, pattern: str) -> None:
    old_tail, today_tail, sql = PATTERNS[pattern]
    old, today = HEAD + old_tail, HEAD + today_tail
    repo, recorded, todays = _recorded(tmp_path, old, today, sql)
    want = sorted((*k, v) for k, v in {**todays, **recorded}.items())
    assert set(todays) - set(recorded), (todays, recorded)  # some value only today's logs
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cur = con.cursor()
        explain = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql).fetchall())
        got = [tuple(r) for r in cur.execute(sql).fetchall()]
        again = [tuple(r) for r in cur.execute(sql).fetchall()]
        after = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql).fetchall())
    assert got == want, (got, want)
    assert again == want
    assert "recorded it in some iterations only" in explain, explain
    assert "nothing to replay" in after, after  # the skipped iterations are covered now
    assert not [w for w in caught if "NULL" in str(w.message)], [str(w.message) for w in caught]


def test_runs_that_ran_today_s_statement_as_it_is_are_not_replayed(tmp_path: Path) -> None:
    """A run of today's very script and one of a version with today's guarded statement (and
    another edit) are left out; the run of a version without the name is replayed whole."""
    guarded = HEAD + '        if epoch % 3 == 0:\n            flor.log("val", round(w * 2, 9))\n'
    repo = make_repo(tmp_path / "r", {"train.py": HEAD})
    run_script(repo, "train.py")
    write(repo / "train.py", guarded.replace("w = 1.0\n", "w = 1.0\nprint('v2')\n"))
    git(repo, "commit", "-qam", "v2")
    run_script(repo, "train.py")
    write(repo / "train.py", guarded)
    git(repo, "commit", "-qam", "today")
    run_script(repo, "train.py")
    sql = "SELECT run_id, epoch, val FROM logs WHERE step IS NULL ORDER BY run_id, epoch"
    with florsql.connect(repo) as con:
        cur = con.cursor()
        runs = [r[0] for r in cur.execute("SELECT DISTINCT run_id FROM logs ORDER BY 1")]
        explain = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql).fetchall())
        got = cur.execute(sql).fetchall()
    assert len(runs) == 3
    assert f"run {runs[0]}: epoch 0-6 (val)" in explain, explain
    assert runs[1] not in explain and runs[2] not in explain, explain
    assert "val: 2 run(s) ran today's statement of it as it is" in explain, explain
    for run in runs:
        assert [(e, v) for r, e, v in got if r == run and v is not None] == [
            (e, v) for r, e, v in got if r == runs[2] and v is not None
        ]


def test_a_guard_that_cannot_be_placed_is_said_and_the_recorded_values_stay(
    tmp_path: Path,
) -> None:
    """Today's guard calls ``flor.arg`` itself: its statement cannot go into the old version.
    The run keeps its recorded values, and the query says what it could not compute (it was
    NULL, said nowhere, before)."""
    old = HEAD + '        if epoch % 2 == 0:\n            flor.log("val", round(w * 2, 9))\n'
    today = HEAD + (
        '        if epoch % flor.arg("every", 3) == 0:\n'
        '            flor.log("val", round(w * 2, 9))\n'
    )
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = con.cursor().execute(EPOCH_SQL).fetchall()
    assert [e for e, _ in got] == [0, 2, 4, 6]
    said = [str(w.message) for w in caught]
    assert [m for m in said if "cannot compute val" in m], said


def test_today_s_guard_reading_a_new_arg_travels_with_it(tmp_path: Path) -> None:
    """``every = flor.arg("every", 3)`` before the loop, ``if epoch % every == 0:`` today: the
    binding travels with the statement, and the run's epoch 3 is today's value."""
    old = HEAD + '        if epoch % 2 == 0:\n            flor.log("val", round(w * 2, 9))\n'
    today = HEAD.replace("w = 1.0\n", "w = 1.0\nevery = flor.arg('every', 3)\n") + (
        '        if epoch % every == 0:\n            flor.log("val", round(w * 2, 9))\n'
    )
    _epoch_3_is_today_s(tmp_path, old, today)


GUARDS = [
    None,
    "epoch % 2 == 0",
    "epoch % 3 == 0",
    "epoch % 3 == 1",
    "epoch in (1, 4)",
    "epoch > 3",
    "epoch < 2 or epoch == 5",
]


def _guarded(guard: str | None, orelse: str | None = None) -> str:
    log = 'flor.log("val", round(w * 2 + epoch, 9))\n'
    if guard is None:
        return "        " + log
    text = f"        if {guard}:\n            {log}"
    if orelse is not None:
        text += f"        elif {orelse}:\n            {log}"
    return text


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    old=st.sampled_from(GUARDS[1:]),
    today=st.sampled_from(GUARDS),
    orelse=st.sampled_from([None, "epoch == 6"]),
)
def test_generated_guard_pairs_answer_the_recorded_values_and_today_s_elsewhere(
    old: str, today: str | None, orelse: str | None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Any old guard against any of today's (one may be the same: nothing is replayed then):
    the recorded values, and today's where the run recorded none."""
    root = tmp_path_factory.mktemp("guards")
    old_text = HEAD + _guarded(old)
    today_text = HEAD + _guarded(today, orelse if today is not None else None)
    repo, recorded, todays = _recorded(root, old_text, today_text, EPOCH_SQL)
    want = sorted((*k, v) for k, v in {**todays, **recorded}.items())
    write(repo / "train.py", today_text)
    git(repo, "commit", "-qam", "today", "--allow-empty")
    with florsql.connect(repo) as con, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cur = con.cursor()
        got = [tuple(r) for r in cur.execute(EPOCH_SQL).fetchall()]
        explain = "\n".join(r[0] for r in cur.execute("EXPLAIN " + EPOCH_SQL).fetchall())
    assert got == want, (old, today, orelse, got, want)
    assert "nothing to replay" in explain, explain


#: sweep AA (session 53): today's statement under conditions its place in the old version
#: cannot have: (old tail, today's tail). The run keeps its recorded values, and the query
#: says what it cannot compute; before, an extra value today's code never logs (a ``continue``
#: today's code has before it was left behind), or NULL said nowhere.
UNPLACEABLE = {
    "today's continue left behind": (
        '        if epoch % 2 == 0:\n            flor.log("val", round(w * 2, 9))\n',
        "        if epoch == 3:\n            continue\n"
        '        if epoch % 3 == 0:\n            flor.log("val", round(w * 2, 9))\n',
    ),
    "the old continue before its place": (
        '        if epoch < 3:\n            continue\n        flor.log("val", round(w * 2, 9))\n',
        '        if epoch < 2:\n            continue\n        flor.log("val", round(w * 2, 9))\n',
    ),
    "the guard at the helper's call": (
        '        def evaluate():\n            flor.log("val", round(w * 2, 9))\n'
        "        if epoch % 2 == 0:\n            evaluate()\n",
        '        def evaluate():\n            flor.log("val", round(w * 2, 9))\n'
        "        if epoch % 3 == 0:\n            evaluate()\n",
    ),
    "a flag bound otherwise": (
        "        do_eval = epoch % 2 == 0\n"
        '        if do_eval:\n            flor.log("val", round(w * 2, 9))\n',
        "        do_eval = epoch % 3 == 0\n"
        '        if do_eval:\n            flor.log("val", round(w * 2, 9))\n',
    ),
}


@pytest.mark.parametrize("pattern", sorted(UNPLACEABLE))
def test_conditions_its_place_cannot_have_are_said(tmp_path: Path, pattern: str) -> None:
    old_tail, today_tail = UNPLACEABLE[pattern]
    repo = make_repo(tmp_path / "r", {"train.py": HEAD + old_tail})
    run_script(repo, "train.py")
    recorded = sorted((*k, v) for k, v in _values(repo, EPOCH_SQL).items())
    write(repo / "train.py", HEAD + today_tail)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [tuple(r) for r in con.cursor().execute(EPOCH_SQL).fetchall()]
    assert got == recorded, (got, recorded)
    said = [str(w.message) for w in caught]
    assert [m for m in said if "cannot compute val" in m], said


def test_a_new_arg_reads_the_old_run_s_command_line(tmp_path: Path) -> None:
    """Sweep AA: the old script hard-coded ``% 2``; today's reads ``flor.arg("every", 2)``,
    and the old run was launched with ``--every 3``, which its script never read. A run of
    today's script with that command line logs epoch 3; the replay took the default and left
    it NULL, said nowhere."""
    old = HEAD + '        if epoch % 2 == 0:\n            flor.log("val", round(w * 2, 9))\n'
    today = HEAD.replace("w = 1.0\n", "w = 1.0\nevery = flor.arg('every', 2)\n") + (
        '        if epoch % every == 0:\n            flor.log("val", round(w * 2, 9))\n'
    )
    _epoch_3_is_today_s(tmp_path, old, today, "--every", "3")


def test_a_run_of_an_unchanged_script_whose_module_gained_the_statement_is_replayed(
    tmp_path: Path,
) -> None:
    """Sweep AB: ``utils.evaluate()`` gains ``flor.log("val", ...)``, ``train.py`` is the same
    file in every version. The run did not run today's code (its module differs): it is
    replayed, not taken for a run of today's files (it was left NULL, said nowhere)."""
    train = (
        HEAD.replace("import florsql as flor\n", "import florsql as flor\nimport utils\n")
        + "        utils.evaluate(w)\n"
    )
    old_utils = "def evaluate(w):\n    return round(w * 2, 9)\n"
    new_utils = (
        "import florsql as flor\n\n\ndef evaluate(w):\n"
        '    flor.log("val", round(w * 2, 9))\n    return round(w * 2, 9)\n'
    )
    repo = make_repo(tmp_path / "r", {"train.py": train, "utils.py": old_utils})
    run_script(repo, "train.py")
    now = make_repo(tmp_path / "now", {"train.py": train, "utils.py": new_utils})
    run_script(now, "train.py")
    want = sorted((*k, v) for k, v in _values(now, EPOCH_SQL).items())
    write(repo / "utils.py", new_utils)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        got = [tuple(r) for r in con.cursor().execute(EPOCH_SQL).fetchall()]
    assert got == want and len(want) == 7, (got, want)


def test_a_helper_called_under_two_guards_is_not_taken_for_today_s_statement(
    tmp_path: Path,
) -> None:
    """Sweep AB: the old code calls ``evaluate()`` under ``if epoch % 2 == 0`` and ``if epoch
    == 5``, today's every epoch. The helper's statement is the same, but where it runs cannot
    be told: the run is replayed, and the iterations the old code does not get to are said
    (they were dropped as "ran today's statement as it is", NULL said nowhere)."""
    helper = '        def evaluate():\n            flor.log("val", round(w * 2, 9))\n'
    old = (
        HEAD
        + helper
        + (
            "        if epoch % 2 == 0:\n            evaluate()\n"
            "        if epoch == 5:\n            evaluate()\n"
        )
    )
    today = HEAD + helper + "        evaluate()\n"
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cur = con.cursor()
        explain = "\n".join(r[0] for r in cur.execute("EXPLAIN " + EPOCH_SQL).fetchall())
        got = cur.execute(EPOCH_SQL).fetchall()
    assert "as it is" not in explain, explain
    assert [e for e, _ in got] == [0, 2, 4, 5, 6]
    said = [str(w.message) for w in caught]
    assert [m for m in said if "NULL at epoch 1, 3" in m], said


TORCH = """import torch
import florsql as flor

torch.manual_seed(0)
net = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x, y = torch.randn(16, 4), torch.randn(16, 1)
with flor.checkpointing(net=net, opt=opt):
    for epoch in flor.loop("epoch", range(5)):
        for step in flor.loop("step", range(3)):
            loss = ((net(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        flor.log("loss", loss.item())
"""

TODAY_TORCH = TORCH + (
    '        flor.log("wn", round(float(net.weight.norm()), 6))\n'
    '        flor.log("out", round(float(net(x).sum()), 6))\n'
)


def test_a_run_whose_companion_may_draw_is_planned_from_its_start(tmp_path: Path) -> None:
    """Today's ``out`` runs the model, which may draw (a dropout): a task that skips
    iterations cannot see such a draw, so the run replays from its start, as EXPLAIN says and
    estimates (session 53: tasks that skipped iterations ran first and the runner replayed the
    run again from its start after them, which EXPLAIN's estimate left out). Once a replay of
    that code from the start has seen no draw up to an iteration, a query up to there restores
    checkpoints again."""
    repo = make_repo(tmp_path / "r", {"train.py": TORCH})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    now = make_repo(tmp_path / "now", {"train.py": TODAY_TORCH})
    run_script(now, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    sql = "SELECT epoch, wn FROM logs WHERE wn IS NOT NULL AND epoch {} ORDER BY epoch"
    want = _values(now, sql.format(">= 0"))
    write(repo / "train.py", TODAY_TORCH)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        cur = con.cursor()
        first = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql.format("= 2")).fetchall())
        got = cur.execute(sql.format("= 2")).fetchall()
        later = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql.format("<= 1")).fetchall())
        got += cur.execute(sql.format("<= 1")).fetchall()
    assert "epoch 0-2 full: from the run's start (out may draw" in first, first
    assert "from checkpoint" in later and "from the run's start" not in later, later
    assert sorted(got) == sorted((k[0], v) for k, v in want.items() if k[0] <= 2)
