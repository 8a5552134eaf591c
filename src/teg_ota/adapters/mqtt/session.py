"""One gmqtt client per connection to ThingsBoard, and the attempts that open them.

* MQTT 3.1.1 (ThingsBoard's device protocol; its CONNACK codes 4/5 are the credential
  refusals), clean session, the access token as the username with no password, or the MQTT
  basic credentials (client id, user name, password), TLS when ``settings.tls`` (CA file
  or the system's CAs, optional X.509 client certificate).
* gmqtt's built-in reconnect is switched off: the link replaces the whole client (a new
  :class:`Session`) instead, so nothing of a dead session (subscriptions, packet ids,
  half-sent messages) can leak into the next. When to try again is the link's decision.
* On every CONNACK: subscribe (QoS 1) to ``v1/devices/me/attributes``,
  ``v1/devices/me/attributes/response/+`` and ``v1/devices/me/rpc/request/+`` (gmqtt does
  not subscribe again by itself), then hand the session to the link (``on_up``).
* A refusal that retrying cannot fix (CONNACK 4 / 5, or its MQTT 5 equivalents): ONE error
  line, :attr:`Connector.refused` tells why, and the attempt reports ``"refused"`` so the
  link retries only rarely. A later success clears ``refused``. No credential is ever
  logged (:class:`MqttSettings` hides them in repr; log lines name their kind only).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Final, Literal, TypeVar

import gmqtt
from gmqtt.mqtt.constants import MQTTv311
from loguru import logger

from teg_ota.adapters.mqtt.client import AckTracker, new_client
from teg_ota.adapters.mqtt.payloads import (
    ATTRIBUTE_REQUEST_PAYLOAD,
    DEVICE_SUBSCRIPTIONS,
    RPC_REQUEST_PREFIX,
    attribute_request_topic,
    is_attribute_topic,
    rpc_request_id,
)
from teg_ota.adapters.mqtt.settings import MqttSettings

CONNECT_TIMEOUT_S = 30.0
"""TCP + TLS + CONNACK must complete within this, else the attempt counts as failed."""
ACK_TIMEOUT_S = 30.0
"""No PUBACK within this on a live connection: the message is sent again (DUP)."""
DISCONNECT_TIMEOUT_S = 2.0
INTERRUPT_GRACE_S = 1.0

CREDENTIAL_REFUSAL_CODES: Final = frozenset({4, 5, 134, 135})
"""CONNACK: bad user name or password / not authorised (MQTT 3.1.1 and 5)."""
PERMANENT_REFUSAL_CODES: Final = CREDENTIAL_REFUSAL_CODES | frozenset(
    {1, 2, 129, 130, 132, 133, 138, 140, 144, 149, 153, 154, 155, 156, 157}
)
"""Refusals retrying cannot fix (gmqtt's own list): retried only every refused_retry_s."""

ConnectOutcome = Literal["up", "failed", "refused"]

_T = TypeVar("_T")


async def until_stop(
    awaitable: Awaitable[_T],
    timeout: float | None,
    stop: asyncio.Event,
    interrupt: asyncio.Event | None = None,
) -> bool:
    """Await ``awaitable`` unless ``stop`` (or ``interrupt``) is set first.

    Returns True when it completed, False when it was cancelled by stop / interrupt;
    raises its exception, or TimeoutError. After ``interrupt`` it still gets
    :data:`INTERRUPT_GRACE_S`: a broker closes the socket right after a refusing
    CONNACK, and the refusal must not be mistaken for a lost connection.
    """
    task = asyncio.ensure_future(awaitable)
    events = [stop] if interrupt is None else [stop, interrupt]
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait({task, *waiters}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and interrupt is not None and interrupt.is_set():
            await asyncio.wait({task, waiters[0]}, timeout=INTERRUPT_GRACE_S)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    if any(event.is_set() for event in events):
        return False
    raise TimeoutError(f"no answer within {timeout}s")


class Session:
    """One gmqtt client and one connection attempt / connection."""

    def __init__(self, client_id: str) -> None:
        self.tracker = AckTracker(self._on_ack)
        self.client = new_client(client_id, self.tracker)
        self.up = False
        self.lost = asyncio.Event()
        self.acks: dict[int, asyncio.Future[None]] = {}
        self.request_after: int | None = None
        """Send the OTA attribute request once the outbox head is past this sequence
        number (the connect's ``current_sw_*`` report): it follows the report."""

    @property
    def live(self) -> bool:
        return self.up and not self.lost.is_set()

    def subscribe_attributes(self) -> None:
        """The attribute topics and the RPC requests (:data:`DEVICE_SUBSCRIPTIONS`)."""
        self.client.subscribe([gmqtt.Subscription(t, qos=1) for t in DEVICE_SUBSCRIPTIONS])

    def request_attributes(self, request_id: int) -> None:
        """Fire and forget (QoS 1): a lost request is replaced by the next connect's."""
        self.client.publish(attribute_request_topic(request_id), ATTRIBUTE_REQUEST_PAYLOAD, qos=1)

    async def deliver(self, topic: str, payload: bytes) -> bool:
        """Publish with QoS 1; True once the broker's PUBACK arrived."""
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tracker.last_mid = None
        self.client.publish(gmqtt.Message(topic, payload, qos=1))
        mid = self.tracker.last_mid
        if mid is None:
            return False
        self.acks[mid] = ack
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait(
                {ack, lost}, timeout=ACK_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
            self.acks.pop(mid, None)
        return ack.done()

    def _on_ack(self, mid: int) -> None:
        future = self.acks.get(mid)
        if future is not None and not future.done():
            future.set_result(None)


class Connector:
    """Makes the sessions of one link and runs their connection attempts.

    Only the current session's callbacks count: a replaced client may still report its
    own end, which must not touch the session that took its place. ``on_up(session)`` and
    ``on_down()`` run on the loop thread; ``on_attributes`` and ``on_rpc`` as for
    :class:`GmqttLink`.
    """

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        on_up: Callable[[Session], None],
        on_down: Callable[[], None],
        on_attributes: Callable[[str, bytes], None],
        on_rpc: Callable[[int, bytes], None] | None = None,
    ) -> None:
        self._settings = settings
        self._client_id = client_id
        self._on_up = on_up
        self._on_down = on_down
        self._on_attributes = on_attributes
        self._on_rpc = on_rpc
        self._ssl: ssl.SSLContext | None = None
        self._session: Session | None = None
        self.refused: str | None = None
        """Why ThingsBoard refused the connection for good (CONNACK 4/5...), else ``None``."""

    def use_settings(self, settings: MqttSettings) -> None:
        """Connect with ``settings`` from the next session on (the provisioned credentials;
        their client id, if any, replaces the link's)."""
        self._settings = settings
        self._client_id = settings.client_id or self._client_id

    def load_tls(self) -> None:
        """Read the TLS files now, so bad ones fail ``start()`` instead of every attempt."""
        self._ssl = self._settings.ssl_context()

    def new_session(self) -> Session:
        session = Session(self._client_id)
        session.client.on_connect = self._on_connect
        session.client.on_disconnect = self._on_disconnect
        session.client.on_message = self._on_message
        self._session = session
        return session

    def forget_session(self) -> None:
        self._session = None

    def is_current(self, session: Session) -> bool:
        return self._session is session

    def live_session(self) -> Session | None:
        session = self._session
        return session if session is not None and session.live else None

    async def connect(self, session: Session, failures: int, stop: asyncio.Event) -> ConnectOutcome:
        """One attempt; ``failures`` (attempts failed in a row) keeps repeats out of WARNING."""
        settings = self._settings
        client = session.client
        auth = settings.auth
        if auth is not None:
            client.set_auth_credentials(*auth)
        try:
            done = await until_stop(
                client.connect(
                    settings.host,
                    settings.port,
                    ssl=self._ssl if self._ssl is not None else False,
                    keepalive=settings.keepalive,
                    version=MQTTv311,
                ),
                CONNECT_TIMEOUT_S,
                stop,
                session.lost,
            )
        except gmqtt.MQTTConnectError as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            if code in PERMANENT_REFUSAL_CODES:
                self._note_refusal(code, str(getattr(exc, "message", exc)))
                return "refused"
            logger.warning("MQTT broker {}:{} refused: {}", settings.host, settings.port, exc)
            return "failed"
        except (OSError, TimeoutError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            message = "Cannot connect to MQTT broker {}:{} ({}); retrying"
            if failures == 0 or failures % 10 == 0:
                logger.warning(message, settings.host, settings.port, reason)
            else:
                logger.debug(message, settings.host, settings.port, reason)
            return "failed"
        if not done or not session.live:
            if not stop.is_set():
                logger.warning(
                    "MQTT broker {}:{} closed the connection before accepting it; retrying",
                    settings.host,
                    settings.port,
                )
            return "failed"
        if self.refused is not None:
            logger.info("ThingsBoard accepts the connection again")
            self.refused = None
        logger.info("Connected to ThingsBoard MQTT at {}:{}", settings.host, settings.port)
        return "up"

    async def close(self, session: Session) -> None:
        """Disconnect cleanly if the connection is still open; never raises."""
        connection = getattr(session.client, "_connection", None)
        if connection is None or connection.is_closing():
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.client.disconnect(), DISCONNECT_TIMEOUT_S)

    def _note_refusal(self, code: int, text: str) -> None:
        """Log a refusal once: the same one every ``refused_retry_s`` would flood the log."""
        settings = self._settings
        credentials = code in CREDENTIAL_REFUSAL_CODES
        what = settings.credentials_kind if credentials else "the connection"
        reason = f"ThingsBoard refused {what} (CONNACK {code}: {text})"
        if reason != self.refused:
            hint = f" check the device's credentials ({what});" if credentials else ""
            logger.error(
                "{} at {}:{};{} next attempt in {:.0f}s",
                reason,
                settings.host,
                settings.port,
                hint,
                settings.refused_retry_s,
            )
        else:
            logger.debug("Still refused: {}", reason)
        self.refused = reason

    # -- gmqtt callbacks (loop thread) ------------------------------------------------------------
    def _on_connect(self, client: object, flags: int, rc: int, properties: object) -> None:
        session = self._session
        if session is None or client is not session.client:
            return
        session.up = True
        try:
            session.subscribe_attributes()
        except Exception:  # noqa: BLE001 - keep the session; the sender still runs
            logger.exception("MQTT link: error while subscribing")
        self._on_up(session)

    def _on_disconnect(self, client: object, packet: object, exc: object = None) -> None:
        session = self._session
        if session is None or client is not session.client:
            return
        session.lost.set()
        self._on_down()

    async def _on_message(
        self, client: object, topic: str, payload: bytes, qos: int, properties: object
    ) -> int:
        """Returns the PUBACK reason code: without optimistic acknowledgement the PUBACK goes
        out only once ``on_attributes`` has returned, so a message is never acknowledged
        before the gateway has it."""
        if is_attribute_topic(topic):
            try:
                self._on_attributes(topic, bytes(payload))
            except Exception:  # noqa: BLE001 - a callback bug must not break the link
                logger.exception("on_attributes failed for a message on {}", topic)
        elif topic.startswith(RPC_REQUEST_PREFIX):
            self._on_rpc_request(topic, bytes(payload))
        else:
            logger.debug("MQTT message on unexpected topic {} ignored", topic)
        return 0  # PUBACK reason code: success

    def _on_rpc_request(self, topic: str, payload: bytes) -> None:
        request_id = rpc_request_id(topic)
        if request_id is None:
            # No reply possible: ThingsBoard closes the session on a reply topic whose id
            # Integer.parseInt refuses (and it never numbers its requests so).
            logger.warning("RPC request on {!r} ignored: its id is not a decimal integer", topic)
        elif self._on_rpc is None:
            logger.debug("RPC request {} ignored: nothing handles RPC here", request_id)
        else:
            try:
                self._on_rpc(request_id, payload)
            except Exception:  # noqa: BLE001 - a callback bug must not break the link
                logger.exception("on_rpc failed for RPC request {}", request_id)
