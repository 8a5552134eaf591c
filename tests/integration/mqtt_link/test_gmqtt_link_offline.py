"""GmqttLink without a broker: its settings, and what it does before it ever connects.

Publishing does not need a connection (the outbox keeps everything), so the telemetry rules
and the timestamp mark are checked here on the files alone.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from gmqtt_link_support import TELEMETRY

from teg_ota.adapters.mqtt import DurableOutbox, GmqttLink, MqttSettings
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.telemetry_sink import OtaReport, TelemetryError, TelemetrySink

# --- settings -------------------------------------------------------------------------------------


def test_settings_repr_hides_the_token() -> None:
    settings = MqttSettings(token="S3CRET-TOKEN", host="tb.example")
    assert "S3CRET-TOKEN" not in repr(settings)
    assert "S3CRET-TOKEN" not in str(settings)
    assert "token='***'" in repr(settings)
    assert "token=None" in repr(MqttSettings())
    assert settings.token == "S3CRET-TOKEN"
    with pytest.raises(ValueError, match="tls=True"):
        MqttSettings(ca_file="/etc/ssl/ca.pem")
    with pytest.raises(ValueError, match="cert_file"):
        MqttSettings(tls=True, key_file="/k.pem")
    with pytest.raises(ValueError, match="port"):
        MqttSettings(port=0)


def test_tls_settings_build_a_verifying_context() -> None:
    context = MqttSettings(tls=True).ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert MqttSettings().ssl_context() is None
    with pytest.raises(OSError):
        MqttSettings(tls=True, ca_file="/nonexistent/ca.pem").ssl_context()


# --- before the first connect ---------------------------------------------------------------------


def test_link_satisfies_the_port(tmp_path: Path) -> None:
    link: TelemetrySink = GmqttLink(
        MqttSettings(),
        DurableOutbox(tmp_path),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
    )
    assert isinstance(link, GmqttLink)


def test_offline_publish_is_durable_and_bad_values_raise(tmp_path: Path) -> None:
    link = GmqttLink(
        MqttSettings(),
        DurableOutbox(tmp_path),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
        clock=lambda: 1_700_000_000.5,
    )
    link.publish_ota_state(OtaReport(OtaState.FAILED, error="boom"))  # not started: queued
    link.request_ota_attributes()  # not started: nothing to do, no error
    entry = DurableOutbox(tmp_path).peek()
    assert entry is not None and entry.ota_state and entry.topic == TELEMETRY
    assert json.loads(entry.payload) == {
        "ts": 1_700_000_000_500,
        "values": {"sw_state": "FAILED", "sw_error": "boom"},
    }
    with pytest.raises(TelemetryError):
        link.publish_telemetry({"x": object()})
    with pytest.raises(TelemetryError):
        link.publish_telemetry({"x": float("nan")})
    with pytest.raises(TelemetryError):
        link.publish_telemetry({"big": "x" * 70000})
    assert len(link.outbox) == 1


def test_an_unreadable_timestamp_mark_is_ignored(tmp_path: Path) -> None:
    mark = tmp_path / "link" / "telemetry_last_ts"
    mark.parent.mkdir()
    mark.write_text("not a number\n")
    link = GmqttLink(
        MqttSettings(),
        DurableOutbox(tmp_path),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
        clock=lambda: 1_700_000_000.5,
    )
    link.publish_telemetry({"x": 1})
    entry = DurableOutbox(tmp_path).peek()
    assert entry is not None and json.loads(entry.payload)["ts"] == 1_700_000_000_500
    assert mark.read_text() == "1700000000500\n"


def test_a_timestamp_mark_far_in_the_future_is_discarded_at_start_up(tmp_path: Path) -> None:
    """The clock once ran a year ahead and stamped the mark there: kept, every ts would
    stay a year ahead for good. More than a day ahead of the clock, it is dropped."""
    mark = tmp_path / "link" / "telemetry_last_ts"
    mark.parent.mkdir()
    mark.write_text(f"{1_700_000_000_500 + 365 * 86_400_000}\n")
    link = GmqttLink(
        MqttSettings(),
        DurableOutbox(tmp_path),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
        clock=lambda: 1_700_000_000.5,
    )
    link.publish_telemetry({"x": 1})
    entry = DurableOutbox(tmp_path).peek()
    assert entry is not None and json.loads(entry.payload)["ts"] == 1_700_000_000_500
    assert mark.read_text() == "1700000000500\n"
    assert link.outbox_dropped == 0


def test_publishing_never_raises_because_of_the_disk(tmp_path: Path) -> None:
    """A file where the outbox directory should be: the link is made and every publish
    is kept (in memory) instead of failing the caller."""
    (tmp_path / "outbox").write_text("in the way")
    link = GmqttLink(
        MqttSettings(),
        DurableOutbox(tmp_path / "outbox"),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
        clock=lambda: 1_700_000_000.5,
    )
    link.publish_ota_state(OtaReport(OtaState.FAILED, error="disk"))
    link.publish_telemetry({"x": 1})
    assert (len(link.outbox), link.outbox.in_memory) == (2, 2)
    assert link.outbox.degraded is not None
    with pytest.raises(TelemetryError):  # a value that cannot be sent still raises
        link.publish_telemetry({"x": float("nan")})


def test_a_directory_at_the_timestamp_mark_path_does_not_stop_the_link(tmp_path: Path) -> None:
    (tmp_path / "link" / "telemetry_last_ts" / "inside").mkdir(parents=True)
    link = GmqttLink(
        MqttSettings(),
        DurableOutbox(tmp_path),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
        clock=lambda: 1_700_000_000.5,
    )
    link.publish_telemetry({"x": 1})
    link.publish_telemetry({"x": 2})
    assert [json.loads(e.payload)["ts"] for e in DurableOutbox(tmp_path).entries()] == [
        1_700_000_000_500,
        1_700_000_000_501,
    ]
    assert link.outbox.degraded is None
