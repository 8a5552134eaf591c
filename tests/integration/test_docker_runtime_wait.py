"""DockerRuntime.wait_for_exit against the real dockerd: exits, deadlines, health.

(helpers in docker_runtime_support.py).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker_runtime_support import EXIT3_CMD, UNHEALTHY, Env, make_env

from teg_ota.ports.container_runtime import ControllerExit, Health


@pytest.fixture
def env(
    docker_client: docker.DockerClient, test_images: list[str], tmp_path: Path
) -> Iterator[Env]:
    yield from make_env(docker_client, test_images, tmp_path)


@pytest.mark.timeout(60)
def test_wait_for_exit_returns_the_exit_code(env: Env) -> None:
    tag = env.build(EXIT3_CMD)
    env.runtime.run_controller(tag, {})
    started = time.monotonic()
    assert env.runtime.wait_for_exit(20) == ControllerExit(exit_code=3)
    assert time.monotonic() - started < 10

    state = env.runtime.controller_state()
    assert state.exists and not state.running and state.exit_code == 3
    # Already exited: answered at once from the current state.
    started = time.monotonic()
    assert env.runtime.wait_for_exit(20) == ControllerExit(exit_code=3)
    assert time.monotonic() - started < 2


@pytest.mark.timeout(60)
def test_wait_for_exit_returns_none_while_running_and_notices_a_stop(env: Env) -> None:
    assert env.runtime.wait_for_exit(5) == ControllerExit(exit_code=None)  # no container
    tag = env.build()
    env.runtime.run_controller(tag, {})

    started = time.monotonic()
    assert env.runtime.wait_for_exit(1.5) is None
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 4, elapsed  # the stream is closed at the deadline

    # An exit while waiting (here: killed from outside) is seen through the event stream.
    killer = subprocess.Popen(
        ["sh", "-c", f"sleep 1; docker kill --signal KILL {env.name} >/dev/null"]
    )
    try:
        started = time.monotonic()
        assert env.runtime.wait_for_exit(20) == ControllerExit(exit_code=137)
        assert time.monotonic() - started < 10
    finally:
        killer.wait(timeout=20)


@pytest.mark.timeout(60)
def test_wait_for_exit_detects_unhealthy(env: Env) -> None:
    tag = env.build(UNHEALTHY)
    env.runtime.run_controller(tag, {})
    assert env.runtime.controller_state().health in (Health.STARTING, Health.UNHEALTHY)

    started = time.monotonic()
    assert env.runtime.wait_for_exit(15) == ControllerExit(exit_code=None, unhealthy=True)
    assert time.monotonic() - started < 12
    state = env.runtime.controller_state()
    assert state.running and state.health is Health.UNHEALTHY
    # Already unhealthy: answered at once.
    assert env.runtime.wait_for_exit(10) == ControllerExit(exit_code=None, unhealthy=True)
