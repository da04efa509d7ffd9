"""Golden cases for log statement propagation, plus idempotence and execution of the results.

Each ``tests/fixtures/propagate/<case>/`` holds ``old.py`` and ``new.py``; ``expected.py`` is the
patched old file when something is placed (absent: the old file must come back unchanged);
``expected.err`` lists the failures, one per line; an optional ``names`` file restricts the names.
"""

from __future__ import annotations

import difflib
import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest

import florsql.propagate.align
import florsql.propagate.api
import florsql.propagate.normalize
import florsql.propagate.safety
from florsql.errors import PropagateError
from florsql.propagate import PlacementError, Propagation, propagate
from florsql.propagate.align import SlotChoice
from florsql.propagate.match import ChainMatch, _Scored
from florsql.propagate.source import Block

CASES = Path(__file__).parent / "fixtures" / "propagate"
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if (p / "old.py").exists())

#: A stand-in for florsql in the subprocess that runs a patched file: it prints every log call.
SHIM = """
def arg(name, default=None):
    return default


def log(name, value):
    print("FLORLOG", name, repr(value))
    return value


def loop(name, iterable):
    yield from iterable


class checkpointing:
    def __init__(self, **objs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def commit():
    pass
"""


def _read(case: Path, name: str) -> str | None:
    path = case / name
    return path.read_text() if path.exists() else None


def _names(case: Path) -> list[str] | None:
    text = _read(case, "names")
    return text.split() if text is not None else None


def run_logged(source: str, tmp: Path) -> set[str]:
    """Run ``source`` with the shim as ``florsql``; the names it logged."""
    shim = tmp / "shim" / "florsql"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text(SHIM)
    script = tmp / "script.py"
    script.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(shim.parent)}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return {line.split()[1] for line in done.stdout.splitlines() if line.startswith("FLORLOG ")}


def only_insertions(old: str, patched: str) -> bool:
    """Whether ``patched`` is ``old`` with lines added and nothing else changed (``old`` with
    its lines of statements joined by ``;`` split, where propagation split them: session
    47)."""
    from florsql.propagate.insert import split_joined

    for base in (old, split_joined(old)):
        if base is None:
            continue
        matcher = difflib.SequenceMatcher(None, base.splitlines(True), patched.splitlines(True))
        if all(tag in ("equal", "insert") for tag, *_ in matcher.get_opcodes()):
            return True
    return False


def check_case(case: Path, tmp: Path) -> Propagation:
    """Propagate one golden case and compare with its expectations."""
    old, new = _read(case, "old.py"), _read(case, "new.py")
    assert old is not None and new is not None
    result = propagate(new, old, _names(case))
    assert result.source == (_read(case, "expected.py") or old)
    assert [str(f) for f in result.failed] == (_read(case, "expected.err") or "").splitlines()
    assert only_insertions(old, result.source)
    again = propagate(new, result.source, _names(case))
    assert again.source == result.source and not again.placed, "not idempotent"
    if result.placed:
        assert {p.name for p in result.placed} <= run_logged(result.source, tmp)
    return result


def test_there_are_enough_cases() -> None:
    placed = [c for c in CASE_NAMES if (CASES / c / "expected.py").exists()]
    failing = [c for c in CASE_NAMES if (CASES / c / "expected.err").exists()]
    assert len(CASE_NAMES) >= 30 and len(placed) >= 20 and len(failing) >= 10


@pytest.mark.parametrize("name", CASE_NAMES)
def test_golden(name: str, tmp_path: Path) -> None:
    check_case(CASES / name, tmp_path)


def test_scopes_reported() -> None:
    case = CASES / "loop_in_helper_old"
    result = propagate((case / "new.py").read_text(), (case / "old.py").read_text())
    (placement,) = result.placed
    assert placement.scope == ("run_epoch()", "flor.loop('step')")
    assert (placement.name, placement.new_line, placement.old_line) == ("gb", 28, 24)
    patched_line = result.source.splitlines()[placement.old_line - 1]
    assert patched_line.strip() == 'flor.log("gb", gb)'


def test_carried_statements_reported() -> None:
    case = CASES / "slice_chain"
    result = propagate((case / "new.py").read_text(), (case / "old.py").read_text())
    assert result.placed[0].carried == ("sq = gw * gw + gb * gb", "gnorm = sq**0.5")


def test_already_logged_is_a_no_op() -> None:
    case = CASES / "already_logged"
    result = propagate((case / "new.py").read_text(), (case / "old.py").read_text())
    assert not result.changed and result.skipped == ("loss", "w")


def test_names_that_old_logs_are_skipped_even_when_asked() -> None:
    case = CASES / "step_loop_basic"
    result = propagate((case / "new.py").read_text(), (case / "old.py").read_text(), ["loss"])
    assert not result.changed and result.skipped == ("loss",) and not result.failed


def test_candidates_with_context_rank_before_better_headers_without() -> None:
    block = Block([], (), ())
    no_context = _Scored(block, ChainMatch(outer=1, soft=2.0), SlotChoice(None, 0.0))
    weak = _Scored(block, ChainMatch(outer=1, soft=0.6), SlotChoice(1, 0.3))
    closer = _Scored(block, ChainMatch(outer=2, soft=0.6), SlotChoice(None, 0.0))
    assert sorted([no_context, weak, closer], key=lambda s: s.key) == [no_context, weak, closer]


def test_new_source_must_parse() -> None:
    with pytest.raises(PropagateError, match="new version does not parse"):
        propagate("def (:\n", "x = 1\n")


def test_renames_are_reported() -> None:
    case = CASES / "renamed_variable"
    result = propagate((case / "new.py").read_text(), (case / "old.py").read_text())
    assert result.placed[0].renamed == {"gw": "grad_w"}
    assert Propagation.from_json(result.to_json()) == result


def test_no_rename_when_the_values_differ_in_a_name() -> None:
    old = "import florsql as flor\nfor i in flor.loop('step', range(2)):\n"
    old += "    raw = [i, i + 1]\n    grads = clip(raw, 5.0)\n"
    new = old.replace("grads = clip(raw, 5.0)", "gn = clip(grads, 1.0)")
    new = (
        new.replace("    raw = [i, i + 1]\n", "    grads = [i, i + 1]\n")
        + "    flor.log('gn', gn)\n"
    )
    result = propagate(new, old)
    assert not result.placed and "unbound name 'gn'" in result.failed[0].reason


def test_helper_parameters_renamed_through_the_call() -> None:
    case = CASES / "body_in_helper_params"
    result = propagate((case / "new.py").read_text(), (case / "old.py").read_text())
    assert result.placed[0].renamed == {"batch": "rows"}
    assert result.placed[0].scope == ("train_step()",)


def test_no_rename_without_a_matching_assignment() -> None:
    old = "import florsql as flor\nfor i in flor.loop('step', range(2)):\n    g = i * 2\n"
    # `gw = i + 1` was edited from `g = i * 2` (it aligns), but the values differ: no rename
    new = old.replace("g = i * 2", "gw = i + 1") + "    flor.log('gw', gw)\n"
    result = propagate(new, old)
    assert [f.reason for f in result.failed] == ["unbound name 'gw' at line 4 of the old version"]
    # an unrelated new assignment travels with the statement instead of being renamed
    new = (
        old.replace("g = i * 2", "g = i * 2\n    gw = sum(range(i)) ** 3")
        + "    flor.log('gw', gw)\n"
    )
    (placement,) = propagate(new, old).placed
    assert placement.carried == ("gw = sum(range(i)) ** 3",) and not placement.renamed


def test_raise_for_failures() -> None:
    case = CASES / "bound_after"
    result = propagate((case / "new.py").read_text(), (case / "old.py").read_text())
    with pytest.raises(PlacementError, match="unbound name 'gw'") as info:
        result.raise_for_failures("train.py")
    assert info.value.failures == list(result.failed) and info.value.path == "train.py"


def test_json_round_trip() -> None:
    case = CASES / "three_levels"
    result = propagate((case / "new.py").read_text(), (case / "old.py").read_text())
    assert Propagation.from_json(result.to_json()) == result


def test_crlf_and_tabs_are_kept() -> None:
    old = "import florsql as flor\r\nfor i in flor.loop('step', range(2)):\r\n\tx = i * 2\r\n"
    new = "import florsql as flor\nfor i in flor.loop('step', range(3)):\n    x = i * 2\n"
    new += "    flor.log('x', x)\n"
    result = propagate(new, old)
    assert result.source == old + "\tflor.log('x', x)\r\n"


def test_missing_final_newline() -> None:
    old = "import florsql as flor\nfor i in flor.loop('step', range(2)):\n    x = i * 2"
    new = old + "\n    flor.log('x', x)\n"
    assert propagate(new, old).source == old + "\n    flor.log('x', x)\n"


def test_multiline_statement_keeps_its_shape() -> None:
    old = "import florsql as flor\nfor i in flor.loop('step', range(2)):\n    x = i * 2\n"
    new = old + "    flor.log(\n        'x',\n        x,  # the value\n    )\n"
    assert propagate(new, old).source == new


@pytest.mark.parametrize(
    "module",
    [
        florsql.propagate.align,
        florsql.propagate.api,
        florsql.propagate.normalize,
        florsql.propagate.safety,
    ],
)
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_a_comprehension_variable_is_not_a_name_the_statement_reads() -> None:
    """``flor.log("wnorm", sum(p.norm() for p in ps))`` reads ``ps``, not ``p``: a new
    ``for p in ...`` inside the step loop must not refuse it (it did, briefly, as "reads p,
    which today's code changes inside a block the old version has")."""
    old = (
        "import florsql as flor\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        '    for x in flor.loop("step", [1, 2]):\n'
        "        y = x * 2\n"
    )
    new = (
        "import florsql as flor\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        '    for x in flor.loop("step", [1, 2]):\n'
        "        y = x * 2\n"
        "        for p in [y]:\n"
        '            flor.log("p", p)\n'
        '    flor.log("total", sum(p * 2 for p in [epoch, 1]))\n'
    )
    r = propagate(new, old, ["total"])
    assert not r.failed and 'flor.log("total", sum(p * 2 for p in [epoch, 1]))' in r.source


def test_an_update_inside_an_old_block_travels_into_that_block() -> None:
    """``total = 0`` before the step loop, ``total += y`` inside it, the log after it: all three
    go in, each into its own block (the update after its neighbour ``y = x * 2``)."""
    old = (
        "import florsql as flor\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        '    for x in flor.loop("step", [1, 2]):\n'
        "        y = x * 2\n"
        "        z = y + 1  # kept\n"
    )
    new = (
        "import florsql as flor\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        "    total = 0\n"
        '    for x in flor.loop("step", [1, 2]):\n'
        "        y = x * 2\n"
        "        total += y\n"
        "        z = y + 1\n"
        '    flor.log("total", total)\n'
    )
    r = propagate(new, old, ["total"])
    assert not r.failed, r.failed
    assert r.source == (
        "import florsql as flor\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        "    total = 0\n"
        '    for x in flor.loop("step", [1, 2]):\n'
        "        y = x * 2\n"
        "        total += y\n"
        "        z = y + 1  # kept\n"
        '    flor.log("total", total)\n'
    )
    assert r.placed[0].carried == ("total = 0", "total += y")
    again = propagate(new, r.source, ["total"])
    assert again.source == r.source and not again.placed


def test_an_update_nested_two_blocks_deep_travels_with_what_it_reads() -> None:
    """The update sits in a new ``if`` inside the old step loop, and reads a new name of the
    epoch body: the ``if`` travels whole into the step loop, ``scale`` into the epoch body."""
    old = (
        "import florsql as flor\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        '    for x in flor.loop("step", [1, 2, 3]):\n'
        "        y = x * 2\n"
    )
    new = (
        "import florsql as flor\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        "    total = 0\n"
        "    scale = 10 ** epoch\n"
        '    for x in flor.loop("step", [1, 2, 3]):\n'
        "        y = x * 2\n"
        "        if x % 2:\n"
        "            total += y * scale\n"
        '    flor.log("odd_total", total)\n'
    )
    r = propagate(new, old, ["odd_total"])
    assert not r.failed, r.failed
    assert r.placed[0].carried == (
        "total = 0",
        "scale = 10 ** epoch",
        "if x % 2:\n    total += y * scale",
    )
    env: dict[str, object] = {}
    logged: list[tuple[str, object]] = []
    shim = type(
        "flor",
        (),
        {
            "loop": staticmethod(lambda n, it: it),
            "log": staticmethod(lambda n, v: logged.append((n, v))),
        },
    )
    exec(r.source.replace("import florsql as flor\n", ""), {"flor": shim}, env)
    assert logged == [("odd_total", 8), ("odd_total", 80)]


def test_an_update_inside_a_block_of_another_shape_is_refused_with_the_reason() -> None:
    """The update sits in the step loop's ``else:``, which the old loop lacks: refused, never
    placed without it (the log alone would read the old version's total)."""
    old = (
        "import florsql as flor\n"
        "total = 0\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        '    for x in flor.loop("step", [1, 2]):\n'
        "        y = x * 2\n"
    )
    new = (
        "import florsql as flor\n"
        "total = 0\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        '    for x in flor.loop("step", [1, 2]):\n'
        "        y = x * 2\n"
        "    else:\n"
        "        total += y\n"
        '    flor.log("total", total)\n'
    )
    r = propagate(new, old, ["total"])
    assert not r.placed and "changes inside a block the old version has" in r.failed[0].reason


def test_a_new_if_that_updates_the_value_travels_whole() -> None:
    old = (
        "import florsql as flor\n"
        "best = 99.0\n"
        'for epoch in flor.loop("epoch", range(3)):\n'
        "    val = 5.0 - epoch\n"
    )
    new = old + "    if val < best:\n        best = val\n" + '    flor.log("best", best)\n'
    r = propagate(new, old, ["best"])
    assert not r.failed and "    if val < best:\n        best = val\n" in r.source


def test_a_carried_statement_never_overwrites_what_the_old_version_binds_otherwise() -> None:
    """The new version computes ``scale`` per epoch and logs it; the old version has a
    ``scale = 2.0`` of its own that its training reads. Carrying ``scale = 10 ** epoch`` there
    would change the old run's own values: refused, with the reason."""
    old = (
        "import florsql as flor\n"
        "scale = 2.0\n"
        'for epoch in flor.loop("epoch", range(3)):\n'
        "    w = scale * epoch\n"
        '    flor.log("w", w)\n'
    )
    new = (
        "import florsql as flor\n"
        'for epoch in flor.loop("epoch", range(3)):\n'
        "    w = 2.0 * epoch\n"
        '    flor.log("w", w)\n'
        "    scale = 10**epoch\n"
        '    flor.log("scale", scale)\n'
    )
    r = propagate(new, old, ["scale"])
    assert not r.placed, r.source
    assert "would change 'scale', which the old version's own code reads" in str(r.failed[0])


def test_a_new_block_around_the_log_travels_whole() -> None:
    """``with torch.no_grad():`` added around today's evaluation: the block goes in whole (its
    own ``v = ...`` included), after its neighbour; a block around a log the old version has
    stays refused."""
    old = (
        "import florsql as flor\n"
        "import torch\n"
        'for epoch in flor.loop("epoch", range(3)):\n'
        '    for x in flor.loop("step", [1, 2]):\n'
        "        loss = x * 2\n"
        '        flor.log("loss", loss)\n'
        "    print(epoch)\n"
    )
    new = old + (
        "    with torch.no_grad():  # today's evaluation\n"
        "        v = loss * 3\n"
        '        flor.log("val", v)\n'
        '        flor.log("val2", v + 1)\n'
    )
    r = propagate(new, old, ["val2"])
    assert not r.failed and r.source == new, r.source
    (placed,) = r.placed
    assert placed.new_line == placed.old_line == 11
    assert placed.scope == ("flor.loop('epoch')", "with torch.no_grad()")
    assert not propagate(new, r.source).placed  # idempotent: both names are logged now
    moved = old.replace('        flor.log("loss", loss)\n', "") + (
        "    with torch.no_grad():\n"
        '        flor.log("loss", loss)\n'
        '        flor.log("val", loss * 3)\n'
    )
    r = propagate(moved, old, ["val"])
    assert not r.placed and "no block matching" in r.failed[0].reason


def test_a_new_import_and_helper_travel_to_the_module_for_a_module_level_loop() -> None:
    old = (
        "import florsql as flor\n"
        "import torch\n"
        "\n"
        "net = torch.nn.Linear(2, 2)\n"
        "with flor.checkpointing(model=net):\n"
        '    for epoch in flor.loop("epoch", range(3)):\n'
        '        flor.log("w", float(net.weight.sum()))\n'
    )
    new = (
        "import florsql as flor\n"
        "import math\n"
        "import torch\n"
        "\n"
        "\n"
        "def norm(m):\n"
        "    total = sum(float(p.norm()) for p in m.parameters())\n"
        "    return math.sqrt(total)\n"
        "\n"
        "\n"
        "net = torch.nn.Linear(2, 2)\n"
        "with flor.checkpointing(model=net):\n"
        '    for epoch in flor.loop("epoch", range(3)):\n'
        '        flor.log("w", float(net.weight.sum()))\n'
        '        flor.log("norm", norm(net))\n'
    )
    r = propagate(new, old, ["norm"])
    assert not r.failed, r.failed
    assert r.placed[0].carried[0] == "import math"
    assert r.placed[0].carried[1].startswith("def norm(m):")
    assert compile(r.source, "patched", "exec")
    assert r.source.index("import math") < r.source.index("def norm") < r.source.index("net =")


def test_module_definitions_travel_for_a_statement_inside_a_function() -> None:
    """Today's statement inside ``main()`` calls a new helper that uses a new import and a new
    constant: the three go to the old module (never into ``main()``); a new module-level
    statement that calls something (``SEED = random.random()``) does not travel."""
    old = (
        "import florsql as flor\n"
        "import torch\n"
        "\n"
        "\n"
        "def main():\n"
        "    net = torch.nn.Linear(2, 2)\n"
        '    for epoch in flor.loop("epoch", range(3)):\n'
        '        flor.log("w", float(net.weight.sum()))\n'
        "\n"
        "\n"
        'if __name__ == "__main__":\n'
        "    main()\n"
    )
    new = (
        old.replace("import torch\n", "import math\nimport torch\n\nEPS = 1e-6\n\n")
        .replace(
            "\n\ndef main():\n",
            "\n\ndef norm(m):\n    return math.sqrt(sum(float(p.norm()) for p in "
            "m.parameters()) + EPS)\n\n\ndef main():\n",
        )
        .replace(
            '        flor.log("w", float(net.weight.sum()))\n',
            '        flor.log("w", float(net.weight.sum()))\n        flor.log("norm", norm(net))\n',
        )
    )
    r = propagate(new, old, ["norm"])
    assert not r.failed, r.failed
    assert r.placed[0].carried[:2] == ("import math", "EPS = 1e-6")
    assert r.source.index("def norm") < r.source.index("def main")
    env: dict[str, object] = {"__name__": "patched"}
    exec(compile(r.source, "patched", "exec"), env)  # defines, does not run main()
    assert callable(env["norm"])

    calls = new.replace("EPS = 1e-6\n", "EPS = float(len(str(math.pi))) * 1e-6\n")
    r = propagate(calls, old, ["norm"])
    assert not r.placed and "unbound name 'EPS'" in r.failed[0].reason


def test_normal_forms_remembered_by_text_equal_the_computed_ones() -> None:
    """Block.norms remembers one-line statements' normal forms by their text: on every golden
    case (each file twice, so the second reads what the first remembered), and on files with
    lines ``str.splitlines`` counts differently (a form feed) or non-ASCII text, the forms
    equal :func:`normalize`'s."""
    import ast

    from florsql.propagate.normalize import normalize
    from florsql.propagate.source import analyze

    texts = [
        p.read_text()
        for case in sorted((Path(__file__).parent / "fixtures" / "propagate").iterdir())
        for p in sorted(case.glob("*.py"))
    ]
    texts += [
        "x = 1\n\x0cy = f(2)  # a form feed starts this line\nz = 'é' + s\n",
        "a = 'ü'; b = g(3)\nfor i in r:\n    c = h(i, 'ß')\n",
    ]
    checked = 0
    for text in texts * 2:
        try:
            src = analyze(text + "\n# another text\n")  # a new SourceFile, norms not cached
        except SyntaxError:
            continue
        for block in src.blocks:
            assert block.norms == [normalize(s) for s in block.stmts]
            checked += len(block.stmts)
    assert checked > 1000
    assert normalize(ast.parse("y = f(2)").body[0]) == "y = f(N)"


IN_PLACE_OLD = """import torch
import florsql as flor
net = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
for epoch in flor.loop("epoch", range(2)):
    for x in flor.loop("step", [torch.ones(2)] * 3):
        loss = net(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        flor.log("loss", loss.item())
"""
BACKWARD = "        loss.backward()\n"
STEP = "        opt.step()\n"


@pytest.mark.parametrize(
    ("anchor", "added", "changed"),
    [
        (BACKWARD, "gn = torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)\n"
                   'flor.log("gn", float(gn))', "clip_grad_norm_, which changes 'net'"),
        (BACKWARD, 'flor.log("gn", float(torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)))',
         "clip_grad_norm_, which changes 'net'"),
        (STEP, 'flor.log("w", float(net.weight.data.mul_(1.0).sum()))',
         "mul_, which changes 'net'"),
    ],
    ids=["carried-clip", "clip-in-the-log", "method-on-a-parameter"],
)  # fmt: skip
def test_an_in_place_call_the_old_version_never_made_is_refused(
    anchor: str, added: str, changed: str
) -> None:
    """Clipping (or any in-place call on what the old version holds) today's code adds beside
    its log statement changes the old run: placed, the replay clipped gradients that the
    recorded run never clipped, from checkpoints of the unclipped run, and an epoch-level value
    replayed from those checkpoints (no step run) was the recorded run's while a full re-run
    of the patched version trains otherwise. Refused, with the call named."""
    lines = "".join(f"        {line}\n" for line in added.splitlines())
    r = propagate(IN_PLACE_OLD.replace(anchor, anchor + lines), IN_PLACE_OLD)
    assert not r.placed and len(r.failed) == 1, r
    assert changed in r.failed[0].reason, r.failed[0].reason
    assert "the old run would not be the one recorded" in r.failed[0].reason


@pytest.mark.parametrize(
    ("old", "added"),
    [
        # a new object changed in place: nothing of the old run
        (IN_PLACE_OLD, "w = net.weight.detach().clone()\nw.clamp_(0, 1)\n"
                       'flor.log("w", float(w.sum()))'),
        (IN_PLACE_OLD, 'flor.log("w", float(torch.zeros(1).add_(net.weight.sum())))'),
        # a temporary of a carried helper
        (IN_PLACE_OLD, "def doubled(m):\n    y = m.weight.detach().clone()\n    y.mul_(2)\n"
                       "    return float(y.sum())\n"
                       'flor.log("w", doubled(net))'),
        # the old version clips there too: today's line replaces that call
        (IN_PLACE_OLD.replace(BACKWARD, BACKWARD + "        torch.nn.utils.clip_grad_norm_("
                                                "net.parameters(), 0.5)\n"),
         "gn = torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)\n"
         'flor.log("gn", float(gn))'),
        # numpy's scalar types end with an underscore and change nothing (replay corpus h4)
        (IN_PLACE_OLD.replace("import torch\n", "import numpy as np\nimport torch\n"),
         'flor.log("np_b", np.bool_(int(x.sum()) % 2))'),
    ],
    ids=["a-clone", "a-new-tensor", "a-helpers-temporary", "the-old-clip-replaced",
         "a-numpy-scalar-type"],
)  # fmt: skip
def test_an_in_place_call_on_a_new_object_or_replacing_the_old_call_is_placed(
    old: str, added: str
) -> None:
    anchor = BACKWARD if "clip" in added else STEP
    lines = "".join(f"        {line}\n" for line in added.splitlines())
    new = old.replace("        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)\n", "")
    new = new.replace(anchor, anchor + lines)
    r = propagate(new, old)
    assert r.placed and not r.failed, r.failed
    assert r.source.count("clip_grad_norm_") == old.count("clip_grad_norm_")


def test_a_flor_loop_whose_iterable_and_target_changed_still_anchors_its_neighbours() -> None:
    """The step loop went from ``for idx in flor.loop("step", perm.split(8))`` to ``for xb, yb
    in flor.loop("step", loader)``: the same loop by its name. An epoch-level statement whose
    only neighbour is that loop was refused before ("no context"), though the loop is its
    place."""
    old = (
        "import torch\n"
        "import florsql as flor\n"
        "net = torch.nn.Linear(2, 1)\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        '    for idx in flor.loop("step", torch.randperm(6).split(2)):\n'
        "        xb = torch.ones(len(idx), 2)\n"
        '        flor.log("loss", float(net(xb).sum()))\n'
    )
    new = (
        "import torch\n"
        "import florsql as flor\n"
        "net = torch.nn.Linear(2, 1)\n"
        "loader = [(torch.ones(2, 2), None)] * 3\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        '    for i, (xb, _) in enumerate(flor.loop("step", loader)):\n'
        '        flor.log("loss", float(net(xb).sum()))\n'
        '    flor.log("wn", float(net.weight.norm()))\n'
    )
    r = propagate(new, old, ["wn"])
    assert not r.failed, r.failed
    assert r.source == old + '    flor.log("wn", float(net.weight.norm()))\n'
