"""Helpers for the DockerRuntime tests (test_docker_runtime_*.py) against the real dockerd.

Test modules import them as a top-level module (``from docker_runtime_support import ...``),
like harness.py. Every test gets its own container name, image prefix and run label, and
removes what it made (containers, tagged images, and dangling intermediate images of failed
builds, all found by the run label that every test Dockerfile sets), so these tests can run
next to others on the same engine. Controller images are built FROM the local busybox test
image; containers run with host networking and unprivileged (privileged fails here).
"""

from __future__ import annotations

import contextlib
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from harness import BUSYBOX_IMAGE

from teg_ota.adapters.docker import DockerRuntime, DockerRuntimeSettings
from teg_ota.domain.model.versions import image_tag, parse_version
from teg_ota.ports.container_runtime import VERSION_LABEL

__all__ = [
    "BUSYBOX_IMAGE",
    "EXIT3_CMD",
    "RUN_LABEL",
    "SLEEP_CMD",
    "UNHEALTHY",
    "Env",
    "make_env",
]

RUN_LABEL = "org.teg.test.run"

SLEEP_CMD = 'CMD ["/bin/sleep", "3600"]'
EXIT3_CMD = 'CMD ["/bin/sh", "-c", "sleep 1; exit 3"]'
UNHEALTHY = (
    'HEALTHCHECK --interval=1s --timeout=2s --retries=1 CMD ["/bin/false"]\n'
    'CMD ["/bin/sleep", "3600"]'
)


@dataclass
class Env:
    uid: str
    prefix: str
    name: str
    client: docker.DockerClient
    runtime: DockerRuntime
    contexts: Path

    def tag(self, version: str = "v1.0.0") -> str:
        return image_tag(self.prefix, parse_version(version))

    def build(
        self,
        body: str = SLEEP_CMD,
        version: str = "v1.0.0",
        labels: dict[str, str] | None = None,
        on_progress: Callable[[str], None] | None = None,
        runtime: DockerRuntime | None = None,
    ) -> str:
        """Build ``FROM busybox`` + the run label + ``body`` as the image for ``version``."""
        context = Path(tempfile.mkdtemp(dir=self.contexts))
        (context / "Dockerfile").write_text(
            f"FROM {BUSYBOX_IMAGE}\nLABEL {RUN_LABEL}={self.uid}\n{textwrap.dedent(body)}\n"
        )
        tag = self.tag(version)
        (runtime or self.runtime).build_image(
            str(context),
            tag,
            {VERSION_LABEL: version} if labels is None else labels,
            on_progress,
        )
        return tag

    def container_names(self) -> list[str]:
        found = self.client.containers.list(all=True, filters={"label": self.run_filter})
        return sorted(c.name for c in found)

    @property
    def run_filter(self) -> str:
        return f"{RUN_LABEL}={self.uid}"


def cleanup(client: docker.DockerClient, uid: str, prefix: str, name: str) -> None:
    run_filter = f"{RUN_LABEL}={uid}"
    containers = {c.id: c for c in client.containers.list(all=True, filters={"name": name})}
    for c in client.containers.list(all=True, filters={"label": run_filter}):
        containers[c.id] = c
    for container in containers.values():
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)
    for image in client.images.list():
        for repo_tag in image.tags:
            if repo_tag.startswith(prefix):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    client.images.remove(repo_tag, force=True)
    # Dangling layers of failed/cancelled builds (children first: retry a few rounds).
    for _ in range(5):
        leftovers = client.images.list(all=True, filters={"label": run_filter})
        if not leftovers:
            break
        for image in leftovers:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                client.images.remove(image.id, force=True)


def make_env(
    docker_client: docker.DockerClient, test_images: list[str], tmp_path: Path
) -> Iterator[Env]:
    """The body of each test module's ``env`` fixture: a runtime of its own, cleaned up after."""
    assert BUSYBOX_IMAGE in test_images
    uid = uuid.uuid4().hex[:12]
    prefix = f"teg-test-{uid}-"
    name = f"teg-test-{uid}"
    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("mounted\n")
    contexts = tmp_path / "contexts"
    contexts.mkdir()
    settings = DockerRuntimeSettings(
        container_name=name,
        image_prefix=prefix,
        network_mode="host",
        privileged=False,
        restart_policy="no",
        environment={"TEG_TEST_RUN": uid},
        mounts=(f"{data}:/teg-data:ro",),
        build_timeout_s=120,
        prune_label=f"{RUN_LABEL}={uid}",
    )
    try:
        yield Env(uid, prefix, name, docker_client, DockerRuntime(settings), contexts)
    finally:
        cleanup(docker_client, uid, prefix, name)
