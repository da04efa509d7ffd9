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
