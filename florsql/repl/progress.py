"""What the REPL shows while a replay runs and before a long one starts. Pure text."""

from __future__ import annotations

from florsql.repl.service import ReplayEstimate, ReplayProgress

__all__ = ["confirm_text", "duration", "progress_line"]


def duration(seconds: float | None) -> str:
    """A short human duration.

    Example:
        >>> duration(0.25), duration(42), duration(3725), duration(None)
        ('0.2s', '42s', '1h02m', '?')
    """
    if seconds is None:
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def progress_line(p: ReplayProgress, width: int = 24) -> str:
    """One line: a bar over iterations (tasks when no iteration is known), counts and ETA.

    Example:
        >>> from types import SimpleNamespace as P
        >>> progress_line(P(tasks_done=1, tasks_total=4, iterations_done=30, iterations_total=120,
        ...                 elapsed=5.0, eta=15.0), width=8)
        'replaying [##......] 1/4 tasks, 30/120 iterations, 5.0s elapsed, 15s left'
    """
    done, total = p.iterations_done, p.iterations_total
    if total <= 0:
        done, total = p.tasks_done, max(p.tasks_total, 1)
    filled = min(width, round(width * done / total))
    bar = "#" * filled + "." * (width - filled)
    counts = f"{p.tasks_done}/{p.tasks_total} tasks"
    if p.iterations_total > 0:
        counts += f", {p.iterations_done}/{p.iterations_total} iterations"
    return f"replaying [{bar}] {counts}, {duration(p.elapsed)} elapsed, {duration(p.eta)} left"


def confirm_text(estimate: ReplayEstimate) -> str:
    """The plan and the question asked before a long replay."""
    tasks = f" in {estimate.tasks} tasks" if estimate.tasks else ""
    return (
        f"{estimate.plan.rstrip()}\n"
        f"This query replays old runs{tasks}, estimated {duration(estimate.seconds)}. "
        "Run it? [y/N] "
    )
