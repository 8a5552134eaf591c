"""GmqttLink telemetry timestamps against a real Mosquitto: they never go back, across clock
steps, restarts and reconnects (a Raspberry Pi without RTC boots with its clock behind).
Fixtures in tests/integration/conftest.py; helpers in gmqtt_link_support.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gmqtt_link_support import (
    TELEMETRY,
    GatedProxy,
    LinkFactory,
    SettableClock,
    is_software_report,
    link_maker,
    telemetry_values,
    with_ts,
)
from harness import MosquittoBroker, wait_until

from teg_ota.adapters.mqtt import DurableOutbox
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.telemetry_sink import OtaReport


@pytest.fixture
def link_factory(tmp_path: Path) -> Iterator[LinkFactory]:
    """Links on the test's broker (gmqtt_link_support.link_maker); stopped at teardown."""
    with link_maker(tmp_path) as make:
        yield make


def test_timestamps_never_go_back_across_clock_steps_and_restarts(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory, tmp_path: Path
) -> None:
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    outbox_dir = tmp_path / "data" / "outbox"
    mark = outbox_dir / "link" / "telemetry_last_ts"
    clock = SettableClock(1_700_000_100.0)
    first = link_factory(mosquitto.port, outbox_dir=outbox_dir, clock=clock)
    assert first.wait_connected(15)
    first.publish_ota_state(OtaReport(OtaState.DOWNLOADING))
    clock.now = 1_700_000_050.0  # the clock steps back (NTP, or a wrong manual setting)
    first.publish_ota_state(OtaReport(OtaState.DOWNLOADED))
    first.stop(timeout=5)
    assert mark.read_text() == "1700000100002\n"

    # A power cut on a Pi without RTC: the clock restarts far behind. Same data directory.
    outbox = DurableOutbox(outbox_dir)  # reopening the outbox leaves the mark alone
    assert mark.read_text() == "1700000100002\n"
    assert not (outbox_dir / "corrupt").exists()
    assert len(outbox) == 0
    clock = SettableClock(1_600_000_000.0)
    second = link_factory(mosquitto.port, outbox_dir=outbox_dir, clock=clock)
    assert second.wait_connected(15)
    second.publish_ota_state(OtaReport(OtaState.VERIFIED))
    second.publish_telemetry({"controller_state": "RUNNING"})
    clock.now = 1_700_000_200.0  # NTP synced: real time again
    second.publish_ota_state(OtaReport(OtaState.UPDATING))

    tb.wait_for(lambda ms: len([m for m in ms if "ts" in m.json()]) >= 7, timeout=15)
    stamps = [m["ts"] for m in with_ts(tb)]
    assert stamps == [
        1_700_000_100_000,  # first connect: current_sw_*
        1_700_000_100_001,
        1_700_000_100_002,
        1_700_000_100_003,  # second connect, the clock far behind: current_sw_*
        1_700_000_100_004,
        1_700_000_100_005,
        1_700_000_200_000,
    ]
    assert [m["values"].get("sw_state") for m in with_ts(tb)] == [
        None,
        "DOWNLOADING",
        "DOWNLOADED",
        None,
        "VERIFIED",
        None,
        "UPDATING",
    ]
    assert mark.read_text() == "1700000200000\n"
    assert sorted(p.name for p in mark.parent.iterdir()) == ["telemetry_last_ts"]  # no temp


def test_on_connect_report_is_stamped_after_every_earlier_message(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory, tmp_path: Path
) -> None:
    """Regression: the current_sw_* report of every (re)connect went out without a ts, so
    ThingsBoard stamped it with server time; on a Pi whose clock was behind after a power
    cut, a later FAILED naming the version that really runs (device ts, older) then never
    became the latest current_sw_version. The report is stamped like any other message."""
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    outbox_dir = tmp_path / "data" / "outbox"
    mark = outbox_dir / "link" / "telemetry_last_ts"
    first = link_factory(
        mosquitto.port,
        outbox_dir=outbox_dir,
        clock=SettableClock(1_700_000_100.0),
        software=("teg-controller", "v1.1"),
    )
    assert first.wait_connected(15)
    first.publish_ota_state(
        OtaReport(OtaState.UPDATED, current_title="teg-controller", current_version="v1.1")
    )
    first.stop(timeout=5)
    last_before_power_cut = int(mark.read_text())

    # Power cut; the clock restarts far behind. The device reconnects through a proxy that
    # can drop the connection without touching the broker or the recorder.
    proxy = GatedProxy(mosquitto.port)
    running = ["v1.1"]
    second = link_factory(
        proxy.port,
        outbox_dir=outbox_dir,
        clock=SettableClock(1_600_000_000.0),
        software=lambda: ("teg-controller", running[0]),
    )
    try:
        assert second.wait_connected(15)
        # An update fails and rolls back: the FAILED report names what runs again.
        second.publish_ota_state(
            OtaReport(
                OtaState.FAILED,
                error="v1.2 exited",
                current_title="teg-controller",
                current_version="v1.0",
            )
        )
        running[0] = "v1.0"
        wait_until(lambda: len(second.outbox) == 0, 5, "the FAILED report to go out")
        proxy.close()  # the connection drops; the link reconnects and reports again
        wait_until(lambda: not second.connected, 10, "the link to notice the drop")
        proxy.open()
        assert second.wait_connected(15)
        tb.wait_for(lambda ms: len(ms) >= 5, timeout=15)
    finally:
        proxy.close()

    messages = telemetry_values(tb)
    assert all(set(m) == {"ts", "values"} for m in messages), messages  # no server-time ones
    stamps = [m["ts"] for m in messages]
    assert stamps == sorted(set(stamps))  # strictly increasing, in the order they arrived
    reports = [i for i, m in enumerate(messages) if is_software_report(m)]
    assert [messages[i]["values"]["current_sw_version"] for i in reports] == [
        "v1.1",
        "v1.1",
        "v1.0",
    ]
    for i in reports:  # each report is stamped after everything stamped before it
        assert all(messages[i]["ts"] > m["ts"] for m in messages[:i])
    after_power_cut = messages[reports[1]]
    assert after_power_cut["ts"] > last_before_power_cut  # not the clock's 1_600_000_000_000
    # What ThingsBoard keeps as current_sw_version: the value with the newest ts.
    latest = max(
        (m for m in messages if "current_sw_version" in m["values"]), key=lambda m: m["ts"]
    )
    assert latest["values"]["current_sw_version"] == "v1.0"
    failed = next(m for m in messages if m["values"].get("sw_state") == "FAILED")
    assert after_power_cut["ts"] < failed["ts"] < messages[reports[2]]["ts"]
    assert int(mark.read_text()) == messages[-1]["ts"]
