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


def assigned(stmt: ast.stmt) -> frozenset[str]:
    """Names ``stmt`` binds by assignment (targets, walrus, augmented assignment)."""
    return frozenset(
        n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    )


def reads(stmt: ast.stmt) -> frozenset[str]:
    """Names ``stmt`` reads (an augmented assignment reads its target too)."""
    names = {
        n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
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


def moved(stmt: ast.stmt, norm: str, old: Block, old_text: str) -> bool:
    """Whether the old version has ``stmt`` elsewhere: in the block, or verbatim in the file."""
    names = assigned(stmt)
    if any(
        similarity(norm, other_norm) and assigned(other) == names
        for other, other_norm in zip(old.stmts, old.norms, strict=True)
    ):
        return True
    return ast.unparse(stmt) in old_text


def carried(
    block: Block, index: int, old: Block, old_text: str, skip: frozenset[int], pairs: dict[int, int]
) -> list[int]:
    """Indices (ascending) of the statements of ``block`` that travel with statement ``index``.

    ``skip`` holds ids of statements never carried (the other log statements being placed);
    ``pairs`` is the :func:`alignment` of ``block`` with ``old``.
    """
    needed = set(reads(block.stmts[index]))
    chosen: list[int] = []
    for k in range(index - 1, -1, -1):
        stmt = block.stmts[k]
        if id(stmt) in skip or is_compound(stmt):
            continue
        names = assigned(stmt)
        if not names & needed:
            continue
        needed -= names
        if k not in pairs and not moved(stmt, block.norms[k], old, old_text):
            chosen.append(k)
            needed |= reads(stmt)
    return chosen[::-1]


def may_carry(block: Block, index: int, skip: frozenset[int] | set[int]) -> list[ast.stmt]:
    """Every statement :func:`carried` may carry with statement ``index`` into some old version
    (it carries those the old block lacks): a superset, found from the new block alone.
    ``skip`` holds ids of statements never carried (log statements)."""
    needed = set(reads(block.stmts[index]))
    chosen: list[ast.stmt] = []
    for k in range(index - 1, -1, -1):
        stmt = block.stmts[k]
        if id(stmt) in skip or is_compound(stmt):
            continue
        names = assigned(stmt)
        if not names & needed:
            continue
        needed -= names
        chosen.append(stmt)
        needed |= reads(stmt)
    return chosen[::-1]
