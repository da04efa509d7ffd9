"""Caching propagation results: an in-process LRU, optionally backed by JSON files on disk.

A result is a function of the old text and of the new version's log statements with what
surrounds them (their code, the statements that may travel with them, scope chains and
blocks): :func:`statements_key` hashes the latter, so an unrelated edit elsewhere in the latest
file keeps the cache warm.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from florsql.propagate.find import find_logs
from florsql.propagate.helpers import helpers_of
from florsql.propagate.model import Propagation
from florsql.propagate.slice import may_carry
from florsql.propagate.source import Block, SourceFile, analyze

#: Bump when a change to propagation changes its results: old cache entries stop matching.
#: 8 (session 29): an old statement today's code dropped or moved, between today's neighbours,
#: that changes what the statement reads (``sched.step()``) refuses the place (was: placed
#: before it, silently).
#: 9 (session 29): a name the old version threw away (``l, _, out = step()``) read by
#: today's statement is bound by replacing that line (``l, gn, out = step()``; in the same block
#: it was renamed to ``_``, elsewhere refused); a name today's code assigns where the old
#: version logged the same value (``acc = EXPR`` for ``flor.log("acc", EXPR)``) is bound by
#: that old line (``acc = flor.log("acc", EXPR)``; was refused, or ``EXPR`` ran twice).
#: 10 (session 29): an old name bound again elsewhere is a rename, not a value thrown away.
#: 11 (session 29): a name renamed between versions and bound in a nested block both have
#: (``loss`` was ``batch_loss`` in the step loop), read after it, is renamed by the whole scope's
#: evidence (``rename.scope_rename``; was refused: "... in a shape the old block does not have").
#: 12 (session 30): carried stores into an old object (``opt.param_groups[0]["lr"] *= 0.5``)
#: are refused; a carried change of a module-level name in the log statement's own function is
#: no longer refused as out of reach; a mode switch today's code added before the statement
#: (``net.eval()``) travels with a statement that runs that module, between
#: ``flor._save_modes`` and ``flor._restore_modes``.
#: 13 (session 30): the mode switch is looked for in every block around the statement (up to its
#: function), through an alias, a loop over ``net.modules()`` and ``net.apply``; a loop over
#: parts of today's object changing them in place (``for pe, pn in zip(ema.parameters(),
#: net.parameters()): pe.mul_(d)``) travels with a statement reading that object.
#: 14 (session 30): a statement inside a helper today's code calls from a loop goes where the
#: helper is called, or is refused (``api._off_its_call``).
#: 15 (session 30): carried code that changes training state by other routes is refused: a
#: learning-rate scheduler made today on an old optimizer, a helper defined today that changes
#: its argument, ``clip_grad_norm_`` through a list of old parameters, a mutating method used
#: for its value (``net2 = net.apply(init)``), a helper that leaves its argument in evaluation
#: mode; ``setattr`` is a store.
#: 16 (session 31): a method called on a name reads all of it (``p.sum()`` needs today's
#: ``p.data.mul_(0.5)``, which travels, and is refused where ``p`` is part of an old object).
#: 17 (session 31): a name the old version's own code computes running a module that today's
#: code switches to another mode before it refuses the statement reading it (``slice._same_modes``).
#: 18 (session 33): a placement keeps the lines of each piece put into the old file
#: (``Placement.pieces``), where a replay puts the RNG guard (``model.guarded``); an item's
#: ``old_line`` no longer counts the ``flor._save_modes`` lines before it.
#: 19 (session 34): a piece standing in an old statement's place (a twin: ``y = flor.log("y",
#: net(x))`` where the run had ``y = net(x)``) is not among ``pieces``: its RNG draws are the
#: run's own (was guarded: a false ``StatementDrawWarning`` through a dropout model).
#: 20 (session 39): a carried ``def`` or ``class`` keeps its decorators (a ``@torch.no_grad()``
#: helper computed with grad, an ``@functools.lru_cache`` one ran every call, silently); a
#: carried binding the old version has at another place is refused; today's ``import math``
#: reads the old ``import math as m``; a name today's file imports as another module than
#: the old file is refused.
#: 21 (session 39): that refusal reads renamed names too (``b = (b * b) % 97`` carried as
#: ``b_old = ...`` beside the old ``b_old = (b_old * b_old) % 97`` ran it twice, silently).
#: 22 (session 45): a statement alone in a block goes after an old placeholder (``def
#: report(): pass``); a ``flor.log`` inside a ``lambda`` is no statement to place.
#: 23 (session 46): a statement of today's helper that nothing in the old version matches
#: goes where today's code calls the helper, its parameters read as the call's arguments
#: (``def report(m): flor.log("wn", ...)`` called in the epoch loop: "no context" before).
#: 24 (session 46): inside a function carried code defines, a parameter named like an old
#: object is the parameter (``def evaluate(net, ...): net.eval()``: refused before).
#: 24 (session 46) also: a name bound nowhere else is bound by ``from X import *``.
#: 25 (session 47, sweep L): two old statements that change what the statement reads, on the
#: same side of its place, in the order today's code swapped, refuse the place (an old
#: ``opt.step(); opt.zero_grad(...)`` where today's code zeroes at the top of the step read
#: zeros, silently); a call statement today's code edited the arguments of counts as its
#: counterpart by the function it calls; a place inside an old function whose parameter or
#: local hides a module name the statement reads is refused (the batch for the full set,
#: silently); a rebinding of a name the old code assigns again (in a block) before reading it
#: is placed (was refused).
#: 28 (session 53): a statement placed again (a run lacks its name in some iterations) under
#: other conditions than the old one of its name (``if epoch % 3 == 0:`` today, ``% 2`` old)
#: goes in with its guard beside the old branch; it went into the old branch before, logging
#: again what the run recorded, and the iterations it was asked for stayed NULL, covered.
#: 29 (session 54): conditions see methods called by name, ``no_grad``-style decorators,
#: parameter and argparse defaults and binding chains 10 deep: such a statement under a
#: changed guard is no longer taken for today's as it is (refused with the reason, or placed).
#: 30 (session 55): conditions see an early ``return`` in a helper's body, the module a
#: guard's name is imported from, methods called only from other files; a call's own
#: function text no longer binds a parameter (a new log in the helper changed the others').
#: 31 (sessions 58-60): new code changing in place what the old version holds before the
#: statement travels or is refused (``slice.call_changes``); what the old code renews is read
#: from the old statements (a tail append was left behind, silently); an attribute today's code
#: changes inside another function (``self.opt_steps += 1`` in ``train_step``) refuses the
#: statement (it read the old value, silently); a guard's function text leaves out log calls;
#: what follows the statement in a branch inside a loop, and the block's other branches, travel;
#: a call of an old function that changes its argument or a module-level name, and a change by
#: today's module-level code of a name a function's statement reads, refuse the statement.
#: 32 (session 61): a ``pass`` anchors little; an old ``with`` unwrapped since pairs with no
#: new one; a slot never crosses a neighbour both versions have; a name a statement would make
#: a local of an old helper refuses it; a place in an old helper past the call's neighbours
#: goes to the calling block; a tie across inert statements only (``print``) is no ambiguity;
#: an edited set-up of an attribute the old version changes in the same function is its own
#: (placed where it was refused).
#: 33 (session 62): a function's changes are read with the file's imports (an old helper's
#: ``np.copyto(buf, ...)`` or ``random.shuffle(data)`` changes ``buf``/``data``: a carried call
#: of it is refused, where it was placed and changed the old run, silently).
CACHE_VERSION = "33"
#: Bumped where propagation places what it refused before and nothing placed before moves (a
#: statement's values stand as they were, so its fingerprint, which holds CACHE_VERSION, stays):
#: only cached results change. 1 (session 47): old lines of statements joined by ';' are split.
RESULTS_VERSION = "1"


def digest(*parts: str) -> str:
    """A hex SHA-256 of the parts, each length-prefixed so that no two splits collide."""
    h = hashlib.sha256()
    for part in parts:
        try:
            data = part.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate in a literal ("\ud800"): before s37 every
            # query of the repository failed scanning the script that held it
            data = part.encode("utf-8", "surrogatepass")
        h.update(f"{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


def statements_key(new_source: str, names: Iterable[str] | None = None) -> str:
    """Hash of everything in ``new_source`` that propagation reads (for the given names)."""
    return _statements_key(new_source, None if names is None else tuple(sorted(set(names))))


@lru_cache(maxsize=64)
def _statements_key(new_source: str, names: tuple[str, ...] | None) -> str:
    try:
        new = analyze(new_source)
    except SyntaxError:
        return digest("unparsable", new_source)
    helpers = helpers_of(new)
    parts = [CACHE_VERSION, RESULTS_VERSION, repr(names), repr(sorted(new.aliases))]
    logs = find_logs(new)
    placed = frozenset(id(s.stmt) for s in logs)
    for log in logs:
        chains = [" > ".join(f"{f.kind}:{f.key}" for f in c) for c in helpers.variants(log.block)]
        parts += [log.label, str(log.index), *chains, *log.block.norms]
        parts += [new.lines[n - 1] for n in range(log.line, (log.stmt.end_lineno or log.line) + 1)]
        # The statements that may travel with it, exactly: normal forms hide their constants.
        carry = may_carry(log.block, log.index, placed, new)
        parts += [ast.dump(s) for s in carry]
        parts += nested_context(new, log.block, carry)
    return digest(*parts)


def nested_context(src: SourceFile, block: Block, carry: list[ast.stmt]) -> list[str]:
    """The normal forms of the blocks inside ``block``'s statements that hold statements of
    ``carry`` (an update inside the step loop travels by its neighbours there). The blocks
    around ``block`` are left out: a statement carried up there goes where the names it shares
    with old code put it, and an unrelated edit up there (a ``print`` at the top of the
    script) must not replay every statement below it."""
    around: set[int] = set()
    up = block
    while id(up) in src.parents:
        up = src.parents[id(up)][0]
        around.add(id(up))
    homes: dict[int, Block] = {}
    for stmt in carry:
        home = src.home(stmt)[0]
        if home is not block and id(home) not in around:
            homes.setdefault(id(home), home)
    return [n for home in homes.values() for n in ("nested", *home.norms)]


class PropagationCache:
    """LRU of :class:`Propagation` results by key, with an optional on-disk layer.

    Files are written whole to a temporary name and renamed, so a reader never sees half a file
    and concurrent writers of the same key do no harm.
    """

    def __init__(self, directory: Path | None = None, size: int = 1024) -> None:
        self.directory = directory
        self.size = size
        self._memory: OrderedDict[str, Propagation] = OrderedDict()

    def get(self, key: str) -> Propagation | None:
        """The cached result for ``key``, from memory, else from disk."""
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        value = self._load(key)
        if value is not None:
            self._remember(key, value)
        return value

    def put(self, key: str, value: Propagation) -> None:
        """Cache ``value`` under ``key``, in memory and (when set up) on disk."""
        self._remember(key, value)
        if self.directory is not None:
            self._store(key, value)

    def _remember(self, key: str, value: Propagation) -> None:
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self.size:
            self._memory.popitem(last=False)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.json"

    def _load(self, key: str) -> Propagation | None:
        if self.directory is None:
            return None
        try:
            return Propagation.from_json(json.loads(self._path(key).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: recompute

    def _store(self, key: str, value: Propagation) -> None:
        assert self.directory is not None
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(value.to_json(), f)
            os.replace(tmp, self._path(key))
            tmp = None
        except OSError:
            pass  # a cache that cannot be written only costs time
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
