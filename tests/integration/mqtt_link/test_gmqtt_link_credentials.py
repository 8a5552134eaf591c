"""GmqttLink with the credentials ThingsBoard offers besides the access token: MQTT basic
credentials (client id, user name, password), and secrets read from files, against a real
Mosquitto with a password file (tests/integration/conftest.py fixtures; helpers in
gmqtt_link_support.py and harness.py).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from pathlib import Path

import pytest
from gmqtt_link_support import TELEMETRY, LinkFactory
from harness import MosquittoBroker, make_password_file, wait_until

from teg_ota.adapters.mqtt import DurableOutbox, GmqttLink
from teg_ota.app.container import _mqtt_settings
from teg_ota.app.settings import load_settings

PASSWORD = f"S3CRET-PASSWORD-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def basic_broker(mosquitto_factory, tmp_path: Path) -> MosquittoBroker:
    """A broker that takes only user gw-user with PASSWORD (no anonymous clients)."""
    passwd = make_password_file(tmp_path / "passwd", {"gw-user": PASSWORD})
    broker: MosquittoBroker = mosquitto_factory(password_file=passwd)
    return broker


def test_basic_credentials_are_accepted(
    basic_broker: MosquittoBroker,
    mqtt_recorder_factory,
    link_factory: LinkFactory,
    log_lines: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tb = mqtt_recorder_factory(
        basic_broker, topics=[TELEMETRY], username="gw-user", password=PASSWORD
    )
    link = link_factory(
        basic_broker.port, client_id="gw-0001", username="gw-user", password=PASSWORD
    )
    assert link.wait_connected(15), log_lines
    assert link.refused is None
    link.publish_telemetry({"basic": "yes"})
    tb.wait_for(lambda ms: any(m.json() == {"basic": "yes"} for m in ms))

    logs = basic_broker.logs()
    # The broker saw the client id and the user name it checked the password for.
    assert re.search(r"New client connected from \S+ as gw-0001 \(p2, c1, k10, u'gw-user'\)", logs)
    assert PASSWORD not in "\n".join(log_lines) + caplog.text
    assert "password='***'" in "\n".join(log_lines)  # the start-up line says one is set


def test_a_wrong_password_is_refused_once_and_never_logged(
    basic_broker: MosquittoBroker,
    link_factory: LinkFactory,
    log_lines: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"WRONG-{PASSWORD}"
    link = link_factory(basic_broker.port, client_id="gw-0002", username="gw-user", password=wrong)

    wait_until(lambda: link.refused is not None, 15, "the refusal")
    assert link.refused is not None
    assert "refused the MQTT basic credentials" in link.refused
    assert "CONNACK 5" in link.refused
    time.sleep(2)  # backoff is 0.2..1 s: a hammering link would try again and again
    assert not link.connected
    logs = basic_broker.logs()
    assert len(re.findall(r"Sending CONNACK to \S+ \(0, 5\)", logs)) == 1, logs
    errors = [line for line in log_lines if "ERROR" in line and "refused" in line]
    assert len(errors) == 1, log_lines
    assert "check the device's credentials (the MQTT basic credentials)" in errors[0]
    text = "\n".join(log_lines) + caplog.text + link.refused
    assert wrong not in text and PASSWORD not in text


def test_credentials_from_files_reach_the_broker(
    basic_broker: MosquittoBroker, mqtt_recorder_factory, tmp_path: Path, log_lines: list[str]
) -> None:
    """From the environment to CONNECT: TEG_MQTT_PASSWORD_FILE is read at start-up (its
    trailing newline stripped), and only the file's path is in the environment."""
    password_file = tmp_path / "tb-password"
    password_file.write_text(PASSWORD + "\n")
    environ = {
        "GATEWAY_DATA_PATH": str(tmp_path / "data"),
        "CONTROLLER_GIT_PATH": "/opt/teg/controller",
        "TEG_MQTT_HOST": basic_broker.host,
        "TEG_MQTT_PORT": str(basic_broker.port),
        "TEG_MQTT_CLIENT_ID": "gw-0003",
        "TEG_MQTT_USERNAME": "gw-user",
        "TEG_MQTT_PASSWORD_FILE": str(password_file),
        "TEG_MQTT_CONNECT_WINDOW_S": "0",
    }
    assert all(PASSWORD not in value for value in environ.values())
    tb = mqtt_recorder_factory(
        basic_broker, topics=[TELEMETRY], username="gw-user", password=PASSWORD
    )
    settings = _mqtt_settings(load_settings(environ))
    assert PASSWORD not in repr(settings)
    link = GmqttLink(
        settings,
        DurableOutbox(tmp_path / "outbox"),
        current_software=lambda: ("teg-controller", "v1.0.0"),
        on_attributes=lambda topic, payload: None,
    )
    link.start()
    try:
        assert link.wait_connected(15), log_lines
        tb.wait_for(lambda ms: len(ms) >= 1)
    finally:
        link.stop(timeout=2)
    assert "as gw-0003" in basic_broker.logs()
    assert PASSWORD not in "\n".join(log_lines)


def test_the_access_token_from_a_file_is_the_user_name(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    token = f"file-token-{uuid.uuid4().hex[:8]}"
    token_file = tmp_path / "tb-token"
    token_file.write_text(token + "\n")
    settings = load_settings(
        {
            "GATEWAY_DATA_PATH": str(tmp_path / "data"),
            "TEG_MQTT_HOST": mosquitto.host,
            "TEG_MQTT_PORT": str(mosquitto.port),
            "TEG_MQTT_TOKEN_FILE": str(token_file),
            "TEG_MQTT_CONNECT_WINDOW_S": "0",
        }
    )
    link = GmqttLink(
        _mqtt_settings(settings),
        DurableOutbox(tmp_path / "outbox"),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
    )
    link.start()
    try:
        assert link.wait_connected(15)
    finally:
        link.stop(timeout=2)
    assert f"u'{token}'" in mosquitto.logs()  # no newline: the file's was stripped
