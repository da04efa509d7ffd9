"""Session 46's stranger sweeps (helper sessions F and G): long-lived and messy use.

- A run's folder deleted (by hand, ``git clean -fdx``) stayed in an index that had seen it:
  ``runs`` and ``logs`` answered it as ``finished`` (a fresh index did not: two processes, two
  answers), and every hindsight query failed "this is a florsql bug" on its missing run.json.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import florsql
from tests.helpers import make_repo, run_dirs, run_script, write

TRAIN = """import florsql as flor

seed = flor.arg("seed", 0)
w = float(seed)
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(3)):
        w = w * 0.5 + epoch
        flor.log("w", w)
#@
"""


def _rows(con: Any, sql: str) -> list[tuple[Any, ...]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(con.cursor().execute(sql).fetchall())


def test_a_deleted_run_folder_leaves_the_index(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": TRAIN.replace("#@\n", "")})
    for seed in ("1", "2"):
        run_script(repo, "train.py", "--seed", seed)
    with florsql.connect(repo, replay="auto") as con:
        assert _rows(con, "SELECT seed FROM runs ORDER BY 1") == [(1,), (2,)]
        gone = [d for d in run_dirs(repo) if '"seed": 1' in (d / "run.json").read_text()]
        assert len(gone) == 1
        shutil.rmtree(gone[0])
        assert _rows(con, "SELECT seed FROM runs ORDER BY 1") == [(2,)]
        assert _rows(con, "SELECT DISTINCT seed FROM logs") == [(2,)]
        write(repo / "train.py", TRAIN.replace("#@\n", '        flor.log("w2", w * 2)\n'))
        got = _rows(con, "SELECT seed, epoch, w2 FROM logs WHERE w2 IS NOT NULL ORDER BY 2")
        assert got == [(2, 0, 2.0), (2, 1, 3.0), (2, 2, 5.5)]
    with florsql.connect(repo, replay="off") as con:  # a fresh connection agrees
        assert _rows(con, "SELECT seed FROM runs") == [(2,)]


def test_an_index_with_a_damaged_block_is_rebuilt(tmp_path: Path) -> None:
    """A truncated index was rebuilt from the run files, as documented; one with a damaged
    block ("computed checksum ... does not match stored checksum ... in block at location
    8192": a bad sector, a copy taken while it was written) was not, its "block" read as a
    lock: every command failed until the file was deleted by hand."""
    import os

    from florsql.errors import StoreWarning

    repo = make_repo(tmp_path / "r", {"train.py": TRAIN.replace("#@\n", "")})
    run_script(repo, "train.py")
    with florsql.connect(repo, replay="off") as con:
        assert _rows(con, "SELECT count(w) FROM logs") == [(3,)]
    index = repo / ".florsql" / "index.duckdb"
    with index.open("r+b") as f:
        f.seek(8192)
        f.write(os.urandom(50 * 1024))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with florsql.connect(repo, replay="off") as con:
            assert list(con.cursor().execute("SELECT count(w) FROM logs").fetchall()) == [(3,)]
    assert any(issubclass(w.category, StoreWarning) for w in caught)


def test_a_clone_without_florsql_s_refs_is_told_how_to_fetch_them(tmp_path: Path) -> None:
    """``git clone`` (and ``git push``) do not carry refs/florsql/versions/*: with the store
    copied over, every hindsight query failed "unknown code version ...: see `florsql runs`"
    (which lists that very version), as an InternalError of the DB-API. It now says how to
    fetch the snapshots, as an OperationalError; after the fetch the query answers."""
    import subprocess

    import pytest

    from tests.helpers import git

    repo = make_repo(tmp_path / "r", {"train.py": TRAIN.replace("#@\n", "")})
    run_script(repo, "train.py", "--seed", "2")
    clone = tmp_path / "c"
    subprocess.run(["git", "clone", "-q", f"file://{repo}", str(clone)], check=True)
    shutil.copytree(repo / ".florsql", clone / ".florsql")
    write(clone / "train.py", TRAIN.replace("#@\n", '        flor.log("w2", w * 2)\n'))
    sql = "SELECT epoch, w2 FROM logs WHERE w2 IS NOT NULL ORDER BY 1"
    with (
        florsql.connect(clone, replay="auto") as con,
        pytest.raises(florsql.OperationalError, match=r"git fetch <remote> 'refs/florsql"),
    ):
        _rows(con, sql)
    git(clone, "fetch", "-q", "origin", "refs/florsql/*:refs/florsql/*")
    with florsql.connect(clone, replay="auto") as con:
        assert _rows(con, sql) == [(0, 2.0), (1, 3.0), (2, 5.5)]


def _hindsight(repo: Path) -> list[tuple[Any, ...]]:
    write(repo / "train.py", TRAIN.replace("#@\n", '        flor.log("w2", w * 2)\n'))
    with florsql.connect(repo, replay="auto") as con:
        return _rows(con, "SELECT epoch, w2 FROM logs WHERE w2 IS NOT NULL ORDER BY 1")


def test_a_stopped_replay_service_does_not_hang_queries(tmp_path: Path, monkeypatch: Any) -> None:
    """A service stopped (``kill -STOP``) or stuck held the socket and answered nothing: every
    hindsight query, ``replay-service status`` and ``stop`` hung. A hello now waits
    ``HELLO_TIMEOUT``: the query replays without the service (and warns), ``status`` says so,
    and ``stop`` ends the process by its pid."""
    import os
    import signal

    import pytest

    from florsql.replay import service

    repo = make_repo(tmp_path / "r", {"train.py": TRAIN.replace("#@\n", "")})
    run_script(repo, "train.py")
    store = repo / ".florsql"
    conn = service.connect(store)  # (started with the usual wait: a loaded machine is slow)
    assert conn is not None
    pid = int(conn.info["pid"])
    conn.close()
    monkeypatch.setattr(service, "HELLO_TIMEOUT", 1.0)
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(service.ServiceUnresponsive, match=f"pid {pid}"):
            service.status(store)
        assert _hindsight(repo) == [(0, 0.0), (1, 2.0), (2, 5.0)]
    finally:
        assert service.stop(store, timeout=5) == pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_status_does_not_count_as_use_and_a_moved_repository_gets_its_own_service(
    tmp_path: Path,
) -> None:
    """``replay-service status`` said hello, which reset the idle clock: a service polled for
    its status never exited. And a repository moved (``mv``) kept its service, which served
    the old path: every hindsight query failed "it serves only <old path>"."""
    import time

    from florsql.replay import service

    repo = make_repo(tmp_path / "r", {"train.py": TRAIN.replace("#@\n", "")})
    run_script(repo, "train.py")
    conn = service.connect(repo / ".florsql")
    assert conn is not None
    first = int(conn.info["pid"])
    conn.close()
    t0 = time.monotonic()
    service.status(repo / ".florsql")
    t1 = time.monotonic()
    info = service.status(repo / ".florsql")
    assert info is not None and float(info["idle_for"]) >= t1 - t0
    moved = tmp_path / "moved"
    repo.rename(moved)
    try:
        assert _hindsight(moved) == [(0, 0.0), (1, 2.0), (2, 5.0)]
        info = service.status(moved / ".florsql")
        assert info is not None and info["repository"] == str(moved.resolve())
        assert int(info["pid"]) != first
    finally:
        service.stop(moved / ".florsql")


def test_flor_dataframe_in_a_script_s_first_run_is_empty(tmp_path: Path) -> None:
    """FlorDB's pattern, ``flor.dataframe("loss")`` at the top of train.py to read earlier
    runs: in the project's first run nothing is known, and "Unknown name 'loss'" killed the
    run before it started. With no run recorded yet the frame is empty."""
    script = """import florsql as flor

df = flor.dataframe("loss", as_pandas=True)
print("prior", len(df), ",".join(df.columns))
for e in flor.loop("epoch", range(2)):
    flor.log("loss", 1.0 / (e + 1))
"""
    repo = make_repo(tmp_path / "r", {"train.py": script})
    first = run_script(repo, "train.py")
    assert "prior 0 projid,tstamp,filename,loss" in first.stdout
    second = run_script(repo, "train.py")
    assert "prior 2 projid,tstamp,filename,epoch,loss" in second.stdout
    import pytest

    with florsql.connect(repo) as con, pytest.raises(florsql.errors.PlanError, match="Unknown"):
        florsql.dataframe("nosuch", engine=con)  # a typo, once runs exist: still an error


HELPERLESS = """import torch
from torch import nn
import florsql as flor

torch.manual_seed(0)
X = torch.randn(64, 3)
Y = (X.sum(1) > 0).long()
net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
lossf = nn.CrossEntropyLoss()
#HELPERS

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        order = torch.randperm(64).split(16)
        for idx in flor.loop("step", order):
            loss = lossf(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
#STEP
            flor.log("loss", loss.item())
        acc = (net(X).argmax(1) == Y).float().mean().item()
        flor.log("acc", acc)
#EPOCH
"""
HELPERS = """

def report(m):
    w = round(float(m[0].weight.norm()), 6)
    flor.log("wn", w)


def log_grads(model):
    flor.log("gn", round(float(model[0].weight.grad.norm()), 6))
"""


def test_a_log_in_a_helper_today_s_code_adds_goes_where_it_is_called(tmp_path: Path) -> None:
    """Today's code adds ``def report(m): ... flor.log("wn", ...)`` called once in the epoch
    loop (and ``log_grads(net)`` in the step loop); the old version has neither helper nor
    call. Refused before, "no context: none of the statements around it in report() match
    the old version", though docs/propagate.md says such a statement goes where the helper is
    called. It now does, ``m`` read as ``net``; values equal a run of today's script."""
    old = HELPERLESS.replace("#HELPERS\n", "").replace("#STEP\n", "").replace("#EPOCH\n", "")
    new = (
        HELPERLESS.replace("#HELPERS\n", HELPERS)
        .replace("#STEP\n", "            log_grads(net)\n")
        .replace("#EPOCH\n", "        report(net)\n")
    )
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    env = {"FLORSQL_CHECKPOINT_PERIOD": "1"}
    run_script(repo, "train.py", **env)
    run_script(oracle, "train.py", **env)
    write(repo / "train.py", new)
    sql = "SELECT epoch, step, wn, gn FROM logs WHERE wn IS NOT NULL OR gn IS NOT NULL"
    with florsql.connect(oracle, replay="off") as con:
        want = sorted(_rows(con, sql), key=repr)
    assert len(want) == 4 + 16
    with florsql.connect(repo, replay="auto") as con:
        part = _rows(con, "SELECT epoch, wn FROM logs WHERE epoch = 2 AND wn IS NOT NULL")
        assert part == [(r[0], r[2]) for r in want if r[0] == 2 and r[2] is not None]
        assert sorted(_rows(con, sql), key=repr) == want


def test_a_new_quiet_statement_beside_a_replayed_one_leaves_its_values_counting(
    tmp_path: Path,
) -> None:
    """docs/replay.md: adding a statement of another name that draws nothing leaves a replayed
    name's values counting. ``flor.log("h2", epoch * 1000 + seed)`` reads an arg, and the
    ``seed = flor.arg(...)`` that may travel with it counted as a call that may draw: ``gnorm``
    replayed a moment before read NULL with replay off (sweep I)."""
    script = """import florsql as flor
seed = flor.arg("seed", 0)
for epoch in flor.loop("epoch", range(3)):
    flor.log("acc", epoch * 10)
#@
"""
    repo = make_repo(tmp_path / "r", {"train.py": script.replace("#@\n", "")})
    for seed in ("0", "1"):
        run_script(repo, "train.py", "--seed", seed)
    gnorm = '    flor.log("gnorm", epoch * 100 + seed)\n'
    write(repo / "train.py", script.replace("#@\n", gnorm))
    sql = "SELECT seed, epoch, gnorm FROM logs WHERE gnorm IS NOT NULL ORDER BY 1, 2"
    want = [(s, e, e * 100 + s) for s in (0, 1) for e in range(3)]
    with florsql.connect(repo, replay="auto") as con:
        assert _rows(con, sql) == want
    h2 = '    flor.log("h2", epoch * 1000 + seed)\n'
    write(repo / "train.py", script.replace("#@\n", gnorm + h2))
    with florsql.connect(repo, replay="off") as con:
        assert _rows(con, sql) == want


def test_today_s_helper_whose_parameter_is_named_like_the_old_model(tmp_path: Path) -> None:
    """Sweep H: today's ``def evaluate(net, X, Y, ...)`` with ``net.eval()`` ... ``net.train()``,
    called as ``evaluate(net, XV, YV)``, was refused "changes the mode of 'net'": inside the
    helper ``net`` is its parameter, not the old version's ``net`` (a parameter named ``model``
    was placed). Its ``if ...: break`` is not a branch where the ``def`` is placed, only where
    it is called (and there the model is in eval mode first). Values equal a run of today's
    script."""
    from florsql.propagate import propagate
    from florsql.propagate.identity import pieces_uneven

    fixtures = Path(__file__).parent / "fixtures" / "replay_s46"
    old = (fixtures / "param_v1.py").read_text()
    new = (fixtures / "param_v2.py").read_text()
    result = propagate(new, old, ["val_acc"])
    assert not result.failed and [p.name for p in result.placed] == ["val_acc"]
    (placed,) = result.placed
    assert pieces_uneven(result.source, placed.pieces) is None
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    env = {"FLORSQL_CHECKPOINT_PERIOD": "1"}
    run_script(repo, "train.py", **env)
    run_script(oracle, "train.py", **env)
    write(repo / "train.py", new)
    sql = "SELECT epoch, val_acc FROM logs WHERE val_acc IS NOT NULL ORDER BY 1"
    with florsql.connect(oracle, replay="off") as con:
        want = _rows(con, sql)
    with florsql.connect(repo, replay="auto") as con:
        assert _rows(con, sql.replace("WHERE", "WHERE epoch = 3 AND")) == [want[3]]
        assert _rows(con, sql) == want and len(want) == 5


def test_a_name_from_a_star_import_is_bound() -> None:
    """Sweep H: ``from utils import *`` binds ``probe``, which no text of train.py shows:
    today's ``flor.log("probe", probe(net, epoch))`` was refused "unbound name 'probe'"."""
    from florsql.propagate import propagate

    old = (
        "from utils import *\nimport florsql as flor\n"
        "for epoch in flor.loop('epoch', range(3)):\n    w = epoch * 2\n"
    )
    new = old + "    flor.log('probe', probe(w, epoch))\n"
    result = propagate(new, old, ["probe"])
    assert not result.failed and [p.name for p in result.placed] == ["probe"]
    # without the star import the name is unbound, as before
    bare = old.replace("from utils import *\n", "")
    failed = propagate(new.replace("from utils import *\n", ""), bare, ["probe"]).failed
    assert failed and "unbound name 'probe'" in failed[0].reason
