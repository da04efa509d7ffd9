"""The replay hook: how the engine hands a :class:`ReplayPlan` to whoever executes replays.

The engine hands each plan to an executor: by default the one :mod:`florsql.replay` provides
(:func:`default_executor`, a ``PlanExecutor``). With ``replay = 'off'``, or without an executor,
hindsight cells are NULL and a :class:`~florsql.errors.ReplayOffWarning` says what replay would
compute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from florsql.plan.replay_plan import ReplayPlan

__all__ = [
    "Confirm",
    "Outcome",
    "ReplayExecutor",
    "ReplayOutcome",
    "default_executor",
    "executor_from",
]

#: Asked before replaying when ``replay = 'confirm'``: True to go ahead.
Confirm = Callable[[ReplayPlan], bool]


@dataclass(frozen=True)
class ReplayOutcome:
    """What an executor reports back.

    Attributes:
        tasks: how many chunks ran.
        failures: one message per failed task (its values stay NULL).
        nondeterministic: one message per recorded value a replay reproduced differently.
        data_changed: one message per replayed run whose data files differ today.
    """

    tasks: int = 0
    failures: tuple[str, ...] = ()
    nondeterministic: tuple[str, ...] = ()
    data_changed: tuple[str, ...] = ()


class Outcome(Protocol):
    """What ``ReplayExecutor.run`` returns: :class:`ReplayOutcome` or any object like it."""

    @property
    def tasks(self) -> int: ...

    @property
    def failures(self) -> tuple[str, ...]: ...

    @property
    def nondeterministic(self) -> tuple[str, ...]: ...


@runtime_checkable
class ReplayExecutor(Protocol):
    """Runs a plan's chunks and writes their values where the index ingests them.

    The engine calls ``run`` once per query, then refreshes the index (the executor's
    output must be visible to :meth:`florsql.store.index.Index.refresh`) and re-plans: what is
    still missing afterwards is reported, never replayed twice in one query. The one exception:
    where a task failed in some of its statements (its frames tell which), the re-plan holds
    the others, and ``run`` is called again for them, without the failed ones (at most
    ``florsql.engine.replay_decision.MAX_ROUNDS`` calls in all; what is still missing then is
    said in a warning).

    Example:
        >>> class Recorder:
        ...     def __init__(self): self.plans = []
        ...     def run(self, plan, *, repo): self.plans.append(plan); return ReplayOutcome()
        >>> isinstance(Recorder(), ReplayExecutor)
        True
    """

    def run(self, plan: ReplayPlan, *, repo: Path) -> Outcome: ...


def default_executor() -> ReplayExecutor | None:
    """The executor ``florsql.replay`` provides (None where it provides none)."""
    try:
        import florsql.replay as replay
    except ImportError:
        return None
    factory = getattr(replay, "default_executor", None)
    executor = factory() if callable(factory) else None
    return executor if isinstance(executor, ReplayExecutor) else None


def executor_from(value: str) -> ReplayExecutor:
    """The executor a ``SET executor`` / ``--executor`` value names: ``'local'``, ``'ray'`` or
    ``'ray://HOST:PORT'``.

    Raises:
        florsql.errors.PlanError: any other value (the message lists the accepted ones).
        florsql.errors.ReplayError: Ray is not installed, or its cluster cannot be reached.
    """
    from florsql.errors import PlanError, ReplayError

    try:
        import florsql.replay as replay
    except ImportError as e:
        raise ReplayError("no replay executor is installed") from e
    try:
        replay.parse_executor(value)
    except ReplayError as e:
        raise PlanError(str(e)) from None
    executor = replay.executor_for(value)
    assert isinstance(executor, ReplayExecutor)
    return executor
