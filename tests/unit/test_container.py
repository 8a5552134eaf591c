"""The composition root with every port overridden by a fake, as dependency-injector
intends: the library facade and the seed-compatible names work over the same core."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from teg_ota import compat
from teg_ota.app.container import build_container, build_gateway
from teg_ota.app.settings import Settings
from teg_ota.domain.model.outcome import Outcome

from .fakes import PREFIX, FakeClock, FakeRepo, FakeRuntime, FakeStore, FakeTelemetry
from .test_update_service import C1, C2, tag

SETTINGS = Settings(sw_title="teg-controller", health_grace_s=5, image_prefix=PREFIX)


class Fakes:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.runtime = FakeRuntime(self.clock)
        self.repo = FakeRepo()
        self.telemetry = FakeTelemetry()
        self.store = FakeStore(default="v1.0")
        self.repo.add_tag("v1.0", C1)
        self.repo.add_tag("v1.1", C2, remote_only=True)
        self.runtime.add_image(tag("v1.0"), "v1.0", C1)

    def overrides(self) -> dict[str, object]:
        return {
            "clock": self.clock,
            "runtime": self.runtime,
            "repo": self.repo,
            "telemetry": self.telemetry,
            "store": self.store,
        }


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


def test_overridden_container_builds_a_working_gateway(fakes: Fakes) -> None:
    gateway = build_gateway(SETTINGS, **fakes.overrides())

    assert gateway.ensure_running().outcome is Outcome.UPDATED
    assert gateway.handle_attributes(b'{"sw_title":"teg-controller","sw_version":"v1.1"}')

    assert fakes.runtime.running_version == "v1.1"
    assert fakes.telemetry.states[-1] == "UPDATED"
    status = gateway.status().to_dict()
    assert {"running": True, "version": "v1.1", "last_launched": "v1.1"}.items() <= status.items()
    assert status["update"] is None


def test_the_container_shares_one_instance_of_each_adapter(fakes: Fakes) -> None:
    container = build_container(SETTINGS, **fakes.overrides())

    assert container.update_service() is container.gateway().service
    assert container.watchdog() is container.gateway().watchdog


def test_overriding_an_unknown_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="no provider named 'docker'"):
        build_container(SETTINGS, docker=object())


def test_status_reports_an_unreachable_engine(fakes: Fakes) -> None:
    fakes.runtime.unavailable = True

    status = build_gateway(SETTINGS, **fakes.overrides()).status()

    assert status.engine_error == "Docker engine unreachable"
    assert status.running is False


@pytest.fixture
def seed_api(fakes: Fakes) -> Iterator[Fakes]:
    compat.configure(SETTINGS, **fakes.overrides())
    yield fakes
    compat._container = None


def test_seed_names_work_over_the_new_core(seed_api: Fakes) -> None:
    docker_client = compat.GatewayDockerClient()
    git_client = compat.GatewayGitClient()

    assert docker_client is compat.GatewayDockerClient()  # the seed's singleton
    assert docker_client.is_controller_running() is False
    assert docker_client.get_last_launched_controller_version() == "v1.0"
    assert compat.restart_controller_if_needed() is False  # the outage is noticed first
    seed_api.clock.advance(5)
    assert compat.restart_controller_if_needed() is True
    assert docker_client.get_controller_version() == "v1.0"
    assert docker_client.get_edge_startup_timestamp_ms() == int(seed_api.clock.now() * 1000)
    assert docker_client.is_image_available(docker_client.image_tag_for("v1.0"))

    assert git_client.execute_fetch() is True
    assert git_client.get_commit_for_tag("v1.1") == C2
    assert git_client.get_commit_from_hash_or_tag("--upload-pack=x") is None
    assert git_client.execute_reset_to_commit(C2) is True

    assert compat.on_msg_check_for_ota_update({"sw_title": "teg-controller", "sw_version": "v1.1"})
    assert not compat.on_msg_check_for_ota_update({"temperature": 21})
    assert docker_client.get_controller_version() == "v1.1"

    docker_client.stop_controller()
    assert docker_client.is_controller_running() is False
    docker_client.set_last_launched_controller_version("v1.0")
    assert docker_client.last_launched_version == "v1.0"


def test_compat_with_its_own_link_acts_on_received_assignments(
    fakes: Fakes, tmp_path: Path
) -> None:
    """Without a telemetry override compat starts teg-ota's own MQTT link (here towards a
    port where nothing listens) and must act on what that link receives."""
    overrides = fakes.overrides()
    del overrides["telemetry"]
    settings = Settings(
        sw_title="teg-controller",
        health_grace_s=5,
        image_prefix=PREFIX,
        data_path=str(tmp_path),
        mqtt_host="127.0.0.1",
        mqtt_port=9,
    )
    gateway = compat.configure(settings, **overrides)
    try:
        assert compat._container is not None
        compat._container.inbox()(
            "v1/devices/me/attributes", b'{"sw_title":"teg-controller","sw_version":"v1.1"}'
        )
        deadline = time.monotonic() + 10
        while fakes.runtime.running_version != "v1.1" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fakes.runtime.running_version == "v1.1"
        assert gateway.status().last_launched == "v1.1"
    finally:
        assert compat._container is not None
        compat._container.telemetry().stop(1)
        compat._container = None
