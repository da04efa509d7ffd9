"""Recording, session 46: loop items that are numpy or torch scalars are kept.

``for lr in flor.loop("lr", np.array([0.1, 0.01]))`` (a sweep over a numpy grid),
``flor.loop("k", torch.arange(3))``: the items are ``np.float64``, ``np.str_`` and 0-d tensors,
not Python scalars, and the ``loops`` relation had NULL for every one of them (session 45's
sweep C). They are kept as the Python scalars they hold, in an outer loop (a row at a time)
and in an inner one (rows built in bulk), both ways (``FLORSQL_BULK_INNER_ROWS=0``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import florsql
from tests.helpers import make_repo, run_script

SCRIPT = """import numpy as np
import torch
import florsql as flor

for lr in flor.loop("lr", np.array([0.1, 0.01])):
    for k in flor.loop("k", torch.arange(3)):
        flor.log("v", float(lr) * int(k))
    for s in flor.loop("s", np.array(["a", "b"])):
        flor.log("w", 1)
    for z in flor.loop("z", [np.zeros(2), np.bool_(True), torch.tensor(2.5), (1, 2)]):
        flor.log("u", 1)
"""


def _sql(repo: Path, sql: str) -> list[tuple[Any, ...]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with florsql.connect(repo=str(repo), replay="off") as con:
            return list(con.cursor().execute(sql).fetchall())


@pytest.mark.parametrize("bulk", ["1", "0"])
def test_numpy_and_torch_scalar_items_are_kept(tmp_path: Path, bulk: str) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": SCRIPT})
    run_script(repo, "train.py", FLORSQL_BULK_INNER_ROWS=bulk)
    rows = _sql(
        repo,
        "SELECT loop_name, vtype, coalesce(value_int::VARCHAR, value_float::VARCHAR, value_str) "
        "FROM loops ORDER BY ctx_id",
    )
    got: dict[str, list[tuple[str, str | None]]] = {}
    for name, vtype, value in rows:
        got.setdefault(name, []).append((vtype, value))
    assert got["lr"] == [("float", "0.1"), ("float", "0.01")]
    assert got["k"] == [("int", str(k)) for k in (0, 1, 2)] * 2
    assert got["s"] == [("str", "a"), ("str", "b")] * 2
    # an array is no scalar; numpy's bool is one; a tuple is none
    assert got["z"] == [("null", None), ("bool", "1"), ("float", "2.5"), ("null", None)] * 2


EPOCHS = """import florsql as flor


def epochs(n):
    for e in range(n):
        flor.log("made", e * 7)  # logged as the epoch's item is made
        yield e


w = 0.0
with flor.checkpointing():
    for epoch in flor.loop("epoch", epochs(4)):
        for b in flor.loop("step", range(3)):
            w += b + epoch
            flor.log("loss", w)
#@
"""


@pytest.mark.parametrize("first", ["WHERE epoch = 2", ""])
def test_a_replay_logs_an_outer_fetch_s_values_where_the_run_did(
    tmp_path: Path, first: str
) -> None:
    """Session 45 gave what fetching an item logs to the iteration it starts, in recordings
    and in replays of inner loops; a replay's outer loop still gave it to the loop's parent:
    verification compared the old ``made`` with the recording's values of another context,
    and a new statement in the generator's body answered in no epoch's row. Now the outer
    loop does the same, and what fetching a skipped epoch's item logs is dropped."""
    from florsql.errors import NondeterminismWarning
    from tests.helpers import write

    repo = make_repo(tmp_path / "r", {"train.py": EPOCHS.replace("#@\n", "")})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    new = EPOCHS.replace(
        "        yield e\n", '        flor.log("h", e * 10 + 1)\n        yield e\n'
    ).replace("#@\n", '        flor.log("w_end", w)\n')
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    run_script(oracle, "train.py")
    write(repo / "train.py", new)
    sql = "SELECT epoch, step, h, w_end FROM logs WHERE h IS NOT NULL OR w_end IS NOT NULL"
    with florsql.connect(oracle, replay="off") as con:
        want = sorted(con.cursor().execute(sql).fetchall(), key=repr)
    assert len(want) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", NondeterminismWarning)
        with florsql.connect(repo, replay="auto") as con:
            cur = con.cursor()
            if first:
                part = sorted(
                    cur.execute(f"{sql.replace('WHERE', first + ' AND (')})").fetchall(), key=repr
                )
                assert part == [r for r in want if r[0] == 2]
            got = sorted(cur.execute(sql).fetchall(), key=repr)
    assert got == want


STATEFUL = """import torch
import florsql as flor

torch.manual_seed(0)
net = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
X = torch.randn(16, 4)


def epochs(n):
    for e in range(n):
        yield round(float(net.weight.sum()), 6)  # the item reads the model


with flor.checkpointing(net=net, opt=opt):
    for snap in flor.loop("epoch", epochs(4)):
        for b in flor.loop("step", range(2)):
            loss = net(X).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        flor.log("snap", snap)
#@
"""


@pytest.mark.parametrize("first", ["WHERE epoch = 2", ""])
def test_an_outer_item_made_from_the_model_is_made_after_the_restore(
    tmp_path: Path, first: str
) -> None:
    """An epoch-level generator whose item reads the model: a task restoring the checkpoint
    of epoch 1 fetched epoch 2's item first, from the script's start state (``snap`` the
    initial weights' sum, so today's ``s2`` wrong, silently). The restore now comes first,
    as the recording fetched the item after epoch 1."""
    from florsql.errors import NondeterminismWarning
    from tests.helpers import write

    repo = make_repo(tmp_path / "r", {"train.py": STATEFUL.replace("#@\n", "")})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    new = STATEFUL.replace("#@\n", '        flor.log("s2", snap * 2)\n')
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    run_script(oracle, "train.py")
    write(repo / "train.py", new)
    sql = "SELECT epoch, s2 FROM logs WHERE s2 IS NOT NULL ORDER BY 1"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert len(want) == 4 and len({r[1] for r in want}) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", NondeterminismWarning)
        with florsql.connect(repo, replay="auto") as con:
            cur = con.cursor()
            if first:
                part = cur.execute(sql.replace("WHERE", first + " AND")).fetchall()
                assert part == [r for r in want if r[0] == 2]
            assert cur.execute(sql).fetchall() == want
