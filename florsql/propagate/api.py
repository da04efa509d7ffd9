"""``propagate``: place the new version's log statements into an old version of the same file."""

from __future__ import annotations

import ast
import copy
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property

from florsql.errors import PropagateError
from florsql.propagate.align import choose_slot
from florsql.propagate.conditions import (
    conditions_in,
    known,
    leaves_early,
    named,
    outermost_function,
    skip_label,
)
from florsql.propagate.find import LogStatement, find_logs, logged_names
from florsql.propagate.helpers import Helpers, helpers_of
from florsql.propagate.insert import (
    JOINED,
    Insertion,
    adjust_slot,
    at_line,
    head,
    indent_of,
    newline_of,
    render,
    slot_problem,
    splice,
    split_joined,
    standalone,
    statement_code,
)
from florsql.propagate.match import Miss, Spot, inert_tie, locate, locate_twin, match_chains
from florsql.propagate.model import Failure, Placement, Propagation
from florsql.propagate.normalize import is_compound, normalize, strip_literals
from florsql.propagate.rename import (
    binding_counterpart,
    call_renames,
    infer_renames,
    loop_target_renames,
    scope_rename,
)
from florsql.propagate.safety import _BUILTINS, Bindings, free_names
from florsql.propagate.slice import (
    BRANCHING,
    OUTPUT_METHODS,
    Nested,
    Uncarried,
    alignment,
    assigned,
    carried,
    changes,
    filled_discards,
    loop_parts,
    main_guard,
    mode_reason,
    mode_receiver,
    reads,
    setattr_target,
    switches_to_eval,
    to_training,
)
from florsql.propagate.source import FLOR_MODULES, Block, SourceFile, _gc_paused, analyze
from florsql.propagate.source import walk as ast_nodes


@dataclass(frozen=True)
class _Item:
    """One statement that travels: from ``new`` (a block of the new file) into ``old`` at
    ``slot``."""

    stmt: ast.stmt
    new: Block
    old: Block
    slot: int
    twin: ast.stmt | None = None  # the old statement it replaces there (_twin), at ``slot``
    #: where ``twin`` is an old log statement of the value ``stmt`` assigns (``flor.log("acc",
    #: v)`` for ``acc = v``): the target, put before the old line instead of ``stmt``
    bind: ast.expr | None = None
    #: the modules whose mode ``stmt`` switches (``net`` for ``net.eval()``, or for a new ``if``
    #: that travels whole with ``net.eval()`` inside): their modes are saved before it and
    #: restored after the log statement
    modes: tuple[ast.expr, ...] = ()


@dataclass(frozen=True)
class _Plan:
    """One log statement's way into the old version: its slice, each with an old slot."""

    target: LogStatement
    spot: Spot
    items: tuple[_Item, ...]  # carried statements in source order, then the log statement
    renames: dict[str, str]  # new name -> old name, inferred from aligned assignments
    log: ast.stmt  # the log statement (inside the last item, where that is a new block)
    #: names read through :attr:`_Session.widened_imports` (each import added once)
    imports: tuple[str, ...] = ()


@dataclass
class _Session:
    """One propagation call: both files and what is shared by its log statements."""

    new: SourceFile
    old: SourceFile
    skip: frozenset[int]  # ids of new statements that are not context (the ones being placed)
    #: names placed where the old version logs them (:func:`propagate`'s ``again``)
    again: frozenset[str] = frozenset()
    bindings: Bindings = field(default_factory=Bindings)
    _scope_names: dict[int, frozenset[str]] = field(default_factory=dict)
    _aligned: dict[tuple[int, int], dict[int, int]] = field(default_factory=dict)
    _renamed: dict[tuple[int, int, str], str | None] = field(default_factory=dict)
    _argument_changers: dict[int, str | None] = field(default_factory=dict)

    @cached_property
    def old_changers(self) -> dict[str, str]:
        """The old file's module-level functions that change what they are given, each with
        how (``def tick(s): s.n += 1``): travelling code that calls one with an old object
        changes that object, as a function today's code defines does (until session 60 today's
        ``h = tick(st)`` was carried, and the old run's own ``st.n`` counted the extra calls:
        tests/test_propagate_differential_s60.py). Keyed by the function's name; one that
        changes a module-level name (``def record(v): hist.append(v)``: any call changes it)
        also as ``name()`` (:func:`_changes_old`). Whole: :class:`_Changers` asks
        :meth:`old_changer` for the names travelling code calls only (this, for every function
        of the old file, was three quarters of propagating into a version)."""
        names = {
            node.name
            for node in self.old.tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        out = {}
        for key in sorted(names) + sorted(f"{n}()" for n in names):
            how = self.old_changer(key)
            if how is not None:
                out[key] = how
        return out

    @cached_property
    def _old_functions(self) -> dict[str, list[int]]:
        """The positions in the old module's body of its functions, by name."""
        out: dict[str, list[int]] = {}
        for k, node in enumerate(self.old.tree.body):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.setdefault(node.name, []).append(k)
        return out

    def old_changer(self, key: str, before: int | None = None) -> str | None:
        """:attr:`old_changers`' entry for ``key``, as seen from the old module's statement at
        ``before`` (None: after the module's end): the last function of that name defined
        before it that changes its argument, with how; for ``name()``, where ``before`` is
        None, the first change of a module-level name a function ``name`` makes."""
        if key.endswith("()"):
            name = key[:-2]
            if before is not None or name not in self._old_functions:
                return None
            return self._old_global_changer(name)
        found = None
        for k in self._old_functions.get(key, ()):
            if before is not None and k >= before:
                break
            how = self._old_argument_changer(k)
            if how is not None:
                found = how
        return found

    def _old_argument_changer(self, k: int) -> str | None:
        known = self._argument_changers
        if k not in known:
            node = self.old.tree.body[k]
            assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            how = _changes_arguments(node, self, _Changers(self, before=k), modes=False)
            known[k] = None
            if how:
                known[k] = f"the old version's {node.name}() changes its argument, {how}"
        return known[k]

    def _old_global_changer(self, fn_name: str) -> str | None:
        from florsql.propagate.slice import function_global_changes

        modules = self.old.imported
        for node in self.old.nodes:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name != fn_name:
                continue
            for name, _, stmt in function_global_changes(node, None, modules):
                if isinstance(stmt, ast.Expr) and mode_receiver(stmt) is not None:
                    continue  # a mode switch (``net.eval()``): the mode rules judge its calls
                if name in modules or name in self.old.aliases:
                    continue  # a module's function (``flor.log``, ``random.shuffle``: draws
                    # have their own rule)
                line = ast.unparse(stmt).splitlines()[0]
                return f"{name!r} (the old version's {fn_name}() changes it, {line!r})"
        return None

    @cached_property
    def old_holds(self) -> dict[str, frozenset[str]]:
        """For each name the old file binds to a call's result, the names given to that call
        (``sched = StepLR(opt, 1)``: ``sched`` holds ``opt``): a change in place of the object
        may change those (``sched.step()`` sets ``opt.param_groups[0]["lr"]``, ``opt.step()``
        the parameters of ``net``). One level only: ``sched.step()`` changes no weight of the
        ``net`` that ``opt`` was made from. Names of modules are left out."""
        made: dict[str, set[str]] = {}
        modules = self.old.imported
        for node in self.old.nodes:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if not isinstance(target, ast.Name) or not isinstance(value, ast.Call):
                continue
            args = [*value.args, *(k.value for k in value.keywords)]
            made.setdefault(target.id, set()).update(
                n.id
                for a in args
                for n in ast_nodes(a)
                if isinstance(n, ast.Name) and n.id not in modules and n.id != target.id
            )
        return {name: frozenset(names) for name, names in made.items()}

    def changed(self, stmt: ast.stmt) -> frozenset[str]:
        """:func:`_changed_in_place` of an old statement, with what those objects hold
        (:attr:`old_holds`)."""
        direct = _changed_in_place(stmt, self.old.imported)
        held = [self.old_holds.get(n, frozenset()) for n in direct]
        return direct.union(*held)

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

    def align(self, new: Block, old: Block) -> dict[int, int]:
        """:func:`alignment` of two blocks, computed once per call of :func:`propagate`."""
        key = (id(new), id(old))
        if key not in self._aligned:
            self._aligned[key] = alignment(new, old, self.skip)
        return self._aligned[key]

    def scope_rename(self, new: Block, old: Block, name: str) -> str | None:
        """:func:`florsql.propagate.rename.scope_rename`, once per call of :func:`propagate`."""
        key = (id(new), id(old), name)
        if key not in self._renamed:
            files = (self.new, self.old)
            self._renamed[key] = scope_rename(files, (new, old), name, self.align)
        return self._renamed[key]

    def new_scope_names(self, block: Block) -> frozenset[str]:
        """Every name today's file binds in ``block``'s scope or the scopes around it."""
        key = id(block.scopes[-1])
        if key not in self._scope_names:
            names: set[str] = set()
            for scope in block.scopes:
                names |= set(self.bindings.names_of(scope))
            self._scope_names[key] = frozenset(names)
        return self._scope_names[key]

    @cached_property
    def widened_imports(self) -> dict[str, Insertion]:
        """Names an import of today's file binds that its counterpart in the old file (an
        import of the same module there, in the module's body or in the body of the function
        of the same name) does not, each as its own import to put right after that old
        statement: ``from utils import LR, new_fn`` today, ``from utils import LR`` in the old
        file (sweep M: "unbound name 'new_fn'"; on a line of its own today's import
        travelled); ``import os, json as js`` inside ``def main()`` (session 49). Keyed by the
        name for the module's body, by ``function\0name`` for a function's
        (:meth:`widening`). Only names the old scope binds nowhere; a star import never."""
        out: dict[str, Insertion] = {}
        bodies: list[tuple[str, list[ast.stmt], list[ast.stmt], ast.AST]] = [
            ("", self.new.tree.body, self.old.tree.body, self.old.tree)
        ]
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
        old_fns: dict[str, list[ast.stmt]] = {}
        for d in self.old.tree.body:
            if isinstance(d, kinds):
                old_fns.setdefault(d.name, []).append(d)
        for d in self.new.tree.body:
            if isinstance(d, kinds) and len(old_fns.get(d.name, ())) == 1:
                (twin_fn,) = old_fns[d.name]
                assert isinstance(twin_fn, kinds)
                bodies.append((d.name + "\0", d.body, twin_fn.body, twin_fn))
        nl = newline_of(self.old)
        for prefix, new_body, old_body, scope in bodies:
            olds = [s for s in old_body if isinstance(s, ast.Import | ast.ImportFrom)]
            for stmt in new_body:
                if not isinstance(stmt, ast.Import | ast.ImportFrom):
                    continue
                twin = next((o for o in olds if _same_import(stmt, o)), None)
                if twin is None:
                    continue
                if isinstance(stmt, ast.ImportFrom):
                    head = f"from {'.' * stmt.level}{stmt.module or ''} import "
                else:
                    head = "import "
                indent = self.old.lines[twin.lineno - 1][: twin.col_offset]
                for a in stmt.names:
                    bound = a.asname or a.name.split(".")[0]
                    key = prefix + bound
                    if a.name == "*" or key in out or _binds_in(self.old, scope, bound):
                        continue
                    code = indent + head + a.name + (f" as {a.asname}" if a.asname else "")
                    line = (twin.end_lineno or twin.lineno) + 1
                    order = (twin.lineno, len(out) - (1 << 20))
                    out[key] = Insertion(line, code + nl, order)
        return out

    def widening(self, name: str, scopes: tuple[ast.AST, ...]) -> str | None:
        """The key in :attr:`widened_imports` of the import that binds ``name`` for old code
        in ``scopes`` (the module, then each enclosing def/class), or None."""
        if len(scopes) > 1 and isinstance(scopes[1], ast.FunctionDef | ast.AsyncFunctionDef):
            key = scopes[1].name + "\0" + name
            if key in self.widened_imports and not _binds_module_level(self.old, name):
                return key
        return name if name in self.widened_imports else None

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

    def context(
        self, block: Block, index: int, travelling: frozenset[int] = frozenset()
    ) -> tuple[list[str], list[str]]:
        """Normal forms of the neighbours before and after statement ``index``, leaving out the
        log statements being placed and the ``travelling`` statements (ids): new code anchors
        nothing in the old version (``h += (a + a) % 97`` reads like ``a = (a + a) % 97``)."""
        keep = [
            k
            for k, s in enumerate(block.stmts)
            if (id(s) not in self.skip and id(s) not in travelling) or k == index
        ]
        before = [block.norms[k] for k in keep if k < index]
        after = [block.norms[k] for k in keep if k > index]
        return before, after


def propagate(
    new_source: str,
    old_source: str,
    names: Iterable[str] | None = None,
    again: Iterable[str] = (),
) -> Propagation:
    """Place the new version's ``flor.log`` statements that the old version lacks into it.

    Args:
        new_source: The latest text of the file.
        old_source: The text of the same file at an old version.
        names: Only these log names (default: every name the old version does not log).
        again: Names placed even where the old version logs them (a replay computing values a
            run never recorded: the old statement sat in a branch the run did not take, ``if
            do_eval:``, where today's statement has none), unless today's statement is there
            as it is, in the block it belongs in: that one the run did not reach either.

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
    with _gc_paused():  # the trees' many objects make collections, not the work, the cost
        forced = frozenset(again)
        result = _propagate(new_source, old_source, names, forced)
        if any(JOINED in f.reason for f in result.failed):
            # an old line of statements joined by ';' where one must go between them: placed
            # into the old text with those lines split (session 47; refused before)
            split = split_joined(old_source)
            joined = _propagate(new_source, split, names, forced) if split is not None else None
            if joined is not None and len(joined.placed) > len(result.placed):
                return replace(joined, original=old_source)
        return result


def _propagate(
    new_source: str, old_source: str, names: Iterable[str] | None, again: frozenset[str]
) -> Propagation:
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
    logged = logged_names(old)
    have = logged - again
    moving = [s for s in logs if s.name is None or s.name not in have]
    session = _Session(new, old, frozenset(id(s.stmt) for s in moving), again & logged)
    plans = []
    skipped = {s.label for s in selected if s.name in have}
    present: set[str] = set()
    for target in selected:
        if target.name in have:
            continue
        if target.name in logged and _present(target, session):
            skipped.add(target.label)  # today's statement itself: the run never reached it
            if _known(target, session):
                present.add(target.label)
            continue
        outcome = _plan(target, session)
        if isinstance(outcome, _Plan):
            plans.append(outcome)
        else:
            failed.append(_as_twin(outcome, target, session))
    result = replace(
        _apply(session, plans, failed, tuple(sorted(skipped))), present=tuple(sorted(present))
    )
    moved = _again_elsewhere(result, session)
    if moved:  # (each such statement left out, the others placed as they were)
        kept = [p for p in plans if p.target.name not in moved]
        lines = {p.target.name: p.target.line for p in plans}
        failed += [Failure(n, lines.get(n, 0), why) for n, why in sorted(moved.items())]
        result = replace(
            _apply(session, kept, failed, tuple(sorted(skipped))), present=tuple(sorted(present))
        )
    return result


def _as_twin(failure: Failure, target: LogStatement, session: _Session) -> Failure:
    """``failure`` of a name placed again, said as what it is where the old version has
    today's very statement under other conditions (in a helper the old code calls under ``if
    epoch % 2 == 1:``, today's every epoch: "no context" said nothing of it)."""
    if target.name not in session.again:
        return failure
    mine = conditions_in(session.new, target.stmt)
    dump = ast.dump(target.stmt)
    for old in session.old.nodes:
        if isinstance(old, ast.stmt) and ast.dump(old) == dump:
            theirs = conditions_in(session.old, old)
            if mine is not None and theirs is not None and theirs != mine:
                why = _conditions_differ(mine, theirs, "the old one").split(": ", 1)[1]
                return replace(
                    failure,
                    reason=f"the old version has today's very statement (line {old.lineno}) "
                    f"under other conditions: {why}; florsql places log statements, not the "
                    "calls and branches around them",
                )
    return failure


def _known(target: LogStatement, session: _Session) -> bool:
    """Whether today's statement ``target``, found in the old version as it is, runs under
    conditions known on both sides (a helper called from two places under different guards
    is not: its statement is the same, where it runs is not told; sweep AB)."""
    mine = conditions_in(session.new, target.stmt)
    if not known(mine):
        return False
    dump = ast.dump(target.stmt)
    olds = [n for n in session.old.nodes if isinstance(n, ast.stmt) and ast.dump(n) == dump]
    return bool(olds) and all(conditions_in(session.old, o) == mine for o in olds)


def _again_elsewhere(result: Propagation, session: _Session) -> dict[str, str]:
    """Names placed again (:func:`propagate`'s ``again``) whose placed statement runs under
    other conditions in the patched file than today's does in today's (what its guard reads
    is bound otherwise there: ``do_eval = epoch % 2 == 0`` where today's code has ``% 3``,
    sweep AA, session 53): placed, it would log what the run recorded, in the iterations the
    run recorded, and leave today's other iterations NULL, said nowhere. Name -> why."""
    placed = [p for p in result.placed if p.name in session.again]
    if not placed:
        return {}
    try:
        patched = analyze(result.source)
    except SyntaxError:
        return {}
    out: dict[str, str] = {}
    for p in placed:
        mine = [s for s in find_logs(session.new) if s.name == p.name and s.line == p.new_line]
        theirs = [
            s
            for s in find_logs(patched)
            if s.name == p.name and any(a <= s.line <= b for a, b in p.pieces)
        ]
        if len(mine) != 1 or len(theirs) != 1:
            continue
        want = conditions_in(session.new, mine[0].stmt)
        have = conditions_in(patched, theirs[0].stmt)
        if want is not None and have is not None and want != have:
            out[p.name] = _conditions_differ(want, have)
    return out


def _swapped_twin(target: LogStatement, old: Block, slot: int, session: _Session) -> str | None:
    """Why ``slot`` of ``old`` is not today's statement's place, where the old statement before
    it is alike but for literals to the one before today's (``acc = evaluate("val")`` for
    today's ``acc = evaluate("test")``) and the old block has today's, spelled alike, elsewhere
    (the two calls swapped since): there, the statement would read the other call's value
    (session 57, sweep AL: the val accuracy logged as the test's, silently). None otherwise."""
    from florsql.propagate.slice import _spelled

    before = [k for k in range(target.index) if id(target.block.stmts[k]) not in session.skip]
    if not before or slot == 0:
        return None
    mine = target.block.stmts[before[-1]]
    theirs = old.stmts[slot - 1]
    if target.block.norms[before[-1]] != old.norms[slot - 1]:
        return None
    spelled = _spelled(mine)
    if _spelled(theirs) == spelled:
        return None
    twins = [k for k, o in enumerate(old.stmts) if k != slot - 1 and _spelled(o) == spelled]
    if not twins:
        return None
    return (
        f"ambiguous: today's statement follows `{ast.unparse(mine).splitlines()[0]}`, which the "
        f"old version has at line {old.stmts[twins[0]].lineno}, while its place by the "
        f"neighbours is after `{ast.unparse(theirs).splitlines()[0]}` (line {theirs.lineno}): "
        "statements alike but for literals, in another order"
    )


def _owner(block: Block, src: SourceFile) -> ast.stmt | None:
    """The compound statement whose body (or other branch) ``block`` is, else None."""
    return src.deepest_owner(block.stmts[0]) if block.stmts else None


def _twin_of_another(new: Block, old: Block, session: _Session) -> bool:
    """Whether the compound statement holding ``old`` aligns with another statement of
    today's file than the one holding ``new`` (in their enclosing blocks' alignment): the
    old block is that other statement's counterpart."""
    mine, theirs = _owner(new, session.new), _owner(old, session.old)
    if mine is None or theirs is None or type(mine) is not type(theirs):
        return False
    from florsql.propagate.slice import _spelled

    if _spelled(mine) == _spelled(theirs):
        return False  # (spelled alike: its own counterpart, the common case, no alignment)
    if id(mine) not in session.new.homes or id(theirs) not in session.old.homes:
        return False
    new_parent, k_new = session.new.homes[id(mine)]
    old_parent, k_old = session.old.homes[id(theirs)]
    if len(new_parent.chain) != len(old_parent.chain):
        return False
    pairs = session.align(new_parent, old_parent)
    paired = [k for k, j in pairs.items() if j == k_old]
    return bool(paired) and paired[0] != k_new


def _ordinal(block: Block, src: SourceFile) -> tuple[int, int]:
    """``block``'s place among the blocks of ``src`` under the same frames (kinds, names and
    headers), in file order, and their number (:func:`locate`'s tie between alike blocks)."""
    key = tuple(f.label for f in block.chain)
    alike = sorted(
        (b for b in src.blocks if b.stmts and tuple(f.label for f in b.chain) == key),
        key=lambda b: b.first_line(0),
    )
    k = next((i for i, b in enumerate(alike) if b is block), 0)
    return k, len(alike)


def _present(target: LogStatement, session: _Session) -> bool:
    """Whether today's statement ``target`` is in the old version as it is, in the block it
    belongs in (found by the statements around it, as a placement would be)."""
    mine = ast.dump(target.stmt)
    chains = session.new_helpers.variants(target.block)
    before, after = session.context(target.block, target.index)
    today = frozenset(session.new.defs)
    ordinal = _ordinal(target.block, session.new)
    spot = locate(chains, before, after, session.old_helpers, today, ordinal)
    if isinstance(spot, Miss):  # alone in its block (``if do_eval:`` around it): by itself
        found = locate_twin(chains, session.old_helpers, lambda o: ast.dump(o) == mine, today)
        return found is not None and _same_conditions(
            target.stmt, found.block.stmts[found.slot], session
        )
    return any(
        ast.dump(stmt) == mine and _same_conditions(target.stmt, stmt, session)
        for stmt in spot.block.stmts
    )


def _guards(src: SourceFile, block: Block) -> tuple[str, ...] | None:
    """The guards around ``block``'s statements (their conditions less early exits)."""
    if not block.stmts:
        return None
    found = conditions_in(src, block.stmts[0])
    return None if found is None else tuple(c for c in found if not c.startswith("skip "))


def _slot_conditions(src: SourceFile, block: Block, slot: int) -> tuple[str, ...] | None:
    """The conditions a statement put before statement ``slot`` of ``block`` runs under."""
    if not block.stmts:
        return None
    first = conditions_in(src, block.stmts[0])
    if first is None:
        return None
    return first + tuple(skip_label(src.tree, s) for s in block.stmts[:slot] if leaves_early(s))


def _conditions_differ(
    want: tuple[str, ...], have: tuple[str, ...], theirs: str = "its place there"
) -> str:
    def said(c: str) -> str:
        text = " ".join(c.split())
        return f"after `{text[5:]}`" if text.startswith("skip ") else f"`{text}`"

    only_today = [said(c) for c in want if c not in have]
    only_old = [said(c) for c in have if c not in want]
    parts = []
    if only_today:
        parts.append(f"today's runs {', '.join(only_today)}, which {theirs} does not")
    if only_old:
        parts.append(f"{theirs} runs {', '.join(only_old)}, where today's does not")
    return (
        "the old version logs it under other conditions, and placed beside that statement "
        f"it would run under others than today's: {'; '.join(parts)}"
    )


def _guard_text(block: Block, session: _Session) -> str:
    return " > ".join(_guards(session.new, block) or ())


def _same_guards(new: Block, old: Block, session: _Session) -> bool:
    """Whether today's block ``new`` and the old ``old`` sit under the same guards (where
    either cannot be told, taken as the same)."""
    mine, theirs = _guards(session.new, new), _guards(session.old, old)
    return mine is None or theirs is None or mine == theirs


def _same_conditions(new: ast.stmt, old: ast.stmt, session: _Session) -> bool:
    """Whether today's statement ``new`` and the old ``old`` run under the same conditions
    in their loop's iteration (:mod:`florsql.propagate.conditions`; where either cannot be
    told, taken as the same): ``if epoch % 3 == 0:`` today around the old ``if epoch % 2 ==
    0:``'s statement is not there as it is (session 53: epoch 3 stayed NULL, said nowhere)."""
    mine = conditions_in(session.new, new)
    if mine == ():
        # today's runs in every iteration: a helper's own conditions only, where the old code
        # calls it is the old code's (a replay runs its calls and branches, and says the
        # iterations it does not get to, each: tests/test_replay_unstored_s51.py)
        mine = conditions_in(session.new, new, calls=False)
        theirs = conditions_in(session.old, old, calls=False)
    else:
        theirs = conditions_in(session.old, old)
    if mine is not None and theirs is None and _never_called(session.old, old):
        return False  # (session 54: the old file defines today's helper and never calls it)
    return mine is None or theirs is None or mine == theirs


def _never_called(src: SourceFile, stmt: ast.stmt) -> bool:
    """Whether ``stmt`` is in a plain function of ``src`` that nothing in ``src`` names (no
    call, no reference): an old helper today's code calls and the old code left unused ran in
    no iteration of the run (session 54: it was taken for today's statement as it is, and the
    query answered nothing, said nowhere)."""
    home = src.homes.get(id(stmt))
    if home is not None:  # its block knows the defs and classes around it (no parents map)
        scopes = home[0].scopes
        fn = next(
            (s for s in scopes if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)), None
        )
        if any(isinstance(s, ast.ClassDef) for s in scopes):
            fn = None
    else:
        fn = outermost_function(src.tree, stmt)
    if fn is None or fn.decorator_list or fn.name.startswith("__"):
        return False
    return not named(src.tree, fn.name)


def _holds(mine: str) -> Callable[[ast.stmt], bool]:
    """Whether an old statement is a branch (an ``if``, a ``with``, a ``try``...) holding a
    statement whose :func:`ast.dump` is ``mine``; a ``def`` or a class holding it is not."""

    def holds(old: ast.stmt) -> bool:
        if isinstance(old, ast.Expr | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return False
        return any(isinstance(n, ast.stmt) and ast.dump(n) == mine for n in ast_nodes(old))

    return holds


def _before_the_old_call(target: LogStatement, spot: Spot, session: _Session) -> Spot | Miss | None:
    """Where ``spot`` is inside an old helper (``step_part()``, called once in the old step
    loop) that today's code has inline, in the block of the helper's call: that block's place
    instead, where today's statements around ``target`` that the call's block has too put it
    on the other side of the call (session 61, found by
    tests/test_propagate_differential_edits_s60.py: today's ``h1 = len(lst)`` at the top of
    the step body went to the top of ``step_part()``, whose lines it resembles more, past the
    old ``lst.append(...)`` that runs before the call and that today's code runs after it:
    ``h1`` one step late, silently). None: ``spot`` stands."""
    around = session.old_helpers.enclosing_call(spot.block)
    if around is None:
        return None
    fn = around[0]
    if any(getattr(s, "name", None) == fn.name for s in target.block.scopes[1:]):
        return None  # today's statement is in that helper too: its body is the place
    site = session.old_helpers.call_site(fn)
    if site is None or id(site) not in session.old.homes:
        return None
    home, at = session.old.home(site)
    if match_chains(target.block.chain, home.chain) is None:
        return None
    pairs = session.align(target.block, home)
    k = target.index
    if not any((i > k and j < at) or (i < k and j > at) for i, j in pairs.items()):
        return None
    unpaired = frozenset(id(st) for i, st in enumerate(target.block.stmts) if i not in pairs)
    choice = choose_slot(*session.context(target.block, k, unpaired), home.norms)
    if choice.slot is None:
        where = " > ".join(f.label for f in home.chain) or "the module"
        return Miss(
            f"no context: its place is in {where} of the old version, around the call of "
            f"{fn.name}() at line {site.lineno}, and the statements around it there do not tell it"
        )
    return Spot(home, adjust_slot(home, choice.slot))


def _call_context(block: Block, session: _Session) -> tuple[list[str], list[str]] | None:
    """For a statement in a helper's body where nothing around it matches the old version
    (``def report(m): flor.log("wn", ...)``, today's helper called once in the epoch loop),
    the neighbours of the helper's call: where the old version has no such helper, the
    statement goes where today's code calls it (session 46: refused "no context"). None where
    the block is not a helper's body, or the old version defines a function of its name (a
    rewritten helper: what its body computes is not the call site's to compute)."""
    around = session.new_helpers.enclosing_call(block)
    if around is None or around[0].body is not block.stmts or around[0].name in session.old.defs:
        return None  # not a helper's body, or the old version has the helper: its body counts
    site = session.new_helpers.call_site(around[0])
    if site is None:
        return None
    home, index = session.new.home(site)
    return session.context(home, index)


def _new_call(target: LogStatement, session: _Session) -> LogStatement | None:
    """For a statement in the body of a helper the old version lacks (or defines and never
    calls, :func:`_never_called`), which today's code calls from one statement: that call
    statement, standing for it (it travels, with its guard where today's code guards it,
    and the helper's definition with it where the old version lacks it). Session 54: ``def
    evaluate(): flor.log("val", ...)`` called under ``if epoch % 2 == 0:`` failed the query
    ("no scope matching evaluate()"), and an old helper never called answered nothing. None
    where the helper holds florsql calls other than log statements the old version lacks."""
    around = session.new_helpers.enclosing_call(target.block)
    if around is None or _function_of(target.block) is not around[0]:
        return None  # (in a block of the helper's own: ``with torch.no_grad():`` too)
    fn = around[0]
    unused: tuple[int, int] = (0, 0)  # (the lines of an old definition never called)
    if fn.name in session.old.defs:
        olds = [
            n
            for n in session.old.nodes
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == fn.name
        ]
        if len(olds) != 1 or not olds[0].body or not _never_called(session.old, olds[0].body[0]):
            return None
        unused = (olds[0].lineno, olds[0].end_lineno or olds[0].lineno)
    site = session.new_helpers.call_site(fn)
    if site is None or id(site) not in session.new.homes:
        return None
    if not isinstance(site, ast.Expr | ast.Assign) or _defines_around(site, fn, session):
        return None
    have = frozenset(
        s.name
        for s in find_logs(session.old)
        if s.name is not None and not unused[0] <= s.line <= unused[1]
    )
    for node in ast_nodes(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id in session.new.aliases):
                continue
            first = node.args[0] if node.args else None
            if node.func.attr != "log" or not (
                isinstance(first, ast.Constant) and first.value not in have
            ):
                return None
    home, at = session.new.home(site)
    return LogStatement(target.name, target.name_code, site, home, at)


def _unused_old_helper(block: Block, session: _Session) -> str:
    """Why ``block``, in a function the old file defines and never calls while today's file
    calls it, is no place: the run never ran it, and placed there the statement logs nothing
    (session 54, sweep AC: an old ``def evaluate(x): return x`` left unused, today's with a
    ``flor.log`` and a guarded call of it: the query answered nothing, said nowhere)."""
    fn = _function_of(block)
    if fn is None or not fn.body or not _never_called(session.old, fn.body[0]):
        return ""
    today = [
        n
        for n in session.new.nodes
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == fn.name
    ]
    if not today or not today[0].body or _never_called(session.new, today[0].body[0]):
        return ""  # (unused today too, or called from other files: as any helper)
    return (
        f"it goes into {fn.name}(), which the old version defines and never calls (today's "
        "code calls it): placed there it would log nothing; florsql does not place today's "
        "call along with a change to the old helper"
    )


def _travelling_helper(
    target: LogStatement, log: LogStatement, session: _Session
) -> frozenset[int]:
    """The helper around ``log`` that travels with ``target``, today's call of it
    (:func:`_new_call`), by id; empty where ``target`` is no such call."""
    if target is log or not any(isinstance(n, ast.Call) for n in ast_nodes(target.stmt)):
        return frozenset()
    around = session.new_helpers.enclosing_call(log.block)
    if around is None or around[0].name in session.old.defs:
        return frozenset()
    return frozenset({id(around[0])})


def _defines_around(site: ast.stmt, fn: ast.AST, session: _Session) -> bool:
    """Whether the call ``site`` is inside the helper ``fn`` itself (a recursive call)."""
    return any(n is site for n in ast_nodes(fn))


def _unknown_names(wanted: list[str], logs: list[LogStatement]) -> list[Failure]:
    known = sorted({s.name for s in logs if s.name is not None})
    failures = []
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            failures.append(Failure(name, 0, f"not logged in the new version{hint}"))
    return failures


def _plan(
    target: LogStatement, session: _Session, log: LogStatement | None = None
) -> _Plan | Failure:
    """The way ``target`` goes into the old version, or why none. ``log``: the log statement
    itself, where ``target`` is a new compound statement around it (``with torch.no_grad():``)
    that travels whole."""
    log = log or target
    if target.name is None:
        return Failure(log.label, log.line, "the log name is not a string literal")
    before, after = session.context(target.block, target.index)
    chains = session.new_helpers.variants(target.block)
    today = frozenset(session.new.defs)
    spot = locate(
        chains, before, after, session.old_helpers, today, _ordinal(target.block, session.new)
    )
    if (
        isinstance(spot, Spot)
        and target is log
        and log.name in session.again
        and not _same_guards(target.block, spot.block, session)
    ):
        # placed again, where its block's twin runs under other guards (today's ``if epoch %
        # 3 == 1:``, the old ``if epoch % 2 == 0:``): not in there, its guard travels with it
        # (session 53: placed in the old branch, it logged again what the run recorded)
        spot = Miss(f"no context under today's guards ({_guard_text(target.block, session)})")
    if isinstance(spot, Spot) and _twin_of_another(target.block, spot.block, session):
        # the old block is the counterpart of another of today's blocks, alike but for
        # literals (today's new ``if epoch % 3 == 0:`` block after the old ``if epoch % 2 ==
        # 0:`` one): not this block's place; the block around it travels whole (session 57,
        # sweep AL: its statement went into the old ``% 2`` block, the val accuracy logged
        # as the test's under the wrong guard, silently)
        spot = Miss("no context (the old block alike is the counterpart of another of today's)")
    if isinstance(spot, Spot):
        spot = _before_the_old_call(target, spot, session) or spot
    if isinstance(spot, Miss) and spot.reason.startswith("no context"):
        called = _call_context(target.block, session)
        if called is not None:
            spot = locate(chains, *called, session.old_helpers, today)
    by_twin, no_context = False, ""
    if isinstance(spot, Miss) and target is log and spot.reason.startswith("no context"):
        no_context = spot.reason
        # a wrapped line alone in its block: its place is the old line it stands for
        aliases = session.new.aliases
        at = locate_twin(
            chains,
            session.old_helpers,
            # (placed again: only where it runs under today's conditions, else it is that
            # old line again: session 53)
            lambda o: (
                _stands_for(log.stmt, o, aliases)
                and (log.name not in session.again or _same_conditions(log.stmt, o, session))
            ),
            today,
        )
        by_twin = at is not None
        spot = at or spot
        if at is None and log.name in session.again and not _guard_text(target.block, session):
            # placed again, alone in its block, where the old block holds the same statement
            # inside a branch (``if epoch % 2 == 0: flor.log("val", v)``, today unguarded):
            # after that branch (sweep W, session 51: refused "no context")
            branch = locate_twin(chains, session.old_helpers, _holds(ast.dump(log.stmt)), today)
            if branch is not None:
                spot = type(branch)(branch.block, branch.slot + 1)
    if (
        isinstance(spot, Miss)
        and target is not log
        and log.name in session.again
        and spot.reason.startswith("no context")
    ):
        # today's guarded block (lifted), alone in its block, where the old block holds the
        # statement in another branch (a helper's ``if epoch % 2 == 0: flor.log("val", v)``,
        # today's ``% 3``): after that branch (session 54: refused "no context")
        branch = locate_twin(chains, session.old_helpers, _holds(ast.dump(log.stmt)), today)
        if branch is not None:
            spot = type(branch)(branch.block, branch.slot + 1)
    if isinstance(spot, Miss):
        lifted = _lift(target, session)
        call = _new_call(target, session) if target is log else None
        if lifted is not None:  # the block around it is new: it travels whole, or says why not
            plan = _plan(lifted, session, log)
            if isinstance(plan, _Plan):
                return plan
            if "no block matching" not in plan.reason and (
                call is None or not plan.reason.startswith("no scope matching")
            ):
                return plan
        if call is not None:  # today's call of a helper the old code lacks: the call travels
            plan = _plan(call, session, log)
            if isinstance(plan, _Plan):
                return plan
            return Failure(
                log.label,
                log.line,
                f"{spot.reason}, and today's call of it (line {call.stmt.lineno}) cannot "
                f"go in either: {plan.reason.split(': ', 1)[-1]}",
            )
        return Failure(log.label, log.line, spot.reason)
    unused = _unused_old_helper(spot.block, session)
    if unused:
        return Failure(log.label, log.line, unused)
    slot = adjust_slot(spot.block, spot.slot)
    swapped = _swapped_twin(target, spot.block, slot, session)
    if swapped is not None:
        return Failure(log.label, log.line, swapped)
    if log.name in session.again:
        # placed again beside the old statement: only where it runs under today's conditions
        # (session 53, sweep AA: today's ``if epoch == 3: continue`` before it was left
        # behind and epoch 3 got a value today's code never logs; an old ``if epoch < 3:
        # continue`` before the place kept epoch 2 NULL, said nowhere)
        want = conditions_in(session.new, target.stmt)
        have = _slot_conditions(session.old, spot.block, slot)
        if want is not None and have is not None and want != have:
            return Failure(log.label, log.line, _conditions_differ(want, have))
    pairs = session.align(target.block, spot.block)
    if target is not log and (
        (
            target.index in pairs
            and type(spot.block.stmts[pairs[target.index]]) is type(target.stmt)
            # placed again under today's guard beside the old one's (session 53)
            and log.name not in session.again
        )
        or ast.unparse(target.stmt) in session.old.text
    ):
        return Failure(log.label, log.line, "the old version has the block around it elsewhere")
    try:
        found = carried(
            target.block,
            target.index,
            spot.block,
            session.old.text,
            session.skip,
            pairs,
            session.new.text,
            files=(session.new, session.old),
            renamed=session.scope_rename,
            branches=log.name in session.again,
            helpers=_travelling_helper(target, log, session),
        )
    except Uncarried as why:
        return Failure(log.label, log.line, str(why))
    # rewrites of old statements (slice._carry: aligned, so in ``pairs``) replace them where
    # they are: they neither move nor leave their neighbours' context
    rewrites = [k for k in found.indices if k in pairs]
    indices = [k for k in found.indices if k not in pairs]
    moving = frozenset(
        [id(target.block.stmts[k]) for k in (*indices, *found.after) if k not in pairs]
        + [
            id(n.new.stmts[k])
            for n in found.nested
            for k in n.indices
            if k not in session.align(n.new, n.old)
        ]
    )
    unpaired = frozenset(id(st) for k, st in enumerate(target.block.stmts) if k not in pairs)
    unsure = ""
    lone = not (moving | unpaired) - {id(target.stmt)} & {id(s) for s in target.block.stmts}
    if not lone:
        # its place by the statements both versions have: new code (another statement's
        # slice, too) anchors nothing (``h += (a + a) % 97`` reads like ``a = (a + a) % 97``)
        again = choose_slot(
            *session.context(target.block, target.index, moving | unpaired), spot.block.norms
        )
        if again.slot is not None:
            slot = adjust_slot(spot.block, again.slot)
        elif (inert := inert_tie(spot.block, again)) is not None:
            slot = adjust_slot(spot.block, inert)
        elif again.tied:
            lines = ", ".join(str(spot.block.insert_line(t)) for t in again.tied)
            reason = f"ambiguous: {len(again.tied)} equally good places (lines {lines})"
            return Failure(log.label, log.line, reason)
    # old statements today's code lacks, between its neighbours, may change what it reads
    # (``sched.step()`` that today's code moved into the step loop): where it goes among them
    # matters even when nothing else in today's block is new
    gap = _in_gap(target.block, target.index, spot.block, pairs, moving, slot, session, lone)
    if isinstance(gap, str):
        unsure = gap  # said after the unbound names, which say more
    elif gap != slot:
        slot = adjust_slot(spot.block, gap)
    if not unsure:
        kept_order = _order_kept(target.block, target.index, spot.block, pairs, slot, session)
        if isinstance(kept_order, str):
            return Failure(log.label, log.line, kept_order)
        if kept_order != slot:
            slot = adjust_slot(spot.block, kept_order)
    elsewhere = _off_its_call(target.block, spot.block, slot, session)
    if elsewhere:
        return Failure(log.label, log.line, elsewhere)
    slots = _slice_slots(target.block, indices, spot.block, slot, session, moving, pairs)
    if isinstance(slots, str):
        return Failure(log.label, log.line, slots)
    items = [
        _Item(
            target.block.stmts[k],
            target.block,
            spot.block,
            s,
            modes=_switched(target.block.stmts[k], k in found.modes),
        )
        for k, s in zip(indices, slots, strict=True)
    ]
    for k in rewrites:
        replaced = _rewritten(Nested(target.block, spot.block, (k,)), k, pairs[k], session)
        if isinstance(replaced, str):
            return Failure(log.label, log.line, replaced)
        items.append(replaced)
    nests = list(found.nested)
    if found.after:  # the loop's tail, after the log statement
        nests.append(Nested(target.block, spot.block, tuple(found.after), floor=slot))
    for nest in nests:
        placed = _nested_items(nest, session, moving)
        if isinstance(placed, str):
            return Failure(log.label, log.line, placed)
        items += placed
    items.sort(key=lambda it: _order(it.stmt))
    # a new block around the log statement, travelling whole, may switch a module's mode
    modes = _switched(target.stmt, False) if target is not log else ()
    items.append(_Item(target.stmt, target.block, spot.block, slot, modes=modes))
    for it in items:
        problem = slot_problem(session.old, it.old, it.slot)
        if problem:
            return Failure(log.label, log.line, problem)
    renames = _renames(target, spot, slot, pairs, items, session)
    if isinstance(renames, str):
        return Failure(log.label, log.line, renames)
    missing = _unbound(items, session, renames)
    if missing:
        renames.update(_call_renames(spot.block, missing, session))
        missing = _unbound(items, session, renames)
    if missing:  # today's helper put where today's code calls it: its parameters' arguments
        around = session.new_helpers.enclosing_call(target.block)
        if around is not None and session.old_helpers.enclosing_call(spot.block) is None:
            renames.update(_arguments(around[0], around[1], [m.name for m in missing], session))
            missing = _unbound(items, session, renames)
    widened: set[str] = set()
    if missing:  # a name added to an import line the old file has (``from m import a, b``)
        missing = _unbound(items, session, renames, widened)
    if missing:
        reason = f"unbound name {missing[0].name!r} {at_line(missing[0].line)}"
        old_name = renames.get(missing[0].name, missing[0].name)
        if any(
            isinstance(n, ast.Name) and n.id == old_name and isinstance(n.ctx, ast.Store)
            for n in session.old.nodes
        ):
            # (sweep Z2: "unbound name 'val'" of a name the old version binds, after that line)
            reason += (
                f" (the old version binds {old_name!r} only after that line or in another "
                "scope: today's statement would go there before the value it logs)"
            )
        return Failure(log.label, log.line, reason)
    hidden = _shadowed(items, session, renames)
    if hidden:
        return Failure(log.label, log.line, hidden)
    if unsure:
        return Failure(log.label, log.line, unsure)
    kept = _kept(target.block, spot.block, target.stmt, session)
    twin = _twin(log.stmt, spot.block, slot, renames, session, kept)
    if isinstance(twin, str):
        return Failure(log.label, log.line, twin)
    if twin is not None and target is not log:  # a new block around it would run it twice
        return Failure(
            log.label,
            log.line,
            f"it logs the value of code the old version runs {at_line(twin.lineno)}, from a new "
            f"block around it: the block cannot replace that line; log it outside the block",
        )
    if twin is None and by_twin:
        # placed by the old line it stands for, it must replace that line: beside it, the
        # line's code would run twice
        return Failure(log.label, log.line, no_context)
    if twin is not None:  # it goes where its twin was
        items[-1] = _Item(log.stmt, target.block, spot.block, spot.block.stmts.index(twin), twin)
    for k, it in enumerate(items[:-1]):  # carried code that makes an old line's call
        if it.twin is None and not it.modes and (near := _adjacent_twin(it, renames, session)):
            twin, bind = near
            items[k] = _Item(it.stmt, it.new, it.old, it.old.stmts.index(twin), twin, bind)
            if bind is not None and _before_its_binding(items, session):
                items[k] = it  # what reads it goes before that log line: it stays beside it
    early = _before_its_binding(items, session)
    if early:
        return Failure(log.label, log.line, early)
    named = [n for names in _read(items, session) for n in names]
    binding = items if target is not log else items[:-1]  # a new block binds, too
    named += [n for it in binding for n in sorted(_binds(it.stmt) - _twin_binds(it))]
    # the log statement's own bindings (``acc += flor.log("l", x)``, a walrus) change the old
    # run as carried code would, save those of the old statement it stands in for
    own = target is log and bool(_binds(log.stmt) - _twin_binds(items[-1]))
    clash = (
        _clash(list(dict.fromkeys(named)), renames)
        or _overwrites(binding, session, renames, log.name in session.again)
        or (own and _overwrites(items[-1:], session, renames, log.name in session.again))
        or _decoy(items, session, renames)
        or _module_decoy(items, session, renames)
        or _in_place(items, session)
        or _stores_into_old(items, session)
        or found.unsafe  # (after the rules above: theirs say more of the same change)
    )
    if clash:
        return Failure(log.label, log.line, clash)
    apart = _modes_apart(items)
    if apart:
        return Failure(log.label, log.line, apart)
    plan = _Plan(target, Spot(spot.block, slot), tuple(items), renames, log.stmt)
    return replace(plan, imports=tuple(sorted(widened)))


def _switches(stmt: ast.stmt) -> list[ast.Expr]:
    """The mode switches (``net.eval()``, ``self.net.train(False)``) made as statements in
    ``stmt`` or the blocks inside it, not inside functions it defines."""
    out = []
    stack: list[ast.AST] = [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Expr) and mode_receiver(node) is not None:
            out.append(node)
        elif not isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
        ):
            stack.extend(ast.iter_child_nodes(node))
    out.sort(key=_order)
    return out


def _first_switch(stmt: ast.stmt) -> ast.stmt:
    found = _switches(stmt)
    return found[0] if found else stmt


def _switched(stmt: ast.stmt, chosen: bool) -> tuple[ast.expr, ...]:
    """The modules whose modes travelling ``stmt`` switches: a switch the slicer chose for the
    statements after it (``chosen``), or switches inside a new compound statement that travels
    whole (``if epoch % 5 == 0: net.eval(); ...``), one per module."""
    if chosen:
        receiver = mode_receiver(stmt)
        return () if receiver is None else (receiver,)
    if not is_compound(stmt):
        return ()
    out: dict[str, ast.expr] = {}
    for switch in _switches(stmt):
        receiver = mode_receiver(switch)
        if receiver is not None:
            out.setdefault(ast.unparse(receiver), receiver)
    return tuple(out.values())


def _modes_apart(items: list[_Item]) -> str | None:
    """Why a mode switch that travels (``net.eval()``, ``_Item.modes``) cannot: between the save
    of the module's modes before it and their restore after the log statement, every statement
    that follows it in today's code must go in at its slot, one after the other, so that no
    old statement runs in the switched mode (the old run would not be the one recorded)."""
    last = _order(items[-1].stmt)
    for m in items:
        if not m.modes:
            continue
        if any(_order(it.stmt) > last for it in items):  # a loop's tail, carried
            return mode_reason(
                _first_switch(m.stmt),
                "code after the log statement travels with it (the loop's tail), and would "
                "run after the restore",
            )
        for it in items:
            if _order(it.stmt) <= _order(m.stmt):
                continue
            if it.old is not m.old or it.slot != m.slot or it.twin is not None:
                return mode_reason(
                    _first_switch(m.stmt),
                    "the statements after it would go in at other places than the switch, "
                    "with old code running between them",
                )
    return None


def _off_its_call(new: Block, old: Block, slot: int, session: _Session) -> str | None:
    """Where ``new`` is the body of a helper today's code calls from one place in a loop, and
    ``old`` is the block around its call site in the old version (the old version has the code
    inline, or not at all): ``slot`` must lie where that call runs, between the old statements
    that today's statements around the call stand for. A helper today's code added (``def
    evaluate(): ...`` called after the step loop) otherwise found its place by an accidental
    neighbour (its ``net.train()`` beside the old ``net.train()`` at the top of the epoch) and
    ran before training, silently (until session 30)."""
    scope = new.scopes[-1] if len(new.scopes) > 1 else None
    if not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef) or scope.body is not new.stmts:
        return None
    if any(getattr(s, "name", None) == scope.name for s in old.scopes[1:]):
        return None  # the old version's own helper
    site = session.new_helpers._call_site(scope.name, scope)
    if site is None or id(site) not in session.new.homes:
        return None
    caller, at = session.new.home(site)
    # the call may align with an old line it stands for (``l = train_step(xb, yb)`` with the
    # old inline ``loss = loss_fn(out, yb)``): only its neighbours bound the place
    pairs = session.align(caller, old)
    lo = max((j + 1 for k, j in pairs.items() if k < at), default=0)
    hi = min((j for k, j in pairs.items() if k > at), default=len(old.stmts))
    if lo <= slot <= hi:
        return None
    return (
        f"it is in {scope.name}(), which today's code calls at line {site.lineno}, where the old "
        f"version runs {_between(old, lo, hi)}; the statements around it in {scope.name}() "
        f"point {at_line(old.insert_line(slot))} instead"
    )


def _between(old: Block, lo: int, hi: int) -> str:
    """The old place between slots ``lo`` and ``hi``, in words."""
    after = f"after line {old.stmts[lo - 1].end_lineno or old.stmts[lo - 1].lineno}" if lo else ""
    before = f"before line {old.first_line(hi)}" if hi < len(old.stmts) else ""
    if after and before:
        return f"{after} and {before}"
    return after or before or "anywhere in the block"


def _before_its_binding(items: list[_Item], session: _Session) -> str | None:
    """Why a travelling statement would read what a rewrite binds on the wrong side of it: a
    rewrite replaces its old line where that line is (``l, gn, out = step()`` for ``l, _, out
    = step()``), and a statement of the same block reading what it binds must stay on the
    side it is on today (after it; before it in a loop body, for the previous iteration's)."""
    for it in items:
        if it.twin is None:
            continue
        at, bound = it.old.stmts.index(it.twin), _binds(it.stmt)
        for other in items:
            if other is it or other.old is not it.old or other.new is not it.new:
                continue
            if not reads(other.stmt) & bound:
                continue
            where = other.slot if other.twin is None else other.old.stmts.index(other.twin)
            if (where <= at) != (_order(other.stmt) < _order(it.stmt)):
                code = head(session.new, it.stmt)
                side = "before" if where <= at else "after"
                return (
                    f"it reads what {code!r} binds, which replaces the old line "
                    f"{at_line(it.twin.lineno)}: its place is {side} that line, not where "
                    "today's code reads it"
                )
    return None


def _kept(new: Block, old: Block, mine: ast.stmt, session: _Session) -> frozenset[int]:
    """The statements of ``old`` that today's code keeps: aligned with a statement of ``new``
    other than ``mine``. A call there is today's too: a new statement that makes it again
    runs it twice today as well (``report("end", net)`` kept, ``flor.log("total",
    report("again", net))`` added), so it is no twin of ``mine``."""
    return frozenset(j for k, j in session.align(new, old).items() if new.stmts[k] is not mine)


def _twin_binds(it: _Item) -> frozenset[str]:
    return _binds(it.twin) if it.twin is not None else frozenset()


def _makes_call_of(stmt: ast.stmt, old: ast.stmt) -> bool:
    """Whether ``old`` is a bare call statement whose call ``stmt`` makes (verbatim)."""
    if not (isinstance(old, ast.Expr) and isinstance(old.value, ast.Call)):
        return False
    code = ast.unparse(old.value)
    return any(isinstance(n, ast.Call) and ast.unparse(n) == code for n in ast_nodes(stmt))


def _adjacent_twin(
    it: _Item, renames: dict[str, str], session: _Session
) -> tuple[ast.stmt, ast.expr | None] | None:
    """The old statement beside carried ``it``'s slot that it stands for, with the target to
    put before it where that is a log statement: a bare call statement whose call it makes
    (``gn = float(clip_grad_norm_(ps, 1.0))`` carried beside ``clip_grad_norm_(ps, 1.0)``), or
    a log statement of the value it assigns (``acc = float(v)`` beside ``flor.log("acc",
    float(v))``, where today's code logs ``acc`` without computing it again: the old line
    becomes ``acc = flor.log("acc", float(v))``, and ``float(v)`` runs once, as it did)."""
    made = _Renamer({**session.alias, **renames}).visit(copy.deepcopy(it.stmt))
    kept = _kept(it.new, it.old, it.stmt, session)
    for j in (it.slot - 1, it.slot):
        if not 0 <= j < len(it.old.stmts):
            continue
        old = it.old.stmts[j]
        if j not in kept and _makes_call_of(made, old):
            return (old, None) if _joined(session, it.old, j) is None else None
        bind = _log_binding(made, old, session.old.aliases)
        if bind is not None and not _computed_again(it, j, session):
            return (old, bind.targets[0]) if _joined(session, it.old, j) is None else None
    return None


def _computed_again(it: _Item, j: int, session: _Session) -> bool:
    """Whether today's statements aligned with old statement ``j`` (other than ``it``'s)
    compute something when they log: ``flor.log("acc", float(v))`` today beside ``acc =
    float(v)`` runs ``float(v)`` twice, as a hand-patched old version would."""
    pairs = session.align(it.new, it.old)
    return any(
        _unlogged(it.new.stmts[k], session.new.aliases) is not None
        for k, at in pairs.items()
        if at == j and it.new.stmts[k] is not it.stmt
    )


def _joined(session: _Session, block: Block, j: int) -> str | None:
    """Why old statement ``j`` of ``block`` cannot be replaced by lines, or None."""
    stmts, twin = block.stmts, block.stmts[j]
    if (
        not standalone(session.old, twin)
        or (j > 0 and stmts[j - 1].end_lineno == twin.lineno)
        or (j + 1 < len(stmts) and stmts[j + 1].lineno == twin.end_lineno)
    ):
        return f"it would replace a statement joined to others by ';' {at_line(twin.lineno)}"
    return None


def _stands_for(mine: ast.stmt, old: ast.stmt, aliases: frozenset[str]) -> bool:
    """Whether new statement ``mine`` is old statement ``old`` with logging added (the
    relation :func:`_twin` decides on, before renames)."""
    if is_compound(old):
        return False
    bare = _unlogged(mine, aliases)
    if bare is None:
        return False
    return ast.unparse(old) == ast.unparse(bare) or _makes_call_of(mine, old)


def _unlogged(stmt: ast.stmt, aliases: frozenset[str]) -> ast.stmt | None:
    """``stmt`` as it runs without logging: each florsql log call replaced by the value it logs
    (``flor.log`` returns it), a walrus by its value. None where that is a bare value with no
    call in it (``flor.log("x", x)``: running it again changes nothing).

    Example:
        >>> tree = ast.parse('acc += flor.log("l", loss.item())').body[0]
        >>> ast.unparse(_unlogged(tree, frozenset({"flor"})))
        'acc += loss.item()'
        >>> _unlogged(ast.parse('flor.log("x", (y := x))').body[0], frozenset({"flor"}))
    """

    class Unlog(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:
            self.generic_visit(node)
            f = node.func
            if (
                isinstance(f, ast.Attribute)
                and f.attr == "log"
                and isinstance(f.value, ast.Name)
                and f.value.id in aliases
            ):
                value = node.args[1] if len(node.args) > 1 else None
                value = value or next((k.value for k in node.keywords if k.arg == "value"), None)
                return value if value is not None else node
            return node

        def visit_NamedExpr(self, node: ast.NamedExpr) -> ast.AST:
            self.generic_visit(node)
            return node.value

    bare = Unlog().visit(copy.deepcopy(stmt))
    impure = (ast.Call, ast.Await, ast.Yield, ast.YieldFrom)
    if isinstance(bare, ast.Expr) and not any(isinstance(n, impure) for n in ast_nodes(bare)):
        return None
    return bare


class _Renamer(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.names.get(node.id, node.id), node.ctx)


def _twin(
    log: ast.stmt,
    block: Block,
    slot: int,
    renames: dict[str, str],
    session: _Session,
    kept: frozenset[int] = frozenset(),
) -> ast.stmt | str | None:
    """The old statement that today's log statement stands in for, where it would go: the
    log statement logging aside (``acc += loss.item()`` for ``acc += flor.log("l",
    loss.item())``), or an old call statement whose call the log statement makes
    (``clip_grad_norm_(ps, 1.0)`` for ``flor.log("gn", float(clip_grad_norm_(ps, 1.0)))``). The
    log statement replaces it: inserted beside it, that code would run twice. None where there
    is none (new code); why not, where it is not exact: the old version runs that code
    elsewhere or with other arguments. Old statements in ``kept`` (today's code has them too)
    are never twins."""
    bare = _unlogged(log, session.new.aliases)
    if bare is None:
        return None
    rename = _Renamer({**session.alias, **renames})
    bare = rename.visit(bare)
    made = rename.visit(copy.deepcopy(log))
    code, form = ast.unparse(bare), normalize(bare)
    calls = {ast.unparse(n) for n in ast_nodes(made) if isinstance(n, ast.Call)}
    call_forms = {strip_literals(c) for c in calls}
    flor = session.old.aliases | session.new.aliases
    callees = {  # what it calls, florsql's own calls aside (old log statements are bare calls)
        ast.unparse(n.func)
        for n in ast_nodes(made)
        if isinstance(n, ast.Call)
        and not (
            isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id in flor
        )
    }

    def relation(j: int) -> str:
        old = block.stmts[j]
        if is_compound(old) or j in kept:  # today's code runs a kept statement itself
            return ""
        called = isinstance(old, ast.Expr) and isinstance(old.value, ast.Call)
        if ast.unparse(old) == code or _makes_call_of(made, old):
            return "same"
        if block.norms[j] == form or (called and block.norms[j] in call_forms):
            return "like"
        if called and ast.unparse(old.value.func) in callees:  # type: ignore[attr-defined]
            return "like"  # the same function, other arguments: ``opt.step(2)``
        return ""

    near = {j: relation(j) for j in (slot - 1, slot) if 0 <= j < len(block.stmts)}
    same = [j for j, r in near.items() if r == "same"]
    if len(same) > 1 or (not same and "like" in near.values()):
        j = same[0] if same else next(j for j, r in near.items() if r == "like")
        why = "twice in a row" if same else "otherwise (other arguments)"
        where = at_line(block.stmts[j].lineno)
        return (
            f"it logs the value of code the old version runs {why} {where}: neither replacing "
            "nor running it twice keeps the old run"
        )
    if not same:
        elsewhere = [j for j in range(len(block.stmts)) if j not in near and relation(j)]
        if elsewhere:
            return (
                "it logs the value of code the old version runs elsewhere "
                f"({at_line(block.stmts[elsewhere[0]].lineno)}): placed here, that code would "
                "run twice"
            )
        return None
    return _joined(session, block, same[0]) or block.stmts[same[0]]


def _lift(target: LogStatement, session: _Session) -> LogStatement | None:
    """The new compound statement around ``target`` (a ``with``/``if``/``try`` block the old
    version lacks), standing for it: it travels whole, if the florsql calls in it are only log
    statements the old version lacks. None where the block is a function, class or flor loop,
    or holds other florsql calls."""
    frame = target.block.chain[-1] if target.block.chain else None
    if frame is None or frame.hard or id(target.block) not in session.new.parents:
        return None
    parent, at = session.new.parents[id(target.block)]
    stmt = parent.stmts[at]
    have = logged_names(session.old)
    for node in ast_nodes(stmt):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id in session.new.aliases):
                continue
            if node.func.attr != "log":
                return None
            first = node.args[0] if node.args else None
            if not (
                isinstance(first, ast.Constant)
                and (first.value not in have or first.value in session.again)
            ):
                return None  # (placed again: its guard travels with it, session 53)
    return LogStatement(target.name, target.name_code, stmt, parent, at)


def _function_of(block: Block) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The innermost function ``block`` is in (None: the module's own code)."""
    scope = block.scopes[-1] if block.scopes else None
    return scope if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef) else None


def _shadowed(items: list[_Item], session: _Session, renames: dict[str, str]) -> str | None:
    """A name a travelling statement reads as the module's own in today's code (bound in no
    function around it) that the old place has as a parameter of the function around it,
    which its callers give something else than the module's object of that name (a local is
    taken for the same object: a ``main()`` inlined since): the old function's value is
    another object (session 47, sweep L: today's
    ``net(X).sum()`` after the inlined step, the old ``def train_step(X, Y)`` called with a
    batch: placed inside it, ``X`` was the batch, -3.072 for -9.273, silently)."""
    for it, names in zip(items, _read(items, session), strict=True):
        old_fn = _function_of(it.old)
        if old_fn is None:
            continue
        new_fn = _function_of(it.new)
        today = set(session.bindings.names_of(new_fn)) if new_fn is not None else set()
        a = old_fn.args
        there = {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x}
        for name in names:
            if name in renames or name in today or name in session.new.aliases:
                continue
            was = renames.get(name, name)
            if (
                was in there
                and _binds_module_level(session.new, name)
                and not _passed_as_itself(session.old.tree, old_fn, was)
            ):
                return (
                    f"today's code reads the module's {name!r} there, and the old version's "
                    f"place is inside {old_fn.name}(), whose parameter {was!r} "
                    f"({at_line(old_fn.lineno)}) its callers give another value"
                )
    return None


def _passed_as_itself(
    tree: ast.Module, fn: ast.FunctionDef | ast.AsyncFunctionDef, param: str
) -> bool:
    """Whether every call of ``fn`` (by its name) in ``tree`` passes the name ``param`` itself
    as that parameter (``main(args)`` for ``def main(args)``): the parameter is then the
    module's object of that name, not another value (a batch ``train_step(X[idx], ...)``)."""
    a = fn.args
    positional = [x.arg for x in (*a.posonlyargs, *a.args)]
    calls = [
        c
        for c in ast_nodes(tree)
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == fn.name
    ]
    if not calls:
        return False
    for call in calls:
        given: ast.expr | None = None
        if param in positional and positional.index(param) < len(call.args):
            given = call.args[positional.index(param)]
        for kw in call.keywords:
            if kw.arg == param:
                given = kw.value
        if not (isinstance(given, ast.Name) and given.id == param):
            return False
    return True


def _same_import(new: ast.stmt, old: ast.stmt) -> bool:
    """Whether import ``old`` is the counterpart of today's ``new``: the same module's
    ``from`` import (not a star one), or an ``import`` sharing a module bound the same way."""
    if isinstance(new, ast.ImportFrom):
        return (
            isinstance(old, ast.ImportFrom)
            and (old.module, old.level) == (new.module, new.level)
            and all(a.name != "*" for a in old.names)
        )
    if isinstance(new, ast.Import) and isinstance(old, ast.Import):
        return bool(
            {(a.name, a.asname) for a in new.names} & {(a.name, a.asname) for a in old.names}
        )
    return False


def _binds_in(src: SourceFile, scope: ast.AST, name: str) -> bool:
    """Whether ``scope`` of ``src`` (the module, or a function) binds ``name``: the module's
    code (:func:`_binds_module_level`), or the function's parameters or body."""
    if isinstance(scope, ast.Module):
        return _binds_module_level(src, name)
    assert isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef)
    a = scope.args
    params = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x}
    if name in params:
        return True
    for node in ast_nodes(scope):
        if node is scope:
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id == name:
            return True
        if getattr(node, "name", None) == name and isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        ):
            return True
        if isinstance(node, ast.Import | ast.ImportFrom) and any(
            (a.asname or a.name.split(".")[0]) == name for a in node.names
        ):
            return True
    return False


def _binds_module_level(src: SourceFile, name: str) -> bool:
    """Whether ``src``'s module-level code binds ``name`` (an assignment, import, ``def``...)."""
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
    for stmt in src.tree.body:
        if isinstance(stmt, scopes):
            if stmt.name == name:
                return True
            continue
        stack: list[ast.AST] = [stmt]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id == name:
                return True
            if isinstance(node, ast.Import | ast.ImportFrom) and any(
                (a.asname or a.name.split(".")[0]) == name for a in node.names
            ):
                return True
            stack += [c for c in ast.iter_child_nodes(node) if not isinstance(c, scopes)]
    return False


def _read(items: list[_Item], session: _Session) -> list[list[str]]:
    """For each travelling statement, the outside names it reads (in source order)."""
    codes = tuple(statement_code(session.new, it.stmt) for it in items)
    return [list(names) for names in free_names(codes)]


def _renames(
    target: LogStatement,
    spot: Spot,
    slot: int,
    pairs: dict[int, int],
    items: list[_Item],
    session: _Session,
) -> dict[str, str] | str:
    """What binds each name where a travelling statement reads it decides what it stands for
    in the old version, even where the old version binds that name too (to something else,
    maybe). Statements of the log statement's block are read from its place; statements
    carried into an inner block from their own. A reason where two places disagree."""
    groups: dict[int, tuple[Block, Block, int, int, dict[int, int], list[str]]] = {}
    for it, names in zip(items, _read(items, session), strict=True):
        if it.new is target.block:
            key, index, line = -1, target.index, spot.block.insert_line(slot)
            group_pairs = pairs
        else:
            index = session.new.home(it.stmt)[1]
            key, line = id(it.stmt), it.old.insert_line(it.slot)
            group_pairs = session.align(it.new, it.old)
        entry = groups.setdefault(key, (it.new, it.old, index, line, group_pairs, []))
        entry[5].extend(n for n in names if n not in entry[5])
    renames: dict[str, str] = {}
    for new_block, old_block, index, line, group_pairs, read in groups.values():
        found = infer_renames(new_block, index, old_block, group_pairs, read, session.bindings)
        looped, problems = loop_target_renames(
            new_block,
            new_block.stmts[index].lineno,
            old_block,
            line,
            [n for n in read if n not in found],
            session.bindings,
        )
        if problems:
            return next(iter(problems.values()))
        for name in read:  # the scope around both places is evidence (bound in a nested block)
            if name not in found and name not in looped:
                was = session.scope_rename(new_block, old_block, name)
                if was is None:
                    was = _import_rename(session, name)
                if was is not None:
                    found[name] = was
        for name, old_name in {**found, **looped}.items():
            if renames.setdefault(name, old_name) != old_name:
                return (
                    f"{name!r} stands for {renames[name]!r} in one place and {old_name!r} in "
                    "another of the old version"
                )
    return renames


def _module_imports(src: SourceFile) -> dict[str, list[str]]:
    """Each name the module's own top-level ``import`` statements bind: the modules bound to
    it (``import math as m``: ``m`` is ``math``; ``import os.path``: ``os`` is ``os``)."""
    out: dict[str, list[str]] = {}
    for stmt in src.tree.body:
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                name = a.asname or a.name.split(".")[0]
                out.setdefault(name, []).append(a.name if a.asname else name)
    return out


def _module_decoy(items: list[_Item], session: _Session, renames: dict[str, str]) -> str | None:
    """A name read that today's file imports as one module and the old file as another
    (``import math`` today, ``import cmath as math`` in the old version): the old name reads
    the other module (``math.sqrt`` a complex number there; before session 39, silently)."""
    new_mods, old_mods = _module_imports(session.new), _module_imports(session.old)
    for names in _read(items, session):
        for name in names:
            if name in renames or name in session.alias:
                continue
            mine, theirs = new_mods.get(name), old_mods.get(name)
            if mine and theirs and sorted(set(mine)) != sorted(set(theirs)):
                return (
                    f"{name!r} is the module {mine[0]} in today's code and {theirs[0]} in the "
                    "old version, which would be read"
                )
    return None


def _import_rename(session: _Session, name: str) -> str | None:
    """The old file's name for the module today's file imports as ``name``, or None: today's
    ``import math`` where the old version has ``import math as m`` (``math.floor(r)`` is
    ``m.floor(r)`` there). Only where each file binds the name once, by that top-level
    import, and the old file binds ``name`` nowhere (before session 39: "unbound name")."""
    if session.old.binding_counts.get(name) or session.new.binding_counts.get(name) != 1:
        return None
    mods = _module_imports(session.new).get(name)
    if mods is None or len(mods) != 1:
        return None
    olds = [
        alias
        for alias, bound in _module_imports(session.old).items()
        if bound == mods and session.old.binding_counts.get(alias) == 1
    ]
    return olds[0] if len(olds) == 1 else None


def _nested_items(
    nest: Nested, session: _Session, moving: frozenset[int] = frozenset()
) -> list[_Item] | str:
    """Slots in ``nest.old`` for the statements carried into it, from their own neighbours
    (in order, each after the one before), or why there is none."""
    pairs = session.align(nest.new, nest.old)
    unpaired = {id(st) for k, st in enumerate(nest.new.stmts) if k not in pairs}
    items: list[_Item] = []
    for k in nest.indices:
        if k in pairs:  # a rewrite of the old statement it is aligned with (slice._carry)
            twin = _rewritten(nest, k, pairs[k], session)
            if isinstance(twin, str):
                return twin
            items.append(twin)
            continue
        choice = choose_slot(*session.context(nest.new, k, moving | unpaired), nest.old.norms)
        if choice.slot is not None:
            slot = adjust_slot(nest.old, choice.slot)
        elif nest.limit is not None:  # before the statement that holds the log statement
            slot = nest.limit
        elif nest.floor is not None:  # after it
            slot = nest.floor
        else:
            code = statement_code(session.new, nest.new.stmts[k])
            where = " > ".join(f.label for f in nest.old.chain) or "the module"
            return f"no place for the carried {code!r} inside {where} of the old version"
        gap = _in_gap(nest.new, k, nest.old, pairs, moving, slot, session)
        if isinstance(gap, str):
            return gap
        slot = max(gap, items[-1].slot if items else 0, nest.floor or 0)
        if nest.limit is not None:
            slot = min(slot, nest.limit)
        items.append(_Item(nest.new.stmts[k], nest.new, nest.old, slot))
    return items


def _rewritten(nest: Nested, k: int, j: int, session: _Session) -> _Item | str:
    """Carried statement ``k`` of ``nest.new`` replacing the old statement ``j`` of
    ``nest.old`` it rewrites (slice._carry), on lines of its own; or why not. The old statement
    is a bare call statement whose call it makes (``norm = clip_grad_norm_(ps, 1.0).item()``
    for ``clip_grad_norm_(ps, 1.0)``); the same assignment where the old version threw the
    value away (``l, gn, out = step()`` for ``l, _, out = step()``); or an old log statement of
    the value it assigns (``acc = float(v)`` for ``flor.log("acc", float(v))``: the old line
    stays, binding ``acc`` too, as ``acc = flor.log("acc", float(v))``; flor.log returns the
    value it logs)."""
    stmt, old = nest.new.stmts[k], nest.old.stmts[j]
    made = _Renamer(dict(session.alias)).visit(copy.deepcopy(stmt))
    code = statement_code(session.new, stmt)
    where = " > ".join(f.label for f in nest.old.chain) or "the module"
    bind = _log_binding(made, old, session.old.aliases)
    filled = filled_discards(made, old, session.old)
    if not (_makes_call_of(made, old) or filled or bind):
        return (
            f"it reads what today's {code!r} binds, a rewrite of the old {ast.unparse(old)!r} "
            f"inside {where} {at_line(old.lineno)}: florsql replaces an old line only by one "
            "that makes its call verbatim (`x = f(a)` for `f(a)`), binds what the old one "
            "threw away (`a, b = f()` for `a, _ = f()`) or assigns the value it logs (`x = "
            "f(a)` for `flor.log('x', f(a))`)"
        )
    joined = _joined(session, nest.old, j)
    if joined is not None:
        return joined
    return _Item(stmt, nest.new, nest.old, j, old, bind.targets[0] if bind else None)


def _log_binding(made: ast.stmt, old: ast.stmt, aliases: frozenset[str]) -> ast.Assign | None:
    """``made`` where it assigns, to one target, the value that ``old``, a log statement of
    the old file (flor ``aliases``), logs verbatim (``acc = float(v)`` and ``flor.log("acc",
    float(v))``); else None.

    Example:
        >>> s = lambda code: ast.parse(code).body[0]
        >>> new = s("acc = float(v)")
        >>> _log_binding(new, s("flor.log('acc', float(v))"), frozenset({"flor"})) is new
        True
        >>> _log_binding(new, s("flor.log('acc', float(w))"), frozenset({"flor"}))
    """
    if not (
        isinstance(made, ast.Assign)
        and len(made.targets) == 1
        and isinstance(old, ast.Expr)
        and isinstance(old.value, ast.Call)
    ):
        return None
    call, func = old.value, old.value.func
    if not (
        isinstance(func, ast.Attribute)
        and func.attr == "log"
        and isinstance(func.value, ast.Name)
        and func.value.id in aliases
    ):
        return None
    given = dict(zip(("name", "value"), call.args, strict=False))
    for keyword in call.keywords:
        if keyword.arg is None or keyword.arg in given:
            return None
        given[keyword.arg] = keyword.value
    if (
        len(call.args) > 2
        or any(isinstance(a, ast.Starred) for a in call.args)
        or set(given) != {"name", "value"}
        or not isinstance(given["name"], ast.Constant)
        or not isinstance(given["name"].value, str)
    ):
        return None
    return made if ast.unparse(made.value) == ast.unparse(given["value"]) else None


def _slice_slots(
    block: Block,
    indices: list[int],
    old: Block,
    last: int,
    session: _Session,
    moving: frozenset[int],
    pairs: dict[int, int],
) -> tuple[int, ...] | str:
    """Old slots for the carried statements: their own context, never after the log statement
    (or why a place cannot be told)."""
    unpaired = {id(st) for k, st in enumerate(block.stmts) if k not in pairs}
    slots: list[int] = []
    for k in indices:
        choice = choose_slot(*session.context(block, k, moving | unpaired), old.norms)
        slot = adjust_slot(old, choice.slot) if choice.slot is not None else last
        gap = _in_gap(block, k, old, pairs, moving, slot, session)
        if isinstance(gap, str):
            return gap
        _lower(
            slots, gap, lambda i, at: _in_gap(block, indices[i], old, pairs, moving, at, session)
        )
        slots.append(min(max(gap, slots[-1] if slots else 0), last))
    return tuple(slots)


def _lower(slots: list[int], gap: int, at: Callable[[int, int], int | str]) -> None:
    """Move the slots of the statements before one bound to ``gap`` down to it where each of
    them may go there too (``at(i, slot)``, the slot statement ``i`` takes when offered
    ``slot``, is ``slot``): their order kept, the later one need not follow them past an old
    statement it must precede (session 61: today's ``h0 += [f(b, b)]; h0 += [(step - c) %
    97]`` before ``c = ...``, which the old version has first: the first line, free, went after
    the old ``c = ...`` and took the second along, reading this step's ``c``, silently)."""
    above = [i for i, slot in enumerate(slots) if slot > gap]
    if above and all(at(i, gap) == gap for i in above):
        for i in above:
            slots[i] = gap


def _in_gap(
    block: Block,
    k: int,
    old: Block,
    pairs: dict[int, int],
    moving: frozenset[int],
    slot: int,
    session: _Session,
    lone: bool = False,
) -> int | str:
    """``slot`` for new statement ``k`` of ``block``, checked against the old statements
    between its neighbours that both versions have (the *gap*). Those old statements have no
    counterpart by similarity; where one of them assigns what the statement reads (or touches
    what it assigns), the place inside the gap matters. The new block then has, between the
    same neighbours, statements other than travelling ones: as many as the gap, they stand for
    it one to one (a variable renamed everywhere: ``a = (a * a) % 97`` was ``a_old = (a_old *
    a_old) % 97``), and the slot is found by counting; otherwise it cannot be told, and the
    reason says so. Where nothing in the gap touches the statement's names, ``slot`` stands.
    ``lone``: nothing else in today's block is new; the old gap statements are then code
    today's code dropped or moved, and only those that change what the statement reads (or
    touch what it assigns) count."""
    before = [i for i in range(k) if i in pairs]
    after = [i for i in range(k + 1, len(block.stmts)) if i in pairs]
    lo = pairs[before[-1]] + 1 if before else 0
    hi = pairs[after[0]] if after else len(old.stmts)
    # never on the other side of a neighbour both versions have: a slot chosen by a context
    # that aligns otherwise, or the fallback of an ambiguous one (the log statement's own
    # slot), went past it (session 61: today's ``h0 += [(a + b) % 97]`` before the step loop,
    # between two old ``print`` lines alike, went after the old step loop, reading the ``a``
    # the loop changed, silently)
    slot = min(max(slot, lo), hi)
    if lo >= hi:
        return slot
    mine = block.stmts[k]
    for j in range(lo, hi):  # the old statement it stands for is its place (_twin)
        if _stands_for(mine, old.stmts[j], session.new.aliases):
            return j
    # the old names of what it reads, where evidence renames them (``out`` was ``logits``)
    named = infer_renames(block, k, old, pairs, reads(mine), session.bindings)
    for name in reads(mine) - named.keys():
        if (was := session.scope_rename(block, old, name)) is not None:
            named[name] = was
    reads_mine = frozenset(named.get(n, n) for n in reads(mine))
    binds_mine = assigned(mine)
    scope = session.new_scope_names(block)

    flor = session.old.aliases | session.new.aliases

    def touches(o: ast.stmt) -> bool:
        return bool(
            _binds(o) & (reads_mine | binds_mine)
            or reads(o) & binds_mine
            or (session.changed(o) - flor) & reads_mine
            # a name today's code lacks may be one it renamed, where today's block has new
            # code that may stand for it
            or (not lone and _binds(o) - scope)
        )

    # placed again under today's guard (session 53): the old branch logging the name under
    # its own guard is its old counterpart, beside which it goes, not code it must order with
    again = _names_logged(mine, flor) & session.again

    def counterpart(o: ast.stmt) -> bool:
        return bool(again) and is_compound(o) and bool(_names_logged(o, flor) & again)

    touching = [j for j in range(lo, hi) if touches(old.stmts[j]) and not counterpart(old.stmts[j])]
    if not touching:
        return slot
    new_lo = before[-1] + 1 if before else 0
    new_hi = after[0] if after else len(block.stmts)
    ordered = _ordered_in_gap(block, k, (new_lo, new_hi), old, touching, named, mine)
    if ordered is not None:
        first, last = ordered
        return min(max(slot, first), last) if first <= last else _unsure(old, touching)

    def others(span: range) -> int:  # a ``pass`` stands for nothing (session 61)
        return sum(
            1
            for i in span
            if id(block.stmts[i]) not in moving
            and id(block.stmts[i]) not in session.skip
            and not _empty(block.stmts[i])
        )

    n_before, n_after = others(range(new_lo, k)), others(range(k + 1, new_hi))
    if n_before + n_after == hi - lo:
        return lo + n_before
    return _unsure(old, touching)


def _empty(stmt: ast.stmt) -> bool:
    """``pass`` or ``...``: a statement that does nothing."""
    return isinstance(stmt, ast.Pass) or (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and stmt.value.value is Ellipsis
    )


def _order_kept(
    block: Block, k: int, old: Block, pairs: dict[int, int], slot: int, session: _Session
) -> int | str:
    """``slot`` for new statement ``k`` of ``block``, moved where needed so that each old
    statement of the block that changes what it reads (or reads or binds what it assigns) stays
    on the side of it that today's code has that statement on. The slot is chosen by the
    neighbours both versions have, and an old statement that today's code moved past one of
    them is no neighbour: ``sched.step(); val_loss = evaluate(net)`` in the old version,
    ``val_loss = evaluate(net); flor.log("lr_at", lr()); sched.step()`` today placed the log
    statement after ``val_loss``, after the scheduler's step (the rate one epoch late,
    silently). Today's side of an old statement is that of its aligned counterpart, or of the
    one unaligned statement of today's block written the same (an edited constant is no
    evidence: it may have moved or been replaced); one with neither (code today's code dropped
    or rewrote) is ``_in_gap``'s, and the slot is not moved across it. Where no slot keeps
    every side, the reason says so."""
    mine = block.stmts[k]
    flor = session.old.aliases | session.new.aliases
    reads_mine: set[str] = set()
    for name in reads(mine):
        was = session.scope_rename(block, old, name)
        reads_mine.add(name if was is None else was)
    binds_mine = assigned(mine)
    unpaired_new = [i for i in range(len(block.stmts)) if i not in pairs and i != k]
    back = {j: i for i, j in pairs.items()}
    first, last = 0, len(old.stmts)
    wrong: list[int] = []  # old statements whose same-written counterpart is on the other side
    loose: list[int] = []  # old statements with no counterpart
    mapped: list[tuple[int, int]] = []  # (old index, today's index) of those with one
    for j, o in enumerate(old.stmts):
        touching = (
            _binds(o) & reads_mine
            or (reads(o) | _binds(o)) & binds_mine
            or (session.changed(o) - flor) & reads_mine
        )
        if not touching:
            continue
        if j in back:
            i: int | None = back[j]
        else:
            text = ast.dump(o)
            same = [n for n in unpaired_new if ast.dump(block.stmts[n]) == text]
            if not same and _call_head(o) is not None:
                # a call statement today's code edited the arguments of (``zero_grad()`` for
                # ``zero_grad(set_to_none=False)``): the one today's call of the same function
                same = [n for n in unpaired_new if _call_head(block.stmts[n]) == _call_head(o)]
            i = same[0] if len(same) == 1 else None
            if (
                i is not None
                and (i < k) != (j < slot)
                and not _anchored(old, back, j, slot, session)
            ):
                wrong.append(j)
        if i is None:
            loose.append(j)
        else:
            mapped.append((j, i))
            if i < k:
                first = max(first, j + 1)
            else:
                last = min(last, j)
    to = slot
    if wrong:
        to = min(max(slot, first), last)
        if first > last or any(min(to, slot) <= j < max(to, slot) for j in loose):
            to = -1
    if to >= 0:
        swapped = _swapped(mapped, k, to)
        if swapped is None:
            return to
        a, b = (old.stmts[j] for j in swapped)
        return (
            f"today's code runs {_first_line(b)!r} before {_first_line(a)!r}, the old version "
            f"after it ({at_line(b.lineno)}), both on the same side of it: no place keeps the "
            "order of everything that changes what it reads"
        )
    o = old.stmts[wrong[0]]
    today, there = ("after", "before") if wrong[0] < slot else ("before", "after")
    return (
        f"today's code runs {ast.unparse(o)!r} {today} it, the old version {there} the place "
        f"its neighbours give it ({at_line(o.lineno)}), and no place keeps the order of "
        f"everything that changes what it reads"
    )


def _call_head(stmt: ast.stmt) -> str | None:
    """The called function of a call statement (``opt.zero_grad`` of ``opt.zero_grad(...)``),
    as a dump; None for any other statement."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        return ast.dump(stmt.value.func)
    return None


def _first_line(stmt: ast.stmt) -> str:
    """A statement's code, its first line only (a loop's header)."""
    return ast.unparse(stmt).splitlines()[0]


def _swapped(mapped: list[tuple[int, int]], k: int, slot: int) -> tuple[int, int] | None:
    """Two old statements (old indices, in old order) that change what statement ``k`` reads,
    on the same side of ``slot`` as their counterparts are of ``k`` today, whose order today's
    code swapped: the value read there is not today's (session 47, sweep L: the old ``step();
    zero_grad()`` and today's ``zero_grad()`` moved to the top of the step, both before a
    gradient norm logged after the loss: the slot after the old ``zero_grad`` read zeros).
    None where each side keeps today's order."""
    for side in (True, False):
        here = sorted((j, i) for j, i in mapped if (j < slot) == side and (i < k) == side)
        for n, (j1, i1) in enumerate(here):
            for j2, i2 in here[n + 1 :]:
                if i2 < i1:
                    return j1, j2
    return None


def _anchored(old: Block, back: dict[int, int], j: int, slot: int, session: _Session) -> bool:
    """Whether an aligned old statement between old statement ``j`` and ``slot`` reads what
    ``j`` changes: that neighbour moved past ``j`` with the statement (today's ``flor.log("w",
    w); flor.log("h", w); w = shrink(w)``, the old ``w = shrink(w); flor.log("w", w)``), so
    the statement goes with its neighbour, whose value it shares, not by ``j``."""
    moved = old.stmts[j]
    changes = _binds(moved) | session.changed(moved)
    span = range(j + 1, slot) if j < slot else range(slot, j)
    return any(c in back and reads(old.stmts[c]) & changes for c in span)


def _changed_in_place(stmt: ast.stmt, modules: frozenset[str]) -> frozenset[str]:
    """Names whose objects ``stmt`` changes without binding them: a method called as a
    statement (``sched.step()``, ``recent.append(x)``), an attribute or a subscript stored
    (``stats["n"] = 0``), an in-place function (``clip_grad_norm_(net.parameters(), 1.0)``).
    Module names are not counted (``torch.nn.utils.clip_grad_norm_(...)`` changes no
    ``torch``)."""
    kills, updates = changes(stmt)
    out = {u.split(".", 1)[0] for u in updates} | {k.split(".", 1)[0] for k in kills if "." in k}
    for node in ast_nodes(stmt):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.endswith("_") and not name.endswith("__") and name not in _NOT_IN_PLACE:
                out |= set(_in_place_reach(node, modules))
    return frozenset(out - modules)


def _names_logged(stmt: ast.stmt, aliases: frozenset[str]) -> frozenset[str]:
    """The literal names the ``flor.log`` calls in ``stmt`` log."""
    return frozenset(
        node.args[0].value
        for node in ast_nodes(stmt)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "log"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in aliases
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def _unsure(old: Block, touching: list[int]) -> str:
    names = sorted(
        set().union(
            *(_binds(old.stmts[j]) for j in touching),
            *(_changed_in_place(old.stmts[j], frozenset()) for j in touching),
        )
    )
    what = f" ({', '.join(names[:3])})" if names else ""
    return (
        f"cannot tell its place among old statements that today's code lacks or rewrote"
        f"{what}, {at_line(old.stmts[touching[0]].lineno)}"
    )


def _ordered_in_gap(
    block: Block,
    k: int,
    span: tuple[int, int],
    old: Block,
    touching: list[int],
    named: dict[str, str],
    mine: ast.stmt,
) -> tuple[int, int] | None:
    """Where statement ``k`` may go among the old gap statements ``touching`` (old indices),
    by the order of the names they share in today's block (between ``span``): an old statement
    that assigns a name the statement reads comes before it if today's block assigns that name
    before it (``loss = train_step(idx)`` was inlined into ``loss = loss_fn(...)``), after it
    if today's block assigns it after; one that reads or assigns what the statement assigns,
    likewise. Names are compared as the old version calls them (``named``). ``(first, last)``
    slot bounds, or None where a name gives no order."""

    def binds(st: ast.stmt) -> set[str]:
        return {named.get(n, n) for n in _binds(st)}

    def uses(st: ast.stmt) -> set[str]:
        return {named.get(n, n) for n in reads(st)} | binds(st)

    reads_mine, binds_mine = {named.get(n, n) for n in reads(mine)}, binds(mine)
    first, last = 0, len(old.stmts)
    sides_of = (range(span[0], k), range(k + 1, span[1]))
    for j in touching:
        o = old.stmts[j]
        by_binding, by_use = _binds(o) & reads_mine, (reads(o) | _binds(o)) & binds_mine
        if not by_binding and not by_use:
            return None  # a name today's code lacks: no order to read
        sides = {
            side
            for side, lines in enumerate(sides_of)
            for i in lines
            if by_binding & binds(block.stmts[i]) or by_use & uses(block.stmts[i])
        }
        if len(sides) != 1:
            return None
        if sides == {0}:
            first = max(first, j + 1)
        else:
            last = min(last, j)
    return first, last


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


def _decoy(items: list[_Item], session: _Session, renames: dict[str, str]) -> str | None:
    """A name read that today's code binds, in a block around the statement, by a statement
    the old version has with another name in that place (``a, b, c = 1, 2, 3`` was ``a_old,
    b, c = 1, 2, 3``): today's ``a`` was ``a_old``, so the old version's own ``a``, if any, is
    something else, and reading it would be silently wrong. (Where a value showed the rename
    up to constants, it was inferred before this, and the name is not looked at again.) A
    name a carried statement binds is looked at too: binding today's ``a`` in the old version
    is a second ``a_old`` (an old statement rewritten beyond recognition, not new code). A
    statement and the old one it replaces (``l, gn, out = step()`` for ``l, _, out = step()``)
    are not compared: the old one is gone."""
    replaced = {(id(it.stmt), id(it.twin)) for it in items if it.twin is not None}
    for names, it in zip(_read(items, session), items, strict=True):
        names = [*names, *sorted(_binds(it.stmt))]
        wanted = [n for n in dict.fromkeys(names) if n not in renames and n not in session.alias]
        new_block, old_block = it.new, it.old
        while wanted:
            pairs = session.align(new_block, old_block)
            for k, j in pairs.items():
                stmt, other = new_block.stmts[k], old_block.stmts[j]
                if (id(stmt), id(other)) in replaced:
                    continue
                for name in wanted:
                    was = binding_counterpart(stmt, other, name)
                    if was is not None and was != name:
                        return (
                            f"{name!r} is what the old version calls {was!r} "
                            f"({at_line(other.lineno)}), and its own {name!r} would be another "
                            "value"
                        )
            if id(new_block) not in session.new.parents or id(old_block) not in session.old.parents:
                break
            (new_block, at), (old_block, old_at) = (
                session.new.parents[id(new_block)],
                session.old.parents[id(old_block)],
            )
            if isinstance(new_block.stmts[at], _SCOPES) or isinstance(
                old_block.stmts[old_at], _SCOPES
            ):
                break
    return None


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _names_read(expr: ast.expr) -> set[str]:
    return {
        n.id for n in ast_nodes(expr) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }


def _binds(stmt: ast.stmt) -> frozenset[str]:
    """Names a carried statement binds for what follows it (a ``for`` loop's variable too, which
    outlives the loop), not the variables of comprehensions inside it."""
    own = {
        n.id
        for node in ast_nodes(stmt)
        if isinstance(node, ast.comprehension)
        for n in ast_nodes(node.target)
        if isinstance(n, ast.Name)
    }
    return assigned(stmt) - own


def _overwrites(
    items: list[_Item], session: _Session, renames: dict[str, str], branches: bool = False
) -> str | None:
    """One of ``items`` (carried statements) that would assign a name the old version binds in
    that scope in a way the new version does not: running it there would change what the old
    code computes (``scale = 10 ** epoch`` carried where the old code has a ``scale = 2.0`` of
    its own that the new version dropped). Where each old binding of the name is one the new
    version has too (``best = 99.0``, and the new ``if val < best: best = val`` travels), it is
    today's program the carried statement completes. ``branches``: placed for runs that never
    logged its name where the old version logs it in a branch; an old binding in an ``if`` of
    the block is not one such a run ran (:func:`_moved_here`)."""
    for it in items:
        for name in sorted(_binds(it.stmt) - _twin_binds(it)):
            old_name = renames.get(name, name)
            line = it.old.insert_line(it.slot)
            if (
                old_name in session.bindings.loads(it.old)
                and session.bindings.loads_outside_loops(it.old, old_name)
                and session.bindings.read_after(it.old, line, old_name)
            ):
                # the old code reads it: changing it would change the old run itself, and its
                # checkpoints would no longer be that run's (``tot = 0.0`` carried before the
                # step loop where the old version sums over the whole run)
                code = head(session.new, it.stmt)
                return (
                    f"carrying {code!r} would change {old_name!r}, which the old version's own "
                    "code reads: the old run would not be the one recorded"
                )
            if old_name != name:
                # the old name stands for the new one, on evidence; but a carried binding the
                # old version has already (under its old name) would run twice there: ``b =
                # (b * b) % 97`` carried beside the old ``b_old = (b_old * b_old) % 97``
                # (before session 39, silently: 64 for 18)
                moved = _moved_here(items, it, name, session, renames)
                if moved:
                    code = head(session.new, it.stmt)
                    return (
                        f"carrying {code!r} would change {old_name!r}: the old version has "
                        f"that binding already ({at_line(moved)}), and would run it twice"
                    )
                continue
            old_binds = _binding_forms(session.old, session.bindings, it.old, name)
            new_binds = _binding_forms(session.new, session.bindings, it.new, name)
            extra = sorted(
                (line, form) for form, line in old_binds.items() if form not in new_binds
            )
            if extra:
                code = head(session.new, it.stmt)
                where = "as a parameter" if extra[0][0] == 0 else at_line(extra[0][0])
                return (
                    f"carrying {code!r} would change {name!r}, which the old version binds "
                    f"otherwise ({where})"
                )
            moved = _moved_here(items, it, name, session, branches=branches)
            if moved:
                code = head(session.new, it.stmt)
                return (
                    f"carrying {code!r} would change {name!r}: the old version has that "
                    f"binding in another place ({at_line(moved)}; moved or edited since), "
                    "and would run it twice"
                )
    return None


def _moved_here(
    items: list[_Item],
    it: _Item,
    name: str,
    session: _Session,
    renames: dict[str, str] | None = None,
    branches: bool = False,
) -> int | None:
    """The old line of a binding of ``name`` whose counterpart in today's code is a carried
    statement, or None: an old binding form (literals normalized away) the new scope has no
    more often outside the carried code than the old scope has it at all. The old version
    then binds ``name`` so at another place (inside an ``if`` or ``with`` it left since, or
    out of the ``if`` today's code put it in, or with an edited constant: ``y = epoch * 10 +
    2`` under ``if epoch % 2 == 0`` where today's ``y = epoch * 10 + 1`` stands alone), and
    carrying it would run it a second time there: the old value replaced by today's, or
    today's where the old code had none (before session 39, silently). With ``branches``, the
    old bindings in an ``if`` of ``it``'s old block are left out: the statement is placed for
    runs that never took that branch (session 50), and no old read after it sees the carried
    binding (:func:`_overwrites` checked that first)."""
    spans = [
        (
            min([c.stmt.lineno, *(d.lineno for d in getattr(c.stmt, "decorator_list", []))]),
            c.stmt.end_lineno or c.stmt.lineno,
        )
        for c in items
    ]
    renames = renames or {}
    old_forms = _binding_counts(session.old, session.bindings, it.old, renames.get(name, name))
    if branches:
        beside = _branch_lines(it.old)
        old_forms = {
            form: kept
            for form, lines in old_forms.items()
            if (kept := [line for line in lines if line not in beside])
        }
    new_forms = _binding_counts(
        session.new,
        session.bindings,
        it.new,
        name,
        skip=lambda line: any(a <= line <= b for a, b in spans),
        renames=renames,
    )
    carried_forms = {
        _renamed_form(stmt, renames)
        for line in session.bindings.lines_of(it.new, name)
        if any(a <= line <= b for a, b in spans)
        and (stmt := session.new.deepest.get(line)) is not None
    }
    for form, lines in old_forms.items():
        if form in carried_forms and len(new_forms.get(form, [])) < len(lines):
            return lines[0]
    return None


def _branch_lines(block: Block) -> frozenset[int]:
    """The lines of the :data:`~florsql.propagate.slice.BRANCHING` statements of ``block``
    (``if __name__ == "__main__":`` aside: it runs whenever the script does)."""
    return frozenset(
        line
        for st in block.stmts
        if isinstance(st, BRANCHING) and not main_guard(st)
        for line in range(st.lineno, (st.end_lineno or st.lineno) + 1)
    )


def _binding_counts(
    src: SourceFile,
    bindings: Bindings,
    block: Block,
    name: str,
    skip: Callable[[int], bool] = lambda line: False,
    renames: dict[str, str] | None = None,
) -> dict[str, list[int]]:
    """Each binding statement of ``name`` in ``block``'s scope by normal form (today's names
    read as ``renames`` gives their old ones): its lines (those ``skip`` keeps out left out;
    parameters not counted)."""
    forms: dict[str, list[int]] = {}
    for line in bindings.lines_of(block, name):
        stmt = src.deepest.get(line)
        if line == 0 or stmt is None or skip(line):
            continue
        forms.setdefault(_renamed_form(stmt, renames or {}), []).append(line)
    return forms


def _renamed_form(stmt: ast.stmt, renames: dict[str, str]) -> str:
    """:func:`normalize` of ``stmt`` with each name ``renames`` has read as its old name."""
    if not renames:
        return normalize(stmt)
    tree = copy.deepcopy(stmt)
    for node in ast_nodes(tree):
        if isinstance(node, ast.Name) and node.id in renames:
            node.id = renames[node.id]
    return normalize(tree)


#: names with a trailing underscore that change nothing: numpy's scalar types
#: (``np.bool_(epoch % 2)`` makes a value)
_NOT_IN_PLACE = frozenset(
    {"bool_", "int_", "float_", "complex_", "str_", "bytes_", "object_", "unicode_", "string_"}
)


def _in_place_reach(node: ast.Call, modules: frozenset[str]) -> list[str]:
    """The names whose objects an in-place call changes: a method's receiver
    (``net[0].weight.mul_``, ``t.detach().clamp_``: a view shares its base's storage), or the
    arguments of a module's function (``torch.nn.utils.clip_grad_norm_(net.parameters())``);
    nothing for a method of a new object (``torch.zeros(2).add_(x)``, ``x.clone().clamp_(0,
    1)``)."""
    func = node.func
    base: ast.AST = func.value if isinstance(func, ast.Attribute) else func
    made = False
    while isinstance(base, ast.Attribute | ast.Subscript | ast.Call):
        made |= isinstance(base, ast.Call)
        if (
            isinstance(base, ast.Call)
            and isinstance(base.func, ast.Attribute)
            and base.func.attr in ("clone", "copy")
        ):
            return []  # a copy's method (``x.clone().clamp_(0, 1)``): refused until session 58
        base = base.func if isinstance(base, ast.Call) else base.value
    root = base.id if isinstance(base, ast.Name) else None
    if isinstance(func, ast.Attribute) and root is not None and root not in modules:
        return [root]
    if made:
        return []
    return [
        n.id
        for arg in [*node.args, *(k.value for k in node.keywords)]
        for n in ast_nodes(arg)
        if isinstance(n, ast.Name)
    ]


def _in_place(items: list[_Item], session: _Session) -> str | None:
    """A travelling statement that calls an in-place function (PyTorch's trailing underscore:
    ``clip_grad_norm_(net.parameters(), 1.0)``, ``w.mul_(0.5)``) on what the old version holds,
    where it replaces no old line that made that call: the replayed run would no longer be the
    recorded one (gradients clipped that never were), while the checkpoints it starts from are
    that run's; a value computed from them, and one computed in a full re-run, differ."""
    modules = session.old.imported
    # which names hold old objects, or their parts, as the travelling code runs: a list of an
    # old module's parameters made by carried code (``ps = list(net.parameters())``, ``[p for
    # p in net.parameters()]``) holds the old parameters (before session 30: taken as today's
    # own, and ``clip_grad_norm_(ps, 1.0)`` was carried, silently)
    owners = _Owners(session, elements=True)
    for it in items:
        inner = _Owners(session, elements=True)
        inner.own = dict(owners.own)
        inner.bind(it.stmt)  # its own bindings (a temporary ``y = x.clone(); y.mul_(2)``)
        for node in ast_nodes(it.stmt):
            if not isinstance(node, ast.Call) or it.twin is not None:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if not name.endswith("_") or name.endswith("__") or name in _NOT_IN_PLACE:
                continue
            reached = [
                n
                for n in dict.fromkeys(_in_place_reach(node, modules))
                if not inner.own.get(n, n in _BUILTINS and n not in session.old.bound_names)
                and n not in session.new.aliases
                and n not in modules
            ]
            if reached:
                code = head(session.new, it.stmt).strip()
                return (
                    f"{code!r} calls {name}, which changes "
                    f"{', '.join(_held(n, inner, session) for n in reached)} in place where the "
                    "old version did not: the old run would not be the one recorded"
                )
        owners.bind(it.stmt)
    return None


#: attributes of PyTorch's objects that a plain store changes the training through, even where
#: today's file stores them itself (``net.training = False``)
_FRAMEWORK_ATTRS = frozenset(
    {
        "training",
        "data",
        "grad",
        "requires_grad",
        "weight",
        "bias",
        "param_groups",
        "state",
        "defaults",
        "lr",
        "momentum",
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }
)


def _store_chain(target: ast.expr) -> tuple[str | None, ast.expr | None]:
    """The root name of a stored attribute or subscript target (through calls:
    ``next(iter(opt.param_groups))["lr"]`` is ``opt``'s), and the first link after it."""
    node: ast.expr = target
    first: ast.expr | None = None
    while True:
        if isinstance(node, ast.Attribute | ast.Subscript):
            first, node = node, node.value
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                first, node = None, func.value
            elif node.args:
                first, node = None, node.args[0]
            else:
                return None, None
        else:
            break
    return (node.id if isinstance(node, ast.Name) else None), first


def _stored(stmt: ast.stmt) -> list[ast.expr]:
    """The attribute and subscript targets ``stmt`` stores into, deletes, or updates in place
    (``opt.param_groups[0]["lr"] *= 0.5``, ``net.weight.data = w``), nested blocks included."""
    out: list[ast.expr] = []
    for node in ast_nodes(stmt):
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        elif (target := setattr_target(node)) is not None:
            targets = [target]
        elif isinstance(node, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith):
            targets = (
                [node.target]
                if isinstance(node, ast.For | ast.AsyncFor)
                else [i.optional_vars for i in node.items if i.optional_vars is not None]
            )
        else:
            continue
        for t in targets:
            for sub in ast_nodes(t):
                if isinstance(sub, ast.Attribute | ast.Subscript) and isinstance(
                    sub.ctx, ast.Store | ast.Del
                ):
                    out.append(sub)
    return out


def _new_attribute(first: ast.expr, session: _Session) -> bool:
    """Whether the first link of a stored path is today's own: an attribute today's file
    assigns itself (``self.ep_loss = 0.0``) that the old file never names, or a string key the
    old file never spells (``stats["gn"]``); no old code, and no library code, reads it."""
    if isinstance(first, ast.Attribute):
        attr = first.attr
        if attr in _FRAMEWORK_ATTRS or attr in session.old.identifiers:
            return False
        return attr in session.new.stored_attributes
    if isinstance(first, ast.Subscript):
        key = first.slice
        return (
            isinstance(key, ast.Constant)
            and isinstance(key.value, str)
            and key.value not in session.old.string_constants
            and key.value not in session.old.identifiers
        )
    return False


#: methods that only write out what they are given: called by carried code on an old object,
#: they change nothing the run computes
_OUTPUT_METHODS = OUTPUT_METHODS

#: calls that hand back an object they were given, or one of its parts
_PASS_THROUGH = frozenset({"next", "iter", "getattr", "vars", "enumerate", "zip", "reversed"})
#: calls that make a new container of the objects they were given
_CONTAINERS = frozenset({"list", "tuple", "set", "sorted", "filter", "frozenset"})


class _Owners:
    """Which names, as travelling code runs, hold what the old version holds: a name the old
    version binds, or one that travelling code binds to a part of it (``g =
    opt.param_groups[0]``, ``for g in opt.param_groups``, ``p = next(net.parameters())``).
    A name travelling code binds to a value it makes (``m = {}``, ``acc = torch.zeros(3)``) is
    today's own, and so is a name the old version never binds."""

    def __init__(self, session: _Session, *, elements: bool = False) -> None:
        self.session = session
        self.own: dict[str, bool] = {}  # bound by travelling code: True where today's own
        #: whether a container made of old objects counts as old (``list(net.parameters())``,
        #: ``[p for p in net.parameters()]``): what an in-place function changes is its
        #: elements, where a store changes the new container itself
        self.elements = elements

    def old(self, name: str | None) -> bool:
        if name is None or name in self.session.new.aliases:
            return False
        if name in self.own:
            return not self.own[name]
        return name in self.session.old.bound_names or name in self.session.old.imported

    def _reaches_old(self, value: ast.expr) -> bool:
        """Whether ``value`` may be (a part of) an old object rather than a new one."""
        node = value
        while True:
            if isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
                node = node.value
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else None
                if name in _PASS_THROUGH or (self.elements and name in _CONTAINERS):
                    return any(self._reaches_old(a) for a in node.args)
                if isinstance(func, ast.Attribute) and func.attr in {
                    "parameters",
                    "named_parameters",
                    "modules",
                    "children",
                    "named_modules",
                    "buffers",
                    "named_buffers",
                    "state_dict",
                    "get",
                    "setdefault",
                    "values",
                    "items",
                    "detach",
                    "view",
                    "view_as",
                    "reshape",
                    "flatten",
                    "t",
                    "T",
                    "squeeze",
                    "unsqueeze",
                    "expand",
                    "narrow",
                    "select",
                    "split",
                    "chunk",
                    "unbind",
                    "transpose",
                    "permute",
                    "as_strided",
                    "data",
                    "__getitem__",
                }:
                    node = func.value
                    continue
                return False  # a call makes a value (``torch.zeros(3)``, ``x.clone()``)
            elif isinstance(node, ast.Name):
                return self.old(node.id)
            elif isinstance(node, ast.Tuple | ast.List):
                return any(self._reaches_old(e) for e in node.elts)
            elif isinstance(node, ast.IfExp):
                return self._reaches_old(node.body) or self._reaches_old(node.orelse)
            elif self.elements and isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
                saved = dict(self.own)
                for gen in node.generators:  # the comprehension's variables, for its element
                    old = self._reaches_old(gen.iter)
                    for n in ast_nodes(gen.target):
                        if isinstance(n, ast.Name):
                            self.own[n.id] = not old
                try:
                    return self._reaches_old(node.elt)
                finally:
                    self.own = saved
            else:
                return False

    def bind(self, stmt: ast.stmt) -> None:
        """Note what ``stmt`` binds (its nested blocks too), in order."""
        for node in ast_nodes(stmt):
            pairs: list[tuple[ast.expr, ast.expr | None]] = []
            if isinstance(node, ast.Assign):
                pairs = [(t, node.value) for t in node.targets]
            elif isinstance(node, ast.NamedExpr) or (
                isinstance(node, ast.AnnAssign) and node.value is not None
            ):
                pairs = [(node.target, node.value)]
            elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
                pairs = loop_parts(node.target, node.iter)
            elif isinstance(node, ast.With | ast.AsyncWith):
                pairs = [(i.optional_vars, None) for i in node.items if i.optional_vars]
            for target, value in pairs:
                old = value is not None and self._reaches_old(value)
                for n in ast_nodes(target):
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                        self.own[n.id] = not old
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.own[node.name] = True

    def root(self, node: ast.expr) -> str | None:
        """The name a chain of attributes, subscripts and calls starts from."""
        while True:
            if isinstance(node, ast.Attribute | ast.Subscript):
                node = node.value
            elif isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Attribute):
                    node = func.value
                elif isinstance(func, ast.Name) and func.id in _PASS_THROUGH and node.args:
                    node = node.args[0]
                else:
                    return None
            else:
                return node.id if isinstance(node, ast.Name) else None


class _Changers:
    """The functions that change what they are given (or a module-level name, keyed
    ``name()``), with how: the old file's (:meth:`_Session.old_changer`, worked out for the names
    asked only), under today's definitions that travelling code makes (set here; None: today's
    own function of that name, which changes nothing)."""

    def __init__(self, session: _Session, before: int | None = None) -> None:
        self.session, self.before = session, before
        self.today: dict[str, str | None] = {}

    def get(self, key: str, default: str | None = None) -> str | None:
        how = self.today[key] if key in self.today else self.session.old_changer(key, self.before)
        return default if how is None else how

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __getitem__(self, key: str) -> str:
        how = self.get(key)
        if how is None:
            raise KeyError(key)
        return how

    def __setitem__(self, key: str, how: str) -> None:
        self.today[key] = how

    def pop(self, key: str, default: str | None = None) -> str | None:
        how = self.get(key, default)
        self.today[key] = None
        return how


def _stores_into_old(items: list[_Item], session: _Session) -> str | None:
    """A travelling statement that changes what the old version holds, where it replaces no
    old line: a store through an attribute or a subscript (``opt.param_groups[0]["lr"] *=
    0.5``, ``net.weight.data *= 0.99``, ``cfg["lr"] = 0.01``, through an alias too: ``for g in
    opt.param_groups: g["lr"] *= 0.5``), or a method called as a statement (``sched.step()``,
    ``net.eval()``, ``hist.append(v)`` inside a new ``if`` that travels whole). As with an
    in-place call (:func:`_in_place`), the replayed run would no longer be the recorded one,
    and a value computed from its checkpoints and one computed in a full re-run differ. An
    attribute or key that is today's own (:func:`_new_attribute`) is no obstacle, nor is a
    method that only writes out (a logger's, a progress bar's: ``_OUTPUT_METHODS``)."""
    owners = _Owners(session)
    changers = _Changers(session)
    for it in items:
        if it.twin is not None:
            owners.bind(it.stmt)
            continue
        for node in ast_nodes(it.stmt):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                how = _changes_arguments(node, session, changers)
                if how:
                    changers[node.name] = f"today's {node.name}() changes its argument, {how}"
                else:
                    changers.pop(node.name, None)  # today's own definition of that name
                changers.pop(f"{node.name}()", None)
        why = _changes_old(it.stmt, owners, session, it.modes, changers)
        if why:
            code = head(session.new, it.stmt).strip()
            return (
                f"{code!r} changes {why} where the old version did not: the old run would "
                "not be the one recorded"
            )
        owners.bind(it.stmt)
    return None


def _changes_old(
    stmt: ast.stmt,
    owners: _Owners,
    session: _Session,
    modes: tuple[ast.expr, ...] = (),
    changers: _Changers | dict[str, str] | None = None,
) -> str | None:
    """What of the old version's ``stmt`` changes (``'opt' in place (...)``), or None.
    ``changers``: functions travelling code defines that change their arguments, with how."""
    changers = changers or {}
    inner = _Owners(session)
    inner.own = dict(owners.own)
    inner.bind(stmt)  # the statement's own bindings (a loop variable over an old list)
    shadowed = _parameters_around(stmt)
    for target in _stored(stmt):
        root = inner.root(target)
        if not (inner.old(root) or owners.old(root)) or root in shadowed.get(id(target), ()):
            continue
        _, first = _store_chain(target)
        if first is not None and _new_attribute(first, session):
            continue
        return f"{_held(root, inner, session)} in place ({ast.unparse(target)})"
    for node in ast_nodes(stmt):
        if not (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
        ):
            continue
        func = node.value.func
        if func.attr in _OUTPUT_METHODS or (func.attr.endswith("_") and func.attr[-2:] != "__"):
            continue  # an in-place call: :func:`_in_place` has its own rule
        if node in _switches(stmt) and ast.unparse(func.value) in {ast.unparse(m) for m in modes}:
            continue  # a mode switch, saved before and restored after (``_Item.modes``)
        root = inner.root(func.value)
        if root in session.old.imported and root not in inner.own:
            continue  # a module's function (``torch.save(...)``, ``logging.info(...)``)
        if root in shadowed.get(id(node), ()):
            continue  # a parameter of a function the code defines: its calls' rule, below
        if inner.old(root) or owners.old(root):
            if func.attr in ("eval", "train"):
                return f"the mode of {_held(root, inner, session)} ({ast.unparse(node.value)})"
            return f"{_held(root, inner, session)} ({ast.unparse(node.value)})"
    statements = {
        id(n.value) for n in ast_nodes(stmt) if isinstance(n, ast.Expr)
    }  # calls made as statements: the loop above
    for node in ast_nodes(stmt):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func
        if (
            isinstance(callee, ast.Attribute)
            and callee.attr in _MUTATORS
            and id(node) not in statements
        ):
            # its value used (``net2 = net.apply(init)``, ``h = net.register_forward_hook(f)``)
            root = inner.root(callee.value)
            if root not in session.old.imported and (inner.old(root) or owners.old(root)):
                return f"{_held(root, inner, session)} ({ast.unparse(node)})"
        name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
        if isinstance(callee, ast.Name) and f"{name}()" in changers:
            return f"{changers[f'{name}()']} ({ast.unparse(node)})"
        args = [*node.args, *(k.value for k in node.keywords)]
        reached = [a for a in args if inner._reaches_old(a) or owners._reaches_old(a)]
        if not reached:
            continue
        if _scheduler(callee):
            # a learning-rate scheduler made on an old optimizer sets its learning rate (and
            # ``initial_lr``) as it is made, and each of its steps sets it again
            return (
                f"{_held(inner.root(reached[0]), inner, session)} (a learning-rate scheduler "
                f"made on it, {ast.unparse(node)}, sets its learning rate)"
            )
        why = changers.get(name) if isinstance(callee, ast.Name) else None
        if why is not None:
            return f"{_held(inner.root(reached[0]), inner, session)} ({ast.unparse(node)}: {why})"
    return None


def _parameters_around(stmt: ast.stmt) -> dict[int, frozenset[str]]:
    """For each node of ``stmt`` inside a function it defines, that function's parameters
    (and those of the functions around it): there ``net`` in ``def evaluate(net, X):
    net.eval()`` is the parameter, not the old version's ``net`` (session 46, sweep H: refused
    "changes the mode of 'net'", where a parameter named ``model`` was placed). What the
    function does to its arguments counts at its calls (:func:`_changes_arguments`)."""
    out: dict[int, frozenset[str]] = {}

    def visit(node: ast.AST, params: frozenset[str]) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            names = [*a.posonlyargs, *a.args, *a.kwonlyargs]
            names += [x for x in (a.vararg, a.kwarg) if x is not None]
            params = params | {x.arg for x in names}
        for child in ast.iter_child_nodes(node):
            if params:
                out[id(child)] = params
            visit(child, params)

    visit(stmt, frozenset())
    return out


#: methods that change the object they are called on, even where their value is used
_MUTATORS = frozenset(
    {
        "apply",
        "train",
        "eval",
        "step",
        "zero_grad",
        "load_state_dict",
        "add_param_group",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_backward_hook",
        "register_hook",
        "register_buffer",
        "register_parameter",
        "register_module",
        "add_module",
        "reset_parameters",
        "append",
        "extend",
        "insert",
        "remove",
        "clear",
        "pop",
        "popitem",
        "update",
        "set_epoch",
    }
)


def _scheduler(func: ast.expr) -> bool:
    """Whether ``func`` makes a learning-rate scheduler (``torch.optim.lr_scheduler.LambdaLR``,
    ``LinearLR``, ``SWALR``, ``OneCycleLR``, ``get_linear_schedule_with_warmup``...)."""
    chain = []
    node: ast.expr = func
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        chain.append(node.id)
    name = chain[0] if chain else ""
    return (
        "lr_scheduler" in chain
        or name in _SCHEDULERS
        or (name.startswith("get_") and "schedule" in name)  # transformers' helpers
    )


_SCHEDULERS = frozenset(
    {
        "LambdaLR",
        "MultiplicativeLR",
        "StepLR",
        "MultiStepLR",
        "ConstantLR",
        "LinearLR",
        "ExponentialLR",
        "PolynomialLR",
        "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts",
        "CyclicLR",
        "OneCycleLR",
        "SequentialLR",
        "ChainedScheduler",
        "ReduceLROnPlateau",
        "SWALR",
    }
)


def _changes_arguments(
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    session: _Session,
    changers: _Changers | dict[str, str],
    modes: bool = True,
) -> str | None:
    """How a function that travelling code defines changes what it is given (``def decay(o):
    o.param_groups[0]["lr"] *= 0.9``: ``'o.param_groups[0]['lr'] *= 0.9'``), or None: called
    with an old object, it changes that object (before session 30 such a helper was carried
    with its call, silently). ``modes=False``: a mode switch (``model.eval()``) is no change
    here (an old helper's: the mode rules of :mod:`florsql.propagate.slice` judge its calls)."""
    a = fn.args
    params = [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x]
    owners = _Owners(session)
    owners.own = dict.fromkeys(params, False)  # each may be an old object
    owners.old = lambda name: name is not None and owners.own.get(name) is False  # type: ignore[method-assign]
    if modes:
        restored = _restored_modes(fn, set(params), session)
    else:
        restored = tuple(
            n.value.func.value
            for stmt in fn.body
            for n in _switches(stmt)
            if isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Attribute)
        )
    for stmt in fn.body:
        if _changes_old(stmt, owners, session, restored, changers):
            return repr(ast.unparse(stmt).splitlines()[0])
        for node in ast_nodes(stmt):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                in_place = name.endswith("_") and name[-2:] != "__" and name not in _NOT_IN_PLACE
                if in_place and set(_in_place_reach(node, session.old.imported)) & set(params):
                    return repr(ast.unparse(stmt).splitlines()[0])
        owners.bind(stmt)
    return None


def _restored_modes(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, params: set[str], session: _Session
) -> tuple[ast.expr, ...]:
    """The modules (parameters of ``fn``) whose mode ``fn`` switches and switches back to
    training before it returns, where that leaves the old run as it was: ``def evaluate(model,
    ...): model.eval(); ...; model.train(); return vl, va``, called where the old version's
    modules are always in training mode (it never leaves it: ``slice.switches_to_eval``). The
    last statements before the one ``return`` at its end switch each of them back; no other
    ``return`` or ``yield`` leaves it earlier. A module whose mode ``fn`` saved first (``was =
    model.training``) and puts back last (``model.train(was)``) is restored whatever the old
    version's modes are. Empty otherwise: a switch that may outlive the
    call changes the old run (today's ``evaluate()`` that never switches back trained the
    patched re-run's later epochs with dropout off)."""
    switched: dict[str, ast.expr] = {}
    for stmt in fn.body:
        for switch in _switches(stmt):
            receiver = mode_receiver(switch)
            base = receiver
            while isinstance(base, ast.Attribute | ast.Subscript):
                base = base.value
            if receiver is not None and isinstance(base, ast.Name) and base.id in params:
                switched.setdefault(ast.unparse(receiver), receiver)
    if not switched:
        return ()
    body = list(fn.body)
    if body and isinstance(body[-1], ast.Return):
        body = body[:-1]
    exits = [
        n
        for stmt in body
        for n in ast_nodes(stmt)
        if isinstance(n, ast.Return | ast.Yield | ast.YieldFrom)
    ]
    if exits:
        return ()
    # ``was = model.training`` before any switch, ``model.train(was)`` at the end: the mode
    # the call found, whatever it was (session 50, sweep T: refused "changes its argument")
    saved: dict[str, str] = {}
    for stmt in body:
        if _switches(stmt):
            break
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Attribute)
            and stmt.value.attr == "training"
        ):
            saved[stmt.targets[0].id] = ast.unparse(stmt.value.value)
    back: set[str] = set()
    found: set[str] = set()
    for stmt in reversed(body):
        receiver = mode_receiver(stmt)
        if receiver is None:
            break
        if to_training(stmt):
            back.add(ast.unparse(receiver))
        elif _restores_saved(stmt, saved):
            found.add(ast.unparse(receiver))
        else:
            break
    if set(switched) <= found:
        return tuple(switched.values())
    if set(switched) <= back | found and not switches_to_eval(session.old):
        return tuple(switched.values())
    return ()


def _restores_saved(stmt: ast.stmt, saved: dict[str, str]) -> bool:
    """Whether ``stmt`` is ``model.train(was)`` with ``was = model.training`` in ``saved``
    (variable -> the module whose mode it holds)."""
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
        return False
    args = [*call.args, *(k.value for k in call.keywords if k.arg == "mode")]
    if call.func.attr != "train" or len(args) != 1 or not isinstance(args[0], ast.Name):
        return False
    return saved.get(args[0].id) == ast.unparse(call.func.value)


def _held(root: str | None, owners: _Owners, session: _Session) -> str:
    """``'g', a part of what the old version holds,`` where travelling code bound ``g``."""
    if root in owners.own and root not in session.old.bound_names:
        return f"{root!r}, a part of what the old version holds,"
    return repr(root)


def _binding_forms(src: SourceFile, bindings: Bindings, block: Block, name: str) -> dict[str, int]:
    """How ``block``'s scope binds ``name``: each binding statement's normal form, with its
    first line (``"<parameter>"``: 0)."""
    forms: dict[str, int] = {}
    for line in bindings.lines_of(block, name):
        stmt = src.deepest.get(line)
        form = "<parameter>" if line == 0 or stmt is None else normalize(stmt)
        forms.setdefault(form, line)
    return forms


def _call_renames(old: Block, missing: list[_Unbound], session: _Session) -> dict[str, str]:
    """Old names for the unbound ones from a helper's single call site."""
    helper = session.old_helpers.enclosing_call(old)
    if helper is None:
        return {}
    return call_renames(helper[0], helper[1], [m.name for m in missing])


def _arguments(
    definition: ast.FunctionDef, call: ast.Call, names: list[str], session: _Session
) -> dict[str, str]:
    """``names`` that are parameters of today's helper ``definition``, mapped to the plain
    names ``call`` passes for them (as the old version spells them)."""
    params = [a.arg for a in [*definition.args.posonlyargs, *definition.args.args]]
    if isinstance(call.func, ast.Attribute) and params[:1] in (["self"], ["cls"]):
        params = params[1:]
    passed = {p: a.id for p, a in zip(params, call.args, strict=False) if isinstance(a, ast.Name)}
    for kw in call.keywords:
        if kw.arg is not None and isinstance(kw.value, ast.Name):
            passed[kw.arg] = kw.value.id
    return {n: session.alias.get(passed[n], passed[n]) for n in names if n in passed}


@dataclass(frozen=True)
class _Unbound:
    name: str  # as the new version calls it
    line: int


def _unbound(
    items: list[_Item],
    session: _Session,
    renames: dict[str, str],
    widened: set[str] | None = None,
) -> list[_Unbound]:
    """The names read that are not bound where they would be read (after ``renames``). A name
    the old loop binds only later in its body counts as bound (from the previous iteration)
    only where today's statement reads it so too: unbound before it in the new version
    (``flor.log("prev", loss if epoch > 0 else None)`` above the step loop), never where the
    new version binds it first in the same iteration (that value is this iteration's)."""
    missing = []
    for names, it in zip(_read(items, session), items, strict=True):
        line = it.old.insert_line(it.slot)
        for name in names:
            old_name = renames.get(name, session.alias.get(name, name))
            if session.added_alias(old_name):
                continue
            key = session.widening(old_name, it.old.scopes)
            extra = session.widened_imports[key] if key is not None else None
            # after the import it widens; a function's body (or a nested one) runs later
            deeper = len(it.old.scopes) > (2 if key is not None and "\0" in key else 1)
            if extra is not None and widened is not None and (deeper or extra.line <= line):
                assert key is not None
                widened.add(key)
                continue
            if session.bindings.is_bound(it.old, line, old_name):
                continue
            carried = session.bindings.is_bound(
                it.old, line, old_name, carried=True
            ) and not session.bindings.is_bound(it.new, it.stmt.lineno, name)
            if not carried:
                missing.append(_Unbound(name, line))
    return missing


def _apply(
    session: _Session, plans: list[_Plan], failed: list[Failure], skipped: tuple[str, ...]
) -> Propagation:
    old, insertions, seen = session.old, [], set()
    removed: set[int] = set()
    leads: dict[tuple[int, int], int] = {}  # lines put before an item's statement
    #: an item's lines, whose it is, and whether it stands in an old statement's place (a
    #: twin: it runs the old code's own call, whose RNG draws the run made too: not guarded)
    sizes: dict[tuple[int, int], tuple[int, str, bool]] = {}
    for plan in plans:
        for it in plan.items:
            if _order(it.stmt) in seen:  # a statement carried by two log statements goes in once
                continue
            seen.add(_order(it.stmt))
            code = statement_code(session.new, it.stmt)
            indent = indent_of(old, it.old)
            text = render(code, indent, newline_of(old), {**session.alias, **plan.renames})
            line = it.old.insert_line(it.slot)
            if it.twin is not None:
                twin = it.twin
                line = twin.lineno
                last = twin.end_lineno or twin.lineno
                removed.update(range(line, last + 1))
                if it.bind is not None:  # the old line itself, binding the value it logs
                    text = _bound(old, twin, it.bind, {**session.alias, **plan.renames})
                else:
                    text = _keep_comment(text, old.lines[last - 1], twin.end_col_offset or 0)
            lead = 0  # lines put before the statement's own
            for mode in it.modes:
                text = _mode_call("_save_modes", mode, plan, session, indent) + text
                lead += 1
            if it is plan.items[-1]:  # the log statement, or the new block around it
                for m in reversed(plan.items):
                    for mode in reversed(m.modes):
                        text += _mode_call("_restore_modes", mode, plan, session, indent)
            leads[_order(it.stmt)] = lead
            sizes[_order(it.stmt)] = (
                len(text.splitlines()),
                plan.target.label,
                it.twin is not None,
            )
            insertions.append(Insertion(line, text, _order(it.stmt)))
    if insertions and session.flor_import is not None:
        insertions.append(session.flor_import)
    for name in sorted({n for plan in plans for n in plan.imports}):
        insertions.append(session.widened_imports[name])
    patched, lines = splice(old, insertions, frozenset(removed))
    placed = [
        Placement(
            name=plan.target.label,
            new_line=plan.log.lineno,
            old_line=lines[_order(plan.target.stmt)]
            + leads.get(_order(plan.target.stmt), 0)
            + plan.log.lineno
            - plan.target.line,
            scope=_scope(plan, session),
            carried=tuple(statement_code(session.new, it.stmt) for it in plan.items[:-1]),
            renamed=dict(sorted(plan.renames.items())),
            binds=_placed_binds(plan),
            pieces=tuple(
                (lines[order], lines[order] + size - 1)
                for order, (size, label, twin) in sorted(sizes.items())
                if label == plan.target.label and order in lines and not twin
            ),
        )
        for plan in plans
    ]
    return Propagation(old.text, patched, tuple(placed), tuple(failed), skipped)


def _mode_call(func: str, receiver: ast.expr, plan: _Plan, session: _Session, indent: str) -> str:
    """``flor._save_modes(net)`` (or ``_restore_modes``) as a line of the old file."""
    return _flor_call(func, ast.unparse(receiver), plan, session, indent)


def _flor_call(func: str, arg: str, plan: _Plan, session: _Session, indent: str) -> str:
    """``flor.func(arg)`` as a line of the old file: through the flor module's name there, or
    by import where the old file has none."""
    module = next(
        (
            n.value.id
            for n in ast_nodes(plan.log)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id in session.new.aliases
        ),
        None,
    )
    imported = {
        (a.asname or a.name): a.name
        for node in session.new.tree.body
        if isinstance(node, ast.Import)
        for a in node.names
    }
    if module is None or imported.get(module) != "florsql":  # ``flor`` of another package
        module = None
    head = module if module is not None else '__import__("florsql")'
    code = f"{head}.{func}({arg})"
    return render(code, indent, newline_of(session.old), {**session.alias, **plan.renames})


def _bound(old: SourceFile, twin: ast.stmt, target: ast.expr, renames: dict[str, str]) -> str:
    """The old lines of ``twin`` (a log statement) with ``target = `` put before its code:
    ``acc = flor.log("acc", float(v))``, every other byte as it was."""
    lines = old.lines[twin.lineno - 1 : twin.end_lineno or twin.lineno]
    name = ast.unparse(_Renamer(renames).visit(copy.deepcopy(target)))
    first, at = lines[0].encode(), twin.col_offset
    lines[0] = (first[:at] + f"{name} = ".encode() + first[at:]).decode()
    return "".join(lines)


def _keep_comment(text: str, line: str, end_col: int) -> str:
    """``text`` (a rendered statement) with the trailing comment of the old statement it
    replaces, which ends at ``end_col`` of ``line``, where it has none of its own."""
    tail = line.encode()[end_col:].decode().rstrip("\r\n")
    body = text.rstrip("\r\n")
    if not tail.lstrip().startswith("#") or "#" in body.splitlines()[-1]:
        return text
    return body + tail + text[len(body) :]


def _placed_binds(plan: _Plan) -> tuple[str, ...]:
    """The old names what travelled for ``plan`` assigns or changes (the log statement's own
    walrus too), less what a replaced statement changed already (the old run's checkpoints
    hold those as this code leaves them)."""
    names: set[str] = set()
    for it in plan.items:
        if it.twin is not None:
            names |= _binds(it.stmt) - _binds(it.twin)
            continue
        names |= _binds(it.stmt)
        kills, updates = changes(it.stmt)
        # an object changed through an attribute or a subscript (``self.ep_loss = 0.0``,
        # ``stats["sum"] += x``): its name, as what a checkpoint restores
        names |= {p.split(".", 1)[0] for p in (*kills, *updates) if "." in p} | set(updates)
    return tuple(sorted({plan.renames.get(n.split(".", 1)[0], n.split(".", 1)[0]) for n in names}))


def _scope(plan: _Plan, session: _Session) -> tuple[str, ...]:
    """The scopes around the placed log statement: the old block's, then those of the new
    blocks that travelled around it."""
    labels = [f.label for f in plan.spot.block.chain]
    if plan.log is not plan.target.stmt:
        block = session.new.home(plan.log)[0]
        labels += [f.label for f in block.chain[len(plan.target.block.chain) :]]
    return tuple(labels)


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
