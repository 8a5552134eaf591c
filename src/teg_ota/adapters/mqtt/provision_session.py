"""One MQTT provisioning session with ThingsBoard: connect as ``provision``, ask, await the answer.

Kept apart from the retry loop (:mod:`~teg_ota.adapters.mqtt.provision`) because this is the
only part that speaks MQTT: one gmqtt client, one request, within a timeout. Its gmqtt logger
never logs a payload (the answer holds the device's token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any, TypeVar

import gmqtt
from gmqtt.mqtt.constants import MQTTv311

from teg_ota.adapters.mqtt.client import AckTracker, _DemoteRefusalLogs, new_client
from teg_ota.adapters.mqtt.provision_messages import (
    PROVISION_REQUEST_TOPIC,
    PROVISION_RESPONSE_TOPIC,
    PROVISION_TIMEOUT_S,
    PROVISION_USERNAME,
    DeviceCredentials,
    ProvisionError,
    ProvisionRequest,
    parse_response,
)
from teg_ota.adapters.mqtt.settings import MqttSettings

_T = TypeVar("_T")

_GMQTT_LOGGER = logging.getLogger("gmqtt.teg_ota_provision")
_GMQTT_LOGGER.setLevel(logging.INFO)
_GMQTT_LOGGER.addFilter(_DemoteRefusalLogs())  # a refused CONNECT: our one line only
"""gmqtt logs every payload it receives at debug: the answer holds the device's token.
This logger's own level keeps those lines from being made, whatever TEG_LOG_LEVEL is."""


async def request_credentials(
    settings: MqttSettings, request: ProvisionRequest, timeout: float = PROVISION_TIMEOUT_S
) -> DeviceCredentials:
    """One provisioning session: CONNECT as ``provision``, subscribe to the answer,
    publish the request, await the answer, DISCONNECT; all within ``timeout``.

    Raises :class:`ProvisionRefused` / :class:`ProvisionError` (as :func:`parse_response`;
    also a refused CONNECT), ``OSError`` (unreachable, closed) or ``TimeoutError``.
    """
    ssl_context = settings.ssl_context()
    client = new_client(
        f"teg-ota-provision-{uuid.uuid4().hex[:12]}", AckTracker(_ignore), _GMQTT_LOGGER
    )
    client.set_auth_credentials(PROVISION_USERNAME, None)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()
    subscribed: asyncio.Future[None] = loop.create_future()
    lost = asyncio.Event()

    def on_message(client: object, topic: str, payload: bytes, qos: int, props: object) -> int:
        if topic == PROVISION_RESPONSE_TOPIC and not answer.done():
            answer.set_result(bytes(payload))
        return 0  # PUBACK: success

    def on_subscribe(client: object, mid: int, qos: object, properties: object) -> None:
        if not subscribed.done():
            subscribed.set_result(None)

    def on_disconnect(client: object, packet: object, exc: object = None) -> None:
        lost.set()

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    try:
        async with asyncio.timeout(timeout):
            try:
                await client.connect(
                    settings.host,
                    settings.port,
                    ssl=ssl_context if ssl_context is not None else False,
                    keepalive=settings.keepalive,
                    version=MQTTv311,
                )
            except gmqtt.MQTTConnectError as exc:
                raise ProvisionError(f"the provisioning connection was refused ({exc})") from None
            client.subscribe(gmqtt.Subscription(PROVISION_RESPONSE_TOPIC, qos=1))
            await _unless_lost(subscribed, lost)
            client.publish(PROVISION_REQUEST_TOPIC, request.payload(), qos=1)
            payload = await _unless_lost(answer, lost)
    finally:
        await _disconnect(client)
    return parse_response(payload)


def _ignore(mid: int) -> None:
    """PUBACKs of the request: the answer is what counts."""


async def _unless_lost(future: asyncio.Future[_T], lost: asyncio.Event) -> _T:
    waiter = asyncio.ensure_future(lost.wait())
    both: set[asyncio.Future[Any]] = {future, waiter}
    try:
        await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not future.done():
        raise ConnectionError("the server closed the provisioning session without an answer")
    return future.result()


async def _disconnect(client: gmqtt.Client) -> None:
    connection = getattr(client, "_connection", None)
    if connection is None or connection.is_closing():
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), 2.0)
