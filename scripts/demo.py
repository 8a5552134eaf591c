#!/usr/bin/env python3
"""The main-job demo: `teg-ota run` updating a controller over the air, end to end.

What it does (scripts/demo.sh prepares the machine and the venv, then runs this):

1. starts a local Mosquitto (the host's /usr/sbin/mosquitto on 127.0.0.1:<free port>);
2. builds a sample controller Git repository with tags v1.0, v1.1 (good), v2.0-broken
   (exits after a second) and v3.0-badbuild, in a temporary directory;
3. starts `teg-ota run` (a subprocess) with TEG_DEFAULT_CONTROLLER_VERSION=v1.0;
4. plays ThingsBoard: waits for v1.0 to be reported, assigns v1.1 and waits for UPDATED,
   then assigns v2.0-broken and waits for FAILED (the gateway rolls back to v1.1);
5. prints a timeline of everything the gateway reports, stops everything (SIGTERM to the
   runner, removes the demo's container and images, stops Mosquitto).

Exit status 0 when the expected timeline happened, 1 otherwise (the runner's log is shown).
``--keep`` keeps the temporary directory (runner log, data dir, repository) afterwards.
Needs a Docker engine and the local image teg-ota-test-busybox:latest
(scripts/ensure-infra.sh provides both). Takes about a minute.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # the stand-in and the repo builder

import docker  # noqa: E402 - after the path set-up above
from controller_repo import BASE_IMAGE, make_controller_repo, remove_dangling_layers  # noqa: E402
from docker.models.containers import Container  # noqa: E402
from tb_standin import UPDATE_STATES, Telemetry, ThingsBoardStandIn  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
SW_TITLE = "teg-controller"
VERSION_LABEL = "org.teg.controller.version"

_T0 = time.monotonic()
_PRINT = threading.Lock()  # the stand-in reports from its MQTT thread


def say(*lines: str) -> None:
    with _PRINT:
        stamp = f"[+{time.monotonic() - _T0:5.1f}s]"
        for line in lines:
            print(f"{stamp} {line}", flush=True)
            stamp = " " * len(stamp)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


class DemoFailed(Exception):
    pass


def check(condition: bool, text: str) -> None:
    if not condition:
        raise DemoFailed(text)
    say(f"check: {text}")


def show_telemetry(entry: Telemetry) -> None:
    values = dict(entry.values)
    if "sw_state" in values:
        line = f"gateway -> ThingsBoard: sw_state={values['sw_state']}"
        if "current_sw_version" in values:
            line += f" (current_sw_version={values['current_sw_version']})"
        if "sw_error" in values:
            say(line, f"    sw_error: {values['sw_error']}")
        else:
            say(line)
    elif "current_sw_version" in values:
        say(f"gateway -> ThingsBoard: current_sw_version={values['current_sw_version']}")
    elif "controller_state" in values:
        say(f"gateway -> ThingsBoard: controller_state={values['controller_state']}")


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    user = pwd.getpwuid(os.geteuid()).pw_name  # when started as root, stay this user
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"user {user}\nlistener {port} {HOST}\nallow_anonymous true\npersistence false\n"
        "log_dest stderr\n"
    )
    log = (workdir / "mosquitto.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - fixed binary, our own config file
        [MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
    )
    wait_until(lambda: port_open(port) or proc.poll() is not None, 15, "mosquitto")
    if proc.poll() is not None:
        raise DemoFailed(f"mosquitto exited ({proc.returncode}): {conf} / {log.name}")
    return proc, port


def controller(client: docker.DockerClient, name: str) -> Container | None:
    with contextlib.suppress(docker.errors.NotFound):
        return client.containers.get(name)
    return None


def run_demo(  # noqa: PLR0915 - one straight story, told in order
    workdir: Path, client: docker.DockerClient, cleanup: list[Callable[[], None]]
) -> None:
    suffix = uuid.uuid4().hex[:8]
    container_name = f"teg-demo-controller-{suffix}"
    prefix = f"teg-demo-{suffix}-"

    def remove_demo_docker_objects() -> None:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(container_name).remove(force=True)
        for image in client.api.images():
            for tag in image.get("RepoTags") or ():
                if tag.startswith(prefix):
                    with contextlib.suppress(docker.errors.APIError):
                        client.images.remove(tag, force=True)
        remove_dangling_layers(client)

    cleanup.append(remove_demo_docker_objects)

    broker, port = start_mosquitto(workdir)

    def stop_broker() -> None:
        broker.terminate()
        broker.wait(10)

    cleanup.append(stop_broker)
    say(f"Mosquitto (ThingsBoard's MQTT endpoint) listening on {HOST}:{port}")

    repo = make_controller_repo(workdir / "repo")
    tags = ", ".join(f"{tag}={commit[:8]}" for tag, commit in repo.commits.items())
    say(f"controller repository {repo.url}: {tags}")

    standin = ThingsBoardStandIn(HOST, port, persistent=False, on_telemetry=show_telemetry)
    standin.start()
    cleanup.append(standin.close)
    say("ThingsBoard stand-in connected (nothing assigned yet)")

    env = {
        **os.environ,
        "TEG_MQTT_HOST": HOST,
        "TEG_MQTT_PORT": str(port),
        "TEG_MQTT_TOKEN": "demo-device-token",
        "GATEWAY_DATA_PATH": str(workdir / "data"),
        "CONTROLLER_GIT_PATH": str(workdir / "data" / "controller"),
        "TEG_CONTROLLER_GIT_URL": repo.url,
        "TEG_DEFAULT_CONTROLLER_VERSION": "v1.0",
        "TEG_CONTROLLER_CONTAINER": container_name,
        "TEG_CONTROLLER_IMAGE_PREFIX": prefix,
        "TEG_CONTROLLER_PRIVILEGED": "0",
        "TEG_CONTROLLER_NETWORK_MODE": "host",
        "TEG_SW_TITLE": SW_TITLE,
        "TEG_HEALTH_GRACE_S": "5",
        "TEG_BACKOFF_INITIAL_S": "1",
        "TEG_BACKOFF_MAX_S": "10",
        "TEG_MQTT_CONNECT_WINDOW_S": "0",  # one gateway: no fleet to spread
        "TEG_MQTT_ATTRIBUTE_REQUEST_WINDOW_S": "0",
        "TEG_LOG_LEVEL": "INFO",
    }
    log_path = workdir / "teg-ota-run.log"
    log = log_path.open("wb")
    runner = subprocess.Popen(
        [sys.executable, "-m", "teg_ota", "run"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )

    def stop_runner() -> None:
        if runner.poll() is None:
            runner.send_signal(signal.SIGTERM)
            try:
                runner.wait(15)
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.wait(5)

    cleanup.append(stop_runner)
    cleanup.append(lambda: show_log_on_failure(log_path))
    say(f"teg-ota run started (pid {runner.pid}, log {log_path}); default version v1.0")

    def alive() -> None:
        if runner.poll() is not None:
            raise DemoFailed(f"teg-ota run exited with code {runner.returncode}")

    def wait_state(state: str, since: int, timeout: float) -> Telemetry:
        deadline = time.monotonic() + timeout
        while True:
            alive()
            try:
                return standin.wait_for_state(state, timeout=1.0, since=since)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise DemoFailed(f"no sw_state={state} within {timeout:g}s") from None

    # -- 1. start-up: v1.0 is built and started ------------------------------------------------
    deadline = time.monotonic() + 120
    while "v1.0" not in standin.values_of("current_sw_version"):
        alive()
        if time.monotonic() > deadline:
            raise DemoFailed("the gateway never reported current_sw_version=v1.0")
        time.sleep(0.2)
    running = controller(client, container_name)
    check(
        running is not None and running.labels.get(VERSION_LABEL) == "v1.0",
        f"container {container_name} runs v1.0",
    )

    # -- 2. a good update ----------------------------------------------------------------------
    mark = standin.mark()
    say(f"ThingsBoard: assigning software {SW_TITLE} v1.1")
    standin.assign(SW_TITLE, "v1.1")
    updated = wait_state("UPDATED", mark, 90)
    states = standin.sw_states(mark)
    check(states == list(UPDATE_STATES), f"states were {' -> '.join(states)}")
    check(updated.values.get("current_sw_version") == "v1.1", "current_sw_version is v1.1")
    running = controller(client, container_name)
    check(
        running is not None and running.labels.get(VERSION_LABEL) == "v1.1",
        "the controller container now runs v1.1",
    )

    # -- 3. a broken update: health gate fails, rollback ---------------------------------------
    mark = standin.mark()
    say("ThingsBoard: assigning software v2.0-broken (its container exits after a second)")
    standin.assign(SW_TITLE, "v2.0-broken")
    failed = wait_state("FAILED", mark, 90)
    states = standin.sw_states(mark)
    check(states[-1] == "FAILED" and "UPDATED" not in states, f"states were {' -> '.join(states)}")
    error = str(failed.values.get("sw_error", ""))
    check("v2.0-broken" in error and "v1.1" in error, "sw_error names both versions")
    check(failed.values.get("current_sw_version") == "v1.1", "current_sw_version is v1.1 again")
    running = controller(client, container_name)
    check(
        running is not None
        and running.status == "running"
        and running.labels.get(VERSION_LABEL) == "v1.1",
        "the controller container runs v1.1 again (rolled back)",
    )
    check(not standin.protocol_errors, "no ThingsBoard protocol violations by the gateway")

    # -- 4. stop -------------------------------------------------------------------------------
    say("stopping teg-ota run (SIGTERM); the controller keeps running until the demo cleans up")
    stop_runner()
    check(runner.returncode == 0, "teg-ota run exited with code 0")


_outcome = {"failed": False}


def show_log_on_failure(log_path: Path) -> None:
    if _outcome["failed"] and log_path.exists():
        lines = log_path.read_text(errors="replace").splitlines()
        print(f"---- last lines of {log_path} ----", file=sys.stderr)
        print("\n".join(lines[-80:]), file=sys.stderr)


def main() -> int:
    if not Path(MOSQUITTO).exists():
        print(f"demo: {MOSQUITTO} is missing (run scripts/ensure-infra.sh)", file=sys.stderr)
        return 2
    client = docker.from_env()
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        print(f"demo: image {BASE_IMAGE} is missing (run scripts/ensure-infra.sh)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="teg-ota-demo-"))
    cleanup: list[Callable[[], None]] = []
    try:
        run_demo(workdir, client, cleanup)
    except (DemoFailed, TimeoutError) as exc:
        _outcome["failed"] = True
        say(f"DEMO FAILED: {exc}")
    except KeyboardInterrupt:
        _outcome["failed"] = True
        say("interrupted")
    finally:
        say("cleaning up: runner, stand-in, Mosquitto, demo container and images")
        for step in reversed(cleanup):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - clean up as much as possible
                print(f"demo: cleanup step failed: {exc}", file=sys.stderr)
        if _outcome["failed"] or "--keep" in sys.argv[1:]:
            say(f"files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if _outcome["failed"]:
        return 1
    say("demo finished: v1.0 -> v1.1 updated, v2.0-broken rolled back to v1.1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
