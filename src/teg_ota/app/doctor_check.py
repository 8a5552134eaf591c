"""What one ``teg-ota doctor`` check reports, and the read-only file probes the checks share.

Nothing here (nor in any ``doctor_*`` module) creates, writes, renames or removes a file:
the doctor may run next to the runner, on a damaged data directory, and must leave what it
finds exactly as it found it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

MISSING, REGULAR, DIRECTORY, OTHER = "missing", "file", "directory", "other"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def kind(path: Path) -> str:
    """:data:`MISSING`, :data:`REGULAR`, :data:`DIRECTORY` or :data:`OTHER` (symlinks
    followed: a dangling one is missing, as it is to the readers; so is a path under a
    file). Another error (a permission) is :data:`OTHER`: the caller's read reports it."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return MISSING
    except OSError:
        return OTHER
    if stat.S_ISREG(mode):
        return REGULAR
    if stat.S_ISDIR(mode):
        return DIRECTORY
    return OTHER


def remove_fix(path: Path, what: str) -> str:
    """The fix for something that is not a regular file where one belongs."""
    command = "rm -r" if kind(path) == DIRECTORY else "rm"
    return f"remove it ({command} {path}); {what}"


def describe(exc: BaseException) -> str:
    """A short reason: ``strerror`` for an OSError (the path is named by the caller)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
