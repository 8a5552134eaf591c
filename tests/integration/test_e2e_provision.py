"""End to end: a new gateway provisions itself (issue 11), `teg-ota run` as a real process with
the real engine, Mosquitto and the faithful ThingsBoard stand-in (tb_provision), whose session
gate lets in no device token but the ones it gave out.

With the original gateway's variables (``THINGSBOARD_PROVISION_DEVICE_KEY`` / ``_SECRET`` /
``THINGSBOARD_DEVICE_NAME``) and no token, the runner provisions the device, stores the
credentials (0600) and connects with them; a restart reuses them without provisioning again.
A wrong secret is one clear error line and no tight loop, while the controller runs. The
fixtures and helpers are test_e2e_runner's.
"""

from __future__ import annotations

import json
import stat
import time
import uuid
from pathlib import Path

import docker
import pytest
import test_e2e_runner as base
from harness import LOCALHOST
from tb_provision import ProvisionProfile
from tb_standin import ThingsBoardStandIn

pytestmark = pytest.mark.timeout(240)

controller_repo = base.controller_repo
base_v1_image = base.base_v1_image

KEY = f"profile-key-{uuid.uuid4().hex[:8]}"
SECRET = f"PROFILE-SECRET-{uuid.uuid4().hex[:12]}"
CREDENTIALS = "tb_credentials.json"


class ProvisionE2E(base.E2E):
    """test_e2e_runner.E2E whose stand-in has a provisioning profile and a gate that knows
    no device yet; the runners get provisioning settings instead of a token."""

    def __init__(
        self, tmp: Path, repo: base.ControllerRepo, client: docker.DockerClient, image: str
    ) -> None:
        super().__init__(tmp, repo, client, image, gate=False)
        self.standin.close()
        self.standin = ThingsBoardStandIn(
            LOCALHOST,
            self.broker.port,
            client_id=f"thingsboard-provision-{self.suffix}",
            persistent=True,
            gate=True,
            tokens=(),
            provision=ProvisionProfile(KEY, SECRET),
        ).start()
        self.device_name = f"gw-{self.suffix}"

    def process_env(self, **overrides: str | None) -> dict[str, str]:
        provisioning: dict[str, str | None] = {
            "TEG_MQTT_TOKEN": None,
            "THINGSBOARD_PROVISION_DEVICE_KEY": KEY,
            "THINGSBOARD_PROVISION_DEVICE_SECRET": SECRET,
            "THINGSBOARD_DEVICE_NAME": self.device_name,
        }
        return super().process_env(**{**provisioning, **overrides})


@pytest.fixture
def e2e(
    tmp_path: Path,
    controller_repo: base.ControllerRepo,
    docker_client: docker.DockerClient,
    base_v1_image: str,
) -> ProvisionE2E:
    env = ProvisionE2E(tmp_path, controller_repo, docker_client, base_v1_image)
    try:
        yield env  # type: ignore[misc]
    finally:
        env.close()


def test_a_new_gateway_provisions_itself_once(e2e: ProvisionE2E) -> None:
    runner = e2e.start_gateway()  # connected (through the gate: the token is the new one)

    (call,) = e2e.standin.provision_calls
    assert call.request["deviceName"] == e2e.device_name
    token = e2e.standin.devices[e2e.device_name]
    assert call.answer["status"] == "SUCCESS"
    stored = e2e.data / CREDENTIALS
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text())["credentialsValue"] == token
    assert [session[1] for session in e2e.standin.gate.sessions()] == [token]
    runner.wait_log(r"Provisioned device 'gw-\w+' in ThingsBoard", 10)
    runner.wait_log(r"read the original gateway's variables: .*THINGSBOARD_PROVISION", 10)
    log = runner.log()
    assert token not in log and SECRET not in log
    assert runner.terminate() == 0

    since, requests = e2e.standin.mark(), e2e.standin.attribute_requests
    again = e2e.start_runner()
    e2e.wait_alive(again, lambda: e2e.standin.attribute_requests > requests, 90)
    e2e.standin.wait_for_value("current_sw_version", "v1.0", 30, since=since)
    again.wait_log(r"Using the provisioned credentials \(an access token\)", 10)
    assert len(e2e.standin.provision_calls) == 1, "a restart does not provision again"
    assert token not in again.log()
    assert e2e.standin.protocol_errors == []


def test_a_wrong_secret_is_one_error_and_the_controller_runs_meanwhile(
    e2e: ProvisionE2E,
) -> None:
    wrong = f"WRONG-{uuid.uuid4().hex}"
    # The old fixed schedule: the next request exactly 60 s later (full jitter could draw
    # it within the 6 s below; tests/unit/test_provision_jitter.py covers the jitter).
    runner = e2e.start_runner(THINGSBOARD_PROVISION_DEVICE_SECRET=wrong, TEG_MQTT_JITTER="0")

    e2e.standin.wait_for_provision_calls(1, 60)
    e2e.wait_controller("v1.0")  # start-up is not held up by provisioning
    runner.wait_log(r"refused to provision device", 10)
    time.sleep(6)  # the reconnect backoff is 1 s: a tight loop would ask again and again

    calls = e2e.standin.provision_calls
    assert [call.answer["status"] for call in calls] == ["NOT_FOUND"]
    assert runner.alive
    log = runner.log()
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors
    assert "NOT_FOUND ('Provision data was not found!')" in errors[0]
    assert "TEG_PROVISION_KEY and TEG_PROVISION_SECRET" in errors[0]
    assert wrong not in log and SECRET not in log
    assert not (e2e.data / CREDENTIALS).exists()
    assert e2e.standin.gate.sessions() == [], "no device session without credentials"
    assert e2e.controller() is not None and e2e.controller()["State"]["Running"]
