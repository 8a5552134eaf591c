"""The ThingsBoard side of the fleet: shared attributes, OTA assignment pacing, a Git origin.

One MQTT client of the real Mosquitto, subscribed to every device's attribute requests
(``d/+/attributes/request/+``, the namespaces fleet_gate.py gives each session), answers
each with that device's shared attributes (tb_device_api.AttributeQuery, as the stand-in
does), and assigns a package as ThingsBoard's OTA queue does (thingsboard-ota.md, "What the
server does around an assignment"): packs of ``pack_size`` devices every
``pack_interval_s`` (100 a minute by default), each device's shared attributes still the
old ones until its pack is processed, then the values pushed and the partial deletion
pushed. ``pack_size=0`` assigns the whole fleet at once (a profile-wide URL package, or a
server that does not pace).

The Git origin is a small HTTP server every simulated gateway's source fetches from
(``GET /<token>/refs``: the tags as JSON); :meth:`GitOrigin.rate_limit` makes it answer 429
for a while, as a forge behind a rate limit does. Every fetch is stamped in ``events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv311
from tb_device_api import SessionClosed, parse_attribute_request

REQUESTS = "d/+/attributes/request/+"
SW_TITLE = "teg-controller"
PARTIAL_DELETE = ["sw_url", "sw_size", "sw_checksum", "sw_checksum_algorithm"]


class _QuietClient(gmqtt.Client):  # type: ignore[misc]
    async def reconnect(self, delay: bool = False) -> None:
        """The server's own loop reconnects (gmqtt's would race it)."""


class FleetServer:
    """See the module docstring. Runs on the caller's loop: ``await start()``."""

    def __init__(self, broker_port: int, tokens: list[str], version: str) -> None:
        self.broker_port = broker_port
        self.tokens = tokens
        self.shared: dict[str, dict[str, Any]] = {
            t: {"sw_title": SW_TITLE, "sw_version": version} for t in tokens
        }
        self.events: dict[str, list[float]] = defaultdict(list)
        self._client: _QuietClient | None = None
        self._up = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._assigning: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._runner = asyncio.create_task(self._stay_connected())
        await asyncio.wait_for(self._up.wait(), 30)

    async def _stay_connected(self) -> None:
        """Connect, subscribe, and again whenever the broker went away (a restart)."""
        while True:
            lost = asyncio.Event()
            client = _QuietClient(f"fleet-server-{time.monotonic_ns()}", clean_session=True)
            client.on_message = self._on_message

            def on_disconnect(*_: object, lost: asyncio.Event = lost) -> None:
                lost.set()

            client.on_disconnect = on_disconnect
            try:
                await client.connect("127.0.0.1", self.broker_port, version=MQTTv311, keepalive=60)
            except (TimeoutError, OSError, gmqtt.MQTTConnectError):
                await asyncio.sleep(0.1)
                continue
            client.subscribe(REQUESTS, qos=1)
            self._client = client
            self._up.set()
            await lost.wait()
            self._up.clear()
            self._client = None
            self.events["server_lost"].append(time.monotonic())
            with contextlib.suppress(Exception):
                await client.disconnect()

    def take_events(self) -> dict[str, list[float]]:
        events, self.events = dict(self.events), defaultdict(list)
        return events

    def _publish(self, topic: str, body: object) -> None:
        client = self._client
        if client is not None:
            client.publish(topic, json.dumps(body).encode(), qos=1)

    async def _on_message(
        self, client: object, topic: str, payload: bytes, qos: int, properties: object
    ) -> int:
        parts = topic.split("/")  # d/<token>/attributes/request/<id>
        token = parts[1]
        shared = self.shared.get(token)
        if shared is None:
            return 0
        try:
            query = parse_attribute_request(parts[-1], payload)
        except SessionClosed:
            self.events["bad_request"].append(time.monotonic())
            return 0
        self.events["answered"].append(time.monotonic())
        self._publish(f"d/{token}/attributes/response/{parts[-1]}", query.answer({}, shared))
        return 0

    def assign(self, version: str, pack_size: int, pack_interval_s: float, packs: int) -> None:
        """Assign ``version`` to the fleet: packs of ``pack_size`` every ``pack_interval_s``
        (0: everyone at once), only the first ``packs`` packs (0: all)."""
        if self._assigning is not None:
            self._assigning.cancel()
        self._assigning = asyncio.create_task(
            self._assign(version, pack_size, pack_interval_s, packs)
        )

    async def _assign(self, version: str, pack_size: int, interval_s: float, packs: int) -> None:
        size = pack_size or len(self.tokens)
        last = len(self.tokens) if packs == 0 else min(len(self.tokens), packs * size)
        for first in range(0, last, size):
            if first:
                await asyncio.sleep(interval_s)
            await self._up.wait()
            for token in self.tokens[first : first + size]:
                values = {"sw_title": SW_TITLE, "sw_version": version, "sw_tag": version}
                self.shared[token].update(values)
                self._publish(f"d/{token}/attributes", values)
                self._publish(f"d/{token}/attributes", {"deleted": PARTIAL_DELETE})
                self.events["assigned"].append(time.monotonic())


class GitOrigin:
    """The shared Git remote, over HTTP: ``GET /<token>/refs`` -> ``{"tags": {...}}``."""

    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags
        self.port = 0
        self.events: dict[str, list[float]] = defaultdict(list)
        self._limited_until = 0.0

    async def start(self) -> int:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        return self.port

    def rate_limit(self, seconds: float) -> None:
        """Answer 429 Too Many Requests for the next ``seconds``."""
        self._limited_until = time.monotonic() + seconds

    def take_events(self) -> dict[str, list[float]]:
        events, self.events = dict(self.events), defaultdict(list)
        return events

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            now = time.monotonic()
            self.events["fetch"].append(now)
            if not head.startswith(b"GET /"):
                status, body = "400 Bad Request", b"{}"
            elif now < self._limited_until:
                self.events["fetch_429"].append(now)
                status, body = "429 Too Many Requests", b'{"error": "rate limited"}'
            else:
                status, body = "200 OK", json.dumps({"tags": self.tags}).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()
