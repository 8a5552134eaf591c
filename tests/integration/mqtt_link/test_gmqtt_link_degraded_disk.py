"""GmqttLink through a real Mosquitto when the disk cannot hold the outbox (issue 17,
"degraded but alive"): a file where the outbox directory should be, and a full disk
(``write_atomic`` of the outbox made to fail with ENOSPC). Reports kept in memory go out
like durable ones, in order, and persisting resumes when the disk does.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest
from gmqtt_link_support import TELEMETRY, LinkFactory, StepClock, telemetry_values
from harness import MosquittoBroker, wait_until
from loguru import logger

from teg_ota.adapters.atomic_file import write_atomic
from teg_ota.adapters.mqtt import outbox_files
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.telemetry_sink import OtaReport

SOFTWARE_REPORT = {"current_sw_title": "teg-controller", "current_sw_version": "v1.0.0"}


class FullDisk:
    """``write_atomic`` for outbox entries: ENOSPC while ``full``; records what it wrote."""

    def __init__(self) -> None:
        self.full = False
        self.written: list[str] = []

    def __call__(self, path: Path, data: bytes) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_atomic(path, data)
        self.written.append(path.name)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    fake = FullDisk()
    monkeypatch.setattr(outbox_files, "write_atomic", fake)
    return fake


@pytest.fixture
def info_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    yield lines
    logger.remove(sink)


def test_a_file_at_the_outbox_path_does_not_stop_the_link(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory, tmp_path: Path
) -> None:
    in_the_way = tmp_path / "data" / "outbox"
    in_the_way.parent.mkdir()
    in_the_way.write_text("a file where the outbox directory should be")
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    link = link_factory(mosquitto.port, outbox_dir=in_the_way)
    assert link.outbox.degraded is not None
    assert link.wait_connected(15)
    link.publish_telemetry({"temperature": 21.5})  # does not raise
    link.publish_ota_state(OtaReport(OtaState.DOWNLOADING))
    tb.wait_for(lambda ms: len(ms) >= 3)
    assert telemetry_values(tb) == [
        SOFTWARE_REPORT,
        {"temperature": 21.5},
        {"sw_state": "DOWNLOADING"},
    ]
    wait_until(lambda: len(link.outbox) == 0, 5, "the PUBACKs to empty the memory outbox")
    assert link.outbox.in_memory == 0
    assert in_the_way.read_text() == "a file where the outbox directory should be"


def test_reports_kept_in_memory_on_a_full_disk_go_out_in_order_then_persisting_resumes(
    mosquitto: MosquittoBroker,
    mqtt_recorder_factory,
    link_factory: LinkFactory,
    tmp_path: Path,
    disk: FullDisk,
    info_lines: list[str],
) -> None:
    outbox_dir = tmp_path / "outbox"
    link = link_factory(mosquitto.port, outbox_dir=outbox_dir, clock=StepClock(), start=False)
    link.publish_telemetry({"n": 0})  # offline, the disk has room: durable
    assert sorted(p.name for p in outbox_dir.glob("*.msg")) == disk.written
    disk.full = True
    for i in range(1, 4):
        link.publish_telemetry({"n": i})  # offline, the disk is full: kept in memory
    link.publish_ota_state(OtaReport(OtaState.FAILED, error="no space"))
    assert (len(link.outbox), link.outbox.in_memory) == (5, 4)
    assert link.outbox.degraded is not None and "No space left" in link.outbox.degraded
    assert len(list(outbox_dir.glob("*.msg"))) == 1

    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    link.start()
    assert link.wait_connected(15)
    tb.wait_for(lambda ms: len(ms) >= 6, timeout=15)
    # Queued offline: each keeps its ts (the OTA state goes flat), in order, then the
    # connect's report, which queued behind them in memory.
    assert telemetry_values(tb) == [
        *({"ts": (1_700_000_000 + i) * 1000, "values": {"n": i}} for i in range(4)),
        {"sw_state": "FAILED", "sw_error": "no space"},
        SOFTWARE_REPORT,
    ]
    wait_until(lambda: len(link.outbox) == 0, 5, "the outbox to drain")
    assert link.outbox.in_memory == 0
    assert list(outbox_dir.glob("*.msg")) == []

    disk.full = False
    written_before = len(disk.written)
    link.publish_telemetry({"n": "after"})  # the disk has room again: durable again
    assert link.outbox.degraded is None
    assert link.outbox.in_memory == 0
    assert len(disk.written) == written_before + 1
    assert any("persists again" in line for line in info_lines), info_lines
    tb.wait_for(lambda ms: len(ms) >= 7, timeout=15)
    assert telemetry_values(tb)[-1] == {"n": "after"}  # live: flat
    wait_until(lambda: len(link.outbox) == 0, 5, "the last PUBACK")
    assert list(outbox_dir.glob("*.msg")) == []
