"""Modes saved and restored around hindsight code that switches a module's mode.

Today's code evaluates in evaluation mode (``net.eval()``, then ``net(x_val)``); an old version
that never switched there gets the switch with the statement, between
``flor._save_modes(net)`` and ``flor._restore_modes(net)`` (florsql/propagate/api.py). The
restore puts back every submodule's own ``training`` flag as it was, not one mode for all: a
model whose batch norm the old code froze in evaluation mode keeps it frozen. So the old run
continues as recorded: dropout in evaluation mode draws nothing from the RNG.

Light: no torch import; any object with ``modules()`` (a ``torch.nn.Module``) or a
``training`` attribute.
"""

from __future__ import annotations

from typing import Any

from florsql.errors import RecordError

_SAVED: list[tuple[Any, list[tuple[Any, bool]]]] = []


def saving() -> bool:
    """Whether hindsight code between a save and its restore runs now (the replay's guard
    then leaves the modes to the restore: florsql/record/rng_guard.py)."""
    return bool(_SAVED)


def save_modes(obj: Any) -> None:
    """Note the ``training`` flag of ``obj`` and each of its submodules."""
    modules = getattr(obj, "modules", None)
    if callable(modules):
        flags = [(m, bool(m.training)) for m in modules()]
    elif hasattr(obj, "training"):
        flags = [(obj, bool(obj.training))]
    else:
        raise RecordError(
            f"florsql cannot save the mode of a {type(obj).__name__}: it has neither "
            "modules() nor a training flag; log the value without switching its mode"
        )
    _SAVED.append((obj, flags))


def restore_modes(obj: Any) -> None:
    """Put back the flags :func:`save_modes` noted for ``obj`` (the latest save)."""
    for k in range(len(_SAVED) - 1, -1, -1):
        if _SAVED[k][0] is obj:
            for module, training in _SAVED.pop(k)[1]:
                module.training = training
            return
    raise RecordError(f"no mode of this {type(obj).__name__} was saved to restore")
