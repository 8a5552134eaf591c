"""The controller container as the original ran it, and better (issue 11), on the real
dockerd: log rotation, the default mounts, the stop grace, and a crash's last output kept
(in teg-ota's log, in ``sw_error``, and in the failed container kept for ``docker logs``).

The first tests drive ``DockerRuntime`` with the settings the composition root makes
(helpers in docker_runtime_support.py); the last ones run ``teg-ota run`` end to end with
the ThingsBoard stand-in (fixtures of test_e2e_runner.py).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import test_e2e_runner as base
from docker_runtime_support import RUN_LABEL, Env, make_env
from gateway_under_test import SW_TITLE
from harness import wait_until
from loguru import logger

from teg_ota.adapters.docker import DockerRuntime
from teg_ota.app.container import _docker_settings
from teg_ota.app.controller_mounts import PI_TOOLS, controller_mounts
from teg_ota.app.settings import Settings
from teg_ota.ports.container_runtime import VERSION_LABEL

controller_repo = base.controller_repo
base_v1_image = base.base_v1_image
e2e = base.e2e

IGNORES_SIGTERM = (
    "CMD trap 'echo got TERM, ignoring it' TERM; echo up; while true; do sleep 1; done"
)
CRASHES = r"""CMD echo booting; echo "reading /root/data/config"; sleep 0.3; \
    printf '\033[31mFATAL: no serial port\033[0m\n' >&2; exit 3"""
"""Prints to stdout, then to stderr: the engine copies the two streams concurrently, so only
a pause keeps their lines in order in its log."""


@pytest.fixture
def env(
    docker_client: docker.DockerClient, test_images: list[str], tmp_path: Path
) -> Iterator[Env]:
    yield from make_env(docker_client, test_images, tmp_path)


def with_settings(env: Env, **changes: object) -> DockerRuntime:
    return DockerRuntime(dataclasses.replace(env.runtime.settings, **changes))  # type: ignore[arg-type]


def app_runtime(env: Env, settings: Settings) -> DockerRuntime:
    """A runtime with the mounts, log and stop settings the composition root derives from
    ``settings``, and this test's name, prefix, label and unprivileged engine settings."""
    derived = _docker_settings(settings)
    return with_settings(
        env,
        mounts=derived.mounts,
        tool_mounts=derived.tool_mounts,
        create_dirs=derived.create_dirs,
        stop_timeout_s=derived.stop_timeout_s,
        log_driver=derived.log_driver,
        log_options=derived.log_options,
    )


def wait_exited(env: Env, name: str, timeout: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        attrs = env.client.api.inspect_container(name)
        if not attrs["State"]["Running"]:
            return attrs  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{name} still running"
        time.sleep(0.1)


def exists(env: Env, name: str) -> bool:
    try:
        env.client.api.inspect_container(name)
    except docker.errors.NotFound:
        return False
    return True


# ------------------------------------------------------------------------------ log rotation


@pytest.mark.timeout(60)
def test_the_default_log_config_rotates(env: Env) -> None:
    runtime = app_runtime(env, Settings(data_path=str(env.contexts.parent / "gw")))
    runtime.run_controller(env.build(runtime=runtime), {RUN_LABEL: env.uid})

    log_config = env.client.api.inspect_container(env.name)["HostConfig"]["LogConfig"]
    assert log_config == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "5"}}


@pytest.mark.timeout(60)
def test_log_driver_and_options_are_settable(env: Env) -> None:
    settings = dataclasses.replace(
        Settings(data_path=str(env.contexts.parent / "gw")),
        log_driver="local",
        log_options={"max-size": "1m", "max-file": "2"},
    )
    runtime = app_runtime(env, settings)
    runtime.run_controller(env.build(runtime=runtime), {RUN_LABEL: env.uid})

    log_config = env.client.api.inspect_container(env.name)["HostConfig"]["LogConfig"]
    assert log_config == {"Type": "local", "Config": {"max-size": "1m", "max-file": "2"}}


# ------------------------------------------------------------------------------------ mounts


@pytest.mark.timeout(60)
def test_data_and_logs_are_mounted_and_created_with_mode_0755(env: Env, tmp_path: Path) -> None:
    gateway_data = tmp_path / "gateway-data"  # missing: created before the container
    settings = Settings(data_path=str(gateway_data))
    runtime = app_runtime(env, settings)
    tag = env.build(runtime=runtime)

    old_umask = os.umask(0o077)  # the mode is set, not left to the umask
    try:
        runtime.run_controller(tag, {RUN_LABEL: env.uid})
    finally:
        os.umask(old_umask)

    logs = gateway_data / "logs"
    for directory in (gateway_data, logs):
        assert directory.is_dir()
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755, directory
    attrs = env.client.api.inspect_container(env.name)
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/root/data"]["Source"] == str(gateway_data)
    assert mounts["/root/logs"]["Source"] == str(logs)
    assert mounts["/root/data"]["RW"] is True and mounts["/root/logs"]["RW"] is True
    assert f"{gateway_data}:/root/data:rw" in attrs["HostConfig"]["Binds"]
    # The operator's mount (from make_env's settings) is replaced here: only the derived ones.
    container = env.client.containers.get(env.name)
    container.exec_run(["sh", "-c", "echo written > /root/logs/controller.log"])
    assert (logs / "controller.log").read_text() == "written\n"


@pytest.mark.timeout(60)
def test_pi_tools_are_mounted_read_only_only_when_they_exist(env: Env, tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "vcgencmd").write_text("#!/bin/sh\necho temp=42.0\n")
    present, missing = str(tools / "vcgencmd"), str(tools / "pigs")
    mounts = controller_mounts(Settings(data_path=str(tmp_path / "gw")), tools=(present, missing))
    runtime = with_settings(
        env, mounts=mounts.mounts, tool_mounts=mounts.tools, create_dirs=mounts.directories
    )

    runtime.run_controller(env.build(runtime=runtime), {RUN_LABEL: env.uid})

    attrs = env.client.api.inspect_container(env.name)
    by_target = {m["Destination"]: m for m in attrs["Mounts"]}
    assert by_target[present]["RW"] is False
    assert missing not in by_target, "a missing tool is not mounted (Docker would make a dir)"
    assert not (tools / "pigs").exists()


@pytest.mark.timeout(60)
def test_the_real_pi_tool_list_mounts_what_this_host_has(env: Env, tmp_path: Path) -> None:
    runtime = app_runtime(env, Settings(data_path=str(tmp_path / "gw")))
    runtime.run_controller(env.build(runtime=runtime), {RUN_LABEL: env.uid})

    attrs = env.client.api.inspect_container(env.name)
    assert_pi_tools_mounted_as_they_can_be(env.client, attrs)
    for tool in PI_TOOLS:
        if not os.path.exists(tool):
            assert not os.path.lexists(tool), f"{tool} was created on the host"


def link_in_container(client: docker.DockerClient, name: str, path: str) -> str:
    """What ``path`` links to in the running container (busybox's ``readlink``; empty when
    it is no link or not there)."""
    result = client.containers.get(name).exec_run(["/bin/busybox", "readlink", path])
    return result.output.decode().strip() if result.exit_code == 0 else ""


def assert_pi_tools_mounted_as_they_can_be(
    client: docker.DockerClient, attrs: dict[str, object]
) -> None:
    """Each Pi tool the host has is mounted read-only, except where the image's path is a
    link to another program: the test image's ``/bin/uptime`` links to ``/bin/busybox``,
    and a mount there would replace busybox, every command of the image."""
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}  # type: ignore[attr-defined]
    name = str(attrs["Name"]).lstrip("/")
    for tool in PI_TOOLS:
        if tool in mounts:
            assert mounts[tool]["RW"] is False, tool
            continue
        if not os.path.exists(tool):
            continue
        target = link_in_container(client, name, tool)
        assert target and os.path.basename(target) != os.path.basename(tool), (
            f"{tool} exists on the host and is no link to another program in the image, "
            f"yet not mounted ({target!r})"
        )
    busybox = client.containers.get(name).exec_run(["/bin/busybox", "echo", "intact"])
    assert busybox.output.decode().strip() == "intact", "busybox itself must stay busybox"


# -------------------------------------------------------------------------------- stop grace


@pytest.mark.timeout(90)
def test_the_stop_grace_is_the_containers_and_teg_otas(env: Env, tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(data_path=str(tmp_path / "gw")), stop_grace_s=2)
    runtime = app_runtime(env, settings)
    tag = env.build(IGNORES_SIGTERM, runtime=runtime)
    runtime.run_controller(tag, {RUN_LABEL: env.uid})
    assert env.client.api.inspect_container(env.name)["Config"]["StopTimeout"] == 2

    started = time.monotonic()
    runtime.stop_controller(settings.stop_grace_s)  # as every stop path passes it
    elapsed = time.monotonic() - started
    assert 1.8 <= elapsed < 8, elapsed
    attrs = env.client.api.inspect_container(env.name)
    assert attrs["State"]["ExitCode"] == 137, "killed after the grace"
    assert "got TERM, ignoring it" in env.client.api.logs(env.name).decode()

    # A plain `docker stop` (and the engine's shutdown) uses the container's StopTimeout.
    runtime.run_controller(tag, {RUN_LABEL: env.uid})
    time.sleep(0.5)
    started = time.monotonic()
    env.client.api.stop(env.name)  # no timeout: the engine's default would be 10 s
    elapsed = time.monotonic() - started
    assert 1.8 <= elapsed < 8, elapsed


@pytest.mark.timeout(30)
def test_the_default_stop_timeout_is_60_s(env: Env, tmp_path: Path) -> None:
    runtime = app_runtime(env, Settings(data_path=str(tmp_path / "gw")))
    runtime.run_controller(env.build(runtime=runtime), {RUN_LABEL: env.uid})
    assert env.client.api.inspect_container(env.name)["Config"]["StopTimeout"] == 60


# --------------------------------------------------------------------- a crash's last output


@pytest.mark.timeout(90)
def test_a_crashed_container_is_logged_kept_and_removed_after_a_success(env: Env) -> None:
    kept = f"{env.name}-failed"
    runtime = with_settings(env, crash_log_lines=2)
    crash = env.build(CRASHES, version="v2.0.0", runtime=runtime)
    good = env.build(version="v1.0.0", runtime=runtime)
    messages: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="INFO")
    try:
        runtime.run_controller(crash, {RUN_LABEL: env.uid, VERSION_LABEL: "v2.0.0"})
        wait_exited(env, env.name)
        # As the original ran it (TEG_CONTROLLER_RESTART_POLICY=on-failure): an engine
        # restart must not start the kept one again.
        env.client.api.update_container(env.name, restart_policy={"Name": "on-failure"})
        assert (
            runtime.last_output(3)
            == (
                "booting",
                "reading /root/data/config",
                "FATAL: no serial port",
            )[-2:]
        ), "at most crash_log_lines, control characters stripped"
        crashed_id = env.client.api.inspect_container(env.name)["Id"]

        runtime.run_controller(good, {RUN_LABEL: env.uid, VERSION_LABEL: "v1.0.0"})
    finally:
        logger.remove(sink)
        logger.disable("teg_ota")  # the library's default

    logged = "\n".join(messages)
    assert "exited with code 3; its last 2 line(s) of output" in logged, logged
    assert "  | reading /root/data/config\n  | FATAL: no serial port" in logged, logged
    assert "\x1b" not in logged
    attrs = env.client.api.inspect_container(kept)
    assert attrs["Id"] == crashed_id, "kept, renamed"
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "no", "never started again"
    assert "FATAL: no serial port" in env.client.api.logs(kept, stderr=True).decode()
    # The renamed one never counts as the controller.
    state = runtime.controller_state()
    assert state.running and state.version == "v1.0.0"

    # A healthy controller stopped on purpose is not a failure: removed, the kept one stays.
    runtime.stop_controller(0)
    stopped_id = env.client.api.inspect_container(env.name)["Id"]
    runtime.run_controller(good, {RUN_LABEL: env.uid, VERSION_LABEL: "v1.0.0"})
    assert env.client.api.inspect_container(kept)["Id"] == crashed_id
    assert stopped_id not in {c.id for c in env.client.containers.list(all=True)}

    # The next failure replaces the kept one.
    runtime.stop_controller(0)
    runtime.run_controller(crash, {RUN_LABEL: env.uid, VERSION_LABEL: "v2.0.0"})
    second_id = wait_exited(env, env.name)["Id"]
    runtime.run_controller(good, {RUN_LABEL: env.uid, VERSION_LABEL: "v1.0.0"})
    assert env.client.api.inspect_container(kept)["Id"] == second_id
    assert crashed_id not in {c.id for c in env.client.containers.list(all=True)}

    # A success prunes stopped controller containers, the kept one included.
    assert runtime.prune_stopped_containers() >= 1
    assert not exists(env, kept)
    assert runtime.controller_state().running


@pytest.mark.timeout(60)
def test_crash_log_lines_0_removes_a_crashed_container_as_before(env: Env) -> None:
    runtime = with_settings(env, crash_log_lines=0)
    crash = env.build(CRASHES, version="v2.0.0", runtime=runtime)
    runtime.run_controller(crash, {RUN_LABEL: env.uid})
    wait_exited(env, env.name)
    assert runtime.last_output(3) == ()

    runtime.run_controller(crash, {RUN_LABEL: env.uid})
    assert not exists(env, f"{env.name}-failed")


# ---------------------------------------------------------------------- end to end: teg-ota run


def test_an_update_runs_the_controller_with_rotation_mounts_and_grace(e2e: base.E2E) -> None:
    runner = e2e.start_gateway()
    since = e2e.standin.mark()

    e2e.standin.assign(SW_TITLE, "v1.1")
    e2e.wait_state(runner, "UPDATED", since)

    attrs = e2e.wait_controller("v1.1")
    host = attrs["HostConfig"]
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "5"},
    }
    assert attrs["Config"]["StopTimeout"] == 60
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/root/data"]["Source"] == str(e2e.data) and mounts["/root/data"]["RW"]
    assert mounts["/root/logs"]["Source"] == str(e2e.data / "logs")
    assert mounts["/root/logs"]["RW"]
    assert stat.S_IMODE((e2e.data / "logs").stat().st_mode) == 0o755
    assert_pi_tools_mounted_as_they_can_be(e2e.client, attrs)


def test_a_crash_shows_its_last_output_in_sw_error_and_is_kept_until_a_success(
    e2e: base.E2E,
) -> None:
    kept = f"{e2e.container_name}-failed"
    runner = e2e.start_gateway()
    since = e2e.standin.mark()

    e2e.standin.assign(SW_TITLE, "v2.0-broken")
    failed = e2e.wait_state(runner, "FAILED", since)

    error = str(failed.values["sw_error"])
    assert (
        "v2.0-broken exited with code 3 within 3 s; last output: controller v2.0-broken "
        "starting | controller v2.0-broken: fatal error, exiting with code 3; rolled back "
        "to v1.0"
    ) in error, error
    e2e.wait_controller("v1.0")
    runner.wait_log(r"its last 2 line\(s\) of output:", 10)
    runner.wait_log(r"\| controller v2\.0-broken: fatal error, exiting with code 3", 10)
    attrs = e2e.client.api.inspect_container(kept)
    assert attrs["Config"]["Labels"][VERSION_LABEL] == "v2.0-broken"
    assert not attrs["State"]["Running"]
    logs = e2e.client.api.logs(kept).decode()
    assert "fatal error, exiting with code 3" in logs, "docker logs <name>-failed works"

    since = e2e.standin.mark()
    e2e.standin.assign(SW_TITLE, "v1.1")
    e2e.wait_state(runner, "UPDATED", since)
    e2e.wait_controller("v1.1")

    def gone() -> bool:
        try:
            e2e.client.api.inspect_container(kept)
        except docker.errors.NotFound:
            return True
        return False

    # Housekeeping (which prunes it) follows the UPDATED report.
    wait_until(gone, 30, f"{kept} removed after the success", interval=0.2)
