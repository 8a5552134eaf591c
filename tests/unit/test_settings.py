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


# --------------------------------------------------------------------------- MQTT credentials


def test_basic_credentials_are_read_as_they_are() -> None:
    settings = load_settings(
        {
            **BASE,
            "TEG_MQTT_CLIENT_ID": "gw-0001",
            "TEG_MQTT_USERNAME": "gw-user",
            "TEG_MQTT_PASSWORD": " pass word ",  # white space may be part of a password
        }
    )

    assert settings.mqtt_client_id == "gw-0001"
    assert settings.mqtt_username == "gw-user"
    assert settings.mqtt_password == " pass word "
    assert settings.mqtt_token is None
    assert settings.mqtt_secrets() == (None, " pass word ")
    assert "gw-user" not in repr(settings) and "pass word" not in repr(settings)


def test_the_token_and_the_password_may_come_from_files(tmp_path: Path) -> None:
    token_file = tmp_path / "tb-token"
    token_file.write_text("s3cret-token\n")  # an editor's trailing newline is not part of it
    password_file = tmp_path / "tb-password"
    password_file.write_bytes("pässword\r\n".encode())

    by_token = load_settings({**BASE, "TEG_MQTT_TOKEN_FILE": f" {token_file} "})
    by_password = load_settings(
        {**BASE, "TEG_MQTT_USERNAME": "gw", "TEG_MQTT_PASSWORD_FILE": str(password_file)}
    )

    assert by_token.mqtt_token == "s3cret-token"
    assert by_token.mqtt_token_file == str(token_file)
    assert by_password.mqtt_password == "pässword"
    assert by_password.mqtt_password_file == str(password_file)
    assert "s3cret-token" not in repr(by_token) and "pässword" not in repr(by_password)


def test_secret_files_work_from_a_toml_file_too(tmp_path: Path) -> None:
    token_file = tmp_path / "tb-token"
    token_file.write_text("from-a-file")
    config = tmp_path / "teg-ota.toml"
    config.write_text(f'TEG_MQTT_TOKEN_FILE = "{token_file}"\n')

    assert load_settings({}, config_file=config).mqtt_token == "from-a-file"


def test_a_settings_object_made_in_code_reads_its_files_when_asked(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok\n")
    (tmp_path / "password").write_text("pw\n")
    settings = Settings(
        mqtt_token_file=str(tmp_path / "token"),
        mqtt_password_file=str(tmp_path / "password"),
    )

    assert settings.mqtt_secrets() == ("tok", "pw")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"TEG_MQTT_TOKEN": "S3CRET-TOK", "TEG_MQTT_TOKEN_FILE": "FILE"},
            "TEG_MQTT_TOKEN and TEG_MQTT_TOKEN_FILE: set one of them, not both",
        ),
        (
            {
                "TEG_MQTT_USERNAME": "u",
                "TEG_MQTT_PASSWORD": "S3CRET-PW",
                "TEG_MQTT_PASSWORD_FILE": "FILE",
            },
            "TEG_MQTT_PASSWORD and TEG_MQTT_PASSWORD_FILE: set one of them, not both",
        ),
        (
            {"TEG_MQTT_TOKEN": "S3CRET-TOK", "TEG_MQTT_USERNAME": "u"},
            "TEG_MQTT_TOKEN(_FILE) and TEG_MQTT_USERNAME: set one of them",
        ),
        (
            {"TEG_MQTT_TOKEN_FILE": "FILE", "TEG_MQTT_USERNAME": "u"},
            "TEG_MQTT_TOKEN(_FILE) and TEG_MQTT_USERNAME: set one of them",
        ),
        ({"TEG_MQTT_PASSWORD": "S3CRET-PW"}, "TEG_MQTT_PASSWORD(_FILE): needs TEG_MQTT_USERNAME"),
        (
            {"TEG_MQTT_TOKEN": "S3CRET-TOK", "TEG_MQTT_PASSWORD_FILE": "FILE"},
            "TEG_MQTT_PASSWORD(_FILE): needs TEG_MQTT_USERNAME",
        ),
    ],
)
def test_conflicting_credentials_are_a_configuration_error(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("S3CRET-IN-FILE\n")
    environ = {name: str(secret) if value == "FILE" else value for name, value in environ.items()}

    with pytest.raises(ConfigError) as error:
        load_settings({**BASE, **environ})

    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
    assert "S3CRET" not in str(error.value)


@pytest.mark.parametrize("name", ["TEG_MQTT_TOKEN_FILE", "TEG_MQTT_PASSWORD_FILE"])
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: None, "no such file"),
        (lambda path: path.write_bytes(b""), "the file is empty"),
        (lambda path: path.write_bytes(b"\n\r\n"), "the file is empty"),
        (lambda path: path.mkdir(), "cannot read it (Is a directory)"),
        (lambda path: path.write_bytes(b"s3cret\xff\xfe"), "not UTF-8 text"),
        (lambda path: path.write_bytes(b"s3cret" * 11000), "larger than 65535 bytes"),
    ],
    ids=["missing", "empty", "only-newlines", "directory", "not-utf8", "too-large"],
)
def test_a_bad_secret_file_names_the_variable_and_the_path_never_the_content(
    tmp_path: Path, name: str, make, reason: str
) -> None:
    path = tmp_path / "secret"
    make(path)
    environ = {**BASE, name: str(path)}
    if name == "TEG_MQTT_PASSWORD_FILE":
        environ["TEG_MQTT_USERNAME"] = "gw"

    with pytest.raises(ConfigError) as error:
        load_settings(environ)

    assert str(error.value) == f"{name}={str(path)!r}: {reason}"
    assert "s3cret" not in str(error.value)


def test_an_unreadable_secret_file_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tb-token"
    path.write_text("s3cret")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", refuse)  # tests run as root: chmod would not do
    with pytest.raises(ConfigError) as error:
        load_settings({**BASE, "TEG_MQTT_TOKEN_FILE": str(path)})

    expected = f"TEG_MQTT_TOKEN_FILE={str(path)!r}: cannot read it (Permission denied)"
    assert str(error.value) == expected


def test_new_mqtt_variables_are_documented_in_the_env_example_too() -> None:
    example = (Path(__file__).parents[2] / "deploy" / "systemd" / "teg-ota.env.example").read_text()
    for name in ("TEG_MQTT_TOKEN_FILE", "TEG_MQTT_USERNAME", "TEG_MQTT_PASSWORD_FILE"):
        assert name in example
