"""Outbox drain rate: a backlog of queued telemetry delivered to a real Mosquitto, messages/s.

What a gateway does after a long offline spell: ``--messages`` (10,000) entries are waiting
in the durable outbox (``adapters/mqtt/outbox.py``), written as an earlier run wrote them
(stamped, so they keep their ``ts`` on the wire), and teg-ota's real link (``GmqttLink``:
session, sender, outbox) delivers them with QoS 1, one in flight, deleting each entry only
after its PUBACK. Measured from the moment the link is connected until the outbox is empty.

The floor beside it, in the same round on the same disk and broker: a minimal gmqtt client
that publishes the same payload with QoS 1 one message at a time, waits for each PUBACK,
then unlinks one file and fsyncs the directory (what at-least-once with strict order costs
at the least: one broker round trip and one durable delete per message). The ratio is
teg-ota's rate over the floor's (1.0: teg-ota adds nothing; higher is better). Within each
round the order of the two alternates, so neither always gets the warmer page cache.

Usage: ``.venv/bin/python benchmarks/outbox_drain.py [--rounds N] [--messages N] [--json]``.
Needs a Docker engine and ``teg-ota-test-mosquitto:latest`` (``scripts/ensure-infra.sh``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gmqtt
from bench_mosquitto import BenchSetupError, Mosquitto, docker_client
from bench_table import Figure, render, to_json
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.storage import PersistentStorage
from loguru import logger

from teg_ota.adapters.mqtt.link import GmqttLink
from teg_ota.adapters.mqtt.outbox import OUTBOX_DIR_NAME, DurableOutbox
from teg_ota.adapters.mqtt.outbox_format import encode_entry, entry_file_name
from teg_ota.adapters.mqtt.payloads import TELEMETRY_TOPIC, telemetry_payload
from teg_ota.adapters.mqtt.settings import MqttSettings

DEFAULT_MESSAGES = 10_000
DRAIN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Drain:
    """One drain: messages/s (wall clock) and this process's CPU time per message (all its
    threads: the link's, and the main one's polling, a few wake-ups a second). The CPU
    figure hardly moves when other work on the machine slows the disk or the broker down;
    the rate does."""

    rate: float
    cpu_us: float

    @classmethod
    def of(cls, messages: int, started: float, cpu_started: float) -> Drain:
        elapsed = time.monotonic() - started
        cpu = time.process_time() - cpu_started
        return cls(messages / elapsed, 1e6 * cpu / messages)


def _payloads(count: int) -> list[bytes]:
    """Typical controller telemetry, stamped a minute ago (an earlier run queued it)."""
    base_ms = int(time.time() * 1000) - 60_000
    return [
        telemetry_payload(base_ms + i, {"temperature": 21.5, "power_w": 3.2 + i % 7, "seq": i})
        for i in range(count)
    ]


def _fill_outbox(directory: Path, payloads: list[bytes]) -> None:
    """Entry files as the outbox writes them (not measured: written without fsync)."""
    directory.mkdir(parents=True)
    for seq, payload in enumerate(payloads, start=1):
        name = entry_file_name(seq, ota_state=False)
        (directory / name).write_bytes(encode_entry(TELEMETRY_TOPIC, payload))


def drain_with_teg_ota(broker: Mosquitto, work: Path, payloads: list[bytes]) -> Drain:
    """teg-ota's link draining a full outbox."""
    data = work / "teg-ota"
    _fill_outbox(data / OUTBOX_DIR_NAME, payloads)
    outbox = DurableOutbox.in_data_path(data, max_messages=max(len(payloads), 10_000))
    settings = MqttSettings(host=broker.host, port=broker.port, token="bench-device")  # noqa: S106 - a test broker
    link = GmqttLink(
        settings,
        outbox,
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
    )
    link.start()
    try:
        if not link.wait_connected(30):
            raise BenchSetupError("teg-ota's link did not connect to the broker")
        started, cpu, pending = time.monotonic(), time.process_time(), len(outbox)
        deadline = started + DRAIN_TIMEOUT_S
        while len(outbox) > 0:
            if time.monotonic() > deadline:
                raise BenchSetupError(f"outbox not drained within {DRAIN_TIMEOUT_S:.0f}s")
            time.sleep(0.01)
        result = Drain.of(pending, started, cpu)
    finally:
        link.stop(5.0)
    return result


class _Acks(PersistentStorage):  # type: ignore[misc]
    """The least gmqtt needs to tell a PUBACK: the future of the one message in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: asyncio.Future[None] | None = None

    def push_message(self, mid: int, raw_package: bytes) -> None:
        return

    def remove_message_by_mid(self, mid: int) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(None)


async def _floor(broker: Mosquitto, directory: Path, payloads: list[bytes]) -> Drain:
    acks = _Acks()
    client = gmqtt.Client(f"bench-floor-{os.getpid()}", clean_session=True, persistent_storage=acks)
    await client.connect(broker.host, broker.port, version=MQTTv311)
    loop = asyncio.get_running_loop()
    paths = sorted(directory.iterdir())
    try:
        started, cpu = time.monotonic(), time.process_time()
        for path, payload in zip(paths, payloads, strict=True):
            acks.waiting = loop.create_future()
            client.publish(TELEMETRY_TOPIC, payload, qos=1)
            await asyncio.wait_for(acks.waiting, 30)
            path.unlink()
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        result = Drain.of(len(payloads), started, cpu)
    finally:
        await client.disconnect()
    return result


def drain_floor(broker: Mosquitto, work: Path, payloads: list[bytes]) -> Drain:
    """The floor: publish, PUBACK, unlink + fsync, one at a time."""
    directory = work / "floor"
    _fill_outbox(directory, payloads)
    return asyncio.run(_floor(broker, directory, payloads))


def measure(rounds: int, verbose: bool, messages: int = DEFAULT_MESSAGES) -> list[Figure]:
    logger.remove()
    logger.add(sys.stderr, level="INFO" if verbose else "ERROR")
    payloads = _payloads(messages)
    teg_ota: list[Drain] = []
    floor: list[Drain] = []
    with Mosquitto(docker_client()) as broker:
        for index in range(rounds):
            work = Path(tempfile.mkdtemp(prefix="teg-bench-outbox-", dir=_work_parent()))
            try:
                if index % 2 == 0:
                    floor.append(drain_floor(broker, work, payloads))
                    teg_ota.append(drain_with_teg_ota(broker, work, payloads))
                else:
                    teg_ota.append(drain_with_teg_ota(broker, work, payloads))
                    floor.append(drain_floor(broker, work, payloads))
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if verbose:
                print(
                    f"[outbox] round {index + 1}: teg-ota {teg_ota[-1].rate:.0f} msg/s "
                    f"{teg_ota[-1].cpu_us:.0f} us CPU/msg, floor {floor[-1].rate:.0f} msg/s "
                    f"{floor[-1].cpu_us:.0f} us CPU/msg",
                    file=sys.stderr,
                )
    reference = "gmqtt, 1 in flight, QoS 1, unlink + fsync per message"
    return [
        Figure(
            name=f"outbox drain, {messages:,} queued messages",
            unit="msg/s",
            values=[d.rate for d in teg_ota],
            reference=reference,
            reference_values=[d.rate for d in floor],
            note="ratio: teg-ota's rate over the floor's, higher is better",
        ),
        Figure(
            name="outbox drain, CPU time per message",
            unit="us",
            values=[d.cpu_us for d in teg_ota],
            reference=reference,
            reference_values=[d.cpu_us for d in floor],
            note="the process's CPU time; steadier than the rate on a busy machine",
        ),
    ]


def _work_parent() -> str | None:
    """Where the outboxes live: ``TEG_BENCH_DISK_DIR`` (to measure another disk), else the
    system's temporary directory. Both teg-ota and the floor use the same one."""
    return os.environ.get("TEG_BENCH_DISK_DIR") or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES, help="queued (10000)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--verbose", action="store_true", help="per-round figures, INFO logs")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.messages < 1:
        parser.error("--rounds and --messages must be at least 1")
    try:
        figures = measure(args.rounds, args.verbose, args.messages)
    except BenchSetupError as exc:
        print(f"[outbox] cannot measure: {exc}", file=sys.stderr)
        return 2
    print(to_json({"outbox_drain": figures}) if args.json else render("Outbox drain", figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
