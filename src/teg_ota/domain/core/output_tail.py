"""A controller's last output, made safe to log and short enough for ``sw_error``.

The output is whatever the controller printed: it may hold terminal escape sequences, other
control characters, bidirectional-text overrides and invalid UTF-8 (already replaced by the
adapter). :func:`clean_lines` keeps printable text only; :func:`summary` is the short form
that goes into the ``sw_error`` of a failed update (the last lines, the end kept when it is
too long: the end of a crash's output is what explains it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["SUMMARY_CHARS", "SUMMARY_LINES", "clean_line", "clean_lines", "summary"]

SUMMARY_LINES = 3
SUMMARY_CHARS = 300
_SEPARATOR = " | "
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])")
"""ANSI CSI sequences (colours, cursor moves), OSC sequences (titles, links), 2-char ones."""


def clean_line(text: str) -> str:
    """``text`` without escape sequences and control or format characters; tabs become
    spaces, runs of white space one space, and the ends are stripped."""
    text = _ESCAPE.sub("", text)
    kept = "".join(
        " " if char.isspace() else char
        for char in text
        if char.isspace() or unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    return " ".join(kept.split())


def clean_lines(output: str) -> tuple[str, ...]:
    """The non-empty lines of ``output``, cleaned (``\\r`` progress redraws keep their last
    state)."""
    lines = (clean_line(line.rstrip("\r").rsplit("\r", 1)[-1]) for line in output.split("\n"))
    return tuple(line for line in lines if line)


def summary(
    lines: Iterable[str], max_lines: int = SUMMARY_LINES, max_chars: int = SUMMARY_CHARS
) -> str:
    """The last ``max_lines`` non-empty lines joined by `` | ``, at most ``max_chars`` long
    (the beginning cut off, marked ``…``); ``""`` when there is nothing to show."""
    cleaned = [line for line in (clean_line(raw) for raw in lines) if line]
    if max_lines <= 0 or max_chars <= 0 or not cleaned:
        return ""
    text = _SEPARATOR.join(cleaned[-max_lines:])
    if len(text) > max_chars:
        text = "…" + text[len(text) - max_chars + 1 :].lstrip()
    return text
