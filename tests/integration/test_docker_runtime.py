"""DockerRuntime against the real dockerd (no mocks).

Every test gets its own container name, image prefix and run label, and removes what it made
(containers, tagged images, and dangling intermediate images of failed builds, all found by the
run label that every test Dockerfile sets). Controller images are built FROM the local busybox
test image; containers run with host networking and unprivileged (privileged fails here).

The engine-restart test starts a second, private dockerd on its own socket, data root and exec
root, so the shared engine that other tests use is never disturbed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from teg_ota.adapters.docker_runtime import (
    DockerRuntime,
    DockerRuntimeSettings,
    _free_bytes_at,
    parse_docker_time_ms,
)
from teg_ota.domain.model.versions import image_tag, parse_version
from teg_ota.ports.container_runtime import (
    COMMIT_LABEL,
    VERSION_LABEL,
    BuildFailed,
    ContainerRuntimeError,
    ControllerExit,
    ControllerState,
    Health,
    RuntimeUnavailable,
    StartFailed,
)

BUSYBOX_IMAGE = "teg-ota-test-busybox:latest"
"""Built by the ``test_images`` session fixture (conftest.py): FROM scratch + busybox."""
RUN_LABEL = "org.teg.test.run"

SLEEP_CMD = 'CMD ["/bin/sleep", "3600"]'
EXIT3_CMD = 'CMD ["/bin/sh", "-c", "sleep 1; exit 3"]'
UNHEALTHY = (
    'HEALTHCHECK --interval=1s --timeout=2s --retries=1 CMD ["/bin/false"]\n'
    'CMD ["/bin/sleep", "3600"]'
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


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


def _cleanup(client: docker.DockerClient, uid: str, prefix: str, name: str) -> None:
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


@pytest.fixture
def env(
    docker_client: docker.DockerClient, test_images: list[str], tmp_path: Path
) -> Iterator[Env]:
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
        _cleanup(docker_client, uid, prefix, name)


# --- build --------------------------------------------------------------------------------------


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


# --- run, state, stop ---------------------------------------------------------------------------


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


# --- waiting ------------------------------------------------------------------------------------


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


# --- housekeeping -------------------------------------------------------------------------------


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
        _free_bytes_at(str(tmp_path / "gone"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ContainerRuntimeError):
        _free_bytes_at(str(tmp_path / "file" / "below"))
    assert _free_bytes_at(str(tmp_path)) > 0


def test_parse_docker_time_ms() -> None:
    assert parse_docker_time_ms("2024-05-06T07:08:09.123456789Z") == 1714979289123
    assert parse_docker_time_ms("2024-05-06T09:08:09.5+02:00") == 1714979289500
    assert parse_docker_time_ms("2024-05-06T07:08:09Z") == 1714979289000
    assert parse_docker_time_ms("0001-01-01T00:00:00Z") is None
    assert parse_docker_time_ms("") is None
    assert parse_docker_time_ms(None) is None


# --- the engine going away and coming back ------------------------------------------------------


class PrivateDockerd:
    """A second dockerd on its own socket, data root, exec root and containerd namespace."""

    def __init__(self, base: Path, uid: str) -> None:
        self.base = base
        self.uid = uid
        self.socket = base / "docker.sock"
        self.log = base / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 45) -> None:
        cmd = [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--host",
            self.base_url,
            "--data-root",
            str(self.base / "root"),
            "--exec-root",
            str(self.base / "exec"),
            "--pidfile",
            str(self.base / "docker.pid"),
            "--containerd-namespace",
            f"teg-test-{self.uid}",
            "--containerd-plugins-namespace",
            f"teg-test-{self.uid}-plugins",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                pytest.fail(f"private dockerd did not come up:\n{tail}", pytrace=False)
            time.sleep(0.1)

    def answers(self) -> bool:
        """Ping with a fresh low-level client (fixed API version: no negotiation)."""
        if not self.socket.exists():
            return False
        client = docker.APIClient(base_url=self.base_url, version="1.41", timeout=2)
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, the way a crash (or the OOM killer) takes the daemon away."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self._reap_containerd()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self._reap_containerd()

    def _containerd_pid(self) -> int | None:
        """The managed containerd's pid, if that process is ours (cmdline names our base)."""
        pid_file = self.base / "exec" / "containerd" / "containerd.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.base).encode() in cmdline else None

    def _reap_containerd(self) -> None:
        """Make sure the managed containerd is gone and forget its pid file.

        It dies with dockerd (parent-death signal), but on this machine PID 1 does not reap
        orphans: it stays a zombie, and the next dockerd, seeing its pid "alive" in the pid
        file, waits for it to answer instead of starting a new one ("timeout waiting for
        containerd to start"). A real init (systemd on the Pi) reaps it.
        """
        pid = self._containerd_pid()
        if pid is not None:
            deadline = time.monotonic() + 10
            while not _dead_or_zombie(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _dead_or_zombie(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        (self.base / "exec" / "containerd" / "containerd.pid").unlink(missing_ok=True)

    def remove(self) -> None:
        # overlay2 bind-mounts its home over itself; unmount whatever is left under base.
        with open("/proc/self/mountinfo") as mountinfo:
            points = [line.split()[4] for line in mountinfo]
        for point in sorted((p for p in points if p.startswith(str(self.base))), reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def _dead_or_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


@pytest.mark.timeout(180)
def test_same_runtime_object_survives_the_engine_going_away_and_back() -> None:
    if shutil.which("dockerd") is None:
        reason = "the dockerd binary is not installed (apt-get install docker.io)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
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
