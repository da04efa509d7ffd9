"""florsql: multiversion hindsight logging.

In a training script::

    import florsql as flor

    lr = flor.arg("lr", 1e-3)
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(5)):
            for x, y in flor.loop("step", loader):
                flor.log("loss", train_step(x, y))

Importing florsql is light: the query side (duckdb, sqlglot) and torch load only when used.
"""

from __future__ import annotations

from typing import Any

from florsql.errors import FlorError
from florsql.record.api import arg, checkpointing, commit, log, loop

__all__ = [
    "FlorError",
    "__version__",
    "arg",
    "checkpointing",
    "commit",
    "connect",
    "dataframe",
    "log",
    "loop",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The query side is heavy (duckdb, sqlglot): load it only when a script asks for it.
    if name == "connect":
        from florsql.dbapi import connect

        return connect
    if name == "dataframe":
        from florsql.engine.frame import dataframe

        return dataframe
    raise AttributeError(f"module 'florsql' has no attribute {name!r}")
