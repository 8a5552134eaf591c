"""The known-good history: which versions passed their health gate, newest first, and the
rule that makes repeated rollbacks walk back instead of forward.

The store only keeps the list; this module is the one place that says how it changes.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_HISTORY = 10


def after_success(
    history: Sequence[str], version: str, limit: int = MAX_HISTORY
) -> tuple[str, ...]:
    """``history`` after ``version`` passed its health gate.

    Already the newest: unchanged. The second entry (a rollback going back one step): the
    newest is dropped, so the next rollback goes back one more. Anything else is pushed on
    top (an older occurrence removed) and the list is cut to ``limit``.
    """
    if history and history[0] == version:
        return tuple(history)
    if len(history) > 1 and history[1] == version:
        return tuple(history[1:])
    rest = [entry for entry in history if entry != version]
    return tuple([version, *rest][:limit])


def newest(history: Sequence[str]) -> str | None:
    return history[0] if history else None


def rollback_target(history: Sequence[str], running: str | None) -> str | None:
    """``teg-ota rollback``'s target: the known-good version, or the one before it when the
    known-good version is what runs (the usual case after a successful update)."""
    if not history:
        return None
    if running is not None and history[0] == running:
        return history[1] if len(history) > 1 else None
    return history[0]
