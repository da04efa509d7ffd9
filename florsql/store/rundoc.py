"""Fields of a run's ``run.json`` that readers interpret (docs/record.md lists them all)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: run.json keys of torch's thread counts, as ``torch.get_num_threads()`` and
#: ``torch.get_num_interop_threads()`` returned them in the recording process.
TORCH_THREADS = "torch_num_threads"
TORCH_INTEROP_THREADS = "torch_num_interop_threads"
#: run.json key of the environment variables the repository's code read: name -> value, or
#: null where the variable was unset (``florsql.record.watch.EnvWatch``).
ENVIRON = "environ"


@dataclass(frozen=True)
class TorchThreads:
    """The thread counts a run's torch used (numerics on CPU can depend on them)."""

    intra_op: int
    inter_op: int


def torch_threads(doc: Mapping[str, Any]) -> TorchThreads | None:
    """The recorded torch thread counts of a run, or None if its script never imported torch
    (or was recorded before florsql kept them).

    Example:
        >>> torch_threads({"torch_num_threads": 4, "torch_num_interop_threads": 2})
        TorchThreads(intra_op=4, inter_op=2)
        >>> torch_threads({"torch": None}) is None
        True
    """
    intra, inter = doc.get(TORCH_THREADS), doc.get(TORCH_INTEROP_THREADS)
    if not isinstance(intra, int) or not isinstance(inter, int):
        return None
    return TorchThreads(intra, inter)


def environ(doc: Mapping[str, Any]) -> dict[str, str | None]:
    """The environment variables a run's code read, as it read them (None: unset); empty for
    runs recorded before florsql kept them.

    Example:
        >>> environ({"environ": {"AUX_W": "0.5", "NO_AMP": None}})
        {'AUX_W': '0.5', 'NO_AMP': None}
        >>> environ({})
        {}
    """
    raw = doc.get(ENVIRON)
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): (v if isinstance(v, str) else None)
        for k, v in raw.items()
        if isinstance(k, str) and (v is None or isinstance(v, str))
    }
