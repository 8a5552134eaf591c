"""Device provisioning (adapters/mqtt/provision.py): the request ThingsBoard expects, its
answers as its JsonConverter writes them, the credentials file (0600, atomic, corrupt), the
retry loop with a fake server, the settings and the wiring."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from teg_ota.adapters.mqtt import DurableOutbox, GmqttLink, MqttSettings
from teg_ota.adapters.mqtt.provision import (
    CREDENTIALS_FILE_NAME,
    PROVISION_REQUEST_TOPIC,
    PROVISION_RESPONSE_TOPIC,
    PROVISION_USERNAME,
    CorruptCredentials,
    CredentialsFile,
    DeviceCredentials,
    Provisioner,
    ProvisionError,
    ProvisionRefused,
    ProvisionRequest,
    parse_response,
)
from teg_ota.app.container import _provisioner
from teg_ota.app.settings import ConfigError, Settings, load_settings

KEY, SECRET, TOKEN = "PROV-KEY-7f3a", "PROV-SECRET-91c2", "TOKEN-b84d0e"
REQUEST = ProvisionRequest("gw-0042", KEY, SECRET)
BASE_ENV = {"GATEWAY_DATA_PATH": "/data", "CONTROLLER_GIT_PATH": "/repo"}
NOT_FOUND = b'{"errorMsg":"Provision data was not found!","status":"NOT_FOUND"}'
FAILURE = b'{"errorMsg":"Failed to provision device!","status":"FAILURE"}'


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m}"), level="DEBUG")
    yield lines
    logger.remove(sink)


def errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("ERROR")]


# --------------------------------------------------------------------- the wire


def test_the_protocol_constants_are_thingsboards() -> None:
    assert PROVISION_USERNAME == "provision"
    assert PROVISION_REQUEST_TOPIC == "/provision/request"
    assert PROVISION_RESPONSE_TOPIC == "/provision/response"


def test_the_request_payload_asks_for_a_generated_access_token() -> None:
    assert json.loads(REQUEST.payload()) == {
        "deviceName": "gw-0042",
        "provisionDeviceKey": KEY,
        "provisionDeviceSecret": SECRET,
    }  # no credentialsType: ThingsBoard generates an ACCESS_TOKEN
    assert KEY not in repr(REQUEST) and SECRET not in repr(REQUEST)


def test_an_access_token_answer() -> None:
    credentials = parse_response(
        json.dumps(
            {"credentialsValue": TOKEN, "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"}
        ).encode()
    )
    assert (credentials.credentials_type, credentials.token) == ("ACCESS_TOKEN", TOKEN)
    assert TOKEN not in repr(credentials)
    settings = credentials.apply(MqttSettings(host="tb", client_id="gw"))
    assert settings.auth == (TOKEN, None) and settings.client_id == "gw"


def test_an_mqtt_basic_answer() -> None:
    answer = {
        "credentialsType": "MQTT_BASIC",
        "credentialsValue": {"clientId": "cid-1", "userName": "user-1", "password": "pw-1"},
        "status": "SUCCESS",
    }
    credentials = parse_response(json.dumps(answer).encode())
    settings = credentials.apply(MqttSettings(host="tb"))
    assert (settings.client_id, settings.auth) == ("cid-1", ("user-1", "pw-1"))
    assert "pw-1" not in repr(credentials) and "pw-1" not in repr(settings)


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (NOT_FOUND, "NOT_FOUND", "Provision data was not found!"),
        (FAILURE, "FAILURE", "Failed to provision device!"),
    ],
)
def test_refusals(payload: bytes, status: str, message: str) -> None:
    with pytest.raises(ProvisionRefused) as caught:
        parse_response(payload)
    assert (caught.value.status, caught.value.error_msg) == (status, message)
    assert str(caught.value) == f"{status} ({message!r})"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN"}',
        b'{"status":"SUCCESS","credentialsType":"ACCESS_TOKEN","credentialsValue":""}',
        b'{"status":"SUCCESS","credentialsType":"X509_CERTIFICATE","credentialsValue":"abc"}',
        b'{"status":"SUCCESS","credentialsType":"MQTT_BASIC","credentialsValue":{"password":"x"}}',
        b'{"status":"SUCCESS","credentialsType":"MQTT_BASIC","credentialsValue":"x"}',
    ],
)
def test_answers_without_usable_credentials(payload: bytes) -> None:
    with pytest.raises(ProvisionError) as caught:
        parse_response(payload)
    assert not isinstance(caught.value, ProvisionRefused)
    assert "abc" not in str(caught.value)


# --------------------------------------------------------------------- the file


def test_the_credentials_file_round_trip_is_0600(tmp_path: Path) -> None:
    store = CredentialsFile.in_data_path(tmp_path / "data")  # created when missing
    assert store.load() is None
    store.save(DeviceCredentials("ACCESS_TOKEN", token=TOKEN), "gw-0042", "tb:1883")

    assert store.path == tmp_path / "data" / CREDENTIALS_FILE_NAME
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert json.loads(store.path.read_text()) == {
        "deviceName": "gw-0042",
        "host": "tb:1883",
        "credentialsType": "ACCESS_TOKEN",
        "credentialsValue": TOKEN,
    }
    loaded = store.load()
    assert loaded is not None
    credentials, name = loaded
    assert (credentials.token, name) == (TOKEN, "gw-0042")
    assert not [p for p in store.path.parent.iterdir() if p.name != CREDENTIALS_FILE_NAME]


def test_mqtt_basic_credentials_round_trip(tmp_path: Path) -> None:
    store = CredentialsFile(tmp_path / CREDENTIALS_FILE_NAME)
    store.save(DeviceCredentials("MQTT_BASIC", client_id="c", username="u"), "gw", "tb:1883")
    loaded = store.load()
    assert loaded is not None
    assert (loaded[0].client_id, loaded[0].username, loaded[0].password) == ("c", "u", None)


def test_a_file_readable_by_others_is_set_to_0600(tmp_path: Path, log_lines: list[str]) -> None:
    store = CredentialsFile(tmp_path / CREDENTIALS_FILE_NAME)
    store.save(DeviceCredentials("ACCESS_TOKEN", token=TOKEN), "gw", "tb:1883")
    os.chmod(store.path, 0o644)
    assert store.load() is not None
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert any("readable by others (mode 644); set to 600" in line for line in log_lines)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'"a string"',
        b'{"credentialsType":"ACCESS_TOKEN"}',
        b'{"credentialsType":"PSK","credentialsValue":"x"}',
        b"\xff\xfe",
    ],
)
def test_a_corrupt_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / CREDENTIALS_FILE_NAME
    path.write_bytes(content)
    with pytest.raises(CorruptCredentials):
        CredentialsFile(path).load()


# --------------------------------------------------------------------- the loop


class FakeServer:
    """A requester that answers from a list (the last answer repeats)."""

    def __init__(self, *answers: bytes | BaseException) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[ProvisionRequest, float]] = []

    async def __call__(
        self, settings: MqttSettings, request: ProvisionRequest, timeout: float
    ) -> DeviceCredentials:
        self.requests.append((request, time.monotonic()))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return parse_response(answer)


def success(token: str = TOKEN) -> bytes:
    body = {"status": "SUCCESS", "credentialsType": "ACCESS_TOKEN", "credentialsValue": token}
    return json.dumps(body).encode()


SETTINGS = MqttSettings(
    host="tb.example", connect_backoff_initial_s=0.05, connect_backoff_max_s=0.1, jitter=False
)
"""Unjittered, so the delays below are exact; test_provision_jitter.py covers full jitter."""


def run(provisioner: Provisioner, seconds: float | None = None) -> MqttSettings | None:
    """``provisioner(SETTINGS, stop)``; with ``seconds``, ``stop`` is set after that long."""

    async def main() -> MqttSettings | None:
        stop = asyncio.Event()
        if seconds is not None:
            asyncio.get_running_loop().call_later(seconds, stop.set)
        return await provisioner(SETTINGS, stop)

    return asyncio.run(main())


def test_success_is_stored_and_used(tmp_path: Path, log_lines: list[str]) -> None:
    store = CredentialsFile(tmp_path / CREDENTIALS_FILE_NAME)
    server = FakeServer(success())

    settings = run(Provisioner(REQUEST, store, requester=server))

    assert settings is not None and settings.token == TOKEN and settings.host == "tb.example"
    assert [request for request, _ in server.requests] == [REQUEST]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert any("Provisioned device 'gw-0042'" in line for line in log_lines)
    # A restart: the stored credentials, no request.
    again = FakeServer(FAILURE)
    assert run(Provisioner(REQUEST, store, requester=again)) == settings
    assert again.requests == []
    assert any("Using the provisioned credentials" in line for line in log_lines)
    text = "\n".join(log_lines)
    assert TOKEN not in text and SECRET not in text and KEY not in text


def test_a_refusal_is_one_error_and_retried_with_a_growing_delay(
    tmp_path: Path, log_lines: list[str]
) -> None:
    server = FakeServer(FAILURE)
    provisioner = Provisioner(
        REQUEST,
        CredentialsFile(tmp_path / CREDENTIALS_FILE_NAME),
        retry_initial_s=0.2,
        retry_max_s=0.4,
        requester=server,
    )

    assert run(provisioner, seconds=1.3) is None  # stopped meanwhile

    times = [at for _, at in server.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 3 <= len(times) <= 4, gaps  # 0, 0.2, 0.6, 1.0 (s)
    assert gaps[0] >= 0.19 and all(gap >= 0.39 for gap in gaps[1:]), gaps
    assert len(errors(log_lines)) == 1, log_lines
    line = errors(log_lines)[0]
    assert "refused to provision device 'gw-0042'" in line
    assert "FAILURE ('Failed to provision device!')" in line
    assert "exists already" in line and "TEG_DEVICE_NAME" in line
    assert SECRET not in "\n".join(log_lines)
    assert provisioner.refused == "FAILURE ('Failed to provision device!')"
    assert not (tmp_path / CREDENTIALS_FILE_NAME).exists()


def test_not_found_names_the_key_and_secret(tmp_path: Path, log_lines: list[str]) -> None:
    server = FakeServer(NOT_FOUND)
    provisioner = Provisioner(
        REQUEST, CredentialsFile(tmp_path / "c.json"), requester=server
    )  # default delay: 60 s
    assert run(provisioner, seconds=0.5) is None
    assert len(server.requests) == 1
    (line,) = errors(log_lines)
    assert "TEG_PROVISION_KEY and TEG_PROVISION_SECRET" in line
    assert "next attempt in 60s" in line


def test_an_unreachable_server_is_retried_with_the_link_backoff(
    tmp_path: Path, log_lines: list[str]
) -> None:
    server = FakeServer(ConnectionRefusedError(111, "Connection refused"), success())
    settings = run(Provisioner(REQUEST, CredentialsFile(tmp_path / "c.json"), requester=server), 5)
    assert settings is not None and settings.token == TOKEN
    assert len(server.requests) == 2
    assert server.requests[1][1] - server.requests[0][1] < 1.0  # the link's backoff, not 60 s
    assert errors(log_lines) == []


def test_a_corrupt_file_is_logged_moved_aside_and_provisioned_again(
    tmp_path: Path, log_lines: list[str]
) -> None:
    path = tmp_path / CREDENTIALS_FILE_NAME
    path.write_text("{truncated")
    server = FakeServer(success())

    settings = run(Provisioner(REQUEST, CredentialsFile(path), requester=server))

    assert settings is not None and settings.token == TOKEN
    assert len(server.requests) == 1
    (line,) = errors(log_lines)
    assert str(path) in line and "not JSON" in line and f"moved to {path}.corrupt" in line
    assert "TEG_MQTT_TOKEN_FILE" in line  # the fix when ThingsBoard answers FAILURE
    assert Path(f"{path}.corrupt").read_text() == "{truncated"
    assert json.loads(path.read_text())["credentialsValue"] == TOKEN


def test_a_store_that_cannot_be_written_still_connects(
    tmp_path: Path, log_lines: list[str]
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    settings = run(
        Provisioner(
            REQUEST,
            CredentialsFile(blocker / CREDENTIALS_FILE_NAME),
            requester=FakeServer(success()),
        )
    )
    assert settings is not None and settings.token == TOKEN
    (line,) = errors(log_lines)
    assert "cannot store the credentials" in line and TOKEN not in line


# --------------------------------------------------------------------- settings and wiring


def test_key_and_secret_go_together() -> None:
    with pytest.raises(ConfigError, match="TEG_PROVISION_KEY and TEG_PROVISION_SECRET"):
        load_settings({**BASE_ENV, "TEG_PROVISION_KEY": KEY})
    settings = load_settings(
        {
            **BASE_ENV,
            "THINGSBOARD_PROVISION_DEVICE_KEY": KEY,
            "THINGSBOARD_PROVISION_DEVICE_SECRET": SECRET,
            "THINGSBOARD_DEVICE_NAME": "gw-0042",
        }
    )
    assert (settings.provision_key, settings.provision_secret) == (KEY, SECRET)
    assert settings.device_name == "gw-0042"
    assert KEY not in repr(settings) and SECRET not in repr(settings)


def test_a_secret_in_a_bad_value_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE_ENV, "TEG_DEVICE_NAME": "bad name", "TEG_PROVISION_SECRET": ""})
    assert "TEG_DEVICE_NAME" in str(caught.value)


def test_the_originals_token_file_before_provisioning(tmp_path: Path) -> None:
    """The original writes its token file when it provisioned: missing, it means provision."""
    missing = tmp_path / "tb_access_token"
    env = {
        **BASE_ENV,
        "THINGSBOARD_ACCESS_TOKEN": str(missing),
        "THINGSBOARD_PROVISION_DEVICE_KEY": KEY,
        "THINGSBOARD_PROVISION_DEVICE_SECRET": SECRET,
    }
    settings = load_settings(env)
    assert settings.mqtt_token is None and settings.mqtt_token_file is None
    assert _provisioner(settings) is not None
    missing.write_text("OLD-TOKEN\n")
    assert load_settings(env).mqtt_token == "OLD-TOKEN"  # the file wins once it exists
    missing.unlink()
    with pytest.raises(ConfigError, match="no such file"):  # without provisioning: an error
        load_settings({**BASE_ENV, "THINGSBOARD_ACCESS_TOKEN": str(missing)})


def test_provisioning_only_without_configured_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "pi-gateway-7")
    base = Settings(data_path="/data", provision_key=KEY, provision_secret=SECRET)
    provisioner = _provisioner(base)
    assert provisioner is not None
    assert provisioner.device_name == "pi-gateway-7"  # the host name by default
    assert provisioner.store.path == Path("/data") / CREDENTIALS_FILE_NAME
    assert SECRET not in repr(provisioner) and KEY not in repr(provisioner)
    named = Settings(data_path="/d", provision_key=KEY, provision_secret=SECRET, device_name="x")
    assert (p := _provisioner(named)) is not None and p.device_name == "x"
    assert _provisioner(Settings(data_path="/d")) is None
    for configured in (
        {"mqtt_token": "t"},
        {"mqtt_username": "u"},
        {"mqtt_client_id": "c"},
        {"mqtt_token_file": "/t"},
    ):
        settings = Settings(data_path="/d", provision_key=KEY, provision_secret=SECRET)
        assert _provisioner(Settings(**{**_fields(settings), **configured})) is None


def _fields(settings: Settings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in Settings.__dataclass_fields__}


def test_the_link_stops_while_provisioning(tmp_path: Path) -> None:
    """stop() interrupts provisioning like a connection attempt (here: a server that never
    answers)."""

    async def never(settings: MqttSettings, request: ProvisionRequest, timeout: float):
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    link = GmqttLink(
        MqttSettings(host="127.0.0.1", port=1, connect_window_s=0),
        DurableOutbox(tmp_path / "outbox"),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
        provisioner=Provisioner(REQUEST, CredentialsFile(tmp_path / "c.json"), requester=never),
    )
    link.start()
    time.sleep(0.3)
    started = time.monotonic()
    link.stop(timeout=1)
    assert time.monotonic() - started < 2
    assert not link.connected
