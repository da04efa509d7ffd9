"""Design section 8: dependencies point one way. Every florsql import edge must be allowed here.

``errors`` and ``fold`` import nothing of the package: every layer may use them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Source folders and the package name each installs as.
SOURCES = {"florsql": "florsql", "grammar": "florsql.grammar", "replay": "florsql.replay"}

#: layer -> the layers it may import (besides itself and ``errors``).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "fold": set(),  # the one rule names compare by (florsql/fold.py): every layer may use it
    "grammar": set(),
    "versions": set(),
    "store": set(),
    "code": set(),
    "record": {"store", "versions", "code"},
    "propagate": {"versions"},
    "plan": {"grammar", "store", "propagate", "versions", "code"},
    "replay": {"versions", "propagate", "store", "plan", "code"},
    "engine": {"grammar", "store", "propagate", "plan", "replay", "versions"},
    "dbapi": {"engine", "grammar", "store", "plan", "versions"},
    "repl": {"engine", "grammar", "store", "plan", "versions"},
    "flight": {"engine", "grammar", "store", "plan", "versions"},
    # The CLI launches the other front ends: it is the one module allowed to know them all.
    "cli": {
        "engine",
        "grammar",
        "store",
        "plan",
        "versions",
        "propagate",
        "repl",
        "flight",
        "dbapi",
        "demo",
        "replay",  # `florsql replay-service status|stop`
        "cli_host",
    },
    # The query host runs `florsql query` commands (florsql/cli_host.py): the CLI's other half.
    "cli_host": {"cli", "grammar", "plan", "package", "replay"},  # package: florsql.__version__
    # The command's entry point: a one-shot query goes to the query host, the rest to the CLI.
    "entry": {"cli", "cli_host"},
    "demo": {"engine", "store", "versions", "dbapi", "plan", "replay"},
    "package": {"record", "dbapi", "engine"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts == ["florsql"]:
        return "package"
    return parts[1]


def _modules() -> dict[str, Path]:
    found = {}
    for folder, pkg in SOURCES.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if folder == "florsql" and parts and parts[0] in ("grammar", "replay"):
                continue  # the symlinks onto grammar/ and replay/
            found[".".join([pkg, *parts])] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return {m for m in out if m == "florsql" or m.startswith("florsql.")}


def test_every_import_edge_is_allowed() -> None:
    modules = _modules()
    assert "florsql.record.api" in modules and "florsql.store.index" in modules
    layers = set(ALLOWED)
    bad = []
    for module, path in sorted(modules.items()):
        src = _layer(module)
        assert src in layers, f"{module}: layer {src!r} is not in the table; add it on purpose"
        for target in _imports(path, module):
            if target == "florsql":
                dst = "package"
            else:
                dst = target.split(".")[1]
                if dst not in layers:
                    continue  # a name imported from a module, e.g. florsql.__version__
            if dst in (src, "errors", "fold") or dst in ALLOWED[src]:
                continue
            bad.append(f"{module} imports {target} ({src} -> {dst})")
    assert not bad, "\n".join(bad)


def test_only_florsql_enters_the_import_namespace(tmp_path: Path) -> None:
    # In a fresh interpreter outside the checkout (pytest puts the checkout on sys.path).
    code = (
        "import importlib.util as u; "
        "print([n for n in ('grammar', 'replay', 'tests', 'benchmarks', 'examples') "
        "if u.find_spec(n)], bool(u.find_spec('florsql.grammar')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["[]", "True"]
