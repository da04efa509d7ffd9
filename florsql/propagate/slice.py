"""Slices: the new statements a log statement needs, carried along with it.

``gn = clip(...)`` followed by ``flor.log("grad_norm", gn)``: when the old block has no
``gn = ...`` of its own, the assignment travels with the log statement. Only statements of the
same block, before it, that are new and that assign a name the log statement reads, directly or
through another carried statement. New means aligned with no statement of the old block: a
statement that was only edited (``main()`` became ``final = main()``) is not new. Nothing else
new travels. Neither does a statement the old block has elsewhere (similar code assigning the
same names) or that appears verbatim anywhere in the old file: carrying it would run it twice.
"""

from __future__ import annotations

import ast

from florsql.propagate.align import align_pairs
from florsql.propagate.normalize import is_compound, similarity
from florsql.propagate.source import Block


def assigned(stmt: ast.AST) -> frozenset[str]:
    """Names ``stmt`` (or a target) binds by assignment (targets, walrus, augmented
    assignment)."""
    return frozenset(
        n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    )


def reads(stmt: ast.stmt) -> frozenset[str]:
    """Names ``stmt`` reads from outside it (an augmented assignment reads its target too; a
    comprehension's or lambda's own variables are not read from outside: ``p`` in
    ``sum(p.norm() for p in net.parameters())``)."""
    names = {
        n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    own: set[str] = set()
    for n in ast.walk(stmt):
        if isinstance(n, ast.comprehension):
            own |= {t.id for t in ast.walk(n.target) if isinstance(t, ast.Name)}
        elif isinstance(n, ast.Lambda):
            a = n.args
            own |= {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x}
    names -= own
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        names.add(stmt.target.id)
    return frozenset(names)


def alignment(block: Block, old: Block, skip: frozenset[int]) -> dict[int, int]:
    """Statements of ``block`` (index) that align with one of ``old`` (its index).

    ``skip`` holds ids of statements left out (the log statements being placed).
    """
    keep = [k for k, s in enumerate(block.stmts) if id(s) not in skip]
    pairs = align_pairs([block.norms[k] for k in keep], old.norms)
    return {keep[i]: j for i, j in pairs.items()}


class Uncarried(Exception):
    """Today's statement reads a name that new code it cannot take along changes: placing it
    alone would read the old version's value, silently wrong."""


def moved(
    stmt: ast.stmt,
    norm: str,
    old: Block,
    old_text: str,
    paired: frozenset[int] = frozenset(),
    new_text: str | None = None,
) -> bool:
    """Whether the old version has ``stmt`` elsewhere: in the block (a similar statement
    assigning the same names that no other new statement stands for: ``paired`` holds the old
    statements aligned with one), or verbatim in the file (moved there, not added: the new
    file, ``new_text``, has it no more often than the old)."""
    names = assigned(stmt)
    if any(
        similarity(norm, other_norm) and assigned(other) == names
        for j, (other, other_norm) in enumerate(zip(old.stmts, old.norms, strict=True))
        if j not in paired
    ):
        return True
    text = ast.unparse(stmt)
    if text not in old_text:
        return False
    return new_text is None or new_text.count(text) <= old_text.count(text)


def _flor_calls(stmt: ast.stmt) -> bool:
    """Whether ``stmt`` holds a ``log``/``loop``/``checkpointing`` call (florsql's)."""
    names = ("log", "loop", "checkpointing")
    for n in ast.walk(stmt):
        if isinstance(n, ast.Call):
            func = n.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in names:
                return True
    return False


def carried(
    block: Block,
    index: int,
    old: Block,
    old_text: str,
    skip: frozenset[int],
    pairs: dict[int, int],
    new_text: str | None = None,
) -> list[int]:
    """Indices (ascending) of the statements of ``block`` that travel with statement ``index``.

    ``skip`` holds ids of statements never carried (the other log statements being placed);
    ``pairs`` is the :func:`alignment` of ``block`` with ``old``. A new compound statement
    (``if val < best: best = val``) travels whole, unless it holds florsql calls. Raises
    :class:`Uncarried` where a needed name is changed by new code inside a compound statement
    the old block has too (``total += loss`` added inside the step loop): that code cannot
    travel, and the statement alone would read the old version's value.
    """
    needed = set(reads(block.stmts[index]))
    chosen: list[int] = []
    paired = frozenset(pairs.values())
    for k in range(index - 1, -1, -1):
        stmt = block.stmts[k]
        if id(stmt) in skip:
            continue
        names = assigned(stmt)
        if not names & needed:
            continue
        if is_compound(stmt):
            if k in pairs:
                new = names - assigned(old.stmts[pairs[k]]) - _targets(stmt)
                if new & needed:
                    raise Uncarried(
                        f"it reads {sorted(new & needed)[0]}, which today's code changes inside "
                        f"a block the old version has (line {stmt.lineno}), where propagation "
                        "does not place code"
                    )
            elif _flor_calls(stmt):
                raise Uncarried(
                    f"it reads {sorted(names & needed)[0]}, which a new block holding florsql "
                    f"calls changes (line {stmt.lineno})"
                )
            elif not moved(stmt, block.norms[k], old, old_text, paired, new_text):
                chosen.append(k)  # it may not run its branch: what comes before still counts
                needed |= reads(stmt)
            continue
        needed -= names
        if k not in pairs and not moved(stmt, block.norms[k], old, old_text, paired, new_text):
            chosen.append(k)
            needed |= reads(stmt)
    return chosen[::-1]


def _targets(stmt: ast.stmt) -> frozenset[str]:
    """The names a ``for``/``with`` header binds (the loop variable, ``as`` names)."""
    out: set[str] = set()
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        out |= {n.id for n in ast.walk(stmt.target) if isinstance(n, ast.Name)}
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        for item in stmt.items:
            if item.optional_vars is not None:
                out |= {n.id for n in ast.walk(item.optional_vars) if isinstance(n, ast.Name)}
    return frozenset(out)


def may_carry(block: Block, index: int, skip: frozenset[int] | set[int]) -> list[ast.stmt]:
    """Every statement :func:`carried` may carry with statement ``index`` into some old version
    (it carries those the old block lacks): a superset, found from the new block alone.
    ``skip`` holds ids of statements never carried (log statements)."""
    needed = set(reads(block.stmts[index]))
    chosen: list[ast.stmt] = []
    for k in range(index - 1, -1, -1):
        stmt = block.stmts[k]
        if id(stmt) in skip:
            continue
        names = assigned(stmt)
        if not names & needed:
            continue
        if is_compound(stmt):
            if not _flor_calls(stmt):
                chosen.append(stmt)
                needed |= reads(stmt)
            continue
        needed -= names
        chosen.append(stmt)
        needed |= reads(stmt)
    return chosen[::-1]
