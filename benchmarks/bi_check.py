"""``make bi-check``: Superset's Flight SQL dialect (flightsql-dbapi, SQLAlchemy < 2) against
``florsql serve``, in its own virtual environment (it cannot share florsql's: SQLAlchemy 2 there).

It makes (once) a virtualenv with ``flightsql-dbapi`` and ``sqlalchemy<2``, records a small
history, starts ``florsql serve`` on loopback, and runs what Superset runs through the dialect
(``datafusion+flightsql://HOST:PORT?insecure=true``): the connection test ``SELECT 1``, queries
as SQL Lab sends them, the table list and the column list of a table. It prints each check and
the versions used; the exit status is 0 when the connection test and the queries work.

    python benchmarks/bi_check.py [--venv .venv-bi] [--flightsql-dbapi 0.2.2] [--sqlalchemy "<2"]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Run by the BI virtualenv's Python: each check as one JSON line.
CLIENT = r"""
import json, sys
from importlib.metadata import version
import sqlalchemy as sa
import flightsql.sqlalchemy  # registers the datafusion+flightsql dialect

url = sys.argv[1]
packages = ("flightsql-dbapi", "sqlalchemy", "pyarrow")
print(json.dumps({"versions": {p: version(p) for p in packages}}))

def check(name, fn):
    try:
        out = fn()
        print(json.dumps({"check": name, "ok": True, "result": repr(out)[:300]}))
    except Exception as e:
        print(json.dumps({"check": name, "ok": False, "result": f"{type(e).__name__}: {e}"[:300]}))

engine = sa.create_engine(url)
def rows(sql):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]

check("connection test: SELECT 1", lambda: rows("SELECT 1"))
check("query: count runs", lambda: rows("SELECT count(*) AS n FROM runs"))
check("query: SQL Lab aggregate", lambda: rows(
    "SELECT epoch, avg(loss) AS loss FROM logs GROUP BY epoch ORDER BY epoch LIMIT 3"))
check("query: with a LIMIT as SQL Lab adds", lambda: rows(
    "SELECT run_id, epoch, loss FROM logs LIMIT 5"))
check("inspector: get_table_names", lambda: sa.inspect(engine).get_table_names())
check("inspector: get_columns(logs)", lambda: sa.inspect(engine).get_columns("logs")[:3])
# The package's entry point names the same dialect `datafusion` (no import needed).
plain = sa.create_engine(url.replace("datafusion+flightsql://", "datafusion://"))
check("datafusion:// URL: SELECT 1", lambda: [tuple(r) for r in plain.connect().execute(
    sa.text("SELECT 1"))])
"""

CORE = ("connection test: SELECT 1", "query: count runs", "query: SQL Lab aggregate")


def ensure_venv(venv: Path, dbapi_version: str, sqlalchemy: str) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"flightsql-dbapi=={dbapi_version}",
             f"sqlalchemy{sqlalchemy}", "pandas"],  # Superset has pandas; the dialect needs it
            check=True,
        )  # fmt: skip
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-bi")
    parser.add_argument("--flightsql-dbapi", default="0.2.2")
    parser.add_argument("--sqlalchemy", default="<2")
    args = parser.parse_args()
    from benchmarks.flight_load import record_history, start_server

    python = ensure_venv(args.venv, args.flightsql_dbapi, args.sqlalchemy)
    failed_core = False
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "proj"
        record_history(repo, runs=2)
        server, port = start_server(repo, None, [])
        try:
            url = f"datafusion+flightsql://127.0.0.1:{port}?insecure=true"
            out = subprocess.run(
                [str(python), "-c", CLIENT, url], capture_output=True, text=True, timeout=300
            )
        finally:
            server.terminate()
            server.wait(30)
    print(f"flightsql-dbapi against florsql serve ({url.replace(str(port), 'PORT')})")
    for line in out.stdout.splitlines():
        item = json.loads(line)
        if "versions" in item:
            print("  versions: " + ", ".join(f"{k} {v}" for k, v in item["versions"].items()))
            continue
        mark = "ok  " if item["ok"] else "FAIL"
        print(f"  {mark} {item['check']}: {item['result']}")
        if item["check"] in CORE and not item["ok"]:
            failed_core = True
    if out.returncode != 0:
        print(out.stderr[-2000:])
        return 1
    return 1 if failed_core else 0


if __name__ == "__main__":
    sys.exit(main())
