"""``teg-ota doctor``'s checks of the outbox (``<data>/outbox``) and of the telemetry
timestamp mark kept in it.

The outbox itself cannot be opened here: opening one cleans up (temporary files removed,
bad files moved to ``corrupt/``), and the runner may be using it. So the directory is
listed and each entry read with the outbox's own format functions
(:func:`parse_entry_file_name`, :func:`decode_entry`), and the mark with
:func:`parse_mark` / :func:`mark_is_credible`; nothing is changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from teg_ota.adapters.atomic_file import TEMP_INFIX, read_text_or_none
from teg_ota.adapters.mqtt.outbox import DEFAULT_MAX_MESSAGES
from teg_ota.adapters.mqtt.outbox_files import CORRUPT_DIR_NAME
from teg_ota.adapters.mqtt.outbox_format import (
    MAX_ENTRY_BYTES,
    CorruptEntry,
    decode_entry,
    parse_entry_file_name,
)
from teg_ota.adapters.mqtt.timestamps import (
    LINK_STATE_DIR_NAME,
    MAX_MARK_AHEAD_S,
    MAX_MARK_BYTES,
    mark_is_credible,
    mark_path,
    parse_mark,
)
from teg_ota.app.doctor_check import DIRECTORY, MISSING, REGULAR, Check, describe, kind, remove_fix

MAX_LISTED = 5
"""Bad entries named one by one; the rest are counted."""


@dataclass(slots=True)
class _Listing:
    pending: int = 0
    ota: int = 0
    bad: list[str] = field(default_factory=list)
    bad_dirs: bool = False


def outbox_checks(outbox: Path, now_s: float) -> Iterator[Check]:
    """The outbox directory and its entries, then the timestamp mark."""
    yield from _outbox(outbox)
    yield mark_check(mark_path(outbox), now_s)


def _outbox(outbox: Path) -> Iterator[Check]:
    found = kind(outbox)
    if found == MISSING:
        yield Check("outbox", True, f"{outbox} does not exist yet: created at first start")
        return
    if found != DIRECTORY:
        yield Check(
            "outbox",
            False,
            f"{outbox} is a {found}, not a directory: reports to ThingsBoard are kept in "
            "memory only (lost if teg-ota stops before they are sent)",
            f"remove it (rm {outbox}); the outbox creates the directory again",
        )
        return
    if not os.access(outbox, os.R_OK | os.W_OK | os.X_OK):
        yield Check(
            "outbox",
            False,
            f"{outbox} is not writable by uid {os.geteuid()}: reports to ThingsBoard are kept "
            "in memory only (lost if teg-ota stops before they are sent)",
            f"make it writable by the user teg-ota runs as (chown that user {outbox}; "
            f"chmod u+rwx {outbox})",
        )
        return
    try:
        listing = _list(outbox)
    except OSError as exc:
        yield Check(
            "outbox",
            False,
            f"{outbox} cannot be listed ({describe(exc)})",
            f"make {outbox} readable and writable by the teg-ota user",
        )
        return
    detail = f"{outbox}: {listing.pending} message(s) waiting to be sent"
    if listing.ota:
        detail += f" ({listing.ota} OTA state report(s))"
    if listing.pending >= DEFAULT_MAX_MESSAGES:
        detail += "; full: the oldest telemetry is dropped for new messages"
    yield Check("outbox", True, detail)
    if listing.bad:
        shown = "; ".join(listing.bad[:MAX_LISTED])
        more = len(listing.bad) - MAX_LISTED
        remove = "rm -r" if listing.bad_dirs else "rm"
        yield Check(
            "outbox entries",
            False,
            f"{len(listing.bad)} bad entr{'y' if len(listing.bad) == 1 else 'ies'}: {shown}"
            + (f"; and {more} more" if more > 0 else ""),
            f"nothing is needed: the next start moves them to {outbox / CORRUPT_DIR_NAME} "
            f"(their messages are lost); or delete them now ({remove} <path>)",
        )


def _list(outbox: Path) -> _Listing:
    """Every entry read and checked; what the outbox's scan would move aside is bad."""
    listing = _Listing()
    for entry in sorted(outbox.iterdir()):
        name = entry.name
        parsed = parse_entry_file_name(name)
        found = kind(entry)
        if found == DIRECTORY:
            if parsed is not None:
                listing.bad.append(f"{entry} is a directory with an entry's name")
                listing.bad_dirs = True
            continue  # corrupt/, link/ and any other directory are left alone
        if found == MISSING or (name.startswith(".") and TEMP_INFIX in name):
            continue  # gone meanwhile (sent), or a write in progress / interrupted
        if name == LINK_STATE_DIR_NAME:
            continue  # a file in place of the mark's directory: the mark check reports it
        if parsed is None:
            listing.bad.append(f"{entry} is not an outbox entry")
            continue
        problem = _entry_problem(entry)
        if problem == "":
            continue
        if problem is not None:
            listing.bad.append(f"{entry} {problem}")
            continue
        listing.pending += 1
        listing.ota += parsed[1]
    return listing


def _entry_problem(entry: Path) -> str | None:
    """``None``: a valid entry; ``""``: it vanished (sent meanwhile); else what is wrong
    (as :meth:`OutboxFiles.read` checks it, without moving it aside)."""
    try:
        size = entry.stat().st_size
        if size > MAX_ENTRY_BYTES:
            raise CorruptEntry(f"{size} bytes is too large")
        decode_entry(entry.read_bytes())
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"is unreadable ({describe(exc)})"
    except CorruptEntry as exc:
        return f"is corrupt ({describe(exc)})"
    return None


def mark_check(path: Path, now_s: float) -> Check:
    name = "timestamp mark"
    link_dir = path.parent
    if kind(link_dir) not in (MISSING, DIRECTORY):
        return Check(
            name,
            False,
            f"{link_dir} is a {kind(link_dir)}, not a directory: the telemetry timestamp "
            "mark cannot be saved",
            remove_fix(
                link_dir,
                "the next start would move it into corrupt/ anyway, and the directory is "
                "created again at the next stamped message",
            ),
        )
    found = kind(path)
    if found == MISSING:
        return Check(name, True, f"{path} not saved yet")
    delete = f"delete it (rm {path}): telemetry timestamps then follow the clock"
    if found != REGULAR:
        return Check(
            name,
            False,
            f"{path} is a {found}, not a file; ignored",
            remove_fix(path, "telemetry timestamps then follow the clock"),
        )
    try:
        text = read_text_or_none(path, max_bytes=MAX_MARK_BYTES)
    except (OSError, ValueError) as exc:
        return Check(name, False, f"{path} is unreadable ({describe(exc)}); ignored", delete)
    if text is None:
        return Check(name, True, f"{path} not saved yet")
    mark_ms = parse_mark(text)
    if mark_ms is None:
        return Check(name, False, f"{path} is not a number; ignored", delete)
    ahead_s = mark_ms / 1000 - now_s
    if not mark_is_credible(mark_ms, now_s):
        return Check(
            name,
            False,
            f"{path} is {ahead_s / 86400:.1f} days ahead of the clock (more than "
            f"{MAX_MARK_AHEAD_S / 3600:.0f} h): the clock or the mark is wrong",
            "if the clock is behind, fix its time sync (timedatectl status); otherwise "
            f"nothing is needed: the next start discards the mark, or {delete}",
        )
    if ahead_s > 0:
        return Check(name, True, f"{path}: {ahead_s:.0f} s ahead of the clock (kept)")
    return Check(name, True, f"{path}: the last telemetry was stamped {-ahead_s:.0f} s ago")
