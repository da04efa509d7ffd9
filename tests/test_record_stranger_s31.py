"""Recording stranger sweep s31: the ways real training scripts use the record API that the
other record tests do not write down, in the environment users have (pandas and polars
installed), each read back as a user would: ``florsql.connect(repo).cursor().execute("SELECT
... FROM logs")`` or the repository's git state.

How a script ends (``sys.exit`` in the middle of a step, an exception there, a
``KeyboardInterrupt`` the script catches and goes on from, ``flor.commit()`` early, ``os._exit``,
SIGTERM and SIGINT in the step loop, a SIGINT the process ignores, the script's own atexit
handlers); what it logs (numpy, torch, every Python scalar, huge ints, -0.0, NaN, containers,
one name with several types, names with spaces, dots, unicode); args from the command line
(a bare ``--flag``, bad values); loop shapes (generators, ``enumerate(flor.loop(zip(...)))``,
empty, ``break``, two phases under one name, a helper logging at several depths, 100k tiny
steps); where it runs (``python -m pkg.train``, a script in a subfolder run from outside the
repository, a ``runpy`` driver, threads, forked children, multiprocessing children, DataLoader
workers); and the user's repository (a detached HEAD, a staged change, a dirty submodule).

Found and fixed here (florsql/record/runtime.py, florsql/record/args.py):

- a process forked from the recording one (``os.fork()``, a multiprocessing child) that ended
  through ``sys.exit`` ran the run's exit handler on its copy of the run: it rewrote run.json and
  a segment number the training process had written since, and that segment's values were lost
  (two epochs of ``loss`` in the repro); values logged in forked children (DataLoader workers)
  were dropped silently. Now a forked child never writes the run, and its record calls say once
  that they are not recorded;
- a run started in a multiprocessing child (a sweep of ``Process(target=train)``) lost every
  value and showed as ``killed``: such children end with ``os._exit``, past atexit. Now the run
  ends where multiprocessing ends the child (an exception there marks it ``failed``);
- a SIGINT the process ignores (a job started with ``&`` by a shell script) killed the run:
  florsql replaced the ignored disposition with its handler, which raised KeyboardInterrupt;
- a bare ``--debug`` for ``flor.arg("debug", False)`` read False (the default), silently; a bare
  ``--lr`` for a number read its default, silently. Now True, and a clear RecordError;
- a ``flor.log`` in an atexit handler registered before the run's first record call (so run
  after florsql's) was kept in memory and never written, silently: now a RecordWarning says so.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import florsql
from tests.helpers import git, make_repo, run_dirs, run_script, script_env, write


@pytest.fixture(autouse=True)
def _pandas_installed() -> None:
    assert importlib.util.find_spec("pandas") is not None
    assert importlib.util.find_spec("polars") is not None


def _sql(repo: Path, sql: str) -> list[tuple[Any, ...]]:
    """What a user reads (replay off: these tests are about what was recorded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hindsight columns of statements that never ran
        with florsql.connect(repo=str(repo), replay="off") as con:
            cur = con.cursor()
            cur.execute(sql)
            return list(cur.fetchall())


def _docs(repo: Path) -> list[dict[str, Any]]:
    return [json.loads((r / "run.json").read_text()) for r in run_dirs(repo)]


def _status(repo: Path) -> str:
    (doc,) = _docs(repo)
    return str(doc["status"])


def _steps(repo: Path, name: str = "loss") -> list[tuple[Any, ...]]:
    return _sql(
        repo, f"SELECT epoch, step, {name} FROM logs WHERE {name} IS NOT NULL ORDER BY 1, 2"
    )


# -- what is logged -----------------------------------------------------------------------------

VALUES = """
import datetime, decimal, enum, math
import numpy as np
import florsql as flor

class Level(enum.IntEnum):
    HIGH = 3

flor.log("np_f32", np.float32(0.1))
flor.log("np_i64", np.int64(-5))
flor.log("np_bool", np.bool_(True))
flor.log("np_0d", np.array(2.5))
flor.log("np_one", np.array([7]))
flor.log("np_u64", np.uint64(2**64 - 1))
flor.log("flag", False)
flor.log("nothing", None)
flor.log("empty", "")
flor.log("long_text", "x" * 200_000)
flor.log("uni", "λ→😀")
flor.log("nan", float("nan"))
flor.log("neg_inf", -math.inf)
flor.log("neg_zero", -0.0)
flor.log("huge", 2**63)
flor.log("int_max", 2**63 - 1)
flor.log("level", Level.HIGH)
flor.log("items", [1, 2.5, None, "a", True])
flor.log("cfg", {"a": 1, "b": [np.float32(0.5), np.int64(3)]})
flor.log("stamp", datetime.datetime(2024, 1, 2, 3, 4, 5))
flor.log("price", decimal.Decimal("0.1"))
"""


def test_every_kind_of_value_reads_back_exactly(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p", {"v.py": VALUES})
    proc = run_script(repo, "v.py")
    # anything stored as its repr warns once, naming the call: datetime and Decimal here
    assert proc.stderr.count("RecordWarning") == 2
    assert "flor.log('stamp', ...) got a datetime" in proc.stderr
    assert "flor.log('price', ...) got a Decimal" in proc.stderr
    cols = (
        "np_f32, np_i64, np_bool, np_0d, np_one, np_u64, flag, nothing, empty, length(long_text), "
        "uni, nan, neg_inf, neg_zero, huge, int_max, level, items, cfg, stamp, price"
    )
    (row,) = _sql(repo, f"SELECT {cols} FROM logs")
    (types,) = _sql(
        repo, "SELECT " + ", ".join(f"typeof({c})" for c in cols.split(", ")) + " FROM logs"
    )
    got = dict(zip(cols.split(", "), zip(row, types, strict=True), strict=True))
    assert got["np_f32"] == (float(__import__("numpy").float32(0.1)), "DOUBLE")  # float32's value
    assert got["np_i64"] == (-5, "BIGINT")
    assert got["np_bool"] == (True, "BOOLEAN")
    assert got["np_0d"] == (2.5, "DOUBLE") and got["np_one"] == (7, "BIGINT")
    # integers outside int64 are their decimal text (no number type holds them exactly)
    assert got["np_u64"] == (str(2**64 - 1), "VARCHAR")
    assert got["huge"] == (str(2**63), "VARCHAR") and got["int_max"] == (2**63 - 1, "BIGINT")
    assert got["flag"] == (False, "BOOLEAN")
    assert got["nothing"] == (
        None,
        '"NULL"',
    )  # only ever None: untyped and got["empty"] == ("", "VARCHAR")
    assert got["length(long_text)"] == (200_000, "BIGINT")
    assert got["uni"] == ("λ→😀", "VARCHAR")
    assert math.isnan(got["nan"][0]) and got["neg_inf"] == (-math.inf, "DOUBLE")
    assert got["neg_zero"][0] == 0.0 and math.copysign(1.0, got["neg_zero"][0]) == -1.0
    assert got["level"] == (3, "BIGINT")  # an IntEnum is its int
    assert got["items"] == ('[1, 2.5, null, "a", true]', "VARCHAR")
    assert got["cfg"] == ('{"a": 1, "b": [0.5, 3]}', "VARCHAR")
    assert got["stamp"] == ("datetime.datetime(2024, 1, 2, 3, 4, 5)", "VARCHAR")
    assert got["price"] == ("Decimal('0.1')", "VARCHAR")
    # the JSON text reads as JSON
    assert _sql(repo, "SELECT items->>'$[3]', (cfg->'b'->>'$[1]')::INT FROM logs") == [("a", 3)]


def test_one_name_logged_with_several_types(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "p",
        {
            "m.py": """
            import numpy as np
            import florsql as flor
            for epoch in flor.loop("epoch", range(4)):
                flor.log("mix", [1, 2.5, 3, np.float32(4.5)][epoch])  # ints and floats
                flor.log("count", [1, 2, 2**64, 4][epoch])  # one int past int64
                flor.log("text", [1.0, "x", None, 2][epoch])  # a number, a string, None
                flor.log("ok", [True, False, True, True][epoch])
            """
        },
    )
    run_script(repo, "m.py")
    rows = _sql(
        repo,
        "SELECT epoch, mix, typeof(mix), count, typeof(count), text, ok, typeof(ok) FROM logs "
        "ORDER BY epoch",
    )
    assert rows == [
        (0, 1.0, "DOUBLE", "1", "VARCHAR", "1.0", True, "BOOLEAN"),
        (1, 2.5, "DOUBLE", "2", "VARCHAR", "x", False, "BOOLEAN"),
        (2, 3.0, "DOUBLE", str(2**64), "VARCHAR", None, True, "BOOLEAN"),
        (3, 4.5, "DOUBLE", "4", "VARCHAR", "2", True, "BOOLEAN"),
    ]


@pytest.mark.slow
def test_torch_values_and_logs_from_dataloader_workers(tmp_path: Path) -> None:
    """One-element tensors of any dtype are numbers; ``[[5.]]`` (two dimensions) is its repr,
    with a warning. A ``flor.log`` in a DataLoader worker (a forked process) is not recorded
    and says so, once per worker; the parent's values are whole."""
    repo = make_repo(
        tmp_path / "p",
        {
            "t.py": """
            import torch
            from torch.utils.data import DataLoader, Dataset
            import florsql as flor

            class Numbers(Dataset):
                def __len__(self):
                    return 8
                def __getitem__(self, i):
                    flor.log("in_worker", i)
                    return torch.tensor(float(i))

            if __name__ == "__main__":
                flor.log("t_half", torch.tensor(0.1, dtype=torch.bfloat16))
                flor.log("t_int", torch.tensor([4]))
                flor.log("t_bool", torch.tensor(True))
                flor.log("t_grad", torch.tensor(2.0, requires_grad=True) * 3)
                flor.log("t_2d", torch.tensor([[5.0]]))
                loader = DataLoader(Numbers(), batch_size=2, num_workers=2)
                for epoch in flor.loop("epoch", range(2)):
                    for batch in flor.loop("step", loader):
                        flor.log("loss", batch.sum())
            """
        },
    )
    proc = run_script(repo, "t.py")
    assert proc.stderr.count("flor.log('in_worker', ...) in a process forked from") == 4
    assert proc.stderr.count("flor.log('t_2d', ...) got a Tensor") == 1
    assert _sql(repo, "SELECT t_half, t_int, t_bool, t_grad, t_2d FROM logs") == [
        (0.10009765625, 4, True, 6.0, "tensor([[5.]])")
    ]
    assert _steps(repo) == [(e, s, 4.0 * s + 1.0) for e in range(2) for s in range(4)]
    assert _sql(repo, "SELECT count(*) FROM logs WHERE in_worker IS NOT NULL") == [(0,)]
    assert _status(repo) == "finished"


def test_names_with_spaces_dots_unicode_and_capitals(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "p",
        {
            "n.py": """
            import florsql as flor
            for e in flor.loop("Epoch Loop", range(2)):
                flor.log("Val Acc", e)
                flor.log("train.loss", e * 2)
                flor.log("λ_reg", e * 3)
                flor.log("UPPER", e * 4)
            """
        },
    )
    run_script(repo, "n.py")
    sql = 'SELECT "Epoch Loop", "Val Acc", "train.loss", λ_reg, upper FROM logs ORDER BY 1'
    assert _sql(repo, sql) == [(0, 0, 0, 0, 0), (1, 1, 2, 3, 4)]
    # names ignore case, as DuckDB's identifiers do
    assert _sql(repo, 'SELECT "epoch loop", "VAL ACC" FROM logs ORDER BY 1') == [(0, 0), (1, 1)]


# -- how a script ends ----------------------------------------------------------------------

STEP_LOOP = """
import os, sys
import florsql as flor
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(4)):
        flor.log("loss", epoch * 10 + step)
        if epoch == 1 and step == 2:
            {stop}
"""


@pytest.mark.parametrize(
    ("stop", "code", "status"),
    [
        ("sys.exit(0)", 0, "finished"),
        # a code or message does not change the status: only an uncaught exception does
        ('sys.exit("diverged")', 1, "finished"),
        ("raise FloatingPointError('nan loss')", 1, "failed"),
    ],
)
def test_a_script_that_stops_inside_a_step(
    tmp_path: Path, stop: str, code: int, status: str
) -> None:
    repo = make_repo(tmp_path / "p", {"t.py": STEP_LOOP.replace("{stop}", stop)})
    proc = run_script(repo, "t.py", check=False)
    assert proc.returncode == code
    assert "florsql" not in proc.stderr  # only the script's own traceback, if any
    expect = [(e, s, e * 10 + s) for e, s in [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]]
    assert _steps(repo) == [*expect, (1, 2, 12)]
    assert _status(repo) == status
    # the step that stopped, and its epoch, have no duration; every other one has
    rows = _sql(
        repo,
        "SELECT loop_name, iteration FROM loops WHERE seconds IS NULL ORDER BY loop_name",
    )
    assert rows == [("epoch", 1), ("step", 2)]


def test_keyboard_interrupt_caught_then_more_logged(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "p",
        {
            "t.py": """
            import florsql as flor
            try:
                for epoch in flor.loop("epoch", range(5)):
                    for step in flor.loop("step", range(3)):
                        flor.log("loss", epoch * 10 + step)
                        if epoch == 1 and step == 1:
                            raise KeyboardInterrupt
            except KeyboardInterrupt:
                flor.log("stopped_at", epoch)
            for epoch in flor.loop("epoch", range(1)):  # a second phase, one name
                flor.log("final", 1.5)
            """
        },
    )
    run_script(repo, "t.py")
    assert _steps(repo) == [(0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 0, 10), (1, 1, 11)]
    assert _sql(repo, "SELECT epoch, stopped_at FROM logs WHERE stopped_at IS NOT NULL") == [
        (None, 1)
    ]
    assert _sql(repo, "SELECT epoch, final FROM logs WHERE final IS NOT NULL") == [(0, 1.5)]
    assert _status(repo) == "finished"


def test_commit_early_then_more_and_os_exit(tmp_path: Path) -> None:
    """What follows ``flor.commit()`` is written at exit; ``os._exit`` skips that (documented):
    values logged after the last flush are lost, those before it are whole."""
    repo = make_repo(
        tmp_path / "p",
        {
            "t.py": """
            import os
            import florsql as flor
            flor.log("a", 1)
            flor.commit()
            for epoch in flor.loop("epoch", range(2)):
                flor.log("loss", epoch)
            flor.log("b", 2)
            """,
            "hard.py": """
            import os
            import florsql as flor
            for epoch in flor.loop("epoch", range(2)):
                flor.log("loss", epoch)
            flor.commit()
            flor.log("after", 1)
            os._exit(0)
            """,
        },
    )
    run_script(repo, "t.py")
    rows = _sql(repo, "SELECT epoch, a, b, loss FROM logs ORDER BY epoch NULLS FIRST")
    assert rows == [(None, 1, 2, None), (0, None, None, 0), (1, None, None, 1)]
    repo = make_repo(tmp_path / "q", {"hard.py": (repo / "hard.py").read_text()})
    run_script(repo, "hard.py")
    assert _sql(repo, "SELECT epoch, loss FROM logs WHERE loss IS NOT NULL ORDER BY 1") == [
        (0, 0),
        (1, 1),
    ]
    assert _sql(repo, "SELECT count(*) FROM logs WHERE after IS NOT NULL") == [(0,)]
    assert _status(repo) == "finished"


SIGNALLED = """
import signal, sys
import florsql as flor
{setup}
for epoch in flor.loop("epoch", range(1000)):
    for step in flor.loop("step", range(3)):
        flor.log("loss", epoch * 10 + step)
        if epoch == 2 and step == 1:
            print("ready", flush=True)
            sys.stdin.readline()  # blocks until the test closes stdin
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_the_step_loop(tmp_path: Path, sig: signal.Signals) -> None:
    repo = make_repo(tmp_path / "p", {"t.py": SIGNALLED.replace("{setup}", "")})
    proc = subprocess.Popen(
        [sys.executable, "t.py"],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)  # closes stdin: the readline returns, if reached
    assert proc.returncode == -sig, err  # each ends as its signal's default action would
    if sig == signal.SIGINT:  # Python's own handler: a KeyboardInterrupt in the script
        assert err.rstrip().endswith("KeyboardInterrupt")
    expect = [(e, s, e * 10 + s) for e in range(3) for s in range(3)][:8]
    assert _steps(repo) == expect
    (doc,) = _docs(repo)
    assert doc["status"] == "killed" and doc["error"]["message"] == sig.name


def test_a_sigint_the_process_ignores_stays_ignored(tmp_path: Path) -> None:
    """A job started with ``&`` by a shell script ignores SIGINT (so a Ctrl-C meant for the
    script does not stop it): recording kept that disposition. Before, florsql's handler
    replaced it and raised KeyboardInterrupt, so the run died at the first Ctrl-C."""
    repo = make_repo(
        tmp_path / "p",
        {
            "t.py": """
            import os, signal
            import florsql as flor
            for epoch in flor.loop("epoch", range(3)):
                flor.log("loss", epoch)
                if epoch == 1:
                    os.kill(os.getpid(), signal.SIGINT)
            print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
            """
        },
    )
    proc = subprocess.run(
        [sys.executable, "t.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "True\n", "")
    assert _sql(repo, "SELECT epoch, loss FROM logs ORDER BY 1") == [(0, 0), (1, 1), (2, 2)]
    assert _status(repo) == "finished"


def test_the_scripts_own_atexit_handlers(tmp_path: Path) -> None:
    """atexit runs handlers last-registered first. One registered after the run's first record
    call runs before florsql's and its value is recorded; one registered before it runs after
    the run ended: its value cannot be written, and a RecordWarning says so (before: silently
    lost)."""
    repo = make_repo(
        tmp_path / "p",
        {
            "t.py": """
            import atexit
            import florsql as flor
            atexit.register(lambda: flor.log("early_handler", 1))
            for epoch in flor.loop("epoch", range(2)):
                flor.log("loss", epoch)
            atexit.register(lambda: flor.log("late_handler", 2))
            """
        },
    )
    proc = run_script(repo, "t.py")
    assert proc.stderr.count("RecordWarning") == 1
    assert "flor.log('early_handler', ...) after the run ended" in proc.stderr
    assert "register that atexit handler after the run's first record call" in proc.stderr
    assert _sql(repo, "SELECT late_handler FROM logs WHERE late_handler IS NOT NULL") == [(2,)]
    assert _sql(repo, "SELECT count(*) FROM logs WHERE early_handler IS NOT NULL") == [(0,)]
    assert _sql(repo, "SELECT epoch, loss FROM logs WHERE loss IS NOT NULL ORDER BY 1") == [
        (0, 0),
        (1, 1),
    ]


# -- other processes and threads ------------------------------------------------------------


def test_a_forked_child_never_writes_the_parents_run(tmp_path: Path) -> None:
    """Repro of the bug: the child, forked in epoch 1, exits through ``sys.exit`` after the
    parent has committed epochs 2 and 3; its copy of the run's exit handler wrote the parent's
    next segment number, replacing the parent's segment: ``loss`` of epochs 2 and 3 was lost
    and run.json rewritten by the child. Its own ``flor.log`` says it is not recorded."""
    repo = make_repo(
        tmp_path / "p",
        {
            "t.py": """
            import os, sys
            import florsql as flor
            r, w = os.pipe()
            for epoch in flor.loop("epoch", range(4)):
                flor.log("loss", epoch)
                if epoch == 1:
                    pid = os.fork()
                    if pid == 0:
                        os.close(w)
                        flor.log("in_child", 1)
                        os.read(r, 1)  # until the parent has committed
                        sys.exit(0)
            flor.commit()
            os.write(w, b"x")
            os.waitpid(pid, 0)
            """
        },
    )
    proc = run_script(repo, "t.py")
    assert proc.stderr.count("RecordWarning") == 1
    assert "flor.log('in_child', ...) in a process forked from" in proc.stderr
    assert _sql(repo, "SELECT epoch, loss FROM logs WHERE loss IS NOT NULL ORDER BY 1") == [
        (e, e) for e in range(4)
    ]
    (doc,) = _docs(repo)
    assert doc["status"] == "finished" and doc["pid"] == int(doc["run_id"].split("-")[1])


def test_runs_started_in_multiprocessing_children_are_whole(tmp_path: Path) -> None:
    """A sweep that trains each setting in a ``multiprocessing`` child (fork, Linux's default):
    each child is a run. Such a child ends with ``os._exit``, past atexit: before, every value
    was lost and the runs showed as killed. An exception that ends the child marks it failed."""
    repo = make_repo(
        tmp_path / "p",
        {
            "sweep.py": """
            import multiprocessing as mp
            import florsql as flor

            def train(lr):
                for epoch in flor.loop("epoch", range(3)):
                    flor.log("loss", lr * epoch)
                if lr == 3:
                    raise ValueError("diverged")

            if __name__ == "__main__":
                ctx = mp.get_context("fork")
                for lr in (1, 2, 3):
                    p = ctx.Process(target=train, args=(lr,))
                    p.start()
                    p.join()
            """
        },
    )
    run_script(repo, "sweep.py", check=False)
    rows = _sql(repo, "SELECT run_id, epoch, loss FROM logs ORDER BY tstamp, epoch")
    assert [r[1:] for r in rows] == [(e, lr * e) for lr in (1, 2, 3) for e in range(3)]
    statuses = [d["status"] for d in sorted(_docs(repo), key=lambda d: d["tstamp"])]
    assert statuses == ["finished", "finished", "failed"]
    failed = sorted(_docs(repo), key=lambda d: d["tstamp"])[-1]["error"]
    assert failed["type"] == "ValueError" and failed["message"] == "diverged"


def test_logs_from_threads_land_in_the_current_context(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "p",
        {
            "t.py": """
            import threading
            import florsql as flor

            def first():  # the run's first record call, from a thread
                flor.log("from_thread", 1)

            t = threading.Thread(target=first)
            t.start()
            t.join()
            for epoch in flor.loop("epoch", range(3)):
                workers = [
                    threading.Thread(target=lambda k=k: flor.log(f"t{k}", epoch * 10 + k))
                    for k in range(2)
                ]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
            """
        },
    )
    run_script(repo, "t.py")
    assert _sql(repo, "SELECT epoch, from_thread, t0, t1 FROM logs ORDER BY epoch NULLS FIRST") == [
        (None, 1, None, None),
        (0, None, 0, 1),
        (1, None, 10, 11),
        (2, None, 20, 21),
    ]


# -- args -------------------------------------------------------------------------------------

ARGS = """
import florsql as flor
a = flor.arg("a", 1)
b = flor.arg("b", 0.5)
c = flor.arg("c", "x")
d = flor.arg("d", False)
e = flor.arg("e", None)
again = flor.arg("a", 99)  # read twice: the first value
for i in flor.loop("epoch", range(1)):
    late = flor.arg("late", 3)  # after the loop began
    flor.log("seen", [a, b, c, d, e, again, late])
"""


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        ([], [1, 0.5, "x", False, None, 1, 3]),
        (
            ["--a", "5", "--b=1e-2", "--c", "two words", "--d=yes", "--e", "7", "--late", "-4"],
            [5, 0.01, "two words", True, "7", 5, -4],
        ),
        # a bare flag is True for a bool arg, as argparse's store_true (it read False before)
        (["--d", "--a", "2"], [2, 0.5, "x", True, None, 2, 3]),
        (["--kwargs", "a=3", "d=false"], [3, 0.5, "x", False, None, 3, 3]),
    ],
)
def test_args_from_the_command_line(tmp_path: Path, argv: list[str], expect: list[Any]) -> None:
    repo = make_repo(tmp_path / "p", {"t.py": ARGS})
    run_script(repo, "t.py", *argv)
    assert _sql(repo, "SELECT seen FROM logs") == [(json.dumps(expect),)]
    cols = "a, b, c, d, e, late"
    (row,) = _sql(repo, f"SELECT {cols} FROM runs")
    assert list(row) == [*expect[:5], expect[6]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--a", "0.5"], "--a '0.5' is not an integer; flor.arg('a', 1) expects an int like"),
        (["--b", "fast"], "--b 'fast' is not a number; flor.arg('b', 0.5) expects a float like"),
        (["--d", "maybe"], "--d 'maybe' is not true/false/1/0"),
        # a bare flag for an arg that is not a bool took the default, silently
        (["--b"], "--b is given without a value; flor.arg('b', 0.5) expects a float like its "),
        (["--a", "--c", "y"], "--a is given without a value; flor.arg('a', 1) expects an int"),
    ],
)
def test_bad_args_are_a_clear_error(tmp_path: Path, argv: list[str], message: str) -> None:
    repo = make_repo(tmp_path / "p", {"t.py": ARGS})
    proc = run_script(repo, "t.py", *argv, check=False)
    assert proc.returncode == 1
    assert "florsql.errors.RecordError: " + message in proc.stderr
    (doc,) = _docs(repo)
    assert doc["status"] == "failed" and doc["error"]["type"] == "RecordError"


# -- loops ------------------------------------------------------------------------------------


def test_loop_shapes(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "p",
        {
            "t.py": """
            import florsql as flor

            def batches(n):
                for i in range(n):
                    yield i * 10

            def note(v):  # called at the run's level, in an epoch and in a step
                flor.log("note", v)

            note(-1)
            for epoch in flor.loop("epoch", batches(2)):
                note(epoch)
                for i, (a, b) in enumerate(flor.loop("step", zip("xy", [1.5, 2.5]))):
                    note(i)
                    flor.log("ab", a + str(b))
                for s in flor.loop("empty", []):
                    flor.log("never", 1)
                for s in flor.loop("short", range(100)):
                    flor.log("short_v", s)
                    if s == 1:
                        break
            for epoch in flor.loop("epoch", range(2)):  # a second phase, one loop name
                flor.log("phase2", epoch)
            """
        },
    )
    run_script(repo, "t.py")
    sql = "SELECT epoch, step, note FROM logs WHERE note IS NOT NULL ORDER BY 1, 2"
    assert _sql(repo, sql) == [
        (0, 0, 0),
        (0, 1, 1),
        (0, None, 0),
        (1, 0, 0),
        (1, 1, 1),
        (1, None, 10),
        (None, None, -1),
    ]
    assert _steps(repo, "ab") == [(e, s, ["x1.5", "y2.5"][s]) for e in range(2) for s in range(2)]
    assert _sql(repo, "SELECT count(*) FROM logs WHERE never IS NOT NULL") == [(0,)]
    assert _sql(
        repo, "SELECT epoch, short, short_v FROM logs WHERE short_v IS NOT NULL ORDER BY 1, 2"
    ) == [(e, s, s) for e in range(2) for s in range(2)]
    assert _sql(repo, "SELECT epoch, phase2 FROM logs WHERE phase2 IS NOT NULL ORDER BY 1") == [
        (0, 0),
        (1, 1),
    ]
    # the loops relation: each epoch's item (the generator's value), no rows for the empty loop
    rows = _sql(repo, "SELECT loop_name, count(*) FROM loops GROUP BY 1 ORDER BY 1")
    assert rows == [("epoch", 4), ("short", 4), ("step", 4)]
    rows = _sql(repo, "SELECT value_int FROM loops WHERE loop_name = 'epoch' ORDER BY ctx_id")
    assert rows == [(0,), (10,), (0,), (1,)]


@pytest.mark.slow
def test_a_hundred_thousand_tiny_steps(tmp_path: Path) -> None:
    """Every value of 100k steps is there, and recording them costs microseconds a step (about
    4 us measured, docs/record.md; the bound here is generous for a loaded CI machine)."""
    repo = make_repo(
        tmp_path / "p",
        {
            "t.py": """
            import time
            import florsql as flor
            N = 100_000
            flor.log("start", 0)  # the run's start-up is not part of the loop's time
            t0 = time.perf_counter()
            w = 0.0
            for i in range(N):
                w += i * 1e-6
            plain = time.perf_counter() - t0
            t0 = time.perf_counter()
            for epoch in flor.loop("epoch", range(1)):
                for i in flor.loop("step", range(N)):
                    w += i * 1e-6
                    flor.log("loss", float(i))
            recorded = time.perf_counter() - t0
            print((recorded - plain) / N)
            """
        },
    )
    proc = run_script(repo, "t.py")
    per_step = float(proc.stdout)
    assert per_step < 50e-6, per_step
    rows = _sql(repo, "SELECT count(*), sum(loss), min(step), max(step) FROM logs")
    assert rows == [(100_000, float(sum(range(100_000))), 0, 99_999)]
    assert _sql(repo, "SELECT count(*), count(seconds) FROM loops WHERE loop_name = 'step'") == [
        (100_000, 100_000)
    ]


# -- where the script runs --------------------------------------------------------------------


def test_module_runs_subfolder_scripts_and_drivers(tmp_path: Path) -> None:
    train = """
    import florsql as flor
    from pkg import helper

    def main():
        for epoch in flor.loop("epoch", range(2)):
            flor.log("loss", helper.f(epoch))

    if __name__ == "__main__":
        main()
    """
    repo = make_repo(
        tmp_path / "p",
        {
            "pkg/__init__.py": "",
            "pkg/train.py": train,
            "pkg/helper.py": "def f(e):\n    return e * 0.5\n",
            "scripts/sub/t.py": 'import florsql as flor\nflor.log("spot", 1)\n',
            "driver.py": 'import runpy\nrunpy.run_path("pkg/train.py", run_name="__main__")\n',
        },
    )
    env = script_env(PYTHONPATH=str(repo))
    for cmd, cwd in (
        (["-m", "pkg.train"], repo),
        ([str(repo / "scripts" / "sub" / "t.py")], tmp_path),  # from outside the repository
        (["driver.py"], repo),
    ):
        proc = subprocess.run(
            [sys.executable, *cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
        )
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    docs = sorted(_docs(repo), key=lambda d: d["tstamp"])
    assert [(d["filename"], d["cwd"]) for d in docs] == [
        ("pkg/train.py", "."),
        ("scripts/sub/t.py", str(tmp_path)),
        ("pkg/train.py", "."),
    ]
    assert docs[0]["files"] == ["pkg/train.py", "pkg/__init__.py", "pkg/helper.py"]
    rows = _sql(
        repo, "SELECT filename, epoch, loss FROM logs WHERE loss IS NOT NULL ORDER BY tstamp, 2"
    )
    assert rows == [("pkg/train.py", e, e * 0.5) for e in range(2)] * 2
    assert _sql(repo, "SELECT filename, spot FROM logs WHERE spot IS NOT NULL") == [
        ("scripts/sub/t.py", 1)
    ]


# -- the user's repository --------------------------------------------------------------------


def test_detached_head_staged_change_and_dirty_submodule_are_left_as_they_were(
    tmp_path: Path,
) -> None:
    """The version holds the repository's own files as they were (the staged and then edited
    ``x.py`` as in the working tree); a submodule's files are not part of it (the submodule is
    another repository: docs/record.md)."""
    lib = make_repo(tmp_path / "lib", {"sub.py": "V = 41\n"})
    repo = make_repo(
        tmp_path / "p",
        {
            "t.py": 'import florsql as flor\nfrom lib import sub\nflor.log("v", sub.V)\n',
            "x.py": "A = 1\n",
        },
    )
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    git(repo, "commit", "-qm", "submodule")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    write(repo / "x.py", "A = 2\n")
    git(repo, "add", "x.py")
    write(repo / "x.py", "A = 3\n")
    write(repo / "lib" / "sub.py", "V = 42\n")  # an edit inside the submodule
    index = (repo / ".git" / "index").read_bytes()  # before any git status refreshes it
    head_file = (repo / ".git" / "HEAD").read_text()
    state = [
        git(repo, "rev-parse", "HEAD"),
        git(repo, "for-each-ref", "refs/heads", "refs/tags"),
        git(repo, "diff", "--cached"),
        git(repo, "diff"),
    ]
    run_script(repo, "t.py")
    assert (repo / ".git" / "index").read_bytes() == index
    assert (repo / ".git" / "HEAD").read_text() == head_file
    assert state == [
        git(repo, "rev-parse", "HEAD"),
        git(repo, "for-each-ref", "refs/heads", "refs/tags"),
        git(repo, "diff", "--cached"),
        git(repo, "diff"),
    ]
    status = git(repo, "status", "--porcelain=v1", "--untracked-files=all")
    assert sorted(status.splitlines()) == [" M lib", "MM x.py"]
    (doc,) = _docs(repo)
    assert doc["head"] == state[0].strip() and doc["dirty"] is True
    from florsql.versions import file_at, files_at

    assert files_at(repo, doc["vid"]) == [".gitmodules", "t.py", "x.py"]
    assert file_at(repo, doc["vid"], "x.py") == "A = 3\n"
    assert _sql(repo, "SELECT v FROM logs") == [(42,)]
    assert os.path.exists(repo / "lib" / "sub.py")
