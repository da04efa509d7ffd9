"""Which of today's statements made a replay task fail.

A task runs an old version with every statement the query needs placed into it. When one of
them raises, the others need not go NULL with it: the task's ``failed.json`` keeps the frames it
raised through (``[file, line, text]``, outermost first), and :func:`blame` finds, from the
innermost frame outward, the first that runs a line the propagation inserted. That line belongs
to one statement (its own lines, or the new block lifted around it) or to code carried for some
statements (a slice's update, an initialisation): those names are to blame. A task that raised
in the old code alone (no inserted line on the stack) or that failed without a traceback (it
never reached an iteration) blames nothing, and all its names stay NULL, as before.

The planner then leaves the blamed names out of the version's next task, so the others are
computed by a patch without them (their values are those of the old version with their own
statements, as for any query that names only them); see docs/replay.md, "Faults".
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from florsql.fold import fold
from florsql.propagate.model import Propagation
from florsql.store.replays import strip_guards


def inserted_lines(original: str, source: str) -> set[int]:
    """The 1-based lines of ``source`` that are not lines of ``original`` (the propagation only
    inserts lines, so every other line is the old version's).

    Example:
        >>> sorted(inserted_lines("a\\nb\\n", "a\\nx = 1\\nb\\ny\\n"))
        [2, 4]
    """
    old, new = original.splitlines(), source.splitlines()
    out: set[int] = set()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, _i1, _i2, j1, j2 in matcher.get_opcodes():
        if tag in ("insert", "replace"):
            out.update(range(j1 + 1, j2 + 1))
    return out


def _statements(tree: ast.AST) -> Iterable[ast.stmt]:
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            yield node


def statement_lines(prop: Propagation) -> dict[str, set[int]]:
    """Per placed name, the lines of its statement in the patched text, with the new blocks
    lifted around it (the outermost inserted statement that holds it)."""
    inserted = inserted_lines(prop.original, prop.source)
    try:
        tree = ast.parse(prop.source)
    except SyntaxError:
        return {p.name: {p.old_line} for p in prop.placed}
    spans = [
        (s.lineno, s.end_lineno or s.lineno)
        for s in _statements(tree)
        if all(n in inserted for n in range(s.lineno, (s.end_lineno or s.lineno) + 1))
    ]
    out: dict[str, set[int]] = {}
    for p in prop.placed:
        holding = [(a, b) for a, b in spans if a <= p.old_line <= b]
        if holding:
            first, last = min(a for a, _ in holding), max(b for _, b in holding)
            out.setdefault(p.name, set()).update(range(first, last + 1))
        else:
            out.setdefault(p.name, set()).add(p.old_line)
    return out


def _own_lines(prop: Propagation) -> dict[str, set[int]]:
    """Per placed name, the lines of its log statement alone (no block around it)."""
    try:
        tree = ast.parse(prop.source)
    except SyntaxError:
        return {p.name: {p.old_line} for p in prop.placed}
    ends = {s.lineno: s.end_lineno or s.lineno for s in _statements(tree)}
    out: dict[str, set[int]] = {}
    for p in prop.placed:
        out.setdefault(p.name, set()).update(
            range(p.old_line, ends.get(p.old_line, p.old_line) + 1)
        )
    return out


def _carried_by(prop: Propagation, text: str) -> set[str]:
    """The names whose carried code has a line reading ``text`` (stripped)."""
    return {
        p.name
        for p in prop.placed
        if any(line.strip() == text for code in p.carried for line in code.splitlines())
    }


def _file_of(path: str, files: Iterable[str]) -> str | None:
    """The patched file (relative path) that ``path`` (a frame's file on the worker) is: the
    longest one it ends with."""
    norm = path.replace("\\", "/")
    hits = [f for f in files if norm == f or norm.endswith("/" + f)]
    return max(hits, key=len) if hits else None


def blame(
    files: Mapping[str, Propagation], frames: Sequence[Sequence[Any]], names: Iterable[str]
) -> tuple[str, ...] | None:
    """Of ``names`` (a failed task's), those whose statements raised, from the frames of its
    ``failed.json`` and the propagation into its version (``files``: path -> result); None
    when the failure is not theirs alone to tell (old code raised, no traceback, a line that
    cannot be told apart)."""
    wanted = {fold(n): n for n in names}
    patched = {path: prop for path, prop in files.items() if prop.placed}
    for frame in reversed(frames):
        if len(frame) < 2:
            continue
        path = _file_of(str(frame[0]), patched)
        if path is None:
            continue
        prop = patched[path]
        try:
            line = int(frame[1])
        except (TypeError, ValueError):
            continue
        lines = prop.source.splitlines()
        text = str(frame[2]).strip() if len(frame) > 2 else ""
        if not 0 < line <= len(lines) or (text and lines[line - 1].strip() != text):
            return None  # not the text placed there: another file of that name, or stale
        if line not in inserted_lines(prop.original, prop.source):
            continue  # the old code this statement called raised: look further out
        # The statement on that line; else the new block lifted around statements (all of
        # them, when it holds several); else code carried for some.
        own = {n for n, span in _own_lines(prop).items() if line in span}
        own = own or {n for n, span in statement_lines(prop).items() if line in span}
        culprits = own or _carried_by(prop, strip_guards(lines[line - 1]).strip())
        found = tuple(sorted({wanted[fold(n)] for n in culprits if fold(n) in wanted}))
        return found or None
    return None
