"""GmqttLink telemetry timestamps against a real Mosquitto: which messages carry one (those
queued while offline; live ones go out flat for ThingsBoard to stamp), and that those never
go back, across clock steps, restarts and reconnects (a Raspberry Pi without RTC boots with
its clock behind), nor before the latest OTA assignment arrived.
Fixtures in tests/integration/conftest.py; helpers in gmqtt_link_support.py.
"""

from __future__ import annotations

from pathlib import Path

from gmqtt_link_support import (
    ATTRIBUTES,
    SOFTWARE_KEYS,
    TELEMETRY,
    Attributes,
    GatedProxy,
    LinkFactory,
    SettableClock,
    telemetry_values,
    with_ts,
)
from harness import MosquittoBroker, wait_until

from teg_ota.adapters.mqtt import DurableOutbox
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.telemetry_sink import OtaReport


def test_offline_timestamps_never_go_back_across_clock_steps_and_restarts(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory, tmp_path: Path
) -> None:
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    outbox_dir = tmp_path / "data" / "outbox"
    mark = outbox_dir / "link" / "telemetry_last_ts"
    clock = SettableClock(1_700_000_100.0)
    # Published before the first connect: queued while offline, so stamped.
    first = link_factory(mosquitto.port, outbox_dir=outbox_dir, clock=clock, start=False)
    first.publish_telemetry({"step": "DOWNLOADING"})
    clock.now = 1_700_000_050.0  # the clock steps back (NTP, or a wrong manual setting)
    first.publish_telemetry({"step": "DOWNLOADED"})
    first.start()
    assert first.wait_connected(15)
    wait_until(lambda: len(first.outbox) == 0, 5, "the outbox to drain")
    first.stop(timeout=5)
    assert mark.read_text() == "1700000100002\n"  # the connect's report was stamped too

    # A power cut on a Pi without RTC: the clock restarts an hour behind. Same data directory.
    outbox = DurableOutbox(outbox_dir)  # reopening the outbox leaves the mark alone
    assert mark.read_text() == "1700000100002\n"
    assert not (outbox_dir / "corrupt").exists()
    assert len(outbox) == 0
    clock = SettableClock(1_700_000_100.0 - 3600)
    second = link_factory(mosquitto.port, outbox_dir=outbox_dir, clock=clock, start=False)
    second.publish_telemetry({"step": "VERIFIED"})
    second.publish_telemetry({"controller_state": "RUNNING"})
    clock.now = 1_700_000_200.0  # NTP synced: real time again
    second.publish_telemetry({"step": "UPDATING"})
    second.start()
    assert second.wait_connected(15)

    tb.wait_for(lambda ms: len(ms) >= 7, timeout=15)
    messages = telemetry_values(tb)
    assert [m["ts"] for m in with_ts(tb)] == [
        1_700_000_100_000,
        1_700_000_100_001,
        1_700_000_100_003,  # the clock an hour behind: after the last stamp (the report's)
        1_700_000_100_004,
        1_700_000_200_000,
    ]
    # (Telemetry other than OTA states: those always go out flat, see the test below.)
    assert [m.get("values", m).get("step") for m in messages] == [
        "DOWNLOADING",
        "DOWNLOADED",
        None,  # the first connect's report: live, flat
        "VERIFIED",
        None,
        "UPDATING",
        None,  # the second connect's
    ]
    reports = [i for i, m in enumerate(messages) if set(m) == SOFTWARE_KEYS]
    assert reports == [2, 6]
    wait_until(lambda: len(second.outbox) == 0, 5, "the outbox to drain")
    assert mark.read_text() == "1700000200001\n"
    assert sorted(p.name for p in mark.parent.iterdir()) == ["telemetry_last_ts"]  # no temp


def test_a_report_queued_offline_is_never_stamped_before_the_latest_assignment(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory
) -> None:
    """The assignment arrives; the connection drops, the clock steps back half an hour (a
    power cut, then fake-hwclock), the update fails while offline. The FAILED report is
    stamped after the instant the assignment arrived, so ThingsBoard takes it as newer than
    the INITIATED it stamped before pushing the assignment."""
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    proxy = GatedProxy(mosquitto.port)
    clock = SettableClock(1_700_000_000.0)
    attributes = Attributes()
    link = link_factory(proxy.port, clock=clock, attributes=attributes)
    try:
        assert link.wait_connected(15)
        wait_until(lambda: len(link.outbox) == 0, 5, "the current_sw_* report to go out")
        clock.now = 1_700_000_100.0
        tb.publish(ATTRIBUTES, {"sw_title": "teg-controller", "sw_version": "v1.1.0"})
        attributes.wait_for(lambda m: m[0] == ATTRIBUTES)
        link.publish_ota_state(OtaReport(OtaState.DOWNLOADING))  # live: flat
        wait_until(lambda: len(link.outbox) == 0, 5, "DOWNLOADING to go out")
        proxy.close()
        wait_until(lambda: not link.connected, 10, "the link to notice the drop")
        clock.now = 1_700_000_100.0 - 1800
        link.publish_telemetry({"controller_last_exit_code": 3})
        link.publish_ota_state(OtaReport(OtaState.FAILED, error="v1.1.0 exited"))
        proxy.open()
        assert link.wait_connected(15)
        tb.wait_for(lambda ms: len(ms) >= 5, timeout=15)
    finally:
        proxy.close()

    messages = telemetry_values(tb)
    assert messages[1] == {"sw_state": "DOWNLOADING"}
    # Not 1_699_998_300_000 (the clock): after the assignment's 1_700_000_100_000, and after
    # DOWNLOADING's stamp (kept in the outbox, not sent: it was live).
    assert messages[2] == {"ts": 1_700_000_100_002, "values": {"controller_last_exit_code": 3}}
    # The OTA state queued offline goes out flat: ThingsBoard stamps it on arrival, so it is
    # newer than the INITIATED it stamped itself, whatever the gateway's clock says.
    assert messages[3] == {"sw_state": "FAILED", "sw_error": "v1.1.0 exited"}
    assert set(messages[4]) == SOFTWARE_KEYS  # the reconnect's report, flat
