"""How often to checkpoint: an adaptive period that keeps checkpoint cost under a budget."""

from __future__ import annotations

import math
import os

#: Share of loop time checkpoints may cost (copy on the training thread plus background write).
DEFAULT_BUDGET = 0.02


class CheckpointPolicy:
    """Checkpoint every ``period`` outer iterations, widening it when checkpoints cost too much.

    Example:
        >>> p = CheckpointPolicy(budget=0.02)
        >>> p.due(0)
        True
        >>> p.taken(0, copy_seconds=0.001, write_seconds=0.0)
        >>> p.iteration_done(0.01)   # a 10 ms iteration: 1 ms is 10%, so every 5th
        >>> p.period, p.due(4), p.due(5)
        (5, False, True)
    """

    def __init__(self, budget: float | None = None, period: int | None = None) -> None:
        env_budget = os.environ.get("FLORSQL_CHECKPOINT_BUDGET")
        env_period = os.environ.get("FLORSQL_CHECKPOINT_PERIOD")
        self.budget = budget if budget is not None else float(env_budget or DEFAULT_BUDGET)
        self.fixed = period if period is not None else (int(env_period) if env_period else None)
        self.period = self.fixed or 1
        self.last: int | None = None
        self.cost = 0.0
        self.loop_time = 0.0
        self.iterations = 0
        self._last_cost = 0.0

    def due(self, iteration: int) -> bool:
        return self.last is None or iteration - self.last >= self.period

    def taken(self, iteration: int, copy_seconds: float, write_seconds: float) -> None:
        self.last = iteration
        self._last_cost = copy_seconds + write_seconds
        self.cost += self._last_cost

    def iteration_done(self, seconds: float) -> None:
        self.loop_time += seconds
        self.iterations += 1
        if self.fixed is not None or self.budget <= 0 or self._last_cost <= 0:
            return
        mean = self.loop_time / self.iterations
        allowed = self.budget * mean
        self.period = max(1, math.ceil(self._last_cost / allowed)) if allowed > 0 else 1
