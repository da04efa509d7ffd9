"""When is the input done? SQL ends at a ``;`` outside quotes and comments; a dot-command at Enter.

Pure functions over text, shared by the prompt (Enter submits or breaks the line) and the loop
(one submission may hold several statements).
"""

from __future__ import annotations

import re

__all__ = ["is_complete", "is_dot_command", "split_statements"]


def is_dot_command(text: str) -> bool:
    """Whether ``text`` is a dot-command (``.tables``, ``.mode csv``).

    Example:
        >>> is_dot_command("  .mode csv"), is_dot_command("SELECT .5;")
        (True, False)
    """
    return text.lstrip().startswith(".")


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _word_char(text: str, i: int) -> bool:
    return i >= 0 and (text[i].isalnum() or text[i] == "_")


def _scan(text: str) -> tuple[list[int], str | None]:
    """Offsets of the ``;`` that end statements, and the construct still open at the end.

    DuckDB's lexical rules: ``'...'`` and ``"..."`` (a doubled quote stays inside), ``E'...'``
    (a backslash escapes the next character), dollar quotes ``$$...$$`` and ``$tag$...$tag$``,
    ``--`` line comments and ``/* */`` block comments, which nest.

    Example:
        >>> _scan("SELECT $$a;b$$; SELECT E'x\\\\';y'; /* /* ; */ ; */ SELECT 1;")
        ([14, 31, 57], None)
    """
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            escapes = ch == "'" and i > 0 and text[i - 1] in "eE" and not _word_char(text, i - 2)
            close = _close_quote(text, i, escapes)
            if close == -1:
                return ends, ch
            i = close + 1
            continue
        dollar = _DOLLAR.match(text, i) if ch == "$" and not _word_char(text, i - 1) else None
        if dollar is not None:
            close = text.find(dollar.group(0), dollar.end())
            if close == -1:
                return ends, dollar.group(0)
            i = close + len(dollar.group(0))
            continue
        if text.startswith("--", i):
            eol = text.find("\n", i)
            if eol == -1:
                return ends, None
            i = eol + 1
            continue
        if text.startswith("/*", i):
            close = _close_comment(text, i)
            if close == -1:
                return ends, "/*"
            i = close
            continue
        if ch == ";":
            ends.append(i)
        i += 1
    return ends, None


def _close_quote(text: str, start: int, escapes: bool) -> int:
    """The offset of the quote that closes the one at ``start``, or -1."""
    quote, i = text[start], start + 1
    while i < len(text):
        if escapes and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            if text[i + 1 : i + 2] == quote:  # doubled quote
                i += 2
                continue
            return i
        i += 1
    return -1


def _close_comment(text: str, start: int) -> int:
    """The offset just past the ``*/`` that closes the (nesting) comment at ``start``, or -1."""
    depth, i = 0, start
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return -1


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
            close = _close_comment(rest, i)
            if close == -1:
                return False
            i = close
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
