"""What a script logs is what a query reads (session 57, sweep AJ).

- An ``nn.Parameter`` (any Tensor subclass) of one element was stored as its repr, the text
  "Parameter containing: tensor([-0.4009], requires_grad=True)", rounded; it is a number now.
- A list that grows each epoch was JSON up to 64 KB and its repr past it, as large: the
  column's JSON functions failed the query ("Malformed JSON"). Every size is JSON now.
- The warning for a value stored as its repr named florsql's own line, not the script's.
- From 48 log names on, the pivot reads a context's records from a map of structs, and
  DuckDB's ``arg_max`` of a STRUCT loses the sign of -0.0: a logged -0.0 read 0.0 (1/z: inf)
  once the repository had that many names. A log named ``value_str`` (or ``vtype``,
  ``value_int``, ``value_float``) failed every query there (a parser error).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import florsql
from florsql.plan.pivot import MAP_PIVOT_FROM
from tests.helpers import make_repo, run_script


def _rows(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with florsql.connect(repo, replay="off") as con:
        return list(con.cursor().execute(sql).fetchall())


PARAMETERS = """import json, warnings
import torch
import florsql as flor
warnings.simplefilter("error", UserWarning)
torch.manual_seed(0)
net = torch.nn.Linear(3, 1)
temp = torch.nn.Parameter(torch.tensor(2.5))
flor.log("bias", net.bias)
flor.log("temp", temp)
flor.log("w00", net.weight[0, 0])
json.dump([net.bias.item(), temp.item(), net.weight[0, 0].item()], open("want.json", "w"))
"""


def test_a_parameter_of_one_element_is_a_number(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": PARAMETERS})
    proc = run_script(repo, "train.py")
    assert "RecordWarning" not in proc.stderr, proc.stderr
    want = json.loads((repo / "want.json").read_text())
    assert _rows(repo, "SELECT bias, temp, w00 FROM logs") == [tuple(want)]
    assert _rows(repo, "SELECT typeof(bias), typeof(temp) FROM logs") == [("DOUBLE", "DOUBLE")]


def test_a_complex_tensor_warns_as_a_complex_number_does(tmp_path: Path) -> None:
    script = (
        "import torch\nimport florsql as flor\n"
        "flor.log('c', torch.tensor(1 + 2j))\nflor.log('x', 1.0)\n"
    )
    repo = make_repo(tmp_path / "r", {"train.py": script})
    proc = run_script(repo, "train.py")
    # the warning names the script's line (it named florsql/record/api.py)
    assert "train.py:3: RecordWarning" in proc.stderr, proc.stderr
    assert "flor.log('c', ...) got a Tensor" in proc.stderr


GROWING = """import json
import florsql as flor
hist = []
for epoch in flor.loop("epoch", range(6)):
    hist.extend(f"sample-{epoch}-{i}-" + "x" * 40 for i in range(400))
    flor.log("hist", hist)
    flor.log("n", len(hist))
"""


def test_a_growing_list_stays_json_past_64_kb(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": GROWING})
    proc = run_script(repo, "train.py")
    assert "RecordWarning" not in proc.stderr, proc.stderr
    rows = _rows(repo, "SELECT epoch, n, json_array_length(hist), hist FROM logs ORDER BY epoch")
    assert [(e, n, k) for e, n, k, _ in rows] == [
        (e, 400 * (e + 1), 400 * (e + 1)) for e in range(6)
    ]
    assert len(rows[-1][3]) > 64 * 1024
    assert json.loads(rows[-1][3])[-1] == "sample-5-399-" + "x" * 40


SIGNS = """import sys
import florsql as flor
flor.log("z", -0.0)
flor.log("value_str", -2.5)
flor.log("vtype", "x")
for epoch in flor.loop("epoch", range(2)):
    flor.log("zz", -0.0 if epoch else 0.0)
for i in range(int(sys.argv[1])):
    flor.log(f"m{i}", i)
"""


def test_minus_zero_and_field_names_with_many_log_names(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"train.py": SIGNS})
    run_script(repo, "train.py", "3")
    sql = "SELECT z, 1 / z, value_str, vtype FROM logs WHERE z IS NOT NULL"
    few = _rows(repo, sql)
    assert few == [(-0.0, -math.inf, -2.5, "x")] and math.copysign(1, few[0][0]) == -1
    run_script(repo, "train.py", str(MAP_PIVOT_FROM + 2))  # the pivot's map form from here
    many = _rows(repo, sql)
    assert many == few * 2
    assert [math.copysign(1, r[0]) for r in many] == [-1, -1]  # (0.0 == -0.0: the sign)
    signs = _rows(repo, "SELECT epoch, 1 / zz FROM logs WHERE epoch IS NOT NULL ORDER BY 1, 2")
    assert signs == [(0, math.inf), (0, math.inf), (1, -math.inf), (1, -math.inf)]


TRAIN = """import torch
import florsql as flor
torch.manual_seed(0)
net = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x, y = torch.randn(16, 3), torch.randn(16, 1)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(3)):
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        flor.log("loss", loss.item()){new}
"""


def test_a_replayed_parameter_is_the_number_a_run_logs(tmp_path: Path) -> None:
    from tests.helpers import git, write

    new = '\n        flor.log("bias", net.bias)'
    sql = "SELECT epoch, bias FROM logs ORDER BY epoch"
    oracle = make_repo(tmp_path / "o", {"train.py": TRAIN.format(new=new)})
    run_script(oracle, "train.py")
    want = _rows(oracle, sql)
    assert len(want) == 3 and all(isinstance(b, float) for _, b in want), want
    repo = make_repo(tmp_path / "r", {"train.py": TRAIN.format(new="")})
    run_script(repo, "train.py")
    write(repo / "train.py", TRAIN.format(new=new))
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        assert con.cursor().execute(sql).fetchall() == want


def test_mixed_type_warnings_say_what_was_logged(tmp_path: Path) -> None:
    """Sweep AJ: one run logging ``1``, ``"two"``, ``3`` read "1 run(s) logged text under it
    ... beside 1 run(s) logging numbers", as if two runs; an int past 2**63 was "text"."""
    import warnings

    from florsql.errors import FlorWarning

    script = (
        "import florsql as flor\n"
        "for e in flor.loop('e', range(3)):\n"
        "    flor.log('is', [1, 'two', 3][e])\n"
        "    flor.log('big', [2**64, 5, 7][e])\n"
    )
    repo = make_repo(tmp_path / "r", {"train.py": script})
    run_script(repo, "train.py")
    with florsql.connect(repo, replay="off") as con, warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        con.cursor().execute("SELECT is, big FROM logs").fetchall()
    said = sorted(str(m.message) for m in w if issubclass(m.category, FlorWarning))
    assert len(said) == 2, said
    assert "big: VARCHAR, as 1 run(s) logged both numbers and integers past BIGINT" in said[0]
    assert "TRY_CAST(big AS HUGEINT)" in said[0]
    assert "is: VARCHAR, as 1 run(s) logged both numbers and text under it" in said[1]
