"""A ThingsBoard stand-in for end-to-end tests and the demo (no pytest imports here).

It plays ThingsBoard's side of the device API over a plain MQTT broker, the way
/work/shared/reference/thingsboard-ota.md describes the real server:

* it records every message the device sends on ``v1/devices/me/telemetry`` (flat
  ``{"k": v}``, ``{"ts": ms, "values": {...}}`` or a list of those), in arrival order;
* it answers ``v1/devices/me/attributes/request/{id}`` (``{"sharedKeys": "a,b,c"}``: ONE
  comma-separated string) on ``v1/devices/me/attributes/response/{id}`` with
  ``{"shared": {...}}`` holding the requested keys that are assigned, or ``{}``;
* :meth:`ThingsBoardStandIn.assign` pushes ``{"sw_title": .., "sw_version": ..}`` on
  ``v1/devices/me/attributes``; :meth:`ThingsBoardStandIn.unassign` pushes
  ``{"deleted": [...]}``;
* it never sets ``retain`` and publishes with QoS 1, and it records protocol violations of
  the device (retained messages, a list as ``sharedKeys``, non-JSON telemetry...) in
  :attr:`ThingsBoardStandIn.protocol_errors`.

Telemetry with the same ``ts`` and values received twice (an at-least-once re-send after a
lost PUBACK) is stored once by ThingsBoard (a time series is keyed by timestamp):
:meth:`sw_states` counts it once too; :attr:`duplicates` says how many were merged.

It is built on its own small gmqtt client rather than on harness.MqttRecorder because the
demo imports it without pytest/testcontainers (harness imports both), and because it keeps a
persistent MQTT session (``clean_session=False``, fixed client id): with a broker that has
persistence enabled, nothing the device sends while the stand-in reconnects after a broker
restart is lost, which is what the real server guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from gmqtt import Client as GmqttClient
from gmqtt import Subscription
from gmqtt.mqtt.constants import MQTTv311

TELEMETRY_TOPIC = "v1/devices/me/telemetry"
ATTRIBUTES_TOPIC = "v1/devices/me/attributes"
REQUEST_PREFIX = "v1/devices/me/attributes/request/"
RESPONSE_PREFIX = "v1/devices/me/attributes/response/"
OTA_KEYS = (
    "sw_title",
    "sw_version",
    "sw_size",
    "sw_checksum",
    "sw_checksum_algorithm",
    "sw_url",
    "sw_tag",
)
TERMINAL_STATES = ("UPDATED", "FAILED")
UPDATE_STATES = ("DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED")


@dataclass(frozen=True)
class Telemetry:
    """One telemetry entry as ThingsBoard would store it."""

    values: Mapping[str, Any]
    ts: int | None
    """The device's timestamp (ms); ``None`` for the flat form (server time)."""
    received: float
    """``time.monotonic()`` at arrival."""
    index: int
    """Position among all entries received (duplicates included)."""

    @property
    def sw_state(self) -> str | None:
        state = self.values.get("sw_state")
        return state if isinstance(state, str) else None


@dataclass(frozen=True)
class AttributeRequest:
    request_id: str
    payload: Any
    answer: Mapping[str, Any]
    received: float


@dataclass
class _Assigned:
    values: dict[str, Any] = field(default_factory=dict)


class ThingsBoardStandIn:
    """See the module docstring. Thread-safe; start() before use, close() at the end.

    ``on_telemetry(entry)`` (optional) is called on the MQTT thread for every new entry
    (after de-duplication); it must not block.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str | None = None,
        persistent: bool = True,
        on_telemetry: Callable[[Telemetry], None] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.client_id = client_id or f"tb-standin-{uuid.uuid4().hex[:8]}"
        self._persistent = persistent
        self._on_telemetry = on_telemetry
        self._cond = threading.Condition()
        self._telemetry: list[Telemetry] = []
        self._seen: set[tuple[int, str]] = set()
        self._received_count = 0
        self.duplicates = 0
        self._requests: list[AttributeRequest] = []
        self.protocol_errors: list[str] = []
        self.listener_errors: list[BaseException] = []
        self._assigned = _Assigned()
        self._connected = False
        self._connections = 0
        self._pending_subacks: set[int] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"mqtt-{self.client_id}", daemon=True
        )
        self._client: GmqttClient | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> Self:
        self._thread.start()
        self._run(self._connect(timeout), timeout + 5)
        self.wait_connected(timeout)
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
        with contextlib.suppress(RuntimeError):
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
        """How many times the stand-in's own session was (re)established."""
        with self._cond:
            return self._connections

    def wait_connected(self, timeout: float = 15.0) -> None:
        """Connected and subscribed (SUBACK received)."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._connected and not self._pending_subacks, timeout
            ):
                raise TimeoutError(f"ThingsBoard stand-in not connected within {timeout}s")

    # -- the server side: shared attributes -------------------------------------------------------
    @property
    def assigned(self) -> dict[str, Any]:
        with self._cond:
            return dict(self._assigned.values)

    def assign(self, title: str, version: str, **extra: Any) -> None:
        """Assign a software package: remember it and push the changed shared attributes."""
        values = {"sw_title": title, "sw_version": version}
        values.update({key: value for key, value in extra.items() if key in OTA_KEYS})
        with self._cond:
            self._assigned.values = dict(values)
        self.push_attributes(values)

    def unassign(self) -> None:
        """Unassign the package: every sw_* key is deleted."""
        with self._cond:
            self._assigned.values = {}
        self.push_attributes({"deleted": list(OTA_KEYS)})

    def push_attributes(self, payload: bytes | str | Mapping[str, Any] | list[Any]) -> None:
        """Push anything on ``v1/devices/me/attributes`` (for hostile-input tests too)."""
        if isinstance(payload, Mapping | list):
            payload = json.dumps(payload)
        self._publish(ATTRIBUTES_TOPIC, payload)

    # -- what the device sent -----------------------------------------------------------------
    @property
    def telemetry(self) -> list[Telemetry]:
        with self._cond:
            return list(self._telemetry)

    def mark(self) -> int:
        """A position in the telemetry; pass it as ``since`` to look only at what follows."""
        with self._cond:
            return len(self._telemetry)

    def sw_states(self, since: int = 0) -> list[str]:
        with self._cond:
            return [t.sw_state for t in self._telemetry[since:] if t.sw_state is not None]

    def state_entries(self, since: int = 0) -> list[Telemetry]:
        with self._cond:
            return [t for t in self._telemetry[since:] if t.sw_state is not None]

    def values_of(self, key: str, since: int = 0) -> list[Any]:
        """Every value reported for ``key`` (e.g. ``current_sw_version``), in order."""
        with self._cond:
            return [t.values[key] for t in self._telemetry[since:] if key in t.values]

    @property
    def attribute_requests(self) -> int:
        with self._cond:
            return len(self._requests)

    @property
    def requests(self) -> list[AttributeRequest]:
        with self._cond:
            return list(self._requests)

    def wait_for_telemetry(
        self, predicate: Callable[[Telemetry], bool], timeout: float = 30.0, since: int = 0
    ) -> Telemetry:
        """The first entry at or after ``since`` for which ``predicate`` holds."""

        def find() -> Telemetry | None:
            return next((t for t in self._telemetry[since:] if predicate(t)), None)

        with self._cond:
            if not self._cond.wait_for(lambda: find() is not None, timeout):
                raise TimeoutError(
                    f"no matching telemetry within {timeout}s; received since {since}: "
                    f"{[dict(t.values) for t in self._telemetry[since:]]}"
                )
            found = find()
            assert found is not None
            return found

    def wait_for_state(self, state: str, timeout: float = 30.0, since: int = 0) -> Telemetry:
        return self.wait_for_telemetry(lambda t: t.sw_state == state, timeout, since)

    def wait_for_value(
        self, key: str, value: Any, timeout: float = 30.0, since: int = 0
    ) -> Telemetry:
        return self.wait_for_telemetry(lambda t: t.values.get(key) == value, timeout, since)

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> None:
        """Until at least ``count`` attribute requests were received (and answered)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(
                    f"{len(self._requests)} attribute request(s) within {timeout}s, "
                    f"expected {count}"
                )

    def timeline(self) -> str:
        """Human-readable list of everything received (for failure messages)."""
        with self._cond:
            start = self._telemetry[0].received if self._telemetry else time.monotonic()
            lines = [
                f"[{t.received - start:+7.2f}s] #{t.index} ts={t.ts} {json.dumps(dict(t.values))}"
                for t in self._telemetry
            ]
            lines += [
                f"[{r.received - start:+7.2f}s] attribute request {r.request_id}: "
                f"{r.payload!r} -> {json.dumps(dict(r.answer))}"
                for r in self._requests
            ]
        return "\n".join(lines) or "(nothing received)"

    # -- MQTT internals (loop thread) ---------------------------------------------------------
    def _run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _publish(self, topic: str, payload: bytes | str) -> None:
        if threading.current_thread() is self._thread:
            self._client_or_fail().publish(topic, payload, qos=1, retain=False)
            return
        self._run(self._publish_async(topic, payload), 15)

    def _client_or_fail(self) -> GmqttClient:
        if self._client is None:
            raise RuntimeError("ThingsBoard stand-in not started")
        return self._client

    async def _publish_async(self, topic: str, payload: bytes | str) -> None:
        client = self._client_or_fail()
        deadline = time.monotonic() + 10
        while not client.is_connected:  # e.g. right after a broker restart
            if time.monotonic() > deadline:
                raise TimeoutError("ThingsBoard stand-in is not connected; cannot publish")
            await asyncio.sleep(0.05)
        client.publish(topic, payload, qos=1, retain=False)
        await client._persistent_storage.wait_empty()  # gmqtt: empties on PUBACK

    async def _connect(self, timeout: float) -> None:
        client = GmqttClient(self.client_id, clean_session=not self._persistent)
        client.set_config({"reconnect_retries": -1, "reconnect_delay": 0.5})
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        deadline = time.monotonic() + timeout
        while True:  # gmqtt's first connect() does not retry
            try:
                await client.connect(self.host, self.port, keepalive=30, version=MQTTv311)
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

    def _on_connect(self, client: GmqttClient, flags: int, rc: int, properties: Any) -> None:
        mid = client.subscribe(
            [
                Subscription(TELEMETRY_TOPIC, qos=1),
                Subscription(REQUEST_PREFIX + "+", qos=1),
            ]
        )
        with self._cond:
            self._connected = True
            self._connections += 1
            self._pending_subacks = {mid}
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
        try:
            if properties.get("retain"):
                self._violation(f"retained message from the device on {topic}")
            if topic == TELEMETRY_TOPIC:
                self._on_telemetry_message(bytes(payload))
            elif topic.startswith(REQUEST_PREFIX):
                self._on_request(client, topic[len(REQUEST_PREFIX) :], bytes(payload))
        except Exception as exc:  # a stand-in bug must show up in the test, not hang it
            self.listener_errors.append(exc)
        return 0  # PUBACK: success

    def _violation(self, text: str) -> None:
        with self._cond:
            self.protocol_errors.append(text)

    def _on_telemetry_message(self, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            self._violation(f"telemetry is not JSON: {payload[:80]!r}")
            return
        items = data if isinstance(data, list) else [data]
        now = time.monotonic()
        new: list[Telemetry] = []
        with self._cond:
            for item in items:
                if not isinstance(item, dict):
                    self._violation(f"telemetry item is not an object: {item!r}")
                    continue
                if "ts" in item and "values" in item:
                    ts, values = item["ts"], item["values"]
                    if not isinstance(ts, int) or not isinstance(values, dict):
                        self._violation(f"bad timestamped telemetry: {item!r}")
                        continue
                else:
                    ts, values = None, item
                index = self._received_count
                self._received_count += 1
                if ts is not None:
                    key = (ts, json.dumps(values, sort_keys=True))
                    if key in self._seen:
                        self.duplicates += 1
                        continue
                    self._seen.add(key)
                entry = Telemetry(values=dict(values), ts=ts, received=now, index=index)
                self._telemetry.append(entry)
                new.append(entry)
            self._cond.notify_all()
        if self._on_telemetry is not None:
            for entry in new:
                self._on_telemetry(entry)

    def _on_request(self, client: GmqttClient, request_id: str, payload: bytes) -> None:
        answer: dict[str, Any] = {}
        try:
            request = json.loads(payload)
        except ValueError:
            request = None
            self._violation(f"attribute request {request_id} is not JSON: {payload[:80]!r}")
        if isinstance(request, dict):
            keys = request.get("sharedKeys")
            if keys is not None and not isinstance(keys, str):
                self._violation(f"sharedKeys must be one comma-separated string, got {keys!r}")
            elif isinstance(keys, str):
                wanted = [key.strip() for key in keys.split(",") if key.strip()]
                with self._cond:
                    shared = {k: v for k, v in self._assigned.values.items() if k in wanted}
                if shared:
                    answer = {"shared": shared}
        client.publish(RESPONSE_PREFIX + request_id, json.dumps(answer), qos=1, retain=False)
        with self._cond:
            self._requests.append(AttributeRequest(request_id, request, answer, time.monotonic()))
            self._cond.notify_all()
