"""A fetch the origin answered "not now" (429, 5xx) is tried again with full jitter; the
budget's end is one FAILED that does not blame the version; "no" is never retried."""

from __future__ import annotations

import random

import pytest

from teg_ota.domain.core.fetch_retry import next_step, retry_delay
from teg_ota.domain.model.errors import (
    FetchFailed,
    SourceRateLimited,
    SourceTemporarilyUnavailable,
    UnknownVersion,
)
from teg_ota.domain.model.fetch_retry_policy import FetchRetryPolicy
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.package import PackageRef
from teg_ota.domain.model.versions import parse_version
from teg_ota.domain.services.fetch_retry import FetchRetry
from teg_ota.domain.services.update_service import UpdateService

from .fakes import FakeClock, FakeRepoSource
from .test_update_service import C2, SUCCESS, World, tag

RATE_LIMITED = "the Git server rate-limited the fetch (HTTP 429): fetching failed"


class FlakySource(FakeRepoSource):
    """The fake Git source, answering with ``faults`` (one per attempt) before it works."""

    def __init__(self, world: World, faults: list[Exception]) -> None:
        super().__init__(world.repo)
        self.faults = faults
        self.attempts = 0

    def resolve(self, package: PackageRef) -> str:
        self.attempts += 1
        if self.faults:
            raise self.faults.pop(0)
        return super().resolve(package)


def flaky_world(faults: list[Exception], **settings: object) -> tuple[World, FlakySource]:
    world = World(**settings)
    source = FlakySource(world, faults)
    world.service = UpdateService(
        world.runtime, source, world.telemetry, world.store, world.clock, world.settings
    )
    return world, source


def test_rate_limited_then_success_goes_on_to_updated_in_downloading() -> None:
    world, source = flaky_world([SourceRateLimited(RATE_LIMITED), SourceRateLimited(RATE_LIMITED)])

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS  # one DOWNLOADING throughout, no FAILED
    assert source.attempts == 3
    first, second = world.clock.slept[:2]
    assert 0 <= first <= 10 and 0 <= second <= 20  # full jitter over steps 10 and 20
    assert world.runtime.running_version == "v1.1"


def test_server_errors_are_retried_too() -> None:
    world, source = flaky_world([SourceTemporarilyUnavailable("HTTP 503")])

    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    assert source.attempts == 2


def test_budget_exhausted_is_one_failed_and_the_version_is_not_remembered() -> None:
    faults: list[Exception] = [SourceRateLimited(RATE_LIMITED) for _ in range(3)]
    world, source = flaky_world(faults, fetch_retry=FetchRetryPolicy(retries=2))

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert source.attempts == 3
    assert world.telemetry.states == ["DOWNLOADING", "FAILED"]
    error = world.telemetry.terminal[-1].error or ""
    assert "rate-limited" in error and "gave up after 3 attempts" in error
    assert world.store.failed_version is None  # the transport's fault, not the version's
    assert world.runtime.running_version == "v1.0"
    assert 0 < sum(world.clock.slept) <= 10 + 20  # two waits, of steps 10 and 20 at most

    again = world.service.handle_request(world.request("v1.1"))  # the re-sent assignment
    assert again.outcome is Outcome.UPDATED


def test_an_image_built_before_is_used_when_the_budget_ends() -> None:
    faults: list[Exception] = [SourceTemporarilyUnavailable("HTTP 502") for _ in range(2)]
    world, source = flaky_world(faults, fetch_retry=FetchRetryPolicy(retries=1))
    world.runtime.add_image(tag("v1.1"), "v1.1", C2)

    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    assert source.attempts == 2


@pytest.mark.parametrize(
    "fault",
    [
        FetchFailed("fetching failed: HTTPUnauthorized: No valid credentials provided"),
        UnknownVersion("unknown version 'v1.1'"),
    ],
)
def test_a_refusal_is_not_retried(fault: Exception) -> None:
    world, source = flaky_world([fault])

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert source.attempts == 1
    assert world.clock.slept == []
    assert world.telemetry.states == ["DOWNLOADING", "FAILED"]


class AlwaysLimited:
    def __init__(self, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s

    def resolve(self, package: PackageRef) -> str:
        raise SourceRateLimited("HTTP 429", retry_after_s=self.retry_after_s)

    def stage(self, *args: object, **kwargs: object) -> object:  # pragma: no cover
        raise AssertionError

    def release(self, staged: object) -> None:  # pragma: no cover
        raise AssertionError


PACKAGE = PackageRef(version=parse_version("v1.1"))


@pytest.mark.parametrize("seed", [1, 2, 3, 42])
def test_delays_are_full_jitter_over_doubling_steps_capped(seed: int) -> None:
    clock = FakeClock()
    policy = FetchRetryPolicy(retries=6, initial_s=2, max_s=10)
    retry = FetchRetry(clock, policy, random.Random(seed))

    with pytest.raises(SourceRateLimited, match="gave up after 7 attempts"):
        retry.resolve(AlwaysLimited(), PACKAGE)  # type: ignore[arg-type]

    steps = [2, 4, 8, 10, 10, 10]
    mirror = random.Random(seed)
    assert clock.slept == [pytest.approx(mirror.uniform(0, step)) for step in steps]
    assert all(0 <= delay <= step for delay, step in zip(clock.slept, steps, strict=True))


def test_retry_after_is_a_floor_cut_to_the_longest_step() -> None:
    clock = FakeClock()
    policy = FetchRetryPolicy(retries=2, initial_s=1, max_s=30)

    with pytest.raises(SourceRateLimited):
        FetchRetry(clock, policy, random.Random(5)).resolve(AlwaysLimited(7.0), PACKAGE)  # type: ignore[arg-type]
    assert all(delay >= 7.0 for delay in clock.slept)

    clock = FakeClock()
    with pytest.raises(SourceRateLimited):
        FetchRetry(clock, policy, random.Random(5)).resolve(AlwaysLimited(1e9), PACKAGE)  # type: ignore[arg-type]
    assert clock.slept == [30.0, 30.0]


def test_no_retries_is_one_attempt() -> None:
    clock = FakeClock()
    with pytest.raises(SourceRateLimited, match=r"gave up after 1 attempt$"):
        FetchRetry(clock, FetchRetryPolicy(retries=0)).resolve(AlwaysLimited(), PACKAGE)  # type: ignore[arg-type]
    assert clock.slept == []


def test_the_schedule_arithmetic() -> None:
    policy = FetchRetryPolicy(initial_s=2, max_s=60)
    rng = random.Random(9)
    assert all(0 <= retry_delay(policy, 8, None, rng) <= 8 for _ in range(1000))
    assert next_step(policy, 2) == 4 and next_step(policy, 40) == 60
    with pytest.raises(ValueError):
        FetchRetryPolicy(initial_s=5, max_s=1)
    with pytest.raises(ValueError):
        FetchRetryPolicy(retries=-1)


def test_the_default_budget_outlasts_a_minute_of_rate_limiting() -> None:
    """A Git server that answers 429 to a whole fleet for a minute must not fail the fleet's
    update (issue 16's git_rate_limited scenario): with the defaults, the retries' delays add
    up to 60 s or more in all but about one case in a hundred, and end within ten minutes."""
    policy, rng, runs = FetchRetryPolicy(), random.Random(16), 10_000
    totals = []
    for _ in range(runs):
        step, total = policy.initial_s, 0.0
        for _ in range(policy.retries):
            total += retry_delay(policy, step, None, rng)
            step = next_step(policy, step)
        totals.append(total)
    assert sum(total < 60 for total in totals) / runs < 0.02
    assert max(totals) <= 610


def test_a_newer_assignment_or_a_shutdown_ends_the_retries_at_once() -> None:
    """The budget spans minutes: what the update flow says must end it (another version
    waits, teg-ota stops) ends it within a second of the wait, not at the budget's end."""
    faults: list[Exception] = [SourceRateLimited(RATE_LIMITED) for _ in range(7)]
    world, source = flaky_world(faults)
    asked: list[str] = []
    start = world.clock.monotonic()

    def interrupted(target: str) -> str | None:
        asked.append(target)
        return "v1.2 was requested" if world.clock.monotonic() - start >= 3 else None

    world.service.set_swap_interrupt(interrupted)
    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert source.attempts < 7 and asked and set(asked) == {"v1.1"}
    error = world.telemetry.terminal[-1].error or ""
    assert "stopped retrying: v1.2 was requested" in error
    assert world.clock.monotonic() - start <= 3 + 1  # within one look of the wait
    assert world.store.failed_version is None
    assert world.runtime.running_version == "v1.0"
