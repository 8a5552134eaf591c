"""The device's MQTT link to ThingsBoard, on gmqtt: a :class:`TelemetrySink` plus attributes.

Threading: :meth:`GmqttLink.start` runs an asyncio loop in a daemon thread ("teg-ota-mqtt");
``start(loop)`` instead runs the link on ``loop``, already running in another thread, with
no thread of its own (many links in one process: the fleet simulation). Either way every
public method may be called from any thread but the loop's own for ``stop()``.
``on_attributes(topic, payload)`` is called **on the link's loop thread**: it must return
quickly (it holds up the PUBACK of that message and all MQTT traffic) and should hand work
over to another thread; whatever it raises is logged and swallowed. It may call the link's
own methods.

The link is the glue; the rest is composed: the :class:`LoopHost` (its thread or a shared
loop, loop_host.py), the :class:`ReconnectLoop` (when to connect, reconnect.py), the
:class:`Connector` (one gmqtt client per connection, session.py), the
:class:`TelemetryQueue` (stamps with timestamps.py, queues in the :class:`DurableOutbox`)
and the :class:`OutboxSender` (delivers the outbox):

* Every connection attempt, the first and each one after a drop, is the link's own, on a
  schedule that spreads a fleet (reconnect.py, domain/core/jitter.py): the first one after
  start-up and the first after an established session is lost at a random moment in
  ``[0, connect_window_s)``, failed ones after full jitter over a backoff step doubling from
  ``connect_backoff_initial_s`` up to ``connect_backoff_max_s``; refused credentials are
  retried every ``refused_retry_s`` only. The random source is ``rng`` (tests seed it).
* On every connect it reports ``current_sw_title`` / ``current_sw_version`` from
  ``current_software()``, then requests the OTA shared attributes. The report is telemetry
  like any other: stamped and queued in the outbox, in order with every other message (it
  is live, so it usually goes out flat); the attribute request goes out a random moment in
  ``[0, attribute_request_window_s)`` after the report has been delivered (after whatever
  was queued before it), on that same session only. A report of a previous connection
  still queued is dropped: the new one supersedes it.
* Telemetry (OTA states included) goes through the outbox first, stamped as
  ``{"ts": <unix ms>, "values": {...}}``; one sender task publishes the head with QoS 1,
  waits for its PUBACK, deletes it, then sends the next (strict order, at-least-once: at most
  the message in flight is duplicated after a crash or a lost connection). Attribute
  requests are not persisted: a fresh one goes out on every connect. The timestamp mark is
  written before the message is queued, so no queued ``ts`` is ever above the mark on disk.
* Clock honesty (timestamps.py): a message queued while connected and sent within a few
  seconds goes out flat, ``{"k": v}``, and ThingsBoard stamps it on arrival with the same
  clock it stamps QUEUED / INITIATED with; one queued while offline keeps its ``ts``, never
  before the instant the latest attribute message arrived (the link raises the mark then).
  A message that can never be sent (too large) is dropped with an error and counted in
  :attr:`GmqttLink.outbox_dropped` instead of blocking the outbox.
* The disk never stops the link: ``publish_*`` raise only for values that cannot be sent.
  An outbox that cannot persist (full or read-only disk, a file where its directory should
  be) keeps messages in memory and the sender delivers them the same way
  (:attr:`DurableOutbox.degraded`, :attr:`DurableOutbox.in_memory`); a timestamp mark that
  cannot be saved lives in memory.
* Newest assignment wins: an answer to an attribute request sent before the latest
  attribute push of OTA keys arrived is not handed on (logged at debug): it may carry the
  assignment the push replaced.
* Server-side RPC requests go to ``on_rpc(id, payload)`` (session.py); replies and the
  uptime are published live (:meth:`GmqttLink._send_live`), never queued: worth nothing late.
* With a ``provisioner`` (provision.py) the loop first awaits the device's credentials;
  ``stop()`` interrupts it, and the outbox keeps what is published meanwhile.

:meth:`GmqttLink.stop` flushes the outbox while connected, within its timeout, then sends
DISCONNECT. Whatever is left stays in the outbox for the next start, but for entries a
degraded outbox only holds in memory: those are lost (logged as an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping

from loguru import logger

from teg_ota.adapters.mqtt.loop_host import LoopHost
from teg_ota.adapters.mqtt.outbox import DurableOutbox
from teg_ota.adapters.mqtt.payloads import (
    ATTRIBUTES_TOPIC,
    TELEMETRY_TOPIC,
    is_stale_response,
    live_telemetry_payload,
    mentions_ota_keys,
    request_ids,
    rpc_response_payload,
    rpc_response_topic,
)
from teg_ota.adapters.mqtt.provision import Provisioner
from teg_ota.adapters.mqtt.reconnect import ReconnectLoop
from teg_ota.adapters.mqtt.sender import OutboxSender
from teg_ota.adapters.mqtt.session import DISCONNECT_TIMEOUT_S, Connector, Session
from teg_ota.adapters.mqtt.settings import MqttSettings
from teg_ota.adapters.mqtt.telemetry_queue import TelemetryQueue
from teg_ota.domain.core.jitter import spread
from teg_ota.ports.telemetry_sink import OtaReport


class GmqttLink:
    """ThingsBoard device link; implements :class:`teg_ota.ports.telemetry_sink.TelemetrySink`.

    ``current_software()`` returns ``(title, version)`` of what runs now (either may be
    ``None``: not sent). ``on_attributes(topic, payload)`` receives every message on the
    attribute topics but stale answers, on the link's thread (see the module docstring).
    ``clock`` gives the Unix time in seconds for the telemetry ``ts`` (which never goes
    back: timestamps.py). ``rng`` draws every jittered delay (default: a fresh
    ``random.Random()``).
    """

    def __init__(
        self,
        settings: MqttSettings,
        outbox: DurableOutbox,
        *,
        current_software: Callable[[], tuple[str | None, str | None]],
        on_attributes: Callable[[str, bytes], None],
        clock: Callable[[], float] = time.time,
        on_rpc: Callable[[int, bytes], None] | None = None,
        provisioner: Provisioner | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._provisioner = provisioner
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - not crypto
        self._outbox = outbox
        self._current_software = current_software
        self._queue = TelemetryQueue(outbox, clock)
        self._on_attributes_callback = on_attributes
        self._connector = Connector(
            settings,
            settings.client_id or f"teg-ota-{uuid.uuid4().hex[:12]}",
            on_up=self._on_session_up,
            on_down=self._on_session_down,
            on_attributes=self._on_attributes,
            on_rpc=on_rpc,
        )
        self._sender = OutboxSender(
            outbox, self._connector, self._request_after_connect, self._queue.wire_payload
        )
        self._request_ids = request_ids()
        # Loop thread only: the id of the last attribute request sent, and what it was
        # when the latest push arrived (answers up to that id are stale).
        self._last_request_id = 0
        self._last_request_before_push = 0
        self._lifecycle = threading.Lock()
        self._host = LoopHost("teg-ota-mqtt")
        self._connected = threading.Event()
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._reconnect = ReconnectLoop(
            self._connector, outbox, self._connected, self._rng, provisioner=provisioner
        )

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start connecting in the background (returns at once). Raises on bad TLS files.

        Without ``loop``: on a loop in a thread of the link's own. With ``loop`` (running in
        another thread): on that loop, with no thread of its own."""
        with self._lifecycle:
            if self._host.loop is not None:
                return
            self._connector.load_tls()
            # Created here, not in the loop: stop() may be called before the loop runs.
            self._wakeup = asyncio.Event()
            self._stop = asyncio.Event()
            self._host.start(self._hosted_main, loop)
        logger.info("MQTT link starting: {}", self._settings)

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what can be delivered within ``timeout`` seconds, disconnect, stop."""
        with self._lifecycle:
            if self._host.loop is None:
                return
            deadline = time.monotonic() + max(0.0, timeout)
            self._host.call_soon(lambda: self._request_stop(deadline))
            if not self._host.join(max(0.0, timeout) + DISCONNECT_TIMEOUT_S + 1.0):
                logger.warning("MQTT link did not stop within {:.1f}s", timeout)
            self._host.forget()
            self._connected.clear()
        logger.info("MQTT link stopped; {} message(s) left in the outbox", len(self._outbox))
        if lost := self._outbox.in_memory:
            logger.error(
                "{} undelivered message(s) lived only in memory (the outbox could not persist "
                "them: {}); they are lost",
                lost,
                self._outbox.degraded,
            )

    # -- state ------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    @property
    def refused(self) -> str | None:
        """Why ThingsBoard refused the connection for good (CONNACK 4/5...), else ``None``."""
        if self._connector.refused is None and self._provisioner is not None:
            return self._provisioner.refused
        return self._connector.refused

    @property
    def outbox(self) -> DurableOutbox:
        return self._outbox

    @property
    def outbox_dropped(self) -> int:
        """Outbox messages dropped because they can never be sent (larger than ThingsBoard's
        limit), since the link was made. (The outbox's bound counts its own drops.)"""
        return self._sender.dropped

    # -- TelemetrySink ----------------------------------------------------------------------------
    def publish_ota_state(self, report: OtaReport) -> None:
        self._enqueue(report.values(), ota_state=True)

    def publish_telemetry(self, values: Mapping[str, object]) -> None:
        self._enqueue(values, ota_state=False)

    def request_ota_attributes(self) -> None:
        """Sent now if connected; otherwise dropped (every connect sends a fresh request)."""
        self._call_in_loop(self._send_attribute_request)

    # -- server-side RPC --------------------------------------------------------------------------
    def publish_rpc_response(self, request_id: int, body: object) -> None:
        """Answer RPC request ``request_id`` with ``body`` as JSON (any thread): published at
        once with QoS 1 when connected, else dropped with a log line; never queued. Raises
        :class:`TelemetryError` for a body that cannot be sent (not JSON, too large)."""
        topic = rpc_response_topic(request_id)
        payload = rpc_response_payload(topic, body)
        if self._host.loop is None:
            logger.warning("Reply to RPC request {} dropped: the link is not started", request_id)
            return
        dropped = f"Reply to RPC request {request_id} dropped: not connected"
        self._call_in_loop(lambda: self._send_live(topic, payload, dropped))

    def publish_live_telemetry(self, values: Mapping[str, object]) -> None:
        """Telemetry worth something only now (the controller's uptime): published flat at
        once when connected, else dropped; never queued, so it costs the SD card nothing.
        Raises :class:`TelemetryError` for values that cannot be sent."""
        payload = live_telemetry_payload(values)
        if self._host.loop is not None:
            self._call_in_loop(lambda: self._send_live(TELEMETRY_TOPIC, payload))

    # -- producer side (any thread) ---------------------------------------------------------------
    def _enqueue(self, values: Mapping[str, object], *, ota_state: bool) -> None:
        self._queue.enqueue(values, ota_state=ota_state, connected=self._connected.is_set())
        self._call_in_loop(self._wakeup.set)

    def _call_in_loop(self, callback: Callable[[], object]) -> None:
        # Not started: nothing; the outbox keeps it, a connect requests attributes anyway.
        self._host.call_soon(callback)

    # -- loop thread ------------------------------------------------------------------------------
    async def _hosted_main(self) -> None:
        """The link's whole life on its loop (its own or a shared one)."""
        try:
            await self._main()
        except Exception:  # noqa: BLE001 - the link must end cleanly whatever happens
            logger.exception("MQTT link loop crashed")
        finally:
            self._connected.clear()
            self._connector.forget_session()

    def _request_stop(self, deadline: float) -> None:
        self._reconnect.stop_at(deadline)
        self._stop.set()
        self._wakeup.set()

    async def _main(self) -> None:
        sender = asyncio.create_task(self._sender.run(self._wakeup), name="teg-ota-mqtt-sender")
        try:
            await self._reconnect.run(self._settings, self._stop)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    # -- session events (loop thread) -------------------------------------------------------------
    def _on_session_up(self, session: Session) -> None:
        # The attribute request follows the current_sw_* report (the sender asks for it once
        # the report is delivered), or at once when there is nothing to report.
        session.request_after = self._queue.queue_software_report(self._current_software)
        if session.request_after is None:
            try:
                self._request_after_connect()
            except Exception:  # noqa: BLE001 - keep the session; the sender still runs
                logger.exception("MQTT link: error while requesting the OTA attributes")
        # Connected once the report is queued: whatever is published after wait_connected()
        # returns is stamped after it.
        self._connected.set()
        self._wakeup.set()

    def _on_session_down(self) -> None:
        self._connected.clear()
        self._wakeup.set()

    def _request_after_connect(self) -> None:
        """The connect's attribute request, a random moment in the window from now, on the
        live session only (the next session sends its own)."""
        settings = self._settings
        delay = spread(settings.attribute_request_window_s, self._rng) if settings.jitter else 0
        session = self._connector.live_session()
        if delay <= 0 or session is None:
            self._send_attribute_request()
            return
        asyncio.get_running_loop().call_later(delay, self._send_attribute_request, session)

    def _send_attribute_request(self, only_on: Session | None = None) -> None:
        session = self._connector.live_session()
        if only_on is not None and session is not only_on:
            return  # that session ended: the next one requests for itself
        if session is None:
            logger.debug("Offline: the OTA attributes will be requested on the next connect")
            return
        request_id = next(self._request_ids)
        self._last_request_id = request_id
        session.request_attributes(request_id)
        logger.debug("Requested the OTA attributes (request {})", request_id)

    def _send_live(self, topic: str, payload: bytes, dropped: str | None = None) -> None:
        """Publish now on the live session (QoS 1), never queued; offline: dropped (with
        the ``dropped`` warning, when given)."""
        session = self._connector.live_session()
        if session is None:
            if dropped is not None:
                logger.warning("{}", dropped)
            return
        session.client.publish(topic, payload, qos=1)
        logger.debug("Published {} bytes live on {}", len(payload), topic)

    def _on_attributes(self, topic: str, payload: bytes) -> None:
        """Every message on the attribute topics (loop thread), before ``on_attributes``."""
        if topic == ATTRIBUTES_TOPIC:
            if mentions_ota_keys(payload):
                self._last_request_before_push = self._last_request_id
        elif is_stale_response(topic, self._last_request_before_push):
            logger.debug(
                "Attribute answer on {} ignored: its request went out before the latest "
                "attribute push, which is newer",
                topic,
            )
            return
        try:
            self._queue.note_assignment()
        except Exception:  # noqa: BLE001 - the message must still be handed on
            logger.exception("MQTT link: cannot note the attribute message's arrival")
        self._on_attributes_callback(topic, payload)
