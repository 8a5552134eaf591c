"""Where settings come from besides the environment: the TOML file and the secret files.

Kept apart from :mod:`teg_ota.app.settings` (which parses and checks values) because these
read files: a secret file's content never appears in an error, only its setting and path.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection
from pathlib import Path

from teg_ota.app.settings_parsers import ConfigError

_SECRET_FILES = (
    # (value variable, file variable, field, file field)
    ("TEG_MQTT_TOKEN", "TEG_MQTT_TOKEN_FILE", "mqtt_token", "mqtt_token_file"),
    ("TEG_MQTT_PASSWORD", "TEG_MQTT_PASSWORD_FILE", "mqtt_password", "mqtt_password_file"),
)
MAX_SECRET_FILE_BYTES = 65535
"""A secret file larger than this is refused (MQTT's limit for a user name or password)."""


def read_toml(path: Path, known: Collection[str]) -> dict[str, str]:
    """The TOML file's settings as variable texts; a key that is not in ``known`` is an error."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None
    result: dict[str, str] = {}
    for key, value in data.items():
        name = key.upper()
        if name not in known:
            raise ConfigError(f"--config {path}: unknown setting {key!r}")
        if isinstance(value, bool):
            result[name] = "1" if value else "0"
        elif isinstance(value, int | float | str):
            result[name] = str(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            result[name] = ";".join(value)
        elif isinstance(value, dict):
            result[name] = ";".join(f"{k}={v}" for k, v in value.items())
        else:
            raise ConfigError(f"--config {path}: {key} has an unsupported type")
    return result


def read_secret_files(values: dict[str, object]) -> None:
    """Replace each ``*_FILE`` setting's secret by the file's content (in ``values``)."""
    for name, file_name, field_name, file_field in _SECRET_FILES:
        path = values.get(file_field)
        if path is None:
            continue
        if values.get(field_name) is not None:
            raise ConfigError(f"{name} and {file_name}: set one of them, not both")
        values[field_name] = read_secret_file(file_name, str(path))


def read_secret_file(name: str, path: str) -> str:
    """The secret in file ``path`` (setting ``name``), without its trailing newline.

    Raises :class:`ConfigError` naming the setting and the path, never the content, when
    the file is missing, unreadable, too large, not UTF-8 or empty.
    """

    def error(reason: str) -> ConfigError:
        return ConfigError(f"{name}={path!r}: {reason}")

    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError:
        raise error("no such file") from None
    except OSError as exc:
        raise error(f"cannot read it ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise error(f"larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise error("not UTF-8 text") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise error("the file is empty")
    return secret


def token_file_to_provision(raw: dict[str, str], originals: tuple[str, ...]) -> None:
    """The original gateway's token file does not exist before it provisioned itself: with a
    provision key and secret, a missing ``THINGSBOARD_ACCESS_TOKEN`` file means "provision"
    (as the original read it), not a start-up error."""
    if (
        "THINGSBOARD_ACCESS_TOKEN" in originals
        and raw.get("TEG_PROVISION_KEY", "").strip()
        and raw.get("TEG_PROVISION_SECRET", "").strip()
        and not os.path.lexists(raw["TEG_MQTT_TOKEN_FILE"].strip())
    ):
        del raw["TEG_MQTT_TOKEN_FILE"]
