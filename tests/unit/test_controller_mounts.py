"""The controller's default mounts (the original gateway's) and the operator's on top."""

from __future__ import annotations

import dataclasses

import pytest

from teg_ota.app.container import _docker_settings
from teg_ota.app.controller_mounts import PI_TOOLS, controller_mounts
from teg_ota.app.settings import ConfigError, Settings, load_settings

ALL_TOOLS = frozenset(PI_TOOLS)


def present(*paths: str):  # type: ignore[no-untyped-def]
    return lambda path: path in paths


def test_the_defaults_are_the_originals_with_every_tool_present() -> None:
    mounts = controller_mounts(Settings(data_path="/var/lib/teg-ota"), ALL_TOOLS.__contains__)

    assert mounts.every == (
        "/var/lib/teg-ota:/root/data:rw",
        "/var/lib/teg-ota/logs:/root/logs:rw",
        "/bin/vcgencmd:/bin/vcgencmd:ro",
        "/bin/uptime:/bin/uptime:ro",
        "/bin/pigs:/bin/pigs:ro",
    )
    assert mounts.directories == ("/var/lib/teg-ota", "/var/lib/teg-ota/logs")


def test_a_tool_missing_on_the_host_is_not_mounted() -> None:
    # Docker would create an empty directory at /bin/pigs on the host and in the container.
    mounts = controller_mounts(Settings(), present("/bin/vcgencmd", "/bin/uptime"))

    assert "/bin/pigs:/bin/pigs:ro" not in mounts.every
    assert [m for m in mounts.every if m.endswith(":ro")] == [
        "/bin/vcgencmd:/bin/vcgencmd:ro",
        "/bin/uptime:/bin/uptime:ro",
    ]


def test_no_tool_present_leaves_the_two_directories() -> None:
    mounts = controller_mounts(Settings(data_path="/d"), present())
    assert mounts.every == ("/d:/root/data:rw", "/d/logs:/root/logs:rw")


def test_the_tool_list_can_be_passed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    real = tmp_path / "vcgencmd"
    real.write_text("#!/bin/sh\n")
    tools = (str(real), str(tmp_path / "pigs"))

    mounts = controller_mounts(Settings(data_path="/d"), tools=tools)  # os.path.exists

    assert f"{real}:{real}:ro" in mounts.every
    assert not [m for m in mounts.every if "pigs" in m]


def test_data_and_logs_paths_are_settable() -> None:
    settings = Settings(
        data_path="/var/lib/teg-ota",
        controller_data_path="/srv/controller",
        controller_logs_path="/var/log/controller",
    )
    mounts = controller_mounts(settings, present())
    assert mounts.every == (
        "/srv/controller:/root/data:rw",
        "/var/log/controller:/root/logs:rw",
    )
    assert mounts.directories == ("/srv/controller", "/var/log/controller")


def test_the_logs_default_follows_the_controller_data_path() -> None:
    settings = Settings(data_path="/var/lib/teg-ota", controller_data_path="/srv/c")
    assert controller_mounts(settings, present()).mounts[1] == "/srv/c/logs:/root/logs:rw"


def test_the_operators_mounts_come_after_the_defaults() -> None:
    settings = Settings(data_path="/d", controller_mounts=("/dev/i2c-1:/dev/i2c-1",))
    assert controller_mounts(settings, present()).every == (
        "/d:/root/data:rw",
        "/d/logs:/root/logs:rw",
        "/dev/i2c-1:/dev/i2c-1",
    )


def test_an_operators_mount_on_the_same_container_path_replaces_the_default() -> None:
    settings = Settings(
        data_path="/d",
        controller_mounts=("/elsewhere:/root/data/:ro", "/opt/pigs:/bin/pigs:ro"),
    )
    mounts = controller_mounts(settings, ALL_TOOLS.__contains__)
    assert mounts.every == (
        "/d/logs:/root/logs:rw",
        "/elsewhere:/root/data/:ro",
        "/opt/pigs:/bin/pigs:ro",
        "/bin/vcgencmd:/bin/vcgencmd:ro",
        "/bin/uptime:/bin/uptime:ro",
    )
    # The replaced default's directory is not created either.
    assert mounts.directories == ("/d/logs",)


def test_default_mounts_off_leaves_only_the_operators() -> None:
    settings = Settings(default_mounts=False, controller_mounts=("/a:/b:ro",))
    mounts = controller_mounts(settings, ALL_TOOLS.__contains__)
    assert mounts.every == ("/a:/b:ro",)
    assert mounts.directories == ()


def test_a_data_dir_with_a_colon_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="GATEWAY_DATA_PATH"):
        controller_mounts(Settings(data_path="/var/lib/a:b"), present())
    with pytest.raises(ConfigError, match="TEG_CONTROLLER_LOGS_PATH"):
        load_settings({"TEG_CONTROLLER_LOGS_PATH": "/var/log/a:b"})
    with pytest.raises(ConfigError, match="TEG_CONTROLLER_DATA_PATH"):
        load_settings({"TEG_CONTROLLER_DATA_PATH": "relative/path"})


def test_the_variables_reach_the_mounts() -> None:
    settings = load_settings(
        {
            "GATEWAY_DATA_PATH": "/var/lib/teg-ota",
            "TEG_CONTROLLER_DATA_PATH": "/srv/data",
            "TEG_CONTROLLER_LOGS_PATH": "/srv/logs",
            "TEG_CONTROLLER_MOUNTS": "/dev/mem:/dev/mem",
        }
    )
    assert controller_mounts(settings, present()).every == (
        "/srv/data:/root/data:rw",
        "/srv/logs:/root/logs:rw",
        "/dev/mem:/dev/mem",
    )
    off = load_settings({"TEG_CONTROLLER_DEFAULT_MOUNTS": "0"})
    assert controller_mounts(off, ALL_TOOLS.__contains__).every == ()


def test_the_composition_root_wires_mounts_log_config_and_stop_grace() -> None:
    settings = dataclasses.replace(
        Settings(data_path="/var/lib/teg-ota"),
        stop_grace_s=42.5,
        log_driver="local",
        log_options={"max-size": "1m"},
    )
    docker_settings = _docker_settings(settings)

    assert docker_settings.mounts[:2] == (
        "/var/lib/teg-ota:/root/data:rw",
        "/var/lib/teg-ota/logs:/root/logs:rw",
    )
    assert tuple(docker_settings.create_dirs) == ("/var/lib/teg-ota", "/var/lib/teg-ota/logs")
    assert docker_settings.stop_timeout_s == 42.5
    assert (docker_settings.log_driver, dict(docker_settings.log_options)) == (
        "local",
        {"max-size": "1m"},
    )
    assert docker_settings.crash_log_lines == 50


def test_stop_grace_defaults_to_the_originals_60_s() -> None:
    settings = load_settings({})
    assert settings.stop_grace_s == 60
    assert settings.update_settings().stop_grace_s == 60
    assert _docker_settings(settings).stop_timeout_s == 60
