"""A run's strings in the run's order: string hashing and replay.

Found as a stranger: a character model's script builds its vocabulary as ``list(set(text))``,
whose order follows the process's string hashing, random per process unless ``PYTHONHASHSEED``
fixes it. Every replay ran with ``PYTHONHASHSEED=0``: it restored the run's weights and encoded
the text with another ``stoi``, and its hindsight values were computed on the wrong encoding,
silently (measured: the probability of ``e`` after ``h`` came back 0.036 to 0.010 over 4 epochs
where a run of the patched script gives 0.27 to 0.90).

Now a run keeps its ``PYTHONHASHSEED`` when fixed (``hash_seed`` in run.json) and its replays
hash with it (a fresh interpreter where the seed is not the warm worker's 0), so their values
equal a run of the patched script with that seed (the oracle); a run with random hashing is
replayed as before, but the replay sees its strings in another order than the run noted as its
loop started (``florsql.record.order``) and the query says so, naming them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from florsql.engine.session import Engine
from florsql.errors import NondeterminismWarning
from florsql.record import order
from florsql.replay import LocalExecutor, PlanExecutor
from tests.helpers import make_repo, run_dirs, write

CHARS = """
import torch
import torch.nn.functional as F
import florsql as flor

text = "hello world, the quick brown fox jumps over the lazy dog. " * 6
chars = list(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text])
torch.manual_seed(0)
model = torch.nn.Embedding(len(chars), len(chars))
opt = torch.optim.SGD(model.parameters(), lr=0.5)
with flor.checkpointing(model=model, optimizer=opt):
    for epoch in flor.loop("epoch", range(3)):
        for i in flor.loop("step", range(0, len(data) - 9, 8)):
            x, y = data[i : i + 8], data[i + 1 : i + 9]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        flor.log("loss", loss.item())
"""
AFTER = '        flor.log("loss", loss.item())\n'
P_E = '        flor.log("p_e", model(torch.tensor([stoi["h"]])).softmax(-1)[0, stoi["e"]].item())\n'
TODAY = CHARS.replace(AFTER, AFTER + P_E)
SQL = "SELECT epoch, loss, p_e FROM logs ORDER BY epoch"


def _record(repo: Path, seed: str | None) -> None:
    """Run the script as a user would, with ``PYTHONHASHSEED`` set to ``seed`` (None: unset,
    the interpreter's default of random hashing)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    if seed is not None:
        env["PYTHONHASHSEED"] = seed
    env["FLORSQL_CHECKPOINT_PERIOD"] = "1"
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _query(repo: Path, replay: str) -> tuple[list[dict[str, Any]], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Engine(repo, replay=replay, executor=PlanExecutor(LocalExecutor(1))) as eng:
            rows = eng.execute(SQL).table.to_pylist()
    said = [str(w.message) for w in caught if issubclass(w.category, NondeterminismWarning)]
    return rows, said


def _run_doc(repo: Path) -> dict[str, Any]:
    (run,) = run_dirs(repo)
    return json.loads((run / "run.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.slow  # two recorded runs and a replay each: the default run keeps the next test
@pytest.mark.parametrize("seed", ["123", "0"])
def test_a_run_with_a_fixed_hash_seed_replays_with_it(tmp_path: Path, seed: str) -> None:
    """``PYTHONHASHSEED=123``: the replay task starts a fresh interpreter with it (0: the warm
    worker's own); the values equal a run of today's script with the same seed."""
    repo = make_repo(tmp_path / "r", {"train.py": CHARS})
    _record(repo, seed)
    doc = _run_doc(repo)
    assert doc["hash_seed"] == seed
    assert {"chars", "stoi"} <= set(doc["orders"]["names"]) and doc["orders"]["loop"] == "epoch"
    write(repo / "train.py", TODAY)
    got, said = _query(repo, "auto")
    ref = make_repo(tmp_path / "o", {"train.py": TODAY})
    _record(ref, seed)
    want, _ = _query(ref, "off")
    assert [r["p_e"] for r in got] == [r["p_e"] for r in want] and len(got) == 3
    assert not said, said


def test_a_run_with_random_hashing_is_said_to_hold_its_strings_in_another_order(
    tmp_path: Path,
) -> None:
    """No ``PYTHONHASHSEED``: no replay can give the run's order; the query warns, naming the
    vocabulary, and a later read of the stored values says so again."""
    repo = make_repo(tmp_path / "r", {"train.py": CHARS})
    _record(repo, None)
    assert _run_doc(repo)["hash_seed"] is None
    write(repo / "train.py", TODAY)
    rows, said = _query(repo, "auto")
    assert all(r["p_e"] is not None for r in rows) and len(rows) == 3
    text = "\n".join(said)
    assert "chars" in text and "stoi" in text and "PYTHONHASHSEED" in text, said
    _, again = _query(repo, "auto")  # stored values: the read says it
    assert any("another order" in s for s in again), again


def test_a_runs_order_is_noted_once_and_only_for_strings(tmp_path: Path) -> None:
    script = """
import florsql as flor
names = ["b", "a", "c"]
nums = [3, 1, 2]
same = ["x", "x"]
table = {"k1": "v", "k0": "w"}
for epoch in flor.loop("epoch", range(2)):
    later = ["q", "p"]
    flor.log("n", len(names))
for again in flor.loop("again", range(1)):
    flor.log("m", 1)
"""
    repo = make_repo(tmp_path / "r", {"train.py": script})
    _record(repo, "0")
    orders = _run_doc(repo)["orders"]
    assert orders["loop"] == "epoch"
    assert set(orders["names"]) == {"names", "table", "table.values()"}


def test_hash_seed_as_the_interpreter_has_it() -> None:
    code = "from florsql.record import order; print(order.hash_seed())"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    seen = {}
    for seed in ("0", "7", "random", None):
        extra = {} if seed is None else {"PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True
        )
        seen[seed] = out.stdout.strip()
    assert seen == {"0": "0", "7": "7", "random": "None", None: "None"}


@given(
    st.lists(st.text(min_size=1, max_size=4), min_size=2, max_size=12, unique=True),
    st.randoms(use_true_random=False),
)
def test_reordered_flags_the_same_strings_in_another_order_only(items: list[str], rnd: Any) -> None:
    recorded = order.digests({"v": items, "d": dict.fromkeys(items, "x")})
    moved = list(items)
    rnd.shuffle(moved)
    got = order.reordered(recorded, {"v": moved, "d": dict.fromkeys(moved, "x")})
    assert got == ([] if moved == items else ["v", "d"])
    # other strings (a changed vocabulary) are not an order: nothing said
    assert order.reordered(recorded, {"v": [*items, "\x00new"], "d": {}}) == []
