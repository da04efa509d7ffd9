"""Repository hygiene: every declared dependency is used; no text points outside the repository."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions

from tests.helpers import ROOT

SOURCES = ("florsql", "grammar", "replay")


def _imported_modules() -> set[str]:
    found: set[str] = set()
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return found


def test_every_runtime_dependency_is_imported() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    by_module = packages_distributions()
    used = {
        dist.lower().replace("_", "-")
        for module in _imported_modules()
        for dist in by_module.get(module, [])
    }
    unused = {d for d in declared if d.replace("_", "-") not in used}
    assert not unused, f"declared in pyproject.toml but imported nowhere: {sorted(unused)}"


def test_no_text_refers_to_documents_outside_the_repository() -> None:
    stale = re.compile(r"\.\./shared/|design section|design brief", re.I)
    hits = []
    for folder in (*SOURCES, "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md") and stale.search(path.read_text()):
                hits.append(str(path.relative_to(ROOT)))
    if stale.search((ROOT / "README.md").read_text()):
        hits.append("README.md")
    assert not hits, f"text that names a document outside the repository: {hits}"
