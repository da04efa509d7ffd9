"""A query process never imports pandas on its own (issue 12: fixed cost where users wait).

With pandas installed, as users have it, pyarrow imports pandas at a process's first
``pa.array``/``pa.table`` of Python objects (0.4-0.5 s here, library-notes.md). A one-shot
``florsql query`` that ingests new runs, replays, explains or binds parameters must not pay
that: florsql builds those Arrow arrays from buffers. (``.df()`` and ``fetch_df()`` import it,
being pandas.)
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY
from tests.helpers import make_repo, run_script, script_env

PROBE = r"""
import json, sys
import florsql
with florsql.connect(sys.argv[1]) as con:
    cur = con.cursor()
    out = {}
    for label, sql, params in [
        ("ingest", "SELECT count(*) FROM logs", None),
        ("hindsight", "SELECT epoch, w2 FROM logs WHERE w2 IS NOT NULL ORDER BY epoch", None),
        ("explain", "EXPLAIN SELECT epoch, w2 FROM logs", None),
        ("params", "SELECT count(*) FROM logs WHERE lr = ? AND epoch < ?", (0.1, 2)),
        ("list_param", "SELECT ?::DOUBLE[]", ([0.5, 1.5],)),
        ("show", "SHOW COLUMNS FROM logs", None),
        ("union", "SELECT [union_value(k := 1::HUGEINT), union_value(s := 'x'), NULL]"
         "::UNION(k HUGEINT, s VARCHAR)[] AS u FROM range(2)", None),
        ("schema", "SELECT column_name FROM information_schema.columns", None),
    ]:
        cur.execute(sql, params) if params else cur.execute(sql)
        out[label] = [list(r) for r in cur.fetchall()][:3]
        out[label + "_pandas"] = "pandas" in sys.modules
print(json.dumps(out))
"""


def test_queries_never_import_pandas(tmp_path: Path) -> None:
    assert (
        importlib.util.find_spec("pandas") is not None
    )  # the dev extras install it, as users have
    repo = make_repo(tmp_path / "p", {"train.py": TINY})
    run_script(repo, "train.py")
    (repo / "train.py").write_text(
        TINY.replace('    flor.log("w", w)\n', '    flor.log("w", w)\n    flor.log("w2", w * 2)\n')
    )
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(repo)],
        capture_output=True,
        text=True,
        env=script_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ingest"] == [[16]] or out["ingest"][0][0] > 0
    assert [e for e, _ in out["hindsight"]] == [0, 1, 2]
    assert out["union"] == [[[1, "x", None]], [[1, "x", None]]]
    imported = [k[: -len("_pandas")] for k, v in out.items() if k.endswith("_pandas") and v]
    assert imported == []
