"""``propagate``: place the new version's log statements into an old version of the same file."""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from florsql.errors import PropagateError
from florsql.propagate.align import choose_slot
from florsql.propagate.find import LogStatement, find_logs, logged_names
from florsql.propagate.helpers import Helpers, helpers_of
from florsql.propagate.insert import (
    Insertion,
    adjust_slot,
    at_line,
    indent_of,
    newline_of,
    render,
    slot_problem,
    splice,
    statement_code,
)
from florsql.propagate.match import Miss, Spot, locate
from florsql.propagate.model import Failure, Placement, Propagation
from florsql.propagate.rename import call_renames, infer_renames, loop_target_renames
from florsql.propagate.safety import Bindings, free_names
from florsql.propagate.slice import Uncarried, alignment, carried
from florsql.propagate.source import FLOR_MODULES, Block, SourceFile, analyze


@dataclass(frozen=True)
class _Plan:
    """One log statement's way into the old version: its slice, each with an old slot."""

    target: LogStatement
    spot: Spot
    stmts: tuple[ast.stmt, ...]  # carried statements, then the log statement
    slots: tuple[int, ...]
    renames: dict[str, str]  # new name -> old name, inferred from aligned assignments


@dataclass
class _Session:
    """One propagation call: both files and what is shared by its log statements."""

    new: SourceFile
    old: SourceFile
    skip: frozenset[int]  # ids of new statements that are not context (the ones being placed)
    bindings: Bindings = field(default_factory=Bindings)

    @cached_property
    def flor_import(self) -> Insertion | None:
        """The new file's ``import florsql as flor``, to add when the old file imports no flor
        module (a helper module that never logged before): placed after the docstring and
        ``from __future__`` imports."""
        if _imports_flor(self.old.tree) is not None:
            return None
        found = _imports_flor(self.new.tree)
        if found is None:
            return None
        line = _import_line(self.old.tree, len(self.old.lines))
        return Insertion(line, found + newline_of(self.old), (-1, -1))

    def added_alias(self, name: str) -> bool:
        """Whether ``name`` is bound by :attr:`flor_import`."""
        return self.flor_import is not None and name in self.new.aliases

    @property
    def new_helpers(self) -> Helpers:
        return helpers_of(self.new)

    @property
    def old_helpers(self) -> Helpers:
        return helpers_of(self.old)

    @cached_property
    def alias(self) -> dict[str, str]:
        """The flor alias of the new file mapped to the old file's, where they differ."""
        if len(self.old.aliases) != 1:
            return {}
        (alias,) = self.old.aliases
        return {a: alias for a in self.new.aliases if a not in self.old.aliases}

    def context(self, block: Block, index: int) -> tuple[list[str], list[str]]:
        """Normal forms of the neighbours before and after statement ``index``."""
        keep = [k for k, s in enumerate(block.stmts) if id(s) not in self.skip or k == index]
        before = [block.norms[k] for k in keep if k < index]
        after = [block.norms[k] for k in keep if k > index]
        return before, after


def propagate(new_source: str, old_source: str, names: Iterable[str] | None = None) -> Propagation:
    """Place the new version's ``flor.log`` statements that the old version lacks into it.

    Args:
        new_source: The latest text of the file.
        old_source: The text of the same file at an old version.
        names: Only these log names (default: every name the old version does not log).

    Returns:
        The patched old text, what was placed where, what failed and why.

    Raises:
        PropagateError: The new source does not parse.

    Example:
        >>> old = '''import florsql as flor
        ... for x in flor.loop("step", range(3)):
        ...     y = f(x)  # forward
        ... '''
        >>> new = old.replace("f(x)  # forward", "g(x)") + '    flor.log("y", y)\\n'
        >>> result = propagate(new, old)
        >>> print(result.source, end="")
        import florsql as flor
        for x in flor.loop("step", range(3)):
            y = f(x)  # forward
            flor.log("y", y)
        >>> result.placed[0].scope
        ("flor.loop('step')",)
    """
    try:
        new = analyze(new_source)
    except SyntaxError as e:
        raise PropagateError(f"the new version does not parse: {e}") from e
    logs = find_logs(new)
    wanted = None if names is None else list(dict.fromkeys(names))
    selected = [s for s in logs if wanted is None or s.name in wanted]
    failed = _unknown_names(wanted, logs) if wanted is not None else []
    try:
        old = analyze(old_source)
    except SyntaxError as e:
        reason = f"the old version does not parse (line {e.lineno}: {e.msg})"
        failed += [Failure(s.label, s.line, reason) for s in selected]
        return Propagation(old_source, old_source, failed=tuple(failed))
    have = logged_names(old)
    moving = [s for s in logs if s.name is None or s.name not in have]
    session = _Session(new, old, frozenset(id(s.stmt) for s in moving))
    plans = []
    for target in selected:
        outcome = _plan(target, session) if target.name not in have else None
        if isinstance(outcome, _Plan):
            plans.append(outcome)
        elif outcome is not None:
            failed.append(outcome)
    skipped = tuple(sorted({s.label for s in selected if s.name in have}))
    return _apply(session, plans, failed, skipped)


def _unknown_names(wanted: list[str], logs: list[LogStatement]) -> list[Failure]:
    known = sorted({s.name for s in logs if s.name is not None})
    failures = []
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            failures.append(Failure(name, 0, f"not logged in the new version{hint}"))
    return failures


def _plan(target: LogStatement, session: _Session) -> _Plan | Failure:
    if target.name is None:
        return Failure(target.label, target.line, "the log name is not a string literal")
    before, after = session.context(target.block, target.index)
    chains = session.new_helpers.variants(target.block)
    spot = locate(chains, before, after, session.old_helpers)
    if isinstance(spot, Miss):
        return Failure(target.label, target.line, spot.reason)
    slot = adjust_slot(spot.block, spot.slot)
    pairs = alignment(target.block, spot.block, session.skip)
    try:
        slice_idx = carried(
            target.block,
            target.index,
            spot.block,
            session.old.text,
            session.skip,
            pairs,
            session.new.text,
        )
    except Uncarried as why:
        return Failure(target.label, target.line, str(why))
    slots = (*_slice_slots(target.block, slice_idx, spot.block, slot, session), slot)
    stmts = (*(target.block.stmts[k] for k in slice_idx), target.stmt)
    for s in sorted(set(slots)):
        problem = slot_problem(session.old, spot.block, s)
        if problem:
            return Failure(target.label, target.line, problem)
    codes = tuple(statement_code(session.new, s) for s in stmts)
    read = list(dict.fromkeys(n for names in free_names(codes) for n in names))
    # what binds a name where today's statement reads it decides what it stands for in the old
    # version, even where the old version binds that name too (to something else, maybe)
    renames = infer_renames(target.block, target.index, spot.block, pairs, read)
    looped, problems = loop_target_renames(
        target.block,
        target.stmt.lineno,
        spot.block,
        spot.block.insert_line(slot),
        [n for n in read if n not in renames],
        session.bindings,
    )
    if problems:
        return Failure(target.label, target.line, next(iter(problems.values())))
    renames.update(looped)
    missing = _unbound(stmts, slots, spot.block, target.block, session, renames)
    if missing:
        renames.update(_call_renames(spot.block, missing, session))
        missing = _unbound(stmts, slots, spot.block, target.block, session, renames)
    if missing:
        reason = f"unbound name {missing[0].name!r} {at_line(missing[0].line)}"
        return Failure(target.label, target.line, reason)
    clash = _clash(read, renames)
    if clash:
        return Failure(target.label, target.line, clash)
    return _Plan(target, Spot(spot.block, slot), stmts, slots, renames)


def _slice_slots(
    block: Block, indices: list[int], old: Block, last: int, session: _Session
) -> tuple[int, ...]:
    """Old slots for the carried statements: their own context, never after the log statement."""
    slots: list[int] = []
    for k in indices:
        choice = choose_slot(*session.context(block, k), old.norms)
        slot = adjust_slot(old, choice.slot) if choice.slot is not None else last
        slots.append(min(max(slot, slots[-1] if slots else 0), last))
    return tuple(slots)


def _clash(read: list[str], renames: dict[str, str]) -> str | None:
    """Two names read that would become one old name (``i`` renamed to ``j`` while ``j`` is
    read too, as another value): the statement cannot be written in the old version."""
    seen: dict[str, str] = {}
    for name in read:
        old = renames.get(name, name)
        if old in seen:
            a, b = sorted((seen[old], name))
            return f"{a!r} and {b!r} would both be {old!r} in the old version (renamed)"
        seen[old] = name
    return None


def _call_renames(old: Block, missing: list[_Unbound], session: _Session) -> dict[str, str]:
    """Old names for the unbound ones from a helper's single call site."""
    helper = session.old_helpers.enclosing_call(old)
    if helper is None:
        return {}
    return call_renames(helper[0], helper[1], [m.name for m in missing])


@dataclass(frozen=True)
class _Unbound:
    name: str  # as the new version calls it
    line: int


def _unbound(
    stmts: tuple[ast.stmt, ...],
    slots: tuple[int, ...],
    block: Block,
    new_block: Block,
    session: _Session,
    renames: dict[str, str],
) -> list[_Unbound]:
    """The names read that are not bound where they would be read (after ``renames``). A name
    the old loop binds only later in its body counts as bound (from the previous iteration)
    only where today's statement reads it so too: unbound before it in the new version
    (``flor.log("prev", loss if epoch > 0 else None)`` above the step loop), never where the
    new version binds it first in the same iteration (that value is this iteration's)."""
    codes = tuple(statement_code(session.new, s) for s in stmts)
    missing = []
    for names, slot, stmt in zip(free_names(codes), slots, stmts, strict=True):
        line = block.insert_line(slot)
        for name in names:
            old_name = renames.get(name, session.alias.get(name, name))
            if session.added_alias(old_name):
                continue
            if session.bindings.is_bound(block, line, old_name):
                continue
            carried = session.bindings.is_bound(
                block, line, old_name, carried=True
            ) and not session.bindings.is_bound(new_block, stmt.lineno, name)
            if not carried:
                missing.append(_Unbound(name, line))
    return missing


def _apply(
    session: _Session, plans: list[_Plan], failed: list[Failure], skipped: tuple[str, ...]
) -> Propagation:
    old, insertions, seen = session.old, [], set()
    for plan in plans:
        indent = indent_of(old, plan.spot.block)
        for stmt, slot in zip(plan.stmts, plan.slots, strict=True):
            if _order(stmt) in seen:  # a statement carried by two log statements goes in once
                continue
            seen.add(_order(stmt))
            code = statement_code(session.new, stmt)
            text = render(code, indent, newline_of(old), {**session.alias, **plan.renames})
            insertions.append(Insertion(plan.spot.block.insert_line(slot), text, _order(stmt)))
    if insertions and session.flor_import is not None:
        insertions.append(session.flor_import)
    patched, lines = splice(old, insertions)
    placed = [
        Placement(
            name=plan.target.label,
            new_line=plan.target.line,
            old_line=lines[_order(plan.target.stmt)],
            scope=tuple(f.label for f in plan.spot.block.chain),
            carried=tuple(statement_code(session.new, s) for s in plan.stmts[:-1]),
            renamed=dict(sorted(plan.renames.items())),
        )
        for plan in plans
    ]
    return Propagation(old.text, patched, tuple(placed), tuple(failed), skipped)


def _imports_flor(tree: ast.Module) -> str | None:
    """The top-level ``import florsql [as flor]`` of a file, as code, if it has one."""
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in FLOR_MODULES:
                    return f"import {a.name}" + (f" as {a.asname}" if a.asname else "")
    return None


def _import_line(tree: ast.Module, n_lines: int) -> int:
    """The 1-based line before which an import goes: after a docstring and ``__future__``."""
    after = 0
    for k, node in enumerate(tree.body):
        docstring = (
            k == 0
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        if not (docstring or future):
            return node.lineno
        after = node.end_lineno or node.lineno
    return min(after + 1, n_lines + 1)


def _order(stmt: ast.stmt) -> tuple[int, int]:
    return (stmt.lineno, stmt.col_offset)
