"""The device's MQTT link to ThingsBoard, on gmqtt: a :class:`TelemetrySink` plus attributes.

Threading: :meth:`GmqttLink.start` runs an asyncio loop in a daemon thread ("teg-ota-mqtt");
every public method may be called from any thread. ``on_attributes(topic, payload)`` is
called **on the link's thread**: it must return quickly (it holds up the PUBACK of that
message and all MQTT traffic) and should hand work over to another thread; whatever it
raises is logged and swallowed. It may call the link's own methods.

Connection, one gmqtt client per session:

* MQTT 3.1.1 (ThingsBoard's device protocol; its CONNACK codes 4/5 are the token refusals),
  clean session, the access token as the username with no password, TLS when
  ``settings.tls`` (CA file or the system's CAs, optional X.509 client certificate).
* Every connection attempt, the first and each one after a drop, is the link's own, with
  exponential backoff (``connect_backoff_initial_s`` doubling up to ``connect_backoff_max_s``,
  jittered by up to -20 %). gmqtt's built-in reconnect is switched off: the whole client is
  replaced instead, so nothing of a dead session (subscriptions, packet ids, half-sent
  messages) can leak into the next. The backoff is reset only after a session stayed up
  for :data:`STABLE_SESSION_S`, so a broker that accepts and drops at once is not hammered.
* On every CONNACK: subscribe (QoS 1) to ``v1/devices/me/attributes`` and
  ``v1/devices/me/attributes/response/+``, report ``current_sw_title`` /
  ``current_sw_version`` from ``current_software()``, then request the OTA shared
  attributes. The report is telemetry like any other: stamped (see below) and queued in the
  outbox, so its ``ts`` is ordered with every other message and a later report (a FAILED
  naming the version that runs) is never older than it; the attribute request goes out once
  the report has been delivered (after whatever was queued before it). A report of a
  previous connection that is still queued is dropped: the new one supersedes it.
* A refusal that retrying cannot fix (CONNACK 4 / 5, or its MQTT 5 equivalents): ONE error
  line, :attr:`GmqttLink.refused` tells why, and the link retries only every
  ``settings.refused_retry_s`` (default 10 minutes: the operator may fix the device's
  credentials on the server side without touching the gateway). A later success clears
  ``refused``. The token itself is never logged (:class:`MqttSettings` hides it in repr).

Telemetry (OTA states included) goes through the :class:`DurableOutbox` first, with
``{"ts": <unix ms>, "values": {...}}``; one sender task publishes the head with
QoS 1, waits for its PUBACK, deletes it, then sends the next (strict order, at-least-once:
at most the message in flight is duplicated after a crash or a lost connection). While
offline messages wait on disk with their original ``ts``. Attribute requests are not
persisted: a fresh one goes out on every connect.

Telemetry timestamps never go back, not even across restarts: ``ts`` is
``max(now_ms, last_ts_ms + 1)``, and ``last_ts_ms`` is kept durably in
``<outbox dir>/link/telemetry_last_ts`` (a sub-directory: the outbox leaves directories alone).
A Raspberry Pi has no real-time clock: after a power cut its clock can be behind until NTP
syncs, and ThingsBoard keeps a key's latest value only when the new ``ts`` is not older
(so an ``sw_state`` stamped in the past would never show). Strictly increasing also keeps two
states reported within one millisecond apart (ThingsBoard stores one value per key and ts).
The mark is written (atomically, durably) before the message is queued, so no queued
message ever carries a ``ts`` above the mark on disk.

:meth:`GmqttLink.stop` flushes the outbox while connected, within its timeout, then sends
DISCONNECT. Whatever is left stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import re
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import gmqtt
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.storage import PersistentStorage
from loguru import logger

from teg_ota.adapters.atomic_file import (
    ensure_dir,
    read_text_or_none,
    remove_stale_temp_files,
    write_atomic,
)
from teg_ota.adapters.durable_outbox import DurableOutbox
from teg_ota.domain.core.ota_messages import MAX_PAYLOAD_BYTES, OTA_ATTRIBUTE_KEYS
from teg_ota.ports.telemetry_sink import OtaReport, TelemetryError

TELEMETRY_TOPIC: Final = "v1/devices/me/telemetry"
ATTRIBUTES_TOPIC: Final = "v1/devices/me/attributes"
ATTRIBUTES_RESPONSE_PREFIX: Final = "v1/devices/me/attributes/response/"
ATTRIBUTES_RESPONSE_FILTER: Final = ATTRIBUTES_RESPONSE_PREFIX + "+"
ATTRIBUTES_REQUEST_PREFIX: Final = "v1/devices/me/attributes/request/"
OTA_SHARED_KEYS: Final = ",".join(OTA_ATTRIBUTE_KEYS)
"""``sharedKeys`` of an attribute request: ONE comma-separated string, as ThingsBoard wants."""

STABLE_SESSION_S = 30.0
"""A session that lasted this long resets the reconnect backoff."""
CONNECT_TIMEOUT_S = 30.0
"""TCP + TLS + CONNACK must complete within this, else the attempt counts as failed."""
ACK_TIMEOUT_S = 30.0
"""No PUBACK within this on a live connection: the message is sent again (DUP)."""
DISCONNECT_TIMEOUT_S = 2.0
INTERRUPT_GRACE_S = 1.0

TOKEN_REFUSAL_CODES: Final = frozenset({4, 5, 134, 135})
"""CONNACK: bad user name or password / not authorised (MQTT 3.1.1 and 5)."""
PERMANENT_REFUSAL_CODES: Final = TOKEN_REFUSAL_CODES | frozenset(
    {1, 2, 129, 130, 132, 133, 138, 140, 144, 149, 153, 154, 155, 156, 157}
)
"""Refusals retrying cannot fix (gmqtt's own list): retried only every refused_retry_s."""

LINK_STATE_DIR_NAME: Final = "link"
"""Sub-directory of the outbox directory for the link's own state (the outbox skips dirs)."""
LAST_TS_FILE_NAME: Final = "telemetry_last_ts"

_LAST_TS_RE = re.compile(r"[0-9]{1,16}")

_T = TypeVar("_T")


class _TimestampMark:
    """Telemetry timestamps that never go back, kept durably across restarts.

    ``next_ms()`` proposes ``max(now_ms, last_ts_ms + 1)``; ``commit(ts)`` makes it the new
    high-water mark (written with :func:`write_atomic` first). The file is read once, here;
    afterwards the mark lives in memory and each commit writes a few bytes. Callers
    serialise ``next_ms``/``commit`` (the link's enqueue lock).
    """

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self._path = path
        self._clock = clock
        self._dir_ready = False
        self._last_ms = self._load()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def last_ms(self) -> int:
        return self._last_ms

    def _load(self) -> int:
        path = self._path
        # An interrupted write leaves its temporary file; this process owns the directory.
        remove_stale_temp_files(path, older_than=0)
        try:
            text = read_text_or_none(path, max_bytes=64)
        except (OSError, ValueError) as exc:
            logger.warning("Cannot read the telemetry timestamp mark {} ({}); ignored", path, exc)
            return 0
        if text is None:
            return 0
        value = text.strip()
        if not _LAST_TS_RE.fullmatch(value):
            logger.warning("Telemetry timestamp mark {} is not a number; ignored", path)
            return 0
        return int(value)

    def next_ms(self) -> int:
        return max(int(self._clock() * 1000), self._last_ms + 1)

    def commit(self, ts_ms: int) -> None:
        """Remember ``ts_ms`` (in memory always; on disk unless that fails: logged)."""
        self._last_ms = max(self._last_ms, ts_ms)
        try:
            if not self._dir_ready:
                ensure_dir(self._path.parent)
                self._dir_ready = True
            write_atomic(self._path, b"%d\n" % self._last_ms)
        except OSError as exc:
            logger.warning(
                "Cannot save the telemetry timestamp mark {} ({}); after a restart with the "
                "clock behind, ThingsBoard may ignore new values until it catches up",
                self._path,
                exc,
            )


@dataclass(frozen=True, slots=True, repr=False)
class MqttSettings:
    """How to reach ThingsBoard. ``token`` is the device access token (MQTT user name).

    TLS files are only valid with ``tls=True`` (a CA file without TLS would silently send
    the token in clear text). ``key_file`` needs ``cert_file``.
    """

    host: str = "localhost"
    port: int = 1883
    token: str | None = None
    tls: bool = False
    ca_file: Path | str | None = None
    cert_file: Path | str | None = None
    key_file: Path | str | None = None
    client_id: str | None = None
    keepalive: int = 60
    connect_backoff_initial_s: float = 1.0
    connect_backoff_max_s: float = 60.0
    refused_retry_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("MQTT host is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"MQTT port {self.port} is out of range")
        if not 0 <= self.keepalive <= 65535:
            raise ValueError(f"MQTT keepalive {self.keepalive} is out of range")
        if self.connect_backoff_initial_s <= 0 or self.connect_backoff_max_s <= 0:
            raise ValueError("connect backoffs must be positive")
        if self.connect_backoff_max_s < self.connect_backoff_initial_s:
            raise ValueError("connect_backoff_max_s is below connect_backoff_initial_s")
        if self.refused_retry_s <= 0:
            raise ValueError("refused_retry_s must be positive")
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError("ca_file / cert_file / key_file need tls=True")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")

    def __repr__(self) -> str:
        token = None if self.token is None else "***"
        return (
            f"MqttSettings(host={self.host!r}, port={self.port!r}, token={token!r}, "
            f"tls={self.tls!r}, ca_file={self.ca_file!r}, cert_file={self.cert_file!r}, "
            f"key_file={self.key_file!r}, client_id={self.client_id!r}, "
            f"keepalive={self.keepalive!r}, "
            f"connect_backoff_initial_s={self.connect_backoff_initial_s!r}, "
            f"connect_backoff_max_s={self.connect_backoff_max_s!r}, "
            f"refused_retry_s={self.refused_retry_s!r})"
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (``None`` without TLS). Raises OSError / ssl.SSLError on bad files."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            context.load_cert_chain(
                str(self.cert_file), str(self.key_file) if self.key_file else None
            )
        return context


class _DemoteRefusalLogs(logging.Filter):
    """gmqtt logs each permanent refusal twice at ERROR; the link logs its own single line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "permanent" in str(record.msg):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_GMQTT_LOGGER = logging.getLogger("gmqtt.teg_ota_link")
_GMQTT_LOGGER.addFilter(_DemoteRefusalLogs())


class _AckTracker(PersistentStorage):  # type: ignore[misc]
    """gmqtt's in-flight store, used only to learn packet ids and PUBACKs.

    It keeps nothing: the outbox is the store, and the link re-sends from it itself, so
    gmqtt must never replay anything on its own (it would duplicate messages).
    """

    def __init__(self, on_ack: Callable[[int], None]) -> None:
        super().__init__()
        self._on_ack = on_ack
        self.last_mid: int | None = None

    def push_message(self, mid: int, raw_package: bytes) -> None:
        self.last_mid = mid

    def remove_message_by_mid(self, mid: int) -> None:
        self._on_ack(mid)


class _Client(gmqtt.Client):  # type: ignore[misc]
    async def reconnect(self, delay: bool = False) -> None:
        """Disabled: the link replaces the whole client itself, with backoff."""
        return


class _Session:
    """One gmqtt client and one connection attempt / connection."""

    def __init__(self, client_id: str, on_ack: Callable[[_Session, int], None]) -> None:
        self.tracker = _AckTracker(lambda mid: on_ack(self, mid))
        self.client = _Client(
            client_id,
            clean_session=True,
            optimistic_acknowledgement=False,
            persistent_storage=self.tracker,
            logger=_GMQTT_LOGGER,
        )
        self.up = False
        self.lost = asyncio.Event()
        self.acks: dict[int, asyncio.Future[None]] = {}
        self.request_after: int | None = None
        """Send the OTA attribute request once the outbox head is past this sequence
        number (the connect's ``current_sw_*`` report): it follows the report."""

    @property
    def live(self) -> bool:
        return self.up and not self.lost.is_set()


class GmqttLink:
    """ThingsBoard device link; implements :class:`teg_ota.ports.telemetry_sink.TelemetrySink`.

    ``current_software()`` returns ``(title, version)`` of what runs now (either may be
    ``None``: not sent). ``on_attributes(topic, payload)`` receives every message on the
    attribute topics, on the link's thread (see the module docstring). ``clock`` gives the
    Unix time in seconds for the telemetry ``ts`` (which never goes back: module docstring).
    """

    def __init__(
        self,
        settings: MqttSettings,
        outbox: DurableOutbox,
        *,
        current_software: Callable[[], tuple[str | None, str | None]],
        on_attributes: Callable[[str, bytes], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._current_software = current_software
        self._on_attributes = on_attributes
        self._clock = clock
        self._stamps = _TimestampMark(
            outbox.directory / LINK_STATE_DIR_NAME / LAST_TS_FILE_NAME, clock
        )
        self._enqueue_lock = threading.Lock()
        self._software_report_seq: int | None = None
        self._client_id = settings.client_id or f"teg-ota-{uuid.uuid4().hex[:12]}"
        self._request_ids = itertools.count(1)
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = threading.Event()
        self._refused: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._session: _Session | None = None
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._stop_deadline = 0.0

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start connecting in the background (returns at once). Raises on bad TLS files."""
        with self._lifecycle:
            if self._thread is not None:
                return
            self._ssl = self._settings.ssl_context()
            # Created here, not in the loop: stop() may be called before the loop runs.
            self._wakeup = asyncio.Event()
            self._stop = asyncio.Event()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=self._thread_main, args=(loop,), name="teg-ota-mqtt", daemon=True
            )
            self._loop, self._thread = loop, thread
            thread.start()
        logger.info("MQTT link starting: {}", self._settings)

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what can be delivered within ``timeout`` seconds, disconnect, stop."""
        with self._lifecycle:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return
            deadline = time.monotonic() + max(0.0, timeout)
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(self._request_stop, deadline)
            thread.join(max(0.0, timeout) + DISCONNECT_TIMEOUT_S + 1.0)
            if thread.is_alive():
                logger.warning("MQTT link thread did not stop within {:.1f}s", timeout)
            self._thread = self._loop = None
            self._connected.clear()
        logger.info("MQTT link stopped; {} message(s) left in the outbox", len(self._outbox))

    # -- state ------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    @property
    def refused(self) -> str | None:
        """Why ThingsBoard refused the connection for good (CONNACK 4/5...), else ``None``."""
        return self._refused

    @property
    def outbox(self) -> DurableOutbox:
        return self._outbox

    # -- TelemetrySink ----------------------------------------------------------------------------
    def publish_ota_state(self, report: OtaReport) -> None:
        self._enqueue(report.values(), ota_state=True)

    def publish_telemetry(self, values: Mapping[str, object]) -> None:
        self._enqueue(values, ota_state=False)

    def request_ota_attributes(self) -> None:
        """Sent now if connected; otherwise dropped (every connect sends a fresh request)."""
        self._call_in_loop(self._send_attribute_request)

    # -- producer side (any thread) ---------------------------------------------------------------
    def _enqueue(self, values: Mapping[str, object], *, ota_state: bool) -> None:
        # One lock from stamping to queueing: outbox order is ts order, across threads.
        with self._enqueue_lock:
            self._enqueue_locked(values, ota_state=ota_state)
        self._call_in_loop(self._wakeup.set)

    def _enqueue_locked(self, values: Mapping[str, object], *, ota_state: bool) -> int:
        """Stamp and queue one message (the enqueue lock held); returns its outbox sequence."""
        ts_ms = self._stamps.next_ms()
        message = {"ts": ts_ms, "values": dict(values)}
        try:
            payload = json.dumps(
                message, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise TelemetryError(f"telemetry is not JSON-serialisable: {exc}") from exc
        if len(payload) > MAX_PAYLOAD_BYTES:
            # ThingsBoard would close the session on it, again and again: never queue it.
            raise TelemetryError(f"telemetry of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        self._stamps.commit(ts_ms)  # durable before any message carries this ts
        try:
            return self._outbox.append(TELEMETRY_TOPIC, payload, ota_state=ota_state)
        except OSError as exc:
            raise TelemetryError(
                f"cannot queue telemetry in {self._outbox.directory}: {exc}"
            ) from exc

    def _call_in_loop(self, callback: Callable[[], object]) -> None:
        loop = self._loop
        if loop is None:
            return  # not started: the outbox keeps it; a connect requests attributes anyway
        with contextlib.suppress(RuntimeError):  # loop closed by a concurrent stop()
            loop.call_soon_threadsafe(callback)

    # -- loop thread ------------------------------------------------------------------------------
    def _thread_main(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException:  # noqa: BLE001 - the thread must end cleanly whatever happens
            logger.exception("MQTT link loop crashed")
        finally:
            with contextlib.suppress(Exception):
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            self._connected.clear()
            self._session = None
            loop.close()

    def _request_stop(self, deadline: float) -> None:
        self._stop_deadline = deadline
        self._stop.set()
        self._wakeup.set()

    async def _main(self) -> None:
        sender = asyncio.create_task(self._sender(), name="teg-ota-mqtt-sender")
        try:
            await self._supervise()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _supervise(self) -> None:
        settings = self._settings
        backoff = settings.connect_backoff_initial_s
        failures = 0
        while not self._stop.is_set():
            session = _Session(self._client_id, self._on_puback)
            self._session = session
            outcome, delay = "failed", settings.connect_backoff_max_s
            try:
                outcome = await self._connect(session, failures)
                if outcome == "up":
                    failures = 0
                    started = time.monotonic()
                    await self._until_stop(session.lost.wait(), None)
                    if self._stop.is_set():
                        await self._flush_and_disconnect(session)
                        return
                    self._connected.clear()
                    logger.warning(
                        "MQTT connection to {}:{} lost; reconnecting",
                        settings.host,
                        settings.port,
                    )
                    if time.monotonic() - started >= STABLE_SESSION_S:
                        backoff = settings.connect_backoff_initial_s
                    delay, backoff = backoff, min(backoff * 2, settings.connect_backoff_max_s)
                elif outcome == "refused":
                    delay = settings.refused_retry_s
                else:
                    failures += 1
                    delay, backoff = backoff, min(backoff * 2, settings.connect_backoff_max_s)
            except Exception:  # noqa: BLE001 - a bug here must not end the link for good
                logger.exception("MQTT link: unexpected error; reconnecting")
            self._connected.clear()
            await self._close(session)
            if outcome != "refused":
                delay *= 1.0 - 0.2 * random.random()  # noqa: S311 - jitter, not crypto
            await self._until_stop(asyncio.sleep(delay), None)

    async def _connect(self, session: _Session, failures: int) -> str:
        settings = self._settings
        client = session.client
        if settings.token is not None:
            client.set_auth_credentials(settings.token, None)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        try:
            done = await self._until_stop(
                client.connect(
                    settings.host,
                    settings.port,
                    ssl=self._ssl if self._ssl is not None else False,
                    keepalive=settings.keepalive,
                    version=MQTTv311,
                ),
                CONNECT_TIMEOUT_S,
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
            if not self._stop.is_set():
                logger.warning(
                    "MQTT broker {}:{} closed the connection before accepting it; retrying",
                    settings.host,
                    settings.port,
                )
            return "failed"
        if self._refused is not None:
            logger.info("ThingsBoard accepts the connection again")
            self._refused = None
        logger.info("Connected to ThingsBoard MQTT at {}:{}", settings.host, settings.port)
        return "up"

    def _note_refusal(self, code: int, text: str) -> None:
        settings = self._settings
        what = "the access token" if code in TOKEN_REFUSAL_CODES else "the connection"
        reason = f"ThingsBoard refused {what} (CONNACK {code}: {text})"
        if reason != self._refused:
            hint = " check the device's access token;" if code in TOKEN_REFUSAL_CODES else ""
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
        self._refused = reason

    async def _until_stop(
        self,
        awaitable: Awaitable[_T],
        timeout: float | None,
        interrupt: asyncio.Event | None = None,
    ) -> bool:
        """Await ``awaitable`` unless stop is requested (or ``interrupt`` is set) first.

        Returns True when it completed, False when it was cancelled by stop / interrupt;
        raises its exception, or TimeoutError. After ``interrupt`` it still gets
        :data:`INTERRUPT_GRACE_S`: a broker closes the socket right after a refusing
        CONNACK, and the refusal must not be mistaken for a lost connection.
        """
        task = asyncio.ensure_future(awaitable)
        events = [self._stop] if interrupt is None else [self._stop, interrupt]
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(
                {task, *waiters}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
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

    async def _flush_and_disconnect(self, session: _Session) -> None:
        margin = min(DISCONNECT_TIMEOUT_S, max(0.0, self._stop_deadline - time.monotonic()) / 4)
        while (
            len(self._outbox) > 0
            and session.live
            and time.monotonic() < self._stop_deadline - margin
        ):
            await asyncio.sleep(0.02)
        self._connected.clear()
        await self._close(session)

    async def _close(self, session: _Session) -> None:
        """Disconnect cleanly if the connection is still open; never raises."""
        if self._session is session:
            self._connected.clear()
        connection = getattr(session.client, "_connection", None)
        if connection is None or connection.is_closing():
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.client.disconnect(), DISCONNECT_TIMEOUT_S)

    # -- gmqtt callbacks (loop thread) ------------------------------------------------------------
    def _on_connect(self, client: object, flags: int, rc: int, properties: object) -> None:
        session = self._session
        if session is None or client is not session.client:
            return
        session.up = True
        try:
            session.client.subscribe(
                [
                    gmqtt.Subscription(ATTRIBUTES_TOPIC, qos=1),
                    gmqtt.Subscription(ATTRIBUTES_RESPONSE_FILTER, qos=1),
                ]
            )
        except Exception:  # noqa: BLE001 - keep the session; the sender still runs
            logger.exception("MQTT link: error while subscribing")
        # The attribute request follows the current_sw_* report (the sender sends it once
        # the report is delivered), or goes out at once when there is nothing to report.
        session.request_after = self._queue_current_software()
        if session.request_after is None:
            try:
                self._send_attribute_request()
            except Exception:  # noqa: BLE001 - keep the session; the sender still runs
                logger.exception("MQTT link: error while requesting the OTA attributes")
        # Connected once the report is queued: whatever is published after wait_connected()
        # returns is stamped after it.
        self._connected.set()
        self._wakeup.set()

    def _on_disconnect(self, client: object, packet: object, exc: object = None) -> None:
        session = self._session
        if session is None or client is not session.client:
            return
        session.lost.set()
        self._connected.clear()
        self._wakeup.set()

    async def _on_message(
        self, client: object, topic: str, payload: bytes, qos: int, properties: object
    ) -> int:
        if topic == ATTRIBUTES_TOPIC or topic.startswith(ATTRIBUTES_RESPONSE_PREFIX):
            try:
                self._on_attributes(topic, bytes(payload))
            except Exception:  # noqa: BLE001 - a callback bug must not break the link
                logger.exception("on_attributes failed for a message on {}", topic)
        else:
            logger.debug("MQTT message on unexpected topic {} ignored", topic)
        return 0  # PUBACK reason code: success

    def _on_puback(self, session: _Session, mid: int) -> None:
        future = session.acks.get(mid)
        if future is not None and not future.done():
            future.set_result(None)

    # -- session actions (loop thread) ------------------------------------------------------------
    def _live_session(self) -> _Session | None:
        session = self._session
        return session if session is not None and session.live else None

    def _queue_current_software(self) -> int | None:
        """Queue ``current_sw_*`` as telemetry (stamped like every message, in the outbox);
        returns its outbox sequence number, ``None`` if nothing was queued. Never raises.

        ``current_software()`` is asked under the enqueue lock: a report queued by another
        thread meanwhile (UPDATED naming a new version) then gets a later ``ts`` than this
        one, never an earlier one with the older truth winning in ThingsBoard.
        """
        try:
            with self._enqueue_lock:
                title, version = self._current_software()
                values = {
                    key: value
                    for key, value in (
                        ("current_sw_title", title),
                        ("current_sw_version", version),
                    )
                    if value is not None
                }
                if not values:
                    return None
                seq = self._enqueue_locked(values, ota_state=False)
                superseded, self._software_report_seq = self._software_report_seq, seq
            if superseded is not None:
                # The previous connection's report, if it is still queued: never delivered
                # (or at most in flight), and this one says the same, later. (remove()
                # raises only when the directory cannot be synced: the entry is gone.)
                with contextlib.suppress(OSError):
                    self._outbox.remove(superseded)
        except TelemetryError as exc:
            logger.error("current_sw_* not reported: {}", exc)
            return None
        except Exception:  # noqa: BLE001 - a reporting problem must not break the session
            logger.exception("current_software() failed; current_sw_* not reported")
            return None
        return seq

    def _send_attribute_request(self) -> None:
        session = self._live_session()
        if session is None:
            logger.debug("Offline: the OTA attributes will be requested on the next connect")
            return
        request_id = next(self._request_ids)
        session.client.publish(
            f"{ATTRIBUTES_REQUEST_PREFIX}{request_id}",
            json.dumps({"sharedKeys": OTA_SHARED_KEYS}),
            qos=1,
        )
        logger.debug("Requested the OTA attributes (request {})", request_id)

    # -- sender (loop thread) ---------------------------------------------------------------------
    async def _sender(self) -> None:
        unacked_seq, timeouts = None, 0
        while True:
            self._wakeup.clear()
            try:
                session = self._live_session()
                entry = self._outbox.peek() if session is not None else None
                if (
                    session is not None
                    and session.request_after is not None
                    and (entry is None or entry.seq > session.request_after)
                ):
                    # The connect's current_sw_* report is out (or was dropped by the bound).
                    session.request_after = None
                    self._send_attribute_request()
                if session is None or entry is None:
                    await self._wakeup.wait()
                    continue
                acked = await self._deliver(session, entry.topic, entry.payload)
                if acked:
                    unacked_seq, timeouts = None, 0
                    self._outbox.remove(entry.seq)
                elif session.live:
                    timeouts = timeouts + 1 if unacked_seq == entry.seq else 1
                    unacked_seq = entry.seq
                    logger.warning(
                        "No PUBACK for outbox message {} within {:.0f}s (attempt {}); resending",
                        entry.seq,
                        ACK_TIMEOUT_S,
                        timeouts,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the sender must survive (disk errors...)
                logger.exception("MQTT link sender error; retrying in 1s")
                await asyncio.sleep(1.0)

    async def _deliver(self, session: _Session, topic: str, payload: bytes) -> bool:
        """Publish with QoS 1; True once the broker's PUBACK arrived."""
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        session.tracker.last_mid = None
        session.client.publish(gmqtt.Message(topic, payload, qos=1))
        mid = session.tracker.last_mid
        if mid is None:
            return False
        session.acks[mid] = ack
        lost = asyncio.ensure_future(session.lost.wait())
        try:
            await asyncio.wait(
                {ack, lost}, timeout=ACK_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
            session.acks.pop(mid, None)
        return ack.done()
