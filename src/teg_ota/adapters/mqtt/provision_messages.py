"""The words of ThingsBoard's provisioning protocol, and the credentials it hands out.

Kept apart from the session (``provision_session``), the file (``credentials_file``) and the
retry loop (``provision``, whose docstring tells the whole story), which all share them:
pure, no I/O, and no secret ever in a ``repr`` or an error message. As ThingsBoard has it:

* The request is JSON ``{"deviceName": ..., "provisionDeviceKey": ...,
  "provisionDeviceSecret": ...}``. ``credentialsType`` (``ACCESS_TOKEN``, ``MQTT_BASIC``,
  ``X509_CERTIFICATE``) is only for a device that brings its own credentials; without it
  the server generates an access token. No key or no secret: the session is closed.
* The answer, on ``/provision/response``: ``{"status": "SUCCESS", "credentialsType":
  "ACCESS_TOKEN", "credentialsValue": "<token>"}``; for ``MQTT_BASIC`` (a pre-provisioned
  device with basic credentials) ``credentialsValue`` is ``{"clientId", "userName",
  "password"}``. Refusals: ``{"status": "NOT_FOUND", "errorMsg": "Provision data was not
  found!"}`` (no device profile with this key, or the secret does not match) and
  ``{"status": "FAILURE", "errorMsg": "Failed to provision device!"}``: with the profile's
  "Allow to create new devices", a device of that name exists already (a name is
  provisioned ONCE); with "Check for pre-provisioned devices", no such device in the
  profile (a pre-provisioned device gets its credentials again on every request).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Final

from teg_ota.adapters.mqtt.settings import MqttSettings

PROVISION_USERNAME: Final = "provision"
PROVISION_REQUEST_TOPIC: Final = "/provision/request"
PROVISION_RESPONSE_TOPIC: Final = "/provision/response"
CREDENTIALS_FILE_NAME: Final = "tb_credentials.json"
CREDENTIALS_MODE: Final = 0o600
PROVISION_TIMEOUT_S: Final = 30.0
"""Connect, subscribe, request and answer must all fit in this, else the attempt failed."""
RETRY_INITIAL_S: Final = 60.0
"""After a refusal, the next request waits this long, doubling after each refusal ..."""
RETRY_MAX_S: Final = 3600.0
"""... up to this."""
MAX_CREDENTIALS_FILE_BYTES: Final = 65536
ACCESS_TOKEN: Final = "ACCESS_TOKEN"  # noqa: S105 - a credentials type, no secret
MQTT_BASIC: Final = "MQTT_BASIC"


class ProvisionError(Exception):
    """Provisioning gave no usable credentials (an answer we cannot use, a refused CONNECT):
    retried after the provisioning delay. The message never holds a secret."""


class ProvisionRefused(ProvisionError):
    """ThingsBoard answered NOT_FOUND or FAILURE."""

    def __init__(self, status: str, error_msg: str | None) -> None:
        self.status, self.error_msg = status, error_msg
        detail = f" ({error_msg!r})" if error_msg else ""
        super().__init__(f"{status}{detail}")


class CorruptCredentials(Exception):
    """The credentials file exists but cannot be used; the message says why (no secret)."""


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    """What the device asks for; the key and the secret stay out of ``repr``."""

    device_name: str
    key: str = field(repr=False)
    secret: str = field(repr=False)

    def payload(self) -> bytes:
        """The JSON of ``/provision/request``: no ``credentialsType``, so ThingsBoard
        generates an access token."""
        return json.dumps(
            {
                "deviceName": self.device_name,
                "provisionDeviceKey": self.key,
                "provisionDeviceSecret": self.secret,
            }
        ).encode("utf-8")


@dataclass(frozen=True, slots=True, repr=False)
class DeviceCredentials:
    """The device's credentials as ThingsBoard gave them: an access token, or MQTT basic
    credentials (client id, user name, password). Never in ``repr``."""

    credentials_type: str
    token: str | None = None
    client_id: str | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"DeviceCredentials({self.credentials_type}, ***)"

    @property
    def kind(self) -> str:
        """In words, for log lines."""
        return "an access token" if self.credentials_type == ACCESS_TOKEN else "MQTT basic"

    def apply(self, settings: MqttSettings) -> MqttSettings:
        """``settings`` connecting with these credentials. Raises ValueError when they do not
        make valid MQTT settings (e.g. a password without a user name)."""
        if self.credentials_type == ACCESS_TOKEN:
            return dataclasses.replace(settings, token=self.token, username=None, password=None)
        return dataclasses.replace(
            settings,
            token=None,
            client_id=self.client_id or settings.client_id,
            username=self.username,
            password=self.password,
        )

    def value(self) -> object:
        """``credentialsValue`` as ThingsBoard sends it."""
        if self.credentials_type == ACCESS_TOKEN:
            return self.token
        return {"clientId": self.client_id, "userName": self.username, "password": self.password}


def credentials_from(credentials_type: object, value: object) -> DeviceCredentials:
    """Credentials from ``credentialsType`` and ``credentialsValue``. Raises
    :class:`ProvisionError` (no secret in the message) when they cannot be used."""
    if credentials_type == ACCESS_TOKEN:
        if not isinstance(value, str) or not value or len(value) > 65535:
            raise ProvisionError("ACCESS_TOKEN without a usable token in credentialsValue")
        return DeviceCredentials(ACCESS_TOKEN, token=value)
    if credentials_type == MQTT_BASIC:
        if not isinstance(value, dict):
            raise ProvisionError("MQTT_BASIC without an object in credentialsValue")
        parts = {}
        for key in ("clientId", "userName", "password"):
            item = value.get(key)
            if item is not None and not isinstance(item, str):
                raise ProvisionError(f"MQTT_BASIC: {key} is not a string")
            parts[key] = item or None
        if parts["clientId"] is None and parts["userName"] is None:
            raise ProvisionError("MQTT_BASIC without a client id or a user name")
        if parts["password"] is not None and parts["userName"] is None:
            raise ProvisionError("MQTT_BASIC with a password but no user name")
        return DeviceCredentials(
            MQTT_BASIC,
            client_id=parts["clientId"],
            username=parts["userName"],
            password=parts["password"],
        )
    shown = credentials_type if isinstance(credentials_type, str) else type(credentials_type)
    raise ProvisionError(
        f"credentials of type {str(shown)[:40]!r}, which teg-ota cannot use (it needs "
        f"{ACCESS_TOKEN} or {MQTT_BASIC}; X.509 needs a key that only the device has)"
    )


def parse_response(payload: bytes) -> DeviceCredentials:
    """The credentials in a ``/provision/response`` message. Raises
    :class:`ProvisionRefused` for NOT_FOUND / FAILURE, :class:`ProvisionError` for anything
    else that gives no usable credentials."""
    try:
        answer = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise ProvisionError("the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ProvisionError("the answer is not a JSON object")
    status = answer.get("status")
    if status != "SUCCESS":
        message = answer.get("errorMsg")
        shown = status[:40] if isinstance(status, str) else f"no status ({repr(status)[:40]})"
        raise ProvisionRefused(shown, message[:200] if isinstance(message, str) else None)
    return credentials_from(answer.get("credentialsType"), answer.get("credentialsValue"))
