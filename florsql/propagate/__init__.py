"""Log statement propagation: place today's ``flor.log`` statements into past versions of a file.

:func:`propagate` does one file; :func:`for_version` does every changed file of a recorded
version, cached; :func:`render_diff` and :func:`version_diff` show the patched files as a
unified diff (what ``florsql propagate --version VID [FILE]`` prints).
"""

from __future__ import annotations

from florsql.propagate.api import propagate
from florsql.propagate.cache import PropagationCache
from florsql.propagate.model import Failure, Placement, PlacementError, Propagation
from florsql.propagate.version import VersionPropagation, for_version, render_diff, version_diff

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
]
