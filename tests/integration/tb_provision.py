"""Device provisioning for tb_standin.ThingsBoardStandIn: ThingsBoard's side of it.

No pytest imports. :class:`ProvisionSide` is a mixin of the stand-in (first in its bases);
:func:`check_provision_publish` is what tb_gate applies to a provision-only session. As the
real server does (``MqttTransportHandler``, ``JsonConverter``, ``DeviceProvisionServiceImpl``):

* a CONNECT with the user name (or client id) ``provision`` is accepted as a provision-only
  session, whatever the tokens: the one publish it may make is on ``/provision/request``
  (another topic closes the session), the one subscription ``/provision/response``;
* a request that is not a JSON object, lacks ``provisionDeviceKey`` or
  ``provisionDeviceSecret``, or names an unknown ``credentialsType`` closes the session
  without an answer;
* the answer, on ``/provision/response`` (QoS 1): an empty key or secret, an unknown key or a
  wrong secret: ``{"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}``;
  with the profile's ``ALLOW_CREATE_NEW_DEVICES`` a name that exists already (a blank name
  too): ``{"errorMsg": "Failed to provision device!", "status": "FAILURE"}``, a new name:
  the device is created with a new 20-character access token (or the token the device sent),
  ``{"credentialsValue": <token>, "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"}``;
  with ``CHECK_PRE_PROVISIONED_DEVICES`` a device added beforehand (:meth:`add_device`) gets
  its credentials again on every request, another name FAILURE;
* a created device's token is accepted from then on: the gate (if any) lets it connect.

One difference stays: Mosquitto hands ``/provision/response`` to every subscriber, the real
server only to the session that asked. Every request and answer is in :meth:`timeline` and
:attr:`provision_calls` (the stand-in is the server: it may see the secret; it never logs it).
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gmqtt import Client as GmqttClient
from tb_device_api import SessionClosed

if TYPE_CHECKING:
    from tb_gate import SessionGate

PROVISION_USERNAME = "provision"
PROVISION_REQUEST_TOPIC = "/provision/request"
PROVISION_RESPONSE_TOPIC = "/provision/response"
ALLOW_CREATE_NEW_DEVICES = "ALLOW_CREATE_NEW_DEVICES"
CHECK_PRE_PROVISIONED_DEVICES = "CHECK_PRE_PROVISIONED_DEVICES"
CREDENTIALS_TYPES = ("ACCESS_TOKEN", "X509_CERTIFICATE", "MQTT_BASIC", "LWM2M_CREDENTIALS")
NOT_FOUND = {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}
FAILURE = {"errorMsg": "Failed to provision device!", "status": "FAILURE"}
_ALPHANUMERIC = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ProvisionProfile:
    """The device profile's "Device provisioning" settings."""

    key: str
    secret: str
    strategy: str = ALLOW_CREATE_NEW_DEVICES

    def __repr__(self) -> str:
        return f"ProvisionProfile({self.strategy})"


@dataclass(frozen=True)
class ProvisionCall:
    request: Any
    """The request as parsed (it holds the secret)."""
    answer: dict[str, Any]
    received: float
    """``time.monotonic()``."""


def is_provision_session(username: str | None, client_id: str | None) -> bool:
    """``processConnect``: the user name or the client id ``provision``."""
    return PROVISION_USERNAME in (username, client_id)


def check_provision_publish(topic: str, payload: bytes) -> None:
    """:class:`SessionClosed` where the server closes a provision-only session."""
    if topic != PROVISION_REQUEST_TOPIC:
        raise SessionClosed(
            f"publish on {topic!r} in a provision-only session (TOPIC_NAME_INVALID)"
        )
    parse_provision_request(payload)


def parse_provision_request(payload: bytes) -> dict[str, Any]:
    """The request as ``JsonConverter.convertToProvisionRequestMsg`` reads it, else
    :class:`SessionClosed` (the server answers nothing and closes the session)."""
    try:
        request = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise SessionClosed("provision request is not JSON") from None
    if not isinstance(request, dict):
        raise SessionClosed("provision request is not a JSON object")
    for field in ("provisionDeviceKey", "provisionDeviceSecret"):
        if field not in request:
            raise SessionClosed(f"provision request without {field}")
    kind = request.get("credentialsType")
    if kind is not None and kind not in CREDENTIALS_TYPES:
        raise SessionClosed(f"provision request with an unknown credentialsType {kind!r}")
    return request


class ProvisionSide:
    """Mixin: needs ``_cond``, ``_note``, ``_violation`` (DeviceSide) and ``gate``."""

    _cond: threading.Condition
    _note: Callable[[str], None]
    _violation: Callable[[str], None]
    gate: SessionGate | None
    provision_profile: ProvisionProfile | None
    _devices: dict[str, str]
    _provision_calls: list[ProvisionCall]

    def _init_provision(self, profile: ProvisionProfile | None) -> None:
        self.provision_profile = profile
        self._devices = {}
        self._provision_calls = []

    # -- the server side ----------------------------------------------------------------------
    def add_device(self, name: str, token: str | None = None) -> str:
        """A device that exists in ThingsBoard already (made by hand, or pre-provisioned);
        its access token, accepted from now on."""
        token = token or _new_token()
        with self._cond:
            self._devices[name] = token
            self._note(f"device {name!r} exists")
        self._accept(token)
        return token

    @property
    def devices(self) -> dict[str, str]:
        """Device name -> access token, of every device the server knows."""
        with self._cond:
            return dict(self._devices)

    @property
    def provision_calls(self) -> list[ProvisionCall]:
        with self._cond:
            return list(self._provision_calls)

    def wait_for_provision_calls(self, count: int, timeout: float = 15.0) -> list[ProvisionCall]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._provision_calls) >= count, timeout):
                raise TimeoutError(
                    f"{len(self._provision_calls)} provision request(s) within {timeout}s, "
                    f"expected {count}"
                )
            return list(self._provision_calls)

    # -- ThreadedMqttClient hooks (loop thread) -------------------------------------------------
    def _subscriptions(self) -> Sequence[str]:
        return (*super()._subscriptions(), PROVISION_REQUEST_TOPIC)  # type: ignore[misc]

    def _handle_message(
        self, client: GmqttClient, topic: str, payload: bytes, properties: Any
    ) -> None:
        super()._handle_message(client, topic, payload, properties)  # type: ignore[misc]
        if topic == PROVISION_REQUEST_TOPIC:
            self._on_provision_request(client, payload)

    def _on_provision_request(self, client: GmqttClient, payload: bytes) -> None:
        try:
            request = parse_provision_request(payload)
        except SessionClosed as exc:
            self._violation(f"{exc}: the server closes the session, no answer")
            return
        with self._cond:
            answer, token = self._decide(request)
            self._provision_calls.append(ProvisionCall(request, answer, time.monotonic()))
            shown = {k: v for k, v in answer.items() if k != "credentialsValue"}
            self._note(f"provision request {request.get('deviceName')!r} -> {shown}")
            self._cond.notify_all()
        if token is not None:
            self._accept(token)
        client.publish(PROVISION_RESPONSE_TOPIC, json.dumps(answer), qos=1, retain=False)

    def _decide(self, request: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """``DeviceProvisionServiceImpl.provisionDevice`` (hold ``_cond``)."""
        key = str(request.get("provisionDeviceKey") or "")
        secret = str(request.get("provisionDeviceSecret") or "")
        name = request.get("deviceName")
        if isinstance(name, str) and name:
            name = name.strip()
            if not name:
                return dict(FAILURE), None
        profile = self.provision_profile
        if not key or not secret or profile is None or profile.key != key:
            return dict(NOT_FOUND), None
        if profile.secret != secret:
            return dict(NOT_FOUND), None
        if not isinstance(name, str) or not name:
            name = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(20))
        existing = self._devices.get(name)
        if profile.strategy == CHECK_PRE_PROVISIONED_DEVICES:
            if existing is None:
                return dict(FAILURE), None
            return _success(existing), existing
        if existing is not None:
            return dict(FAILURE), None
        token = request.get("token") if request.get("credentialsType") == "ACCESS_TOKEN" else None
        token = str(token) if token else _new_token()
        self._devices[name] = token
        return _success(token), token

    def _accept(self, token: str) -> None:
        if self.gate is not None:
            self.gate.allow(token)


def _success(token: str) -> dict[str, Any]:
    return {"credentialsValue": token, "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"}


def _new_token() -> str:
    """``StringUtils.randomAlphanumeric(20)``, as ThingsBoard generates access tokens."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(20))
