"""Session 48 (sweep O): recording must never change how the script iterates.

florsql kept one stack of open loops and, taking a loop still open above an ending
iteration as left, closed its generator. Loops the script keeps open on purpose stopped
early, silently: a stream of batches made before the epoch loop and read two per epoch (2
batches of 6), ``zip(flor.loop("train"), flor.loop("val"))`` (1 pair of 3), two generators
each owning a ``flor.loop`` read in turn, a warm-up ``for`` with ``break`` then a second
``for`` over the same loop ([0, 1, 2] of 0..5), two asyncio tasks each with a loop (1 of 4),
a thread's loop beside the main one (3 of 10 epochs). Now such a loop is taken as left but
its generator stays open: iterated on, it is the same loop entered again where the script
then is, its iterations numbered on; the run's document names it, and a replay of such a run
runs it whole (what the loop had got to is in no checkpoint). A loop another thread
iterates while the recording thread's loops are open only passes its items on, with a
warning.

Oracle: the same script with a pass-through ``flor.loop`` (its items, nothing else), and,
for replays, a run of today's script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import florsql
from tests.helpers import make_repo, run_dirs, run_script, write

#: pattern -> (script, what it prints iterated with a pass-through flor.loop)
PATTERNS = {
    "zip": (
        "n = 0\n"
        "for a, b in zip(flor.loop('train', range(3)), flor.loop('val', range(3))):\n"
        "    n += 1\n"
        "    flor.log('ab', a * 10 + b)\n"
        "print(n)\n",
        "3",
    ),
    "generators_in_turn": (
        "def g(name):\n"
        "    for i in flor.loop(name, range(3)):\n"
        "        yield i\n"
        "a, b = g('A'), g('B')\n"
        "print([(next(a, None), next(b, None)) for _ in range(3)])\n",
        "[(0, 0), (1, 1), (2, 2)]",
    ),
    "warm_up_then_resume": (
        "steps = flor.loop('step', range(6))\n"
        "seen = []\n"
        "for s in steps:\n"
        "    seen.append(s)\n"
        "    if s == 2:\n"
        "        break\n"
        "flor.log('warm', 1)\n"
        "for s in steps:\n"
        "    seen.append(s)\n"
        "    flor.log('x', s)\n"
        "print(seen)\n",
        "[0, 1, 2, 3, 4, 5]",
    ),
    "resumed_without_a_log_between": (
        "steps = flor.loop('step', range(6))\n"
        "seen = []\n"
        "for s in steps:\n"
        "    seen.append(s)\n"
        "    if s == 2:\n"
        "        break\n"
        "for s in steps:\n"
        "    seen.append(s)\n"
        "    flor.log('x', s)\n"
        "print(seen)\n",
        "[0, 1, 2, 3, 4, 5]",
    ),
    "stream_across_epochs": (
        "stream = flor.loop('batch', range(100))\n"
        "got = []\n"
        "for e in flor.loop('epoch', range(3)):\n"
        "    for k, b in zip(range(2), stream):\n"
        "        got.append(b)\n"
        "        flor.log('b', b)\n"
        "print(got)\n",
        "[0, 1, 2, 3, 4, 5]",
    ),
    "a_generator_owning_the_epoch_loop": (
        "def batches():\n"
        "    for ep in flor.loop('epoch', range(2)):\n"
        "        for b in range(3):\n"
        "            yield ep, b\n"
        "got = []\n"
        "for ep, b in flor.loop('step', batches()):\n"
        "    got.append((ep, b))\n"
        "    flor.log('loss', ep * 10 + b)\n"
        "print(len(got))\n",
        "6",
    ),
    "asyncio_tasks": (
        "import asyncio\n"
        "got = {'actor': 0, 'learner': 0}\n"
        "async def actor():\n"
        "    for i in flor.loop('actor_step', range(4)):\n"
        "        got['actor'] += 1\n"
        "        await asyncio.sleep(0)\n"
        "async def learner():\n"
        "    for i in flor.loop('learner_step', range(4)):\n"
        "        got['learner'] += 1\n"
        "        flor.log('lv', i)\n"
        "        await asyncio.sleep(0)\n"
        "async def main():\n"
        "    await asyncio.gather(actor(), learner())\n"
        "asyncio.run(main())\n"
        "print(got)\n",
        "{'actor': 4, 'learner': 4}",
    ),
    # the thread's loop holds the stack (its first iteration waits) as the main loop starts
    "a_thread_s_loop_beside_the_main_one": (
        "import threading\n"
        "started, go = threading.Event(), threading.Event()\n"
        "def bg():\n"
        "    for k in flor.loop('bg', range(3)):\n"
        "        started.set()\n"
        "        go.wait()\n"
        "t = threading.Thread(target=bg)\n"
        "t.start()\n"
        "started.wait()\n"
        "n = 0\n"
        "for e in flor.loop('epoch', range(10)):\n"
        "    n += 1\n"
        "    go.set()\n"
        "t.join()\n"
        "print(n)\n",
        "10",
    ),
}

STUB = (
    "class flor:\n"
    "    loop = staticmethod(lambda name, it: iter(it))\n"
    "    log = staticmethod(lambda n, v: v)\n"
)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_the_script_iterates_as_without_florsql(tmp_path: Path, pattern: str) -> None:
    body, want = PATTERNS[pattern]
    repo = make_repo(tmp_path / "r", {"train.py": "import florsql as flor\n" + body})
    plain = tmp_path / "plain.py"
    plain.write_text(STUB + body)
    oracle = subprocess.run(
        [sys.executable, str(plain)], capture_output=True, text=True, check=True
    )
    assert oracle.stdout.strip() == want
    proc = run_script(repo, "train.py")
    assert proc.stdout.strip() == want, proc.stdout + proc.stderr
    if pattern == "a_thread_s_loop_beside_the_main_one":
        assert "runs in another thread than the open flor.loop 'bg'" in proc.stderr
    (run,) = run_dirs(repo)
    doc = json.loads((run / "run.json").read_text())
    assert doc["status"] == "finished"


def _rows(repo: Path, sql: str, replay: str = "off") -> list[tuple[object, ...]]:
    with florsql.connect(repo, replay=replay) as con:
        return list(con.cursor().execute(sql).fetchall())


def test_a_stream_read_across_epochs_is_recorded_where_each_batch_ran(tmp_path: Path) -> None:
    body, _ = PATTERNS["stream_across_epochs"]
    repo = make_repo(tmp_path / "r", {"train.py": "import florsql as flor\n" + body})
    run_script(repo, "train.py")
    rows = _rows(repo, "SELECT epoch, batch, b FROM logs WHERE b IS NOT NULL ORDER BY b")
    assert rows == [(0, 0, 0), (0, 1, 1), (1, 2, 2), (1, 3, 3), (2, 4, 4), (2, 5, 5)]
    (run,) = run_dirs(repo)
    assert json.loads((run / "run.json").read_text())["resumed_loops"] == ["batch"]


def test_a_loop_resumed_after_a_break_is_numbered_on(tmp_path: Path) -> None:
    body, _ = PATTERNS["warm_up_then_resume"]
    repo = make_repo(tmp_path / "r", {"train.py": "import florsql as flor\n" + body})
    run_script(repo, "train.py")
    rows = _rows(repo, "SELECT step, x FROM logs WHERE x IS NOT NULL ORDER BY step")
    assert rows == [(3, 3), (4, 4), (5, 5)]
    assert _rows(repo, "SELECT warm FROM logs WHERE warm IS NOT NULL") == [(1,)]


STREAM_V1 = """import torch
import florsql as flor
torch.manual_seed(0)
net = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.05)
data = [torch.randn(4, 3) for _ in range(12)]
stream = flor.loop("batch", data)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        for k, X in zip(range(3), stream):
            loss = net(X).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", round(loss.item(), 6))
#@step
        flor.log("w", round(float(net.weight.sum()), 6))
#@epoch
"""


@pytest.mark.slow
def test_a_run_with_a_resumed_loop_replays_whole_and_exact(tmp_path: Path) -> None:
    """Differential: a stream of batches read three per epoch; today's statements at step and
    epoch level. A task restoring epoch 2's checkpoint would start the stream again at its
    first batch: the planner replays such a run whole and says why."""
    new = STREAM_V1.replace("#@step\n", '            flor.log("xs", round(float(X.sum()), 6))\n')
    new = new.replace("#@epoch\n", '        flor.log("b", round(float(net.bias.sum()), 6))\n')
    repo = make_repo(tmp_path / "r", {"train.py": STREAM_V1})
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    env = {"FLORSQL_CHECKPOINT_PERIOD": "1"}
    run_script(repo, "train.py", **env)
    run_script(oracle, "train.py", **env)
    write(repo / "train.py", new)
    with florsql.connect(repo, replay="auto") as con:
        plan = "\n".join(r[0] for r in con.cursor().execute("EXPLAIN SELECT b FROM logs"))
    assert "flor.loop('batch') on after the loop around it moved on" in plan, plan
    sql = "SELECT epoch, batch, xs FROM logs WHERE xs IS NOT NULL AND epoch >= 2 ORDER BY 2"
    want = _rows(oracle, sql)
    assert len(want) == 6 and [r[1] for r in want] == [6, 7, 8, 9, 10, 11]
    assert _rows(repo, sql, "auto") == want
    sql = "SELECT epoch, b FROM logs WHERE b IS NOT NULL ORDER BY 1"
    assert _rows(repo, sql, "auto") == _rows(oracle, sql)


@pytest.mark.slow
def test_zipped_loops_replay_like_today_s_run(tmp_path: Path) -> None:
    old = (
        "import florsql as flor\n"
        "acc = 0.0\n"
        "for a, b in zip(flor.loop('train', range(4)), flor.loop('val', range(4))):\n"
        "    acc = acc * 0.5 + a - b / 3\n"
        "    flor.log('acc', round(acc, 6))\n"
    )
    new = old + "    flor.log('twice', round(acc * 2 + b, 6))\n"
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    run_script(repo, "train.py")
    run_script(oracle, "train.py")
    write(repo / "train.py", new)
    sql = "SELECT train, val, twice FROM logs WHERE twice IS NOT NULL ORDER BY 1"
    want = _rows(oracle, sql)
    assert [r[:2] for r in want] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert _rows(repo, sql, "auto") == want
