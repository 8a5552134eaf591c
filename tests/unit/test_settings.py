"""Settings: the environment contract, TOML files, and one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from teg_ota.app.settings import (
    VARIABLES,
    ConfigError,
    Settings,
    load_settings,
    unknown_variables,
)

BASE = {"GATEWAY_DATA_PATH": "/data", "CONTROLLER_GIT_PATH": "/repo"}


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings({})

    assert (settings.mqtt_host, settings.mqtt_port, settings.mqtt_tls) == ("localhost", 1883, False)
    assert settings.container_name == "teg_controller"
    assert settings.image_prefix == "teg-controller-"
    assert settings.privileged is True
    assert settings.network_mode == "host"
    assert settings.log_format == "text"


def test_every_variable_is_documented() -> None:
    documented = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    missing = [name for name in VARIABLES if f"`{name}`" not in documented]
    assert missing == []


def test_environment_values_are_parsed() -> None:
    settings = load_settings(
        {
            **BASE,
            "TEG_MQTT_PORT": "8883",
            "TEG_MQTT_TLS": "1",
            "TEG_CONTROLLER_PRIVILEGED": "0",
            "TEG_DEFAULT_CONTROLLER_VERSION": "v1.2.3",
            "TEG_HEALTH_GRACE_S": "2.5",
            "TEG_CONTROLLER_ENV": "A=1;B=two words",
            "TEG_CONTROLLER_MOUNTS": "/dev/i2c-1:/dev/i2c-1;/etc/teg:/etc/teg:ro",
        }
    )

    assert settings.mqtt_port == 8883 and settings.mqtt_tls
    assert settings.privileged is False
    assert settings.default_version == "v1.2.3"
    assert settings.health_grace_s == 2.5
    assert settings.controller_env == {"A": "1", "B": "two words"}
    assert settings.controller_mounts == ("/dev/i2c-1:/dev/i2c-1", "/etc/teg:/etc/teg:ro")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TEG_MQTT_PORT", "0"),
        ("TEG_MQTT_PORT", "http"),
        ("TEG_MQTT_TLS", "maybe"),
        ("TEG_MQTT_CA_FILE", "/does/not/exist.pem"),
        ("TEG_DEFAULT_CONTROLLER_VERSION", "--upload-pack=x"),
        ("TEG_CONTROLLER_CONTAINER", "bad name;rm"),
        ("TEG_CONTROLLER_IMAGE_PREFIX", "Upper-"),
        ("TEG_CONTROLLER_IMAGE_PREFIX", "a" * 41),
        ("TEG_CONTROLLER_NETWORK_MODE", "host;x"),
        ("TEG_CONTROLLER_RESTART_POLICY", "sometimes"),
        ("TEG_CONTROLLER_ENV", "no-equals"),
        ("TEG_CONTROLLER_MOUNTS", "relative:/x"),
        ("TEG_HEALTH_GRACE_S", "-1"),
        ("TEG_HEALTH_GRACE_S", "nan"),
        ("TEG_BACKOFF_INITIAL_S", "0"),
        ("TEG_LOG_LEVEL", "LOUD"),
        ("TEG_LOG_FORMAT", "xml"),
    ],
)
def test_an_invalid_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({**BASE, name: value})

    assert str(error.value).startswith(f"{name}=")
    assert "\n" not in str(error.value)


def test_the_token_never_appears_in_errors_or_repr() -> None:
    settings = load_settings({**BASE, "TEG_MQTT_TOKEN": "s3cret-token"})
    assert "s3cret-token" not in repr(settings)


def test_inconsistent_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="TEG_BACKOFF_MAX_S"):
        load_settings({**BASE, "TEG_BACKOFF_INITIAL_S": "10", "TEG_BACKOFF_MAX_S": "5"})
    with pytest.raises(ConfigError, match="absolute"):
        load_settings({"GATEWAY_DATA_PATH": "relative/data"})


def test_toml_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "teg-ota.toml"
    config.write_text(
        'TEG_MQTT_HOST = "tb.example.com"\nteg_mqtt_port = 1884\n'
        "TEG_CONTROLLER_PRIVILEGED = false\n"
        'TEG_CONTROLLER_MOUNTS = ["/a:/a", "/b:/b:ro"]\n'
    )

    settings = load_settings({"TEG_MQTT_PORT": "1999"}, config_file=config)

    assert settings.mqtt_host == "tb.example.com"
    assert settings.mqtt_port == 1999
    assert settings.privileged is False
    assert settings.controller_mounts == ("/a:/a", "/b:/b:ro")


@pytest.mark.parametrize(
    "content", ["TEG_NOT_A_SETTING = 1\n", "this is not toml", "TEG_MQTT_PORT = {a = 1}\n"]
)
def test_bad_toml_files_are_refused(tmp_path: Path, content: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)

    with pytest.raises(ConfigError, match=r"--config|TEG_MQTT_PORT="):
        load_settings({}, config_file=config)


def test_domain_settings_are_derived() -> None:
    settings = Settings(min_free_disk_mb=100, backoff_initial_s=1, backoff_max_s=8)

    assert settings.update_settings().min_free_disk_bytes == 100 * 2**20
    assert settings.watchdog_settings().backoff.max_s == 8


def test_controller_environment_errors_do_not_echo_values() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({**BASE, "TEG_CONTROLLER_ENV": "API_KEY=s3cret;garbage-s3cret"})

    assert "s3cret" not in str(error.value)


def test_misspelled_variables_are_named() -> None:
    environ = {
        "TEG_MQTT_HOTS": "x",
        "TEG_MQTT_HOST": "y",
        "PATH": "/bin",
        "GATEWAY_DATA_PATH": "/d",
    }

    assert unknown_variables(environ) == ["TEG_MQTT_HOTS"]
