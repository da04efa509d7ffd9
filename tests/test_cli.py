"""The ``florsql`` command with click's CliRunner, against exact output, on real recorded runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from florsql.cli import main
from tests.test_flight_support import recorded_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield recorded_repo(tmp_path_factory.mktemp("cli") / "proj")


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


COUNTS = (
    "SELECT lr, epoch, count(*) AS n FROM logs WHERE loss IS NOT NULL GROUP BY ALL ORDER BY ALL"
)


def test_query_prints_an_aligned_table(repo: Path) -> None:
    code, out, err = _run("query", COUNTS, "--repo", str(repo))
    assert (code, err) == (0, "")
    assert out == (
        " lr  epoch  n\n"
        "---  -----  -\n"
        "0.1      0  4\n"
        "0.1      1  4\n"
        "0.1      2  4\n"
        "0.2      0  4\n"
        "0.2      1  4\n"
        "0.2      2  4\n"
        "(6 rows)\n"
    )


def test_query_formats_and_repo_before_the_command(repo: Path) -> None:
    sql = "SELECT lr, count(*) AS n FROM logs GROUP BY ALL ORDER BY ALL"
    assert _run("--repo", str(repo), "query", sql, "--format", "csv")[1] == "lr,n\n0.1,16\n0.2,16\n"
    out = _run("query", sql, "--format", "json", "--repo", str(repo))[1]
    assert json.loads(out) == [{"lr": 0.1, "n": 16}, {"lr": 0.2, "n": 16}]


def test_json_keeps_every_column_of_a_self_join(repo: Path, tmp_path: Path) -> None:
    """A self-join's ``a.epoch, b.epoch`` are two columns named ``epoch``: JSON objects cannot
    hold both under one key, so they are named as DuckDB's own JSON export names them (the
    oracle: ``COPY ... TO 'x.json'``), never one dropped for the other."""
    import duckdb

    sql = (
        "SELECT a.epoch, b.epoch, a.lr, b.lr AS LR, 7 AS epoch_1 FROM logs a JOIN logs b "
        "ON a.run_id = b.run_id AND a.epoch = b.epoch + 1 WHERE a.lr = 0.1 AND a.step = 0 "
        "AND b.step = 0 ORDER BY 1"
    )
    rows = json.loads(_run("query", sql, "--format", "json", "--repo", str(repo))[1])
    oracle = duckdb.connect()
    oracle.execute(
        "COPY (SELECT 1 AS epoch, 0 AS epoch, 0.1 AS lr, 0.1 AS LR, 7 AS epoch_1) "
        f"TO '{tmp_path / 'x.json'}'"
    )
    names = list(json.loads((tmp_path / "x.json").read_text()))
    assert [list(r) for r in rows] == [names, names]
    assert [list(r.values()) for r in rows] == [[1, 0, 0.1, 0.1, 7], [2, 1, 0.1, 0.1, 7]]


def test_csv_tells_an_empty_string_from_null(repo: Path, tmp_path: Path) -> None:
    """NULL is an empty field and the empty string a quoted empty field, as DuckDB writes CSV
    (the oracle: ``COPY ... TO 'x.csv'``), so a reader gets both back."""
    import duckdb

    sql = "SELECT '' AS e, NULL::VARCHAR AS n, 'a' AS a, [''] AS l"
    out = _run("query", sql, "--format", "csv", "--repo", str(repo))[1]
    oracle = duckdb.connect()
    oracle.execute(f"COPY ({sql}) TO '{tmp_path / 'x.csv'}'")
    assert out == (tmp_path / "x.csv").read_text()
    back = oracle.execute(
        f"SELECT * FROM read_csv('{tmp_path / 'x.csv'}', all_varchar = true, "
        "allow_quoted_nulls = false)"
    )
    assert back.fetchall() == [("", None, "a", "['']")]


#: Nested values whose text needs DuckDB's quoting: a string that reads as NULL, as two items,
#: as nothing; struct keys and map entries; leaves whose text holds a ':' (times).
NESTED = [
    "['a', 'b,c', '', 'NULL', 'null', NULL, ' x', 'y ', 'it''s', 'a\\b', 'p q', '[1]']",
    "{'k': '', 'it''s': 'x:y', 'n': NULL, 'l': ['=', '{}']}",
    "MAP {'a b': 'c,d', '': 'NULL', 'k': NULL}",
    "MAP {1: [2.5, NULL]}",
    "[[''], NULL, []]",
    "[TIMESTAMP '2020-01-01 01:02:03', NULL]",
    "[TIMESTAMPTZ '2020-01-01 01:02:03']",
    "[DATE '2020-01-01']",
    "[INTERVAL 1 SECOND, INTERVAL 3 DAY]",
    "[1.50::DECIMAL(4, 2)]",
    "[1e20, 0.1, -0.0]",
    "[true, false]",
    "[UUID '00000000-0000-0000-0000-000000000001']",
    "['a\\x00b'::BLOB, 'a,b'::BLOB]",
    "[{'x': 'a,b', 'y': [' ']}]",
    "['ü', 'a\nb']",
    "array_value('x y', '(', 'nUlL')",
]


def test_nested_values_print_as_duckdb_writes_them(repo: Path) -> None:
    """``florsql query`` prints a list, struct or map as DuckDB's ``CAST(x AS VARCHAR)`` does (the
    oracle): ``['NULL']`` is not ``[NULL]``, ``['a,b']`` is not ``[a, b]``, ``['']`` is not
    ``[]``, and a map is ``{k=v}``. Also a list aggregated from the logs."""
    import csv
    import io

    import duckdb

    sql = "SELECT " + ", ".join(f"{e} AS c{i}" for i, e in enumerate(NESTED))
    out = _run("query", sql, "--format", "csv", "--repo", str(repo))[1]
    _header, row = list(csv.reader(io.StringIO(out)))
    oracle = duckdb.connect()
    oracle.execute("SET TimeZone = 'UTC'")
    want = [oracle.execute(f"SELECT ({e})::VARCHAR").fetchone()[0] for e in NESTED]  # type: ignore[index]
    assert dict(zip(NESTED, row, strict=True)) == dict(zip(NESTED, want, strict=True))
    agg = "SELECT list(DISTINCT done) || ['a,b', 'NULL'] AS l FROM logs WHERE done IS NOT NULL"
    line = _run("query", agg, "--repo", str(repo))[1].splitlines()[2]
    assert line.rstrip() == "[yes, 'a,b', 'NULL']"


def test_hindsight_values_off_warn_on_stderr(repo: Path) -> None:
    sql = "SELECT lr, count(w) AS w, count(w2) AS w2 FROM logs GROUP BY ALL ORDER BY ALL"
    code, out, err = _run("query", sql, "--replay", "off", "--repo", str(repo))
    assert code == 0 and out == " lr  w  w2\n---  -  --\n0.1  3   0\n0.2  3   0\n(2 rows)\n"
    assert err.startswith("warning: replay is off: hindsight values not computed (NULL): w2 for 2")


def test_runs_lists_what_the_db_api_sees(repo: Path) -> None:
    import florsql
    from florsql.repl.render import render_csv

    with florsql.connect(repo=str(repo)) as con:
        cur = con.cursor()
        cur.execute("SHOW RUNS")
        want = render_csv(cur.fetch_arrow_table())
    code, out, _ = _run("runs", "--format", "csv", "--repo", str(repo))
    assert code == 0 and out == want + "\n"
    assert out.splitlines()[0].startswith("run_id,projid,tstamp,vid,filename,status,epochs,lr,")
    table = _run("runs", "--repo", str(repo))[1]
    assert table.splitlines()[0].startswith("run_id ") and table.endswith("(2 rows)\n")


def test_explain_shows_the_plan(repo: Path) -> None:
    code, out, _ = _run(
        "explain", "SELECT avg(loss) FROM logs WHERE epoch > 1", "--repo", str(repo)
    )
    assert code == 0
    assert out.splitlines()[:3] == [
        "Replay plan: nothing to replay (every value the query reads exists)",
        "  pushed into the replay set (logs): epoch > 1",
        "DuckDB SQL:",
    ]
    out = _run("explain", "SELECT epoch, avg(w2) FROM logs GROUP BY ALL", "--repo", str(repo))[1]
    assert out.startswith("Replay plan: 2 run(s), 6 outer iteration(s)")


@pytest.mark.parametrize(
    ("sql", "line"),
    [
        ("DROP TABLE runs", "Error: florsql is read-only: DROP TABLE is not allowed (queries may "
         "only read; use the record API to write) (line 1, column 1)"),
        ("SELECT los FROM logs",
         "Error: Unknown column 'los'. Did you mean 'loss'? (line 1, column 8)"),
        ("SELECT * FROM read_csv('x.csv')", "Error: function read_csv reads files and is not "
         "allowed in florsql queries (line 1, column 15)"),
    ],
)  # fmt: skip
def test_errors_are_one_line_and_exit_1(repo: Path, sql: str, line: str) -> None:
    code, out, err = _run("query", sql, "--repo", str(repo))
    assert (code, out, err) == (1, "", line + "\n")
    # placed in the user's text, not in the EXPLAIN put before it (8 columns right before
    # session 51)
    code, out, err = _run("explain", sql, "--repo", str(repo))
    assert (code, out, err) == (1, "", line + "\n")


def test_debug_shows_the_traceback_instead(repo: Path) -> None:
    from florsql.errors import ParseError

    result = CliRunner().invoke(main, ["--debug", "query", "DROP TABLE runs", "--repo", str(repo)])
    assert result.exit_code == 1 and isinstance(result.exception, ParseError)


def test_outside_a_git_repository(tmp_path: Path) -> None:
    code, _, err = _run("runs", "--repo", str(tmp_path))
    assert code == 1
    assert err.startswith(f"Error: {tmp_path} is not inside a git repository.")
    assert len(err.splitlines()) == 1


def test_serve_refuses_other_addresses_without_a_token(repo: Path) -> None:
    code, _, err = _run("serve", "--host", "0.0.0.0", "--repo", str(repo))
    assert code == 1
    assert err == (
        "Error: refusing to serve on 0.0.0.0 without a token: anyone who can reach it could read "
        "your runs; pass --token TOKEN (clients send 'authorization: Bearer TOKEN') or bind to "
        "127.0.0.1\n"
    )


def test_serve_takes_one_replay_mode(repo: Path) -> None:
    code, _, err = _run("serve", "--allow-replay", "--replay", "off", "--repo", str(repo))
    assert code == 2 and "--allow-replay contradicts --replay off" in err
    code, _, err = _run("serve", "--replay", "confirm", "--repo", str(repo))
    assert code == 2 and "'confirm' is not one of 'auto', 'off', 'error'" in err


def test_propagate_prints_the_patched_old_version(repo: Path) -> None:
    vid = json.loads(next((repo / ".florsql" / "runs").glob("*/run.json")).read_text())["vid"]
    code, out, _ = _run("propagate", "--version", vid[:10], "train.py", "--repo", str(repo))
    assert code == 0 and out.startswith("--- a/train.py\n+++ b/train.py\n")
    assert '+    flor.log("w2", w * 2)\n' in out


def test_propagate_says_what_it_cannot_place(tmp_path: Path) -> None:
    """Session 47 (sweep L): a statement that cannot be placed printed nothing and exited 0."""
    from tests.helpers import make_repo, run_script, write

    src = (
        "import florsql as flor\nfor e in flor.loop('epoch', range(2)):\n"
        "    for b in flor.loop('batch', range(2)):\n        flor.log('b', b)\n"
    )
    proj = make_repo(tmp_path / "p", {"train.py": src})
    run_script(proj, "train.py")
    vid = json.loads(next((proj / ".florsql" / "runs").glob("*/run.json")).read_text())["vid"]
    write(proj / "train.py", src.replace("'batch'", "'step'") + "        flor.log('x', b)\n")
    code, out, err = _run("propagate", "--version", vid, "--repo", str(proj))
    assert code == 1 and out == ""
    assert "cannot place train.py: x (line 5 of the new version): no scope matching" in err


def test_propagate_again_places_a_name_the_version_logs_in_a_branch(tmp_path: Path) -> None:
    """``--again NAME``: what a replay of a run that never took the old branch runs (session
    51; before, the command showed nothing for a name the version logs anywhere)."""
    from tests.helpers import git, make_repo, run_script, write

    src = (
        "import florsql as flor\ndo_eval = flor.arg('do_eval', 0)\n"
        "for e in flor.loop('epoch', range(2)):\n    w = e * 3\n"
        "    if do_eval:\n        flor.log('val', w * 2)\n"
    )
    proj = make_repo(tmp_path / "p", {"train.py": src})
    run_script(proj, "train.py")
    vid = json.loads(next((proj / ".florsql" / "runs").glob("*/run.json")).read_text())["vid"]
    write(proj / "train.py", src.replace("    if do_eval:\n        flor", "    flor"))
    git(proj, "commit", "-qam", "today")
    code, out, _ = _run("propagate", "--version", vid, "--repo", str(proj))
    assert (code, out) == (0, "")
    code, out, err = _run("propagate", "--version", vid, "--again", "val", "--repo", str(proj))
    assert code == 0 and "+    flor.log('val', w * 2)\n" in out, (out, err)


def test_demo_hands_its_arguments_to_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    import florsql.demo

    seen: list[list[str]] = []

    def fake_demo(argv: list[str]) -> int:
        seen.append(argv)
        return 0

    monkeypatch.setattr(florsql.demo, "main", fake_demo)
    assert _run("demo", "--dir", "/tmp/x")[0] == 0 and seen == [["--dir", "/tmp/x"]]


def test_every_command_has_help_with_an_example() -> None:
    assert main.commands.keys() == {
        "query",
        "explain",
        "runs",
        "propagate",
        "serve",
        "demo",
        "shell",
        "replay-service",
    }
    subcommands = [["replay-service", "status"], ["replay-service", "stop"]]
    for args in ([], *([name] for name in main.commands), *subcommands):
        code, out, _ = _run(*args, "--help")
        assert code == 0 and "Example:" in out and "\n      florsql" in out, args


def test_query_help_exactly() -> None:
    assert _run("query", "--help")[1] == (
        "Usage: florsql query [OPTIONS] SQL\n"
        "\n"
        "  Run one SQL statement and print its rows.\n"
        "\n"
        "  Example:\n"
        '      florsql query "SELECT run_id, max(val_acc) FROM logs GROUP BY ALL" --format csv\n'
        '      florsql query "SELECT * FROM logs WHERE lr >= ? AND run_id IN ?" -p 0.01 -p '
        "'[\"r1\"]'\n"
        '      florsql query - < report.sql      # SQL "-": the statement is read from stdin\n'
        "\n"
        "Options:\n"
        "  -p, --param VALUE            The value of the next ? (repeat, in order): JSON\n"
        '                               (1, 0.5, true, null, "1", [1, 2]), else the text\n'
        "                               as written.\n"
        "  --format [table|csv|json]    How to print the rows.  [default: table]\n"
        "  --replay [auto|confirm|off]  Compute hindsight values: always, after asking\n"
        "                               (long replays), never.  [default: confirm]\n"
        "  --executor EXECUTOR          Where replays run: local (default), ray,\n"
        "                               ray://HOST:PORT.\n"
        "  --repo DIRECTORY             The git repository (default: the one around the\n"
        "                               current directory).\n"
        "  --debug                      Show tracebacks.\n"
        "  --wait SECONDS               Seconds to wait for another process using the\n"
        "                               repository's index (default: 60).  [x>=0]\n"
        "  --help                       Show this message and exit.\n"
    )


def test_the_shell_takes_a_format_to_start_in(repo: Path) -> None:
    """``florsql shell --format csv < report.sql`` printed aligned tables: the shell had no
    --format (only ``.mode``, a line of the script). Now it starts in the format given; ``.mode``
    still changes it."""
    script = "SELECT lr, count(*) AS n FROM logs GROUP BY ALL ORDER BY ALL;\n"
    script += ".mode line\nSELECT 1 AS a;\n"
    result = CliRunner().invoke(
        main, ["shell", "--format", "csv", "--repo", str(repo)], input=script
    )
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == "lr,n\n0.1,16\n0.2,16\na = 1\n\n(1 row)\n"
    bad = CliRunner().invoke(main, ["shell", "--format", "xml", "--repo", str(repo)], input="")
    assert bad.exit_code == 2 and "'xml' is not one of" in bad.stderr


def test_piped_input_runs_as_a_script(repo: Path) -> None:
    script = (
        "SELECT lr, count(*) AS n FROM logs\n  GROUP BY ALL ORDER BY ALL;\n"
        ".mode csv\n"
        "SELECT 'a;b' AS s; SELECT 2 AS two\n"
    )
    result = CliRunner().invoke(main, ["--repo", str(repo)], input=script)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == " lr   n\n---  --\n0.1  16\n0.2  16\n(2 rows)\ns\na;b\ntwo\n2\n"
    failed = CliRunner().invoke(main, ["--repo", str(repo)], input="SELECT los FROM logs;\n")
    assert failed.exit_code == 1
    assert failed.stderr.startswith("Unknown column 'los'. Did you mean 'loss'?")


def test_the_shell_prints_explain_in_its_mode(repo: Path) -> None:
    """EXPLAIN in the shell's csv mode printed its plain lines; now a ``plan`` column."""
    import csv
    import io

    def shell(mode: str) -> str:
        sql = "EXPLAIN SELECT avg(loss) FROM logs;\n"
        result = CliRunner().invoke(main, ["shell", "--format", mode, "--repo", str(repo)], sql)
        assert (result.exit_code, result.stderr) == (0, "")
        return result.stdout

    lines = shell("table").splitlines()
    assert lines[0] == "Replay plan: nothing to replay (every value the query reads exists)"
    assert list(csv.reader(io.StringIO(shell("csv")))) == [["plan"], *[[x] for x in lines]]


@pytest.mark.parametrize("entry", ["florsql.entry", "florsql.cli"])
def test_a_deleted_working_folder_is_one_clear_line(tmp_path: Path, entry: str) -> None:
    """Run from a folder deleted since the shell entered it: an error that says what to do,
    not a traceback (the console script's shortcut and the CLI alike)."""
    import subprocess
    import sys

    gone = tmp_path / "gone"
    code = f"from {entry} import main; main()"
    script = (
        f'mkdir "{gone}" && cd "{gone}" && rmdir "{gone}" && exec "$0" -c "$1" query "SELECT 1"'
    )
    proc = subprocess.run(
        ["sh", "-c", script, sys.executable, code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "current folder no longer exists" in proc.stderr and "--repo" in proc.stderr


def test_explain_through_query_starts_no_replay_service(repo: Path) -> None:
    """``florsql query "EXPLAIN ..."`` runs nothing, so it starts no replay service (session
    42: it did, ~350 MB for its idle timeout, in a repository that never replayed); a query
    that may replay starts it early, as before (``cli._start_replay_service``)."""
    import doctest

    import florsql.cli
    from florsql.replay import service

    finder = doctest.DocTestFinder()
    (test,) = [t for t in finder.find(florsql.cli) if t.name.endswith("._may_replay")]
    assert doctest.DocTestRunner().run(test).failed == 0
    store = repo / ".florsql"
    service.stop(store)
    code, out, _ = _run("query", "EXPLAIN SELECT epoch, w2 FROM logs", "--repo", str(repo))
    assert code == 0 and "Replay plan" in out
    assert service.status(store) is None
