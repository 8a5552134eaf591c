"""End to end with a damaged data directory (issue 17, "Done means": the file faults).

A gateway's SD card fills up, turns read-only, or holds files a crash or a person left in
the wrong shape. Each test makes one such fault for real (a tiny tmpfs, a read-only mount,
a directory where a file belongs) under a real `teg-ota run`, and asserts three things: a
controller runs, ThingsBoard's stock dashboard tells the truth (never stuck in Updating),
and nothing the fleet needs was lost: the version is not remembered as failed, so the
re-sent assignment after the fault is cleared ends in Updated.

Mounts are made with ``mount`` (we are root) by the ``mounts`` fixture, which must come
BEFORE ``e2e`` in a test's arguments: teardown runs in reverse, so the runners are stopped
before their data directory is unmounted. The fixtures and helpers are test_e2e_runner's.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_e2e_runner as base
from fault_mounts import FaultMounts, fill, free_bytes, mounting_is_possible
from gateway_under_test import SW_TITLE
from harness import in_ci, wait_until

from teg_ota.adapters.mqtt.outbox_format import entry_file_name

pytestmark = pytest.mark.timeout(300)

controller_repo = base.controller_repo
base_v1_image = base.base_v1_image
e2e = base.e2e

JOURNAL = "update_journal.json"
FAILED_FILE = "failed_controller_version.json"
LAST_LAUNCHED = "last_launched_controller_version.txt"
TERMINAL_TABS = ("Updated", "Failed")
UNWRITABLE = re.compile(r"cannot write|read-only|not writable|unwritable", re.IGNORECASE)


@pytest.fixture
def mounts() -> Iterator[FaultMounts]:
    """Mounts of one test, all undone at teardown (request it before ``e2e``)."""
    why = mounting_is_possible()
    if why is not None:
        if in_ci():  # under CI a skipped test must never count as passing
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    made = FaultMounts()
    try:
        yield made
    finally:
        made.unmount_all()


# --- helpers -------------------------------------------------------------------------------------


def wait_terminal(e2e: base.E2E, runner: base.Runner, timeout: float = 120) -> str:
    """Until the dashboard leaves Updating for Updated or Failed; the tab."""
    e2e.wait_alive(runner, lambda: e2e.standin.dashboard().tab in TERMINAL_TABS, timeout)
    tab = e2e.standin.dashboard().tab
    assert tab is not None
    return tab


def failed_version(e2e: base.E2E) -> object:
    """The version failed_controller_version.json names (None: no such file)."""
    try:
        return json.loads((e2e.data / FAILED_FILE).read_text()).get("version")
    except FileNotFoundError:
        return None


def lines_naming(log: str, path: Path) -> list[str]:
    """The log lines that name ``path`` as something the gateway cannot write."""
    return [line for line in log.splitlines() if str(path) in line and UNWRITABLE.search(line)]


def restart_and_expect_updated(e2e: base.E2E, version: str) -> None:
    """The fault is gone: a new runner is re-sent the assignment and ends in Updated."""
    for runner in e2e.runners:
        runner.stop()
    mark = e2e.standin.mark()
    runner = e2e.start_runner()
    e2e.wait_alive(runner, lambda: "UPDATED" in e2e.standin.sw_states(mark), 150)
    board = e2e.standin.wait_for_dashboard("Updated", 30)
    assert board.current_sw_version == version, board.describe()
    e2e.wait_controller(version)
    assert failed_version(e2e) != version


def start_runner_without(e2e: base.E2E, *names: str) -> base.Runner:
    """A runner whose environment lacks ``names`` (E2E.start_runner only sets variables)."""
    env = e2e.process_env(**dict.fromkeys(names))
    runner = base.Runner(env, e2e.tmp / f"teg-ota-run-{len(e2e.runners) + 1}.log", e2e.tmp)
    e2e.runners.append(runner)
    return runner


def wait_reported(e2e: base.E2E, runner: base.Runner, version: str, since: int) -> None:
    """Until ``version`` was reported as current_sw_version since ``since``, and the
    dashboard shows it."""
    e2e.wait_alive(
        runner, lambda: version in e2e.standin.values_of("current_sw_version", since), 90
    )
    assert e2e.standin.dashboard().current_sw_version == version


# --- a full disk ---------------------------------------------------------------------------------


def test_a_disk_that_fills_up_mid_update_ends_in_a_terminal_state(
    mounts: FaultMounts, e2e: base.E2E
) -> None:
    """The data directory is a 64 KiB tmpfs; it fills up while the new version builds. The
    dashboard must not stay in Updating: Failed (a write it needed failed, v1.0 kept) or
    Updated (it needed none). Once space is back the re-sent assignment is Updated."""
    tag = f"v1.1-slow-{uuid.uuid4().hex[:6]}"
    e2e.repo.add_version(tag, "slowbuild", build_sleep_s=8)
    mounts.tmpfs(e2e.data, "64k")
    runner = e2e.start_gateway()

    e2e.standin.assign(SW_TITLE, tag)
    runner.wait_log(rf"compiling {re.escape(tag)} slowly", 60)
    filler = fill(e2e.data)
    assert free_bytes(e2e.data) < 4096, "the tmpfs is full"

    tab = wait_terminal(e2e, runner)
    board = e2e.standin.dashboard()
    if tab == "Failed":
        assert "cannot write" in str(board.sw_error), board.describe()
        assert board.current_sw_version == "v1.0", board.describe()
        e2e.wait_controller("v1.0")
    else:
        assert board.current_sw_version == tag, board.describe()
        e2e.wait_controller(tag)
    assert runner.alive

    filler.unlink()
    if tab == "Failed":
        restart_and_expect_updated(e2e, tag)


# --- a read-only disk ----------------------------------------------------------------------------


def test_a_read_only_data_dir_at_start_up_still_runs_the_controller(
    mounts: FaultMounts, e2e: base.E2E
) -> None:
    """An SD card the kernel remounted read-only before boot: the runner must still start
    the last launched controller and tell ThingsBoard what runs, and say which path it
    cannot write."""
    runner = e2e.start_gateway()
    assert runner.terminate() == 0
    e2e.client.api.remove_container(e2e.container_name, force=True)
    mounts.read_only_bind(e2e.data)
    since = e2e.standin.mark()

    runner = e2e.start_runner()

    e2e.wait_alive(runner, lambda: e2e.controller() is not None, 90)
    e2e.wait_controller("v1.0")
    wait_reported(e2e, runner, "v1.0", since)
    wait_until(lambda: lines_naming(runner.log(), e2e.data) != [], 30, "a log line")
    time.sleep(3)
    assert runner.alive, f"teg-ota run exited with code {runner.proc.returncode}"


def test_a_data_dir_turning_read_only_fails_the_update_once(
    mounts: FaultMounts, e2e: base.E2E
) -> None:
    """The card turns read-only while the runner runs: the assignment that follows fails
    once, saying it cannot write where, and v1.0 is not touched. Once writable again, the
    re-sent assignment is Updated: the version was not blamed."""
    runner = e2e.start_gateway()
    before = base.identity(e2e.wait_controller("v1.0"))
    mounts.read_only_bind(e2e.data)
    since = e2e.standin.mark()

    e2e.standin.assign(SW_TITLE, "v1.1")

    e2e.wait_alive(runner, lambda: "FAILED" in e2e.standin.sw_states(since), 120)
    time.sleep(5)  # nothing else follows it
    assert e2e.standin.sw_states(since).count("FAILED") == 1, e2e.standin.sw_states(since)
    board = e2e.standin.wait_for_dashboard("Failed", 10)
    error = str(board.sw_error)
    assert "cannot write" in error and str(e2e.data) in error, error
    assert board.current_sw_version == "v1.0", board.describe()
    assert base.identity(e2e.wait_controller("v1.0")) == before, "v1.0 was not touched"

    mounts.unmount(e2e.data)  # writable again
    restart_and_expect_updated(e2e, "v1.1")


# --- files in the wrong shape --------------------------------------------------------------------


def test_a_journal_that_is_a_directory_fails_without_blaming_the_version(
    e2e: base.E2E,
) -> None:
    """update_journal.json is a directory: no update can be journalled, so it fails naming
    the path, and the version is not remembered as failed; once removed, it updates."""
    runner = e2e.start_gateway()
    journal = e2e.data / JOURNAL
    journal.mkdir()
    since = e2e.standin.mark()

    e2e.standin.assign(SW_TITLE, "v1.1")

    e2e.wait_alive(runner, lambda: "FAILED" in e2e.standin.sw_states(since), 120)
    board = e2e.standin.wait_for_dashboard("Failed", 10)
    error = str(board.sw_error)
    assert "cannot write" in error and str(journal) in error, error
    assert board.current_sw_version == "v1.0", board.describe()
    assert failed_version(e2e) != "v1.1", "the gateway's fault is not the version's"
    e2e.wait_controller("v1.0")

    journal.rmdir()
    restart_and_expect_updated(e2e, "v1.1")


def test_an_empty_last_launched_file_starts_the_default_version(e2e: base.E2E) -> None:
    """A power cut truncated last_launched_controller_version.txt and the container is gone:
    the default version (v1.0 here) is started and reported."""
    runner = e2e.start_gateway()
    assert runner.terminate() == 0
    (e2e.data / LAST_LAUNCHED).write_text("")
    e2e.client.api.remove_container(e2e.container_name, force=True)
    since = e2e.standin.mark()

    runner = e2e.start_runner()

    e2e.wait_alive(runner, lambda: e2e.controller() is not None, 90)
    e2e.wait_controller("v1.0")
    wait_reported(e2e, runner, "v1.0", since)
    assert runner.alive


def test_an_empty_last_launched_file_without_a_default_reports_what_runs(
    e2e: base.E2E,
) -> None:
    """The same truncated file, no default version configured, but the controller still
    runs: the runner keeps going and reports the running container's version."""
    runner = e2e.start_gateway()
    assert runner.terminate() == 0
    (e2e.data / LAST_LAUNCHED).write_text("")
    since, requests = e2e.standin.mark(), e2e.standin.attribute_requests

    runner = start_runner_without(e2e, "TEG_DEFAULT_CONTROLLER_VERSION")

    e2e.wait_alive(runner, lambda: e2e.standin.attribute_requests > requests, 60)
    wait_reported(e2e, runner, "v1.0", since)
    time.sleep(3)
    assert runner.alive, f"teg-ota run exited with code {runner.proc.returncode}"
    e2e.wait_controller("v1.0")


def test_a_directory_named_like_an_outbox_entry_does_not_stop_the_link(e2e: base.E2E) -> None:
    """A directory where the outbox expects its first entry: the link still delivers, the
    current version is reported and an update is told to ThingsBoard."""
    (e2e.data / "outbox" / entry_file_name(1, True)).mkdir(parents=True)

    runner = e2e.start_gateway()  # current_sw_version v1.0 reported, v1.0 runs

    e2e.standin.assign(SW_TITLE, "v1.1")
    e2e.wait_alive(runner, lambda: e2e.standin.dashboard().tab == "Updated", 120)
    assert e2e.standin.dashboard().current_sw_version == "v1.1"
    e2e.wait_controller("v1.1")


def test_an_outbox_that_is_a_regular_file_does_not_stop_the_runner(e2e: base.E2E) -> None:
    """``<data>/outbox`` is a file: the runner runs, the controller runs, ThingsBoard hears
    the current version."""
    e2e.data.mkdir(parents=True)
    (e2e.data / "outbox").write_bytes(b"not a directory\n")

    runner = e2e.start_gateway()

    time.sleep(3)
    assert runner.alive
    assert e2e.standin.dashboard().current_sw_version == "v1.0"


def test_a_lock_file_that_is_a_directory_still_refuses_a_second_runner(e2e: base.E2E) -> None:
    """``<data>/teg-ota.lock`` is a directory: the runner still runs the controller, and a
    second runner on the same data directory is still refused (two would fight over it)."""
    (e2e.data / "teg-ota.lock").mkdir(parents=True)

    runner = e2e.start_gateway()

    second = e2e.start_runner()
    assert second.proc.wait(60) == 3, second.log()[-2000:]
    assert "another teg-ota process" in second.log()
    assert runner.alive
    e2e.wait_controller("v1.0")
