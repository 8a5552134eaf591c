"""DockerRuntime.load_image against the real dockerd: ``docker save`` archives in, labelled
controller images out (helpers in docker_runtime_support.py).

Archives are made with the SDK (``get_image``) or the docker CLI (several images), from
images built FROM the busybox test image with the run label, so the env cleanup removes
everything a test loads, under whatever name.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import zstandard  # a dependency: its absence is a failure, never a skip
from docker_runtime_support import RUN_LABEL, SLEEP_CMD, Env, make_env
from harness import in_ci

from teg_ota.adapters.docker import DockerRuntime, DockerRuntimeSettings
from teg_ota.adapters.docker import build as docker_build
from teg_ota.ports.container_runtime import (
    COMMIT_LABEL,
    VERSION_LABEL,
    BuildFailed,
    RuntimeUnavailable,
)


@pytest.fixture
def env(
    docker_client: docker.DockerClient, test_images: list[str], tmp_path: Path
) -> Iterator[Env]:
    yield from make_env(docker_client, test_images, tmp_path)


def image_id(env: Env, ref: str) -> str | None:
    try:
        found: str = env.client.api.inspect_image(ref)["Id"]
    except docker.errors.NotFound:
        return None
    return found


def build_source(env: Env, marker: str, foreign: str) -> str:
    """An image only this test has, tagged only ``foreign``; returns its id."""
    tag = env.build(f"RUN echo {marker} > /marker\n{SLEEP_CMD}", version="v0.0.1", labels={})
    source = image_id(env, tag)
    assert source is not None
    env.client.api.tag(source, *foreign.rsplit(":", 1))
    env.client.api.remove_image(tag)
    return source


def ancestors(env: Env, ref: str) -> list[str]:
    """The ids of the images ``ref`` was built on, nearest first (classic builder parents)."""
    found: list[str] = []
    parent = env.client.api.inspect_image(ref)["Parent"]
    while parent:
        found.append(parent)
        parent = env.client.api.inspect_image(parent)["Parent"]
    return found


def save(env: Env, ref: str, path: Path, compress: bool) -> str:
    data = b"".join(env.client.api.get_image(ref))
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def forget(env: Env, image: str) -> None:
    """Remove ``image`` and its names, so that loading it creates it anew."""
    env.client.api.remove_image(image, force=True)
    assert image_id(env, image) is None


@pytest.mark.timeout(120)
def test_load_gzip_archive_as_a_new_tag_with_labels(env: Env, tmp_path: Path) -> None:
    foreign = f"{env.prefix}foreign:src"
    source = build_source(env, f"marker-{env.uid}", foreign)
    archive = save(env, foreign, tmp_path / "controller.tar.gz", compress=True)
    forget(env, source)

    tag = env.tag("v2.0.0")
    labels = {
        VERSION_LABEL: "v2.0.0",
        COMMIT_LABEL: "c" * 40,
        "org.teg.test.quoted": 'it\'s "quoted" $HOME \\',
    }
    env.runtime.load_image(archive, tag, labels)

    image_labels = env.runtime.image_labels(tag)
    assert image_labels is not None
    assert {RUN_LABEL: env.uid, **labels}.items() <= image_labels.items()
    assert [info.tag for info in env.runtime.list_controller_images()] == [tag]
    # The archive's own name was not created; the loaded image stays only as the parent.
    assert image_id(env, foreign) is None
    loaded = env.client.api.inspect_image(source)
    assert loaded["RepoTags"] == []
    assert source in ancestors(env, tag)
    dangling = env.client.images.list(filters={"dangling": True, "label": env.run_filter})
    assert dangling == []

    env.runtime.run_controller(tag, {})
    state = env.runtime.controller_state()
    assert state.running and state.version == "v2.0.0"
    marker = env.client.containers.get(env.name).exec_run(["cat", "/marker"]).output
    assert marker == f"marker-{env.uid}\n".encode()


@pytest.mark.timeout(120)
def test_load_plain_archive_never_moves_an_existing_name(env: Env, tmp_path: Path) -> None:
    shared = f"{env.prefix}shared:latest"
    first = build_source(env, f"first-{env.uid}", shared)
    archive = save(env, shared, tmp_path / "first.tar", compress=False)
    second = build_source(env, f"second-{env.uid}", shared)  # the name moves to another image
    assert first != second

    tag = env.tag("v3.0.0")
    env.runtime.load_image(archive, tag, {VERSION_LABEL: "v3.0.0"})

    assert image_id(env, shared) == second  # `docker load` would have moved it to `first`
    assert first in ancestors(env, tag)
    assert (env.runtime.image_labels(tag) or {})[VERSION_LABEL] == "v3.0.0"

    # Loading the same archive again (an update retried) is fine, labels replaced.
    env.runtime.load_image(archive, tag, {VERSION_LABEL: "v3.0.0", COMMIT_LABEL: "d" * 40})
    assert (env.runtime.image_labels(tag) or {})[COMMIT_LABEL] == "d" * 40
    assert image_id(env, shared) == second


@pytest.mark.timeout(120)
def test_a_failed_labelling_removes_the_image_it_loaded_but_nothing_older(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise BuildFailed("labelling refused by the test")

    foreign = f"{env.prefix}foreign:src"
    source = build_source(env, f"dangling-{env.uid}", foreign)
    archive = save(env, foreign, tmp_path / "controller.tar.gz", compress=True)
    monkeypatch.setattr(docker_build, "_build_from", refuse)
    with pytest.raises(BuildFailed, match="labelling refused"):
        env.runtime.load_image(archive, env.tag(), {})
    assert image_id(env, source) == source  # it was there before the load: kept, still named
    assert image_id(env, foreign) == source

    forget(env, source)
    with pytest.raises(BuildFailed, match="labelling refused"):
        env.runtime.load_image(archive, env.tag(), {})
    assert image_id(env, source) is None  # loaded by this call only: not left dangling
    assert not env.runtime.image_exists(env.tag())


@pytest.mark.timeout(60)
def test_a_file_that_is_no_image_archive_is_refused(env: Env, tmp_path: Path) -> None:
    text = tmp_path / "notes.tar.gz"
    text.write_text("this is not an image\n" * 100)
    with pytest.raises(BuildFailed, match="corrupt or not a"):
        env.runtime.load_image(str(text), env.tag(), {})

    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        info = tarfile.TarInfo("README")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    no_image = tmp_path / "files.tar"
    no_image.write_bytes(gzip.compress(plain.getvalue()))
    with pytest.raises(BuildFailed, match="holds no image"):
        env.runtime.load_image(str(no_image), env.tag(), {})

    with pytest.raises(BuildFailed, match="is not a file"):
        env.runtime.load_image(str(tmp_path / "missing.tar"), env.tag(), {})
    with pytest.raises(BuildFailed, match="is not a file"):
        env.runtime.load_image(str(tmp_path), env.tag(), {})
    assert not env.runtime.image_exists(env.tag())


@pytest.mark.timeout(120)
def test_an_archive_with_several_images_is_refused(env: Env, tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        reason = "the docker CLI is not installed (apt-get install docker.io)"
        if in_ci():  # under CI a skipped test must never count as passing
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    one, two = f"{env.prefix}one:latest", f"{env.prefix}two:latest"
    build_source(env, f"one-{env.uid}", one)
    build_source(env, f"two-{env.uid}", two)
    archive = tmp_path / "two.tar"
    subprocess.run(["docker", "save", "-o", str(archive), one, two], check=True, timeout=60)

    with pytest.raises(BuildFailed, match="holds 2 images; exactly one is expected"):
        env.runtime.load_image(str(archive), env.tag(), {})
    assert not env.runtime.image_exists(env.tag())


@pytest.mark.timeout(60)
def test_the_engines_refusal_of_a_corrupt_image_is_a_build_failure(
    env: Env, tmp_path: Path
) -> None:
    """A well-formed archive whose layer is no layer: the engine's own message comes back."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    members: dict[str, bytes] = {
        "layer/layer.tar": b"not a layer tar" * 100,
        "config.json": config,
        "manifest.json": json.dumps(
            [{"Config": "config.json", "RepoTags": None, "Layers": ["layer/layer.tar"]}]
        ).encode(),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "corrupt.tar"
    archive.write_bytes(out.getvalue())

    with pytest.raises(BuildFailed) as caught:
        env.runtime.load_image(str(archive), env.tag(), {})
    assert str(caught.value).startswith(f"loading {env.tag()} from 'corrupt.tar': ")
    assert not env.runtime.image_exists(env.tag())


def test_tag_and_labels_are_checked_before_the_engine_is_contacted(tmp_path: Path) -> None:
    down = DockerRuntime(
        DockerRuntimeSettings(
            container_name="teg-test-down",
            image_prefix="teg-test-down-",
            base_url=f"unix://{tmp_path}/no-engine.sock",
        )
    )
    archive = tmp_path / "x.tar"
    archive.write_bytes(b"x")
    with pytest.raises(BuildFailed, match="refusing image name"):
        down.load_image(str(archive), "busybox:latest", {})
    with pytest.raises(BuildFailed, match="control characters"):
        down.load_image(str(archive), "teg-test-down-v1:latest", {"k": "a\nFROM evil"})
    with pytest.raises(BuildFailed, match="refusing image label key"):
        down.load_image(str(archive), "teg-test-down-v1:latest", {'k" x': "v"})
    with pytest.raises(BuildFailed, match="corrupt or not a"):  # read before the engine, too
        down.load_image(str(archive), "teg-test-down-v1:latest", {})


def test_an_engine_that_is_down_is_runtime_unavailable(env: Env, tmp_path: Path) -> None:
    foreign = f"{env.prefix}foreign:src"
    build_source(env, f"down-{env.uid}", foreign)
    archive = save(env, foreign, tmp_path / "controller.tar.gz", compress=True)
    down = DockerRuntime(
        DockerRuntimeSettings(
            container_name=env.name,
            image_prefix=env.prefix,
            base_url=f"unix://{tmp_path}/no-engine.sock",
        )
    )
    with pytest.raises(RuntimeUnavailable, match="container engine unavailable"):
        down.load_image(archive, env.tag(), {VERSION_LABEL: "v1.0.0"})


@pytest.mark.timeout(120)
def test_load_zstd_archive(env: Env, tmp_path: Path) -> None:
    foreign = f"{env.prefix}foreign:zstd"
    source = build_source(env, f"zstd-{env.uid}", foreign)
    data = b"".join(env.client.api.get_image(foreign))
    archive = tmp_path / "controller.tar.zst"
    archive.write_bytes(zstandard.ZstdCompressor().compress(data))
    forget(env, source)

    env.runtime.load_image(str(archive), env.tag("v4.0.0"), {VERSION_LABEL: "v4.0.0"})
    assert (env.runtime.image_labels(env.tag("v4.0.0")) or {})[VERSION_LABEL] == "v4.0.0"
