"""Parsers of setting values: each turns the text of one variable into its value or raises
:class:`ValueError` with a reason (``load_settings`` adds the variable's name).

A parser never echoes a value that may be a secret (``env_map``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from teg_ota.domain.core import windows
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.versions import parse_version


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the variable."""


PREFIX_RE = re.compile(r"(?=.{1,40}$)[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*-?")
"""At most 40 characters: with the longest encoded version the image name stays within
Docker's 255-character limit."""
CONTAINER_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
NETWORK_RE = re.compile(r"host|none|bridge|[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}")
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LOG_DRIVER_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_LOG_OPTION_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
DEVICE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")


def text(value: str) -> str:
    return value


def optional(value: str) -> str | None:
    return value or None


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 0 or 1")


def port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError("expected a TCP port between 1 and 65535")
    return port


def seconds(value: str) -> float:
    seconds = float(value)
    if not 0 <= seconds <= 7 * 24 * 3600:  # also false for NaN
        raise ValueError("expected a number of seconds between 0 and 604800")
    return seconds


def positive_seconds(value: str) -> float:
    parsed = seconds(value)
    if parsed <= 0:
        raise ValueError("expected a number of seconds greater than 0")
    return parsed


def optional_positive_seconds(value: str) -> float | None:
    """Empty: none (wait for ever)."""
    return positive_seconds(value) if value.strip() else None


def lock_file(value: str) -> str | None:
    """The update lock: absolute, or relative to the controller data dir without ``..``;
    empty: no lock."""
    path = value.strip()
    if not path:
        return None
    if "\0" in path or ".." in Path(path).parts or path.endswith("/"):
        raise ValueError("expected a file name in the controller data dir, or an absolute path")
    return path


def update_windows(value: str) -> str:
    """``HH:MM-HH:MM`` windows, comma-separated (empty: any time); normalised."""
    try:
        return windows.describe(windows.parse_windows(value)).replace(" ", "")
    except windows.InvalidWindows as exc:
        raise ValueError(str(exc)) from None


def count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("expected a whole number >= 0")
    return number


def positive_count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError("expected a whole number >= 1") from None
    if number < 1:
        raise ValueError("expected a whole number >= 1")
    return number


def existing_file(value: str) -> str | None:
    if not value:
        return None
    if not Path(value).is_file():
        raise ValueError(f"no such file: {value}")
    return value


def version(value: str) -> str | None:
    if not value:
        return None
    try:
        return parse_version(value).value
    except InvalidVersion as exc:
        raise ValueError(str(exc)) from exc


def matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"not a valid {what}")
        return value

    return check


def choice(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return check


def log_level(value: str) -> str:
    level = value.upper()
    if level not in ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected TRACE, DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def env_map(value: str) -> dict[str, str]:
    """``KEY=value`` pairs separated by newlines or ``;``."""
    result: dict[str, str] = {}
    for item in re.split(r"[;\n]", value):
        if not item.strip():
            continue
        key, sep, val = item.strip().partition("=")
        if not sep or not _ENV_NAME_RE.fullmatch(key):
            # the value may be a secret: name the position, never echo the entry
            raise ValueError(f"entry {len(result) + 1} is not KEY=value (pairs separated by ';')")
        result[key] = val
    return result


def relative_path(what: str) -> Callable[[str], str]:
    """A path inside the work tree (or the build context): relative, no ``..`` part, not
    in ``.git`` (its ``config`` holds the remote's credentials)."""

    def check(value: str) -> str:
        path = value.strip().removeprefix("./") or "."
        parts = Path(path).parts
        if path.startswith("/") or ".." in parts or "\0" in path or not parts:
            raise ValueError(f"expected a {what} relative to the repository, without '..'")
        if ".git" in parts:
            raise ValueError(f"a {what} inside .git is refused")
        return str(Path(path))

    return check


def absolute_path(value: str) -> str | None:
    """A bind-mount source: absolute, and without ``:`` (Docker's separator)."""
    if not value:
        return None
    if not value.startswith("/") or "\0" in value:
        raise ValueError("expected an absolute path")
    if ":" in value:
        raise ValueError("a mount source cannot hold ':'")
    return value


def log_options(value: str) -> dict[str, str]:
    """``key=value`` options of the log driver, separated by ``;`` or ``,`` (empty: none)."""
    options: dict[str, str] = {}
    for item in re.split(r"[;,\n]", value):
        if not item.strip():
            continue
        key, sep, val = item.strip().partition("=")
        if not sep or not _LOG_OPTION_RE.fullmatch(key) or not val or len(val) > 256:
            raise ValueError(f"expected key=value log options separated by ';', got {item!r}")
        options[key] = val
    return options


def mounts(value: str) -> tuple[str, ...]:
    """``/host:/container[:ro|rw]`` entries separated by ``;`` or newlines."""
    mounts = []
    for raw in re.split(r"[;\n]", value):
        item = raw.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3) or not all(p.startswith("/") for p in parts[:2]):
            raise ValueError(f"expected /host/path:/container/path[:ro], got {item!r}")
        if len(parts) == 3 and parts[2] not in ("ro", "rw"):
            raise ValueError(f"mount mode must be ro or rw in {item!r}")
        mounts.append(item)
    return tuple(mounts)


_UNIX_SOCKET_PATH_MAX = 107
"""``sun_path`` holds 108 bytes with the terminating NUL."""


def control_socket(value: str) -> str:
    """An absolute path short enough for a Unix socket; empty: the channel off."""
    if not value:
        return ""
    if not value.startswith("/") or "\0" in value:
        raise ValueError("expected an absolute path (or empty: no control channel)")
    if len(value.encode()) > _UNIX_SOCKET_PATH_MAX:
        raise ValueError(f"a Unix socket path is at most {_UNIX_SOCKET_PATH_MAX} bytes")
    return value
