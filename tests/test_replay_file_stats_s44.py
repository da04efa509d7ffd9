"""A replay task's stats of the files its run wrote (``os.path.getsize``, ``exists``,
``Path.exists``) see the task's own copies, and a stat of one the task has not written is a
read of it.

Found by session 44's sweep: the write sandbox redirected ``open`` and ``torch.save`` to a
task's private copies, but ``os.stat`` (under ``os.path.exists``, ``getsize``, ``isfile``)
looked at the user's file, as the last run left it: ``os.path.getsize("out/hist.json")`` of a
file rewritten each epoch gave the last run's final size for every epoch (30, 30, 30 for 10,
20, 30), ``if os.path.exists(f"out/e{epoch}.done"): continue`` skipped epochs the run ran (no
rows at all), a log's size after appending to it counted every run's lines, and a rotation
(``os.replace(last, prev)`` after ``exists(last)``) moved today's file: all silently. Now a
stat of a file the task wrote is one of its copy (exact), and the script's stat of one of the
run's outputs the task has not written (or of a copy that started from today's file) says the
values are not the run's, as reading it does (``read_outputs``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import florsql
from tests.helpers import make_repo, run_script, write

HEAD = """import json
import os
import shutil
import florsql as flor
os.makedirs("out", exist_ok=True)
hist = []
for epoch in flor.loop("epoch", range(3)):
"""


def _query(repo: Path, sql: str) -> tuple[list[tuple[object, ...]], str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with florsql.connect(repo, replay="auto") as con:
            rows = con.cursor().execute(sql).fetchall()
    return rows, " ".join(str(w.message) for w in caught)


def test_the_size_of_a_file_the_task_rewrote_is_its_own(tmp_path: Path) -> None:
    body = """    hist.append(epoch * 1.5)
    with open("out/hist.json", "w") as f:
        json.dump(hist, f)
    flor.log("e", epoch)
"""
    repo = make_repo(tmp_path / "r", {"train.py": HEAD + body, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    run_script(repo, "train.py")
    write(
        repo / "train.py", HEAD + body + '    flor.log("size", os.path.getsize("out/hist.json"))\n'
    )
    rows, said = _query(repo, "SELECT DISTINCT epoch, size FROM logs ORDER BY 1")
    sizes = [len(json.dumps([e * 1.5 for e in range(n + 1)])) for n in range(3)]
    assert rows == list(enumerate(sizes)), (rows, said)
    assert "before writing it" not in said, said


def test_a_marker_the_run_made_is_not_there_for_its_replay_either(tmp_path: Path) -> None:
    """``if os.path.exists(f"out/e{epoch}.done"): continue``: today's markers (the run's own,
    left on disk) skipped every epoch of the replay (session 44: said, as a read before
    writing). Since session 49 the run lists the markers it made (``created_outputs``), and
    the replay finds none of them until it writes it, as the run did: exact, nothing to say."""
    body = """    if os.path.exists(f"out/e{epoch}.done"):
        continue
    flor.log("e", epoch)
    open(f"out/e{epoch}.done", "w").close()
"""
    repo = make_repo(tmp_path / "r", {"train.py": HEAD + body, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    write(repo / "train.py", HEAD + body + '    flor.log("e2", epoch * 2)\n')
    rows, said = _query(repo, "SELECT epoch, e2 FROM logs ORDER BY 1")
    assert rows == [(0, 0), (1, 2), (2, 4)], (rows, said)
    assert "before writing it" not in said, said


def test_a_log_appended_to_starts_as_the_run_found_it(tmp_path: Path) -> None:
    """A log each run appends a line to each epoch: its size and ``f.tell()`` after the
    append were today's (every run's lines) before session 44, silently (the size said so
    only through a warning since then). A run now notes each file it first opens to append
    (its size and first bytes' digest, ``append_starts``), and a replay's private copy starts
    as the run found it: exact."""
    body = """    with open("out/log.txt", "a") as f:
        f.write(f"epoch {epoch}\\n")
        pos = f.tell()
    flor.log("e", epoch)
"""
    repo = make_repo(tmp_path / "r", {"train.py": HEAD + body, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    run_script(repo, "train.py")
    today = (
        HEAD
        + body
        + '    flor.log("n", os.path.getsize("out/log.txt"))\n'
        + '    flor.log("pos", pos)\n'
    )
    write(repo / "train.py", today)
    rows, said = _query(repo, "SELECT epoch, n, pos FROM logs ORDER BY n")
    assert rows == [(e % 3, 8 * (e + 1), 8 * (e + 1)) for e in range(6)], (rows, said)
    assert "before writing it" not in said, said


def test_a_rotation_replays_as_the_run_found_its_files(tmp_path: Path) -> None:
    """``os.replace(last, prev)`` after ``exists(last)``: the replay moved today's file
    (session 44: said, as a read before writing). Since session 49 both are files the run
    made (the target of a move is written), and the replay finds neither until it writes it:
    exact, against what a run of today's script logs; and today's statement reading
    ``prev.json`` unguarded fails at epoch 0 as that run would, naming the file."""
    body = """    if os.path.exists("out/last.json"):
        os.replace("out/last.json", "out/prev.json")
    with open("out/last.json", "w") as f:
        json.dump({"epoch": epoch}, f)
    flor.log("e", epoch)
"""
    guarded = (
        '    flor.log("prev", json.load(open("out/prev.json"))["epoch"]'
        ' if os.path.exists("out/prev.json") else -1)\n'
    )
    repo = make_repo(tmp_path / "r", {"train.py": HEAD + body, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    oracle = make_repo(tmp_path / "o", {"train.py": HEAD + body + guarded, ".gitignore": "out/\n"})
    run_script(oracle, "train.py")
    sql = "SELECT epoch, prev FROM logs ORDER BY 1"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert want == [(0, -1), (1, 0), (2, 1)]
    write(repo / "train.py", HEAD + body + guarded)
    rows, said = _query(repo, sql)
    assert rows == want, (rows, said)
    assert "before writing it" not in said, said
    unguarded = '    flor.log("prev2", json.load(open("out/prev.json"))["epoch"])\n'
    write(repo / "train.py", HEAD + body + unguarded)
    rows, said = _query(repo, "SELECT epoch, prev2 FROM logs WHERE prev2 IS NOT NULL")
    assert rows == [], (rows, said)
    assert "FileNotFoundError" in said and "'out/prev.json'" in said, said


def test_a_library_checking_its_target_is_no_read(tmp_path: Path) -> None:
    """``shutil.copy(src, dst)`` stats ``dst`` (a folder?) before writing it: that is the
    library's look, not the script reading the run's file."""
    body = """    hist.append(epoch)
    with open("out/last.json", "w") as f:
        json.dump(hist, f)
    shutil.copy("out/last.json", "out/best.json")
    flor.log("e", epoch)
"""
    today = '    with open("out/best.json") as g:\n        flor.log("n", len(json.load(g)))\n'
    repo = make_repo(tmp_path / "r", {"train.py": HEAD + body, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    write(repo / "train.py", HEAD + body + today)
    rows, said = _query(repo, "SELECT epoch, n FROM logs ORDER BY 1")
    assert rows == [(0, 1), (1, 2), (2, 3)], (rows, said)
    assert "before writing it" not in said, said


def test_a_script_that_clears_its_output_folder_first_replays(tmp_path: Path) -> None:
    """``shutil.rmtree("out", ignore_errors=True); os.makedirs("out")`` as a script starts:
    the replay removes none of the user's files, and making the folder again is no error
    (every replay of such a script failed with ``FileExistsError`` before session 44)."""
    script = """import os
import shutil
import florsql as flor
shutil.rmtree("out", ignore_errors=True)
os.makedirs("out/sub")
for epoch in flor.loop("epoch", range(3)):
    with open(f"out/sub/e{epoch}.txt", "w") as f:
        f.write("x" * (epoch + 1))
    flor.log("e", epoch)
"""
    repo = make_repo(tmp_path / "r", {"train.py": script, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    before = {p: p.read_text() for p in (repo / "out").rglob("*.txt")}
    today = script + '    flor.log("n", len(open(f"out/sub/e{epoch}.txt").read()))\n'
    write(repo / "train.py", today)
    rows, said = _query(repo, "SELECT epoch, n FROM logs ORDER BY 1")
    assert rows == [(0, 1), (1, 2), (2, 3)], (rows, said)
    assert {p: p.read_text() for p in (repo / "out").rglob("*.txt")} == before


def test_a_sqlite_database_the_run_wrote_is_kept_and_said(tmp_path: Path) -> None:
    """``sqlite3`` writes from C, past ``open``: a replayed ``INSERT`` went into the user's
    database (session 44's sweep), and the rows counted were today's. Now the task works on a
    private copy, and the run's database read so is said to be today's."""
    script = """import os
import sqlite3
import florsql as flor
epochs = flor.arg("epochs", 3)
os.makedirs("out", exist_ok=True)
db = sqlite3.connect("out/m.db")
db.execute("create table if not exists m (epoch int)")
for epoch in flor.loop("epoch", range(epochs)):
    db.execute("insert into m values (?)", (epoch,))
    db.commit()
    flor.log("e", epoch)
"""
    repo = make_repo(tmp_path / "r", {"train.py": script, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    run_script(repo, "train.py")
    before = (repo / "out" / "m.db").read_bytes()
    today = script + '    flor.log("n", db.execute("select count(*) from m").fetchone()[0])\n'
    write(repo / "train.py", today)
    _rows, said = _query(repo, "SELECT epoch, n FROM logs")
    assert (repo / "out" / "m.db").read_bytes() == before
    assert "out/m.db before writing it" in said, said


def test_a_listing_of_the_runs_files_is_said(tmp_path: Path) -> None:
    """``len(glob.glob("out/e*.txt"))`` counts today's files (every epoch's, the last run's):
    3, 3, 3 for 1, 2, 3 before session 44, silently. A listing by the script of a folder
    holding outputs of the run the task has not written now says so."""
    body = """    with open(f"out/e{epoch}.txt", "w") as f:
        f.write("x")
    flor.log("e", epoch)
"""
    repo = make_repo(tmp_path / "r", {"train.py": HEAD + body, ".gitignore": "out/\n"})
    run_script(repo, "train.py")
    today = HEAD.replace("import json\n", "import glob\nimport json\n") + body
    write(repo / "train.py", today + '    flor.log("n", len(glob.glob("out/e*.txt")))\n')
    _rows, said = _query(repo, "SELECT epoch, n FROM logs")
    assert "out/e1.txt" in said and "before writing it" in said, said
