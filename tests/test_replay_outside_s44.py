"""A replay never writes the user's files outside the repository either.

Found by session 43's third sweep: a script given ``--ckpt /tmp/x.pt`` (an absolute path
outside the repository) saved its state there each epoch. The write sandbox of a replay task
covered the repository's paths only, so a replay's ``torch.save`` overwrote the user's file
(its epoch 6 became 9), and a run that resumed from that file replayed from it as the last run
left it, silently. Now (session 44) a replay task writes every path but the system's folders
and tools' caches (:func:`florsql.record.watch.write_through`) to private copies, and a run
lists the files it wrote outside the repository among its outputs, so a replay that reads one
before writing it says its values are not the run's, as for a file inside the repository.
Files ``tempfile`` makes are the task's own and written as they are.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import florsql
from florsql.store import layout
from tests.helpers import make_repo, run_dirs, run_script, write

SAVER = """import json
import sys
import torch
import florsql as flor
ckpt = flor.arg("ckpt", "")
w = torch.zeros(2)
for epoch in flor.loop("epoch", range(3)):
    w = w + 1.0
    torch.save({"w": w, "epoch": epoch}, ckpt)
    with open(ckpt + ".json", "w") as f:
        json.dump({"epoch": epoch}, f)
    flor.log("e", epoch)
"""


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "elsewhere"
    out.mkdir()
    return out


def test_a_replay_keeps_its_writes_out_of_a_file_outside_the_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": SAVER})
    ckpt = _outside(tmp_path) / "last.pt"
    run_script(repo, "train.py", "--ckpt", str(ckpt))
    assert run_dirs(repo)
    doc = layout.read_json(run_dirs(repo)[0] / layout.RUN_JSON)
    assert os.path.realpath(ckpt) in doc["outputs"], doc.get("outputs")
    assert os.path.realpath(ckpt) in doc["loop_outputs"]
    # the user's files now: another program's, say
    ckpt.write_bytes(b"the user's checkpoint")
    Path(str(ckpt) + ".json").write_text("the user's notes")
    write(repo / "train.py", SAVER + '    flor.log("w0", float(w[0]))\n')
    with florsql.connect(repo, replay="auto") as con:
        rows = con.cursor().execute("SELECT epoch, w0 FROM logs ORDER BY 1").fetchall()
    assert rows == [(0, 1.0), (1, 2.0), (2, 3.0)]
    assert ckpt.read_bytes() == b"the user's checkpoint"
    assert Path(str(ckpt) + ".json").read_text() == "the user's notes"


RESUMER = """import json
import os
import florsql as flor
state = flor.arg("state", "")
start, total = 0, 0.0
if os.path.exists(state):
    with open(state) as f:
        saved = json.load(f)
    start, total = saved["epoch"] + 1, saved["total"]
for epoch in flor.loop("epoch", range(start, start + 2)):
    total += epoch
    with open(state, "w") as f:
        json.dump({"epoch": epoch, "total": total}, f)
    flor.log("e", epoch)
"""


def test_a_run_resumed_from_a_file_outside_the_repository_is_not_silent(tmp_path: Path) -> None:
    """Two runs, the second resumed from the first's file outside the repository: a replay
    reads today's file (the second run's end), not what each run found, and says so."""
    repo = make_repo(tmp_path / "r", {"train.py": RESUMER})
    state = _outside(tmp_path) / "state.json"
    run_script(repo, "train.py", "--state", str(state))
    run_script(repo, "train.py", "--state", str(state))
    before = state.read_text()
    write(repo / "train.py", RESUMER + '    flor.log("total", total)\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with florsql.connect(repo, replay="auto") as con:
            con.cursor().execute("SELECT run_id, epoch, total FROM logs").fetchall()
    said = " ".join(str(w.message) for w in caught)
    assert f"read {os.path.realpath(state)} before writing it" in said, said
    assert state.read_text() == before  # the second run's end, as the user left it


TEMPS = """import os
import subprocess
import sys
import tempfile
import florsql as flor
for epoch in flor.loop("epoch", range(2)):
    fd, name = tempfile.mkstemp()
    os.write(fd, b"x" * (epoch + 1))
    os.close(fd)
    size = os.path.getsize(name)  # as the file system sees it, not through open
    os.unlink(name)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "a.txt"), "w") as f:
            f.write("abc" * (epoch + 1))
        listed = sorted(os.listdir(d))
        got = subprocess.run(
            [sys.executable, "-c", "import sys; print(len(open(sys.argv[1]).read()))",
             os.path.join(d, "a.txt")],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    flor.log("size", size)
"""


def test_files_tempfile_makes_are_the_tasks_own(tmp_path: Path) -> None:
    """A file ``mkstemp`` made, and one written into a ``TemporaryDirectory``, are written as
    they are (another process reads them; a listing shows them): random, fresh names hold
    nothing of the user's."""
    repo = make_repo(tmp_path / "r", {"train.py": TEMPS})
    run_script(repo, "train.py")
    write(
        repo / "train.py",
        TEMPS + '    flor.log("n", int(got))\n    flor.log("listed", ",".join(listed))\n',
    )
    with florsql.connect(repo, replay="auto") as con:
        rows = con.cursor().execute("SELECT epoch, size, n, listed FROM logs ORDER BY 1")
        assert rows.fetchall() == [(0, 1, 3, "a.txt"), (1, 2, 6, "a.txt")]


def test_the_sandbox_everywhere(tmp_path: Path) -> None:
    """:class:`WriteSandbox` with ``everywhere``, in a process of its own: a write outside
    every root goes to a private copy (read back there), a folder named in
    ``FLORSQL_REPLAY_WRITABLE`` and a FIFO are written as they are, and a run's outputs list
    the files it wrote outside the repository (but not into ``write_through`` folders)."""
    user, shared, private = tmp_path / "user", tmp_path / "shared", tmp_path / "private"
    for d in (user, shared, private):
        d.mkdir()
    (user / "keep.txt").write_text("mine")
    os.mkfifo(tmp_path / "fifo")
    code = textwrap.dedent(
        f"""
        import os, threading
        from florsql.record.watch import WATCH, WriteSandbox, write_through
        box = WriteSandbox([], [], {str(private)!r}, everywhere=True)
        box.install()
        WATCH.sandbox = box
        with open({str(user / "keep.txt")!r}, "w") as f:
            f.write("replayed")
        assert open({str(user / "keep.txt")!r}).read() == "replayed"
        with open({str(user / "new.txt")!r}, "w") as f:
            f.write("new")
        with open({str(shared / "cache.txt")!r}, "w") as f:
            f.write("shared")
        got = []
        fifo = {str(tmp_path / "fifo")!r}
        reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
        reader.start()
        with open(fifo, "w") as f:
            f.write("piped")
        reader.join()
        assert got == ["piped"], got
        assert {str(shared)!r} in write_through()
        print("ok")
        """
    )
    env = {**os.environ, "FLORSQL_REPLAY_WRITABLE": str(shared)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
    assert (user / "keep.txt").read_text() == "mine"
    assert not (user / "new.txt").exists()
    assert (shared / "cache.txt").read_text() == "shared"


def test_the_writable_folders_need_not_agree_with_the_query_host() -> None:
    """``FLORSQL_REPLAY_WRITABLE`` is read for each task from the command's environment, so a
    one-shot query setting it still runs in the warm query host (florsql/cli_host.py)."""
    from florsql import cli_host
    from florsql.record.watch import WRITABLE

    assert WRITABLE in cli_host._PER_TASK
    assert cli_host._env_key({WRITABLE: "/x", "FLORSQL_OTHER": "1"}) == {"FLORSQL_OTHER": "1"}


def test_a_replay_mode_that_is_no_string_is_a_clear_error(tmp_path: Path) -> None:
    """``florsql.connect(repo, replay=None)`` raised ``AttributeError`` inside the engine."""
    import pytest

    repo = make_repo(tmp_path / "r", {"train.py": "import florsql as flor\n"})
    with pytest.raises(florsql.Error, match="replay must be one of"):
        florsql.connect(repo, replay=None)  # type: ignore[arg-type]
