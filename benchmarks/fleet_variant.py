"""One variant of the fleet simulation (with or without jitter) in a child process of its own.

Why a process per variant: its N gateways, their stand-in and every thread and socket they
hold end with it, at once. Stopping 10,000 links one by one (each flushes its outbox, sends
DISCONNECT and waits for its loop) took minutes between the two variants, and the flush is
no part of any figure; a process that exits frees them all in a second, and the next
variant starts on a clean process (its RSS, its open files). The memory per gateway is then
the child's own RSS growth. This is the simulator's plumbing only: the gateways inside are
the real links, schedules and handling (fleet_gateways.py).

The cyclic garbage collector is off in the child once the fleet is built (``gc.freeze()``,
then ``gc.disable()``): at 10,000 gateways its full passes stopped the process, every link
with it, for 35 s of a 55 s broker restart (measured), and one explicit pass after a restart
took over two minutes. Reference counting still frees most memory; what the collector would
have found stays, so the RSS figures are an upper bound (``rss_mb_per_gateway_idle``: the
fleet connected, right after the last collection). Each scenario's
``simulator_loop_lag_max_s`` is the worst lateness of a 0.1 s timer on the links' loop:
the simulator's capacity, shown beside what it measured.

The parent (fleet.py) owns the broker: the child asks it for the restart over the pipe
(``("restart",)`` -> ``(down_at, up_at)``) and sends each scenario's :class:`Run` as soon as
it is measured (``("run", name, run)``), so a variant cut short keeps what it measured.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import multiprocessing
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from fleet_scenarios import Options, Run, Variant, rss_mb
from fleet_standin import raise_nofile
from loguru import logger


def _quiet_loop_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """gmqtt's ``connection_lost`` after its own close raises AttributeError in a loop
    callback (thousands at a broker restart): not the link's doing, and it floods stderr."""
    if isinstance(context.get("exception"), AttributeError):
        return
    loop.default_exception_handler(context)


class LoopLag:
    """How late the links' loop ran a 0.1 s timer, the worst since the last ``take``: the
    simulator's own capacity (one core for every link), printed beside the figures."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.1)
            self.worst = max(self.worst, time.monotonic() - before - 0.1)

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return round(worst, 2)


def _child(
    pipe: Connection,
    broker_port: int,
    options: Options,
    jitter_on: bool,
    scenarios: Sequence[str],
    verbose: bool,
) -> None:
    raise_nofile()
    threading.stack_size(512 * 1024)  # a worker thread per gateway once an update runs
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "ERROR")
    logging.getLogger("gmqtt").setLevel(logging.DEBUG if verbose else logging.ERROR)
    variant: Variant | None = None
    try:
        variant = Variant(broker_port, options, jitter_on)
        variant.fleet.loop.set_exception_handler(_quiet_loop_errors)
        # The cyclic collector off (see the module docstring): its full passes over 10,000
        # gateways' objects stopped every link for seconds at a time.
        gc.collect()
        gc.freeze()
        gc.disable()
        variant.rss_idle = rss_mb()
        lag = LoopLag()
        asyncio.run_coroutine_threadsafe(lag.run(), variant.fleet.loop)

        def restart() -> tuple[float, float]:
            pipe.send(("restart",))
            down, up = pipe.recv()
            return float(down), float(up)

        for name in scenarios:
            pipe.send(("start", name))
            if name == "broker_restart":
                run = variant.broker_restart(restart)
            else:
                run = getattr(variant, name)()
            run.figures["simulator_loop_lag_max_s"] = lag.take()
            pipe.send(("run", name, run))
    except Exception:  # noqa: BLE001 - reported to the parent, which keeps what was measured
        pipe.send(("error", traceback.format_exc()))
    finally:
        if variant is not None:
            variant.standin.kill()
        pipe.send(("done",))
        pipe.close()
        sys.stderr.flush()
        os._exit(0)  # no link stop, no thread join: the process's end frees them all


def run_variant(
    broker_port: int,
    options: Options,
    jitter_on: bool,
    scenarios: Sequence[str],
    restart: Callable[[], tuple[float, float]],
    say: Callable[[str], None],
    verbose: bool = False,
) -> dict[str, Run]:
    """Every scenario of one variant, in a child process; the runs it measured."""
    context = multiprocessing.get_context("spawn")
    pipe, theirs = context.Pipe()
    process = context.Process(
        target=_child,
        args=(theirs, broker_port, options, jitter_on, scenarios, verbose),
        name=f"fleet-{'jitter' if jitter_on else 'no-jitter'}",
    )
    process.start()
    theirs.close()
    runs: dict[str, Run] = {}
    try:
        while True:
            try:
                message = pipe.recv()
            except EOFError:
                say("  the variant's process ended without a word")
                break
            if message[0] == "restart":
                pipe.send(restart())
            elif message[0] == "start":
                say(f"  {message[1]}")
            elif message[0] == "run":
                runs[message[1]] = message[2]
                say(f"  {message[1]}: {json.dumps(message[2].figures)}")
            elif message[0] == "error":
                say(f"  the variant failed:\n{message[1]}")
            elif message[0] == "done":
                break
        process.join(60)
    finally:
        if process.is_alive():
            process.kill()
            process.join(10)
    return runs
