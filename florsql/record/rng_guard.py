"""Which global RNGs today's statements draw from in a replay.

A hindsight statement that draws from a global RNG (``evaluate(val_loader)``: iterating a torch
``DataLoader`` draws its base seed from torch's generator; dropout left on; ``random.random()``)
moves every later draw of the old code. A full run of today's script trains differently after
its first draw; a replay that restores the recorded state at a checkpoint after the statement
does not. The replay runs the draw as a full run of today's script would (its values equal such
a run where the replay runs from the top), and says so: a replay runs each placed statement (and
each piece of code carried with it) between ``flor._hindsight_begin(name)`` and
``flor._hindsight_end(name)``, which compare the global RNGs (Python's ``random``, numpy's legacy
global ``RandomState``, torch's CPU generator and, where initialised, its CUDA ones) before and
after it and note those it moved (``drew``, and ``drew_in_loop`` for draws before the outer
loop's end, in the task's ``done.json``). A run whose tasks drew before the loop's end is
replayed again from its start with no checkpoint restored (``runner._from_the_start``), so its
values are a run of today's script's; the query warns (``StatementDrawWarning``). In a recording
process they do nothing.

Checking costs: torch's state ~5 us, Python's ~20 us, numpy's ~60 us (copying 624 words each).
torch's is checked at every execution; Python's and numpy's at the first
:data:`FIRST_CHECKS` executions of a statement in a task and every :data:`EVERY` one after,
and at every execution once one of them moved.
"""

from __future__ import annotations

import sys
from typing import Any

#: Executions of a statement in a task whose Python and numpy RNG states are all checked.
FIRST_CHECKS = 16
#: After those, one in this many executions is checked (until one moved a state).
EVERY = 64


class RngGuard:
    """Snapshots of the global RNGs around today's statements, per statement name."""

    def __init__(self) -> None:
        #: name -> the snapshots of its pieces begun and not yet ended (innermost last: a
        #: piece of one name may run inside another's, or call itself)
        self._saved: dict[str, list[dict[str, Any]]] = {}
        self._counts: dict[str, int] = {}
        self._watched: set[str] = set()  # names whose statement moved Python's or numpy's
        #: name -> the generators its statement moved
        self.moved: dict[str, set[str]] = {}

    def begin(self, name: str) -> None:
        """Before ``name``'s statement (or code carried with it): snapshot the states."""
        n = self._counts.get(name, 0)
        full = name in self._watched or n < FIRST_CHECKS or n % EVERY == 0
        self._saved.setdefault(name, []).append(_snapshot(full=full))

    def end(self, name: str) -> None:
        """After it: note under ``name`` what moved."""
        stack = self._saved.get(name)
        self._counts[name] = self._counts.get(name, 0) + 1
        if not stack:
            return
        saved = stack.pop()
        moved = _restore_moved(saved)
        if moved:
            self.moved.setdefault(name, set()).update(moved)
            if moved & {"python", "numpy"}:
                self._watched.add(name)


def _snapshot(*, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.get_rng_state()
        cuda = getattr(torch, "cuda", None)
        if cuda is not None and cuda.is_available() and cuda.is_initialized():
            out["cuda"] = cuda.get_rng_state_all()
    if full:
        import random

        out["python"] = random.getstate()
        np = sys.modules.get("numpy")
        if np is not None and hasattr(np, "random"):
            out["numpy"] = np.random.get_state()
    return out


def _restore_moved(saved: dict[str, Any]) -> set[str]:
    """The names of the generators of ``saved`` whose state changed (left as they are)."""
    moved: set[str] = set()
    torch = sys.modules.get("torch")
    if "torch" in saved and torch is not None:
        if not torch.equal(torch.get_rng_state(), saved["torch"]):
            moved.add("torch")
        if "cuda" in saved:
            now = torch.cuda.get_rng_state_all()
            if len(now) != len(saved["cuda"]) or not all(
                torch.equal(a, b) for a, b in zip(now, saved["cuda"], strict=False)
            ):
                moved.add("cuda")
    if "python" in saved:
        import random

        if random.getstate() != saved["python"]:
            moved.add("python")
    if "numpy" in saved:
        np = sys.modules.get("numpy")
        if np is not None:
            _kind, keys, pos, has_gauss, cached = saved["numpy"]
            now = np.random.get_state()
            if (
                now[2] != pos
                or now[3] != has_gauss
                or now[4] != cached
                or not np.array_equal(now[1], keys)
            ):
                moved.add("numpy")
    return moved
