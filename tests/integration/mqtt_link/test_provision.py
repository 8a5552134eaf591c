"""GmqttLink with device provisioning (adapters/mqtt/provision.py) against a real Mosquitto and
the faithful ThingsBoard stand-in (tb_provision): its session gate accepts no token but the
ones it gave out, and lets ``provision`` sessions in as ThingsBoard does.

Success: the credentials are stored (0600) and the link connects with the token; a restart
reuses the stored token without provisioning again. Refusals (a wrong secret: NOT_FOUND; a
name that exists: FAILURE) are one error line and no tight loop.
"""

from __future__ import annotations

import itertools
import json
import logging
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import LOCALHOST, MosquittoBroker, make_password_file, wait_until
from tb_provision import (
    CHECK_PRE_PROVISIONED_DEVICES,
    PROVISION_USERNAME,
    ProvisionProfile,
)
from tb_standin import ThingsBoardStandIn

from teg_ota.adapters.mqtt import (
    CredentialsFile,
    DurableOutbox,
    GmqttLink,
    MqttSettings,
    Provisioner,
    ProvisionRequest,
)

KEY = f"key-{uuid.uuid4().hex[:8]}"
SECRET = f"SECRET-{uuid.uuid4().hex[:12]}"
FAST = {
    "connect_backoff_initial_s": 0.2,
    "connect_backoff_max_s": 1.0,
    "keepalive": 10,
    "connect_window_s": 0,  # no fleet spreading in these tests
    "attribute_request_window_s": 0,
    "jitter": False,  # exact retry delays (full jitter: tests/unit/test_provision_jitter.py)
}


@pytest.fixture
def standin_factory(mosquitto: MosquittoBroker) -> Iterator[Any]:
    made: list[ThingsBoardStandIn] = []

    def make(strategy: str = "ALLOW_CREATE_NEW_DEVICES") -> ThingsBoardStandIn:
        standin = ThingsBoardStandIn(
            LOCALHOST,
            mosquitto.port,
            persistent=False,
            gate=True,
            tokens=(),  # no device exists yet: only provisioned tokens get in
            provision=ProvisionProfile(KEY, SECRET, strategy),
        ).start()
        made.append(standin)
        return standin

    yield make
    for standin in made:
        print(standin.timeline())
        standin.close()


@pytest.fixture
def standin(standin_factory: Any) -> ThingsBoardStandIn:
    made: ThingsBoardStandIn = standin_factory()
    return made


@pytest.fixture
def make_link(tmp_path: Path) -> Iterator[Any]:
    links: list[GmqttLink] = []

    def make(
        standin: ThingsBoardStandIn,
        *,
        name: str = "gw-0001",
        secret: str = SECRET,
        **provisioner: Any,
    ) -> tuple[GmqttLink, Provisioner]:
        provisioning = Provisioner(
            ProvisionRequest(name, KEY, secret),
            CredentialsFile.in_data_path(tmp_path / "data"),
            **provisioner,
        )
        link = GmqttLink(
            MqttSettings(host=standin.device_host, port=standin.device_port, **FAST),
            DurableOutbox(tmp_path / f"outbox-{len(links)}"),
            current_software=lambda: ("teg-controller", "v1.0"),
            on_attributes=lambda topic, payload: None,
            provisioner=provisioning,
        )
        links.append(link)
        link.start()
        return link, provisioning

    yield make
    for link in links:
        link.stop(timeout=2)


def credentials_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tb_credentials.json"


def all_logs(log_lines: list[str], caplog: pytest.LogCaptureFixture) -> str:
    """What teg-ota logged, its gmqtt clients' lines included (not the stand-in's)."""
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("teg_ota", "gmqtt.teg"))]
    return "\n".join([*log_lines, *ours])


def test_provisioned_once_stored_0600_then_reused(
    standin: ThingsBoardStandIn,
    make_link: Any,
    tmp_path: Path,
    log_lines: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    link, provisioner = make_link(standin)

    assert link.wait_connected(20), log_lines
    (call,) = standin.provision_calls
    assert call.request == {
        "deviceName": "gw-0001",
        "provisionDeviceKey": KEY,
        "provisionDeviceSecret": SECRET,
    }
    assert call.answer["status"] == "SUCCESS"
    token = standin.devices["gw-0001"]
    assert call.answer == {
        "credentialsValue": token,
        "credentialsType": "ACCESS_TOKEN",
        "status": "SUCCESS",
    }
    path = credentials_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert (stored["credentialsType"], stored["credentialsValue"]) == ("ACCESS_TOKEN", token)
    assert stored["deviceName"] == "gw-0001"
    # The device session runs with the token (the gate refuses anything else), and the
    # provisioning session is gone (we disconnect at once; ThingsBoard would wait 60 s).
    standin.wait_for_value("current_sw_version", "v1.0", 15)
    assert [s[1] for s in standin.gate.sessions()] == [token]
    assert standin.protocol_errors == []
    logs = all_logs(log_lines, caplog)
    assert token not in logs and SECRET not in logs and KEY not in logs
    assert token not in repr(provisioner) and SECRET not in repr(provisioner)
    link.stop(timeout=2)

    # A restart: the stored token, no provisioning.
    since = standin.mark()
    again, _ = make_link(standin)
    assert again.wait_connected(20), log_lines
    standin.wait_for_value("current_sw_version", "v1.0", 15, since=since)
    assert len(standin.provision_calls) == 1
    assert any("Using the provisioned credentials" in line for line in log_lines)
    assert token not in all_logs(log_lines, caplog)


def test_a_wrong_secret_is_one_clear_error_and_no_tight_loop(
    standin: ThingsBoardStandIn,
    make_link: Any,
    tmp_path: Path,
    log_lines: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"WRONG-{uuid.uuid4().hex}"
    link, provisioner = make_link(standin, secret=wrong)

    standin.wait_for_provision_calls(1)
    time.sleep(4)  # the link's backoff is 0.2 .. 1 s: a hammering loop would ask again

    assert [call.answer["status"] for call in standin.provision_calls] == ["NOT_FOUND"]
    assert not link.connected
    assert link.refused == "NOT_FOUND ('Provision data was not found!')"
    errors = [line for line in log_lines if "ERROR" in line]
    assert len(errors) == 1, log_lines
    assert "refused to provision device 'gw-0001'" in errors[0]
    assert "TEG_PROVISION_KEY and TEG_PROVISION_SECRET" in errors[0]
    assert "next attempt in 60s" in errors[0]
    assert wrong not in all_logs(log_lines, caplog) and SECRET not in all_logs(log_lines, caplog)
    assert not credentials_file(tmp_path).exists()
    assert standin.devices == {}
    # Only provision sessions reached the gate; none is still open.
    assert standin.gate.sessions() == []
    assert provisioner.requests == 1


def test_an_existing_device_name_fails_and_retries_with_a_growing_delay(
    standin: ThingsBoardStandIn, make_link: Any, log_lines: list[str]
) -> None:
    standin.add_device("gw-0001")  # made by hand in ThingsBoard, or provisioned before
    link, _ = make_link(standin, retry_initial_s=0.5, retry_max_s=1.0)

    standin.wait_for_provision_calls(1)
    time.sleep(3.2)  # requests at 0, 0.5, 1.5, 2.5 s (0.5 s, then doubling up to 1 s)

    calls = standin.provision_calls
    assert 3 <= len(calls) <= 4, [c.received for c in calls]
    gaps = [b.received - a.received for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.45 and all(gap >= 0.9 for gap in gaps[1:]), gaps
    assert {call.answer["status"] for call in calls} == {"FAILURE"}
    assert calls[0].answer == {"errorMsg": "Failed to provision device!", "status": "FAILURE"}
    errors = [line for line in log_lines if "ERROR" in line]
    assert len(errors) == 1, log_lines  # the repeats are debug lines
    assert "a device named 'gw-0001' exists already" in errors[0]
    assert not link.connected


def test_a_corrupt_credentials_file_is_replaced_by_provisioning(
    standin: ThingsBoardStandIn, make_link: Any, tmp_path: Path, log_lines: list[str]
) -> None:
    path = credentials_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"credentialsType": "ACCESS_TOKEN"')  # cut short by a power cut

    link, _ = make_link(standin)

    assert link.wait_connected(20), log_lines
    assert len(standin.provision_calls) == 1
    errors = [line for line in log_lines if "ERROR" in line]
    assert len(errors) == 1 and str(path) in errors[0] and "not JSON" in errors[0]
    assert Path(f"{path}.corrupt").exists()
    assert json.loads(path.read_text())["credentialsValue"] == standin.devices["gw-0001"]


def test_a_pre_provisioned_device_gets_its_token(
    standin_factory: Any, make_link: Any, tmp_path: Path, log_lines: list[str]
) -> None:
    standin = standin_factory(CHECK_PRE_PROVISIONED_DEVICES)
    token = standin.add_device("gw-0001")

    link, _ = make_link(standin)

    assert link.wait_connected(20), log_lines
    assert json.loads(credentials_file(tmp_path).read_text())["credentialsValue"] == token
    assert [s[1] for s in standin.gate.sessions()] == [token]


def test_the_stand_in_closes_a_provision_session_that_publishes_elsewhere(
    standin: ThingsBoardStandIn, mqtt_recorder_factory: Any
) -> None:
    """The stand-in's own rules, as ThingsBoard's: a provision-only session may only ask."""
    device = mqtt_recorder_factory(
        standin.device_host, standin.device_port, username=PROVISION_USERNAME
    )
    device.publish("v1/devices/me/telemetry", {"x": 1}, wait_ack=False)
    wait_until(lambda: standin.closed_sessions != [], 5, "the gate to close the session")
    assert "TOPIC_NAME_INVALID" in standin.closed_sessions[0].reason
    assert standin.telemetry == [], "the offending publish is never forwarded"


def test_a_broker_that_refuses_the_provision_user_is_one_error(
    mosquitto_factory: Any, tmp_path: Path, log_lines: list[str]
) -> None:
    """Not ThingsBoard (it always accepts ``provision``): a broker with a password file."""
    broker = mosquitto_factory(password_file=make_password_file(tmp_path / "pw", {"u": "p"}))
    provisioner = Provisioner(
        ProvisionRequest("gw-0001", KEY, SECRET),
        CredentialsFile.in_data_path(tmp_path / "data"),
    )
    link = GmqttLink(
        MqttSettings(host=broker.host, port=broker.port, **FAST),
        DurableOutbox(tmp_path / "outbox"),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
        provisioner=provisioner,
    )
    link.start()
    try:
        wait_until(lambda: link.refused is not None, 15, "the refusal")
        time.sleep(2)
        assert provisioner.requests == 1
        assert "the provisioning connection was refused" in str(link.refused)
        errors = [line for line in log_lines if "ERROR" in line]
        assert len(errors) == 1, log_lines
        assert SECRET not in "\n".join(log_lines)
    finally:
        link.stop(timeout=2)
