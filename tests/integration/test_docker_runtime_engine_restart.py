"""DockerRuntime survives the engine going away and coming back (no mocks).

The test starts a second, private dockerd (private_dockerd.PrivateDockerd) on its own socket,
data root and exec root, so the shared engine that other tests use is never disturbed.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import pytest
from private_dockerd import PrivateDockerd, require_dockerd

from teg_ota.adapters.docker import DockerRuntime, DockerRuntimeSettings
from teg_ota.ports.container_runtime import ControllerExit, ControllerState, RuntimeUnavailable


@pytest.mark.timeout(180)
def test_same_runtime_object_survives_the_engine_going_away_and_back() -> None:
    require_dockerd()
    uid = uuid.uuid4().hex[:12]
    daemon = PrivateDockerd(Path(tempfile.mkdtemp(prefix="teg-dd-", dir="/tmp")), uid)
    runtime = DockerRuntime(
        DockerRuntimeSettings(
            container_name=f"teg-test-{uid}",
            image_prefix=f"teg-test-{uid}-",
            privileged=False,
            base_url=daemon.base_url,
        )
    )
    try:
        # Down from the start: no socket at all.
        with pytest.raises(RuntimeUnavailable, match="container engine unavailable"):
            runtime.controller_state()
        with pytest.raises(RuntimeUnavailable):
            runtime.wait_for_exit(1)

        daemon.start()
        assert runtime.controller_state() == ControllerState(exists=False)
        assert runtime.free_disk_bytes() > 0
        assert runtime.list_controller_images() == []

        # Restarted between two calls: the cached client's pooled connection is dead.
        daemon.kill()
        daemon.start()
        assert runtime.controller_state() == ControllerState(exists=False)

        # Killed: the socket file is still there, nobody listens.
        daemon.kill()
        started = time.monotonic()
        with pytest.raises(RuntimeUnavailable, match=r"unreachable|unavailable"):
            runtime.controller_state()
        with pytest.raises(RuntimeUnavailable):
            runtime.prune_stopped_containers()
        with pytest.raises(RuntimeUnavailable):
            runtime.stop_controller(1)
        assert time.monotonic() - started < 10

        # Back again: the very same object answers.
        daemon.start()
        assert runtime.controller_state() == ControllerState(exists=False)
        assert runtime.wait_for_exit(0.5) == ControllerExit(exit_code=None)
    finally:
        daemon.stop()
        daemon.remove()
