"""Work off the main thread: the query's worker talks to the terminal through a :class:`Bridge`
(confirmations asked where Ctrl-C and the keyboard are, the latest progress for the bar), and
completion reads a :class:`SchemaCache` refreshed on a background thread so typing never waits."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from florsql.repl.service import ReplayEstimate, ReplayProgress, Schema

__all__ = ["Bridge", "Question", "SchemaCache", "Ticked"]


@dataclass
class Question:
    """A confirmation the worker waits on."""

    estimate: ReplayEstimate
    answer: bool = False
    answered: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Ticked:
    """A replay's last report, with its clock advanced to now."""

    tasks_done: int
    tasks_total: int
    iterations_done: int
    iterations_total: int
    elapsed: float
    eta: float | None


class Bridge:
    """The hooks handed to the engine (``confirm``, ``progress``) and their main-thread side."""

    def __init__(
        self, threshold: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.questions: queue.Queue[Question] = queue.Queue()
        self.clock = clock
        self._progress: tuple[ReplayProgress, float] | None = None
        self._shown: tuple[int, float] | None = None
        self._query = 0  # which query's reports count (:meth:`start`)

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
        self._progress = (progress, self.clock())  # one assignment: the main thread reads it

    def start(self) -> Callable[[ReplayProgress], None]:
        """The progress hook of a new query: the last query's progress is forgotten, and its
        late reports (a cancelled replay's thread may still report) are dropped. Until session
        58 the next replay's first frames showed the cancelled one's counters (sweep AN)."""
        self._query += 1
        self._progress = self._shown = None
        query = self._query

        def hook(progress: ReplayProgress) -> None:
            if query == self._query:
                self.progress(progress)

        return hook

    # main-thread side
    def next_question(self) -> Question | None:
        try:
            return self.questions.get_nowait()
        except queue.Empty:
            return None

    def new_progress(self) -> ReplayProgress | None:
        """The progress to draw, if it changed since the last call. The replay reports when a
        task finishes; between reports the clock goes on (elapsed up, time left down), so the
        line is redrawn every tenth of a second."""
        latest = self._progress
        if latest is None:
            return None
        progress, at = latest
        since = max(0.0, self.clock() - at)
        key = (id(progress), round(progress.elapsed + since, 1))
        if key == self._shown:
            return None
        self._shown = key
        eta = None if progress.eta is None else max(0.0, progress.eta - since)
        if eta == 0.0 and progress.tasks_done < progress.tasks_total:
            eta = None  # past the estimate with work left: "? left", not "0.0s left"
        return Ticked(
            progress.tasks_done,
            progress.tasks_total,
            progress.iterations_done,
            progress.iterations_total,
            progress.elapsed + since,
            eta,
        )

    def decline_all(self) -> None:
        """Answer every waiting question "no" (the user pressed Ctrl-C)."""
        while (question := self.next_question()) is not None:
            question.answer = False
            question.answered.set()


class SchemaCache:
    """Holds the latest :class:`Schema`; :meth:`refresh_async` reloads it off the main thread."""

    def __init__(self, load: Callable[[], Schema]) -> None:
        self._load = load
        self._schema = Schema()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None

    @property
    def schema(self) -> Schema:
        return self._schema

    def refresh(self) -> None:
        """Reload now; on failure keep the schema we had (completion is a convenience)."""
        try:
            schema = self._load()
        except Exception as e:  # the engine's error is shown when the user runs a query
            self.error = e
            return
        self._schema, self.error = schema, None

    def refresh_async(self) -> threading.Thread:
        """Reload on a daemon thread, unless a reload is already running; return that thread."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self.refresh, name="florsql-schema", daemon=True
                )
                self._thread.start()
            return self._thread
