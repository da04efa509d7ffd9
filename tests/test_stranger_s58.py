"""A newcomer's mistakes, answered with what to do (session 58, sweep AN).

- ``WHERE opt = "sgd"`` said ``Unknown column 'sgd'.`` and nothing of quotes;
- ``florsql query ... --replay off`` warned "SET replay = 'auto' to compute them", which a
  one-shot query cannot do (its option is ``--replay auto``);
- ``execute("SELECT ?", "0.1")`` said the parameters must be a list or tuple, not that a
  string was given nor how to pass one.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import florsql
from florsql.cli import main
from florsql.dbapi.exceptions import ProgrammingError
from tests.helpers import git, make_repo, run_script, write

SCRIPT = textwrap.dedent(
    """\
    import florsql as flor
    opt = flor.arg("opt", "sgd")
    for e in flor.loop("epoch", range(2)):
        flor.log("loss", e * 0.5)
    """
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_repo(tmp_path_factory.mktemp("s58") / "r", {"t.py": SCRIPT})
    run_script(root, "t.py")
    return root


def test_a_string_in_double_quotes_is_told_to_take_single_quotes(repo: Path) -> None:
    with florsql.connect(repo) as con, pytest.raises(florsql.Error) as info:
        con.cursor().execute('SELECT loss FROM logs WHERE opt = "sgd"')
    message = str(info.value)
    assert "Unknown column 'sgd'" in message
    assert "Double quotes name a column; a string takes single quotes: 'sgd'" in message


def test_a_misspelt_quoted_column_still_gets_its_suggestion(repo: Path) -> None:
    with florsql.connect(repo) as con, pytest.raises(florsql.Error) as info:
        con.cursor().execute('SELECT "los" FROM logs')
    assert "Did you mean" in str(info.value) and "single quotes" not in str(info.value)


def test_a_string_parameter_set_says_how_to_pass_one_string(repo: Path) -> None:
    with florsql.connect(repo) as con, pytest.raises(ProgrammingError) as info:
        con.cursor().execute("SELECT ?", "0.1")
    assert "not a str" in str(info.value) and "execute(sql, ['0.1'])" in str(info.value)


def test_the_cli_names_its_own_option_to_compute_hindsight_values(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"t.py": SCRIPT})
    run_script(root, "t.py")
    write(root / "t.py", SCRIPT + '    flor.log("g", e)\n')
    git(root, "commit", "-qam", "g")
    result = CliRunner().invoke(
        main, ["query", "SELECT sum(g) AS g FROM logs", "--replay", "off", "--repo", str(root)]
    )
    assert result.exit_code == 0, result.output
    assert "--replay auto computes them" in result.stderr
    assert "SET replay" not in result.stderr


V1 = """import florsql as flor


def compute_metrics(v):
    return {"acc": v / 10}


for epoch in flor.loop("epoch", range(3)):
    m = compute_metrics(epoch)
    flor.log("acc", m["acc"])
"""
V2 = """import florsql as flor
from metrics import compute_metrics

for epoch in flor.loop("epoch", range(3)):
    m = compute_metrics(epoch)
    flor.log("acc", m["acc"])
"""
METRICS = 'def compute_metrics(v):\n    return {"acc": v / 10}\n'
TODAY = (
    'import florsql as flor\n\n\ndef compute_metrics(v):\n    flor.log("sq", v * v)\n'
    '    return {"acc": v / 10}\n'
)


def test_runs_that_never_imported_today_s_module_are_told_of(tmp_path: Path) -> None:
    """Sweep AO: today's statement sits in ``metrics.py``, a module the first version's runs
    never imported (``compute_metrics`` was in ``train.py`` then): their ``sq`` was NULL and
    nothing said so, while runs that imported it were replayed."""
    root = make_repo(tmp_path / "r", {"train.py": V1, "eval.py": "import florsql as flor\n"})
    run_script(root, "train.py")
    run_script(root, "eval.py")  # another main script: its runs never ran train.py either
    write(root / "metrics.py", METRICS)
    write(root / "train.py", V2)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "v2")
    run_script(root, "train.py")
    write(root / "metrics.py", TODAY)
    sql = "SELECT epoch, sq FROM logs WHERE epoch IS NOT NULL ORDER BY ALL"
    with florsql.connect(root) as con:
        cursor = con.cursor()
        rows = cursor.execute(sql).fetchall()
        said = [text for _, text in cursor.messages]
        assert not [m for m in said if "acc" in m.split(":")[0]]
        cursor.execute("SELECT max(acc) FROM logs")
        assert not [t for _, t in cursor.messages if "never executed" in t]
    assert rows == [(0, 0), (1, 1), (2, 4)]  # the first run has no row where sq has no value
    lines = [m for m in said if "never executed" in m]
    assert len(lines) == 1, said
    assert lines[0].startswith("sq: no value for 1 run(s) (run ")  # the train.py run, not eval.py's
    assert "never executed metrics.py" in lines[0]
