"""End to end (issue 15): the controller's update lock defers the swap, never the preparation.

``teg-ota run`` against the real dockerd and the ThingsBoard stand-in, with the default lock
``update.lock`` in the controller's data dir (``/root/data/update.lock`` inside it). The
holder is a process in the controller container, util-linux's ``flock`` (the test image
carries it: busybox has no flock applet) run with ``docker exec``; the maximum-wait test uses
a holder on the host, on the same bind-mounted file (a flock is the kernel's, whichever mount
namespace its holder is in).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import test_e2e_runner as base
from gateway_under_test import SW_TITLE
from harness import wait_until

controller_repo = base.controller_repo
base_v1_image = base.base_v1_image
e2e = base.e2e

DEFERRED = "update_deferred"


@pytest.fixture
def holder(e2e: base.E2E) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def hold_lock(e2e: base.E2E, procs: list[subprocess.Popen[bytes]], seconds: float) -> None:
    lock = e2e.data / "update.lock"
    # flock(1) runs ``sleep`` with the locked descriptor: both hold it, one process group.
    proc = subprocess.Popen(
        ["flock", "--exclusive", str(lock), "sleep", str(seconds)], start_new_session=True
    )
    procs.append(proc)
    # Held once a non-blocking attempt from here fails.
    wait_until(
        lambda: subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode != 0,
        10,
        "the holder to take the lock",
    )


HOLD = "3517"  # a sleep no other process on the machine runs: the holder's name


def hold_lock_in_controller(e2e: base.E2E, container: str) -> int:
    """The controller's own process takes the lock (``flock --no-fork``: one process, the
    ``sleep`` it becomes holds it); its host pid."""
    e2e.client.api.exec_start(
        e2e.client.api.exec_create(
            container,
            ["/usr/local/bin/flock", "--no-fork", "/root/data/update.lock", "/bin/sleep", HOLD],
        ),
        detach=True,
    )
    lock = e2e.data / "update.lock"
    wait_until(
        lambda: subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode != 0,
        10,
        "the controller's process to take the lock",
    )
    top = e2e.client.api.top(container, ps_args="-eo pid,args")
    pids = [row[0] for row in top["Processes"] if row[-1] == f"/bin/sleep {HOLD}"]
    assert len(pids) == 1, f"the holder among {top['Processes']}"
    return int(pids[0])


@pytest.mark.timeout(240)
def test_the_swap_waits_for_the_lock_then_swaps_when_released(e2e: base.E2E) -> None:
    runner = e2e.start_gateway()
    old = e2e.wait_controller("v1.0")["Id"]
    holder_pid = hold_lock_in_controller(e2e, old)
    since = e2e.standin.mark()

    e2e.standin.assign(SW_TITLE, "v1.1")
    wait_until(
        lambda: any(
            str(v).startswith("waiting for the controller's update lock since ")
            for v in e2e.standin.values_of(DEFERRED, since)
        ),
        120,
        "update_deferred",
    )
    assert e2e.standin.sw_states(since)[-1] == "VERIFIED", "prepared; the swap waits"
    time.sleep(3)
    assert e2e.controller()["Id"] == old, "the old controller was not stopped"
    assert "UPDATING" not in e2e.standin.sw_states(since)

    # The holder dies (SIGKILL): the kernel releases the lock; the swap follows.
    os.kill(holder_pid, signal.SIGKILL)
    e2e.wait_state(runner, "UPDATED", since, 120)
    e2e.wait_controller("v1.1")
    values = e2e.standin.values_of(DEFERRED, since)
    assert values[-1] == "", f"cleared when the swap started: {values}"
    states = e2e.standin.sw_states(since)
    assert states.index("VERIFIED") < states.index("UPDATING") < states.index("UPDATED")


@pytest.mark.timeout(240)
def test_a_lock_file_nobody_holds_does_not_block(e2e: base.E2E) -> None:
    runner = e2e.start_gateway()
    stale = e2e.data / "update.lock"
    stale.write_text("left by a controller that died\n")
    since = e2e.standin.mark()

    e2e.standin.assign(SW_TITLE, "v1.1")
    e2e.wait_state(runner, "UPDATED", since, 120)
    assert e2e.standin.values_of(DEFERRED, since) == []


@pytest.mark.timeout(240)
def test_the_maximum_wait_ends_in_failed_with_the_reason(e2e: base.E2E, holder) -> None:
    runner = e2e.start_gateway(TEG_UPDATE_LOCK_MAX_WAIT_S="3")
    hold_lock(e2e, holder, 3600)
    since = e2e.standin.mark()

    e2e.standin.assign(SW_TITLE, "v1.1")
    failed = e2e.wait_state(runner, "FAILED", since, 120)
    assert "waiting for the controller's update lock since" in (failed.values.get("sw_error") or "")
    assert "gave up after 3 s" in failed.values["sw_error"]
    assert e2e.wait_controller("v1.0")
