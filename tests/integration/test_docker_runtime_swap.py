"""DockerRuntime's swap against the real dockerd: the new container is created (as
``<name>-next``) before the old one stops and named after it started, so nothing but the
stop and the start sits between the old one's ``die`` and the new one's ``start``; what an
interrupted swap leaves is removed; a crashed controller's restart is prepared ahead.

(helpers in docker_runtime_support.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker_runtime_support import EXIT3_CMD, RUN_LABEL, Env, make_env

from teg_ota.adapters.docker import DockerRuntime
from teg_ota.ports.container_runtime import VERSION_LABEL, StartFailed

TRAPS_TERM = (
    """CMD ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait $!; done"]"""
)


@pytest.fixture
def env(
    docker_client: docker.DockerClient, test_images: list[str], tmp_path: Path
) -> Iterator[Env]:
    yield from make_env(docker_client, test_images, tmp_path)


def _id(env: Env, name: str) -> str | None:
    try:
        return str(env.client.api.inspect_container(name)["Id"])
    except docker.errors.NotFound:
        return None


def _events(env: Env, since: float) -> list[dict[str, Any]]:
    """This test's container events since ``since``, oldest first (the engine's record)."""
    stream = env.client.events(
        since=int(since) - 1,
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "container", "label": env.run_filter},
    )
    found = [e for e in stream if isinstance(e, dict)]
    return sorted(found, key=lambda e: int(e["timeNano"]))


def _at(events: list[dict[str, Any]], action: str, container_id: str) -> int:
    for i, event in enumerate(events):
        if event.get("Action") == action and event.get("id") == container_id:
            return i
    raise AssertionError(f"no {action} of {container_id[:12]} in {[e['Action'] for e in events]}")


@pytest.mark.timeout(90)
def test_only_the_stop_and_the_start_sit_between_die_and_start(env: Env) -> None:
    old_tag = env.build(TRAPS_TERM, version="v1.0.0")
    new_tag = env.build(TRAPS_TERM, version="v2.0.0")
    env.runtime.run_controller(old_tag, {RUN_LABEL: env.uid, VERSION_LABEL: "v1.0.0"})
    old_id = _id(env, env.name)
    assert old_id is not None
    time.sleep(0.5)  # the trap is installed
    since = time.time()

    env.runtime.replace_controller(new_tag, {RUN_LABEL: env.uid, VERSION_LABEL: "v2.0.0"}, 10)

    new_id = _id(env, env.name)
    assert new_id is not None and new_id != old_id, "the drop-in name is the new one's"
    assert _id(env, f"{env.name}-next") is None
    assert _id(env, old_id) is None, "a healthy controller stopped on purpose is removed"
    state = env.runtime.controller_state()
    assert state.running and state.version == "v2.0.0"

    events = _events(env, since)
    created, died = _at(events, "create", new_id), _at(events, "die", old_id)
    started, renamed = _at(events, "start", new_id), _at(events, "rename", new_id)
    assert created < died < started < renamed, [e["Action"] for e in events]
    between = {e["Action"] for e in events[died + 1 : started]}
    assert between <= {"stop"}, f"in the downtime: {between}"
    assert events[created]["Actor"]["Attributes"]["name"] == f"{env.name}-next"
    assert events[renamed]["Actor"]["Attributes"]["name"] == env.name


@pytest.mark.timeout(60)
def test_a_missing_image_fails_before_the_old_controller_is_stopped(env: Env) -> None:
    old_tag = env.build(version="v1.0.0")
    env.runtime.run_controller(old_tag, {RUN_LABEL: env.uid})

    with pytest.raises(StartFailed, match="never pulled"):
        env.runtime.replace_controller(env.tag("v9.0.0"), {RUN_LABEL: env.uid}, 1)

    assert env.runtime.controller_state().running
    assert _id(env, f"{env.name}-next") is None


@pytest.mark.timeout(60)
def test_what_an_interrupted_swap_left_is_removed(env: Env) -> None:
    tag = env.build(version="v1.0.0")
    # A kill after the start, before the renames: the new one runs as <name>-next.
    left = env.client.api.create_container(
        tag, name=f"{env.name}-next", labels={RUN_LABEL: env.uid}
    )
    env.client.api.start(left["Id"])

    assert env.runtime.discard_prepared() is True
    assert _id(env, f"{env.name}-next") is None
    assert env.runtime.discard_prepared() is False

    # And a creation never trips over one either.
    env.client.api.create_container(tag, name=f"{env.name}-next", labels={RUN_LABEL: env.uid})
    env.runtime.run_controller(tag, {RUN_LABEL: env.uid})
    assert env.runtime.controller_state().running
    assert _id(env, f"{env.name}-next") is None


@pytest.mark.timeout(90)
def test_a_crashed_controllers_restart_starts_the_container_prepared_meanwhile(env: Env) -> None:
    runtime = DockerRuntime(dataclasses.replace(env.runtime.settings, crash_log_lines=5))
    tag = env.build(EXIT3_CMD, version="v1.0.0", runtime=runtime)
    labels = {RUN_LABEL: env.uid, VERSION_LABEL: "v1.0.0"}
    runtime.run_controller(tag, labels)
    crashed = _id(env, env.name)
    assert runtime.wait_for_exit(20) is not None

    runtime.prepare_restart()
    prepared = _id(env, f"{env.name}-next")
    assert prepared is not None
    assert not env.client.api.inspect_container(prepared)["State"]["Running"]

    runtime.run_controller(tag, labels)

    assert _id(env, env.name) == prepared, "the prepared one, under the controller's name"
    assert _id(env, f"{env.name}-failed") == crashed, "the crashed one kept for its logs"
    assert _id(env, f"{env.name}-next") is None


@pytest.mark.timeout(60)
def test_nothing_is_prepared_for_a_running_or_unknown_controller(env: Env) -> None:
    tag = env.build(version="v1.0.0")
    env.runtime.prepare_restart()  # never started by this runtime: nothing known
    env.runtime.run_controller(tag, {RUN_LABEL: env.uid})
    env.runtime.prepare_restart()  # running
    assert _id(env, f"{env.name}-next") is None


@pytest.mark.timeout(90)
def test_a_restart_policy_applies_only_under_the_controllers_name(env: Env) -> None:
    """With an engine restart policy configured, a power cut between the new controller's
    start and the old one making way would have dockerd start both at boot: ``-next`` is
    created with none, the old one loses its policy before its stop, and the controller
    gets the configured policy once it runs under its name."""
    settings = dataclasses.replace(env.runtime.settings, restart_policy="unless-stopped")
    runtime = DockerRuntime(settings)
    old_tag = env.build(TRAPS_TERM, version="v1.0.0")
    new_tag = env.build(TRAPS_TERM, version="v2.0.0")
    runtime.run_controller(old_tag, {RUN_LABEL: env.uid, VERSION_LABEL: "v1.0.0"})
    old_id = _id(env, env.name)
    assert old_id is not None
    policy_of = {}

    def record_policies(*args: Any, **kwargs: Any) -> Any:
        for name in (f"{env.name}-next", old_id):
            with_policy = env.client.api.inspect_container(name)["HostConfig"]["RestartPolicy"]
            policy_of[name] = with_policy["Name"]
        return original_stop(*args, **kwargs)

    original_stop = runtime.stop_controller
    runtime.stop_controller = record_policies  # type: ignore[method-assign]

    runtime.replace_controller(new_tag, {RUN_LABEL: env.uid, VERSION_LABEL: "v2.0.0"}, 10)

    assert policy_of == {f"{env.name}-next": "no", old_id: "no"}, "at the stop: none"
    attrs = env.client.api.inspect_container(env.name)
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["Id"] != old_id
