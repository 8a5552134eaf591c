"""The gateway's time zone, for the maintenance windows and the times ThingsBoard is shown.

A zone with its DST rules, not today's fixed offset: a window at 02:00 must stay at 02:00
local time across the change. ``TZ`` (as the C library reads it) wins, then
``/etc/localtime`` (what ``timedatectl set-timezone`` writes); when neither can be read, the
current offset (DST changes are then not followed, and the log says so once).
"""

from __future__ import annotations

import datetime
import functools
import os
import zoneinfo

from loguru import logger


@functools.cache
def local_zone() -> datetime.tzinfo:
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            logger.warning("TZ={!r} is not a known time zone; using /etc/localtime", name)
    try:
        with open("/etc/localtime", "rb") as handle:
            return zoneinfo.ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError) as exc:
        fixed = datetime.datetime.now().astimezone().tzinfo or datetime.UTC
        logger.warning("cannot read /etc/localtime ({}); using the fixed offset {}", exc, fixed)
        return fixed
