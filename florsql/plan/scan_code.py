"""The libcst scanner behind :func:`florsql.plan.hindsight.scan_source`.

Kept apart so a query over an unchanged script (its scan cached on disk) never imports libcst.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from florsql.plan.hindsight import FLOR_MODULES, LogSite, ScriptCode, Where

__all__ = ["scan_text"]


def scan_text(text: str, filename: str) -> ScriptCode | None:
    """The log statements and loops of ``text`` (None if it does not parse)."""
    try:
        module = cst.parse_module(text)
    except (cst.ParserSyntaxError, RecursionError):
        return None
    finder = _Finder(_aliases(module))
    MetadataWrapper(module, unsafe_skip_copy=True).visit(finder)
    return finder.result(filename)


def _aliases(module: cst.Module) -> tuple[frozenset[str], dict[str, str]]:
    """(names bound to the flor module, {name bound to florsql.log/loop: "log"/"loop"})."""
    mods: set[str] = set()
    direct: dict[str, str] = {}
    for node in _walk_imports(module):
        if isinstance(node, cst.Import):
            for a in node.names:
                top = cst.helpers.get_full_name_for_node(a.name) or ""
                if top in FLOR_MODULES:
                    mods.add(a.evaluated_alias or top)
        elif isinstance(node.module, cst.Name) and node.module.value in FLOR_MODULES:
            if isinstance(node.names, cst.ImportStar):
                direct.update({"log": "log", "loop": "loop"})
                continue
            for a in node.names:
                name = cst.helpers.get_full_name_for_node(a.name) or ""
                if name in ("log", "loop"):
                    direct[a.evaluated_alias or name] = name
    return frozenset(mods or {"flor"}), direct


def _walk_imports(module: cst.Module) -> list[cst.Import | cst.ImportFrom]:
    found: list[cst.Import | cst.ImportFrom] = []

    class _V(cst.CSTVisitor):
        def visit_Import(self, node: cst.Import) -> None:
            found.append(node)

        def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
            found.append(node)

    module.visit(_V())
    return found


_CallSite = tuple[tuple[str, ...], str | None, int]  # (loop chain, enclosing def, line)


@dataclass
class _RawSite:
    name: str
    line: int
    chain: tuple[str, ...]
    function: str | None  # the innermost enclosing def, if any


class _Finder(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, aliases: tuple[frozenset[str], dict[str, str]]) -> None:
        super().__init__()
        self.modules, self.direct = aliases
        self.loops: list[str] = []
        self.functions: list[str] = []
        self.sites: list[_RawSite] = []
        self.chains: set[tuple[str, ...]] = set()
        self.calls: dict[str, list[_CallSite]] = {}
        self.first_loop_line: int | None = None

    def _flor_call(self, node: cst.Call, attr: str) -> str | None:
        """The literal first argument of ``flor.<attr>(...)``, else None."""
        func = node.func
        ok = (
            isinstance(func, cst.Attribute)
            and func.attr.value == attr
            and isinstance(func.value, cst.Name)
            and func.value.value in self.modules
        ) or (isinstance(func, cst.Name) and self.direct.get(func.value) == attr)
        if not ok or not node.args:
            return None
        arg = node.args[0].value
        if isinstance(arg, cst.SimpleString):
            value = arg.evaluated_value
            return value if isinstance(value, str) else None
        return None

    def _loop_name(self, node: cst.For) -> str | None:
        for call in _calls_in(node.iter):
            name = self._flor_call(call, "loop")
            if name is not None:
                return name
        return None

    def visit_For(self, node: cst.For) -> bool:
        name = self._loop_name(node)
        if name is None:
            return True
        if not self.loops and not self.functions and self.first_loop_line is None:
            self.first_loop_line = self.get_metadata(PositionProvider, node).start.line
        node.iter.visit(self)
        self.loops.append(name)
        self.chains.add(tuple(self.loops))
        node.body.visit(self)
        self.loops.pop()
        if node.orelse is not None:
            node.orelse.visit(self)
        return False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.append(node.name.value)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.functions.pop()

    def visit_Call(self, node: cst.Call) -> None:
        name = self._flor_call(node, "log")
        if name is not None:
            line = self.get_metadata(PositionProvider, node).start.line
            fn = self.functions[-1] if self.functions else None
            self.sites.append(_RawSite(name, line, tuple(self.loops), fn))
        elif isinstance(node.func, (cst.Name, cst.Attribute)):
            # ``fit()`` or a method, ``self.train_epoch()``: matched by name (a name shared
            # by two functions gives both their call sites: more replay, never less)
            callee = node.func.value if isinstance(node.func, cst.Name) else node.func.attr.value
            fn = self.functions[-1] if self.functions else None
            line = self.get_metadata(PositionProvider, node).start.line
            self.calls.setdefault(callee, []).append((tuple(self.loops), fn, line))

    def result(self, filename: str) -> ScriptCode:
        sites = []
        for raw in self.sites:
            for chain, top_line in _resolve(raw.function, raw.chain, raw.line, self.calls, 0):
                where: Where = "loop" if chain is not None else "unknown"
                if chain == ():
                    first = self.first_loop_line
                    where = "head" if first is not None and top_line < first else "tail"
                sites.append(LogSite(raw.name, raw.line, chain, where, filename))
                if chain is not None:
                    self.chains.update(chain[: i + 1] for i in range(len(chain)))
        loops = tuple(sorted(self.chains, key=lambda c: (len(c), c)))
        return ScriptCode(filename=filename, sites=tuple(dict.fromkeys(sites)), loops=loops)


def _calls_in(node: cst.CSTNode) -> list[cst.Call]:
    found: list[cst.Call] = []

    class _V(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            found.append(n)

    node.visit(_V())
    return found


def _resolve(
    function: str | None,
    chain: tuple[str, ...],
    line: int,
    calls: dict[str, list[_CallSite]],
    depth: int,
) -> list[tuple[tuple[str, ...] | None, int]]:
    """(full chain, line of the top-level statement) of a site, through its function's callers."""
    if function is None:
        return [(chain, line)]
    sites = calls.get(function, [])
    if not sites or depth > 3:
        return [(None, line)]  # a function never called here (or too deep): context unknown
    out: list[tuple[tuple[str, ...] | None, int]] = []
    for outer, caller, call_line in sites:
        for full, top in _resolve(caller, outer, call_line, calls, depth + 1):
            item = (None if full is None else full + chain, top)
            if item not in out:
                out.append(item)
    return out
