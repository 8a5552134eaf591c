"""VersionStore port: what must survive a restart or a power cut."""

from collections.abc import Sequence
from typing import Protocol

from teg_ota.domain.model.errors import VersionStoreError
from teg_ota.domain.model.journal import (
    Answer,
    FailedVersion,
    InterruptedAttempts,
    UpdateJournal,
)

__all__ = ["VersionStore", "VersionStoreError"]


class VersionStore(Protocol):
    def last_launched(self) -> str | None:
        """The last launched version; falls back to the configured default; ``None`` if
        neither is known."""
        ...

    def set_last_launched(self, version: str) -> None: ...

    def default_version(self) -> str | None:
        """The configured default version (``TEG_DEFAULT_CONTROLLER_VERSION``), if any."""
        ...

    def known_good_history(self) -> tuple[str, ...]:
        """The versions that passed their health gate, newest first (the newest is the
        rollback target). How it changes is ``domain.core.known_good``'s rule, not the
        store's."""
        ...

    def set_known_good_history(self, history: Sequence[str]) -> None:
        """Durably replace the history (newest first)."""
        ...

    def recorded_commit(self, version: str) -> str | None:
        """The commit (or digest) ``version`` named at its first successful update; ``None``
        when never recorded or unreadable (adapters log it)."""
        ...

    def record_commit(self, version: str, commit: str) -> None:
        """Durably remember what ``version`` named when it passed its health gate."""
        ...

    def failed(self) -> FailedVersion | None: ...

    def set_failed(self, failed: FailedVersion | None) -> None: ...

    def answered(self) -> Answer | None:
        """The last terminal state reported for an assignment (``None``: none, or forgotten
        when ThingsBoard unassigned the package)."""
        ...

    def set_answered(self, answer: Answer | None) -> None: ...

    def interrupted_attempts(self) -> InterruptedAttempts | None:
        """How many times in a row a version's swap or health gate was interrupted (the
        loop guard); ``None``: no count, or an unreadable one (adapters log it)."""
        ...

    def set_interrupted_attempts(self, record: InterruptedAttempts | None) -> None:
        """Durably replace the count (``None`` forgets it). It outlives the journal: each
        interrupted attempt's rollback clears that."""
        ...

    def journal(self) -> UpdateJournal | None:
        """The in-flight update, or ``None``; a corrupt journal reads as ``None`` plus a
        warning (adapters log it)."""
        ...

    def write_journal(self, journal: UpdateJournal) -> None:
        """Durably record the journal before the phase it names starts."""
        ...

    def clear_journal(self) -> None: ...
