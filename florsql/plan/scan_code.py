"""The libcst scanner: :func:`florsql.plan.hindsight.scan_source` scans with :mod:`ast`
(:mod:`florsql.plan.scan_ast`), and with this only a file :mod:`ast` cannot parse. It is also
the reference the ast scanner is tested against (tests/test_scan_ast.py).
"""

from __future__ import annotations

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from florsql.plan.hindsight import FLOR_MODULES, ScriptCode
from florsql.plan.scan_ast import CallSite, RawSite, _utf8, finish

__all__ = ["scan_text"]


def scan_text(text: str, filename: str) -> ScriptCode | None:
    """The log statements and loops of ``text`` (None if it does not parse)."""
    try:
        module = cst.parse_module(text)
    except (cst.ParserSyntaxError, RecursionError):
        return None
    finder = _Finder(_aliases(module))
    finder.looping = _looping(module, finder)
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


class _Finder(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, aliases: tuple[frozenset[str], dict[str, str]]) -> None:
        super().__init__()
        self.modules, self.direct = aliases
        self.loops: list[str] = []
        self.outer_loops: list[list[str]] = []  # the loops around each def being visited
        self.functions: list[str] = []
        self.sites: list[RawSite] = []
        self.chains: set[tuple[str, ...]] = set()
        self.calls: dict[str, list[CallSite]] = {}
        #: the first flor loop outside every flor loop, per enclosing def (None: the module)
        self.first_loops: dict[str | None, int] = {}
        #: (enclosing def, name) -> the flor.loop a wrapper bound to that name holds
        #: (``pbar = tqdm(flor.loop("step", data))``), for the ``for`` that iterates it
        self.wrapped: dict[tuple[str | None, str], str] = {}
        #: calls in a flor.loop's iterable, with the loop's chain (scan_ast.finish)
        self.fetched: list[tuple[str, CallSite]] = []
        self.generators: set[str] = set()  # functions with a ``yield`` of their own
        #: generator functions yielding from inside a flor.loop of theirs (scan_ast's twin)
        self.looping: dict[str, str] = {}

    def _flor_call(self, node: cst.Call, attr: str) -> str | None:
        """The literal name argument of ``flor.<attr>(...)``, else None."""
        func = node.func
        ok = (
            isinstance(func, cst.Attribute)
            and func.attr.value == attr
            and isinstance(func.value, cst.Name)
            and func.value.value in self.modules
        ) or (isinstance(func, cst.Name) and self.direct.get(func.value) == attr)
        if not ok:
            return None
        # The name parameter, as the call binds it: the first positional argument, else name=.
        positional = [a for a in node.args if a.keyword is None]
        if positional:
            if positional[0].star:
                return None
            arg = positional[0].value
        else:
            named = [a for a in node.args if a.keyword is not None and a.keyword.value == "name"]
            if not named:
                return None
            arg = named[0].value
        if isinstance(arg, cst.SimpleString):
            value = arg.evaluated_value
            # "" is refused; a lone surrogate ("\ud800") is no name a column can have (s37),
            # as florsql.plan.scan_ast reads it
            return value if isinstance(value, str) and value and _utf8(value) else None
        return None

    def _loop_name(self, node: cst.For) -> str | None:
        name = self._loop_in(node.iter)
        if name is not None:
            return name
        fn = self.functions[-1] if self.functions else None
        held = {
            self.wrapped[(fn, n.value)]
            for n in _names_in(node.iter)
            if (fn, n.value) in self.wrapped
        }  # ``for x in enumerate(pbar)``
        return held.pop() if len(held) == 1 else None

    def _loop_in(self, node: cst.CSTNode) -> str | None:
        for call in _calls_in(node):
            name = self._flor_call(call, "loop")
            if name is not None:
                return name
        return None

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
            key = (self.functions[-1] if self.functions else None, node.targets[0].target.value)
            name = self._loop_in(node.value)
            if name is not None:
                self.wrapped[key] = name
            else:
                self.wrapped.pop(key, None)

    def visit_For(self, node: cst.For) -> bool:
        name = self._loop_name(node)
        if name is None:
            hidden = [
                c.func.value
                for c in _calls_in(node.iter)
                if isinstance(c.func, cst.Name) and c.func.value in self.looping
            ]
            if not hidden:
                return True
            # ``for epoch, k in epochs():``, epochs yielding inside its own flor.loop: that
            # loop, with an unknown context (as florsql.plan.scan_ast reads it)
            node.iter.visit(self)
            self.loops.append(self.looping[hidden[0]])
            self.functions.append(f"<in {hidden[0]}()>")
            node.body.visit(self)
            self.functions.pop()
            self.loops.pop()
            if node.orelse is not None:
                node.orelse.visit(self)
            return False
        if not self.loops:
            self.first_loops.setdefault(
                self.functions[-1] if self.functions else None,
                self.get_metadata(PositionProvider, node).start.line,
            )
        node.iter.visit(self)
        inner = (*self.loops, name)
        fn = self.functions[-1] if self.functions else None
        for call in _calls_in(node.iter):
            if isinstance(call.func, (cst.Name, cst.Attribute)):
                f = call.func
                callee = f.value if isinstance(f, cst.Name) else f.attr.value
                line = self.get_metadata(PositionProvider, call).start.line
                self.fetched.append((callee, (inner, fn, line)))
        self.loops.append(name)
        self.chains.add(tuple(self.loops))
        node.body.visit(self)
        self.loops.pop()
        if node.orelse is not None:
            node.orelse.visit(self)
        return False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.append(node.name.value)
        if _yields(node.body):
            self.generators.add(node.name.value)
        # its body runs where it is called: the call sites' chains hold the loops around a def
        self.outer_loops.append(self.loops)
        self.loops = []

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.functions.pop()
        self.loops = self.outer_loops.pop()

    def visit_Lambda(self, node: cst.Lambda) -> None:
        # its body runs where it is called, which names do not tell: context unknown, as
        # florsql.plan.scan_ast has it (session 54)
        self.functions.append("<lambda>")
        self.outer_loops.append(self.loops)
        self.loops = []

    def leave_Lambda(self, original_node: cst.Lambda) -> None:
        self.functions.pop()
        self.loops = self.outer_loops.pop()

    def visit_Call(self, node: cst.Call) -> None:
        name = self._flor_call(node, "log")
        if name is not None:
            line = self.get_metadata(PositionProvider, node).start.line
            fn = self.functions[-1] if self.functions else None
            self.sites.append(RawSite(name, line, tuple(self.loops), fn))
        elif isinstance(node.func, (cst.Name, cst.Attribute)):
            # ``fit()`` or a method, ``self.train_epoch()``: matched by name (a name shared
            # by two functions gives both their call sites: more replay, never less)
            callee = node.func.value if isinstance(node.func, cst.Name) else node.func.attr.value
            fn = self.functions[-1] if self.functions else None
            line = self.get_metadata(PositionProvider, node).start.line
            self.calls.setdefault(callee, []).append((tuple(self.loops), fn, line))

    def result(self, filename: str) -> ScriptCode:
        return finish(
            filename,
            self.sites,
            self.calls,
            self.chains,
            self.first_loops,
            self.fetched,
            self.generators,
        )


def _names_in(node: cst.CSTNode) -> list[cst.Name]:
    found: list[cst.Name] = []

    class _V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            found.append(n)

    node.visit(_V())
    return found


def _looping(module: cst.Module, finder: _Finder) -> dict[str, str]:
    """Generator functions of ``module`` that hold a ``flor.loop``, with its name."""
    defs: list[cst.FunctionDef] = []

    class _V(cst.CSTVisitor):
        def visit_FunctionDef(self, n: cst.FunctionDef) -> None:
            defs.append(n)

    module.visit(_V())
    out: dict[str, str] = {}
    for fn in defs:
        if _yields(fn.body):
            names = [finder._flor_call(c, "loop") for c in _calls_in(fn.body)]
            found = [n for n in names if n is not None]
            if found:
                out.setdefault(fn.name.value, found[0])
    return out


def _yields(body: cst.CSTNode) -> bool:
    """Whether ``body`` has a ``yield`` of its own (not one of a function defined in it)."""
    found: list[bool] = []

    class _V(cst.CSTVisitor):
        def visit_Yield(self, n: cst.Yield) -> None:
            found.append(True)

        def visit_FunctionDef(self, n: cst.FunctionDef) -> bool:
            return False

        def visit_Lambda(self, n: cst.Lambda) -> bool:
            return False

        def visit_ClassDef(self, n: cst.ClassDef) -> bool:
            return False

    body.visit(_V())
    return bool(found)


def _calls_in(node: cst.CSTNode) -> list[cst.Call]:
    found: list[cst.Call] = []

    class _V(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            found.append(n)

    node.visit(_V())
    return found
