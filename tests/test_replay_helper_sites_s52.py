"""Today's statement in a helper the loop calls is replayed per iteration (session 52).

The analysis of the old version's patched file took any function but the loop's own for a
statement whose loop context is unknown, so ``def evaluate(net): ...; flor.log("val", acc)``
called after the step loop replayed every run from the top (sweep Y N3: about 6 s where the
epoch tasks take under 1 s). Now a helper called by name is placed at its calls, 4 calls deep:
after the inner loop it runs in the rest of the iteration, in the inner loop from the
iteration's start; one that may run elsewhere (a callback, a decorated one) still replays
whole runs; a decorator of the file's that calls the function once (``@timed``) passes. Values
are those of a run of today's script (the oracle: today's script recorded,
replay off), for queries of some epochs and steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import florsql
from tests.helpers import git, make_repo, run_script, write

OLD = """import functools
import random
import florsql as flor

seed = flor.arg("seed", 1)
random.seed(seed)
w = 1.0
best = 0.0


def score(v):
    return round(v * 3 + best, 9)


def evaluate(v):
    s = score(v)
    return s


def probe(v):
    return v


def timed(fn):
    @functools.wraps(fn)
    def inner(*a, **k):
        r = fn(*a, **k)
        print(fn.__name__, end="")
        return r

    return inner


@timed
def pre(v):
    return v


with flor.checkpointing(w=w):
    for epoch in flor.loop("epoch", range(6)):
        pre(w)
        for step in flor.loop("step", range(4)):
            w = w * 0.9 + random.random()
            probe(w)
        s = evaluate(w)
        best = max(best, s) * 0.5
        flor.log("loss", round(w, 9))
"""

#: pattern -> (old text, today's, query, whole run expected)
PATTERNS = {
    "two helpers deep, after the step loop": (
        "    return round(v * 3 + best, 9)\n",
        "    flor.log('val', round(v * 3 + best, 9))\n    return round(v * 3 + best, 9)\n",
        "SELECT seed, epoch, val FROM logs WHERE epoch IN (2, 5) AND val IS NOT NULL",
        False,
    ),
    "in the step loop": (
        "def probe(v):\n    return v\n",
        "def probe(v):\n    flor.log('g', round(v * 7, 9))\n    return v\n",
        "SELECT seed, epoch, step, g FROM logs WHERE epoch = 3 AND g IS NOT NULL",
        False,
    ),
    "before the step loop, reading what the loop carries, through a timing decorator": (
        "def pre(v):\n    return v\n",
        "def pre(v):\n    flor.log('p', round(v + best, 9))\n    return v\n",
        "SELECT seed, epoch, p FROM logs WHERE epoch >= 4 AND p IS NOT NULL",
        False,
    ),
    "a callback": (
        "def pre(v):\n    return v\n",
        "def pre(v):\n    flor.log('p', round(v + best, 9))\n    return v\n",
        "SELECT seed, epoch, p FROM logs WHERE epoch >= 4 AND p IS NOT NULL",
        True,
    ),
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_a_statement_in_a_helper_equals_a_run_of_today_s_script(
    tmp_path: Path, pattern: str
) -> None:
    old_text, new_text, sql, whole = PATTERNS[pattern]
    # (a callback: the helper is also a value, which may run anywhere)
    old = OLD + ("hooks = [pre]\n" if whole else "")
    assert old_text in old
    today = old.replace(old_text, new_text, 1)
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": today})
    for args in (("--seed", "1"), ("--seed", "2")):
        run_script(repo, "train.py", *args)
        run_script(oracle, "train.py", *args)
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    order = sql.replace(" FROM", ", 0 AS o FROM") + " ORDER BY ALL"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(order).fetchall()
    with florsql.connect(repo) as con:
        cur = con.cursor()
        plan = "\n".join(r[0] for r in cur.execute("EXPLAIN " + order).fetchall())
        got = cur.execute(order).fetchall()
    assert want and got == want, (got, want)
    assert ("whole run" in plan) is whole, plan
    # the decorator's wrapper reads its ``fn``: no state of the script (sweep Z F4: "reads
    # fn, not captured" sent every task to the top of the script)
    assert "not captured" not in plan, plan


def test_a_decorator_that_may_skip_calls_guards_the_statement() -> None:
    """Sweep Z2 F2: ``@every(2)`` calls its function every other call; today's statement in it
    was taken to run every epoch, and the replay's NULLs at the skipped epochs were said as
    "today's statement runs in every iteration, but the replay ... did not run it there"."""
    from florsql.plan.guards import every_iteration

    src = (
        "import functools\nimport florsql as flor\n\n\n"
        "def every(n):\n    def deco(fn):\n        calls = [0]\n\n"
        "        def inner(*a):\n            calls[0] += 1\n"
        "            return fn(*a) if calls[0] % n == 0 else None\n\n"
        "        return inner\n\n    return deco\n\n\n"
        "@every(2)\ndef evaluate():\n    flor.log('val', 1)\n\n\n"
        "for e in flor.loop('epoch', range(3)):\n    evaluate()\n"
    )
    assert "val" not in every_iteration(src)
    assert "val" in every_iteration(src.replace("@every(2)\n", ""))
    timed = OLD.split("@timed")[0].split("def timed")[1]  # the file's pass-through decorator
    plain = src.replace("@every(2)\n", "@timed\n").replace(
        "\n\n\n@timed", "\n\n\ndef timed" + timed + "@timed"
    )
    assert "val" in every_iteration(plain), plain
