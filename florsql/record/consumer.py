"""Where a ``flor.loop`` that a wrapper holds is iterated, and when the script has left it.

``for x in flor.loop(...)`` (or ``for x in tqdm(flor.loop(...))``) closes the loop's generator
as a ``break`` leaves the ``for``: nothing else holds it. A wrapper kept in a variable
(``pbar = tqdm(flor.loop("step", data))``, then ``for x in pbar: ... break``) keeps it open,
so without help the logs after the ``for`` would land in the loop's last iteration. So, as such
a loop's generator first runs, the frame that called ``flor.loop`` is looked for among its
callers; when that frame is the one iterating it (through any chain of wrapper generators) and
the ``flor.loop`` call is not in the header of the ``for`` it runs, :class:`Consumer` remembers
that ``for`` statement's lines. At the next ``flor.log`` or ``flor.loop`` call, the frame's
current line outside those lines means the ``for`` was left: the recording (and replay) then
closes the loop there, as a ``break`` without a wrapper would have.

What stays open as before (closed only as the enclosing ``flor.loop`` iteration ends): a
wrapper iterated by a frame other than the one that called ``flor.loop`` (handed to a
function), one left by ``return`` from inside the ``for`` and kept elsewhere, and a walrus in
the ``for`` header (``for x in (pbar := tqdm(flor.loop(...)))``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import FrameType

__all__ = ["Consumer", "consumer_of"]

#: How many frames above a loop's generator its iterating frame may be (wrappers in between).
_MAX_DEPTH = 16

#: file name -> its ``for`` statements (florsql.code.effects.for_statements), parsed once.
_FOR_STATEMENTS: dict[str, tuple[tuple[int, int, int], ...]] = {}


@dataclass(slots=True)
class Consumer:
    """The ``for`` statement (lines ``start`` to ``end``) of ``owner`` that iterates a loop
    through a wrapper."""

    owner: FrameType
    start: int
    end: int

    def left(self) -> bool:
        """Whether ``owner`` now runs outside that ``for`` statement."""
        line = self.owner.f_lineno
        return not self.start <= line <= self.end


def consumer_of(owner: FrameType | None, call_line: int, gen_frame: FrameType) -> Consumer | None:
    """The :class:`Consumer` of a loop whose generator runs in ``gen_frame`` (its first step),
    called by ``owner`` at ``call_line``; None when nothing needs watching."""
    if owner is None:
        return None
    f = gen_frame.f_back
    for _ in range(_MAX_DEPTH):
        if f is None or f is owner:
            break
        f = f.f_back
    if f is not owner:
        return None  # iterated elsewhere (or by florsql itself): left as before
    line = owner.f_lineno
    if line == call_line:
        return None  # ``for x in flor.loop(...)``: a break closes it
    filename = owner.f_code.co_filename
    fors = _FOR_STATEMENTS.get(filename)
    if fors is None:
        import linecache

        from florsql.code.effects import for_statements

        fors = _FOR_STATEMENTS[filename] = for_statements("".join(linecache.getlines(filename)))
    found = [(s, h, e) for s, h, e in fors if s <= line <= h]
    if not found:
        return None  # a comprehension, ``list(pbar)``, ``next(pbar)``: not a ``for``
    start, header, end = max(found)  # the innermost ``for`` whose header runs
    if start <= call_line <= header:
        return None  # the wrapper is made in the header: a break closes it
    return Consumer(owner, start, end)
