"""The florsql REPL: a prompt_toolkit SQL shell over a repository's history.

:func:`run_repl` drives a :class:`~florsql.repl.service.ReplService`;
:func:`florsql.repl.backend.open_service` makes one from the engine.
"""

from __future__ import annotations

from florsql.repl.app import run_repl, run_script
from florsql.repl.dotcommands import Settings
from florsql.repl.service import ReplService

__all__ = ["ReplService", "Settings", "run_repl", "run_script"]
