"""Helpers for the FileVersionStore tests in this folder (real files in tmp_path).

Test modules import them as a top-level module (``from file_version_store_support import
...``), like harness.py; the ``warnings_log`` fixture is in this folder's conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from teg_ota.adapters.atomic_file import read_text_or_none, temp_prefix
from teg_ota.adapters.file_version_store import KNOWN_GOOD_FILE, PREVIOUS_KNOWN_GOOD_FILE
from teg_ota.adapters.known_good_files import KNOWN_GOOD_HISTORY_FILE
from teg_ota.domain.model.journal import JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def history_file(data: Path) -> list[str]:
    """The versions in ``known_good_history.json``, newest first."""
    content = json.loads((data / KNOWN_GOOD_HISTORY_FILE).read_text(encoding="utf-8"))
    assert set(content) == {"versions"}
    versions = content["versions"]
    assert isinstance(versions, list)
    return versions


def text_files(data: Path) -> tuple[str | None, str | None]:
    """(known-good, previous known-good) as the two compatibility text files hold them."""
    return (
        read_text_or_none(data / KNOWN_GOOD_FILE),
        read_text_or_none(data / PREVIOUS_KNOWN_GOOD_FILE),
    )


def temp_files(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(temp_prefix(path)))


def sample_journal(**changes: object) -> UpdateJournal:
    journal = UpdateJournal(
        target="v2.0.0",
        previous="v1.0.0",
        phase=JournalPhase.HEALTH_CHECK,
        started_at=1_700_000_000.5,
        reported=OtaState.UPDATING,
        commit=COMMIT,
        new_started_at_ms=1_700_000_001_000,
        error=None,
    )
    return journal.at(journal.phase, **changes) if changes else journal
