"""Statement normal forms and their similarity, the currency of context alignment.

Two statements compare equal after normalization when they differ only in comments, whitespace,
and numeric or string constants (``lr = 0.1`` and ``lr = 0.01  # faster``). The first argument
of a ``flor.log``/``flor.loop``/``flor.arg`` call is a name, not a constant, and is kept.
"""

from __future__ import annotations

import ast
import re
from difflib import SequenceMatcher
from functools import lru_cache

#: Statements less similar than this do not correspond at all.
THRESHOLD = 0.6

_FLOR_CALLS = ("log", "loop", "arg")
_LITERAL = re.compile(
    r"(?P<flor>\b\w+\.(?:" + "|".join(_FLOR_CALLS) + r")\(\s*(?P<q>['\"])\w+(?P=q))"
    r"|(?P<str>(?:(?<!\w)[rRbBuUfF]{1,2})?(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"))"
    r"|(?P<num>(?<![\w.])(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[jJ]?)"
)
_TOKEN = re.compile(r"\w+|[^\w\s]")
_CHECKPOINTING = re.compile(r"\b\w+\.checkpointing\(.*?\)(?=,|$)")


def _replace_literal(match: re.Match[str]) -> str:
    if match.group("flor"):
        return match.group("flor")
    return "S" if match.group("str") else "N"


def strip_literals(code: str) -> str:
    """Replace numeric and string constants in ``code`` by placeholders, keeping flor names.

    Example:
        >>> strip_literals("x = flor.log('loss', f(0.1, 'a'))")
        "x = flor.log('loss', f(N, S))"
    """
    return _LITERAL.sub(_replace_literal, code)


def header(stmt: ast.stmt) -> str:
    """The header of a compound statement as source text (``for x in data``), else ``''``."""
    u = ast.unparse
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
        return f"def {stmt.name}"
    if isinstance(stmt, ast.ClassDef):
        return f"class {stmt.name}"
    if isinstance(stmt, ast.For | ast.AsyncFor):
        return f"for {u(stmt.target)} in {u(stmt.iter)}"
    if isinstance(stmt, ast.While):
        return f"while {u(stmt.test)}"
    if isinstance(stmt, ast.If):
        return f"if {u(stmt.test)}"
    if isinstance(stmt, ast.With | ast.AsyncWith):
        return "with " + ", ".join(u(item) for item in stmt.items)
    if isinstance(stmt, ast.Match):
        return f"match {u(stmt.subject)}"
    if isinstance(stmt, ast.Try | ast.TryStar):
        return "try"
    return ""


def is_compound(stmt: ast.stmt) -> bool:
    """Whether ``stmt`` holds a body of statements."""
    return hasattr(stmt, "body")


def normalize_header(text: str) -> str:
    """Normal form of a block header: constants replaced, checkpointing arguments dropped."""
    return _CHECKPOINTING.sub("flor.checkpointing(...)", strip_literals(text))


def normalize(stmt: ast.stmt) -> str:
    """Normal form of one statement: a compound statement by its header, else its code.

    Example:
        >>> normalize(ast.parse("lr = 1e-3   # the step size").body[0])
        'lr = N'
    """
    if is_compound(stmt):
        loop = _flor_loop(stmt)
        if loop is not None:
            return loop
        return normalize_header(header(stmt))
    return strip_literals(ast.unparse(stmt))


#: normal forms of one-line statements by their text (a statement's text alone decides its
#: tree, so its normal form; old versions share most lines, and ``ast.unparse`` is the cost)
_BY_TEXT: dict[str, str] = {}
_BY_TEXT_MAX = 65536


def normalize_in(stmt: ast.stmt, lines: list[str]) -> str:
    """:func:`normalize` of ``stmt``, a statement of the file whose lines are ``lines``,
    remembered by its text when it is one ASCII line (column offsets count UTF-8 bytes)."""
    if is_compound(stmt) or stmt.end_lineno != stmt.lineno or stmt.end_col_offset is None:
        return normalize(stmt)
    line = lines[stmt.lineno - 1] if 0 < stmt.lineno <= len(lines) else ""
    if not line.isascii():
        return normalize(stmt)
    text = line[stmt.col_offset : stmt.end_col_offset]
    hit = _BY_TEXT.get(text)
    if hit is None:
        hit = normalize(stmt)
        if len(_BY_TEXT) >= _BY_TEXT_MAX:
            _BY_TEXT.clear()
        _BY_TEXT[text] = hit
    return hit


def _flor_loop(stmt: ast.stmt) -> str | None:
    """``for <alias>.loop('step')`` for a ``for`` over a named ``flor.loop`` (in
    ``enumerate``, ``zip``... too): a flor loop is the same loop by its name, whatever it
    iterates and binds, so a step loop that went from ``torch.randperm(48).split(8)`` to a
    ``DataLoader`` (``for idx`` to ``for xb, yb``) still anchors the statements around it.

    Example:
        >>> _flor_loop(ast.parse("for i, b in enumerate(flor.loop('step', data)): pass").body[0])
        "for flor.loop('step')"
    """
    if not isinstance(stmt, ast.For | ast.AsyncFor):
        return None
    for node in ast.walk(stmt.iter):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "loop"
            and isinstance(node.func.value, ast.Name)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            return f"for {node.func.value.id}.loop({node.args[0].value!r})"
    return None


@lru_cache(maxsize=16384)
def _tokens(code: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(code))


@lru_cache(maxsize=262144)
def similarity(a: str, b: str) -> float:
    """Token similarity of two normal forms in [0, 1]; 0 below :data:`THRESHOLD`.

    Example:
        >>> similarity("out = net(x)", "out = model(x)") > THRESHOLD
        True
        >>> similarity("out = net(x)", "opt.step()")
        0.0
    """
    if a == b:
        return 1.0
    matcher = SequenceMatcher(None, _tokens(a), _tokens(b), autojunk=False)
    if matcher.real_quick_ratio() < THRESHOLD or matcher.quick_ratio() < THRESHOLD:
        return 0.0
    ratio = matcher.ratio()
    return ratio if ratio >= THRESHOLD else 0.0
