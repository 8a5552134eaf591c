"""``resolved_versions.json``: the commit (or image digest) each version named when it first
passed its health gate, so a tag moved on the remote afterwards is noticed, never confirmed
silently (the moved-tag policy, ``TEG_ALLOW_MOVED_TAGS``).

Format: ``{"versions": {"v1.2.3": "<40 or 64 hex digits, or sha256:...>", ...}}``, oldest
first, at most :data:`MAX_RESOLVED` entries (the oldest dropped). A corrupt file, or a
corrupt entry, reads as "not recorded" plus a warning: the next success records it again.
"""

from __future__ import annotations

import json
import re

from loguru import logger

from teg_ota.adapters.store_files import (
    InvalidStoredVersion,
    StoreDir,
    checked_version,
    storable_version,
)

RESOLVED_FILE = "resolved_versions.json"
MAX_RESOLVED = 100

_COMMIT = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64}|sha256:[0-9a-f]{64})")


def is_commit_like(value: object) -> bool:
    return isinstance(value, str) and _COMMIT.fullmatch(value) is not None


def read_resolved(files: StoreDir) -> dict[str, str]:
    """Version -> commit, as recorded; unusable entries are left out (with one warning)."""
    data = files.read_json(RESOLVED_FILE)
    if data is None:
        return {}
    versions = data.get("versions")
    if not isinstance(versions, dict):
        logger.warning("Ignoring corrupt {}: no 'versions' object", files.path / RESOLVED_FILE)
        return {}
    resolved: dict[str, str] = {}
    bad = 0
    for version, commit in versions.items():
        try:
            key = checked_version(str(version), "invalid version")
        except ValueError:
            bad += 1
            continue
        if not is_commit_like(commit):
            bad += 1
            continue
        resolved[key] = str(commit)
    if bad:
        logger.warning("Ignoring {} corrupt entries of {}", bad, files.path / RESOLVED_FILE)
    return resolved


def write_resolved(files: StoreDir, version: str, commit: str) -> None:
    """Record ``version`` -> ``commit`` (replacing an older record, moved to the end)."""
    key = storable_version(version, "refusing to record the commit of")
    if not is_commit_like(commit):
        raise InvalidStoredVersion(f"refusing to record {commit!r} as the commit of {key}")
    resolved = read_resolved(files)
    resolved.pop(key, None)
    resolved[key] = commit
    kept = dict(list(resolved.items())[-MAX_RESOLVED:])
    files.write(RESOLVED_FILE, json.dumps({"versions": kept}).encode("utf-8"))
