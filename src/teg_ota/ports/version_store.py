"""VersionStore port: what must survive a restart or a power cut."""

from typing import Protocol

from teg_ota.domain.journal import FailedVersion, UpdateJournal


class VersionStoreError(Exception):
    """The store could not persist a value (disk full, read-only file system)."""


class VersionStore(Protocol):
    def last_launched(self) -> str | None:
        """The last launched version; falls back to the configured default; ``None`` if
        neither is known."""
        ...

    def set_last_launched(self, version: str) -> None: ...

    def known_good(self) -> str | None:
        """The last version that passed its health gate: the rollback target."""
        ...

    def set_known_good(self, version: str) -> None:
        """Record ``version`` in the bounded known-good history (newest first): already the
        newest: nothing; the second entry (a rollback going back one): the newest is
        dropped; anything else is pushed on top. So rollbacks walk back, never forward."""
        ...

    def previous_known_good(self) -> str | None:
        """The second entry of the history: ``teg-ota rollback``'s target after a
        successful update."""
        ...

    def failed(self) -> FailedVersion | None: ...

    def set_failed(self, failed: FailedVersion | None) -> None: ...

    def journal(self) -> UpdateJournal | None:
        """The in-flight update, or ``None``; a corrupt journal reads as ``None`` plus a
        warning (adapters log it)."""
        ...

    def write_journal(self, journal: UpdateJournal) -> None:
        """Durably record the journal before the phase it names starts."""
        ...

    def clear_journal(self) -> None: ...
