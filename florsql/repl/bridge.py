"""Between the query's worker thread and the terminal's main thread: confirmations asked on the
main thread (where Ctrl-C and the keyboard are) and the latest progress, for the bar."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

from florsql.repl.service import ReplayEstimate, ReplayProgress

__all__ = ["Bridge", "Question"]


@dataclass
class Question:
    """A confirmation the worker waits on."""

    estimate: ReplayEstimate
    answer: bool = False
    answered: threading.Event = field(default_factory=threading.Event)


class Bridge:
    """The hooks handed to the engine (``confirm``, ``progress``) and their main-thread side."""

    def __init__(self, threshold: float = 10.0) -> None:
        self.threshold = threshold
        self.questions: queue.Queue[Question] = queue.Queue()
        self._progress: ReplayProgress | None = None
        self._shown: ReplayProgress | None = None

    # worker side
    def confirm(self, estimate: ReplayEstimate) -> bool:
        """Short replays just run; longer ones wait for the main thread's answer."""
        if estimate.seconds < self.threshold:
            return True
        question = Question(estimate)
        self.questions.put(question)
        question.answered.wait()
        return question.answer

    def progress(self, progress: ReplayProgress) -> None:
        self._progress = progress

    # main-thread side
    def next_question(self) -> Question | None:
        try:
            return self.questions.get_nowait()
        except queue.Empty:
            return None

    def new_progress(self) -> ReplayProgress | None:
        """The progress to draw, if it changed since the last call."""
        latest = self._progress
        if latest is None or latest is self._shown:
            return None
        self._shown = latest
        return latest

    def decline_all(self) -> None:
        """Answer every waiting question "no" (the user pressed Ctrl-C)."""
        while (question := self.next_question()) is not None:
            question.answer = False
            question.answered.set()
