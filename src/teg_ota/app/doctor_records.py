"""``teg-ota doctor``'s checks of the records in the data directory: the version file, the
known-good files, the failed version and the last answer (the journal is
:mod:`~teg_ota.app.doctor_state`'s).

The store's own readers decide what is usable (:meth:`StoreDir.read_version`, and
:class:`FileVersionStore`'s ``failed``, ``answered`` and known-good history, which only
read); this module only adds why a file they ignore is unusable, and the fix. The store is
opened with ``stale_temp_after=inf`` so that opening it removes no temporary file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

from teg_ota.adapters.atomic_file import read_text_or_none
from teg_ota.adapters.file_version_store import (
    ANSWER_FILE,
    FAILED_FILE,
    KNOWN_GOOD_FILE,
    KNOWN_GOOD_HISTORY_FILE,
    LAST_LAUNCHED_FILE,
    MAX_JSON_FILE_BYTES,
    PREVIOUS_KNOWN_GOOD_FILE,
    FileVersionStore,
)
from teg_ota.adapters.known_good_files import read_history
from teg_ota.adapters.resolved_files import RESOLVED_FILE, is_commit_like
from teg_ota.adapters.store_files import MISSING as READ_MISSING
from teg_ota.adapters.store_files import StoreDir
from teg_ota.app.doctor_check import MISSING, REGULAR, Check, describe, kind, remove_fix
from teg_ota.domain.model.versions import normalised

_AFTER_DELETE = {
    KNOWN_GOOD_FILE: f"the rollback target is then read from {KNOWN_GOOD_HISTORY_FILE}",
    PREVIOUS_KNOWN_GOOD_FILE: f"the history is then read from {KNOWN_GOOD_HISTORY_FILE}",
    KNOWN_GOOD_HISTORY_FILE: (
        f"the history is then seeded again from {KNOWN_GOOD_FILE} and {PREVIOUS_KNOWN_GOOD_FILE}"
    ),
    FAILED_FILE: "the gateway then forgets which version failed (it may try it again)",
    ANSWER_FILE: "the gateway may then tell ThingsBoard its last result once more",
    RESOLVED_FILE: "a tag moved on the remote before its next success then goes unnoticed",
}
_SHAPE = {
    FAILED_FILE: '{"version": <a valid version>, "error": <text>, "fingerprint": <text>}',
    ANSWER_FILE: '{"state": "UPDATED" or "FAILED", "version": <text>, "title": <text>}',
    KNOWN_GOOD_HISTORY_FILE: '{"versions": [<valid versions, newest first>]}',
    RESOLVED_FILE: '{"versions": {<valid version>: <40 or 64 hex digits>, ...}}',
}


def record_checks(data: Path, default_version: str | None = None) -> Iterator[Check]:
    """The version file (always), one failed check per other unusable record, and one
    summary when they are all usable."""
    files = StoreDir(data)
    store = FileVersionStore(data, stale_temp_after=math.inf)
    yield version_file_check(files, default_version)
    problems = [
        check
        for check in (
            _text_record(files, KNOWN_GOOD_FILE),
            _text_record(files, PREVIOUS_KNOWN_GOOD_FILE),
            _json_record(data, KNOWN_GOOD_HISTORY_FILE, lambda: read_history(files)[1]),
            _json_record(data, FAILED_FILE, lambda: store.failed() is not None),
            _json_record(data, ANSWER_FILE, lambda: store.answered() is not None),
            _json_record(data, RESOLVED_FILE, lambda: _resolved_usable(data / RESOLVED_FILE)),
        )
        if check is not None
    ]
    if problems:
        yield from problems
        return
    yield Check("state files", True, _summary(store))


def version_file_check(files: StoreDir, default_version: str | None) -> Check:
    path = files.path / LAST_LAUNCHED_FILE
    instead = (
        f"the default version {default_version} runs instead"
        if default_version
        else "no default version is set (TEG_DEFAULT_CONTROLLER_VERSION): nothing runs until "
        "ThingsBoard assigns a version"
    )
    fix = (
        f"write the version to run, e.g. echo v1.2.3 > {path}, or delete it to use the "
        "default (TEG_DEFAULT_CONTROLLER_VERSION)"
    )
    found = kind(path)
    if found not in (MISSING, REGULAR):
        return Check(
            "version file",
            False,
            f"{path} is a {found}, not a file; {instead}",
            remove_fix(
                path, f"then write the version to run (echo v1.2.3 > {path}) or let the default run"
            ),
        )
    version, problem = files.read_version(LAST_LAUNCHED_FILE)
    if version is not None:
        return Check("version file", True, f"{path}: {version} was launched last")
    if problem == READ_MISSING:
        return Check("version file", True, f"{path} does not exist yet; {instead}")
    return Check("version file", False, f"{path} {problem}; {instead}", fix)


def _text_record(files: StoreDir, name: str) -> Check | None:
    path = files.path / name
    found = kind(path)
    if found == MISSING:
        return None
    if found != REGULAR:
        return _bad(path, f"is a {found}, not a file", remove_fix(path, _AFTER_DELETE[name]))
    version, problem = files.read_version(name)
    if version is not None or problem == READ_MISSING:
        return None
    return _bad(path, problem, f"delete it (rm {path}): {_AFTER_DELETE[name]}")


def _json_record(data: Path, name: str, usable: Callable[[], bool]) -> Check | None:
    """A problem with the JSON record ``name``: its type, its syntax (read here, for the
    reason), then whether the store's reader accepts it (``usable``)."""
    path = data / name
    found = kind(path)
    if found == MISSING:
        return None
    if found != REGULAR:
        return _bad(path, f"is a {found}, not a file", remove_fix(path, _AFTER_DELETE[name]))
    try:
        text = read_text_or_none(path, max_bytes=MAX_JSON_FILE_BYTES)
        value = None if text is None else json.loads(text)
    except OSError as exc:
        return _bad(
            path,
            f"is unreadable ({describe(exc)})",
            f"check its permissions and the disk (ls -l {path}); or delete it: "
            f"{_AFTER_DELETE[name]}",
        )
    except (ValueError, RecursionError) as exc:
        return _bad(path, f"is not valid JSON ({describe(exc)})", _delete(path, name))
    if text is None:
        return None
    if not isinstance(value, dict):
        return _bad(path, "is not a JSON object", _delete(path, name))
    if not usable():
        return _bad(path, f"is not a record teg-ota can use: {_SHAPE[name]}", _delete(path, name))
    return None


def _resolved_usable(path: Path) -> bool:
    """Every entry is what the store would read back (it skips bad ones silently)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    versions = data.get("versions")
    return isinstance(versions, dict) and all(
        normalised(version) is not None and is_commit_like(commit)
        for version, commit in versions.items()
    )


def _delete(path: Path, name: str) -> str:
    return f"delete it (rm {path}): {_AFTER_DELETE[name]}"


def _bad(path: Path, problem: str, fix: str) -> Check:
    return Check("state file", False, f"{path} {problem}; the gateway ignores it", fix)


def _summary(store: FileVersionStore) -> str:
    history = store.known_good_history()
    failed = store.failed()
    answered = store.answered()
    parts = [
        "known good: " + (", ".join(history) if history else "none yet"),
        f"failed: {failed.version}" if failed else "no failed version",
    ]
    if answered is not None:
        parts.append(f"last told ThingsBoard: {answered.state.value} {answered.version}")
    return f"{store.data_path}: " + "; ".join(parts)
