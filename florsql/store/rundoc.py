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
#: run.json key of the import path entries inside the repository besides the script's own
#: folder (``PYTHONPATH=src``, a ``.pth`` line): ``[[path relative to the repository, "front"
#: or "end"], ...]``, "front" for those before the standard library (``PYTHONPATH``), "end"
#: for those after it (``.pth`` lines). A replay task puts them back in its worktree.
IMPORT_PATH = "import_path"
#: run.json key of the ``PYTHONHASHSEED`` the run's interpreter hashed strings with, when it
#: was fixed (``"0"``, a number; null: random): replay tasks hash with it.
HASH_SEED = "hash_seed"
#: run.json key of the order of strings the script held as its first outer loop started:
#: ``{"loop": name, "names": {name: [digest in order, digest sorted]}}``
#: (``florsql.record.order``); a replay compares its own there.
ORDERS = "orders"
#: run.json key of the files the run wrote inside the repository (``open`` for writing,
#: ``os.open`` with write flags, ``torch.save`` to a path): their paths relative to it,
#: sorted, florsql's store and git's metadata aside; absent where they were not listed
#: (recorded before session 36, killed before commit, or more than ``MAX_INPUTS``). A replay
#: task that restored a checkpoint reads none of them unless it wrote it itself.
OUTPUTS = "outputs"
#: run.json key of those of :data:`OUTPUTS` the run wrote while an outer loop ran (what
#: iterations a replay skips may have written; those written only before or after it are not)
LOOP_OUTPUTS = "loop_outputs"
#: run.json key (since session 44): per output of :data:`OUTPUTS` the run first opened to
#: append, ``[size, digest of its first bytes]`` as the run found it: a replay's private copy
#: starts the same (``f.tell()`` and the size after an append are the run's)
APPEND_STARTS = "append_starts"
#: run.json key (since session 49): those of :data:`OUTPUTS` that were not there when the run
#: first wrote them (and that it had not read): a replay task finds none of them until it
#: writes it (a run resuming from its own checkpoint file if present found none; its replay
#: found today's, written by a later run)
CREATED_OUTPUTS = "created_outputs"
#: run.json key (since session 45): true where values logged while ``flor.loop`` fetched an
#: item went to the iteration it starts (before, to the loop's parent): a replay of an older
#: run logs them to the parent, as its recording did, so verification compares like with like
FETCH_IN_ITERATION = "fetch_in_iteration"
#: run.json key of the flor.loop names the script went on iterating after florsql took the
#: loop as left (a loop kept across an enclosing loop's iterations, two loops zipped,
#: generators read in turn): such a run replays whole (florsql.plan.tasks)
RESUMED = "resumed_loops"
#: run.json key (since session 48): true where florsql kept a loop it took as left open (its
#: generator iterable on); a replay of an older run closes such a loop, as its recording did
KEEPS_LOOPS_OPEN = "keeps_loops_open"


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


def import_path(doc: Mapping[str, Any]) -> list[list[str]]:
    """The recorded import path entries inside the repository (:data:`IMPORT_PATH`); empty for
    runs that had none, or were recorded before florsql kept them.

    Example:
        >>> import_path({"import_path": [["src", "front"], ["lib", "end"], [3, "x"]]})
        [['src', 'front'], ['lib', 'end']]
    """
    raw = doc.get(IMPORT_PATH)
    if not isinstance(raw, list):
        return []
    return [
        [str(e[0]), str(e[1])]
        for e in raw
        if isinstance(e, list)
        and len(e) == 2
        and isinstance(e[0], str)
        and e[1] in ("front", "end")
    ]


def hash_seed(doc: Mapping[str, Any]) -> str | None:
    """The recorded ``PYTHONHASHSEED`` of a run (:data:`HASH_SEED`): a number as a string, or
    None where the run's string hashing was random (or it was recorded before florsql kept it).

    Example:
        >>> hash_seed({"hash_seed": "42"}), hash_seed({"hash_seed": None}), hash_seed({})
        ('42', None, None)
    """
    raw = doc.get(HASH_SEED)
    return raw if isinstance(raw, str) and raw.isdigit() else None


def resumed(doc: Mapping[str, Any]) -> list[str]:
    """The :data:`RESUMED` loop names of a run's document (empty for runs recorded before
    session 48, whose loops were closed instead)."""
    found = doc.get(RESUMED)
    return [str(n) for n in found] if isinstance(found, list) else []
