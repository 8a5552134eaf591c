"""What an update writes to the store besides its journal: a passed health gate's records,
the loop guard's count, and the best-effort writes' one guard.

Apart from :mod:`.update_flow` (the phases) because it is the store's side of a success: which
writes claim the version (required: the phase table rolls back when they fail) and which are
only housekeeping (logged when the disk refuses them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from teg_ota.domain.core import known_good
from teg_ota.domain.model.errors import VersionStoreError
from teg_ota.domain.model.journal import InterruptedAttempts
from teg_ota.ports.version_store import VersionStore

log = logging.getLogger(__name__)


def guard(what: str, action: Callable[..., object], *args: object) -> None:
    """Run a best-effort store write; a refusal is logged, never raised."""
    try:
        action(*args)
    except VersionStoreError as exc:
        log.error("could not %s: %s", what, exc)


def record_success(
    store: VersionStore, version: str, commit: str | None, *, names_a_commit: bool
) -> str | None:
    """``None`` once recorded; else why not (the table then rolls back: a version the
    gateway cannot record as launched is not the one a reboot would start). What a tag
    named is recorded too: the moved-tag policy rests on it."""
    try:
        # Already in place (a recovery after UPDATED was out): nothing to write, and a
        # disk that turned read-only since must not undo what was reported.
        if store.last_launched() != version:
            store.set_last_launched(version)
        history = store.known_good_history()
        if known_good.newest(history) != version:
            store.set_known_good_history(known_good.after_success(history, version))
    except VersionStoreError as exc:
        log.error("%s passed its health gate, but recording it failed: %s", version, exc)
        return str(exc)
    # Not needed to claim the version: a stale failure record is only cleared, and
    # without the commit record only a later move of the tag goes unnoticed (logged).
    guard("forget the failed version", store.set_failed, None)
    guard("forget the interrupted attempts", store.set_interrupted_attempts, None)
    if commit is not None and not names_a_commit:
        guard(f"record what {version} names", store.record_commit, version, commit)
    return None


def note_interruption(store: VersionStore, target: str, count: int, limit: int) -> None:
    """Store how many times in a row ``target``'s swap or health gate was interrupted (0:
    forget it). Best effort: a count the disk refuses only weakens the loop guard (logged)."""
    if count:
        log.warning(
            "the swap or health gate of %s was interrupted (%d of %d in a row)",
            target,
            count,
            limit,
        )
    record = InterruptedAttempts(target, count) if count else None
    guard("count the interrupted attempt", store.set_interrupted_attempts, record)
