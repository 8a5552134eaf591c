"""Provisioning retries (adapters/mqtt/provision.py) get full jitter, so a fleet refused at
once does not retry at once: over a recorded sleep and a seeded random source."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

from teg_ota.adapters.mqtt import MqttSettings
from teg_ota.adapters.mqtt.provision import (
    CredentialsFile,
    DeviceCredentials,
    Provisioner,
    ProvisionRequest,
    parse_response,
)

REQUEST = ProvisionRequest("gw-0042", "PROV-KEY", "PROV-SECRET")
FAILURE = b'{"errorMsg":"Failed to provision device!","status":"FAILURE"}'
SUCCESS = json.dumps(
    {"status": "SUCCESS", "credentialsType": "ACCESS_TOKEN", "credentialsValue": "TOKEN-1"}
).encode()
SETTINGS = MqttSettings(host="tb.example", connect_backoff_initial_s=1.0, connect_backoff_max_s=8.0)


class Script:
    """A requester answering from a list; a ``ConnectionRefusedError`` entry is raised."""

    def __init__(self, *answers: bytes | BaseException) -> None:
        self.answers = list(answers)

    async def __call__(
        self, settings: MqttSettings, request: ProvisionRequest, timeout: float
    ) -> DeviceCredentials:
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return parse_response(answer)


def provision(tmp_path: Path, script: Script, settings: MqttSettings, seed: int) -> list[float]:
    """The delays slept before the provisioner got its credentials."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    provisioner = Provisioner(
        REQUEST,
        CredentialsFile(tmp_path / f"credentials-{seed}.json"),
        retry_initial_s=60.0,
        retry_max_s=3600.0,
        requester=script,
        rng=random.Random(seed),
        sleep=sleep,
    )
    result = asyncio.run(provisioner(settings, asyncio.Event()))
    assert result is not None and result.token == "TOKEN-1"
    return slept


def test_refusals_and_unreachable_servers_are_retried_after_full_jitter(tmp_path: Path) -> None:
    down = ConnectionRefusedError(111, "Connection refused")
    script = Script(FAILURE, FAILURE, down, down, FAILURE, SUCCESS)
    slept = provision(tmp_path, script, SETTINGS, seed=3)
    twin = random.Random(3)
    # One draw per failed attempt: over the refusal step (60, 120, 240...) or, for a server
    # that cannot be reached, over the link's backoff step (1, 2...).
    steps = [60.0, 120.0, 1.0, 2.0, 240.0]
    assert slept == [twin.uniform(0.0, step) for step in steps]
    assert all(0.0 <= delay <= step for delay, step in zip(slept, steps, strict=True))


def test_a_fleet_refused_at_once_retries_spread_over_the_step(tmp_path: Path) -> None:
    firsts = [
        provision(tmp_path, Script(FAILURE, SUCCESS), SETTINGS, seed)[0] for seed in range(500)
    ]
    counts = [0] * 10
    for delay in firsts:
        counts[min(int(delay / 6.0), 9)] += 1
    assert max(counts) <= 2 * 50 and min(counts) >= 25, counts


def test_without_jitter_the_steps_themselves(tmp_path: Path) -> None:
    down = ConnectionRefusedError(111, "Connection refused")
    settings = MqttSettings(host="tb.example", jitter=False)
    slept = provision(tmp_path, Script(FAILURE, FAILURE, down, down, SUCCESS), settings, seed=1)
    assert slept == [60.0, 120.0, 1.0, 2.0]
