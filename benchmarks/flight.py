"""Front-end benchmarks: Flight SQL throughput and REPL completion latency.

(a) Rows per second fetched through ADBC from ``florsql serve`` over loopback (the server in its
    own process, as users run it) for a 1M-row result, against the same query through the
    DB-API in process. Goal: Flight >= 50% of in-process throughput. The server is started and
    both connections are open and warmed up before any timing: server start-up, imports and the
    first query's planning count in neither. A process holds a repository's index alone, so
    the in-process connection reads an identical copy of the history (the same files, the same
    query, the same answer). The two paths are then timed in turns (one in-process call, one
    Flight call, ``repeats`` times) and each reports its best. Timing one path after the other
    compared two different machine loads on a shared machine: the ratio moved between 46% and
    72% in runs minutes apart. Beside them, the floor of the Flight path: the same server with
    its query answered from memory (the result of the first call kept), so its time is only
    what Flight itself costs (the result's batches, gRPC over loopback, ADBC's Go driver
    decoding them and handing them to Python); Flight cannot beat in-process by more than that.
(b) Keystroke-to-completion latency in the REPL with 500 columns in the catalog: the time the
    completer takes to produce every completion after each keystroke of a typed query, over a
    real catalog. Goal: < 50 ms.

    python benchmarks/flight.py [--rows 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Row, write

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUERY = "SELECT run_id, epoch, step, loss FROM logs WHERE loss IS NOT NULL"
TYPED = "SELECT run_id, epoch, avg(metric_123) FROM logs WHERE metric_4"


def build_history(repo: Path, rows: int, runs: int = 10, epochs: int = 100) -> None:
    """``runs`` regular runs whose ``loss`` records add up to ``rows`` (the real file format)."""
    from tests.helpers import make_repo
    from tests.helpers_sql import write_bulk_run

    make_repo(repo)
    steps = rows // (runs * epochs)
    for i in range(runs):
        write_bulk_run(repo, f"run{i:02d}", {"lr": 0.01 * (i + 1)}, epochs=epochs, steps=steps,
                       seed=i)  # fmt: skip


def build_wide_history(repo: Path, columns: int = 500) -> None:
    """One run that logged ``columns`` names per epoch: a catalog 500 columns wide."""
    from tests.helpers import make_repo
    from tests.helpers_sql import write_bulk_run

    make_repo(repo)
    names = [f"metric_{i:03d}" for i in range(columns)]
    write_bulk_run(repo, "wide", {"lr": 0.1}, epochs=2, steps=2, epoch_names=names)


def rows_per_second(fetches: dict[str, object], repeats: int) -> dict[str, tuple[float, int]]:
    """(best rows/s, rows) of each of ``fetches``: one warm-up call each, then ``repeats``
    rounds calling each in turn, so that every path sees the same machine load."""
    for fetch in fetches.values():
        assert callable(fetch)
        fetch()
    times: dict[str, list[float]] = {name: [] for name in fetches}
    rows: dict[str, int] = {}
    for _ in range(repeats):
        for name, fetch in fetches.items():
            assert callable(fetch)
            started = time.perf_counter()
            rows[name] = fetch().num_rows
            times[name].append(time.perf_counter() - started)
    return {name: (rows[name] / min(times[name]), rows[name]) for name in fetches}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: ``florsql serve``'s server with its query answered from memory after the first call: the
#: Flight path's floor (argv: repository, port).
FLOOR_SERVER = """
import sys
from florsql.flight import FlorFlightServer, ServerOptions
from florsql.flight.backend import open_service

class Kept(FlorFlightServer):
    kept = None

    def _run(self, context, sql, params, stream=False):
        if self.kept is None:  # held whole, handed out again and again
            self.kept = super()._run(context, sql, params)
        return self.kept

service = open_service(sys.argv[1])
server = Kept(service, ServerOptions("127.0.0.1", int(sys.argv[2])))
print("listening", file=sys.stderr, flush=True)
server.serve()
"""


def throughput(repo: Path, repeats: int) -> dict[str, tuple[float, int]]:
    """Best rows/s of :data:`QUERY` in process (``local``, over a copy of ``repo``), through
    ADBC from ``florsql serve`` over ``repo`` in its own process (``remote``), and from the
    floor server (``floor``, :data:`FLOOR_SERVER`, over another copy), timed in turns."""
    import adbc_driver_flightsql.dbapi as adbc

    import florsql

    copy = repo.with_name(repo.name + "-local")
    shutil.copytree(repo, copy, symlinks=True)
    kept = repo.with_name(repo.name + "-floor")
    shutil.copytree(repo, kept, symlinks=True)
    port, floor_port = free_port(), free_port()
    code = "from florsql.cli import main; main()"
    cmd = [sys.executable, "-c", code, "serve", "--port", str(port), "--repo", str(repo)]
    server = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    floor = subprocess.Popen(
        [sys.executable, "-c", FLOOR_SERVER, str(kept), str(floor_port)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None and floor.stderr is not None
        server.stderr.readline()  # "florsql Flight SQL on ...": listening
        floor.stderr.readline()  # "listening"
        with (
            florsql.connect(repo=str(copy)) as local,
            adbc.connect(f"grpc://127.0.0.1:{port}", autocommit=True) as remote,
            adbc.connect(f"grpc://127.0.0.1:{floor_port}", autocommit=True) as bare,
        ):

            def fetch_local() -> object:
                cur = local.cursor()
                cur.execute(QUERY)
                return cur.fetch_arrow_table()

            def fetch_remote() -> object:
                with remote.cursor() as cur:
                    cur.execute(QUERY)
                    return cur.fetch_arrow_table()

            def fetch_floor() -> object:
                with bare.cursor() as cur:
                    cur.execute(QUERY)
                    return cur.fetch_arrow_table()

            fetches = {"local": fetch_local, "remote": fetch_remote, "floor": fetch_floor}
            return rows_per_second(fetches, repeats)
    finally:
        for proc in (server, floor):
            proc.terminate()
            proc.wait(30)


def completion_latency(repo: Path) -> tuple[list[float], int]:
    """Per-keystroke completer time (s) over :data:`TYPED`, and the logs column count."""
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from florsql.repl.app import SchemaCompleter, settle_heap
    from florsql.repl.backend import open_service
    from florsql.repl.background import SchemaCache

    service = open_service(repo)
    try:
        cache = SchemaCache(service.schema)
        cache.refresh()
        settle_heap()  # as the REPL does once it has started
        completer = SchemaCompleter(cache)
        event = CompleteEvent(text_inserted=True)
        times = []
        for i in range(1, len(TYPED) + 1):
            doc = Document(TYPED[:i])
            started = time.perf_counter()
            list(completer.get_completions(doc, event))
            times.append(time.perf_counter() - started)
        return times, len(cache.schema.columns("logs"))
    finally:
        service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100k rows, one repeat")
    ns = parser.parse_args()
    if ns.quick:
        ns.rows, ns.repeats = 100_000, 1
    os.environ.setdefault("PYTHONHASHSEED", "0")
    with tempfile.TemporaryDirectory(prefix="florsql-bench-") as tmp:
        repo, wide = Path(tmp) / "history", Path(tmp) / "wide"
        build_history(repo, ns.rows)
        rates = throughput(repo, ns.repeats)
        (local, rows), (remote, remote_rows) = rates["local"], rates["remote"]
        bare, bare_rows = rates["floor"]
        assert remote_rows == rows == bare_rows, (remote_rows, rows, bare_rows)
        build_wide_history(wide)
        times, ncols = completion_latency(wide)
    p50, worst = statistics.median(times) * 1e3, max(times) * 1e3
    p95 = sorted(times)[int(0.95 * (len(times) - 1))] * 1e3
    ratio = remote / local
    table = [
        ("in-process DB-API, rows/s", f"{local:,.0f}", f"{rows:,} rows", ""),
        ("Flight SQL via ADBC (loopback), rows/s", f"{remote:,.0f}", f"{rows:,} rows", ""),
        ("Flight / in-process", f"{ratio:.0%}", ">= 50%", "ok" if ratio >= 0.5 else "MISSED"),
        ("floor: Flight, query answered from memory, rows/s", f"{bare:,.0f}", "", ""),
        ("floor / in-process (no query in the Flight path)", f"{bare / local:.0%}", "", ""),
        ("Flight's own time / in-process time", f"{local / bare:.2f}x", "", ""),
        (f"completion per keystroke, p50 ({ncols} cols)", f"{p50:.2f} ms", "< 50 ms",
         "ok" if p50 < 50 else "MISSED"),
        ("completion per keystroke, p95", f"{p95:.2f} ms", "< 50 ms",
         "ok" if p95 < 50 else "MISSED"),
        ("completion per keystroke, max", f"{worst:.2f} ms", "< 50 ms",
         "ok" if worst < 50 else "MISSED"),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    header = ("measure", "value", "goal/size", "")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in (header, tuple("-" * w for w in widths), *table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    write(
        "flight",
        [
            Row(f"Flight / in-process rows/s ({rows:,} rows)", ratio * 100, "%", 50, ">="),
            Row(
                "floor: Flight with the query answered from memory / in-process rows/s",
                bare / local * 100,
                "%",
                note="what Flight alone costs (batches, gRPC over loopback, ADBC's decoding)",
            ),
            Row("completion per keystroke p95", p95, "ms", 50, "<="),
        ],
        quick=ns.quick,
    )


if __name__ == "__main__":
    main()
