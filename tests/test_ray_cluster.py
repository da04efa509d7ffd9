"""Ray executor on a real two-node local cluster, the worker node without the driver's files.

The head node runs as usual; the second node is started in a mount namespace where the test's
folder (both repositories) is hidden under an empty bind mount, so a task that reads any driver
path fails. Every replay task is placed on that node (a custom resource only it has), and the
values must equal the local executor's on a copy of the same recorded runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import florsql
from florsql.cli import main
from florsql.errors import PlanError
from florsql.replay import LocalExecutor, PlanExecutor
from florsql.replay.remote import RayExecutor, _connect_error, parse_executor
from florsql.store.replays import replays_dir
from tests.helpers import copy_repo, make_repo, run_script, write
from tests.replay_scripts import OLD, PATCHED

RAY = str(Path(sys.executable).with_name("ray"))
FLORSQL = str(Path(sys.executable).with_name("florsql"))
# A two-node cluster takes a minute on 2 cores: CI runs these in `make test-slow`; the default
# run keeps tests/test_replay_runner.py's local Ray executor.
pytestmark = pytest.mark.slow

HIDDEN = "florsql_hidden_node"  # the custom resource only the worker node has
START_TIMEOUT = 240.0  # a hang guard for a loaded machine, not an expectation

SQL = "SELECT lr, epoch, step, wnorm, grad_norm FROM logs ORDER BY lr, epoch, step"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ports() -> list[str]:
    """Ports of a node's agents, distinct per node (two nodes share this machine)."""
    return [
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--node-manager-port={_free_port()}",
        f"--object-manager-port={_free_port()}",
    ]


@dataclass
class Cluster:
    gcs: str  # HOST:PORT of the head's GCS
    client: str  # ray://HOST:PORT of the head's Ray Client server
    hidden: Path  # the folder the worker node cannot see
    ray_repo: Path
    local_repo: Path
    worker_node: str  # node id of the worker node
    temp_dirs: list[str]


def _env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _kill_tree(marker: str, gcs_port: int) -> None:
    """Kill the processes this test's cluster started: those whose command line names its
    temporary folder or its GCS address (the Ray Client servers name only that), and their
    children (the warm zygotes of Ray workers)."""
    import psutil

    def ours(part: str) -> bool:
        return marker in part or (part.startswith("--address=") and part.endswith(f":{gcs_port}"))

    procs: list[Any] = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(ours(part) for part in p.info["cmdline"] or []):
                procs.append(p)
                procs += p.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    procs = [p for p in procs if p.pid != os.getpid()]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(procs, timeout=30)


def _wait_nodes(gcs: str, count: int) -> None:
    """Until ``ray status`` lists ``count`` active nodes (polled; the timeout is a hang guard)."""
    deadline = time.monotonic() + START_TIMEOUT
    out = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(
            [RAY, "status", f"--address={gcs}"],
            capture_output=True,
            text=True,
            env=_env(),
            check=False,
        )
        out = proc.stdout
        active = out.split("Active:", 1)[-1].split("Pending:", 1)[0]
        if proc.returncode == 0 and active.count("node_") >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"the cluster never showed {count} nodes:\n{out}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test needs root and unshare(1) to hide the repository from a node")
    base = tmp_path_factory.mktemp("raycluster")
    hidden = base / "driver"
    repo = make_repo(hidden / "ray", {"train.py": OLD, ".gitignore": "data/\n"})
    for lr in ("0.1", "0.3"):
        run_script(repo, "train.py", "--lr", lr, FLORSQL_CHECKPOINT_PERIOD="2")
    write(repo / "train.py", PATCHED)  # today's code: new statements, no new run
    local = hidden / "local"
    copy_repo(repo, local)
    empty = base / "empty"
    empty.mkdir()
    # Short temporary folders: Ray's socket paths must stay under the OS limit.
    head_tmp = tempfile.mkdtemp(prefix="frh")
    node_tmp = tempfile.mkdtemp(prefix="frw")
    port = _free_port()
    gcs = f"127.0.0.1:{port}"
    client = f"ray://127.0.0.1:{_free_port()}"
    # The head's Ray Client server forks a server per client from a process where gRPC runs
    # threads; with gRPC's fork support on (grpcio's default) the forked child restarts gRPC
    # threads before its exec and at times dies of SIGSEGV with empty logs. Off on the head.
    head_env = {**_env(), "GRPC_ENABLE_FORK_SUPPORT": "0"}
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--port={port}", "--num-cpus=1",
             f"--temp-dir={head_tmp}",
             "--node-ip-address=127.0.0.1", "--include-dashboard=false",
             "--disable-usage-stats", f"--ray-client-server-port={client.rsplit(':', 1)[1]}",
             *_ports()],
            env=head_env, check=True, capture_output=True, timeout=START_TIMEOUT,
        )  # fmt: skip
        worker = " ".join(
            [RAY, "start", f"--address={gcs}", "--num-cpus=2",
             f"--resources='{json.dumps({HIDDEN: 2})}'", f"--temp-dir={node_tmp}",
             "--node-ip-address=127.0.0.1", "--disable-usage-stats", *_ports()]
        )  # fmt: skip
        # The worker node's mount namespace: the driver's folder is an empty directory there.
        subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"mount --bind {empty} {hidden} && exec {worker}"],
            env=_env(), check=True, capture_output=True, timeout=START_TIMEOUT,
        )  # fmt: skip
        _wait_nodes(gcs, 2)
        import ray

        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray.init(address=gcs, log_to_driver=False)
        node = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and HIDDEN in n["Resources"])
        ray.shutdown()
        yield Cluster(gcs, client, hidden, repo, local, node, [head_tmp, node_tmp])
    finally:
        import ray

        ray.shutdown()
        for tmp in (node_tmp, head_tmp):
            _kill_tree(tmp, port)
            shutil.rmtree(tmp, ignore_errors=True)


def _peek(path: str) -> tuple[str, bool]:
    import ray

    return ray.get_runtime_context().get_node_id(), os.path.exists(path)


def test_the_worker_node_cannot_see_the_driver_files(cluster: Cluster) -> None:
    """The premise of the other tests: a task on the worker node reading a driver path fails."""
    import ray

    ray.init(address=cluster.gcs, log_to_driver=False)
    try:
        peek = ray.remote(_peek)
        there = str(cluster.ray_repo / "train.py")
        node, seen = ray.get(peek.options(resources={HIDDEN: 1}).remote(there))
        assert node == cluster.worker_node and seen is False
        _, seen_on_head = ray.get(peek.options(num_cpus=1).remote(there))
        assert (cluster.ray_repo / "train.py").exists()
        del seen_on_head  # the head may or may not be chosen for this one: no claim
    finally:
        ray.shutdown()


def _rows(con: florsql.Connection) -> list[tuple[Any, ...]]:
    cur = con.cursor()
    cur.execute(SQL)
    return [tuple(r) for r in cur.fetchall()]


def test_ray_values_equal_the_local_executor(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_ADDRESS", cluster.gcs)
    monkeypatch.setenv("FLORSQL_RAY_RESOURCES", json.dumps({HIDDEN: 1}))
    engine_local = PlanExecutor(LocalExecutor(2))
    with florsql.connect(cluster.local_repo, executor=engine_local) as con:
        want = _rows(con)
    # SET executor = 'ray': the cluster in RAY_ADDRESS; every task lands on the worker node.
    with florsql.connect(cluster.ray_repo, executor="local") as con:
        cur = con.cursor()
        cur.execute("SET executor = 'ray'")
        # A partial query first, then the wider one: the second's tasks use the version tarball
        # and checkpoints the executor kept in the object store from the first.
        cur.execute("SELECT lr, epoch, wnorm FROM logs WHERE epoch = 0")
        assert cur.fetchall()
        got = _rows(con)
        con.execute("SET executor = 'local'")  # disconnects from Ray
    assert want and any(r[3] is not None for r in want)
    assert got == want
    done = sorted(replays_dir(cluster.ray_repo).glob("*/*/done.json"))
    assert done
    for path in done:
        doc = json.loads(path.read_text())
        assert doc["node"] == cluster.worker_node
        assert doc["out_dir"] == str(path.parent)  # the driver's paths, not the node's
    assert not list(replays_dir(cluster.ray_repo).glob("*/*/failed.json"))


def test_ray_client_values_equal_the_local_executor(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``executor='ray://HOST:PORT'``: Ray Client, the driver without a raylet of its own; the
    version tarballs, checkpoints and results travel through the client connection."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("FLORSQL_RAY_RESOURCES", json.dumps({HIDDEN: 1}))
    repo = cluster.hidden / "client"
    copy_repo(cluster.local_repo, repo)
    shutil.rmtree(replays_dir(repo), ignore_errors=True)
    for p in (repo / ".florsql").glob("index.*"):
        p.unlink()
    with florsql.connect(cluster.local_repo, executor=PlanExecutor(LocalExecutor(2))) as con:
        want = _rows(con)
    with florsql.connect(repo, executor=cluster.client) as con:
        got = _rows(con)
    assert got == want
    done = sorted(replays_dir(repo).glob("*/*/done.json"))
    assert done
    for path in done:
        assert json.loads(path.read_text())["node"] == cluster.worker_node


def test_cli_query_with_executor_ray(cluster: Cluster) -> None:
    """``florsql query --executor ray`` with the cluster in RAY_ADDRESS, a fresh copy."""
    repo = cluster.hidden / "cli"
    copy_repo(cluster.local_repo, repo)
    shutil.rmtree(replays_dir(repo), ignore_errors=True)
    for p in (repo / ".florsql").glob("index.*"):
        p.unlink()
    env = {
        **_env(),
        "RAY_ADDRESS": cluster.gcs,
        "FLORSQL_RAY_RESOURCES": json.dumps({HIDDEN: 1}),
    }
    proc = subprocess.run(
        [FLORSQL, "--repo", str(repo), "query", "--executor", "ray",
         "--replay", "auto", "--format", "json", SQL],
        capture_output=True, text=True, env=env, timeout=START_TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    with florsql.connect(cluster.local_repo, executor=PlanExecutor(LocalExecutor(2))) as con:
        want = _rows(con)
    got = [(r["lr"], r["epoch"], r["step"], r["wnorm"], r["grad_norm"]) for r in rows]
    assert got == want
    for path in replays_dir(repo).glob("*/*/done.json"):
        assert json.loads(path.read_text())["node"] == cluster.worker_node


# -- the settings, without a cluster ---------------------------------------------------------


@pytest.mark.parametrize("value", ["spark", "ray:", "ray://", "locale"])
def test_an_unknown_executor_is_refused_saying_what_is_accepted(
    tiny_repo: Path, value: str
) -> None:
    accepted = r"'local'.*'ray'.*'ray://HOST:PORT'"
    with florsql.connect(tiny_repo) as con, pytest.raises(florsql.Error, match=accepted):
        con.execute(f"SET executor = '{value}'")
    with pytest.raises(PlanError, match="unknown executor"):
        florsql.connect(tiny_repo, executor=value)
    result = CliRunner().invoke(main, ["--repo", str(tiny_repo), "query", "--executor", value,
                                       "SELECT 1"])  # fmt: skip
    assert result.exit_code == 1 and "unknown executor" in result.output


def test_ray_client_at_a_closed_port_fails_fast_with_florsql_error(tiny_repo: Path) -> None:
    """Nothing listens there: florsql says so at once (Ray Client alone retries for ~30 s)."""
    address = f"ray://127.0.0.1:{_free_port()}"
    with pytest.raises(
        florsql.Error, match=re.escape(f"could not connect to Ray at {address}:")
    ) as err:
        florsql.connect(tiny_repo, executor=address)
    assert "no Ray Client server accepts connections" in str(err.value)
    with florsql.connect(tiny_repo) as con, pytest.raises(florsql.Error, match="could not conn"):
        con.execute(f"SET executor = '{address}'")
    result = CliRunner().invoke(main, ["--repo", str(tiny_repo), "query", "--executor", address,
                                       "SELECT 1"])  # fmt: skip
    assert result.exit_code == 1 and "could not connect to Ray" in result.output


def test_a_client_server_that_cannot_start_its_server_is_explained() -> None:
    """The last line of Ray's error, and what to do on the head (the crash is a race, so this
    checks the message on the text Ray gives, from the head's log of such a failure)."""
    ray_error = ConnectionError(
        "Traceback (most recent call last):\n  ...\nRuntimeError: Starting Ray client server "
        "failed. See ray_client_server_23000.err for detailed logs.\n"
    )
    text = _connect_error("ray://head:10001", ray_error)
    assert text.startswith("could not connect to Ray at ray://head:10001: RuntimeError: Start")
    assert "GRPC_ENABLE_FORK_SUPPORT=0" in text and "Traceback" not in text
    other = _connect_error("head:6379", ConnectionError("timed out"))
    assert "GRPC" not in other and "ray status" in other


def test_executor_values() -> None:
    assert parse_executor("local") == ("local", None)
    assert parse_executor(" RAY ") == ("ray", None)
    assert parse_executor("ray://Head:10001") == ("ray", "ray://Head:10001")


def test_set_executor_local_keeps_answering(tiny_repo: Path) -> None:
    with florsql.connect(tiny_repo, executor="local") as con:
        con.execute("SET executor TO local")
        assert con.execute("SELECT count(*) FROM logs").fetchone() is not None


def test_ray_executor_class_is_importable_without_ray_running() -> None:
    assert RayExecutor.__module__ == "florsql.replay.remote"
