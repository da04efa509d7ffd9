"""State changed after today's statement inside an old ``if`` in the loop (session 60).

The commonest running average there is: ``running += loss`` each step, and inside the ``if
step % N == N - 1:`` that already printed progress, ``flor.log("avg", running / N)`` then
``running = 0.0``. The reset follows the log in the ``if``'s body, not in the loop's: only a
loop body's tail was carried, so the patched old version never reset, and the average grew
from window to window (13.7, 21.7, 24.3 where a re-run logs 7.3, 8.0, 2.7), without a word.
The same for a change in the ``else`` of that ``if``. Values are compared with a real run of
today's script.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import florsql
from tests.helpers import git, make_repo, run_script, write
from tests.helpers_replay import fetch

OLD = textwrap.dedent(
    """\
    import florsql as flor

    loss = 1.0
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(6)):
            loss = (loss * 7 + step) % 13
            if step % 3 == 2:
                print("step", step, loss)
            else:
                print("training")
        flor.log("loss", loss)
    """
)

RESET = (
    OLD.replace("loss = 1.0\n", "loss = 1.0\nrunning = 0.0\n")
    .replace(
        "        loss = (loss * 7 + step) % 13\n",
        "        loss = (loss * 7 + step) % 13\n        running += loss\n",
    )
    .replace(
        '            print("step", step, loss)\n',
        '            print("step", step, loss)\n'
        '            flor.log("avg", running / 3)\n'
        "            running = 0.0\n",
    )
)

ELSE = (
    OLD.replace("loss = 1.0\n", "loss = 1.0\nseen = 0\n")
    .replace(
        '            print("step", step, loss)\n',
        '            print("step", step, loss)\n            flor.log("seen", seen)\n',
    )
    .replace(
        '            print("training")\n', '            print("training")\n            seen += 1\n'
    )
)


@pytest.mark.parametrize(("today", "name"), [(RESET, "avg"), (ELSE, "seen")], ids=["reset", "else"])
def test_what_follows_the_statement_in_an_old_if_is_replayed(
    tmp_path: Path, today: str, name: str
) -> None:
    assert name in today and today != OLD
    root = make_repo(tmp_path / "history", {"train.py": OLD})
    run_script(root, "train.py")
    write(root / "train.py", today)
    git(root, "commit", "-qam", name)
    oracle = make_repo(tmp_path / "oracle", {"train.py": today})
    run_script(oracle, "train.py")
    sql = f"SELECT epoch, step, {name} FROM logs WHERE {name} IS NOT NULL ORDER BY epoch, step"
    with florsql.connect(oracle, replay="off") as con:
        want, _ = fetch(con, sql, ordered=True)
    with florsql.connect(root) as con:
        got, said = fetch(con, sql, ordered=True)
    assert len(want) == 6
    assert got == want, (got, said)
