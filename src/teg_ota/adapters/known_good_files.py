"""The known-good history on disk, in files the seed gateway and older releases also read.

* ``known_good_history.json``: ``{"versions": [newest, ...]}``, at most
  :data:`MAX_KNOWN_GOOD_HISTORY` versions, no duplicates.
* ``known_good_controller_version.txt``: the newest entry alone (the rollback target).
* ``previous_known_good_controller_version.txt``: the second entry alone; absent when there
  is none.

The store only keeps the list; how it changes is :mod:`teg_ota.domain.core.known_good`'s
rule. :func:`write_history` writes the known-good text file first, then the previous file,
then the history, so the history is what the known-good file says: a crash between the
writes, or an older release that wrote only the text files, is caught up on the next read by
:func:`~teg_ota.domain.core.known_good.after_success`. A missing (or unusable) history is
seeded from the two text files, and the seeded history is written before the first change
(a crash right after the known-good file then still knows what was before it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from loguru import logger

from teg_ota.adapters.store_files import StoreDir, checked_version, reason
from teg_ota.domain.core import known_good

KNOWN_GOOD_FILE = "known_good_controller_version.txt"
PREVIOUS_KNOWN_GOOD_FILE = "previous_known_good_controller_version.txt"
KNOWN_GOOD_HISTORY_FILE = "known_good_history.json"
MAX_KNOWN_GOOD_HISTORY = known_good.MAX_HISTORY
"""Known-good versions kept on disk (``teg-ota rollback`` can go back this many minus one)."""


def read_history(files: StoreDir) -> tuple[tuple[str, ...], bool]:
    """The known-good history, newest first, and whether it came from its file.

    Without a usable history file it is seeded from the known-good and previous text files.
    A known-good text file that disagrees with the history's newest entry was written after
    it (a crash between the writes of :func:`write_history`, or an older release): the
    history catches up by the core's rule.
    """
    current = files.read_version_or_warn(KNOWN_GOOD_FILE)
    stored = _read_history_file(files)
    if stored is None:
        previous = files.read_version_or_warn(PREVIOUS_KNOWN_GOOD_FILE)
        seeded = [current] if current is not None else []
        if previous is not None and previous not in seeded:
            seeded.append(previous)
        return tuple(seeded), False
    if current is not None and known_good.newest(stored) != current:
        return known_good.after_success(stored, current, MAX_KNOWN_GOOD_HISTORY), True
    return stored, True


def write_history(files: StoreDir, history: Sequence[str]) -> None:
    """Durably replace the history with ``history`` (normalised, without duplicates, at
    most :data:`MAX_KNOWN_GOOD_HISTORY` entries), in the crash-safe order above."""
    before, stored = read_history(files)
    if not stored and before:
        # Migration: keep what the text files said durably before changing them.
        files.write(KNOWN_GOOD_HISTORY_FILE, _dump(before))
    if history:
        files.write(KNOWN_GOOD_FILE, history[0].encode("utf-8"))
    else:
        files.remove(KNOWN_GOOD_FILE)
    if len(history) > 1:
        files.write(PREVIOUS_KNOWN_GOOD_FILE, history[1].encode("utf-8"))
    else:
        files.remove(PREVIOUS_KNOWN_GOOD_FILE)
    files.write(KNOWN_GOOD_HISTORY_FILE, _dump(history))


def _read_history_file(files: StoreDir) -> tuple[str, ...] | None:
    """The versions in the history file; ``None`` if it is missing or (warned) unusable."""
    data = files.read_json(KNOWN_GOOD_HISTORY_FILE)
    if data is None:
        return None
    versions = data.get("versions")
    try:
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise ValueError("'versions' must be a list of strings")
        history: list[str] = []
        for raw in versions:
            value = checked_version(raw, "invalid version")
            if value not in history:
                history.append(value)
    except ValueError as exc:
        logger.warning(
            "Ignoring corrupt {}: {}; using {} and {}",
            files.path / KNOWN_GOOD_HISTORY_FILE,
            reason(exc),
            KNOWN_GOOD_FILE,
            PREVIOUS_KNOWN_GOOD_FILE,
        )
        return None
    return tuple(history[:MAX_KNOWN_GOOD_HISTORY])


def _dump(history: Sequence[str]) -> bytes:
    payload = {"versions": list(history[:MAX_KNOWN_GOOD_HISTORY])}
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")
