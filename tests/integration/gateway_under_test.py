"""The gateway under test: the settings, commands and leftovers of one integration test (no pytest).

Shared by tests/integration/test_cli.py and test_e2e_runner.py. Each test gets its own data
directory and controller work tree (under its ``tmp``), controller container name and image
prefix; :meth:`GatewayUnderTest.env` is the environment of every ``teg-ota`` process it
starts, and :meth:`GatewayUnderTest.remove_containers_and_images` removes what they left in
the engine. A subclass says which broker port its processes use and which of its own settings
differ, in :meth:`GatewayUnderTest.process_env`.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import docker
import docker.errors
from controller_repo import ControllerRepo, remove_dangling_layers
from tb_clock import faketime_env

MQTT_HOST = "127.0.0.1"  # harness.LOCALHOST: harness needs pytest, this module does not
SW_TITLE = "teg-controller"
_OUR_VARIABLE = re.compile(r"^(TEG_|GATEWAY_DATA_PATH$|CONTROLLER_GIT_PATH$)")
_CONSOLE_SCRIPT = Path(sys.executable).parent / "teg-ota"


class GatewayUnderTest:
    """Settings of one test, the ``teg-ota`` commands run with them and what they left.

    ``name_prefix`` (``teg-cli``, ``teg-e2e``) starts the container name and the image prefix,
    each followed by a random suffix (:attr:`suffix`).
    """

    def __init__(
        self,
        tmp: Path,
        repo: ControllerRepo,
        client: docker.DockerClient,
        name_prefix: str,
        *,
        token: str,
        clock_offset: str | float | None = None,
    ) -> None:
        self.suffix = uuid.uuid4().hex[:10]
        self.clock_offset = clock_offset
        """The processes' wall clock offset (``"-1h"``, seconds...) under libfaketime."""
        self.tmp = tmp
        self.repo = repo
        self.client = client
        self.token = token
        self.prefix = f"{name_prefix}-{self.suffix}-"
        self.container_name = f"{name_prefix}-controller-{self.suffix}"
        self.data = tmp / "data"
        self.git_path = tmp / "controller"

    # -- settings and commands ----------------------------------------------------------------
    def env(self, broker_port: int, **overrides: str | None) -> dict[str, str]:
        """``os.environ`` without our variables, plus the settings of this test for a broker
        at ``broker_port`` (and libfaketime's, with a ``clock_offset``); an override of ``None``
        removes the variable."""
        env = {k: v for k, v in os.environ.items() if not _OUR_VARIABLE.match(k)}
        env.update(
            {
                "TEG_MQTT_HOST": MQTT_HOST,
                "TEG_MQTT_PORT": str(broker_port),
                "TEG_MQTT_TOKEN": self.token,
                "GATEWAY_DATA_PATH": str(self.data),
                "CONTROLLER_GIT_PATH": str(self.git_path),
                "TEG_CONTROLLER_GIT_URL": self.repo.url,
                "TEG_DEFAULT_CONTROLLER_VERSION": "v1.0",
                "TEG_CONTROLLER_PRIVILEGED": "0",
                "TEG_CONTROLLER_NETWORK_MODE": "host",
                "TEG_CONTROLLER_CONTAINER": self.container_name,
                "TEG_CONTROLLER_IMAGE_PREFIX": self.prefix,
                "TEG_SW_TITLE": SW_TITLE,
                "TEG_HEALTH_GRACE_S": "3",
                # No fleet spreading: these tests start gateways and restart brokers many
                # times; a test of the spreading sets its own windows.
                "TEG_MQTT_CONNECT_WINDOW_S": "0",
                "TEG_MQTT_ATTRIBUTE_REQUEST_WINDOW_S": "0",
                "TEG_UPDATE_START_WINDOW_S": "0",
            }
        )
        if self.clock_offset is not None:
            env.update(faketime_env(self.clock_offset, env))
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def process_env(self, **overrides: str | None) -> dict[str, str]:
        """The environment of this test's processes: :meth:`env` with the subclass's broker
        port and its own settings, then ``overrides``."""
        raise NotImplementedError

    def run_cli(
        self, *args: str, script: bool = False, timeout: float = 120, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        """``python -m teg_ota ARGS`` (``script``: the ``teg-ota`` console script) in ``tmp``,
        with :meth:`process_env` and ``env`` on top."""
        command = [str(_CONSOLE_SCRIPT)] if script else [sys.executable, "-m", "teg_ota"]
        return subprocess.run(
            [*command, *args],
            env=self.process_env(**env),
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # -- what the commands left ---------------------------------------------------------------
    def controller(self) -> dict[str, Any] | None:
        """The controller container's inspect data, or None when there is none."""
        try:
            attrs: dict[str, Any] = self.client.api.inspect_container(self.container_name)
        except docker.errors.NotFound:
            return None
        return attrs

    def prefixed_images(self) -> list[str]:
        """Tags under this test's image prefix, sorted."""
        return sorted(  # the raw list: images.list() races with the engine's own removals
            tag
            for image in self.client.api.images()
            for tag in image.get("RepoTags") or ()
            if tag.startswith(self.prefix)
        )

    def remove_containers_and_images(self) -> None:
        """Teardown: the controller container (and the failed one kept for its logs), the
        prefixed images, dangling layers."""
        for name in (self.container_name, f"{self.container_name}-failed"):
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(name, force=True)
        for tag in self.prefixed_images():
            with contextlib.suppress(docker.errors.APIError):
                self.client.images.remove(tag, force=True)
        remove_dangling_layers(self.client)  # left by the builds the tests interrupt
