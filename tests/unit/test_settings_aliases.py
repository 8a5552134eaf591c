"""The original gateway's environment, read as aliases (issue 11): teg-ota's names win."""

from __future__ import annotations

from pathlib import Path

import pytest

from teg_ota.app.settings import ConfigError, load_settings, unknown_variables

BASE = {"GATEWAY_DATA_PATH": "/data", "CONTROLLER_GIT_PATH": "/repo"}


def test_the_originals_deployment_is_read(tmp_path: Path) -> None:
    token, ca = tmp_path / "tb_access_token", tmp_path / "ca.pem"
    token.write_text("A1_TOKEN\n")
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = load_settings(
        {
            "TEG_CONTROLLER_GIT_PATH": "/home/pi/controller/.git",
            "TEG_DATA_PATH": "/home/pi/data",
            "TEG_DEFAULT_CONTROLLER_VERSION": "",
            "TB_HOST": "tb.example.org",
            "TB_PORT": "8883",
            "THINGSBOARD_ACCESS_TOKEN": str(token),
            "THINGSBOARD_CA_CERT": str(ca),
            "TEG_CONTROLLER_DOCKERCONTEXT_PATH": "/home/pi/controller/docker",
            "TEG_CONTROLLER_DOCKERFILE_PATH": "./Dockerfile",
        }
    )
    assert settings.git_path == "/home/pi/controller"
    assert settings.data_path == "/home/pi/data"
    assert settings.default_version is None
    assert (settings.mqtt_host, settings.mqtt_port) == ("tb.example.org", 8883)
    assert settings.mqtt_token == "A1_TOKEN"
    assert settings.mqtt_tls and settings.mqtt_ca_file == str(ca)
    assert (settings.build_context, settings.dockerfile) == ("docker", "Dockerfile")
    assert "TB_HOST" in settings.original_names and "TEG_DATA_PATH" in settings.original_names
    assert "A1_TOKEN" not in repr(settings)


def test_teg_otas_names_win() -> None:
    settings = load_settings(
        {
            **BASE,
            "TEG_DATA_PATH": "/elsewhere",
            "TB_HOST": "old",
            "TEG_MQTT_HOST": "new",
            "TEG_MQTT_TOKEN": "tok",
            "THINGSBOARD_ACCESS_TOKEN": "/no/such/file",
        }
    )
    assert (settings.data_path, settings.mqtt_host, settings.mqtt_token) == ("/data", "new", "tok")
    assert settings.original_names == ()


def test_a_git_path_at_the_work_tree_also_works() -> None:
    settings = load_settings({"TEG_CONTROLLER_GIT_PATH": "/srv/ctl/", "GATEWAY_DATA_PATH": "/d"})
    assert settings.git_path == "/srv/ctl"


def test_an_absolute_build_context_outside_the_work_tree_is_refused() -> None:
    with pytest.raises(ConfigError, match="TEG_CONTROLLER_DOCKERCONTEXT_PATH"):
        load_settings({**BASE, "TEG_CONTROLLER_DOCKERCONTEXT_PATH": "/etc"})


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/../../b"])
def test_build_paths_stay_inside_the_repository(bad: str) -> None:
    with pytest.raises(ConfigError, match="TEG_CONTROLLER_BUILD_CONTEXT"):
        load_settings({**BASE, "TEG_CONTROLLER_BUILD_CONTEXT": bad})


def test_a_ca_with_tls_explicitly_off_is_a_contradiction(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError, match="TEG_MQTT_TLS"):
        load_settings({**BASE, "THINGSBOARD_CA_CERT": str(ca), "TEG_MQTT_TLS": "0"})


def test_log_options_and_the_new_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.stop_grace_s == 60
    assert (settings.log_driver, dict(settings.log_options)) == (
        "json-file",
        {"max-size": "10m", "max-file": "5"},
    )
    custom = load_settings({**BASE, "TEG_CONTROLLER_LOG_OPTIONS": "max-size=1m,max-file=2"})
    assert dict(custom.log_options) == {"max-size": "1m", "max-file": "2"}
    assert dict(load_settings({**BASE, "TEG_CONTROLLER_LOG_OPTIONS": ""}).log_options) == {}
    with pytest.raises(ConfigError, match="TEG_CONTROLLER_LOG_OPTIONS"):
        load_settings({**BASE, "TEG_CONTROLLER_LOG_OPTIONS": "max size=1m"})


def test_original_names_are_not_reported_as_typos() -> None:
    assert unknown_variables({"TEG_DATA_PATH": "/x", "TEG_CONTROLLER_GIT_PATH": "/y"}) == []
