"""The link's connect loop (adapters/mqtt/reconnect.py) over a fake clock, a scripted
connector and seeded random sources: when it waits, and for how long, from start-up
through failures, refusals and lost sessions, for one link and for a fleet of them."""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field

import pytest

from teg_ota.adapters.mqtt import MqttSettings
from teg_ota.adapters.mqtt.reconnect import ReconnectLoop
from teg_ota.domain.core.jitter import OLD_JITTER, STABLE_SESSION_S

SETTINGS = MqttSettings(
    host="tb.example",
    connect_backoff_initial_s=1.0,
    connect_backoff_max_s=60.0,
    refused_retry_s=600.0,
    connect_window_s=10.0,
)
FLEET = 1000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class FakeSession:
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    up: bool = False

    @property
    def live(self) -> bool:
        return self.up and not self.lost.is_set()


class ScriptedConnector:
    """Answers each attempt from ``script``: ``"failed"``, ``"refused"`` or ``("up", s)``
    (a session that stays up ``s`` seconds of the fake clock, then is lost). When the
    script is done, ``stop`` is set."""

    def __init__(self, clock: FakeClock, script: list[str | tuple[str, float]]) -> None:
        self._clock = clock
        self._script = list(script)
        self.attempts_at: list[float] = []
        self._current: FakeSession | None = None

    def use_settings(self, settings: MqttSettings) -> None:
        pass

    def new_session(self) -> FakeSession:
        self._current = FakeSession()
        return self._current

    def is_current(self, session: FakeSession) -> bool:
        return session is self._current

    async def close(self, session: FakeSession) -> None:
        pass

    async def connect(self, session: FakeSession, failures: int, stop: asyncio.Event) -> str:
        self.attempts_at.append(self._clock.now)
        if not self._script:
            stop.set()
            return "failed"
        step = self._script.pop(0)
        if isinstance(step, str):
            return step
        lasted = step[1]
        session.up = True

        def lose() -> None:
            self._clock.now += lasted
            session.lost.set()

        asyncio.get_running_loop().call_soon(lose)
        return "up"


class EmptyOutbox:
    def __len__(self) -> int:
        return 0


def run_loop(
    script: list[str | tuple[str, float]],
    settings: MqttSettings = SETTINGS,
    seed: int = 0,
) -> tuple[FakeClock, ScriptedConnector]:
    clock = FakeClock()
    connector = ScriptedConnector(clock, script)
    loop = ReconnectLoop(
        connector,  # type: ignore[arg-type]
        EmptyOutbox(),  # type: ignore[arg-type]
        threading.Event(),
        random.Random(seed),
        sleep=clock.sleep,
        clock=clock.monotonic,
    )

    async def main() -> None:
        await asyncio.wait_for(loop.run(settings, asyncio.Event()), 10)

    asyncio.run(main())
    return clock, connector


def assert_spread(values: list[float], width: float) -> None:
    counts = [0] * 10
    for value in values:
        counts[min(int(value / width * 10), 9)] += 1
    assert max(counts) <= 2 * len(values) / 10, counts
    assert min(counts) >= len(values) / 20, counts


# --------------------------------------------------------------------- one link


def test_start_up_waits_a_moment_in_the_window_then_failures_get_full_jitter() -> None:
    clock, connector = run_loop(["failed"] * 8)
    twin = random.Random(0)
    first = clock.slept[0]
    assert first == 10.0 * twin.random()
    assert connector.attempts_at[0] == 1000.0 + first  # the first CONNECT after the wait
    steps = [1, 2, 4, 8, 16, 32, 60, 60]
    retries = clock.slept[1:9]
    assert all(0.0 <= delay <= step for delay, step in zip(retries, steps, strict=True))
    assert retries == [twin.uniform(0.0, step) for step in steps]


def test_an_established_session_lost_reconnects_within_the_window_and_starts_over() -> None:
    clock, _ = run_loop([("up", 3600.0), "failed", "failed"])
    # slept: start-up, after the lost session, after failure 1, after failure 2
    assert len(clock.slept) == 5
    assert 0.0 <= clock.slept[1] < 10.0
    assert 0.0 <= clock.slept[2] <= 1.0 and 0.0 <= clock.slept[3] <= 2.0


def test_a_session_that_drops_at_once_backs_off() -> None:
    clock, _ = run_loop([("up", 1.0)] * 8)
    steps = [1, 2, 4, 8, 16, 32, 60, 60]
    delays = clock.slept[1:9]
    assert all(delay <= max(10.0, step) for delay, step in zip(delays, steps, strict=True))


def test_refused_credentials_wait_the_fixed_refused_retry() -> None:
    clock, _ = run_loop(["refused", "refused", "failed"])
    assert clock.slept[1:3] == [600.0, 600.0]
    assert 0.0 <= clock.slept[3] <= 1.0  # the backoff step did not grow meanwhile


def test_windows_of_zero_connect_at_once() -> None:
    settings = MqttSettings(host="tb.example", connect_window_s=0)
    clock, connector = run_loop([("up", 3600.0), "failed"], settings)
    assert connector.attempts_at[0] == 1000.0  # no wait before the first CONNECT
    assert clock.slept[0] == 0.0  # the reconnect after the lost session
    assert 0.0 <= clock.slept[1] <= 1.0


def test_jitter_off_is_the_old_schedule() -> None:
    settings = MqttSettings(host="tb.example", jitter=False)
    clock, connector = run_loop(["failed"] * 3 + [("up", STABLE_SESSION_S), "failed"], settings)
    twin = random.Random(0)

    def old(step: float) -> float:
        return step * (1.0 - OLD_JITTER * twin.random())

    assert connector.attempts_at[0] == 1000.0
    assert clock.slept[:5] == [old(1.0), old(2.0), old(4.0), old(1.0), old(2.0)]


def test_stop_during_the_start_up_wait_connects_never() -> None:
    clock = FakeClock()
    connector = ScriptedConnector(clock, [])
    stop = asyncio.Event()

    async def never_ends(seconds: float) -> None:
        stop.set()
        await asyncio.sleep(3600)

    loop = ReconnectLoop(
        connector,  # type: ignore[arg-type]
        EmptyOutbox(),  # type: ignore[arg-type]
        threading.Event(),
        random.Random(1),
        sleep=never_ends,
        clock=clock.monotonic,
    )
    asyncio.run(asyncio.wait_for(loop.run(SETTINGS, stop), 5))
    assert connector.attempts_at == []


# --------------------------------------------------------------------- a fleet


@pytest.mark.parametrize("jitter", [True, False])
def test_a_fleet_after_a_broker_restart(jitter: bool) -> None:
    """A thousand links, connected for an hour, lose the broker at the same second; it is
    back at once for half of them (the rest find it still down once). With jitter their
    reconnects are spread over the window and their retries over the step; without, every
    one of them is back within the first second, the herd the issue is about."""
    settings = MqttSettings(host="tb.example", connect_window_s=10.0, jitter=jitter)
    first_attempts: list[float] = []
    reconnected: list[float] = []
    for seed in range(FLEET):
        script: list[str | tuple[str, float]] = [("up", 3600.0)]
        if seed % 2:
            script.append("failed")
        _, connector = run_loop([*script, ("up", 60.0)], settings, seed)
        lost_at = connector.attempts_at[0] + 3600.0
        first_attempts.append(connector.attempts_at[1] - lost_at)
        reconnected.append(connector.attempts_at[-2] - lost_at)
    if jitter:
        assert all(0.0 <= moment < 10.0 for moment in first_attempts)
        assert_spread(first_attempts, 10.0)
        assert max(reconnected) <= 10.0 + 1.0  # the window plus one backoff step
    else:
        # Every first attempt within the same 0.2 s: a wave.
        assert all(0.8 <= moment <= 1.0 for moment in first_attempts)
        assert max(reconnected) <= 1.0 + 2.0
