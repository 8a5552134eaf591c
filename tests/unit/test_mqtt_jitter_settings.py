"""The fleet-spreading settings (issue 16): TEG_MQTT_CONNECT_WINDOW_S,
TEG_MQTT_ATTRIBUTE_REQUEST_WINDOW_S and TEG_MQTT_JITTER, from the environment to the
link's MqttSettings, and the values refused with a clear error."""

from __future__ import annotations

import math

import pytest

from teg_ota.adapters.mqtt import MqttSettings
from teg_ota.app.container import _mqtt_settings
from teg_ota.app.settings import ConfigError, load_settings
from teg_ota.domain.core.jitter import ReconnectPolicy

BASE = {"GATEWAY_DATA_PATH": "/data", "CONTROLLER_GIT_PATH": "/repo"}


def test_the_defaults_spread_a_fleet() -> None:
    mqtt = _mqtt_settings(load_settings(BASE))
    assert (mqtt.connect_window_s, mqtt.attribute_request_window_s, mqtt.jitter) == (
        10.0,
        2.0,
        True,
    )
    assert mqtt.reconnect_policy == ReconnectPolicy(
        initial_s=1.0, max_s=60.0, window_s=10.0, jitter=True
    )
    assert MqttSettings() == MqttSettings(
        connect_window_s=10.0, attribute_request_window_s=2.0, jitter=True
    )


def test_the_variables_reach_the_link() -> None:
    settings = load_settings(
        {
            **BASE,
            "TEG_MQTT_CONNECT_WINDOW_S": "120",
            "TEG_MQTT_ATTRIBUTE_REQUEST_WINDOW_S": " 0.5 ",
            "TEG_MQTT_JITTER": "0",
        }
    )
    mqtt = _mqtt_settings(settings)
    assert (mqtt.connect_window_s, mqtt.attribute_request_window_s, mqtt.jitter) == (
        120.0,
        0.5,
        False,
    )
    assert "connect_window_s=120.0" in repr(mqtt) and "jitter=False" in repr(mqtt)


def test_windows_of_zero_are_accepted() -> None:
    mqtt = _mqtt_settings(
        load_settings(
            {**BASE, "TEG_MQTT_CONNECT_WINDOW_S": "0", "TEG_MQTT_ATTRIBUTE_REQUEST_WINDOW_S": "0"}
        )
    )
    assert (mqtt.connect_window_s, mqtt.attribute_request_window_s) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("TEG_MQTT_CONNECT_WINDOW_S", "-1", "between 0 and 604800"),
        ("TEG_MQTT_CONNECT_WINDOW_S", "ten", "could not convert"),
        ("TEG_MQTT_CONNECT_WINDOW_S", "nan", "between 0 and 604800"),
        ("TEG_MQTT_CONNECT_WINDOW_S", "inf", "between 0 and 604800"),
        ("TEG_MQTT_ATTRIBUTE_REQUEST_WINDOW_S", "-0.5", "between 0 and 604800"),
        ("TEG_MQTT_ATTRIBUTE_REQUEST_WINDOW_S", "1e9", "between 0 and 604800"),
        ("TEG_MQTT_JITTER", "maybe", "expected 0 or 1"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(
    name: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r}:"), message
    assert reason in message, message


@pytest.mark.parametrize("field", ["connect_window_s", "attribute_request_window_s"])
@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_mqtt_settings_refuse_a_window_that_is_no_duration(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        MqttSettings(**{field: value})  # type: ignore[arg-type]
