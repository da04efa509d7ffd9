"""Context alignment: where in an old block does a new statement go?

The new statement's neighbours in its block (up to :data:`WINDOW` on each side, nearest weighing
most) are aligned against the old block's statements. For each slot ``j`` (insert before old
statement ``j``), ``score(j)`` is the best monotone alignment of the predecessors with
``old[:j]`` plus that of the successors with ``old[j:]``. The best slot wins; when several tie,
the one right after the statement matching the nearest predecessor wins (else right before the
one matching the nearest successor); two such anchors are an ambiguity, never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from florsql.propagate.normalize import similarity

WINDOW = 6
DECAY = 0.8
EPS = 1e-9

#: statements that do nothing (``pass``, ``...``) anchor little: a ``pass`` moved since is no
#: evidence of where the code around it went (session 61, found by
#: tests/test_propagate_differential_edits_s60.py: today's ``pass`` at the top of the epoch body,
#: the old one after the step loop, put today's statements after the old step loop)
_EMPTY = frozenset({"pass", "..."})
_EMPTY_WEIGHT = 0.1


def _anchor_similarity(a: str, b: str) -> float:
    """:func:`similarity` of a context statement and an old one, as evidence of a slot."""
    sim = similarity(a, b)
    return sim * _EMPTY_WEIGHT if sim and a in _EMPTY else sim


@dataclass(frozen=True)
class SlotChoice:
    """The outcome in one block: a slot, or the tied slots of an ambiguity, or no context."""

    slot: int | None
    score: float
    tied: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        """A single slot was found."""
        return self.slot is not None


def _prefix_scores(
    context: Sequence[str], weights: Sequence[float], old: Sequence[str]
) -> list[float]:
    """``out[j]``: best weighted alignment of ``context`` (in order) with ``old[:j]``."""
    previous = [0.0] * (len(old) + 1)
    for a, item in enumerate(context):
        current = [0.0] * (len(old) + 1)
        for b, other in enumerate(old, start=1):
            best = max(previous[b], current[b - 1])
            sim = _anchor_similarity(item, other)
            if sim:
                best = max(best, previous[b - 1] + weights[a] * sim)
            current[b] = best
        previous = current
    return previous


def slot_scores(before: Sequence[str], after: Sequence[str], old: Sequence[str]) -> list[float]:
    """Score of every slot ``0..len(old)`` for a statement between ``before`` and ``after``."""
    before, after = before[-WINDOW:], after[:WINDOW]
    w_before = [DECAY ** (len(before) - 1 - i) for i in range(len(before))]
    w_after = [DECAY**i for i in range(len(after))]
    head = _prefix_scores(before, w_before, old)
    tail = _prefix_scores(after[::-1], w_after[::-1], old[::-1])[::-1]
    return [h + t for h, t in zip(head, tail, strict=True)]


def _nearest_matched(context: Sequence[str], old: Sequence[str]) -> str | None:
    return next((c for c in context if any(similarity(c, o) for o in old)), None)


def choose_slot(before: Sequence[str], after: Sequence[str], old: Sequence[str]) -> SlotChoice:
    """The slot for a statement between ``before`` and ``after`` in a block now ``old``.

    Example:
        >>> choose_slot(["a = f()", "b = g(a)"], ["c = h(b)"], ["a = f()", "x = 1", "c = h(b)"])
        SlotChoice(slot=1, score=1.8, tied=())
    """
    scores = slot_scores(before, after, old)
    best = max(scores)
    if best <= EPS:
        return SlotChoice(None, 0.0)
    tied = [j for j, s in enumerate(scores) if s >= best - EPS]
    if len(tied) == 1:
        return SlotChoice(tied[0], best)
    pred = _nearest_matched(before[::-1], old)
    succ = _nearest_matched(after, old)
    for anchor, offset in ((pred, -1), (succ, 0)):
        if anchor is None:
            continue
        sims = {j: similarity(anchor, old[j + offset]) for j in tied if 0 <= j + offset < len(old)}
        top = max(sims.values(), default=0.0)
        anchored = [j for j, sim in sims.items() if top and sim >= top - EPS]
        if len(anchored) == 1:
            return SlotChoice(anchored[0], best)
        if anchored:
            return SlotChoice(None, best, tuple(anchored))
    return SlotChoice(None, best, tuple(tied))


#: What a pair of statements spelled alike (literals too) adds to their similarity: it only
#: breaks ties between statements alike but for literals (their norms are equal).
_VERBATIM = 1e-6


def align_pairs(
    new: Sequence[str],
    old: Sequence[str],
    exact: tuple[Sequence[object], Sequence[object]] | None = None,
) -> dict[int, int]:
    """The best monotone one-to-one alignment of two blocks: new index -> old index.

    ``exact``: per statement of each block, a key equal where the two are spelled alike,
    literals included; among alignments equally good by the norms, the one pairing more such
    statements wins (session 57, sweep AI: today's new ``if epoch % 3 == 0:`` block after the
    old ``if epoch % 2 == 0:`` one took the old one's place, being last, and was refused as
    "the old version has the block around it elsewhere").

    Example:
        >>> align_pairs(["a = 1", "b = f(a)", "main()"], ["a = 2", "x = g()", "r = main()"])
        {2: 2, 0: 0}
        >>> n = ["if x % N == N", "if x % N == N"]
        >>> align_pairs(n, n[:1]), align_pairs(n, n[:1], (["% 2", "% 3"], ["% 2"]))
        ({1: 0}, {0: 0})
    """

    def score(i: int, j: int) -> float:
        sim = _anchor_similarity(new[i], old[j])
        if sim and exact is not None and exact[0][i] == exact[1][j]:
            sim += _VERBATIM
        return sim

    table = [[0.0] * (len(old) + 1) for _ in range(len(new) + 1)]
    for i in range(1, len(new) + 1):
        for j in range(1, len(old) + 1):
            best = max(table[i - 1][j], table[i][j - 1])
            sim = score(i - 1, j - 1)
            table[i][j] = max(best, table[i - 1][j - 1] + sim) if sim else best
    pairs: dict[int, int] = {}
    i, j = len(new), len(old)
    while i and j:
        sim = score(i - 1, j - 1)
        if sim and abs(table[i][j] - table[i - 1][j - 1] - sim) < EPS:
            pairs[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif abs(table[i][j] - table[i - 1][j]) < EPS:
            i -= 1
        else:
            j -= 1
    return pairs
