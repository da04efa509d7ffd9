"""The florsql REPL: a prompt_toolkit SQL shell over a repository's history.

:func:`run_repl` drives a :class:`~florsql.repl.service.ReplService`;
:func:`florsql.repl.backend.open_service` makes one from the engine.

The names below load on first use: one-shot commands (``florsql query``) import
``florsql.repl.backend`` and ``render`` without paying for prompt_toolkit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from florsql.repl.app import run_repl, run_script
    from florsql.repl.dotcommands import Settings
    from florsql.repl.service import ReplService

_WHERE = {
    "run_repl": "florsql.repl.app",
    "run_script": "florsql.repl.app",
    "Settings": "florsql.repl.dotcommands",
    "ReplService": "florsql.repl.service",
}

__all__ = ["ReplService", "Settings", "run_repl", "run_script"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'florsql.repl' has no attribute {name!r}")
