"""Result objects of propagation: what was placed, what failed, the patched text."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from florsql.errors import PropagateError, concat_messages


@dataclass(frozen=True)
class Placement:
    """A log statement placed into the old version.

    ``new_line`` is its line in the new version, ``old_line`` its line in the patched old text,
    ``scope`` the chain of scopes around it there (outermost first), ``carried`` the code of the
    statements that travelled with it, ``renamed`` the variables it reads under their old names,
    ``binds`` the old version's names that what travelled assigns or changes (a checkpoint of
    the old run holds them as the old code left them: replay never restores them), ``pieces``
    the first and last lines of each text put into the old file for it (the statement, the
    code carried with it), where :func:`guarded` puts the RNG guard.
    """

    name: str
    new_line: int
    old_line: int
    scope: tuple[str, ...]
    carried: tuple[str, ...] = ()
    renamed: dict[str, str] = field(default_factory=dict, hash=False)
    binds: tuple[str, ...] = ()
    pieces: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Failure:
    """A log statement that was not placed, and why (``reason`` reads on its own)."""

    name: str
    new_line: int
    reason: str

    def __str__(self) -> str:
        where = f" (line {self.new_line} of the new version)" if self.new_line else ""
        return f"{self.name}{where}: {self.reason}"


class PlacementError(PropagateError):
    """Some log statements could not be placed; ``failures`` says which and why."""

    def __init__(
        self, failures: list[Failure], path: str | None = None, messages: list[str] | None = None
    ) -> None:
        self.failures = failures
        self.path = path
        head = f"{path}: " if path else ""
        super().__init__(head + concat_messages(messages or [str(f) for f in failures]))


@dataclass(frozen=True)
class Propagation:
    """The outcome for one file: ``source`` is the old text with the placed statements in it.

    ``original`` is the old text as given; ``skipped`` the names the old version logs already.
    """

    original: str
    source: str
    placed: tuple[Placement, ...] = ()
    failed: tuple[Failure, ...] = ()
    skipped: tuple[str, ...] = field(default=())
    #: names of ``skipped`` whose statement today's file has as it is, in the block it
    #: belongs in, under conditions known to be the same (:mod:`florsql.propagate.conditions`)
    present: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        """Whether anything was inserted."""
        return self.source != self.original

    def raise_for_failures(self, path: str | None = None) -> None:
        """Raise a :class:`PlacementError` listing the failures, if there are any."""
        if self.failed:
            raise PlacementError(list(self.failed), path)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the on-disk cache format), without the texts' duplication."""
        data = asdict(self)
        data["source"] = None if not self.changed else self.source
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Propagation:
        """Inverse of :meth:`to_json`."""
        return cls(
            original=data["original"],
            source=data["source"] if data["source"] is not None else data["original"],
            placed=tuple(
                Placement(
                    **{
                        **p,
                        "scope": tuple(p["scope"]),
                        "carried": tuple(p["carried"]),
                        "binds": tuple(p.get("binds", ())),
                        "pieces": tuple(tuple(x) for x in p.get("pieces", ())),
                    }
                )
                for p in data["placed"]
            ),
            failed=tuple(Failure(**f) for f in data["failed"]),
            skipped=tuple(data["skipped"]),
            present=tuple(data.get("present", ())),
        )


#: The RNG guard's calls as :func:`guarded` writes them (``{}``: begin or end, then the name;
#: florsql.store.replays.strip_guards takes them out of the lines a message quotes).
GUARD_CALL = '__import__("florsql")._hindsight_{}({!r})'


def guarded(prop: Propagation) -> Propagation:
    r"""``prop`` as a replay runs it: each piece put into the old file (a placed statement, code
    carried with it) between ``__import__("florsql")._hindsight_begin(name)`` and
    ``..._hindsight_end(name)``, which note the global RNGs it moved
    (florsql/record/rng_guard.py). A simple statement gets them on its own lines (joined by
    ``;``: every line keeps its number, so a traceback's line is the one ``florsql propagate``
    shows); a compound one (a new block carried whole), or a simple one that jumps
    (``return``, ``raise``, ``break``, ``continue``), is put one level deeper in a ``try:``
    whose ``finally:`` calls the end, so a piece left early (a ``continue`` in a new ``if``)
    still ends its guard (session 35: the end was skipped, and its draw went unnoticed); the
    placements' ``old_line`` and ``pieces`` move with the lines. Not in what
    ``florsql propagate`` shows: only replays run it.

    Example:
        >>> p = Propagation("a = 1\n", "a = 1\nflor.log('x', a)  # why\n",
        ...                 (Placement("x", 2, 2, (), pieces=((2, 2),)),))
        >>> print(guarded(p).source, end="")
        a = 1
        __import__("florsql")._hindsight_begin('x'); flor.log('x', a); __import__("florsql")._hindsight_end('x')  # why
        >>> src = "a = 1\nif a:\n    flor.log('x', a)\n"
        >>> g = guarded(Propagation("a = 1\n", src, (Placement("x", 2, 3, (), pieces=((2, 3),)),)))
        >>> print(g.source, end="")
        a = 1
        __import__("florsql")._hindsight_begin('x')
        try:
            if a:
                flor.log('x', a)
        finally:
            __import__("florsql")._hindsight_end('x')
        >>> g.placed[0].old_line, g.placed[0].pieces
        (5, ((4, 5),))
    """  # noqa: E501
    import ast

    pieces = sorted({(a, b, p.name) for p in prop.placed for a, b in p.pieces})
    if not pieces:
        return prop
    lines = prop.source.splitlines(keepends=True)
    try:
        tree = ast.parse(prop.source)
    except SyntaxError:
        return prop
    starts: dict[int, ast.stmt] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            starts.setdefault(node.lineno, node)
    inside = _in_strings(tree)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    before: dict[int, list[str]] = {}  # 1-based line -> guard lines put before it
    joined: dict[int, list[tuple[int, str]]] = {}  # line -> (byte column, text) put in it
    wrapped: dict[tuple[int, int], list[str]] = {}  # (first, last) -> names, in a try
    for first, last, name in pieces:
        stmt = starts.get(first)
        if stmt is None or not 0 < first <= last <= len(lines):
            return prop  # not this text's pieces (a stale cache entry): left unguarded
        begin, end = GUARD_CALL.format("begin", name), GUARD_CALL.format("end", name)
        if (
            _simple(stmt)
            and not isinstance(stmt, _JUMPS)
            and stmt.end_lineno == last
            and stmt.end_col_offset is not None
        ):
            joined.setdefault(first, []).append((stmt.col_offset, begin + "; "))
            joined.setdefault(last, []).append((stmt.end_col_offset, "; " + end))
            continue
        wrapped.setdefault((first, last), []).append(name)
    deeper: dict[int, tuple[str, str]] = {}  # line -> its piece's indentation, one level
    spans = sorted(wrapped)
    for (first, last), names in wrapped.items():
        if any(a <= first and last <= b and (a, b) != (first, last) for a, b in spans):
            return prop  # nested pieces (never placed so): left unguarded, not half-guarded
        text = lines[first - 1]
        indent = text[: len(text) - len(text.lstrip(" \t"))]
        unit = "\t" if "\t" in indent else "    "
        before.setdefault(first, []).extend(
            [indent + GUARD_CALL.format("begin", n) + newline for n in names]
            + [indent + "try:" + newline]
        )
        ends = [indent + unit + GUARD_CALL.format("end", n) + newline for n in reversed(names)]
        before.setdefault(last + 1, [])[:0] = [indent + "finally:" + newline, *ends]
        for number in range(first, last + 1):
            if number not in inside and lines[number - 1].strip():
                deeper[number] = (indent, unit)
    out: list[str] = []
    moved: dict[int, int] = {}  # 1-based line -> its line in the guarded text
    for number in range(1, len(lines) + 2):
        extra = before.get(number, [])
        if extra and out and not out[-1].endswith(("\n", "\r")):
            out[-1] += newline
        out.extend(extra)
        if number <= len(lines):
            line = lines[number - 1]
            if number in joined:
                raw = line.encode()
                for col, text in sorted(joined[number], key=lambda x: -x[0]):  # right first
                    raw = raw[:col] + text.encode() + raw[col:]
                line = raw.decode()
            if number in deeper:
                base, unit = deeper[number]
                rest = line[len(base) :] if line.startswith(base) else line.lstrip(" \t")
                line = base + unit + rest
            out.append(line)
            moved[number] = len(out)
    placed = tuple(
        replace(
            p,
            old_line=moved.get(p.old_line, p.old_line),
            pieces=tuple((moved[a], moved[b]) for a, b in p.pieces),
        )
        for p in prop.placed
    )
    return replace(prop, source="".join(out), placed=placed)


def _in_strings(tree: object) -> set[int]:
    """The lines of ``tree``'s source that start inside a string spanning lines (a
    triple-quoted text): their indentation is the string's, never changed."""
    import ast

    assert isinstance(tree, ast.AST)
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant | ast.JoinedStr) and node.end_lineno is not None:
            out.update(range(node.lineno + 1, node.end_lineno + 1))
    return out


def _jumps() -> tuple[type, ...]:
    import ast

    return (ast.Return, ast.Raise, ast.Break, ast.Continue)


#: Simple statements that leave the code after them unrun: guarded in a ``try`` too.
_JUMPS = _jumps()


def _simple(stmt: object) -> bool:
    import ast

    compound = (
        ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try,
        ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Match,
    )  # fmt: skip
    trystar = getattr(ast, "TryStar", None)
    return not isinstance(stmt, compound) and not (trystar and isinstance(stmt, trystar))
