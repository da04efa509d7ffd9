"""Log statement propagation: place today's ``flor.log`` statements into past versions of a file.

``propagate(new_source, old_source)`` does one file; :func:`for_version` does every changed file
of a recorded version, cached; :func:`render_diff` shows a patched file as a unified diff.
"""

from __future__ import annotations

from florsql.propagate.api import propagate
from florsql.propagate.model import Failure, Placement, PlacementError, Propagation

__all__ = ["Failure", "Placement", "PlacementError", "Propagation", "propagate"]
