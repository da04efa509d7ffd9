"""A short, bounded load on ``florsql serve`` (loopback, a few seconds): large results,
abandoned results and bad SQL beside well-behaved clients. The server stays within its memory
bound and every query gets rows or a clear ``florsql`` error. The minute-long version with
figures is ``benchmarks/flight_load.py``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.flight_load import peak_rss, record_history, run_load, start_server

MB = 1 << 20
ROWS = 1_000_000  # two BIGINT columns: 16 MB a result
LIMITS = {
    "--memory-limit": "256MB",
    "--max-pending-bytes": str(48 * MB),
    "--max-pending-results": "8",
    "--max-concurrent-queries": "3",
    "--queue-timeout": "5",
    "--query-timeout": "30",
    "--threads": "2",
}


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_short_load_keeps_the_server_bounded_and_every_answer_clear(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    record_history(repo, runs=2)
    args = [x for pair in LIMITS.items() for x in pair]
    server, port = start_server(repo, None, args)
    try:
        baseline = _rss(server.pid)
        tally = run_load(
            port, seconds=3, rows=ROWS, abandon_max=6, long_sql_kb=512, clients=(3, 2, 3, 1)
        )
        peak = peak_rss(server.pid)
        assert server.poll() is None, "the server died"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    outcomes = tally.outcomes
    assert outcomes["unclear"] == 0, tally.unclear
    assert tally.latencies, "no well-behaved query got its rows"
    assert outcomes["clear error"] > 0, outcomes
    # What the server may hold: DuckDB's memory limit, the results awaiting download, and the
    # results of the queries running or streaming now (3 running, 2 downloads), each counted
    # twice (DuckDB's copy while it converts, Arrow's).
    result = 16 * ROWS
    bound = 256 * MB + 48 * MB + (3 + 2) * 2 * result
    assert peak - baseline < bound, (peak / MB, baseline / MB, bound / MB)
