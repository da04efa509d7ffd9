from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import make_repo, stop_replay_services

# A replay service a test leaves behind (and every one its subprocesses start) exits after a
# minute idle, not ten: the suite starts hundreds. `_no_lingering_services` stops them sooner.
os.environ.setdefault("FLORSQL_REPLAY_SERVICE_IDLE", "60")
# Nor does each of them start a query host (florsql/cli_host.py: another process importing
# DuckDB, pyarrow, sqlglot and libcst, a second of CPU): tests/test_query_host.py turns it on.
os.environ.setdefault("FLORSQL_QUERY_HOST", "0")
# Nor do they write this machine's replay timings into the user's cache (florsql.replay.timings:
# EXPLAIN's estimates would then depend on earlier tests); tests/test_timings.py turns it on.
os.environ.setdefault("FLORSQL_TIMINGS", "off")
# The tests of the replay service, the query host and remembered failures need the service the
# user gets by default: a shell that turned it off (FLORSQL_REPLAY_SERVICE=0) must not turn it
# off for them. Tests that want it off set it themselves.
os.environ.pop("FLORSQL_REPLAY_SERVICE", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``FLORSQL_SLOW_SHARD=K/N`` keeps the tests marked slow whose id hashes to K modulo N (the
    others are deselected; tests not marked slow always run). CI runs one half of the slow tests,
    chosen by the commit (.ci/run): all of them no longer fit its 90 minutes beside the default
    run. ``make test-slow`` without it runs every one."""
    shard = os.environ.get("FLORSQL_SLOW_SHARD", "").strip()
    if not shard:
        return
    k_text, _, n_text = shard.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise pytest.UsageError(f"FLORSQL_SLOW_SHARD={shard!r}: write K/N, as 0/2") from None
    if not 0 <= k < n:
        raise pytest.UsageError(f"FLORSQL_SLOW_SHARD={shard!r}: K must be in 0..N-1")
    keep, drop = [], []
    for item in items:
        chosen = zlib.crc32(item.nodeid.encode()) % n == k
        (keep if chosen or item.get_closest_marker("slow") is None else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


TINY = """
import random
import florsql as flor

lr = flor.arg("lr", 0.1)
epochs = flor.arg("epochs", 3)
w = 1.0
for epoch in flor.loop("epoch", range(epochs)):
    for step in flor.loop("step", range(4)):
        w -= lr * (w - random.random())
        flor.log("loss", w * w)
    flor.log("w", w)
flor.log("done", "yes")
"""


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A temp git repo with a short pure-python training script, committed."""
    return make_repo(tmp_path / "proj", {"train.py": TINY})


@pytest.fixture(scope="module", autouse=True)
def _module_scratch_removed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Remove the folders a test module's fixtures made with ``tmp_path_factory.mktemp`` once
    the module is done, unless one of its tests failed (pytest's ``tmp_path_retention_policy =
    "failed"`` does this for each test's ``tmp_path``, never for ``mktemp``). A full run made
    7.7 GB of recorded histories, worktrees and checkpoints and kept the last three runs'; a CI
    machine ran out of disk. Set up before a module's other fixtures, this is torn down after
    them (their replay services stopped, their files closed)."""
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed != failed:
        return
    for path in set(base.iterdir()) - before:
        # a shared folder (tests/helpers_replay.py: ``shared_dir``) outlives the module
        if path.is_dir() and not path.name.startswith("shared-"):
            stop_replay_services(path)
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_lingering_services(tmp_path: Path) -> Iterator[None]:
    """Stop the replay services of the repositories a test made under its ``tmp_path``."""
    yield
    stop_replay_services(tmp_path)
