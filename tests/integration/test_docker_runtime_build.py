"""DockerRuntime.build_image against the real dockerd: log, labels, failures, timeout, context.

(helpers in docker_runtime_support.py).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker_runtime_support import BUSYBOX_IMAGE, RUN_LABEL, SLEEP_CMD, Env, make_env

from teg_ota.adapters.docker import DockerRuntime, DockerRuntimeSettings
from teg_ota.ports.container_runtime import (
    COMMIT_LABEL,
    VERSION_LABEL,
    BuildFailed,
    ContainerRuntimeError,
    ControllerState,
    StartFailed,
)


@pytest.fixture
def env(
    docker_client: docker.DockerClient, test_images: list[str], tmp_path: Path
) -> Iterator[Env]:
    yield from make_env(docker_client, test_images, tmp_path)


@pytest.mark.timeout(60)
def test_build_streams_progress_and_sets_labels(env: Env) -> None:
    marker = f"teg-build-marker-{env.uid}"
    lines: list[str] = []
    labels = {VERSION_LABEL: "v1.0.0", COMMIT_LABEL: "a" * 40}
    tag = env.build(f"RUN echo {marker}\n{SLEEP_CMD}", labels=labels, on_progress=lines.append)

    assert marker in lines, lines  # the RUN step's own output, not just the step header
    assert any(line.startswith("Step 1/") for line in lines), lines
    assert env.runtime.image_exists(tag)
    image_labels = env.runtime.image_labels(tag)
    assert image_labels is not None
    # The busybox base image brings labels of its own: ours must all be there.
    assert {RUN_LABEL: env.uid, **labels}.items() <= image_labels.items()
    assert env.runtime.image_labels(env.tag("v9.9.9")) is None
    assert not env.runtime.image_exists(env.tag("v9.9.9"))


@pytest.mark.timeout(60)
def test_build_failure_carries_the_engines_message(env: Env) -> None:
    lines: list[str] = []
    with pytest.raises(BuildFailed) as caught:
        env.build(
            f"RUN echo about-to-fail-{env.uid} && exit 7\n{SLEEP_CMD}",
            on_progress=lines.append,
        )
    message = str(caught.value)
    assert "returned a non-zero code: 7" in message
    assert f"about-to-fail-{env.uid}" in message  # the failing command, as dockerd names it
    assert f"about-to-fail-{env.uid}" in lines  # its output was still streamed
    assert not env.runtime.image_exists(env.tag())


@pytest.mark.timeout(60)
def test_build_is_cancelled_at_its_timeout(env: Env) -> None:
    slow = DockerRuntime(
        DockerRuntimeSettings(
            container_name=env.name, image_prefix=env.prefix, privileged=False, build_timeout_s=2
        )
    )
    started = time.monotonic()
    with pytest.raises(BuildFailed, match=r"timed out after 2 s"):
        env.build(f"RUN sleep 30\n{SLEEP_CMD}", runtime=slow)
    assert time.monotonic() - started < 15
    assert not env.runtime.image_exists(env.tag())


@pytest.mark.timeout(60)
def test_build_context_never_contains_git_and_honours_dockerignore(env: Env) -> None:
    token = f"tok-{env.uid}"
    context = Path(tempfile.mkdtemp(dir=env.contexts))
    git_dir = context / ".git"
    (git_dir / "objects").mkdir(parents=True)
    (git_dir / "secret").write_text("do not ship\n")
    (git_dir / "config").write_text(
        f'[remote "origin"]\n\turl = https://user:{token}@git.example.invalid/x.git\n'
    )
    (context / "kept.txt").write_text("kept\n")
    (context / "ignored.txt").write_text("ignored\n")
    (context / "logs").mkdir()
    (context / "logs" / "a.log").write_text("ignored dir\n")
    # A negation cannot bring .git back either.
    (context / ".dockerignore").write_text("# comment\n\nignored.txt\nlogs/\n!.git/config\n")
    (context / "Dockerfile").write_text(
        f"FROM {BUSYBOX_IMAGE}\n"
        f"LABEL {RUN_LABEL}={env.uid}\n"
        "COPY . /ctx\n"
        "RUN ls -la /ctx\n"
        "RUN test ! -e /ctx/.git && test -f /ctx/kept.txt && test -f /ctx/Dockerfile\n"
        "RUN test ! -e /ctx/ignored.txt && test ! -e /ctx/logs\n"
        f"{SLEEP_CMD}\n"
    )
    lines: list[str] = []
    tag = env.tag()
    env.runtime.build_image(str(context), tag, {VERSION_LABEL: "v1.0.0"}, lines.append)

    assert env.runtime.image_exists(tag)
    # The names in the `ls -la /ctx` output ("drwxr-xr-x 2 root root 4096 <date> name").
    listed = {line.split()[-1] for line in lines if line[:1] in "-dl" and len(line.split()) >= 9}
    assert {"kept.txt", "Dockerfile", ".dockerignore"} <= listed, lines
    assert not {".git", "ignored.txt", "logs"} & listed, lines
    assert not any(token in line for line in lines)
    # The context directory itself is left as it was.
    assert (git_dir / "secret").read_text() == "do not ship\n"


@pytest.mark.timeout(60)
def test_a_failing_progress_callback_does_not_fail_the_build(env: Env) -> None:
    client_before = env.runtime._client()
    calls: list[str] = []

    def closed_stdout(line: str) -> None:
        calls.append(line)
        raise BrokenPipeError(32, "Broken pipe")

    marker = f"teg-after-broken-pipe-{env.uid}"
    tag = env.build(f"RUN echo {marker}\n{SLEEP_CMD}", on_progress=closed_stdout)

    assert env.runtime.image_exists(tag)
    assert len(calls) == 1  # not called again after it raised
    assert env.runtime._client() is client_before  # the shared client was not dropped
    assert env.runtime.controller_state() == ControllerState(exists=False)


def test_refuses_image_names_outside_its_prefix(env: Env) -> None:
    for bad in ("busybox:latest", f"{env.prefix}v1", f"{env.prefix}v1:other", f"x/{env.prefix}v1"):
        with pytest.raises(ContainerRuntimeError, match="refusing image name"):
            env.runtime.image_exists(bad)
    with pytest.raises(StartFailed, match="refusing image name"):
        env.runtime.run_controller(BUSYBOX_IMAGE, {})
    with pytest.raises(BuildFailed, match="refusing image name"):
        env.runtime.build_image(str(env.contexts), "--evil", {})
