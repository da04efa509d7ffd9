"""Replay: re-execute just enough of old runs to compute values they never logged.

The planner's tasks (:mod:`florsql.plan.tasks`: per run, the outer iterations each worker runs,
their modes and checkpoints) are executed as given: this package prepares isolated worktrees of
each version with the new statements placed, runs the tasks on an :class:`Executor` (a local
process pool by default; Ray with ``florsql[ray]``), and verifies them against the recording.
Results land under ``.florsql/replays/`` and become visible to the index only once a task's
``done.json`` marker is written.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from florsql.replay.executors import Executor, LocalExecutor
    from florsql.replay.plan_executor import PlanExecutor, default_executor, executor_for
    from florsql.replay.remote import RayExecutor, parse_executor
    from florsql.replay.runner import Patch, Progress, ReplayReport, default_patcher, run_replay
    from florsql.replay.tasks import RunRequest, Task, TaskResult

#: Where each public name lives: loaded on first use, so that ``florsql.replay.service`` (the
#: standard library only) can be imported by a process about to replay without the rest.
_WHERE = {
    "Executor": "florsql.replay.executors",
    "LocalExecutor": "florsql.replay.executors",
    "PlanExecutor": "florsql.replay.plan_executor",
    "default_executor": "florsql.replay.plan_executor",
    "executor_for": "florsql.replay.plan_executor",
    "RayExecutor": "florsql.replay.remote",
    "parse_executor": "florsql.replay.remote",
    "Patch": "florsql.replay.runner",
    "Progress": "florsql.replay.runner",
    "ReplayReport": "florsql.replay.runner",
    "default_patcher": "florsql.replay.runner",
    "run_replay": "florsql.replay.runner",
    "RunRequest": "florsql.replay.tasks",
    "Task": "florsql.replay.tasks",
    "TaskResult": "florsql.replay.tasks",
}

__all__ = [
    "Executor",
    "LocalExecutor",
    "Patch",
    "PlanExecutor",
    "Progress",
    "RayExecutor",
    "ReplayReport",
    "RunRequest",
    "Task",
    "TaskResult",
    "default_executor",
    "default_patcher",
    "executor_for",
    "parse_executor",
    "run_replay",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'florsql.replay' has no attribute {name!r}")
