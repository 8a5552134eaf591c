"""teg-ota over a gateway the original TEG gateway set up (issue 11): its environment
variables, its token file, its version file without a newline, and its controller container
(unlabelled image ``teg-controller-<version>:latest``, restart policy ``on-failure``) already
running. teg-ota adopts it without a restart or a rebuild, reports it, and the next update
replaces it with teg-ota's own container settings."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import docker
import test_e2e_runner as base
from gateway_under_test import SW_TITLE

controller_repo = base.controller_repo
base_v1_image = base.base_v1_image
e2e = base.e2e


def run_like_the_original(e2e: base.E2E, tmp: Path) -> dict[str, object]:
    """v1.0 built and started the way the original gateway does it (no teg-ota labels)."""
    context = e2e.repo.export("v1.0", tmp / "seed-v1.0")
    image = f"{e2e.prefix}v1.0:latest"
    e2e.client.images.build(path=str(context), tag=image, pull=False, rm=True)
    container = e2e.client.containers.run(
        image,
        name=e2e.container_name,
        detach=True,
        network_mode="host",
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
        log_config=docker.types.LogConfig(
            type="json-file", config={"max-size": "10m", "max-file": "5"}
        ),
    )
    container.reload()
    assert not container.labels.get(base.VERSION_LABEL)
    return {"id": container.id, "started": container.attrs["State"]["StartedAt"]}


def originals_env(e2e: base.E2E, tmp: Path) -> dict[str, str | None]:
    """The original gateway's variables instead of teg-ota's (removed: ``None``)."""
    subprocess.run(
        ["git", "clone", "-q", e2e.repo.url, str(e2e.git_path)], check=True, capture_output=True
    )
    token_file = tmp / "tb_access_token"
    token_file.write_text(base.TOKEN + "\n")
    e2e.data.mkdir(parents=True, exist_ok=True)
    (e2e.data / "last_launched_controller_version.txt").write_text("v1.0")  # no newline
    return {
        "GATEWAY_DATA_PATH": None,
        "CONTROLLER_GIT_PATH": None,
        "TEG_MQTT_HOST": None,
        "TEG_MQTT_PORT": None,
        "TEG_MQTT_TOKEN": None,
        "TEG_DATA_PATH": str(e2e.data),
        "TEG_CONTROLLER_GIT_PATH": str(e2e.git_path / ".git"),
        "TB_HOST": "127.0.0.1",
        "TB_PORT": str(e2e.standin.device_port),
        "THINGSBOARD_ACCESS_TOKEN": str(token_file),
        "TEG_DEFAULT_CONTROLLER_VERSION": "",
    }


def test_a_controller_the_original_started_is_adopted_then_replaced(
    e2e: base.E2E, tmp_path: Path
) -> None:
    seed = run_like_the_original(e2e, tmp_path)
    env = originals_env(e2e, tmp_path)
    since, requests = e2e.standin.mark(), e2e.standin.attribute_requests

    runner = e2e.start_runner(**env)  # type: ignore[arg-type]

    e2e.wait_alive(runner, lambda: e2e.standin.attribute_requests > requests, 90)
    e2e.standin.wait_for_value("current_sw_version", "v1.0", 30, since=since)
    runner.wait_log(r"read the original gateway's variables: .*TB_HOST", 10)
    runner.wait_log(r"adopting the running controller v1\.0", 10)
    time.sleep(2)
    attrs = e2e.controller()
    assert attrs is not None and attrs["State"]["Running"]
    assert (attrs["Id"], attrs["State"]["StartedAt"]) == (seed["id"], seed["started"]), (
        "adopted without a restart"
    )
    assert not [line for line in runner.log().splitlines() if "building" in line.lower()]
    assert (e2e.data / "known_good_controller_version.txt").read_text().strip() == "v1.0"

    e2e.standin.assign(SW_TITLE, "v1.1")
    board = e2e.standin.wait_for_dashboard("Updated", 120)
    assert board.current_sw_version == "v1.1", board.describe()
    new = e2e.wait_controller("v1.1")
    assert new["Id"] != seed["id"]
    assert new["HostConfig"]["RestartPolicy"]["Name"] in ("", "no"), "the watchdog owns restarts"
    assert runner.alive
