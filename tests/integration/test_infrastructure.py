"""The test infrastructure itself: engine, local images, Mosquitto fixtures, MQTT recorder."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import docker
import pytest
from gmqtt import Client as GmqttClient
from gmqtt import MQTTConnectError
from gmqtt.mqtt.constants import MQTTv311
from harness import (
    BUSYBOX_IMAGE,
    MOSQUITTO_IMAGE,
    MosquittoBroker,
    free_port,
    make_password_file,
    port_open,
    topic_matches,
    wait_until,
)


async def _gmqtt_connect(port: int, user: str | None, password: str | None) -> None:
    client = GmqttClient(f"probe-{uuid.uuid4().hex[:8]}")
    if user is not None:
        client.set_auth_credentials(user, password)
    await asyncio.wait_for(client.connect("127.0.0.1", port, version=MQTTv311), 10)
    await client.disconnect()


def test_engine_runs_busybox_on_host_network(docker_client: docker.DockerClient, test_images):
    assert BUSYBOX_IMAGE in test_images and MOSQUITTO_IMAGE in test_images
    container = docker_client.containers.create(
        BUSYBOX_IMAGE,
        ["sh", "-c", "echo hello-from-busybox; cat /proc/net/tcp | head -1 >/dev/null"],
        network_mode="host",
    )
    try:
        container.start()
        assert container.wait(timeout=30)["StatusCode"] == 0
        assert b"hello-from-busybox" in container.logs()
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    finally:
        container.remove(force=True)


def test_controller_style_image_builds_from_local_base(docker_client, test_images, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        f'FROM {BUSYBOX_IMAGE}\nRUN echo v1 > /version\nCMD ["cat", "/version"]\n'
    )
    tag = f"teg-ota-test-infra-probe:{uuid.uuid4().hex[:8]}"
    image, _ = docker_client.images.build(path=str(tmp_path), tag=tag, pull=False, rm=True)
    try:
        out = docker_client.containers.run(tag, network_mode="host", remove=True)
        assert out.strip() == b"v1"
    finally:
        docker_client.images.remove(image.id, force=True)


def test_mosquitto_roundtrip_qos1(mosquitto: MosquittoBroker, mqtt_recorder_factory):
    assert mosquitto.host == "127.0.0.1" and port_open(mosquitto.port)
    recorder = mqtt_recorder_factory(mosquitto, topics=["v1/devices/me/#"])
    publisher = mqtt_recorder_factory(mosquitto)
    publisher.publish("v1/devices/me/telemetry", {"temperature": 21.5}, qos=1)
    publisher.publish("v1/devices/me/attributes", b"raw", qos=1)
    publisher.publish("other/topic", b"ignored", qos=1)

    msgs = recorder.wait_for(lambda ms: len(ms) >= 2, timeout=10)
    assert [m.topic for m in msgs] == ["v1/devices/me/telemetry", "v1/devices/me/attributes"]
    assert msgs[0].json() == {"temperature": 21.5}
    assert msgs[1] == ("v1/devices/me/attributes", b"raw")
    assert recorder.wait_for_message("v1/devices/me/+").topic == "v1/devices/me/telemetry"


def test_password_broker_refuses_wrong_user_and_accepts_right_one(
    mosquitto_factory, mqtt_recorder_factory, tmp_path: Path
):
    passwd = make_password_file(tmp_path / "passwd", {"gateway": "s3cret"})
    broker = mosquitto_factory(password_file=passwd)

    for user, password in [("gateway", "wrong"), ("intruder", "s3cret"), (None, None)]:
        with pytest.raises(MQTTConnectError) as refused:
            asyncio.run(_gmqtt_connect(broker.port, user, password))
        assert refused.value.args[0] == 5  # MQTT 3.1.1 CONNACK "not authorized"

    asyncio.run(_gmqtt_connect(broker.port, "gateway", "s3cret"))
    recorder = mqtt_recorder_factory(broker, topics=["t/#"], username="gateway", password="s3cret")
    recorder.publish("t/1", b"authenticated")
    assert recorder.wait_for_message("t/1").payload == b"authenticated"


def test_broker_restart_keeps_port_and_recorder_resubscribes(
    mosquitto: MosquittoBroker, mqtt_recorder_factory
):
    port = mosquitto.port
    recorder = mqtt_recorder_factory(mosquitto, topics=["after/#"])

    mosquitto.stop()
    assert not port_open(port)
    wait_until(lambda: not recorder.is_connected, 10, "the recorder to notice the broker stop")
    mosquitto.start()
    assert mosquitto.port == port and port_open(port)
    # The recorder reconnects by itself and subscribes again in on_connect.
    recorder.wait_subscribed(timeout=20)
    publisher = mqtt_recorder_factory(mosquitto)
    publisher.publish("after/restart", b"again")
    assert recorder.wait_for_message("after/#").payload == b"again"

    mosquitto.restart()
    assert mosquitto.port == port and port_open(port)
    assert mqtt_recorder_factory(mosquitto).is_connected


def test_recorder_listener_can_answer_from_loop_thread(mosquitto, mqtt_recorder_factory):
    responder = mqtt_recorder_factory(mosquitto, topics=["rpc/request/+"])
    responder.add_listener(
        lambda m: responder.publish(m.topic.replace("request", "response"), m.payload[::-1])
    )
    caller = mqtt_recorder_factory(mosquitto, topics=["rpc/response/+"])
    caller.publish("rpc/request/7", b"ping")
    assert caller.wait_for_message("rpc/response/7").payload == b"gnip"
    assert responder.listener_errors == []


def test_two_brokers_get_distinct_ports(mosquitto_factory):
    a, b = mosquitto_factory(), mosquitto_factory()
    assert a.port != b.port and port_open(a.port) and port_open(b.port)


def test_helpers():
    port = free_port()
    assert 0 < port < 65536 and not port_open(port)
    assert topic_matches("a/+/c", "a/b/c") and topic_matches("a/#", "a/b/c")
    assert not topic_matches("a/+", "a/b/c") and not topic_matches("a/b", "a")
