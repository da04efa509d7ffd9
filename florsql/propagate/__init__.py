"""Log statement propagation: place today's ``flor.log`` statements into past versions of a file.

:func:`propagate` does one file; :func:`for_version` does every changed file of a recorded
version, cached; :func:`render_diff` and :func:`version_diff` show the patched files as a
unified diff (what ``florsql propagate --version VID [FILE]`` prints).

Its names load on first use: the planner computes statement keys with the ast-only modules
(:mod:`.identity`) and a query that places nothing never imports libcst.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from florsql.propagate.api import propagate
    from florsql.propagate.cache import PropagationCache
    from florsql.propagate.model import Failure, Placement, PlacementError, Propagation
    from florsql.propagate.version import (
        VersionPropagation,
        for_version,
        render_diff,
        version_diff,
        version_failures,
    )

__all__ = [
    "Failure",
    "Placement",
    "PlacementError",
    "Propagation",
    "PropagationCache",
    "VersionPropagation",
    "for_version",
    "propagate",
    "render_diff",
    "version_diff",
    "version_failures",
]

_WHERE = {
    "propagate": "api",
    "PropagationCache": "cache",
    "Failure": "model",
    "Placement": "model",
    "PlacementError": "model",
    "Propagation": "model",
    "VersionPropagation": "version",
    "for_version": "version",
    "render_diff": "version",
    "version_diff": "version",
    "version_failures": "version",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
