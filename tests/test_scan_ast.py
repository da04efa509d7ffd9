"""The ast scanner (florsql/plan/scan_ast.py) against the libcst scanner it replaced on the query
path (florsql/plan/scan_code.py), the oracle: the same sites, chains, placements and loops on
every training script this repository holds (the tests', the benchmarks', the demo's and the
examples'), and on generated scripts written the odd ways a stranger writes them."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from florsql.plan.hindsight import scan_source
from florsql.plan.scan_ast import scan_ast
from florsql.plan.scan_code import scan_text

ROOT = Path(__file__).resolve().parent.parent


def _scripts() -> list[tuple[str, str]]:
    """(where, text) of every script in the repository's tests, benchmarks, demo and examples:
    the string constants that use flor (and parse), and the example files."""
    found: list[tuple[str, str]] = []
    files = [*ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py"), ROOT / "florsql/demo.py"]
    for path in sorted(files):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if "flor" in text and ("loop(" in text or "log(" in text):
                    found.append((f"{path.name}:{node.lineno}", text))
    for path in sorted(ROOT.glob("examples/*.py")):
        found.append((path.name, path.read_text(encoding="utf-8")))
    return found


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


@pytest.mark.slow  # every script of the repository: 25 s; the generated ones stay default
def test_the_ast_scanner_agrees_with_libcst_on_every_script_here() -> None:
    scripts = [(w, t) for w, t in _scripts() if _parses(t)]
    assert len(scripts) > 150  # the corpus is really there
    with_sites = 0
    for where, text in scripts:
        got, want = scan_ast(text, "s.py"), scan_text(text, "s.py")
        assert got == want, where
        with_sites += bool(want is not None and want.sites)
    assert with_sites > 100


# -- generated scripts ---------------------------------------------------------------------------

NAMES = st.sampled_from(["loss", "acc", "lr", "gn", "x"])
LOOPS = st.sampled_from(["epoch", "step", "batch", "fold"])


@st.composite
def _name_arg(draw: st.DrawFn) -> str:
    """A flor.log/flor.loop first argument: a literal most often, else the forms that are not
    one literal (concatenated, f-string, a variable, a keyword, a starred)."""
    name = draw(NAMES)
    return draw(
        st.sampled_from(
            [
                f'"{name}"',
                f"'{name}'",
                f'r"{name}"',
                f'"""{name}"""',
                f'"{name[:1]}" "{name[1:]}"',
                f'(\n    "{name}"\n)',
                f'("{name[:1]}"\n    "{name[1:]}")',
                f'f"{name}"',
                f'b"{name}"',
                "name_var",
                f'name="{name}"',
                f'*["{name}"]',
                f'*"{name}"',
                f'\n        "{name}"',
            ]
        )
    )


@st.composite
def _log(draw: st.DrawFn, mod: str) -> str:
    value = draw(
        st.sampled_from(["1.0", "x", "g(x)", "obj.m(1)", "(lambda: 2)()", "a if b() else c()"])
    )
    arg = draw(_name_arg())
    if arg.startswith("name="):
        return f"{mod}.log({arg}, value={value})"
    if draw(st.booleans()) and not arg.startswith("*"):
        return f"{mod}.log(value={value}, name={arg})"  # keyword order: the value first
    return f"{mod}.log({arg}, {value})"


@st.composite
def _block(draw: st.DrawFn, depth: int, mod: str) -> list[str]:
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                ["log", "log", "call", "loop", "plain_for", "def", "if", "with", "comp", "dec"]
            )
            if depth < 3
            else st.sampled_from(["log", "call", "comp"])
        )
        if kind == "log":
            lines.append(draw(_log(mod)))
        elif kind == "call":
            fn = draw(st.sampled_from(["train_one", "evaluate", "loop", "log", "helper"]))
            lines.append(draw(st.sampled_from([f"{fn}()", f"self.{fn}(x)", f"g({fn}(1))"])))
        elif kind == "comp":
            lines.append(f"vals = [{draw(_log(mod))} for i in range(2)]")
        elif kind in ("loop", "plain_for"):
            it = (
                draw(
                    st.sampled_from(
                        [
                            f"{mod}.loop({draw(_name_arg())}, range(3))",
                            f"tqdm({mod}.loop({draw(_name_arg())}, data))",
                            f"enumerate({mod}.loop({draw(_name_arg())}, data))",
                            f"zip({mod}.loop({draw(_name_arg())}, a), "
                            f'{mod}.loop("{draw(LOOPS)}", b))',
                        ]
                    )
                )
                if kind == "loop"
                else "range(3)"
            )
            head = draw(st.sampled_from(["for i in", "async for i in", "for i, j in"]))
            lines.append(f"{head} {it}:")
            lines += ["    " + ln for ln in draw(_block(depth + 1, mod))]
            if draw(st.booleans()):
                lines.append("else:")
                lines += ["    " + ln for ln in draw(_block(depth + 1, mod))]
        elif kind in ("def", "dec"):
            fn = draw(st.sampled_from(["train_one", "evaluate", "loop", "helper"]))
            if kind == "dec":
                lines.append(
                    f"@{draw(st.sampled_from(['decorate', 'evaluate', 'wrap(helper())']))}"
                )
            head = draw(st.sampled_from(["def", "async def"]))
            default = draw(st.sampled_from(["", "x=helper()", "x=1"]))
            lines.append(f"{head} {fn}({default}):")
            lines += ["    " + ln for ln in draw(_block(depth + 1, mod))]
        elif kind == "if":
            lines.append("if cond():")
            lines += ["    " + ln for ln in draw(_block(depth + 1, mod))]
        else:
            lines.append("with ctx() as c:")
            lines += ["    " + ln for ln in draw(_block(depth + 1, mod))]
    return lines


@st.composite
def _script(draw: st.DrawFn) -> str:
    imp, mod = draw(
        st.sampled_from(
            [
                ("import florsql as flor", "flor"),
                ("import florsql", "florsql"),
                ("import flordb as fdb", "fdb"),
                ("from florsql import log, loop", ""),
                ("from florsql import log as L, loop as each", ""),
                ("from florsql import *", ""),
                ("import other as flor", "flor"),
            ]
        )
    )
    body = draw(_block(0, mod or "MOD"))
    text = imp + "\n" + "\n".join(body) + "\n"
    if not mod:  # direct names: flor.log(...) as log(...) (or the aliases)
        log, loop = ("L", "each") if " as L" in imp else ("log", "loop")
        text = text.replace("MOD.log(", f"{log}(").replace("MOD.loop(", f"{loop}(")
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_script())
def test_the_ast_scanner_agrees_with_libcst_on_generated_scripts(text: str) -> None:
    if not _parses(text):
        return
    assert scan_ast(text, "g.py") == scan_text(text, "g.py"), text


def test_the_odd_forms_by_hand() -> None:
    """The forms the generator may miss, each checked against libcst, and what they mean."""
    text = textwrap.dedent(
        '''
        import florsql as flor
        name = "n"
        for epoch in flor.loop("epoch", range(2)):
            flor.log("a" "b", 1)  # two literals: not a literal name
            flor.log(f"c", 1)
            flor.log(name, 1)
            flor.log(value=2, name="d")  # keywords: the name is name=, as when it runs
            flor.log(name="e", value=2)
            flor.log(
                "f",
                3,
            )
            flor.log("""g""", 4)
            flor.log("ünï", 5)  # a non-ASCII name: byte offsets differ from characters
            (flor
                .log("h", 6))
        '''
    )
    got = scan_ast(text, "s.py")
    assert got == scan_text(text, "s.py")
    assert got is not None
    assert [s.name for s in got.sites] == ["d", "e", "f", "g", "ünï", "h"]
    assert {s.chain for s in got.sites} == {("epoch",)}


def test_a_file_ast_cannot_parse_is_scanned_with_libcst_or_reported_unparsable() -> None:
    assert scan_source("def broken(:\n") is None
    # Null bytes: ast refuses the source; so does libcst, and the scan says so.
    assert scan_source("import florsql as flor\nflor.log('a', 1)\x00\n") is None


def test_planning_an_edited_script_does_not_import_libcst(tmp_path: Path) -> None:
    """The scan of a new script is ast's: a query process that only plans never loads libcst."""
    script = tmp_path / "train.py"
    script.write_text(
        "import florsql as flor\nfor e in flor.loop('epoch', range(2)):\n    flor.log('a', e)\n"
    )
    code = (
        "import sys\n"
        "from florsql.plan.hindsight import scan_source\n"
        f"c = scan_source(open({str(script)!r}).read(), 'train.py')\n"
        "print([s.name for s in c.sites], 'libcst' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['a']", "False"]


@pytest.mark.parametrize("n", [0, 1])
def test_the_ast_scanner_on_a_script_with_a_helper_called_from_two_loops(n: int) -> None:
    text = textwrap.dedent(
        """
        import florsql as flor
        def evaluate():
            flor.log("acc", 1.0)
        for epoch in flor.loop("epoch", range(2)):
            for step in flor.loop("step", range(2)):
                pass
            evaluate()
        """
    ) + ("evaluate()\n" if n else "")
    got = scan_ast(text, "s.py")
    assert got == scan_text(text, "s.py")
    assert got is not None
    chains = [(s.chain, s.where) for s in got.sites]
    assert chains == [(("epoch",), "loop")] + ([((), "tail")] if n else [])


def test_a_loop_no_for_iterates_is_found() -> None:
    """``loose_loop`` (session 42): ``it = iter(flor.loop(...))`` then ``next(it)`` in a
    ``while`` loop is a loop no ``for`` iterates; the scan then gives every site an unknown
    loop context (``scan_source``), since the chains it found leave that loop out."""
    import doctest

    import florsql.plan.scan_ast as module
    from florsql.plan.hindsight import scan_source

    assert doctest.testmod(module).failed == 0
    src = (
        "import florsql as flor\nit = iter(flor.loop('epoch', range(3)))\nwhile True:\n"
        "    try:\n        e = next(it)\n    except StopIteration:\n        break\n"
        "    flor.log('x', e)\n"
    )
    code = scan_source(src, "s.py")
    assert code is not None
    assert [(s.name, s.chain, s.where) for s in code.sites] == [("x", None, "unknown")]
