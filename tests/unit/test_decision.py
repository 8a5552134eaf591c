"""decide_update: every case of what to do with an OTA request, as one table."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from teg_ota.domain.core.decision import (
    AlreadyRunning,
    Decision,
    Defer,
    Ignore,
    RefuseFailed,
    Reject,
    StartUpdate,
    UpdateContext,
    decide_update,
)
from teg_ota.domain.core.ota_messages import OtaRequest
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.journal import FailedVersion
from teg_ota.domain.model.versions import Version, VersionKind, parse_version

TITLE = "teg-controller"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HEALTH_ERROR = "controller exited with code 1 during the health check"
FAILED_UNDER_A = FailedVersion("v2.0.0", HEALTH_ERROR, "fp-a")


@dataclass(frozen=True)
class RejectedBecause:
    """Matches a Reject whose error mentions every fragment (wording stays free)."""

    fragments: tuple[str, ...]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reject) and all(f in other.error for f in self.fragments)

    def __hash__(self) -> int:
        return hash(self.fragments)


@dataclass(frozen=True)
class IgnoredBecause:
    """Matches an Ignore whose reason mentions every fragment (wording stays free)."""

    fragments: tuple[str, ...]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ignore) and all(f in other.reason for f in self.fragments)

    def __hash__(self) -> int:
        return hash(self.fragments)


def _tag(value: str) -> Version:
    return Version(value, VersionKind.TAG)


def _invalid_message(raw: str) -> str:
    try:
        parse_version(raw)
    except InvalidVersion as exc:
        return str(exc)
    raise AssertionError(f"{raw!r} unexpectedly valid")


def _context(
    version: str,
    *,
    title: str | None = TITLE,
    running: str | None = "v1.0.0",
    configured_title: str | None = TITLE,
    failed: FailedVersion | None = None,
    in_flight: str | None = None,
    fingerprint: str | None = None,
) -> UpdateContext:
    return UpdateContext(
        request=OtaRequest(version=version, title=title),
        running_version=running,
        configured_title=configured_title,
        failed=failed,
        in_flight=in_flight,
        fingerprint=fingerprint,
    )


CASES = [
    # --- nothing in flight, no failure remembered
    pytest.param(_context("v1.0.0"), AlreadyRunning("v1.0.0"), id="already-running"),
    pytest.param(
        _context("v2.0.0"), StartUpdate(_tag("v2.0.0"), clears_failed=False), id="new-version"
    ),
    pytest.param(
        _context("v2.0.0", running=None),
        StartUpdate(_tag("v2.0.0"), clears_failed=False),
        id="nothing-running",
    ),
    # --- package title
    pytest.param(
        _context("v2.0.0", title="other-app"),
        RejectedBecause(("other-app", TITLE, "TEG_SW_TITLE", "left unchanged")),
        id="other-title-failed-naming-both-titles",
    ),
    pytest.param(
        _context("v1.0.0", title="other-app"),
        RejectedBecause(("other-app", TITLE)),
        id="other-title-failed-even-if-version-runs",
    ),
    pytest.param(
        _context("v1;rm -rf /", title="other-app"),
        RejectedBecause(("other-app", TITLE)),
        id="other-title-failed-before-validation",
    ),
    pytest.param(
        _context("v2.0.0", title="Teg-Controller"),
        RejectedBecause(("Teg-Controller", TITLE)),
        id="title-compared-exactly",
    ),
    pytest.param(
        _context("v2.0.0", title="anything", configured_title=None),
        StartUpdate(_tag("v2.0.0"), clears_failed=False),
        id="no-configured-title-accepts-any",
    ),
    pytest.param(
        _context("v2.0.0", title=None),
        StartUpdate(_tag("v2.0.0"), clears_failed=False),
        id="request-without-title-accepted",
    ),
    pytest.param(
        _context("v2.0.0", title=None, configured_title=None),
        StartUpdate(_tag("v2.0.0"), clears_failed=False),
        id="no-title-anywhere",
    ),
    # --- remembered failure
    pytest.param(
        _context("v2.0.0", failed=FailedVersion("v2.0.0", HEALTH_ERROR)),
        RefuseFailed("v2.0.0", HEALTH_ERROR),
        id="failed-version-re-sent-refused",
    ),
    pytest.param(
        _context("v3.0.0", failed=FailedVersion("v2.0.0", HEALTH_ERROR)),
        StartUpdate(_tag("v3.0.0"), clears_failed=True),
        id="other-version-after-failure-clears-it",
    ),
    pytest.param(
        _context("v1.0.0", failed=FailedVersion("v2.0.0", HEALTH_ERROR)),
        AlreadyRunning("v1.0.0"),
        id="running-version-after-failure-confirmed",
    ),
    pytest.param(
        _context("v2.0.0", running="v2.0.0", failed=FailedVersion("v2.0.0", HEALTH_ERROR)),
        AlreadyRunning("v2.0.0"),
        id="running-beats-remembered-failure",
    ),
    # --- invalid versions
    pytest.param(
        _context("v1;rm -rf /"), Reject(_invalid_message("v1;rm -rf /")), id="invalid-rejected"
    ),
    pytest.param(_context(""), Reject(_invalid_message("")), id="empty-rejected"),
    pytest.param(
        _context("--upload-pack=x", failed=FailedVersion("v2.0.0", HEALTH_ERROR)),
        Reject(_invalid_message("--upload-pack=x")),
        id="invalid-rejected-with-failure-remembered",
    ),
    # --- an update in flight
    pytest.param(
        _context("v2.0.0", in_flight="v2.0.0"),
        IgnoredBecause(("v2.0.0",)),
        id="in-flight-same-target-ignored",
    ),
    pytest.param(
        _context("v3.0.0", in_flight="v2.0.0"), Defer(_tag("v3.0.0")), id="in-flight-other-deferred"
    ),
    pytest.param(
        _context("v1.0.0", in_flight="v2.0.0"),
        Defer(_tag("v1.0.0")),
        id="in-flight-back-to-running-deferred",
    ),
    pytest.param(
        _context("v3.0.0", in_flight="v2.0.0", failed=FailedVersion("v3.0.0", HEALTH_ERROR)),
        Defer(_tag("v3.0.0")),
        id="in-flight-failed-version-deferred-for-later-decision",
    ),
    pytest.param(
        _context("a..b", in_flight="v2.0.0"),
        Reject(_invalid_message("a..b")),
        id="in-flight-invalid-rejected",
    ),
    pytest.param(
        _context("v3.0.0", title="other-app", in_flight="v2.0.0"),
        RejectedBecause(("other-app", TITLE)),
        id="in-flight-other-title-failed",
    ),
    # --- commit hashes compared normalised
    pytest.param(
        _context(COMMIT.upper(), running=COMMIT),
        AlreadyRunning(COMMIT),
        id="upper-commit-already-running",
    ),
    pytest.param(
        _context(COMMIT.upper()),
        StartUpdate(Version(COMMIT, VersionKind.COMMIT), clears_failed=False),
        id="upper-commit-started-lower-case",
    ),
    pytest.param(
        _context(COMMIT.upper(), failed=FailedVersion(COMMIT, HEALTH_ERROR)),
        RefuseFailed(COMMIT, HEALTH_ERROR),
        id="upper-commit-matches-failed",
    ),
    pytest.param(
        _context(COMMIT.upper(), in_flight=COMMIT),
        IgnoredBecause((COMMIT,)),
        id="upper-commit-matches-in-flight",
    ),
    # --- versions ThingsBoard would type-cast on the dashboard
    pytest.param(
        _context("1.10"), RejectedBecause(("'1.10'", "number", "v1.10")), id="numeric-refused"
    ),
    pytest.param(_context("2"), RejectedBecause(("'2'", "number")), id="integer-refused"),
    pytest.param(
        _context("1.2.3"), StartUpdate(_tag("1.2.3"), clears_failed=False), id="dotted-accepted"
    ),
    pytest.param(
        _context("1" * 40, running=None),
        StartUpdate(parse_version("1" * 40), clears_failed=False),
        id="all-digit-commit-accepted",
    ),
    # --- a failure remembered under other build/run settings no longer counts
    pytest.param(
        _context("v2.0.0", failed=FAILED_UNDER_A, fingerprint="fp-a"),
        RefuseFailed("v2.0.0", HEALTH_ERROR),
        id="failed-under-the-same-settings-refused",
    ),
    pytest.param(
        _context("v2.0.0", failed=FAILED_UNDER_A, fingerprint="fp-b"),
        StartUpdate(_tag("v2.0.0"), clears_failed=True),
        id="failed-under-other-settings-retried",
    ),
]


@pytest.mark.parametrize(("context", "expected"), CASES)
def test_decide_update(context: UpdateContext, expected: Decision | IgnoredBecause) -> None:
    assert decide_update(context) == expected


def test_decision_is_idempotent_for_a_re_sent_request() -> None:
    context = _context("v2.0.0", failed=FailedVersion("v2.0.0", HEALTH_ERROR))

    assert decide_update(context) == decide_update(context)
