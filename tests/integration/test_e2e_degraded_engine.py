"""End to end when the world around the runner misbehaves (issue 17, "Done means"): the
engine restarts mid-update, a tag moves on the remote, the runner is killed right after
UPDATED, the clock once read 80 years ahead.

Each test asserts that a controller runs, what ThingsBoard's stock dashboard shows, and that
nothing the fleet needs was lost (no version blamed for the gateway's trouble, no state told
twice, none told wrongly). The engine restart runs against a private dockerd
(private_dockerd.PrivateDockerd) so the shared engine is never disturbed; it cannot pull,
so the base images are copied into it. The fixtures and helpers are test_e2e_runner's.
"""

from __future__ import annotations

import itertools
import json
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import test_e2e_runner as base
from controller_repo import BASE_IMAGE, ControllerRepo, make_controller_repo
from gateway_under_test import SW_TITLE
from harness import in_ci, wait_until
from private_dockerd import PrivateDockerd, copy_image, require_dockerd
from tb_clock import find_libfaketime

from teg_ota.adapters.mqtt.outbox_format import decode_entry
from teg_ota.ports.container_runtime import COMMIT_LABEL

pytestmark = pytest.mark.timeout(300)

controller_repo = base.controller_repo
base_v1_image = base.base_v1_image
e2e = base.e2e

FAILED_FILE = "failed_controller_version.json"
KILL_ROUNDS = 8
REAL_TIME_SLACK_S = 300.0


class PrivateEngineE2E(base.E2E):
    """base.E2E whose runners (and ``client``) use another engine than the shared one."""

    def __init__(self, *args: Any, docker_host: str, **kwargs: Any) -> None:
        self.docker_host = docker_host
        super().__init__(*args, **kwargs)

    def process_env(self, **overrides: str | None) -> dict[str, str]:
        return super().process_env(**{"DOCKER_HOST": self.docker_host, **overrides})


@pytest.fixture
def private_engine(
    docker_client: docker.DockerClient, test_images: list[str], base_v1_image: str
) -> Iterator[PrivateDockerd]:
    """A running private dockerd holding the test base image and the v1.0 image."""
    require_dockerd()
    assert BASE_IMAGE in test_images
    # Under /tmp, not tmp_path: a unix socket path must stay short.
    daemon = PrivateDockerd(Path(tempfile.mkdtemp(prefix="teg-dd-", dir="/tmp")), uuid.uuid4().hex)
    try:
        daemon.start()
        client = daemon.client()
        for tag in (BASE_IMAGE, base_v1_image):
            copy_image(docker_client, client, tag)
        client.close()
        yield daemon
    finally:
        daemon.stop()
        daemon.remove()


def failed_version(env: base.E2E) -> object:
    try:
        return json.loads((env.data / FAILED_FILE).read_text()).get("version")
    except FileNotFoundError:
        return None


def commit_running(env: base.E2E) -> str | None:
    attrs = env.controller()
    if attrs is None or not attrs["State"]["Running"]:
        return None
    label: str | None = attrs["Config"]["Labels"].get(COMMIT_LABEL)
    return label


def wait_for(env: base.E2E, runner: base.Runner, condition: Any, timeout: float, what: Any) -> None:
    """Until ``condition()``, the runner alive; else an AssertionError saying ``what()``."""
    try:
        env.wait_alive(runner, condition, timeout)
    except TimeoutError:
        raise AssertionError(f"after {timeout}s: {what()}") from None


def queued_stamps(outbox: Path) -> set[int]:
    """The ``ts`` of every entry waiting in ``outbox`` (each is ``{"ts":..,"values":..}``)."""
    stamps = set()
    for path in outbox.glob("*.msg"):
        message = json.loads(decode_entry(path.read_bytes())[1])
        stamps.add(int(message["ts"]))
    return stamps


def settle(env: base.E2E, runner: base.Runner, requests_before: int, seconds: float = 3) -> None:
    """Barrier: the runner asked for its attributes again, then had time to act on them."""
    env.wait_alive(runner, lambda: env.standin.attribute_requests > requests_before, 60)
    time.sleep(seconds)


# --- the engine restarts during the health grace -------------------------------------------------


def test_an_engine_restart_during_the_health_grace_is_an_interruption(
    tmp_path: Path,
    controller_repo: ControllerRepo,
    private_engine: PrivateDockerd,
    base_v1_image: str,
) -> None:
    """dockerd restarts (an upgrade, a crash) while v1.1 is on probation: that says nothing
    about v1.1. The update is undone (v1.0 runs again), told as Failed, not remembered as
    v1.1's fault, and the re-sent assignment after a runner restart ends in Updated."""
    env = PrivateEngineE2E(
        tmp_path,
        controller_repo,
        private_engine.client(),
        base_v1_image,
        docker_host=private_engine.base_url,
    )
    try:
        runner = env.start_gateway(TEG_HEALTH_GRACE_S="20")
        since = env.standin.mark()

        env.standin.assign(SW_TITLE, "v1.1")
        env.wait_controller("v1.1", timeout=120)
        wait_until(lambda: (env.journal() or {}).get("phase") == "HEALTH_CHECK", 30, "HEALTH_CHECK")
        private_engine.restart()
        env.client.close()
        env.client = private_engine.client()  # the old one's pooled sockets are dead

        env.wait_alive(runner, lambda: env.standin.dashboard().tab == "Failed", 120)
        board = env.standin.dashboard()
        assert board.current_sw_version == "v1.0", board.describe()
        assert "UPDATED" not in env.standin.sw_states(since), env.standin.sw_states(since)
        env.wait_controller("v1.0", timeout=60)
        assert failed_version(env) != "v1.1", "the engine's restart is not v1.1's fault"

        runner.stop()
        mark = env.standin.mark()
        runner = env.start_runner(TEG_HEALTH_GRACE_S="3")
        env.wait_alive(runner, lambda: "UPDATED" in env.standin.sw_states(mark), 150)
        assert env.standin.wait_for_dashboard("Updated", 30).current_sw_version == "v1.1"
        env.wait_controller("v1.1")
    finally:
        env.close()
        env.client.close()


# --- a tag moved on the remote -------------------------------------------------------------------


def test_a_tag_moved_on_the_remote_is_never_confirmed_silently(
    tmp_path: Path, docker_client: docker.DockerClient, base_v1_image: str
) -> None:
    """v1.1 runs; then someone force-pushes tag v1.1 to another commit. ThingsBoard must
    not be told UPDATED for a v1.1 that is not what runs: either nothing new is said and the
    old commit keeps running, or a FAILED names the moved tag. With TEG_ALLOW_MOVED_TAGS=1
    the new commit is built and run, and the dashboard says Updated."""
    repo = make_controller_repo(tmp_path / "moving-repo")  # its own: this test moves a tag
    env = base.E2E(tmp_path, repo, docker_client, base_v1_image)
    try:
        runner = env.start_gateway()
        env.standin.assign(SW_TITLE, "v1.1")
        env.standin.wait_for_dashboard("Updated", 90)
        old = repo.commit_of("v1.1")
        assert env.wait_controller("v1.1")["Config"]["Labels"][COMMIT_LABEL] == old
        assert runner.terminate() == 0
        new = repo.add_commit("v1.1-moved")
        repo.tag("v1.1", new, annotated=True)  # git tag -f + git push -f to the bare remote

        mark, requests = env.standin.mark(), env.standin.attribute_requests
        runner = env.start_runner()
        settle(env, runner, requests)
        runner.wait_log(r"OTA request for 'v1\.1'", 30)
        time.sleep(3)

        states = env.standin.state_entries(mark)
        moved_failures = [
            t
            for t in states
            if t.sw_state == "FAILED"
            and "v1.1" in str(t.values.get("sw_error"))
            and "moved" in str(t.values.get("sw_error")).lower()
        ]
        said_nothing = "UPDATED" not in env.standin.sw_states(mark) and commit_running(env) == old
        assert said_nothing or moved_failures, (
            f"states since the move {[dict(t.values) for t in states]}, "
            f"running commit {commit_running(env)} (old {old}, new {new})"
        )

        runner.stop()
        runner = env.start_runner(TEG_ALLOW_MOVED_TAGS="1")
        wait_for(
            env,
            runner,
            lambda: commit_running(env) == new,
            90,
            lambda: f"the controller runs commit {commit_running(env)}, not the moved tag's {new}",
        )
        board = env.standin.wait_for_dashboard("Updated", 60)
        assert board.current_sw_version == "v1.1", board.describe()
        attrs = env.wait_controller("v1.1")
        assert attrs["Config"]["Labels"][COMMIT_LABEL] == new
    finally:
        env.close()


# --- SIGKILL right after UPDATED -----------------------------------------------------------------


@pytest.mark.timeout(600)
def test_a_kill_right_after_updated_never_repeats_it(e2e: base.E2E) -> None:
    """The runner dies (SIGKILL) a few milliseconds after UPDATED left it, maybe before it
    noted that it said so. The next runner is re-sent the same assignment: each assignment
    must end in exactly one UPDATED (a second one is a second history row, a new ts)."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    standin = e2e.standin
    runner = e2e.start_gateway()
    marks: list[int] = []
    delays: list[float] = []
    for round_no in range(KILL_ROUNDS):
        version = "v1.1" if round_no % 2 == 0 else "v1.0"
        mark = standin.mark()
        marks.append(mark)
        standin.assign(SW_TITLE, version)
        standin.wait_for_state("UPDATED", 120, since=mark)  # wakes on arrival, no polling
        delays.append(rng.uniform(0, 0.03))
        time.sleep(delays[-1])
        runner.kill()

        requests = standin.attribute_requests
        runner = e2e.start_runner()
        settle(e2e, runner, requests)
        e2e.wait_controller(version)
    marks.append(standin.mark())

    telemetry = standin.telemetry
    per_round = [
        sum(1 for t in telemetry[start:end] if t.sw_state == "UPDATED")
        for start, end in itertools.pairwise(marks)
    ]
    report = f"UPDATED per round {per_round}, seed {seed}, kill delays {delays}"
    print(report)
    assert per_round == [1] * KILL_ROUNDS, report
    assert standin.dashboard().tab == "Updated"
    assert runner.alive


# --- one clock reading 80 years ahead ------------------------------------------------------------


def test_a_mark_left_by_a_clock_far_ahead_is_discarded(
    tmp_path: Path,
    controller_repo: ControllerRepo,
    docker_client: docker.DockerClient,
    base_v1_image: str,
) -> None:
    """A runner whose clock read 80 years ahead queued telemetry while offline (stamped in
    2106). The next runner, with the right clock, must discard that mark and never send a
    far-future ts: ThingsBoard would keep such a value as the latest for 80 years, and the
    dashboard would never show what runs."""
    if find_libfaketime() is None:
        reason = "libfaketime is not installed (apt-get install faketime)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    env = base.E2E(tmp_path, controller_repo, docker_client, base_v1_image, clock_offset="+80y")
    try:
        ahead = env.start_gateway()
        env.broker.stop()
        killed = env.wait_controller("v1.0")["Id"]
        time.sleep(2.5)  # let the runner's exit watcher subscribe
        env.client.api.kill(killed)
        env.wait_alive(ahead, lambda: (env.controller() or {}).get("Id") not in (None, killed), 60)
        env.wait_controller("v1.0")
        outbox = env.data / "outbox"
        wait_until(lambda: any(outbox.glob("*.msg")), 30, "telemetry queued offline")
        assert ahead.terminate() == 0
        left_ahead = queued_stamps(outbox)
        assert left_ahead, "the queued telemetry is left for the next run"
        assert min(left_ahead) / 1000 > time.time() + 70 * 365 * 86400, "stamped in 2106"

        env.clock_offset = None  # the clock is right again
        mark, requests = env.standin.mark(), env.standin.attribute_requests
        runner = env.start_runner()  # still offline: what it queues now carries a ts
        runner.wait_log(r"timestamp mark .* ahead of the clock.*discarded", 30)
        time.sleep(3)
        queued = queued_stamps(outbox)
        own_queued = queued - left_ahead
        assert own_queued, "the runner queued its own telemetry offline"
        assert all(abs(ts / 1000 - time.time()) < REAL_TIME_SLACK_S for ts in own_queued), (
            f"stamped by the runner with the right clock: {sorted(own_queued)}"
        )
        env.broker.start()
        settle(env, runner, requests)
        wait_until(lambda: not any(outbox.glob("*.msg")), 30, "the backlog delivered")

        # The entries stamped in 2106 and everything queued after them go out stamped on
        # arrival (a device ts older than them would lose to them in ThingsBoard's latest).
        now = time.time()
        sent = [(t.ts, dict(t.values)) for t in env.standin.telemetry[mark:]]
        assert len(sent) >= len(queued), f"every queued message delivered: {sent}"
        far = [
            (ts, v) for ts, v in sent if ts is not None and abs(ts / 1000 - now) > REAL_TIME_SLACK_S
        ]
        assert far == [], f"a device ts far from now reached ThingsBoard: {far}"

        env.standin.assign(SW_TITLE, "v1.1")
        board = env.standin.wait_for_dashboard("Updated", 120)
        env.wait_controller("v1.1")
        # Left by the runner whose clock was ahead, then delivered: a value stamped in 2106
        # would stay the latest for 80 years and hide what runs now.
        assert board.current_sw_version == "v1.1", f"{board.describe()}; sent {sent}"
    finally:
        env.close()
