"""The ``teg-ota`` command line as real processes: exit codes, what it prints, what it touches.

Each test has its own data directory, controller work tree, container name and image prefix
(the controller repository of tests/integration/controller_repo.py is made once per module).
Commands run as ``python -m teg_ota`` or through the installed ``teg-ota`` console script,
with the environment of the end-to-end tests (tests/integration/gateway_under_test.py); tests
that talk to a broker use the ``mosquitto`` fixture, the others point at a closed port.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from controller_repo import ControllerRepo, git, make_controller_repo
from gateway_under_test import GatewayUnderTest
from harness import LOCALHOST, MosquittoBroker, free_port, wait_until

from teg_ota.ports.container_runtime import VERSION_LABEL

pytestmark = pytest.mark.timeout(180)

TOKEN = "S3CRET-cli-token-4b1d"


class Cli(GatewayUnderTest):
    """Settings of one test and the commands run with them; the broker is ``broker`` once
    set, else a closed port."""

    def __init__(self, tmp: Path, repo: ControllerRepo, client: docker.DockerClient) -> None:
        super().__init__(tmp, repo, client, "teg-cli", token=TOKEN)
        self.broker: MosquittoBroker | None = None
        self.closed_port = free_port()  # nothing listens there

    def process_env(self, **overrides: str | None) -> dict[str, str]:
        port = self.broker.port if self.broker else self.closed_port
        return self.env(port, **{"TEG_STOP_GRACE_S": "5", **overrides})

    # -- what the commands left ---------------------------------------------------------------
    def running_version(self) -> str | None:
        attrs = self.controller()
        if attrs is None or not attrs["State"]["Running"]:
            return None
        version: str | None = attrs["Config"]["Labels"].get(VERSION_LABEL)
        return version

    def wait_running(self, version: str, timeout: float = 15) -> None:
        wait_until(
            lambda: self.running_version() == version,
            timeout,
            f"controller {version} running (now {self.running_version()})",
            interval=0.1,
        )

    def assert_nothing_touched(self) -> None:
        assert not self.data.exists(), sorted(self.data.rglob("*"))
        assert not self.git_path.exists(), "the repository was cloned"
        assert self.controller() is None
        assert self.prefixed_images() == []
        if self.broker is not None:
            assert "New client connected" not in self.broker.logs()


@pytest.fixture(scope="module")
def controller_repo(tmp_path_factory: pytest.TempPathFactory) -> ControllerRepo:
    return make_controller_repo(tmp_path_factory.mktemp("controller-repo"))


@pytest.fixture
def cli(
    tmp_path: Path,
    controller_repo: ControllerRepo,
    docker_client: docker.DockerClient,
    test_images: list[str],
) -> Iterator[Cli]:
    env = Cli(tmp_path, controller_repo, docker_client)
    try:
        yield env
    finally:
        env.remove_containers_and_images()


@pytest.fixture
def cli_broker(cli: Cli, mosquitto: MosquittoBroker) -> Cli:
    """``cli`` with a reachable broker."""
    cli.broker = mosquitto
    return cli


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


# --- configuration and usage errors ------------------------------------------------------------


def test_invalid_configuration_exits_2_with_one_line_naming_the_variable(cli: Cli) -> None:
    result = cli.run_cli("run", TEG_MQTT_PORT="http", timeout=30)

    assert result.returncode == 2, output(result)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, output(result)
    assert lines[0].startswith("teg-ota: configuration error: TEG_MQTT_PORT='http'"), lines
    cli.assert_nothing_touched()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEG_HEALTH_GRACE_S", "soon"),
        ("GATEWAY_DATA_PATH", "relative/data"),
        ("TEG_CONTROLLER_IMAGE_PREFIX", "Upper/Case"),
        ("TEG_MQTT_CA_FILE", "/nonexistent/ca.pem"),
    ],
)
def test_configuration_errors_never_print_the_token(cli: Cli, variable: str, value: str) -> None:
    result = cli.run_cli("status", script=True, timeout=30, **{variable: value})

    assert result.returncode == 2, output(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and variable in lines[0], output(result)
    assert TOKEN not in result.stdout + result.stderr
    cli.assert_nothing_touched()


def test_update_with_an_option_as_version_is_refused_and_touches_nothing(cli_broker: Cli) -> None:
    cli = cli_broker
    # As an option, argparse refuses it; after "--" it is a version, and parse_version does.
    as_option = cli.run_cli("update", "--upload-pack=x", script=True, timeout=30)
    as_version = cli.run_cli("update", "--", "--upload-pack=x", script=True, timeout=30)

    assert as_option.returncode == 2, output(as_option)
    assert as_option.stderr.startswith("usage: teg-ota update"), output(as_option)
    assert as_version.returncode == 2, output(as_version)
    assert "must not start with '-'" in as_version.stderr, output(as_version)
    assert as_option.stdout == as_version.stdout == ""
    cli.assert_nothing_touched()


# --- doctor ------------------------------------------------------------------------------------


def test_doctor_all_ok(cli_broker: Cli) -> None:
    git("clone", "-q", cli_broker.repo.url, str(cli_broker.git_path))

    result = cli_broker.run_cli("doctor", script=True, timeout=60)

    assert result.returncode == 0, output(result)
    lines = result.stdout.splitlines()
    for name in ("docker", "repository", "data directory", "broker"):
        assert any(line.startswith(f"[ok  ] {name}: ") for line in lines), output(result)
    assert "[FAIL]" not in result.stdout and "fix:" not in result.stdout
    assert TOKEN not in result.stdout + result.stderr
    assert any(str(cli_broker.git_path) in line and " at " in line for line in lines), lines


@pytest.mark.parametrize("broker_up", [False, True], ids=["port-closed", "no-token"])
def test_doctor_reports_the_broker_problem_with_a_fix(
    cli: Cli, mosquitto: MosquittoBroker, broker_up: bool
) -> None:
    port = mosquitto.port if broker_up else cli.closed_port

    result = cli.run_cli("doctor", timeout=60, TEG_MQTT_PORT=str(port), TEG_MQTT_TOKEN=None)

    assert result.returncode == 1, output(result)
    lines = result.stdout.splitlines()
    failed = [i for i, line in enumerate(lines) if line.startswith("[FAIL]")]
    assert len(failed) == 1, output(result)
    line, fix = lines[failed[0]], lines[failed[0] + 1]
    assert line.startswith(f"[FAIL] broker: {LOCALHOST}:{port} "), line
    assert fix.strip().startswith("fix: "), fix
    if broker_up:
        assert "no credentials" in line and "TEG_MQTT_TOKEN" in fix, (line, fix)
    else:
        assert "unreachable" in line and "TEG_MQTT_PORT" in fix, (line, fix)
    for name in ("docker", "repository", "data directory"):
        assert any(ln.startswith(f"[ok  ] {name}: ") for ln in lines), output(result)


# --- update, rollback, status ------------------------------------------------------------------


def test_update_update_rollback_then_a_crashing_version(cli_broker: Cli) -> None:
    cli = cli_broker
    for version in ("v1.0", "v1.1"):
        result = cli.run_cli("update", version)
        assert result.returncode == 0, output(result)
        assert result.stdout.splitlines()[-1] == f"updated: {version}", output(result)
        cli.wait_running(version)

    rollback = cli.run_cli("rollback")
    assert rollback.returncode == 0, output(rollback)
    cli.wait_running("v1.0")
    status = cli.run_cli("status", "--json", timeout=60)
    assert status.returncode == 0, output(status)
    data = json.loads(status.stdout)
    assert data["running"] is True
    assert data["version"] == "v1.0"
    assert data["last_launched"] == "v1.0"
    assert data["update"] is None

    broken = cli.run_cli("update", "v2.0-broken")
    assert broken.returncode == 1, output(broken)
    assert broken.stdout.splitlines()[-1].startswith("rolled-back: "), output(broken)
    cli.wait_running("v1.0")
    data = json.loads(cli.run_cli("status", "--json", timeout=60).stdout)
    assert (data["version"], data["last_launched"], data["failed"]) == (
        "v1.0",
        "v1.0",
        "v2.0-broken",
    )
    assert TOKEN not in "".join(r.stdout + r.stderr for r in (rollback, status, broken))


# --- logging -----------------------------------------------------------------------------------


def test_json_log_format_makes_every_stderr_line_a_json_object(cli_broker: Cli) -> None:
    result = cli_broker.run_cli(
        "update", "v9.9.9-nope", TEG_LOG_FORMAT="json", TEG_LOG_LEVEL="DEBUG", timeout=60
    )

    assert result.returncode == 1, output(result)
    lines = result.stderr.splitlines()
    assert len(lines) >= 3, output(result)
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert isinstance(entry, dict), entry
        assert entry["level"] in ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR")
        assert isinstance(entry["message"], str) and entry["message"], entry
    assert any("v9.9.9-nope" in entry["message"] for entry in entries), entries
    assert TOKEN not in result.stderr
