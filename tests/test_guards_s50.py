"""Whether today's log statement runs in every iteration of its loop (florsql.plan.guards).

Where it does, an iteration a run ended without a recorded value lacks it (the old version
logged it under a guard): the planner replays those iterations. Each case here is a pattern
of a training script; a wrong True replays iterations where today's code logs nothing too (a
run of today's own script, every query), a wrong False leaves them NULL, said nowhere.
"""

from __future__ import annotations

import pytest

from florsql.plan.guards import always_runs
from florsql.plan.hindsight import scan_source

HEAD = "import florsql as flor\n"
LOOP = "for epoch in flor.loop('epoch', range(3)):\n"

CASES = {
    "in the loop's body": (LOOP + "    flor.log('a', 1)\n", True),
    "an assignment's value": (LOOP + "    x = flor.log('a', 1)\n", True),
    "under an if": (LOOP + "    if epoch % 2:\n        flor.log('a', 1)\n", False),
    "after an else-less if": (LOOP + "    if epoch:\n        pass\n    flor.log('a', 1)\n", True),
    "after a continue": (
        LOOP + "    if epoch < 1:\n        continue\n    flor.log('a', 1)\n",
        False,
    ),
    "after a break": (LOOP + "    if epoch > 1:\n        break\n    flor.log('a', 1)\n", False),
    "after an inner loop's break": (
        LOOP
        + "    for step in flor.loop('step', range(2)):\n        if step:\n            break\n"
        + "    flor.log('a', 1)\n",
        True,
    ),
    "after a raise (the iteration stays open)": (
        LOOP + "    if epoch > 5:\n        raise ValueError(epoch)\n    flor.log('a', 1)\n",
        True,
    ),
    "in a with": (
        "import torch\n" + LOOP + "    with torch.no_grad():\n        flor.log('a', 1)\n",
        True,
    ),
    "in contextlib.suppress": (
        "import contextlib\n"
        + LOOP
        + "    with contextlib.suppress(KeyError):\n        flor.log('a', 1)\n",
        False,
    ),
    "in suppress, imported": (
        "from contextlib import suppress\n"
        + LOOP
        + "    with suppress(KeyError):\n        flor.log('a', 1)\n",
        False,
    ),
    "in a context manager of the file's that catches": (
        "import contextlib\n@contextlib.contextmanager\ndef safe():\n    try:\n        yield\n"
        "    except ZeroDivisionError:\n        pass\n"
        + LOOP
        + "    with safe():\n        flor.log('a', 1)\n",
        False,
    ),
    "in a context manager of the file's that does not catch": (
        "import contextlib\n@contextlib.contextmanager\ndef timed():\n    yield\n"
        + LOOP
        + "    with timed():\n        flor.log('a', 1)\n",
        True,
    ),
    "in a class whose __exit__ returns True": (
        "class Quiet:\n    def __enter__(self):\n        return self\n"
        "    def __exit__(self, *a):\n        return True\n"
        + LOOP
        + "    with Quiet():\n        flor.log('a', 1)\n",
        False,
    ),
    "in both branches of an if": (
        LOOP + "    if epoch % 2:\n        flor.log('a', 1)\n    else:\n        flor.log('a', 2)\n",
        True,
    ),
    "in an if, an elif and an else": (
        LOOP
        + "    if epoch == 0:\n        flor.log('a', 1)\n    elif epoch == 1:\n"
        + "        flor.log('a', 2)\n    else:\n        flor.log('a', 3)\n",
        True,
    ),
    "in an if and an elif, no else": (
        LOOP
        + "    if epoch == 0:\n        flor.log('a', 1)\n    elif epoch == 1:\n"
        + "        flor.log('a', 2)\n",
        False,
    ),
    "in an if whose else logs another name": (
        LOOP + "    if epoch % 2:\n        flor.log('a', 1)\n    else:\n        flor.log('b', 2)\n",
        False,
    ),
    "in an and": (LOOP + "    epoch and flor.log('a', 1)\n", False),
    "in a conditional expression": (LOOP + "    flor.log('a', 1) if epoch else None\n", False),
    "in a comprehension": (LOOP + "    [flor.log('a', i) for i in range(epoch)]\n", False),
    "in a lambda": (LOOP + "    f = lambda: flor.log('a', 1)\n", False),
    "an argument of another call": (LOOP + "    print(flor.log('a', 1))\n", True),
    "in a try body": (
        LOOP + "    try:\n        flor.log('a', 1)\n    except KeyError:\n        pass\n",
        False,
    ),
    "in a finally": (
        LOOP + "    try:\n        pass\n    finally:\n        flor.log('a', 1)\n",
        True,
    ),
    "in a plain for (it may iterate nothing)": (
        LOOP + "    for b in range(epoch):\n        flor.log('a', 1)\n",
        False,
    ),
    "in a while": (LOOP + "    while epoch:\n        flor.log('a', 1)\n        break\n", False),
    "in a loop's else": (
        LOOP + "    for b in range(2):\n        pass\n    else:\n        flor.log('a', 1)\n",
        False,
    ),
    "outside every loop": ("flor.log('a', 1)\n", False),
    "a helper called each iteration": (
        "def ev():\n    flor.log('a', 1)\n" + LOOP + "    ev()\n",
        True,
    ),
    "a helper called under a guard": (
        "def ev():\n    flor.log('a', 1)\n" + LOOP + "    if epoch % 2:\n        ev()\n",
        False,
    ),
    "a helper called twice, once guarded": (
        "def ev():\n    flor.log('a', 1)\n" + LOOP + "    ev()\n    if epoch:\n        ev()\n",
        False,
    ),
    "a helper returning early": (
        "def ev(e):\n    if e % 2:\n        return\n    flor.log('a', 1)\n"
        + LOOP
        + "    ev(epoch)\n",
        False,
    ),
    "a helper never called": ("def ev():\n    flor.log('a', 1)\n" + LOOP + "    pass\n", False),
    "a method called each iteration": (
        "class T:\n    def ev(self):\n        flor.log('a', 1)\nt = T()\n" + LOOP + "    t.ev()\n",
        True,
    ),
    "main()": (
        "def main():\n    for epoch in flor.loop('epoch', range(3)):\n        flor.log('a', 1)\n"
        "if __name__ == '__main__':\n    main()\n",
        True,
    ),
    "a helper of main() under the main guard": (
        "def ev():\n    flor.log('a', 1)\n"
        "def main():\n    for epoch in flor.loop('epoch', range(3)):\n        ev()\n"
        "if __name__ == '__main__':\n    main()\n",
        True,
    ),
    "a match case": (
        LOOP + "    match epoch:\n        case _:\n            flor.log('a', 1)\n",
        False,
    ),
    "the names ignore case": (LOOP + "    flor.log('A', 1)\n", True),
    "from florsql import log": (
        "from florsql import log, loop\nfor epoch in loop('epoch', range(3)):\n    log('a', 1)\n",
        True,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_statement_runs_in_every_iteration_only_where_nothing_guards_it(case: str) -> None:
    text, want = CASES[case]
    assert always_runs(HEAD + text, "a") is want
    code = scan_source(HEAD + text, "train.py")
    if code is not None:  # (the scan keeps it: the catalog reads no text again)
        assert ("a" in code.every) is want


def test_a_file_that_does_not_parse_guards_everything() -> None:
    assert always_runs(HEAD + LOOP + "    flor.log('a', 1\n", "a") is False


def test_another_statement_is_told_by_what_it_logs() -> None:
    from florsql.plan.guards import other_statement

    today = "import florsql as flor\nflor.log('v', round(x * 3, 6))\n"
    same = [
        'import florsql as flor\nflor.log("v", round(x*3, 6))  # reflowed\n',
        "import florsql\nfrom florsql import log\nlog('v', round(x * 3, 6))\n",
        "import florsql as flor\nif x:\n    flor.log('v', round(x * 3, 6))\n",
        "import florsql as flor\nflor.log('w', 1)\n",  # not logged there: tells nothing
    ]
    for old in same:
        assert other_statement(today, old, "V") is None, old
    edited = "import florsql as flor\nflor.log('v', round(x * 4, 6))\n"
    assert other_statement(today, edited, "v") == "flor.log('v', round(x * 4, 6))"
