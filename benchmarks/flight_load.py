"""Load test of ``florsql serve`` over loopback: can one client knock the server over?

16 clients for a minute (bounded: every call has a deadline, every abandoning client stops after
``--abandon-max`` results), against ``florsql serve`` in its own process:

- 6 well-behaved: a small aggregate over ``logs``, fetched at once (their latency is measured);
- 4 large: ``SELECT range, range * 2 FROM range(N)`` (about 16 bytes a row), fetched in full;
- 4 abandoning: the same large query, its result never fetched (GetFlightInfo, no DoGet);
- 2 bad SQL: a syntax error, an unknown column, a long statement (``--long-sql-kb``, 2 MB by
  default), 300 nested parentheses.

Printed: the server's peak RSS (VmHWM), p50/p99 latency of the well-behaved clients, queries
refused (UNAVAILABLE), clear errors (a ``florsql ...`` message), and unclear outcomes (anything
else: a deadline passed, a broken connection) -- every query should get rows or a clear error.

    python benchmarks/flight_load.py [--seconds 60] [--rows 5000000] [--src DIR] [-- SERVE-ARGS]

``--src DIR`` serves with the florsql found in DIR (an older checkout, to compare);
arguments after ``--`` go to ``florsql serve`` (e.g. ``--memory-limit 1GB``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import Row, write

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOOD = "SELECT run_id, epoch, avg(loss) AS loss FROM logs GROUP BY ALL ORDER BY ALL"


def bad_statements(long_kb: int) -> list[str]:
    """A syntax error, an unknown column, a ``long_kb`` KB statement, 300 nested parentheses."""
    long = "SELECT 1 AS x" + " + 1" * (long_kb * 1024 // 4)
    return ["SELEC 1", "SELECT los FROM logs", long, "SELECT " + "(" * 300 + "1" + ")" * 300]


TINY = """
import random
import florsql as flor

lr = flor.arg("lr", 0.1)
w = 1.0
for epoch in flor.loop("epoch", range(20)):
    for step in flor.loop("step", range(50)):
        w -= lr * (w - random.random())
        flor.log("loss", w * w)
"""


@dataclass
class Tally:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)  # well-behaved, seconds
    outcomes: Counter[str] = field(default_factory=Counter)
    unclear: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, detail: str = "") -> None:
        with self.lock:
            self.outcomes[kind] += 1
            if kind == "unclear" and len(self.unclear) < 5:
                self.unclear.append(detail[:200])


def record_history(repo: Path, runs: int = 3) -> None:
    """A git repository with ``runs`` recorded runs of a small script (1000 steps each)."""
    from tests.helpers import make_repo, run_script

    make_repo(repo, {"train.py": TINY})
    for i in range(runs):
        run_script(repo, "train.py", "--lr", str(0.05 * (i + 1)))


def start_server(
    repo: Path, src: Path | None, extra: list[str]
) -> tuple[subprocess.Popen[str], int]:
    """``florsql serve`` on a free port; (process, port) once it listens."""
    import re

    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    code = "from florsql.cli import main; main()"
    cmd = [sys.executable, "-c", code, "serve", "--port", "0", "--repo", str(repo), *extra]
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    assert server.stderr is not None
    banner = server.stderr.readline()
    found = re.search(r":(\d+) \(read-only", banner)
    if not found:
        server.kill()
        raise RuntimeError(f"the server did not start: {banner}")
    threading.Thread(target=server.stderr.read, daemon=True).start()  # drain its log
    return server, int(found.group(1))


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def classify(error: BaseException) -> str:
    import pyarrow.flight as flight

    text = str(error)
    if isinstance(error, flight.FlightUnavailableError) and "florsql" in text:
        return "refused"
    if isinstance(error, flight.FlightTimedOutError):
        return "unclear"
    if "florsql" in text:
        return "clear error"
    return "unclear"


def run_load(
    port: int,
    *,
    seconds: float,
    rows: int,
    abandon_max: int,
    long_sql_kb: int = 2048,
    clients: tuple[int, int, int, int] = (6, 4, 4, 2),
    deadline: float = 60.0,
) -> Tally:
    """Run the four kinds of client against the server for ``seconds``."""
    import pyarrow.flight as flight

    from florsql.flight import flight_sql_pb2 as pb
    from florsql.flight.wire import pack

    tally = Tally()
    stop = time.monotonic() + seconds
    uri = f"grpc://127.0.0.1:{port}"
    big = f"SELECT range, range * 2 AS twice FROM range({rows})"
    bad_sql = bad_statements(long_sql_kb)

    def info(client: flight.FlightClient, sql: str) -> flight.FlightInfo:
        options = flight.FlightCallOptions(timeout=deadline)
        cmd = flight.FlightDescriptor.for_command(pack(pb.CommandStatementQuery(query=sql)))
        return client.get_flight_info(cmd, options)

    def fetch(client: flight.FlightClient, sql: str) -> int:
        found = info(client, sql)
        options = flight.FlightCallOptions(timeout=deadline)
        return client.do_get(found.endpoints[0].ticket, options).read_all().num_rows

    def good() -> None:
        client = flight.connect(uri)
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                fetch(client, GOOD)
            except Exception as e:
                tally.add(classify(e), repr(e))
                continue
            with tally.lock:
                tally.latencies.append(time.perf_counter() - started)
            tally.add("rows")

    def large() -> None:
        client = flight.connect(uri)
        while time.monotonic() < stop:
            try:
                fetch(client, big)
                tally.add("rows")
            except Exception as e:
                tally.add(classify(e), repr(e))

    def abandon() -> None:
        client = flight.connect(uri)
        done = 0
        while time.monotonic() < stop and done < abandon_max:
            try:
                info(client, big)
                tally.add("abandoned")
            except Exception as e:
                tally.add(classify(e), repr(e))
            done += 1

    def bad() -> None:
        client = flight.connect(uri)
        i = 0
        while time.monotonic() < stop:
            try:
                fetch(client, bad_sql[i % len(bad_sql)])
                tally.add("unclear", "bad SQL returned rows")
            except Exception as e:
                tally.add(classify(e), repr(e))
            i += 1

    kinds = [good] * clients[0] + [large] * clients[1] + [abandon] * clients[2] + [bad] * clients[3]
    threads = [threading.Thread(target=k, daemon=True) for k in kinds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 2 * deadline)
    return tally


def summary(tally: Tally, rss: int) -> dict[str, object]:
    lat = sorted(tally.latencies)
    p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: 0.0)
    return {
        "peak_rss_mb": round(rss / 2**20),
        "good_queries": len(lat),
        "p50_ms": round(p(0.50), 1),
        "p99_ms": round(p(0.99), 1),
        "median_ms": round(statistics.median(lat) * 1000, 1) if lat else 0.0,
        **{k.replace(" ", "_"): v for k, v in sorted(tally.outcomes.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--abandon-max", type=int, default=15)
    parser.add_argument("--long-sql-kb", type=int, default=2048)
    parser.add_argument("--src", type=Path, help="serve with the florsql of this checkout")
    parser.add_argument("serve_args", nargs="*", help="after --: options of florsql serve")
    parser.add_argument("--quick", action="store_true", help="10 s, 500k rows per large result")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rows = 10.0, 500_000
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "proj"
        record_history(repo)
        server, port = start_server(repo, args.src, args.serve_args)
        try:
            tally = run_load(
                port,
                seconds=args.seconds,
                rows=args.rows,
                abandon_max=args.abandon_max,
                long_sql_kb=args.long_sql_kb,
            )
            rss = peak_rss(server.pid)
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    source = str(args.src) if args.src else "this checkout"
    print(
        f"florsql serve ({source}), 16 clients, {args.seconds:g} s, {args.rows} rows per large "
        f"result, {args.long_sql_kb} KB long statement"
    )
    figures = summary(tally, rss)
    for key, value in figures.items():
        print(f"  {key}: {value}")
    numeric = [(k, v) for k, v in figures.items() if isinstance(v, int | float)]
    write("flight_load", [Row(k, float(v)) for k, v in numeric], quick=args.quick)
    if tally.unclear:
        print("  unclear outcomes, first few:")
        for line in tally.unclear:
            print(f"    {line}")


if __name__ == "__main__":
    main()
