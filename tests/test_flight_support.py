"""Shared set-up for the Flight SQL tests: a recorded history and a running server.

(Named ``test_flight_*`` so that it sits with the tests it serves; it holds no tests.)
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pyarrow as pa

from tests.conftest import TINY
from tests.helpers import make_repo, run_script

#: The training script as the user edits it after the runs: ``w2`` is a hindsight column.
EDITED = TINY.replace('    flor.log("w", w)\n', '    flor.log("w", w)\n    flor.log("w2", w * 2)\n')
TOKEN = "s3cret-token"


def recorded_repo(where: Path) -> Path:
    """A repo with two recorded runs (lr 0.1 and 0.2) and today's script logging ``w2`` too."""
    repo = make_repo(where, {"train.py": TINY})
    run_script(repo, "train.py")
    run_script(repo, "train.py", "--lr", "0.2")
    (repo / "train.py").write_text(EDITED.lstrip("\n"))
    return repo


def in_process(repo: Path, queries: Sequence[tuple[str, Sequence[object]]]) -> list[pa.Table]:
    """The same questions asked in process (the DB-API when it exists, else the engine)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import florsql.dbapi
        except ImportError:
            from florsql.engine import Engine

            with Engine(repo) as engine:
                return [engine.execute(sql, list(params)).table for sql, params in queries]
        import florsql

        with florsql.connect(repo=str(repo), replay="off") as con:  # as the server: off
            out = []
            for sql, params in queries:
                cur = con.cursor()
                cur.execute(sql, list(params))
                out.append(cur.fetch_arrow_table())
            return out


@contextmanager
def running_server(
    repo: Path,
    *,
    token: str | None = None,
    allow_replay: bool = False,
    replay: Literal["auto", "off", "error"] | None = None,
) -> Iterator[object]:
    """A Flight SQL server on a free loopback port, over the engine."""
    from florsql.flight import FlorFlightServer, ServerOptions
    from florsql.flight.backend import open_service

    service = open_service(repo)
    options = ServerOptions("127.0.0.1", 0, token, allow_replay, replay=replay)
    server = FlorFlightServer(service, options)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        service.close()


def same_table(got: pa.Table, want: pa.Table) -> bool:
    """Equal schemas and values, floats to 1e-12: DuckDB's parallel aggregates (avg, sum) may
    add in a different order from one execution to the next, moving the last bits."""
    if got.schema != want.schema or got.num_rows != want.num_rows:
        return False
    for a, b in zip(got.to_pylist(), want.to_pylist(), strict=True):
        for key, x in a.items():
            y = b[key]
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15):
                    return False
            elif x != y:
                return False
    return True
