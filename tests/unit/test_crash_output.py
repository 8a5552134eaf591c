"""A crashed controller's last output: cleaned, shortened, and in the ``sw_error`` of the
failed update; which stopped container counts as failed (kept for ``docker logs``)."""

from __future__ import annotations

from typing import Any

import pytest

from teg_ota.adapters.docker.failed_container import Stopped, is_failure, stopping
from teg_ota.domain.core.output_tail import clean_line, clean_lines, summary
from teg_ota.domain.model.outcome import Outcome
from teg_ota.ports import Health, RuntimeUnavailable

from .fakes import Behaviour
from .test_update_service import World


@pytest.fixture
def world() -> World:
    return World()


# ------------------------------------------------------------------ cleaning, shortening


def test_control_characters_and_escape_sequences_are_stripped() -> None:
    assert clean_line("\x1b[31mERROR\x1b[0m: bad\x07 value\x00") == "ERROR: bad value"
    assert clean_line("tab\there  \x1b]0;title\x07x") == "tab here x"
    assert clean_line("\u202eevil\u200b") == "evil"  # bidi override, zero-width space
    assert clean_line("caf\ufffd ok") == "caf\ufffd ok"  # invalid UTF-8, already replaced


def test_clean_lines_drops_empty_lines_and_keeps_the_last_redraw() -> None:
    output = "starting\r\n\n  \nprogress 10%\rprogress 100%\nfatal: exit 3\n"
    assert clean_lines(output) == ("starting", "progress 100%", "fatal: exit 3")


def test_summary_is_the_last_three_lines() -> None:
    lines = ["one", "two", "", "three", "four"]
    assert summary(lines) == "two | three | four"
    assert summary([]) == ""
    assert summary(["", " \x07 "]) == ""


def test_a_long_summary_keeps_the_end() -> None:
    text = summary(["x" * 500, "Traceback: ValueError: the end explains it"])
    assert len(text) <= 300
    assert text.startswith("…")
    assert text.endswith("ValueError: the end explains it")


# ------------------------------------------------------------ into sw_error (the fakes)


def test_a_crash_in_the_health_gate_shows_its_last_output_in_sw_error(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(
        exits_after_s=3,
        exit_code=3,
        output=(
            "controller v1.1 starting",
            "reading config",
            "\x1b[31mTraceback (most recent call last):\x1b[0m",
            "KeyError: 'serial_port'",
        ),
    )

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK
    error = world.telemetry.reports[-1].error or ""
    assert (
        "v1.1 exited with code 3 within 10 s; last output: reading config | "
        "Traceback (most recent call last): | KeyError: 'serial_port'"
    ) in error
    assert "\x1b" not in error
    assert error.endswith("rolled back to v1.0")
    assert world.store.failed_version is not None
    assert "KeyError: 'serial_port'" in world.store.failed_version.error


def test_an_unhealthy_controller_shows_its_output_too(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(
        health=Health.UNHEALTHY, output=("cannot open /dev/ttyUSB0",)
    )
    world.service.handle_request(world.request("v1.1"))
    error = world.telemetry.reports[-1].error or ""
    assert "v1.1 turned unhealthy within 10 s; last output: cannot open /dev/ttyUSB0" in error


def test_a_crash_without_output_says_only_what_happened(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=3, exit_code=3)
    world.service.handle_request(world.request("v1.1"))
    error = world.telemetry.reports[-1].error or ""
    assert "v1.1 exited with code 3 within 10 s; rolled back to v1.0" in error
    assert "last output" not in error


def test_unreadable_output_does_not_hide_the_failure(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=3, exit_code=3, output=("x",))

    def unreadable(lines: int) -> tuple[str, ...]:
        raise RuntimeUnavailable("Docker engine unreachable")

    monkeypatch.setattr(world.runtime, "last_output", unreadable)
    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK
    error = world.telemetry.reports[-1].error or ""
    assert "v1.1 exited with code 3 within 10 s" in error and "last output" not in error


# ------------------------------------------------------- which container counts as failed


def attrs(exit_code: int, *, oom: bool = False, health: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"Running": False, "ExitCode": exit_code, "OOMKilled": oom}
    if health is not None:
        state["Health"] = {"Status": health}
    return {"Id": "c" * 64, "State": state}


@pytest.mark.parametrize(
    ("exit_code", "oom", "failed"),
    [
        (3, False, True),
        (1, False, True),
        (137, True, True),
        (137, False, True),
        (0, False, False),
        (143, False, False),
    ],
)
def test_a_container_that_stopped_on_its_own(exit_code: int, oom: bool, failed: bool) -> None:
    assert is_failure(attrs(exit_code, oom=oom), None) is failed


def test_a_container_this_process_stopped_failed_only_when_it_was_failing() -> None:
    healthy = stopping({"Id": "c" * 64, "State": {"Running": True}})
    assert healthy == Stopped("c" * 64, failing=False)
    # A healthy controller killed after the stop grace (137) did not fail.
    assert is_failure(attrs(137), healthy) is False

    for status in ("unhealthy", "starting"):
        running = {"Id": "c" * 64, "State": {"Running": True, "Health": {"Status": status}}}
        assert is_failure(attrs(0), stopping(running)) is True

    # Another container than the one stopped: judged by its own exit.
    other = Stopped("d" * 64, failing=False)
    assert is_failure(attrs(3), other) is True
