"""GmqttLink over real TLS: Mosquitto with a test CA, X.509 client certificates (device auth).

A CA, a server certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1), client certificates
and a second, unrelated CA are made with the ``openssl`` command line. Mosquitto (the local
test image, host network) requires a client certificate signed by the CA and takes the
certificate's CN as the user name (``use_identity_as_username``), with anonymous access off:
what ThingsBoard's X.509 device authentication amounts to on the transport side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv311
from harness import MOSQUITTO_IMAGE, free_port, port_open, wait_until
from loguru import logger
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from teg_ota.adapters.mqtt import TELEMETRY_TOPIC, DurableOutbox, GmqttLink, MqttSettings

pytestmark = pytest.mark.timeout(90)

HOST = "127.0.0.1"
DEVICE_CN = "teg-device-tls-1"
STANDIN_CN = "thingsboard-standin"
FAST = {
    "connect_backoff_initial_s": 0.2,
    "connect_backoff_max_s": 1.0,
    "keepalive": 10,
    "connect_window_s": 0,  # no fleet spreading in these tests
    "attribute_request_window_s": 0,
}
_RUNNING = re.compile(r"mosquitto version \S+ running")
_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


# --- certificates ------------------------------------------------------------------------------


def _openssl(*args: str | Path, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed: {proc.stderr}")


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: KeyPair
    device: KeyPair
    standin: KeyPair
    other_ca: Path
    """A CA that signed nothing the broker uses."""


def _make_ca(directory: Path, name: str) -> KeyPair:
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    _openssl(
        "req", "-x509", *_EC_KEY, "-keyout", pair.key, "-out", pair.cert, "-days", "2",
        "-subj", f"/CN=teg-ota test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return pair


def _make_leaf(directory: Path, ca: KeyPair, name: str, cn: str, extensions: str) -> KeyPair:
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectKeyIdentifier=hash\n" + extensions
    )
    _openssl("req", *_EC_KEY, "-keyout", pair.key, "-out", csr, "-subj", f"/CN={cn}", cwd=directory)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
        "-out", pair.cert, "-days", "2", "-extfile", ext,
        cwd=directory,
    )  # fmt: skip
    return pair


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(directory, "ca")
    server = _make_leaf(
        directory, ca, "server", HOST, "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"
    )
    client_ext = "extendedKeyUsage=clientAuth\n"
    device = _make_leaf(directory, ca, "device", DEVICE_CN, client_ext)
    standin = _make_leaf(directory, ca, "standin", STANDIN_CN, client_ext)
    other = _make_ca(directory, "other-ca")
    return Pki(ca=ca.cert, server=server, device=device, standin=standin, other_ca=other.cert)


# --- the broker --------------------------------------------------------------------------------


class TlsMosquitto:
    """teg-ota-test-mosquitto on the host network, TLS only, client certificates required."""

    def __init__(self, config_dir: Path, pki: Pki, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        config_dir.mkdir(parents=True, exist_ok=True)
        for source, name in (
            (pki.ca, "ca.crt"),
            (pki.server.cert, "server.crt"),
            (pki.server.key, "server.key"),
        ):
            shutil.copyfile(source, config_dir / name)
        lines = [
            "user root",
            f"listener {self.port} {HOST}",
            "cafile /mosquitto/config/ca.crt",
            "certfile /mosquitto/config/server.crt",
            "keyfile /mosquitto/config/server.key",
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false",
            "persistence false",
            "log_dest stderr",
            "log_type all",
        ]
        (config_dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.container = (
            DockerContainer(MOSQUITTO_IMAGE)
            .with_name(f"teg-ota-test-mosquitto-tls-{self.port}-{uuid.uuid4().hex[:6]}")
            .with_volume_mapping(config_dir, "/mosquitto/config", "ro")
            # with_kwargs replaces earlier kwargs: call it once.
            .with_kwargs(network_mode="host")
            .waiting_for(LogMessageWaitStrategy(_RUNNING).with_startup_timeout(20))
        )

    def start(self) -> TlsMosquitto:
        self.container.start()  # waits for the "running" log line
        wait_until(lambda: port_open(self.port), 20, f"port {self.port}")
        return self

    def logs(self) -> str:
        out, err = self.container.get_logs()
        return (out + err).decode(errors="replace")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.container.stop()  # testcontainers' stop() force-removes the container


@dataclass(frozen=True)
class TlsSetup:
    broker: TlsMosquitto
    pki: Pki


@pytest.fixture(scope="module")
def tls(test_images: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSetup]:
    assert MOSQUITTO_IMAGE in test_images
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    broker: TlsMosquitto | None = None
    for attempt in range(3):
        broker = TlsMosquitto(tmp_path_factory.mktemp("mosquitto-tls"), pki)
        try:
            broker.start()
            break
        except (RuntimeError, TimeoutError):
            # A port picked by free_port() can be taken before mosquitto binds it: retry.
            broker.remove()
            if attempt == 2:
                raise
    assert broker is not None
    try:
        yield TlsSetup(broker, pki)
    finally:
        broker.remove()


# --- links and logs ----------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """teg_ota's loguru records as ``"LEVEL message"``."""
    lines: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(
        lambda message: lines.append(f"{message.record['level'].name} {message.record['message']}"),
        level="DEBUG",
    )
    yield lines
    logger.remove(sink)


LinkFactory = Callable[..., GmqttLink]


@pytest.fixture
def make_link(tls: TlsSetup, tmp_path: Path) -> Iterator[LinkFactory]:
    """``make(**MqttSettings fields) -> GmqttLink`` (started) on the TLS broker; stopped at
    teardown."""
    links: list[GmqttLink] = []

    def make(**settings: Any) -> GmqttLink:
        settings = {"client_id": f"teg-ota-tls-{len(links)}-{uuid.uuid4().hex[:6]}", **settings}
        link = GmqttLink(
            MqttSettings(host=HOST, port=tls.broker.port, tls=True, **FAST, **settings),
            DurableOutbox(tmp_path / f"outbox-{len(links)}"),
            current_software=lambda: ("teg-controller", "v1.0"),
            on_attributes=lambda topic, payload: None,
        )
        links.append(link)
        link.start()
        return link

    yield make
    for link in links:
        link.stop(timeout=2)


def client_context(ca: Path, pair: KeyPair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    return context


async def _record_telemetry(
    port: int, context: ssl.SSLContext, trigger: Callable[[], None], done: Callable[[Any], bool]
) -> list[bytes]:
    """Subscribe over TLS to the telemetry topic, call ``trigger()``, return the payloads
    received until ``done(payload)`` is true for one of them."""
    received: asyncio.Queue[bytes] = asyncio.Queue()
    subscribed = asyncio.Event()
    client = gmqtt.Client(f"tls-standin-{uuid.uuid4().hex[:8]}")
    client.on_subscribe = lambda *args: subscribed.set()

    def on_message(client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        received.put_nowait(bytes(payload))
        return 0

    client.on_message = on_message
    await client.connect(HOST, port, ssl=context, keepalive=10, version=MQTTv311)
    payloads: list[bytes] = []
    try:
        client.subscribe(TELEMETRY_TOPIC, qos=1)
        await asyncio.wait_for(subscribed.wait(), 10)
        await asyncio.to_thread(trigger)
        deadline = time.monotonic() + 15
        while not any(done(p) for p in payloads):
            payloads.append(await asyncio.wait_for(received.get(), deadline - time.monotonic()))
    finally:
        await client.disconnect()
    return payloads


# --- tests -------------------------------------------------------------------------------------


def test_client_certificate_link_connects_and_delivers_telemetry(
    tls: TlsSetup, make_link: LinkFactory, log_lines: list[str]
) -> None:
    pki = tls.pki
    marker = uuid.uuid4().hex
    links: list[GmqttLink] = []

    def start_and_publish() -> None:
        link = make_link(ca_file=pki.ca, cert_file=pki.device.cert, key_file=pki.device.key)
        links.append(link)
        assert link.wait_connected(15), "\n".join(log_lines)
        link.publish_telemetry({"tls_probe": marker})

    payloads = asyncio.run(
        _record_telemetry(
            tls.broker.port,
            client_context(pki.ca, pki.standin),
            start_and_publish,
            lambda payload: marker.encode() in payload,
        )
    )

    messages = [json.loads(p) for p in payloads]
    software = {"current_sw_title": "teg-controller", "current_sw_version": "v1.0"}
    assert messages[0] == software  # the on-connect report, live: flat
    assert messages[-1] == {"tls_probe": marker}, messages
    assert links[0].connected and links[0].refused is None
    wait_until(lambda: len(links[0].outbox) == 0, 5, "the PUBACK to empty the outbox")
    logs = tls.broker.logs()
    # The broker authenticated the device by its certificate: the CN is its user name.
    assert re.search(rf"New client connected from \S+ as teg-ota-tls-0-\S+ .*u'{DEVICE_CN}'", logs)
    assert not [line for line in log_lines if line.startswith(("WARNING", "ERROR"))], log_lines


def test_server_certificate_from_another_ca_is_never_trusted(
    tls: TlsSetup,
    make_link: LinkFactory,
    log_lines: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pki = tls.pki
    token = f"S3CRET-TLS-TOKEN-{uuid.uuid4().hex}"
    caplog.set_level("DEBUG")
    client_id = f"teg-ota-tls-rogue-ca-{uuid.uuid4().hex[:6]}"
    link = make_link(
        ca_file=pki.other_ca,
        cert_file=pki.device.cert,
        key_file=pki.device.key,
        token=token,
        client_id=client_id,
    )

    assert not link.wait_connected(5)

    errors = [line for line in log_lines if line.startswith(("WARNING", "ERROR"))]
    assert errors, log_lines
    first = errors[0]
    assert f"{HOST}:{tls.broker.port}" in first, first
    assert "CERTIFICATE_VERIFY_FAILED" in first or "certificate verify failed" in first, first
    # Full jitter retries often: every tenth failure is a warning again, the rest debug.
    attempts = [line for line in log_lines if "Cannot connect to MQTT broker" in line]
    assert len(errors) == 1 + (len(attempts) - 1) // 10, f"repeats at warning level: {errors}"
    assert token not in "\n".join(log_lines) + caplog.text
    assert link.refused is None
    assert f"as {client_id}" not in tls.broker.logs(), "no MQTT session"


def test_link_without_a_client_certificate_is_refused(
    tls: TlsSetup, make_link: LinkFactory, log_lines: list[str]
) -> None:
    pki = tls.pki
    client_id = f"teg-ota-tls-no-cert-{uuid.uuid4().hex[:6]}"
    link = make_link(ca_file=pki.ca, token="no-certificate-token", client_id=client_id)

    assert not link.wait_connected(5)

    logs = tls.broker.logs()
    assert f"as {client_id}" not in logs, "the broker never accepted the session"
    assert "peer did not return a certificate" in logs, logs[-2000:]
    warnings = [line for line in log_lines if line.startswith("WARNING")]
    assert any(f"{HOST}:{tls.broker.port}" in line for line in warnings), log_lines
    assert all("no-certificate-token" not in line for line in log_lines)
