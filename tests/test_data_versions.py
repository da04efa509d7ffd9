"""Data versions: what a run read from git-ignored paths is fingerprinted, and replay says when
today's files differ."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from florsql.engine.session import Engine
from florsql.errors import DataChangedWarning, FlorWarning, ReplayFailedWarning
from florsql.replay import LocalExecutor, PlanExecutor
from florsql.store.fingerprints import (
    FULL_HASH_BYTES,
    InputFile,
    combined_digest,
    compare_inputs,
    file_hash,
    fingerprint,
)
from tests.helpers import make_repo, run_dirs, run_script, write

TRAIN = """
import csv
import florsql as flor

rows = [float(r["x"]) for r in csv.DictReader(open("data/train.csv"))]
with open("out/preds.txt", "w") as f:
    f.write("written by the run: an output, not an input")
print(open("out/preds.txt").read())
scale = flor.arg("scale", 1.0)
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(3)):
        w = float(epoch)
        for x in flor.loop("step", rows):
            w += scale * x
            flor.log("w", w)
"""

DATA = "x\n1.0\n2.0\n3.0\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "d", {"train.py": TRAIN, ".gitignore": "data/\nout/\n"})
    write(repo / "data/train.csv", DATA)
    write(repo / "data/unused.csv", DATA)
    (repo / "out").mkdir()
    run_script(repo, "train.py")
    # Today's code logs a new name: a hindsight query replays the run.
    write(repo / "train.py", TRAIN + "            flor.log('w2', w * 2)\n")
    return repo


def _engine(repo: Path) -> Engine:
    return Engine(repo, replay="auto", executor=PlanExecutor(LocalExecutor(1)))


def test_run_records_what_it_read_from_ignored_paths(repo: Path) -> None:
    (run,) = run_dirs(repo)
    doc = json.loads((run / "run.json").read_text())
    paths = [i["path"] for i in doc["inputs"]]
    # Tracked files, files the run wrote and files it never opened are not data inputs.
    assert paths == ["data/train.csv"]
    (inp,) = doc["inputs"]
    assert inp["bytes"] == len(DATA)
    assert inp["hash"] == file_hash(repo / "data/train.csv")
    assert doc["data_fingerprint"] == combined_digest([InputFile.from_json(inp)])
    with Engine(repo, replay="off") as eng:
        runs = eng.execute("SELECT data_fingerprint FROM runs").table.to_pylist()
        details = eng.execute("SELECT path, bytes, hash FROM data_inputs").table.to_pylist()
    assert runs == [{"data_fingerprint": doc["data_fingerprint"]}]
    assert details == [{"path": "data/train.csv", "bytes": len(DATA), "hash": inp["hash"]}]


def test_unchanged_data_replays_without_warning(repo: Path) -> None:
    os.utime(repo / "data/train.csv")  # touched, same content: not a change
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataChangedWarning)
        with _engine(repo) as eng:
            rows = eng.execute("SELECT epoch, step, w2 FROM logs WHERE epoch = 2").table
            marks = eng.execute("SELECT data_changed FROM replays").table.to_pylist()
    assert rows.num_rows == 3 and None not in rows.column("w2").to_pylist()
    assert marks and all(m["data_changed"] == [] for m in marks)


@pytest.mark.filterwarnings("ignore::florsql.errors.NondeterminismWarning")  # other data
def test_changed_data_warns_naming_the_file_and_marks_the_values(repo: Path) -> None:
    write(repo / "data/train.csv", "x\n1.0\n2.0\n30.0\n")
    with _engine(repo) as eng:
        with pytest.warns(DataChangedWarning, match=r"data/train\.csv \(changed\)"):
            eng.execute("SELECT epoch, step, w2 FROM logs WHERE epoch = 2")
        marks = eng.execute("SELECT run_id, data_changed FROM replays").table.to_pylist()
    assert marks and all(m["data_changed"] == ["data/train.csv (changed)"] for m in marks)


def test_missing_data_is_named_with_the_failure(repo: Path) -> None:
    """The old code cannot run without its data: the task fails (NULLs) and the query's
    warnings say which file is gone."""
    (repo / "data/train.csv").rename(repo / "data/moved.csv")
    with _engine(repo) as eng, pytest.warns(FlorWarning) as caught:
        rows = eng.execute("SELECT w2 FROM logs").table
    assert rows.column("w2").null_count == rows.num_rows
    data = [str(w.message) for w in caught if issubclass(w.category, DataChangedWarning)]
    assert len(data) == 1 and "data/train.csv (missing)" in data[0]
    failed = [str(w.message) for w in caught if issubclass(w.category, ReplayFailedWarning)]
    assert failed and "No such file or directory" in failed[0]


def test_large_files_get_a_sampled_hash(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (FULL_HASH_BYTES // 256 + 1))
    first = file_hash(big)
    assert first.startswith("sampled:")
    data = bytearray(big.read_bytes())
    data[-1] ^= 0xFF  # the last byte is always sampled
    big.write_bytes(bytes(data))
    assert file_hash(big) != first
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert file_hash(small).startswith("sha256:")
    st = big.stat()
    same = InputFile("big.bin", st.st_size, st.st_mtime_ns, file_hash(big))
    assert compare_inputs(tmp_path, [same]) == []


def test_the_open_watch_never_breaks_opens_and_import_stays_light(tmp_path: Path) -> None:
    """Opens of every kind go through the wrapped ``open``/``os.open`` unharmed and are seen;
    ``open`` still looks like itself; the watch imports nothing heavy."""
    code = """
import inspect, io, os, pathlib, pickle, sys
import florsql
from florsql.record.watch import WATCH
open(os.devnull).close()
fd = os.open(os.devnull, os.O_RDONLY); os.close(fd)
os.close(os.open(os.fsencode(os.devnull), os.O_RDONLY))
with open(0, closefd=False): pass
pathlib.Path("a.txt").write_text("x")
pathlib.Path("a.txt").read_text()
with open(file=pathlib.Path("b.bin"), mode="wb", buffering=0) as f: f.write(b"y")
dfd = os.open(".", os.O_RDONLY)
os.close(os.open("a.txt", os.O_RDONLY, dir_fd=dfd)); os.close(dfd)
try:
    open("missing.txt")
except FileNotFoundError:
    pass
heavy = {"hashlib", "duckdb", "pyarrow", "torch", "sqlglot"} & set(sys.modules)
here = os.getcwd()
print(sorted(heavy), os.devnull in WATCH.read, os.path.join(here, "a.txt") in WATCH.read,
      os.path.join(here, "a.txt") in WATCH.written, os.path.join(here, "b.bin") in WATCH.written,
      os.path.join(here, "b.bin") in WATCH.read, open is io.open,
      pickle.loads(pickle.dumps(open)) is open, "buffering" in str(inspect.signature(open)),
      open.__name__, os.open.__name__)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.split() == ["[]", *["True"] * 4, "False", *["True"] * 3, "open", "open"]


def test_hashing_reads_a_bounded_amount(tmp_path: Path) -> None:
    """Past the byte budget files keep size and mtime only, and are compared by those."""
    for k in range(3):
        (tmp_path / f"f{k}.bin").write_bytes(bytes([k]) * 1000)
    got = fingerprint(tmp_path, ["f0.bin", "f1.bin", "f2.bin"], budget=2000)
    assert [i.hash.split(":")[0] for i in got] == ["sha256", "sha256", "stat"]
    assert compare_inputs(tmp_path, got) == []
    os.utime(tmp_path / "f2.bin", ns=(1, 1))
    assert compare_inputs(tmp_path, got) == [("f2.bin", "changed")]


def test_data_behind_a_symlinked_folder(tmp_path: Path) -> None:
    """``data`` a symlink to a data disk outside the repository: its files are inputs."""
    disk = tmp_path / "disk"
    write(disk / "train.csv", DATA)
    reader = "import florsql as flor\nflor.log('n', len(open('data/train.csv').read()))\n"
    repo = make_repo(tmp_path / "s", {"train.py": reader, ".gitignore": "data\n"})
    (repo / "data").symlink_to(disk, target_is_directory=True)
    run_script(repo, "train.py")
    (run,) = run_dirs(repo)
    doc = json.loads((run / "run.json").read_text())
    assert [i["path"] for i in doc["inputs"]] == ["data/train.csv"]
    write(disk / "train.csv", DATA + "4.0\n")
    (inp,) = doc["inputs"]
    assert compare_inputs(repo, [InputFile.from_json(inp)]) == [("data/train.csv", "changed")]


def test_a_file_torch_saved_before_the_run_read_it_is_no_input(tmp_path: Path) -> None:
    """Early stopping's ``best.pt``: saved, then loaded after the loop. What the run read is
    what it wrote (a replay writes it too), so it is no data of the run; before session 51 it
    was a ``during:`` input and each replay warned "changed while its run ran". A file the run
    read first and saved after stays one (what it read is not known)."""
    script = (
        "import torch\nimport florsql as flor\n"
        "net = torch.nn.Linear(2, 1)\n"
        "state = torch.load('prev.pt') if flor.arg('resume', 0) else None\n"
        "for epoch in flor.loop('epoch', range(2)):\n"
        "    torch.save(net.state_dict(), 'best.pt')\n"
        "    torch.save(net.state_dict(), 'prev.pt')\n"
        "net.load_state_dict(torch.load('best.pt'))\n"
        "flor.log('n', 1)\n"
    )
    repo = make_repo(tmp_path / "t", {"train.py": script, ".gitignore": "*.pt\n"})
    run_script(repo, "train.py")
    run_script(repo, "train.py", "--resume", "1")
    docs = [json.loads((run / "run.json").read_text()) for run in run_dirs(repo)]
    inputs = sorted(([i["path"] for i in d["inputs"]] for d in docs), key=len)
    assert inputs == [[], ["prev.pt"]], inputs
    assert all("best.pt" in d["outputs"] for d in docs)
