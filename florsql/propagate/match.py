"""Finding the old block and slot that correspond to a new statement: scope first, then context.

Chains correspond when their innermost *hard* frames (function, class, ``flor.loop``) agree by
kind and name, and the *soft* frames inside it (for/while/with/if... blocks) pair up one to one,
by kind and by header similarity. A function or class is also qualified by the hard frames around
it up to the nearest ``flor.loop``; a ``flor.loop`` is identified by its name alone, wherever the
old version put it. Among corresponding blocks, context alignment picks the slot; the best score
wins and a tie between different places is an ambiguity.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from florsql.propagate.align import EPS, SlotChoice, choose_slot
from florsql.propagate.helpers import Helpers
from florsql.propagate.normalize import similarity
from florsql.propagate.slice import OUTPUT_METHODS
from florsql.propagate.source import Block, Frame, hard_key, innermost_hard

Chain = tuple[Frame, ...]


@dataclass(frozen=True)
class ChainMatch:
    """How well an old chain corresponds: agreeing outer hard frames, then soft similarity."""

    outer: int
    soft: float


@dataclass(frozen=True)
class Spot:
    """A place in the old version: ``slot`` of ``block`` (insert before statement ``slot``)."""

    block: Block
    slot: int


@dataclass(frozen=True)
class Miss:
    """No place: why."""

    reason: str


@dataclass(frozen=True)
class _Scored:
    block: Block
    chain: ChainMatch
    choice: SlotChoice

    @property
    def key(self) -> tuple[int, bool, float]:
        """Agreeing outer frames, then having any context at all, then the total score."""
        total = self.chain.soft + self.choice.score
        return (self.chain.outer, self.choice.score > EPS, total)


def _hard_keys(chain: Sequence[Frame]) -> list[tuple[str, str]]:
    return [(f.kind, f.key) for f in chain if f.hard]


def _qualifier(keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The hard keys from the nearest enclosing flor loop (inclusive) inward."""
    loops = [i for i, (kind, _) in enumerate(keys) if kind == "loop"]
    return keys[loops[-1] :] if loops else keys


def _hard_match(new: Chain, old: Chain) -> int | None:
    """Agreeing outer hard frames when the innermost hard frames correspond, else None."""
    hn, ho = innermost_hard(new), innermost_hard(old)
    if hn is None or ho is None:
        return 0 if hn is None and ho is None else None
    if (new[hn].kind, new[hn].key) != (old[ho].kind, old[ho].key):
        return None
    outer_new, outer_old = _hard_keys(new[:hn]), _hard_keys(old[:ho])
    if new[hn].kind != "loop":
        qualifier = _qualifier(outer_new)
        if outer_old[len(outer_old) - len(qualifier) :] != qualifier or (
            len(outer_old) < len(qualifier)
        ):
            return None
    common = 0
    while common < min(len(outer_new), len(outer_old)) and (
        outer_new[-1 - common] == outer_old[-1 - common]
    ):
        common += 1
    return common


def _soft(chain: Chain) -> Chain:
    hard = innermost_hard(chain)
    return chain if hard is None else chain[hard + 1 :]


def match_chains(new: Chain, old: Chain) -> ChainMatch | None:
    """How ``old`` corresponds to ``new``, or None when it does not."""
    outer = _hard_match(new, old)
    soft_new, soft_old = _soft(new), _soft(old)
    if outer is None or len(soft_new) != len(soft_old):
        return None
    soft = 0.0
    for a, b in zip(soft_new, soft_old, strict=True):
        sim = similarity(a.key, b.key) if a.kind == b.kind else 0.0
        if not sim:
            return None
        soft += sim
    return ChainMatch(outer, soft)


def _function(chain: Chain) -> str | None:
    """The innermost function around a lexical chain, by name (None: none)."""
    names = [f.name for f in chain if f.kind == "def"]
    return names[-1] if names else None


def _candidates(
    new_chains: list[Chain], helpers: Helpers, today: frozenset[str] = frozenset()
) -> list[tuple[Block, ChainMatch]]:
    """Old blocks whose chain corresponds to one of ``new_chains``, each with its best match.
    ``today``: the functions today's file defines. An old block matched only through a helper's
    call site, inside a function that today's file still defines, other than the one around
    today's statement, is not one (session 52, sweep Z2: a log in today's new ``probe()``
    went into the old ``score()``, whose tail looked alike, and answered score's values)."""
    mine = _function(new_chains[0]) if new_chains else None
    best: dict[int, tuple[Block, ChainMatch]] = {}
    for new_chain in new_chains:
        for block, old_chain in helpers.index.get(hard_key(new_chain), []):
            theirs = _function(block.chain) if old_chain != block.chain else None
            if theirs is not None and theirs != mine and theirs in today:
                continue  # (matched through its call site: see above)
            match = match_chains(new_chain, old_chain)
            seen = best.get(id(block))
            if match and (
                seen is None or (match.outer, match.soft) > (seen[1].outer, seen[1].soft)
            ):
                best[id(block)] = (block, match)
    return list(best.values())


def _hard_label(chain: Chain, hard: int) -> str:
    """The innermost hard frame with its qualifier, for messages (``Trainer > fit()``)."""
    outer = [f for f in chain[:hard] if f.hard]
    qualified = 0 if chain[hard].kind == "loop" else len(_qualifier(_hard_keys(outer)))
    return " > ".join(f.label for f in [*outer[len(outer) - qualified :], chain[hard]])


def describe_miss(new_chain: Chain, helpers: Helpers) -> str:
    """Why no old block corresponds to ``new_chain``."""
    hard = innermost_hard(new_chain)
    if hard is None:
        where = "at module level"
    else:
        where = f"inside {new_chain[hard].label}"
        scope = new_chain[: hard + 1]
        if not any(
            _hard_match(scope, v[: i + 1]) is not None
            for b in helpers.src.blocks
            for v in helpers.variants(b)
            for i in range(len(v))
            if v[i].hard
        ):
            return f"no scope matching {_hard_label(new_chain, hard)} in the old version"
    soft = " > ".join(f.label for f in _soft(new_chain))
    return f"no block matching {soft} {where} in the old version"


def locate(
    new_chains: list[Chain],
    before: Sequence[str],
    after: Sequence[str],
    helpers: Helpers,
    today: frozenset[str] = frozenset(),
    ordinal: tuple[int, int] | None = None,
) -> Spot | Miss:
    """The old block and slot for a statement with these chains and neighbours (``today``:
    the functions today's file defines, see :func:`_candidates`; ``ordinal``: its block is
    the k-th of n blocks of today's file under the same frames, see below)."""
    scored = [
        _Scored(block, match, choose_slot(before, after, block.norms))
        for block, match in _candidates(new_chains, helpers, today)
    ]
    if not scored:
        return Miss(describe_miss(new_chains[0], helpers))
    scored.sort(key=lambda s: s.key, reverse=True)
    top = scored[0]
    if top.choice.score <= EPS and not before and not after:
        empty = [s.block for s in scored if all(_placeholder(st) for st in s.block.stmts)]
        if len(empty) == 1:
            # today's block holds only new statements, and one old block its scope matches
            # holds nothing but a placeholder (``def report(): pass``, a docstring; the other
            # candidates: the blocks around its calls): after it (session 45: "no context")
            return Spot(empty[0], len(empty[0].stmts))
    if top.choice.score <= EPS:
        where = " > ".join(f.label for f in new_chains[0]) or "the module"
        return Miss(
            f"no context: none of the statements around it in {where} match the old version"
        )
    rivals = [s for s in scored[1:] if s.key[:2] == top.key[:2] and s.key[2] >= top.key[2] - EPS]
    if rivals:
        # a tie between the block of the statement's own function (``def report``) and a
        # block that matches only through a helper's call site (``score``'s, also called in
        # the epoch loop, ending in the same ``return acc``): its own function's (sweep Z F3:
        # "ambiguous: 2 equally good places" for a log added to a helper)
        own = [s for s in (top, *rivals) if match_chains(new_chains[0], s.block.chain)]
        if len(own) == 1 and own[0].choice.ok and len(new_chains) > 1:
            top, rivals = own[0], []
    if rivals and ordinal is not None:
        # blocks alike but for literals, one after the other (two phases of one script, each
        # ``for epoch in flor.loop("epoch", ...)``, today's statement at the end of both): as
        # many tie in the old file as today's file has under the same frames, so the k-th goes
        # to the k-th, in order, as the versions' other lines align (sweep AH, session 56:
        # "ambiguous: 2 equally good places", where each statement had one)
        tied = sorted((top, *rivals), key=lambda s: s.block.first_line(0))
        k, n = ordinal
        if len(tied) == n > 1 and all(s.choice.ok and s.block.stmts for s in tied):
            pick = tied[k]
            assert pick.choice.slot is not None
            return Spot(pick.block, pick.choice.slot)
    if not top.choice.ok and not rivals and (inert := inert_tie(top.block, top.choice)) is not None:
        return Spot(top.block, inert)
    if not top.choice.ok or rivals:
        lines = _tied_lines(top) + [line for r in rivals for line in _tied_lines(r)]
        shown = ", ".join(str(n) for n in sorted(set(lines)))
        return Miss(f"ambiguous: {len(lines)} equally good places (lines {shown})")
    assert top.choice.slot is not None
    return Spot(top.block, top.choice.slot)


def inert_tie(block: Block, choice: SlotChoice) -> int | None:
    """The last of ``choice``'s tied slots where only inert statements (:func:`inert`) lie
    between them, as between two old ``print("at", a)`` lines that today's code has once
    (any of the slots gives the same values: session 61, refused "ambiguous" before); else
    None."""
    if choice.ok or not choice.tied:
        return None
    lo, hi = min(choice.tied), max(choice.tied)
    return hi if all(inert(block.stmts[j]) for j in range(lo, hi)) else None


def inert(stmt: ast.stmt) -> bool:
    """A statement that changes nothing: ``pass``, a lone constant, or a call of ``print`` (or
    a logger's output method) whose arguments call nothing."""
    if _placeholder(stmt):
        return True
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    call = stmt.value
    func = call.func
    named = (isinstance(func, ast.Name) and func.id == "print") or (
        isinstance(func, ast.Attribute) and func.attr in OUTPUT_METHODS
    )
    busy = (ast.Call, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom, ast.Lambda)
    parts = [*call.args, *(k.value for k in call.keywords)]
    return named and not any(isinstance(n, busy) for a in parts for n in ast.walk(a))


def _placeholder(stmt: ast.stmt) -> bool:
    """``pass``, ``...`` or a string alone: a statement that does nothing."""
    if isinstance(stmt, ast.Pass):
        return True
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and (stmt.value.value is Ellipsis or isinstance(stmt.value.value, str))
    )


def locate_twin(
    new_chains: list[Chain],
    helpers: Helpers,
    stands_for: Callable[[ast.stmt], bool],
    today: frozenset[str] = frozenset(),
) -> Spot | None:
    """Where a statement with no context in its block goes (a wrapped line alone there:
    ``return flor.log("vl", v)`` under ``with torch.no_grad():`` where the old version had
    ``return v``): at the one old statement it stands for (``stands_for``) among the blocks
    its chain matches. None where no such statement, or more than one, is found."""
    found = [
        (block, j)
        for block, _ in _candidates(new_chains, helpers, today)
        for j, stmt in enumerate(block.stmts)
        if stands_for(stmt)
    ]
    return Spot(*found[0]) if len(found) == 1 else None


def _tied_lines(scored: _Scored) -> list[int]:
    slots = [scored.choice.slot] if scored.choice.ok else list(scored.choice.tied)
    return [scored.block.insert_line(s) for s in slots if s is not None]
