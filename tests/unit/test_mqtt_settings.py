"""MqttSettings' credentials (teg_ota.adapters.mqtt.settings): which ThingsBoard offers, what
goes into CONNECT, and that none of them shows in a repr. No broker, no files.
"""

from __future__ import annotations

import pytest

from teg_ota.adapters.mqtt.settings import MqttSettings


def test_the_access_token_is_the_user_name_without_a_password() -> None:
    settings = MqttSettings(token="tok")
    assert settings.auth == ("tok", None)
    assert settings.credentials_kind == "the access token"


def test_basic_credentials_send_user_name_and_password() -> None:
    settings = MqttSettings(client_id="gw-1", username="user", password="pass")
    assert settings.auth == ("user", "pass")
    assert settings.credentials_kind == "the MQTT basic credentials"
    assert MqttSettings(username="user").auth == ("user", None)


def test_a_client_id_alone_is_basic_credentials_without_user_name() -> None:
    settings = MqttSettings(client_id="gw-1")
    assert settings.auth is None
    assert settings.credentials_kind == "the MQTT basic credentials"


def test_certificate_and_anonymous_kinds() -> None:
    assert MqttSettings(tls=True, cert_file="/c.pem").credentials_kind == "the client certificate"
    assert MqttSettings().credentials_kind == "the anonymous connection"
    assert MqttSettings().auth is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token": "tok", "username": "user"}, "exclude each other"),
        ({"password": "pass"}, "password needs username"),
        ({"token": "tok", "password": "pass"}, "password needs username"),
    ],
)
def test_conflicting_credentials_are_refused(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        MqttSettings(**kwargs)  # type: ignore[arg-type]
    assert "tok" not in str(error.value).replace("token", "")
    assert "pass" not in str(error.value).replace("password", "")


def test_no_credential_is_in_the_repr() -> None:
    settings = MqttSettings(username="S3CRET-USER", password="S3CRET-PASS", client_id="gw-1")
    text = repr(settings)
    assert "S3CRET" not in text and "S3CRET" not in str(settings)
    assert "username='***'" in text and "password='***'" in text and "token=None" in text
    assert "client_id='gw-1'" in text
    assert "username=None, password=None" in repr(MqttSettings())
    assert "S3CRET" not in repr(MqttSettings(token="S3CRET-TOKEN"))
