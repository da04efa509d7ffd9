"""Paths of the user's checkout and their place in a replay task's worktree.

Shared by the replay side (``florsql.replay.imports``: the import path of a task) and the
record side in replay mode (``florsql.record.watch``: files a task opens by their path in the
checkout). Standard library only.
"""

from __future__ import annotations

import os

#: ``{"repo": <repository>, "tree": <worktree>, "path": <run.json's import_path>}`` (JSON) in
#: a replay task's environment: the task's launcher (``florsql.replay.imports.main``; the warm
#: worker's fork) follows it before the script runs.
ROOTS = "FLORSQL_REPLAY_ROOTS"

STORE_DIRNAME = ".florsql"  # florsql.store.layout.STORE_DIRNAME (not imported: kept light)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class CheckoutMapper:
    """Maps paths of the user's checkout to the same place in a replay's worktree."""

    def __init__(self, repo: str, tree: str) -> None:
        self.tree = os.path.abspath(tree)
        self.roots = list(dict.fromkeys([os.path.abspath(repo), os.path.realpath(repo)]))
        self.skip = [self.tree, os.path.realpath(self.tree)]
        self.skip += [os.path.join(r, STORE_DIRNAME) for r in self.roots]

    def moved(self, path: object, real: str | None = None) -> str | None:
        """Where ``path`` (in the user's checkout) is in the worktree; None: leave it.
        ``real``: ``path``'s real path where the caller knows it (resolved here otherwise)."""
        if not isinstance(path, str) or not path:
            return None
        spelled = os.path.abspath(path)
        if any(_inside(spelled, s) for s in self.skip):
            return None
        for candidate in dict.fromkeys([spelled, real or os.path.realpath(spelled)]):
            for root in self.roots:
                if _inside(candidate, root):
                    return self.in_tree(os.path.relpath(candidate, root))
        return None

    def in_tree(self, rel: str) -> str | None:
        """``rel`` in the worktree when the version holds it as its own (no symlink on the
        way: a linked ignored folder is the user's, the same either way)."""
        if rel == ".":
            return self.tree
        here = self.tree
        for part in rel.split(os.sep):
            here = os.path.join(here, part)
            if os.path.islink(here):
                return None
            if not os.path.exists(here):
                return None  # not the version's: leave the path as it was
        return here
