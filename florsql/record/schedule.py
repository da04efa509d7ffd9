"""Which outer iterations a replay runs, and how (from which checkpoint, skipping what).

Pure functions: given the iterations a query needs, the checkpoints a run took, and where the
needed statements sit, decide per outer iteration whether it runs in full (inner loops too) or
"rest" (restore the checkpoint taken as its first inner loop exited, skip that loop, run the rest
of the body), and which end-of-iteration checkpoint to restore before it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Step:
    """How one outer iteration runs in a replay."""

    mode: str  # "full" or "rest"
    restore_before: int | None = None  # an "end" checkpoint's iteration to restore first

    def __repr__(self) -> str:
        extra = f", restore_before={self.restore_before}" if self.restore_before is not None else ""
        return f"Step({self.mode!r}{extra})"


def schedule(
    needed: list[int],
    checkpoints: dict[int, str],
    *,
    need_start: bool,
    end: int | None = None,
) -> dict[int, Step]:
    """Plan the outer iterations to run so every needed iteration sees its true state.

    Args:
        needed: outer iterations whose statements the replay must compute.
        checkpoints: iteration -> position (``"after:<inner loop>"`` or ``"end"``).
        need_start: the needed statements need the state at the *start* of their iteration
            (they sit inside or before the inner loop); False when they all follow it.
        end: also make the state at the end of this iteration true (statements after the loop).

    Example:
        >>> ck = {0: "after:step", 2: "after:step", 4: "after:step"}
        >>> schedule([5], ck, need_start=True)
        {4: Step('rest'), 5: Step('full')}
        >>> schedule([2, 3], ck, need_start=False)
        {2: Step('rest'), 3: Step('full')}
        >>> schedule([3], {1: "end"}, need_start=True)
        {2: Step('full', restore_before=1), 3: Step('full')}
    """
    plan: dict[int, Step] = {}
    targets = sorted(set(needed))
    for j in targets:
        if j in plan:
            continue
        if not need_start and checkpoints.get(j, "").startswith("after:"):
            plan[j] = Step("rest")
            continue
        _reach(plan, j, checkpoints)
    if end is not None and end not in plan and end > max(plan, default=-1):
        _reach(plan, end, checkpoints)
    return dict(sorted(plan.items()))


def _reach(plan: dict[int, Step], j: int, checkpoints: dict[int, str]) -> None:
    """Schedule iterations so that iteration ``j`` starts from its true state, then runs full."""
    k = j - 1
    restore: int | None = None
    while k >= 0:
        if k in plan:
            break  # an iteration already scheduled ends in its true state
        pos = checkpoints.get(k)
        if pos is not None:
            if pos.startswith("after:"):
                plan[k] = Step("rest")
            else:
                restore = k
            break
        k -= 1
    for m in range(k + 1, j + 1):
        plan[m] = Step("full", restore_before=restore if m == k + 1 else None)
