"""DockerRuntime run/state/stop against the real dockerd: settings, versions, replacement.

(helpers in docker_runtime_support.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker_runtime_support import RUN_LABEL, Env, make_env
from harness import in_ci

from teg_ota.adapters.docker import DockerRuntime
from teg_ota.domain.core.failures import Blame, blame
from teg_ota.domain.model.errors import GatewayFault, PrivilegeRefused
from teg_ota.ports.container_runtime import VERSION_LABEL, ControllerState, Health, StartFailed


@pytest.fixture
def env(
    docker_client: docker.DockerClient, test_images: list[str], tmp_path: Path
) -> Iterator[Env]:
    yield from make_env(docker_client, test_images, tmp_path)


@pytest.mark.timeout(60)
def test_run_reports_state_and_version_from_label(env: Env) -> None:
    assert env.runtime.controller_state() == ControllerState(exists=False)
    # An encoded version name exercises the domain's naming on a real engine.
    tag = env.build(version="Release/1.0")
    before_ms = int(time.time() * 1000)
    env.runtime.run_controller(tag, {RUN_LABEL: env.uid, "org.teg.test.kind": "controller"})

    state = env.runtime.controller_state()
    assert state.exists and state.running
    assert state.version == "Release/1.0"
    assert state.image == tag
    assert state.health is Health.NONE
    assert state.exit_code is None
    assert state.started_at_ms is not None
    assert abs(state.started_at_ms - before_ms) < 10_000

    attrs = env.client.api.inspect_container(env.name)
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    assert attrs["HostConfig"]["Privileged"] is False
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert f"TEG_TEST_RUN={env.uid}" in attrs["Config"]["Env"]
    assert attrs["Config"]["Labels"]["org.teg.test.kind"] == "controller"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/teg-data"]["RW"] is False
    exec_result = env.client.containers.get(env.name).exec_run(["cat", "/teg-data/hello.txt"])
    assert exec_result.output == b"mounted\n"

    with pytest.raises(StartFailed, match="already running"):
        env.runtime.run_controller(tag, {})


@pytest.mark.timeout(60)
def test_version_from_image_name_for_an_unlabelled_old_gateway_container(env: Env) -> None:
    tag = env.build(version="v1.2.3", labels={})
    assert VERSION_LABEL not in (env.runtime.image_labels(tag) or {})
    # The old gateway started its controller with plain docker-py and no labels.
    env.client.containers.run(tag, name=env.name, detach=True, network_mode="host")

    state = env.runtime.controller_state()
    assert state.running
    assert state.version == "v1.2.3"
    assert state.image == tag


@pytest.mark.timeout(60)
def test_an_invalid_version_label_is_ignored(env: Env) -> None:
    hostile = "--upload-pack=x"
    tag = env.build(version="v1.2.3", labels={VERSION_LABEL: hostile})
    assert (env.runtime.image_labels(tag) or {})[VERSION_LABEL] == hostile
    env.runtime.run_controller(tag, {VERSION_LABEL: hostile})

    state = env.runtime.controller_state()
    assert state.running
    assert state.version == "v1.2.3"  # from the image name, not the labels

    # Started from an image id (no controller image name): no version at all.
    env.runtime.stop_controller(0)
    env.client.api.remove_container(env.name)
    image_id = env.client.api.inspect_image(tag)["Id"]
    env.client.containers.run(
        image_id, name=env.name, detach=True, network_mode="host", labels={VERSION_LABEL: hostile}
    )
    state = env.runtime.controller_state()
    assert state.running
    assert state.image == image_id
    assert state.version is None


@pytest.mark.timeout(60)
def test_stop_honours_grace_then_run_replaces_the_stopped_container(env: Env) -> None:
    env.runtime.stop_controller(1)  # missing: a no-op
    tag = env.build()
    env.runtime.run_controller(tag, {})
    first_id = env.client.api.inspect_container(env.name)["Id"]

    started = time.monotonic()
    env.runtime.stop_controller(grace_s=1)  # sleep as PID 1 ignores SIGTERM: killed after 1 s
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed < 10, elapsed
    state = env.runtime.controller_state()
    assert state.exists and not state.running
    assert state.exit_code == 137
    env.runtime.stop_controller(1)  # already stopped: a no-op

    env.runtime.run_controller(tag, {})
    state = env.runtime.controller_state()
    assert state.running
    assert env.client.api.inspect_container(env.name)["Id"] != first_id


@pytest.mark.timeout(60)
def test_run_refuses_a_missing_image_without_pulling(env: Env) -> None:
    missing = env.tag("v4.0.0")
    started = time.monotonic()
    with pytest.raises(StartFailed, match="does not exist locally"):
        env.runtime.run_controller(missing, {})
    assert time.monotonic() - started < 5
    assert not env.runtime.image_exists(missing)
    assert env.client.containers.list(all=True, filters={"name": env.name}) == []


@pytest.mark.timeout(60)
def test_start_failure_carries_the_engines_explanation(env: Env) -> None:
    tag = env.build('CMD ["/bin/no-such-controller"]')
    with pytest.raises(StartFailed) as caught:
        env.runtime.run_controller(tag, {})
    assert "no-such-controller" in str(caught.value)
    # The unstartable container is not left in the way of the next attempt.
    assert env.client.containers.list(all=True, filters={"name": env.name}) == []
    assert env.runtime.controller_state() == ControllerState(exists=False)


@pytest.mark.timeout(60)
def test_an_engine_that_refuses_privileged_is_the_gateways_fault(env: Env) -> None:
    """This machine's engine cannot grant a privileged container's capabilities
    (shared/reference/test-infrastructure.md): the refusal is a PrivilegeRefused, a
    GatewayFault whose message says what to change on the gateway."""
    tag = env.build(version="v1.0")
    privileged = DockerRuntime(dataclasses.replace(env.runtime._settings, privileged=True))
    try:
        privileged.run_controller(tag, {RUN_LABEL: env.uid})
    except PrivilegeRefused as exc:
        assert isinstance(exc, GatewayFault) and isinstance(exc, StartFailed)
        assert "TEG_CONTROLLER_PRIVILEGED=0" in str(exc)
        assert blame(exc) is Blame.GATEWAY
        assert env.runtime.controller_state() == ControllerState(exists=False), "cleaned up"
        return
    reason = "this engine grants privileged containers: nothing to refuse"
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
