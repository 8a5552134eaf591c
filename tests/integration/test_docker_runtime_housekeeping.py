"""DockerRuntime housekeeping against the real dockerd: prune, list/remove images, free disk.

(helpers in docker_runtime_support.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker_runtime_support import Env, make_env

from teg_ota.adapters.docker.runtime import free_bytes_at
from teg_ota.ports.container_runtime import (
    COMMIT_LABEL,
    VERSION_LABEL,
    ContainerRuntimeError,
    ControllerState,
)


@pytest.fixture
def env(
    docker_client: docker.DockerClient, test_images: list[str], tmp_path: Path
) -> Iterator[Env]:
    yield from make_env(docker_client, test_images, tmp_path)


@pytest.mark.timeout(60)
def test_prune_removes_stopped_containers_only(env: Env) -> None:
    tag = env.build()
    env.runtime.run_controller(tag, {})
    env.runtime.stop_controller(0)
    created = env.client.containers.create(tag, name=f"{env.name}-created", network_mode="host")
    running = env.client.containers.run(
        tag, name=f"{env.name}-running", detach=True, network_mode="host"
    )
    assert env.container_names() == sorted([env.name, created.name, running.name])

    assert env.runtime.prune_stopped_containers() == 2
    assert env.container_names() == [running.name]
    assert env.runtime.controller_state() == ControllerState(exists=False)
    assert env.runtime.prune_stopped_containers() == 0


@pytest.mark.timeout(60)
def test_list_and_remove_controller_images(env: Env) -> None:
    before = time.time()
    old = env.build(version="v1.0.0")
    new = env.build(version="v2.0.0", labels={VERSION_LABEL: "v2.0.0", COMMIT_LABEL: "b" * 40})

    images = {info.tag: info for info in env.runtime.list_controller_images()}
    assert set(images) == {old, new}
    assert images[new].labels[COMMIT_LABEL] == "b" * 40
    assert images[old].labels[VERSION_LABEL] == "v1.0.0"
    for info in images.values():
        assert before - 5 <= info.created_at <= time.time() + 5
        assert info.size_bytes > 0

    env.runtime.remove_image(old)
    assert [info.tag for info in env.runtime.list_controller_images()] == [new]
    env.runtime.remove_image(old)  # already gone: a no-op

    env.runtime.run_controller(new, {})
    with pytest.raises(ContainerRuntimeError, match=r"conflict|in use|being used|is using"):
        env.runtime.remove_image(new)
    assert env.runtime.image_exists(new)


@pytest.mark.timeout(60)
def test_listing_skips_names_with_the_prefix_that_are_not_controller_images(env: Env) -> None:
    tag = env.build(version="v1.0.0")
    image = env.client.images.get(tag)
    repository = tag.rsplit(":", 1)[0]
    assert image.tag(repository, "other")  # same prefix, another tag than :latest
    assert image.tag(f"{env.prefix}x--1", "latest")  # no version maps to this name
    names = set(env.client.images.get(tag).tags)
    assert {f"{repository}:other", f"{env.prefix}x--1:latest", tag} <= names

    newer = env.build(version="v2.0.0")
    assert [info.tag for info in env.runtime.list_controller_images()] == [tag, newer]


def test_free_disk_bytes(env: Env) -> None:
    free = env.runtime.free_disk_bytes()
    assert free > 0
    root = env.client.info()["DockerRootDir"]
    stats = os.statvfs(root if os.path.isdir(root) else "/")
    assert abs(free - stats.f_bavail * stats.f_frsize) < 1 << 30


def test_free_disk_bytes_turns_os_errors_into_runtime_errors(tmp_path: Path) -> None:
    # A data root that vanished between the check and the call, or is no directory.
    with pytest.raises(ContainerRuntimeError, match="reading the free space of"):
        free_bytes_at(str(tmp_path / "gone"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ContainerRuntimeError):
        free_bytes_at(str(tmp_path / "file" / "below"))
    assert free_bytes_at(str(tmp_path)) > 0
