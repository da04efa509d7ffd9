"""Slices: the new statements a log statement needs, carried along with it.

``gn = clip(...)`` followed by ``flor.log("grad_norm", gn)``: when the old block has no
``gn = ...`` of its own, the assignment travels with the log statement. Only statements of the
same block, before it, that are new (the old block has no similar statement assigning the same
names) and that assign a name the log statement reads, directly or through another carried
statement. Nothing else new travels.
"""

from __future__ import annotations

import ast

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


def is_new(stmt: ast.stmt, norm: str, old: Block) -> bool:
    """Whether the old block lacks a counterpart: similar code assigning the same names."""
    names = assigned(stmt)
    return not any(
        similarity(norm, other_norm) and assigned(other) == names
        for other, other_norm in zip(old.stmts, old.norms, strict=True)
    )


def carried(block: Block, index: int, old: Block, skip: frozenset[int]) -> list[int]:
    """Indices (ascending) of the statements of ``block`` that travel with statement ``index``.

    ``skip`` holds ids of statements never carried (the other log statements being placed).
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
        if is_new(stmt, block.norms[k], old):
            chosen.append(k)
            needed |= reads(stmt)
    return chosen[::-1]
