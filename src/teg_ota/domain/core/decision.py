"""What to do with an OTA request: a pure function, so every case is a row in a table test.

ThingsBoard re-sends the same attributes whenever the device asks for them (on every
reconnect), so the decision must be idempotent: a version that runs is confirmed, a version
that just failed is not retried until the operator assigns something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from teg_ota.domain.core.ota_messages import OtaRequest
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.journal import FailedVersion
from teg_ota.domain.model.versions import Version, parse_version


@dataclass(frozen=True, slots=True)
class UpdateContext:
    request: OtaRequest
    running_version: str | None
    configured_title: str | None = None
    failed: FailedVersion | None = None
    in_flight: str | None = None
    """Target of the update being performed right now, if any."""
    fingerprint: str | None = None
    """The current build/run settings' fingerprint (``UpdateSettings.fingerprint``)."""
    running_commit: str | None = None
    """The commit label of the running container (None: unlabelled, e.g. the old gateway's)."""
    recorded_commit: str | None = None
    """The commit the requested version named at its first successful update, if recorded."""
    allow_moved_tags: bool = False


@dataclass(frozen=True, slots=True)
class AlreadyRunning:
    """Report UPDATED with the running version so the dashboard is right."""

    version: str
    recheck: bool = False
    """Moved tags are allowed: ask the remote what the tag names now before confirming."""


@dataclass(frozen=True, slots=True)
class StartUpdate:
    version: Version
    clears_failed: bool
    """A different version was assigned: the remembered failure no longer blocks anything."""


@dataclass(frozen=True, slots=True)
class Defer:
    """An update is in flight: queue this one (latest wins); never interrupt a swap."""

    version: Version


@dataclass(frozen=True, slots=True)
class Ignore:
    reason: str


@dataclass(frozen=True, slots=True)
class RefuseFailed:
    """The version failed before; retrying it on a re-sent attribute would loop."""

    version: str
    previous_error: str


@dataclass(frozen=True, slots=True)
class Reject:
    """The request itself is bad (invalid version): report FAILED with this error."""

    error: str


Decision = AlreadyRunning | StartUpdate | Defer | Ignore | RefuseFailed | Reject


_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def looks_numeric(version: str) -> bool:
    """ThingsBoard stores telemetry strings that parse as numbers as numbers
    (``transport.json.type_cast_enabled``): such a version would never read back as sent."""
    return _NUMBER_RE.fullmatch(version) is not None


def decide_update(context: UpdateContext) -> Decision:
    request = context.request
    if (
        context.configured_title is not None
        and request.title is not None
        and request.title != context.configured_title
    ):
        return Reject(
            f"package title {request.title!r} does not match this gateway's title "
            f"{context.configured_title!r} (TEG_SW_TITLE); the controller was left unchanged"
        )
    try:
        version = parse_version(request.version)
    except InvalidVersion as exc:
        return Reject(str(exc))
    if not version.is_commit and looks_numeric(version.value):
        return Reject(
            f"version {version.value!r} looks like a number to ThingsBoard, which would show "
            f"it changed (type cast, e.g. 1.10 as 1.1): name the version with a leading "
            f"letter (v{version.value}) in the controller repository and the package"
        )
    if context.in_flight is not None:
        if context.in_flight == version.value:
            return Ignore(f"already updating to {version}")
        return Defer(version)
    if context.running_version == version.value:
        running, recorded = context.running_commit, context.recorded_commit
        if running is not None and recorded is not None and running != recorded:
            # Named like the version but not what it was installed as: never confirmed.
            return StartUpdate(version, clears_failed=context.failed is not None)
        recheck = context.allow_moved_tags and not version.is_commit and running is not None
        return AlreadyRunning(version.value, recheck=recheck)
    failed = context.failed
    if failed is not None and not failed.applies_under(context.fingerprint):
        failed = None  # remembered under other build/run settings: the gateway may have erred
    if failed is not None and failed.version == version.value:
        return RefuseFailed(version.value, failed.error)
    return StartUpdate(version, clears_failed=context.failed is not None)
