"""The ``florsql`` command's entry point.

A one-shot command (``florsql query``, ``explain``, ``runs``, ``propagate``) whose repository's
query host listens (florsql/cli_host.py) is
handed to the host from here, before the command line interface (click, and florsql's modules
behind it: 40-70 ms of a one-shot's start, measured) is imported; the host's child parses and
runs the command exactly as the full interface would. Anything else, and every case this
shortcut is unsure of, goes to :func:`florsql.cli.main`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: The commands the query host runs (those that call ``florsql.cli._in_query_host``).
_HOSTED = frozenset({"query", "explain", "runs", "propagate"})
#: Variables that move git's idea of the repository away from the folder tree.
_GIT_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
)


def main() -> None:
    """``florsql ARGS``."""
    code = _in_query_host(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from florsql.cli import main as cli

    cli()


def _in_query_host(argv: list[str]) -> int | None:
    """Run a one-shot command in the query host of the repository around the current folder;
    its exit status, or None when this shortcut does not apply (no host listens, another
    command, ``--repo``, git configured by environment variables)."""
    if not argv or argv[0] not in _HOSTED:
        return None
    if any(a == "--repo" or a.startswith("--repo=") for a in argv):
        return None
    if any(v in os.environ for v in _GIT_VARIABLES):
        return None
    try:
        root = _work_tree(Path.cwd())
        if root is None or not (root / ".florsql" / "query.sock").exists():
            return None
    except OSError:  # no working folder, an unreadable parent: the CLI says what is wrong
        return None
    from florsql.cli_host import delegate

    return delegate(root, argv)


def _work_tree(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` with a ``.git`` entry (git's own answer, where
    no environment variable moves it), or None."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None
