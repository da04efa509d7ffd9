"""REPL logic as pure functions: statement completeness, dot-command parsing, completion,
rendering, progress text."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pyarrow as pa
import pytest

from florsql.errors import FlorError
from florsql.repl.completion import suggest
from florsql.repl.dotcommands import REGISTRY, parse_dot
from florsql.repl.render import confirm_text, progress_line, render
from florsql.repl.service import Column, ReplayEstimate, Schema
from florsql.repl.statements import is_complete, split_statements

SCHEMA = Schema(
    {
        "logs": (
            Column("run_id", "VARCHAR"),
            Column("epoch", "BIGINT"),
            Column("loss", "DOUBLE"),
            Column("grad_norm", "NULL", hindsight=True),
        ),
        "runs": (Column("run_id", "VARCHAR"), Column("status", "VARCHAR")),
    }
)


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("SELECT 1", False),
        ("SELECT 1;", True),
        ("SELECT 1;  \n", True),
        ("SELECT 1\nFROM logs\n;", True),
        ("SELECT ';'", False),
        ("SELECT ';';", True),
        ("SELECT 'it''s;'", False),
        ('SELECT "a;b" FROM logs', False),
        ("SELECT 1 -- ;", False),
        ("SELECT 1; -- trailing comment", True),
        ("SELECT 1 /* ; */", False),
        ("SELECT 1; /* open", False),
        ("SELECT 1; SELECT 2", False),
        (".tables", True),
        ("  .mode csv", True),
        (".explain SELECT 1", True),
        ("", True),
        ("quit", True),
        ("exit", True),
    ],
)
def test_statement_completeness(text: str, complete: bool) -> None:
    assert is_complete(text) is complete


def test_split_statements_keeps_quoted_semicolons() -> None:
    text = "SHOW RUNS;\nSELECT 'a;b' AS x; -- note\n; SELECT 2;"
    assert split_statements(text) == ["SHOW RUNS", "SELECT 'a;b' AS x", "SELECT 2"]


def test_split_statements_knows_duckdbs_other_quotes_and_nested_comments() -> None:
    """Dollar quotes, ``E'...'`` escapes and nested block comments hold ``;`` too (DuckDB's
    lexer): before, ``$$x;y$$`` was cut in two and ``E'a\\';b'`` swallowed the rest of the
    input as an open string."""
    text = (
        "SELECT $$x;y$$ AS d; SELECT $t$a;$$b$t$;\n"
        "SELECT E'a\\';b' AS e; SELECT e'\\\\'; SELECT 'c\\'; SELECT x$y$;\n"
        "/* one /* nested; */ still; */ SELECT 3 AS three"
    )
    assert split_statements(text) == [
        "SELECT $$x;y$$ AS d",
        "SELECT $t$a;$$b$t$",
        "SELECT E'a\\';b' AS e",
        "SELECT e'\\\\'",
        "SELECT 'c\\'",
        "SELECT x$y$",
        "/* one /* nested; */ still; */ SELECT 3 AS three",
    ]
    assert not is_complete("SELECT $$a;")
    assert not is_complete("SELECT E'a\\';")
    assert not is_complete("SELECT 1; /* a /* b */ ;")
    assert is_complete("SELECT $tag$;$tag$;")


def test_every_documented_dot_command_is_registered() -> None:
    wanted = {".help", ".tables", ".schema", ".runs", ".explain", ".mode", ".timer", ".replay"}
    assert wanted | {".output", ".quit"} <= set(REGISTRY)
    assert all(c.help and c.usage.startswith(c.name) for c in REGISTRY.values())


@pytest.mark.parametrize(
    ("line", "name", "args", "rest"),
    [
        (".tables", ".tables", (), ""),
        ("  .MODE   csv ", ".mode", ("csv",), "csv"),
        (".timer on;", ".timer", ("on",), "on"),
        (".output 'my results.txt'", ".output", ("my results.txt",), "'my results.txt'"),
        (".explain SELECT 'x y' FROM logs", ".explain", ("SELECT", "x y", "FROM", "logs"),
         "SELECT 'x y' FROM logs"),
        (".explain SELECT 'open", ".explain", ("SELECT", "'open"), "SELECT 'open"),
    ],
)  # fmt: skip
def test_parse_dot(line: str, name: str, args: tuple[str, ...], rest: str) -> None:
    call = parse_dot(line)
    assert (call.name, call.args, call.rest) == (name, args, rest)


def _texts(before: str) -> list[str]:
    return [s.text for s in suggest(before, SCHEMA)]


def test_completion_relations_after_from_and_join() -> None:
    assert _texts("SELECT * FROM ") == ["logs", "runs"]
    assert _texts("SELECT * FROM logs l JOIN r") == ["runs"]
    assert _texts("SHOW COLUMNS FROM lo") == ["logs"]


def test_completion_columns_of_the_relations_read() -> None:
    assert "status" not in _texts("SELECT stat")  # no FROM yet: the columns of logs
    assert "status" in _texts("SELECT * FROM runs WHERE sta")
    assert "loss" not in _texts("SELECT * FROM runs WHERE lo")
    assert _texts("SELECT * FROM runs AS r WHERE r.sta") == ["status"]
    assert _texts("SELECT * FROM logs l WHERE l.e") == ["epoch"]


def test_completion_marks_hindsight_columns() -> None:
    found = {s.text: s.meta for s in suggest("SELECT avg(grad", SCHEMA)}
    assert found == {"grad_norm": "hindsight NULL"}
    assert {s.meta for s in suggest("SELECT lo", SCHEMA) if s.text == "loss"} == {"double"}


def test_completion_keywords_functions_and_replace_length() -> None:
    found = suggest("SELECT run_id FROM logs GRO", SCHEMA)
    assert [(s.text, s.meta, s.replace) for s in found][:2] == [
        ("GROUP BY", "keyword", 3),
        ("GROUP BY ALL", "keyword", 3),
    ]
    assert "avg" in _texts("SELECT av")
    assert _texts("SELECT ") == []


def test_completion_of_dot_commands_and_their_arguments() -> None:
    assert _texts(".ti") == [".timer"]
    assert _texts(".mode c") == ["csv"]
    assert _texts(".replay ") == ["auto", "confirm", "off"]
    assert _texts(".output fi") == []
    assert _texts(".explain SELECT * FROM ru") == ["runs"]


def test_completion_is_fast_with_500_columns() -> None:
    cols = tuple(Column(f"metric_{i:03d}", "DOUBLE", hindsight=i % 7 == 0) for i in range(500))
    schema = Schema({"logs": cols, "runs": (Column("run_id", "VARCHAR"),)})
    started = time.perf_counter()
    for _ in range(20):
        found = suggest("SELECT run_id, avg(metric_1", schema)
    per_call = (time.perf_counter() - started) / 20
    assert len(found) == 100 and found[0].text == "metric_100"
    assert per_call < 0.05


def test_render_table_aligns_limits_and_counts() -> None:
    table = pa.table({"run_id": ["a", "bb", "c"], "loss": [0.5, None, 12.25]})
    assert render(table, "table", limit=2) == (
        "run_id  loss\n"
        "------  ----\n"
        "a        0.5\n"
        "bb      NULL\n"
        "(3 rows, first 2 shown; .mode csv for all)"
    )
    assert render(table.slice(0, 1), "table").endswith("(1 row)")


def test_render_csv_json_and_line_modes() -> None:
    table = pa.table({"run_id": ["a", "b"], "loss": [0.5, None], "ok": [True, False]})
    assert render(table, "csv") == "run_id,loss,ok\na,0.5,true\nb,,false"
    assert render(table, "json") == (
        '[\n{"run_id": "a", "loss": 0.5, "ok": true},\n'
        '{"run_id": "b", "loss": null, "ok": false}\n]'
    )
    assert render(table, "line", limit=1) == "run_id = a\n  loss = 0.5\n    ok = true\n\n(2 rows)"
    assert render(table.slice(0, 0), "json") == "[]"


def test_progress_and_confirmation_text() -> None:
    p = SimpleNamespace(
        tasks_done=2, tasks_total=4, iterations_done=0, iterations_total=0, elapsed=61.0, eta=None
    )
    assert progress_line(p, width=4) == "replaying [##..] 2/4 tasks, 1m01s elapsed, ? left"
    text = confirm_text(ReplayEstimate("Replay plan: 3 run(s)", 75.0, tasks=6))
    assert text == (
        "Replay plan: 3 run(s)\n"
        "This query replays old runs in 6 tasks, estimated 1m15s. Run it? [y/N] "
    )


def test_bad_dot_command_arguments_are_errors() -> None:
    from florsql.repl.dotcommands import DotContext, Settings, run_dot

    ctx = DotContext(Settings(), service=SimpleNamespace())
    with pytest.raises(FlorError, match=r"usage: \.mode table\|csv\|json\|line"):
        run_dot(ctx, ".mode xml")
    with pytest.raises(FlorError, match=r"unknown command \.frobnicate"):
        run_dot(ctx, ".frobnicate")
    run_dot(ctx, ".mode LINE")
    run_dot(ctx, ".timer on")
    run_dot(ctx, ".replay off")
    assert (ctx.settings.mode, ctx.settings.timer, ctx.settings.replay) == ("line", True, "off")


def test_doctests() -> None:
    import doctest

    from florsql.repl import background, completion, dotcommands, render, statements

    for module in (background, completion, dotcommands, render, statements):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_help_lists_commands_and_current_settings() -> None:
    from florsql.repl.dotcommands import DotContext, Settings, run_dot

    text = run_dot(DotContext(Settings(mode="csv"), SimpleNamespace()), ".help").text or ""
    assert all(c.usage in text for c in REGISTRY.values())
    assert "  mode = csv  (how results print: table, csv, json or line)" in text
    assert "  confirm_seconds = 10  (" in text and "  output = stdout  (" in text


def test_docs_describe_every_dot_command_and_cli_command() -> None:
    from pathlib import Path

    from florsql.cli import main

    docs = (Path(__file__).resolve().parent.parent / "docs" / "interfaces.md").read_text()
    for command in REGISTRY.values():
        assert f"| `{command.usage.replace('|', chr(92) + '|')}` |" in docs, command.usage
    for name in main.commands:
        assert f"`florsql {name}" in docs, name
