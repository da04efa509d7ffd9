"""Inner loops build their rows in bulk (``Run._iterate_inner``, issue 12 item 3): property
test against the row-at-a-time path of outer loops (``FLORSQL_BULK_INNER_ROWS=0``), over random
programs of nested loops with every kind of item, breaks, exceptions, commits and flushes
inside loops, and logs everywhere. Both must store the same loop and log rows (times aside)."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from florsql.store.index import Index
from tests.helpers import make_repo, run_script

ITEMS = (
    "range({n})",
    "range(3, 3 + 2 * {n}, 2)",
    "range({n}, 0, -1)",
    "range(2**62, 2**62 + {n})",
    "range(2**63 - 2, 2**63 - 2 + {n})",  # past int64: stored as text, a row at a time
    "[0.5 * k for k in range({n})]",
    "['s%d' % k for k in range({n})]",
    "[(k, k) for k in range({n})]",
    "[None, True, 7, 2.5, 'x', (1,), 2**70][:{n}]",
    "iter(range({n}))",
    "(k * k for k in range({n}))",
)


def _program(seed: int) -> str:
    rnd = random.Random(seed)
    lines = ["import florsql as flor", "class Stop(Exception):", "    pass"]
    logs = iter(range(10**6))

    def log(indent: int, var: str) -> None:
        value = rnd.choice([f"{var}", "0.25", "'t'", "None", "[1, 2]", "2**70", "True"])
        lines.append(" " * indent + f"flor.log('v{next(logs)}', {value})")

    def body(depth: int, indent: int, var: str) -> None:
        for _ in range(rnd.randint(1, 3)):
            kind = rnd.random()
            if kind < 0.45:
                log(indent, var)
            elif kind < 0.75 and depth < 3:
                loop(depth + 1, indent)
            elif kind < 0.85:
                lines.append(" " * indent + f"if {rnd.randint(0, 2)} == len(str({var})) % 3:")
                lines.append(" " * (indent + 4) + "flor.commit()")
            else:
                log(indent, var)

    def loop(depth: int, indent: int) -> None:
        var = f"x{depth}"
        items = rnd.choice(ITEMS).format(n=rnd.randint(0, 4))
        exit_kind = rnd.choice(["none", "none", "break", "raise"])
        pad = " " * indent
        if exit_kind == "raise":
            lines.append(pad + "try:")
            indent += 4
            pad = " " * indent
        lines.append(pad + f"for i{depth}, {var} in enumerate(flor.loop('L{depth}', {items})):")
        body(depth, indent + 4, var)
        if exit_kind != "none":
            stop = "break" if exit_kind == "break" else "raise Stop()"
            lines.append(" " * (indent + 4) + f"if i{depth} == {rnd.randint(0, 3)}:")
            lines.append(" " * (indent + 8) + stop)
        if exit_kind == "raise":
            lines.append(" " * (indent - 4) + "except Stop:")
            lines.append(" " * indent + "pass")

    lines.append(f"for x0 in flor.loop('L0', range({rnd.randint(1, 3)})):")
    body(0, 4, "x0")
    lines.append("flor.log('end', 1)")
    return "\n".join(lines) + "\n"


def _rows(repo: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with Index.open(repo) as ix:
        ix.refresh()
        loops = ix.con.sql(
            "SELECT ctx_id, parent_ctx, loop_name, iteration, vtype, value_int, value_float, "
            "value_str, seconds IS NULL FROM loops ORDER BY ctx_id"
        ).fetchall()
        logs = ix.con.sql(
            "SELECT seq, ctx_id, name, vtype, value_int, value_float, value_str "
            "FROM log_records ORDER BY seq"
        ).fetchall()
        return loops, logs


@pytest.mark.slow
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10**9), flush=st.sampled_from(["0", "0.1"]))
def test_bulk_inner_rows_equal_row_at_a_time(tmp_path: Path, seed: int, flush: str) -> None:
    source = _program(seed)
    got = {}
    where = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis calls this many times per tmp_path
    for bulk in ("1", "0"):
        repo = make_repo(where / bulk, {"train.py": source})
        proc = run_script(
            repo, "train.py", FLORSQL_BULK_INNER_ROWS=bulk, FLORSQL_FLUSH_INTERVAL=flush
        )
        assert proc.stderr == "", proc.stderr
        got[bulk] = _rows(repo)
    bulk_rows, oracle = got["1"][0] + got["1"][1], got["0"][0] + got["0"][1]
    diff = [(a, b) for a, b in zip(bulk_rows, oracle, strict=False) if a != b]
    assert got["1"] == got["0"], (source, diff[:5])


def test_inner_rows_of_a_killed_run_carry_every_logged_iteration(tmp_path: Path) -> None:
    """A flush inside an inner iteration (here flor.commit()) writes that iteration's row
    without its duration, then the duration as the iteration ends: a log is never without its
    loop row."""
    source = """
import florsql as flor
for epoch in flor.loop("epoch", range(2)):
    for step in flor.loop("step", range(3)):
        flor.log("loss", 0.5 * step)
        if step == 1:
            flor.commit()
"""
    repo = make_repo(tmp_path / "p", {"train.py": source})
    run_script(repo, "train.py")
    loops, logs = _rows(repo)
    steps = [r for r in loops if r[2] == "step"]
    assert [r[3] for r in steps] == [0, 1, 2, 0, 1, 2]
    assert not any(r[-1] for r in steps)  # every duration arrived
    assert {ctx for _, ctx, *_ in logs} <= {r[0] for r in loops}
