"""When is the input done? SQL ends at a ``;`` outside quotes and comments; a dot-command at Enter.

Pure functions over text, shared by the prompt (Enter submits or breaks the line) and the loop
(one submission may hold several statements).
"""

from __future__ import annotations

__all__ = ["is_complete", "is_dot_command", "split_statements"]


def is_dot_command(text: str) -> bool:
    """Whether ``text`` is a dot-command (``.tables``, ``.mode csv``).

    Example:
        >>> is_dot_command("  .mode csv"), is_dot_command("SELECT .5;")
        (True, False)
    """
    return text.lstrip().startswith(".")


def _scan(text: str) -> tuple[list[int], str | None]:
    """Offsets of the ``;`` that end statements, and the construct still open at the end."""
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            close = text.find(ch, i + 1)
            while close != -1 and text[close + 1 : close + 2] == ch:  # doubled quote
                close = text.find(ch, close + 2)
            if close == -1:
                return ends, ch
            i = close + 1
            continue
        if text.startswith("--", i):
            eol = text.find("\n", i)
            if eol == -1:
                return ends, None
            i = eol + 1
            continue
        if text.startswith("/*", i):
            close = text.find("*/", i + 2)
            if close == -1:
                return ends, "/*"
            i = close + 2
            continue
        if ch == ";":
            ends.append(i)
        i += 1
    return ends, None


def is_complete(text: str) -> bool:
    """Whether Enter should submit ``text``: a dot-command, an exit word, or SQL ending in ``;``.

    Example:
        >>> is_complete("SELECT 1"), is_complete("SELECT 1;"), is_complete("SELECT ';")
        (False, True, False)
        >>> is_complete("SELECT 1; -- done"), is_complete(".tables"), is_complete("quit")
        (True, True, True)
    """
    stripped = text.strip()
    if not stripped or is_dot_command(stripped) or stripped.lower() in ("quit", "exit"):
        return True
    ends, still_open = _scan(text)
    if still_open is not None or not ends:
        return False
    rest = text[ends[-1] + 1 :]
    return _scan_blank(rest)


def _scan_blank(rest: str) -> bool:
    """Whether what follows the last ``;`` is only blanks and comments."""
    i = 0
    while i < len(rest):
        if rest[i].isspace():
            i += 1
        elif rest.startswith("--", i):
            eol = rest.find("\n", i)
            i = len(rest) if eol == -1 else eol + 1
        elif rest.startswith("/*", i):
            close = rest.find("*/", i + 2)
            if close == -1:
                return False
            i = close + 2
        else:
            return False
    return True


def split_statements(text: str) -> list[str]:
    """The statements of a submission, each without its ``;``, blanks dropped.

    Example:
        >>> split_statements("SHOW RUNS; SELECT ';' AS x;\\n")
        ['SHOW RUNS', "SELECT ';' AS x"]
    """
    ends, _ = _scan(text)
    out, start = [], 0
    for end in [*ends, len(text)]:
        piece = text[start:end].strip()
        if piece and _scan_blank(piece) is False:
            out.append(piece)
        start = end + 1
    return out
