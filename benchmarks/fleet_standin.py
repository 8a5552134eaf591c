"""The ThingsBoard stand-in for the fleet, in child processes: the gates and the server.

Why processes: the machine has two cores and the simulated gateways fill one; and a gate
holds two descriptors per session, so one process (open-file limit 20,000 here, not
raisable) holds at most ~9,000 sessions: the gates are sharded, ``ceil(N / 8,000)`` of them,
device ``i`` on shard ``i % shards``. Each child runs its asyncio loop on a thread and
answers commands from the parent over a pipe (``events``: the stamps taken since the last
call; ``assign``; ``rate_limit``). The stamps are ``time.monotonic()``, one clock for every
process of the machine, so the parent bins them with its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import resource
import threading
from collections import defaultdict
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, cast

from fleet_gate import FleetGate
from fleet_server import FleetServer, GitOrigin

SESSIONS_PER_GATE = 8000


def raise_nofile() -> int:
    """This process's open-file limit raised to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def token_of(index: int) -> str:
    return f"fleet-token-{index:05d}"


def _serve_commands(
    pipe: Connection, loop: asyncio.AbstractEventLoop, handlers: dict[str, Callable[..., Any]]
) -> None:
    while True:
        command, args = pipe.recv()
        if command == "stop":
            pipe.send(None)
            return

        async def call(name: str = command, values: tuple[Any, ...] = args) -> object:
            return handlers[name](*values)

        pipe.send(asyncio.run_coroutine_threadsafe(call(), loop).result(60))


def _child(kind: str, pipe: Connection, args: tuple[Any, ...]) -> None:
    raise_nofile()
    logging.getLogger("gmqtt").setLevel(logging.ERROR)  # a write to a dropped socket
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    handlers: dict[str, Callable[..., Any]]
    if kind == "gate":
        broker_port, tokens = args
        gate = FleetGate(broker_port, set(tokens))
        port = asyncio.run_coroutine_threadsafe(gate.start(), loop).result(30)
        handlers = {"events": gate.take_events}
        pipe.send(port)
    else:
        broker_port, tokens, version, tags = args
        server = FleetServer(broker_port, tokens, version)
        origin = GitOrigin(tags)
        port = asyncio.run_coroutine_threadsafe(origin.start(), loop).result(30)
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(60)

        def events() -> dict[str, list[float]]:
            return {**server.take_events(), **origin.take_events()}

        handlers = {"events": events, "assign": server.assign, "rate_limit": origin.rate_limit}
        pipe.send(port)
    _serve_commands(pipe, loop, handlers)


class _Child:
    def __init__(self, kind: str, args: tuple[Any, ...]) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self.process = context.Process(target=_child, args=(kind, theirs, args), daemon=True)
        self.process.start()
        if not self._pipe.poll(90):
            raise RuntimeError(f"the fleet {kind} did not start")
        self.port = cast(int, self._pipe.recv())

    def call(self, command: str, *args: object) -> object:
        self._pipe.send((command, args))
        return self._pipe.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, EOFError):
                self.call("stop")
            self.process.join(5)
            if self.process.is_alive():
                self.process.terminate()


class FleetStandin:
    """The server (attributes, assignments, Git origin) and the gates of ``size`` devices."""

    def __init__(self, broker_port: int, size: int, version: str, tags: dict[str, str]) -> None:
        tokens = [token_of(i) for i in range(size)]
        self.shards = max(1, math.ceil(size / SESSIONS_PER_GATE))
        self.server = _Child("server", (broker_port, tokens, version, tags))
        self.git_port = self.server.port
        self.gates = [
            _Child("gate", (broker_port, tokens[shard :: self.shards]))
            for shard in range(self.shards)
        ]

    def gate_port(self, index: int) -> int:
        return self.gates[index % self.shards].port

    def events(self) -> dict[str, list[float]]:
        """Every stamp taken since the last call, by kind, from every child."""
        merged: dict[str, list[float]] = defaultdict(list)
        for child in (self.server, *self.gates):
            events = cast(dict[str, list[float]], child.call("events"))
            for kind, stamps in events.items():
                merged[kind].extend(stamps)
        return {kind: sorted(stamps) for kind, stamps in merged.items()}

    def assign(
        self, version: str, pack_size: int = 0, pack_interval_s: float = 0.0, packs: int = 0
    ) -> None:
        """See :meth:`fleet_server.FleetServer.assign`."""
        self.server.call("assign", version, pack_size, pack_interval_s, packs)

    def rate_limit(self, seconds: float) -> None:
        self.server.call("rate_limit", seconds)

    def stop(self) -> None:
        for child in (*self.gates, self.server):
            child.stop()

    def kill(self) -> None:
        """At once, sessions and all: the end of a variant's process (fleet_variant.py)."""
        for child in (*self.gates, self.server):
            child.process.kill()
        for child in (*self.gates, self.server):
            child.process.join(5)
