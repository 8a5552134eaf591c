"""A gmqtt client on a private asyncio loop in a daemon thread, driven from synchronous code.

The machinery shared by harness.MqttRecorder and tb_standin.ThingsBoardStandIn. No pytest or
testcontainers imports here: scripts/demo.py uses the stand-in with the runtime dependencies
only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

from gmqtt import Client as GmqttClient
from gmqtt import Subscription
from gmqtt.mqtt.constants import MQTTv311


class ThreadedMqttClient:
    """Connects on ``start()`` (retrying refused TCP connects), reconnects forever, and
    subscribes with QoS 1 to ``_subscriptions()`` after every (re)connect, which gmqtt does
    not do by itself. ``start()`` returns once connected and every SUBACK is in.

    Subclasses override ``_handle_message`` (called on the loop thread; its exceptions are
    kept in ``listener_errors``, and every message is acknowledged), ``_subscriptions`` and
    maybe ``_label`` / ``_not_ready_message`` (for error texts).
    """

    _label = "MQTT client"

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        clean_session: bool = True,
        keepalive: int = 30,
        version: int = MQTTv311,
        reconnect_delay: float = 1.0,
    ) -> None:
        self.host, self.port = host, port
        self.client_id = client_id
        self._username, self._password = username, password
        self._clean_session = clean_session
        self._keepalive, self._version = keepalive, version
        self._reconnect_delay = reconnect_delay
        self._cond = threading.Condition()
        self._connected = False
        self._connections = 0
        self._pending_subacks: set[int] = set()
        self.listener_errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"mqtt-{client_id}", daemon=True
        )
        self._client: GmqttClient | None = None

    # -- hooks ----------------------------------------------------------------------------------
    def _subscriptions(self) -> Sequence[str]:
        """The topic filters to (re)subscribe to on every connect."""
        return ()

    def _handle_message(
        self, client: GmqttClient, topic: str, payload: bytes, properties: Any
    ) -> None:
        """One incoming message, on the loop thread; it must not block."""

    def _not_ready_message(self, timeout: float) -> str:
        return f"{self._label} not connected within {timeout}s"

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> Self:
        """Connect (retrying refused TCP connects until ``timeout``) and wait for the SUBACKs."""
        self._thread.start()
        self._run(self._connect(timeout), timeout + 5)
        self._wait_ready(timeout)
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            if not self._loop.is_closed():
                self._loop.close()
            return
        with contextlib.suppress(Exception):
            self._run(self._disconnect(), 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        with contextlib.suppress(RuntimeError):  # the loop did not stop within 5 s
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def is_connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    def connections(self) -> int:
        """How many times the client's own session was (re)established."""
        with self._cond:
            return self._connections

    def _wait_ready(self, timeout: float) -> None:
        """Until connected and subscribed (no SUBACK outstanding), else ``TimeoutError``."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._connected and not self._pending_subacks, timeout
            ):
                raise TimeoutError(self._not_ready_message(timeout))

    # -- calls into the loop thread -------------------------------------------------------------
    def _run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _client_or_fail(self) -> GmqttClient:
        if self._client is None:
            raise RuntimeError(f"{self._label} not started")
        return self._client

    def _publish_blocking(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        wait_ack: bool = True,
        timeout: float = 10.0,
        connect_timeout: float | None = None,
    ) -> None:
        """Publish and, with ``wait_ack`` and QoS > 0, wait for the PUBACK.

        With ``connect_timeout``, first wait up to that long for the connection (e.g. right
        after a broker restart). From the loop thread (a message handler) it only sends.
        """
        if threading.current_thread() is self._thread:  # do not wait on itself
            self._client_or_fail().publish(topic, payload, qos=qos, retain=retain)
            return
        self._run(
            self._publish_async(topic, payload, qos, retain, wait_ack, connect_timeout), timeout
        )

    async def _publish_async(
        self,
        topic: str,
        payload: bytes | str,
        qos: int,
        retain: bool,
        wait_ack: bool,
        connect_timeout: float | None,
    ) -> None:
        client = self._client_or_fail()
        if connect_timeout is not None:
            deadline = time.monotonic() + connect_timeout
            while not client.is_connected:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self._label} is not connected; cannot publish")
                await asyncio.sleep(0.05)
        client.publish(topic, payload, qos=qos, retain=retain)
        if wait_ack and qos > 0:
            # gmqtt has no PUBACK callback; its store of in-flight messages empties on PUBACK.
            await client._persistent_storage.wait_empty()

    async def _connect(self, timeout: float) -> None:
        client = GmqttClient(self.client_id, clean_session=self._clean_session)
        client.set_config({"reconnect_retries": -1, "reconnect_delay": self._reconnect_delay})
        if self._username is not None:
            client.set_auth_credentials(self._username, self._password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        deadline = time.monotonic() + timeout
        while True:  # gmqtt's first connect() does not retry
            try:
                await client.connect(
                    self.host, self.port, keepalive=self._keepalive, version=self._version
                )
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.2)

    async def _disconnect(self) -> None:
        if self._client is not None:
            await self._client.disconnect()
        # Let gmqtt's own fire-and-forget tasks (a reconnect attempt that now sees the client
        # inactive) finish: cancelling them makes their done-callback raise.
        await asyncio.sleep(0.1)
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()

    async def _subscribe(self, topics: Sequence[str]) -> None:
        """Subscribe now if connected (a later reconnect subscribes to ``_subscriptions()``)."""
        if self._client is not None and self._client.is_connected and topics:
            mid = self._client.subscribe([Subscription(t, qos=1) for t in topics])
            with self._cond:
                self._pending_subacks.add(mid)

    # -- gmqtt callbacks (loop thread) ----------------------------------------------------------
    def _on_connect(self, client: GmqttClient, flags: int, rc: int, properties: Any) -> None:
        topics = list(self._subscriptions())
        # Subscribe before saying "connected": nobody may see connected-with-no-SUBACK-due.
        mid = client.subscribe([Subscription(t, qos=1) for t in topics]) if topics else None
        with self._cond:
            self._connected = True
            self._connections += 1
            self._pending_subacks = set() if mid is None else {mid}
            self._cond.notify_all()

    def _on_disconnect(self, client: GmqttClient, packet: Any, exc: Any = None) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def _on_subscribe(self, client: GmqttClient, mid: int, qos: Any, properties: Any) -> None:
        with self._cond:
            self._pending_subacks.discard(mid)
            self._cond.notify_all()

    def _on_message(
        self, client: GmqttClient, topic: str, payload: bytes, qos: int, properties: Any
    ) -> int:
        self._guarded(self._handle_message, client, topic, bytes(payload), properties)
        return 0  # PUBACK: success

    def _guarded(self, func: Callable[..., object], *args: Any) -> None:
        """``func(*args)``, keeping an exception in ``listener_errors``: a bug in a handler
        must show up in the test, not hang it."""
        try:
            func(*args)
        except Exception as exc:
            self.listener_errors.append(exc)
