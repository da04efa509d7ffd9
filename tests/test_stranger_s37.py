"""Stranger sweep s37: the DB-API, SQL over ``logs``, the CLI and the record API tried as a
newcomer would, wrong answers first.

Oracle: DuckDB's own Python API (for what a statement answers), the values the script logged
(computed by hand from SCRIPT), and PEP 249.

Found:

- ``LIMIT ?%`` (DuckDB's percent LIMIT with a parameter) and ``LIMIT (20 + 30)%`` failed with
  DuckDB's 'syntax error at or near "PERCENT"': sqlglot writes every percent LIMIT as ``n
  PERCENT``, a form DuckDB takes only after a plain number. DuckDB answers ``LIMIT n%`` for any
  expression; florsql now writes that form.
- ``SET replay = ?`` was refused as a ``?`` standing where "a sample's size" goes (the message
  of a ``?`` sqlglot drops in ``USING SAMPLE ? PERCENT``); it now says what the place is.
- ``flor.arg("widths", [16, 8])`` run with ``--widths '[4, 2]'`` gave the script the string
  ``'[4, 2]'`` (``len`` 6, iterating characters), silently; so did a tuple or dict default, and
  a numpy scalar default (``np.float32(0.5)``) got ``'0.25'``. A list, tuple or dict default
  now reads JSON (refusing other text), a numpy scalar or IntEnum default a number of its type,
  and a replay gives the script that type back.
- ``flor.arg("batch_size", 32)`` ignored ``--batch-size 8`` (argparse's spelling of that
  name): the run trained and recorded 32, silently. The dashed flag is now read too.
- ``flor.arg(5, 1)`` failed with ``AttributeError``, ``flor.arg("", 1)`` recorded an empty
  name (``flor.log`` and ``flor.loop`` refuse both): now ``RecordError``. Worse, a run that
  recorded that empty name made every query of its repository fail ("a florsql bug": DuckDB's
  zero-length delimited identifier in the ``runs`` view); such an arg is now no column.
- ``flor.log("epoch", 5)`` (or ``"Epoch"``, or ``flor.arg("epoch", ...)``) after the epoch
  loop had ended was taken (only a running loop was checked): the loop's column and the log
  are one, so ``SELECT max(epoch)`` answered 5 for a run of 2 epochs. Now ``RecordError``.
- ``train.py --lr 0.1 -- tool --lr 0.9``: ``flor.arg("lr", ...)`` read 0.9 where argparse
  reads 0.1 (``--`` ends the options); it now stops at ``--``.
- A run that took ``wd`` as an arg, of a script that logs ``wd`` today, counted as lacking the
  log: a query of ``wd`` replayed it for values its rows never show (they read the arg), and
  where its old code could not take today's statement warned that ``wd`` was NULL for it.
- A log statement whose literal name holds a lone surrogate (``flor.log("\\ud800", ...)``),
  in any script a run executed, even never reached, made every query of the repository fail
  ("a florsql bug"): hashing the statement raised UnicodeEncodeError, and DuckDB cannot hold
  the name. Such a name is no column now.
- A numpy array as a parameter (``WHERE epoch IN ?`` with ``np.arange(3)``) was refused
  ("only 0-dimensional arrays can be converted to Python scalars"); DuckDB binds it as a list,
  and so does florsql now.
- ``RESET replay`` was refused as changing "the DuckDB engine florsql runs on"; it now says to
  ``SET`` the value wanted.
- ``cursor.execute(5)``, ``execute(None)``, ``execute(b"SELECT 1")`` raised
  ``QueryInternalError`` ("this is a florsql bug: please report it"), and ``executemany(sql,
  None)`` and ``florsql.connect(5)`` a bare ``TypeError``: now a ``ProgrammingError`` saying
  what the call takes.

Fixed in session 38 (they were strict xfails): names were folded three ways (DuckDB's
identifiers: ASCII letters only; DuckDB's ``lower()``, used by the catalog's SQL: Unicode;
Python's ``.lower()``: Unicode with ``İ`` -> ``i̇``). A log ``ix`` of one script beside ``İx`` of
another answered no rows for ``ix`` (a column ``ix`` NULL everywhere, b.py's 20 under ``İx``); a
log renamed from ``Точность`` to ``точность`` was an unknown column by today's spelling. Names
now compare by one rule, DuckDB's for identifiers (``florsql/fold.py``): ASCII letters ignore
case, every other character is itself.

Left as they are (not silent, or documented): ``SELECT order FROM logs`` and ``LIMIT ?
PERCENT`` answered where DuckDB refuses them; an arg named like one of ``runs``' extra columns
(``head``, ``files``) takes that column's place in ``runs``; ``--l 0.8`` (argparse's
abbreviation) is not ``--lr``; the warning "N run(s) never recorded arg 'lr' (their code had
none)" also counts runs SIGKILLed before their args reached ``run.json``.

Tried and right: qmark parameters in ``LIMIT ? OFFSET ?``, ``IN (?, ?)``, ``IN ?``, ``=
ANY(?)``, CTEs, subqueries, a hindsight query's WHERE (pushed into the replay set, EXPLAIN shows
the bound value); named parameters refused by name; ``fetchmany`` sizes (0, default, past the
end, bad types), ``arraysize``, ``rowcount``, ``rownumber``, ``nextset``, ``callproc``, closed
cursors and connections, context managers, four threads sharing a connection; ``description``
type codes against the PEP 249 type objects for every DuckDB type kind. Names: ``valAcc`` read
as ``valacc``/``VALACC``/``"valAcc"``, keyword names (``"order"``, ``"select"``), dots and
spaces; NaN, infinities, 5e-324, 1.7e308, booleans, JSON text, a log renamed only in case
across versions (one column). Window functions, ROLLUP, DISTINCT ON, QUALIFY, PIVOT, self-joins
against DuckDB over the same rows. ``florsql query`` formats, ``-`` from stdin, ``--repo``
before or after the command, outside a repository, exit codes; the shell through a pipe.
Record: ``flor.loop`` over a dict, ``enumerate(zip(...))``, a generator, ``dict.items()``, an
empty list, a string; nested loops of one name refused; command-line args (negative numbers,
``--x=``, ``1_000``, ``inf``, ints past int64); unusual values (numpy scalars, int64 bounds,
IntEnum, str/float subclasses, NaN in JSON, NUL in text); a run SIGKILLed after its flushes
(its values kept, the run ``killed``; a hindsight query replays only its flushed epochs); two
runs recording at once in one repository; ``flor.loop`` consumed by a list comprehension, by
``enumerate`` with ``break``, by ``zip`` with a shorter partner, by ``next``/``close``, by
``map``; names holding ``{}``, ``%s``, quotes, newlines, 300 characters. Hindsight against a full
re-recording (each query on a fresh copy): ``?`` in a CTE, a subquery, ``IN (?, ?)``, ``IN ?``,
``= ANY(?)``, ``BETWEEN ? AND ?``, ``LIMIT ?``, ``LIMIT ?%``, ``LIMIT ? OFFSET ?``, a CASE, a
string where a number is compared, NULL, ints past int64 (26 shapes); windows, ROLLUP, QUALIFY,
FILTER, DISTINCT ON, arg_max, ntile(?) and a self-join over epoch- and step-level hindsight
columns (12 shapes).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

import florsql
from florsql import dbapi
from tests.helpers import copy_repo, git, make_repo, run_script

SCRIPT = """
import math
import florsql as flor
lr = flor.arg("lr", 0.1)
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(2)):
        flor.log("valAcc", lr * epoch + step)
        flor.log("order", step)
    flor.log("a b", epoch * 1.5)
    flor.log("nan", float("nan") if epoch == 1 else (math.inf if epoch == 2 else -math.inf))
flor.log("final", "done")
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("s37") / "proj", {"train.py": SCRIPT})
    run_script(repo, "train.py")
    run_script(repo, "train.py", "--lr", "0.5")
    return repo


@pytest.fixture(scope="module")
def con(repo: Path) -> Iterator[dbapi.Connection]:
    with florsql.connect(repo) as connection:
        yield connection


def _rows(con: dbapi.Connection, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return con.cursor().execute(sql, params).fetchall()


# -- LIMIT n% -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT * FROM range(10) LIMIT ?%", [50]),
        ("SELECT * FROM range(10) LIMIT ?%", [50.5]),
        ("SELECT * FROM range(10) LIMIT ?%", ["30"]),
        ("SELECT * FROM range(10) LIMIT (20 + 30)%", None),
        ("SELECT * FROM range(10) LIMIT CAST(20 AS INT)%", None),
        ("SELECT * FROM range(10) LIMIT 50%", None),
        ("SELECT * FROM range(10) LIMIT 50 PERCENT", None),
        ("SELECT * FROM range(10) ORDER BY 1 DESC LIMIT ?% OFFSET ?", [20, 1]),
    ],
)
def test_a_percent_limit_of_any_expression_answers_as_duckdb(
    con: dbapi.Connection, sql: str, params: Any
) -> None:
    want = duckdb.connect().execute(sql, params).fetchall()
    assert _rows(con, sql, params) == want


def test_a_percent_limit_with_a_parameter_over_logs(con: dbapi.Connection) -> None:
    # 20 contexts in all (2 runs x (6 steps + 3 epochs + the top)): half of them
    sql = "SELECT epoch FROM logs ORDER BY run_id, epoch NULLS LAST, step NULLS LAST LIMIT ?%"
    assert len(_rows(con, sql, [50])) == 10
    assert _rows(con, sql, [10]) == [(0,), (0,)]


# -- errors of the DB-API -------------------------------------------------------------------------


def test_set_replay_with_a_parameter_is_refused_saying_where(con: dbapi.Connection) -> None:
    with pytest.raises(dbapi.ProgrammingError) as info:
        con.cursor().execute("SET replay = ?", ["off"])
    message = str(info.value)
    assert "sample" not in message
    assert "SET" in message


@pytest.mark.parametrize("operation", [5, None, b"SELECT 1", ["SELECT 1"]])
def test_execute_refuses_an_operation_that_is_not_text(
    con: dbapi.Connection, operation: Any
) -> None:
    cur = con.cursor()
    with pytest.raises(dbapi.ProgrammingError, match="SQL text as a str") as info:
        cur.execute(operation)
    assert not isinstance(info.value, dbapi.InternalError)
    assert cur.execute("SELECT 1").fetchall() == [(1,)]  # the cursor still works


@pytest.mark.parametrize("seq", [None, 5])
def test_executemany_refuses_what_is_not_a_sequence_of_parameters(
    con: dbapi.Connection, seq: Any
) -> None:
    with pytest.raises(dbapi.ProgrammingError, match="executemany"):
        con.cursor().executemany("SELECT ?", seq)


# -- names that differ in the case of letters outside ASCII ---------------------------------------


@pytest.fixture(scope="module")
def unicode_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``a.py`` logs ``İx`` (U+0130), ``b.py`` logs ``ix``; ``c.py`` logs ``Точность``, then,
    in a second version, ``точность`` (a rename in the case of a Cyrillic letter)."""
    repo = make_repo(
        tmp_path_factory.mktemp("s37-unicode") / "proj",
        {
            "a.py": 'import florsql as flor\nflor.log("İx", 10)\n',
            "b.py": 'import florsql as flor\nflor.log("ix", 20)\n',
            "c.py": 'import florsql as flor\nflor.log("Точность", 1)\n',
        },
    )
    run_script(repo, "a.py")
    run_script(repo, "b.py")
    run_script(repo, "c.py")
    (repo / "c.py").write_text('import florsql as flor\nflor.log("точность", 2)\n')
    run_script(repo, "c.py")
    return repo


def test_a_name_whose_lowercase_differs_between_python_and_duckdb(unicode_repo: Path) -> None:
    # İx (U+0130) is not ix: DuckDB's identifiers ignore the case of ASCII letters only
    # (florsql/fold.py). Before s38 the catalog merged them (DuckDB's lower() folds İ to i), the
    # pivot put b.py's 20 under İx and a column ix was NULL everywhere.
    with florsql.connect(unicode_repo) as con:
        got = _rows(con, "SELECT filename, \"ix\" FROM logs WHERE filename <> 'c.py' ORDER BY 1")
        assert got == [("b.py", 20)]  # the contexts where ix was logged (İx is another name)
        got = _rows(con, 'SELECT filename, "İx" FROM logs WHERE "İx" IS NOT NULL')
        assert got == [("a.py", 10)]


def test_names_differing_in_the_case_of_a_cyrillic_letter_are_two_names(
    unicode_repo: Path,
) -> None:
    # As DuckDB binds identifiers: "точность" is no column "Точность". A log renamed so is a new
    # name, as a rename of acc to accuracy is: today's statement replayed in the old version
    # (its value there is 2). Before s38 the catalog merged the two (DuckDB's lower() folds
    # Cyrillic) into a column spelled Точность, and today's spelling was an unknown column.
    with florsql.connect(unicode_repo) as con:
        got = _rows(con, "SELECT \"точность\" FROM logs WHERE filename = 'c.py' ORDER BY 1")
        assert got == [(2,), (2,)]
        got = _rows(con, "SELECT \"Точность\" FROM logs WHERE filename = 'c.py' ORDER BY run_id")
        assert got == [(1,)]  # the first version logged it; no other (today's code does not)
        cols = [d[0] for d in con.cursor().execute("SELECT * FROM logs LIMIT 0").description]
        assert "Точность" in cols and "точность" in cols and "İx" in cols and "ix" in cols


# -- a name that is an arg of old runs and a log of today's code ----------------------------------

ARG_V1 = """
import florsql as flor
lr = flor.arg("lr", 0.1)
decay = flor.arg("wd", 0.5)
w = 1.0
for epoch in flor.loop("epoch", range(3)):
    w = w * (1 - lr) - decay * 0.01
    flor.log("loss", round(w, 6))
"""

LOG_V2 = """
import florsql as flor
lr = flor.arg("lr", 0.1)
w = 1.0
for epoch in flor.loop("epoch", range(3)):
    wd = 0.5 if epoch % 2 == 0 else 0.0
    flor.log("wd", wd)
    w = w * (1 - lr) - wd * 0.01
    flor.log("loss", round(w, 6))
"""


@pytest.fixture(scope="module")
def arg_then_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs of a version taking ``wd`` as an arg, one of today's, which logs ``wd``."""
    repo = make_repo(tmp_path_factory.mktemp("s37-arg-log") / "proj", {"train.py": ARG_V1})
    run_script(repo, "train.py")
    run_script(repo, "train.py", "--wd", "0.0")
    (repo / "train.py").write_text(LOG_V2.lstrip())
    git(repo, "commit", "-qam", "wd is logged now")
    run_script(repo, "train.py")
    return repo


def test_runs_that_have_a_name_as_their_arg_never_lack_it_as_a_log(arg_then_log: Path) -> None:
    """Their rows read the arg (docs/sql.md): before s37 they counted as lacking the log, so a
    query of ``wd`` replayed them to compute values it never shows, and warned ``NULL``."""
    with florsql.connect(arg_then_log) as con:
        cur = con.cursor()
        cur.execute("SET replay = 'auto'")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = cur.execute("SELECT vid, epoch, wd FROM logs ORDER BY run_id, epoch").fetchall()
        assert [str(w.message) for w in caught if "wd" in str(w.message)] == []
        old, new = sorted({r[0] for r in got}, key=lambda v: [r[0] for r in got].index(v))
        assert [r[1:] for r in got] == [
            (0, 0.5), (1, 0.5), (2, 0.5), (0, 0.0), (1, 0.0), (2, 0.0), (0, 0.5), (1, 0.0), (2, 0.5)
        ]  # fmt: skip
        assert new != old
        assert cur.execute("SELECT count(*) FROM replays").fetchall() == [(0,)]
        lacking = cur.execute("SHOW COLUMNS FROM logs").fetchall()
        names = [d[0] for d in cur.description]
        row = next(r for r in lacking if r[0] == "wd")
        assert row[names.index("runs_lacking")] == 0


# -- flor.arg from the command line ---------------------------------------------------------------

ARGS = """
import json
import numpy as np
import florsql as flor
widths = flor.arg("widths", [16, 8])
betas = flor.arg("betas", (0.9, 0.99))
cfg = flor.arg("cfg", {"a": 1})
half = flor.arg("half", np.float32(0.5))
count = flor.arg("count", np.int64(3))
amp = flor.arg("amp", np.bool_(False))
print(json.dumps([repr(v) for v in (widths, betas, cfg, half, count, amp)]))
flor.log("n", len(widths))
"""


@pytest.fixture(scope="module")
def args_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("s37-args") / "proj", {"train.py": ARGS})


def test_an_arg_with_a_list_tuple_or_dict_default_reads_json_from_the_command_line(
    args_repo: Path,
) -> None:
    """Before s37 ``--widths '[4, 2]'`` gave the script the string ``'[4, 2]'`` (``len`` 6),
    typed like no default; numpy scalar defaults got strings too."""
    proc = run_script(
        args_repo, "train.py", "--widths", "[4, 2]", "--betas=[0.8, 0.9]", "--cfg", '{"b": 2}',
        "--half", "0.25", "--count", "7", "--amp",
    )  # fmt: skip
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == [
        "[4, 2]", "(0.8, 0.9)", "{'b': 2}", "np.float32(0.25)", "np.int64(7)", "np.True_"
    ]  # fmt: skip
    with florsql.connect(args_repo) as con:
        rows = _rows(con, "SELECT widths, betas, cfg, half, count, n FROM logs")
    assert rows == [("[4, 2]", "[0.8, 0.9]", '{"b": 2}', 0.25, 7, 2)]
    # a replay gives the script the values its run got: the list, the tuple, the dict
    copy = copy_repo(args_repo, args_repo.parent / "replayed")
    train = copy / "train.py"
    train.write_text(
        train.read_text()
        + 'flor.log("got", repr((widths[0], betas, cfg["b"], half, count, amp)))\n'
    )
    with florsql.connect(copy) as con:
        cur = con.cursor()
        cur.execute("SET replay = 'auto'")
        assert _rows(con, "SELECT got FROM logs WHERE got IS NOT NULL") == [
            ("(4, (0.8, 0.9), 2, np.float32(0.25), np.int64(7), np.True_)",)
        ]


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--widths", "4,2", "a JSON list"),
        ("--widths", '{"a": 1}', "a JSON list"),
        ("--betas", "0.9", "a JSON list"),
        ("--cfg", "[1]", "a JSON object"),
        ("--half", "half", "a number"),
        ("--count", "2.5", "an integer"),
    ],
)
def test_an_arg_value_unlike_its_default_is_refused(
    args_repo: Path, flag: str, value: str, says: str
) -> None:
    proc = run_script(args_repo, "train.py", flag, value, check=False)
    assert proc.returncode == 1
    assert "RecordError" in proc.stderr and says in proc.stderr, proc.stderr


@pytest.mark.parametrize("repo", [5, None, b"."])
def test_connect_refuses_a_repository_that_is_not_a_path(repo: Any) -> None:
    with pytest.raises(dbapi.ProgrammingError, match="repository's path"):
        florsql.connect(repo)


def test_options_after_a_bare_double_dash_are_not_args(args_repo: Path) -> None:
    """``--`` ends the options, as argparse reads them: what follows belongs to something else
    (a wrapped tool's own flags)."""
    proc = run_script(args_repo, "train.py", "--count", "5", "--", "--count", "9", "--widths")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got[4] == "np.int64(5)" and got[0] == "[16, 8]"


def test_an_arg_with_an_underscore_takes_its_dashed_flag_as_argparse_does(tmp_path: Path) -> None:
    """``--batch-size 8`` is argparse's spelling of ``batch_size``: before s37 ``flor.arg(
    "batch_size", 32)`` ignored it and the run trained (and recorded) 32, silently."""
    script = (
        "import florsql as flor\n"
        "bs = flor.arg('batch_size', 32)\n"
        "amp = flor.arg('use_amp', False)\n"
        "lr = flor.arg('base_lr', 0.1)\n"
        "print(bs, amp, lr)\n"
    )
    repo = make_repo(tmp_path / "proj", {"train.py": script})
    proc = run_script(repo, "train.py", "--batch-size", "8", "--use-amp", "--base_lr=0.5")
    assert proc.stdout.split() == ["8", "True", "0.5"]
    with florsql.connect(repo) as con:
        assert _rows(con, "SELECT batch_size, use_amp, base_lr FROM runs") == [(8, True, 0.5)]


@pytest.mark.parametrize("name", ["5", "''", "None"])
def test_flor_arg_needs_a_non_empty_string_name(tmp_path: Path, name: str) -> None:
    repo = make_repo(tmp_path / "proj", {"t.py": f"import florsql as flor\nflor.arg({name}, 1)\n"})
    proc = run_script(repo, "t.py", check=False)
    assert proc.returncode == 1
    assert "RecordError: flor.arg needs a non-empty string name" in proc.stderr, proc.stderr


def test_a_run_that_recorded_an_arg_with_an_empty_name_leaves_the_others_queryable(
    tmp_path: Path,
) -> None:
    """``flor.arg("", 1)`` recorded an empty name before s37 (its run.json as such a run left
    it); every query of the repository then failed, "a florsql bug" (DuckDB: zero-length
    delimited identifier). Such an arg is no column."""
    repo = make_repo(tmp_path / "proj", {"t.py": "import florsql as flor\nflor.arg('lr', 0.1)\n"})
    run_script(repo, "t.py")
    (doc_path,) = (repo / ".florsql" / "runs").glob("*/run.json")
    doc = json.loads(doc_path.read_text())
    doc["args"][""] = 1
    doc_path.write_text(json.dumps(doc))
    with florsql.connect(repo) as con:
        assert _rows(con, "SELECT lr FROM runs") == [(0.1,)]
        assert _rows(con, "SELECT count(*) FROM logs") == [(0,)]


LOOP_THEN = """
import florsql as flor
for epoch in flor.loop("epoch", range(2)):
    flor.log("v", epoch)
for epoch in flor.loop("epoch", range(2)):  # a loop of the same name again: fine
    flor.log("w", epoch)
CALL
"""


@pytest.mark.parametrize(
    "call", ['flor.log("epoch", 5)', 'flor.log("Epoch", 5)', 'flor.arg("epoch", 5)']
)
def test_a_log_or_arg_named_like_a_loop_that_ended_is_refused(tmp_path: Path, call: str) -> None:
    """Before s37 only a loop still running was checked: ``flor.log("epoch", 5)`` after the
    loop made ``SELECT max(epoch)`` answer 5 for a run of 2 epochs (the loop's column and the
    log are one)."""
    repo = make_repo(tmp_path / "proj", {"t.py": LOOP_THEN.replace("CALL", call)})
    proc = run_script(repo, "t.py", check=False)
    assert proc.returncode == 1
    assert "RecordError" in proc.stderr and "loop" in proc.stderr, proc.stderr
    with florsql.connect(repo) as con:  # what the run logged before stays, loops as recorded
        assert _rows(con, "SELECT max(epoch), count(v), count(w) FROM logs") == [(1, 2, 2)]


@pytest.mark.parametrize(
    "value",
    [[1, 2], [1.5, 2.0], [[1, 2], [3, 4]], ["a", "b"], [True]],
)
def test_a_numpy_array_parameter_binds_as_the_list_duckdb_binds(
    con: dbapi.Connection, value: list[Any]
) -> None:
    """Before s37 refused: 'only 0-dimensional arrays can be converted to Python scalars'."""
    import numpy as np

    array = np.array(value)
    cur = con.cursor().execute("SELECT ?", [array])
    want = duckdb.connect().execute("SELECT ?", [array])
    assert cur.fetchall() == want.fetchall()
    assert cur.description[0][1] == str(want.description[0][1])
    sql = "SELECT DISTINCT epoch FROM logs WHERE epoch IN ? ORDER BY 1"
    assert _rows(con, sql, [np.arange(2)]) == [(0,), (1,)]


def test_a_log_name_with_a_lone_surrogate_in_a_script_leaves_the_repository_queryable(
    tmp_path: Path,
) -> None:
    """``flor.log("\\ud800", ...)`` anywhere in a script a run executed (here never reached)
    made every query of the repository fail before s37 ("a florsql bug": UnicodeEncodeError
    hashing the statement, then DuckDB refusing the name): such a name is no column."""
    script = (
        "import florsql as flor\n"
        "flor.log('ok', 1)\n"
        "if flor.arg('never', False):\n"
        "    flor.log('\\ud800', 2)\n"
    )
    repo = make_repo(tmp_path / "proj", {"t.py": script})
    run_script(repo, "t.py")
    with florsql.connect(repo) as con:
        assert _rows(con, "SELECT * EXCLUDE (projid, run_id, tstamp, vid, filename) FROM logs") == [
            (False, 1)
        ]


# -- SQL over logs against DuckDB over the same rows, computed by hand -----------------------------


def _flat() -> Any:
    """Every context of SCRIPT's two runs (lr 0.1 and 0.5), metadata left out."""
    import math

    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for lr in (0.1, 0.5):
        for epoch in range(3):
            for step in range(2):
                rows.append(
                    {"epoch": epoch, "step": step, "lr": lr, "valAcc": lr * epoch + step,
                     "order": step}
                )  # fmt: skip
            nan = [-math.inf, math.nan, math.inf][epoch]
            rows.append({"epoch": epoch, "lr": lr, "a b": epoch * 1.5, "nan": nan})
        rows.append({"lr": lr, "final": "done"})
    schema = pa.schema(
        [("epoch", pa.int64()), ("step", pa.int64()), ("lr", pa.float64()),
         ("a b", pa.float64()), ("final", pa.string()), ("nan", pa.float64()),
         ("order", pa.int64()), ("valAcc", pa.float64())]
    )  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schema)


META = "EXCLUDE (projid, run_id, tstamp, vid, filename)"

#: Each reads every context (``SELECT *`` in a CTE), so the flat table is the oracle.
SQL_SHAPES = [
    'SELECT valacc, VALACC, "valAcc", t.valAcc FROM t WHERE epoch = 1 AND step = 1 ORDER BY 1',
    'SELECT "order", count(*) FROM t GROUP BY ALL ORDER BY ALL NULLS FIRST',
    "SELECT nan FROM t ORDER BY nan DESC NULLS LAST, lr",
    "SELECT nan FROM t ORDER BY nan NULLS FIRST, lr",
    "SELECT max(nan), min(nan), count(DISTINCT nan), isnan(sum(nan)) FROM t",
    "SELECT epoch, step, sum(valacc) OVER (PARTITION BY lr, epoch ORDER BY step) FROM t "
    "WHERE step IS NOT NULL ORDER BY ALL",
    "SELECT epoch, step, count(*) FROM t GROUP BY ROLLUP (epoch, step) ORDER BY ALL",
    "SELECT DISTINCT ON (lr) lr, epoch, valacc FROM t WHERE valacc IS NOT NULL "
    "ORDER BY lr, valacc DESC",
    'SELECT epoch, "a b" FROM t QUALIFY row_number() OVER (PARTITION BY lr ORDER BY "a b" DESC '
    "NULLS LAST) = 1 ORDER BY ALL",
    "SELECT * FROM (SELECT epoch, valacc FROM t) PIVOT (sum(valacc) FOR epoch IN (0, 1, 2))",
    'SELECT a.epoch, a.valacc, b."a b" FROM t a JOIN t b ON a.lr = b.lr AND a.epoch = b.epoch '
    "AND b.step IS NULL AND b.epoch IS NOT NULL WHERE a.step = 1 ORDER BY ALL",
    "SELECT epoch, first(valacc ORDER BY step DESC, lr) FROM t GROUP BY epoch ORDER BY ALL",
    "SELECT DISTINCT epoch FROM t ORDER BY 1 DESC",
    "SELECT * FROM t ORDER BY ALL LIMIT 25%",
    'SELECT lr, list("order" ORDER BY epoch, step) FILTER (WHERE "order" = 1) FROM t '
    "GROUP BY lr ORDER BY lr",
    'SELECT "a b" + 1, -"order", "order" IN (1, 2), final || \'!\' FROM t ORDER BY ALL',
]


@pytest.mark.parametrize("sql", SQL_SHAPES)
def test_sql_over_every_context_answers_as_duckdb(con: dbapi.Connection, sql: str) -> None:
    db = duckdb.connect()
    db.register("flat", _flat())
    want_cur = db.execute(f"WITH t AS (SELECT * FROM flat) {sql}")
    want = ([d[0] for d in want_cur.description], want_cur.fetchall())
    cur = con.cursor().execute(f"WITH t AS (SELECT * {META} FROM logs) {sql}")
    got = ([d[0] for d in cur.description], cur.fetchall())
    assert repr(got) == repr(want)  # repr: NaN equals NaN


@pytest.mark.parametrize("sql", ["RESET replay", "reset EXECUTOR;"])
def test_reset_of_a_florsql_setting_says_to_set_it(con: dbapi.Connection, sql: str) -> None:
    """Before s37: 'RESET is not allowed (it changes the DuckDB engine florsql runs on)'."""
    with pytest.raises(dbapi.ProgrammingError) as info:
        con.cursor().execute(sql)
    assert "DuckDB engine" not in str(info.value)
    assert "SET " in str(info.value)
