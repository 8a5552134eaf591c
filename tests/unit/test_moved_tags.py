"""The moved-tag policy: what a tag named at its first success is recorded, and a tag that
names another commit later is refused, or rebuilt with TEG_ALLOW_MOVED_TAGS, never
confirmed silently (issue 17 row 9, issue 12's policy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from teg_ota.adapters.file_version_store import FileVersionStore
from teg_ota.adapters.resolved_files import MAX_RESOLVED, RESOLVED_FILE
from teg_ota.domain.core.decision import AlreadyRunning, StartUpdate, UpdateContext, decide_update
from teg_ota.domain.core.ota_messages import OtaRequest
from teg_ota.domain.model.controller import COMMIT_LABEL
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.versions import parse_version
from teg_ota.ports.version_store import VersionStoreError

from .fakes import Behaviour
from .test_update_service import C1, C2, C3, SUCCESS, World, tag


def moved_world(**settings: object) -> World:
    """v1.1 was installed as C2 and runs; then the remote moved tag v1.1 to C3."""
    world = World(**settings)
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    assert world.store.commits == {"v1.1": C2}
    world.repo.remote_tags["v1.1"] = C3
    world.telemetry.reports.clear()
    world.runtime.calls.clear()
    return world


def context(**kwargs: object) -> UpdateContext:
    return UpdateContext(OtaRequest(version="v1.1", title=None), "v1.1", **kwargs)  # type: ignore[arg-type]


# --- the decision -------------------------------------------------------------------------------


def test_the_running_tag_is_confirmed_from_the_record_without_a_fetch() -> None:
    assert decide_update(context(running_commit=C2, recorded_commit=C2)) == AlreadyRunning("v1.1")
    assert decide_update(context(running_commit=None, recorded_commit=C2)) == AlreadyRunning("v1.1")
    assert decide_update(context(running_commit=C2)) == AlreadyRunning("v1.1")


def test_a_container_named_like_the_version_but_another_commit_is_not_confirmed() -> None:
    decision = decide_update(context(running_commit=C3, recorded_commit=C2))
    assert decision == StartUpdate(parse_version("v1.1"), clears_failed=False)


def test_with_moved_tags_allowed_the_running_tag_is_checked_on_the_remote() -> None:
    allowed = context(running_commit=C2, recorded_commit=C2, allow_moved_tags=True)
    assert decide_update(allowed) == AlreadyRunning("v1.1", recheck=True)
    unlabelled = context(running_commit=None, allow_moved_tags=True)
    assert decide_update(unlabelled) == AlreadyRunning("v1.1", recheck=False)
    commit = UpdateContext(OtaRequest(version=C2, title=None), C2, allow_moved_tags=True)
    assert decide_update(commit) == AlreadyRunning(C2, recheck=False)  # a commit cannot move


# --- through the service ------------------------------------------------------------------------


def test_the_re_sent_running_tag_is_confirmed_as_installed_and_nothing_is_fetched() -> None:
    world = moved_world()
    fetches = world.repo.calls.count("fetch")
    result = world.service.handle_request(world.request("v1.1"))
    assert result.outcome is Outcome.ALREADY_RUNNING
    assert world.telemetry.states == [], "answered before: not told again"
    assert world.repo.calls.count("fetch") == fetches, "confirmed from the record, no fetch"
    assert not [c for c in world.runtime.calls if c.startswith(("build", "stop", "run"))]


def test_a_moved_tag_is_refused_before_anything_is_built_and_not_remembered() -> None:
    world = moved_world()
    world.service.handle_request(world.request("v1.0"))  # now v1.0 runs again
    world.telemetry.reports.clear()
    world.runtime.calls.clear()

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert world.telemetry.states == ["DOWNLOADING", "FAILED"]
    error = str(world.telemetry.terminal[-1].error)
    assert "moved" in error and C2[:12] in error and C3[:12] in error, error
    assert "TEG_ALLOW_MOVED_TAGS" in error
    assert world.runtime.running_version == "v1.0"
    assert not [c for c in world.runtime.calls if c.startswith(("build", "stop", "run"))]
    assert world.store.failed_version is None, "the remote's doing, not the version's"
    assert world.store.commits["v1.1"] == C2


def test_allowed_a_moved_tag_is_rebuilt_and_recorded_anew() -> None:
    world = moved_world(allow_moved_tags=True)
    world.service.handle_request(world.request("v1.0"))
    world.telemetry.reports.clear()

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS
    assert world.runtime.controller_state().commit == C3
    assert world.store.commits["v1.1"] == C3


def test_allowed_the_re_sent_running_tag_that_moved_is_updated_in_place() -> None:
    world = moved_world(allow_moved_tags=True)
    result = world.service.handle_request(world.request("v1.1"))
    assert result.outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS
    assert world.runtime.controller_state().commit == C3
    # The image it ran from is kept under its commit: what a rollback would start.
    assert [c for c in world.runtime.calls if c.startswith("tag sha256:")], world.runtime.calls
    assert world.runtime.images[tag(C2)]["org.teg.controller.commit"] == C2


def test_allowed_a_failing_rebuild_of_the_running_tag_rolls_back_to_what_ran() -> None:
    world = moved_world(allow_moved_tags=True)
    crashes = Behaviour(exits_after_s=1, exit_code=3)

    def by_commit(container: Any) -> Behaviour:  # the fake keys behaviours by version
        return crashes if container.labels.get(COMMIT_LABEL) == C3 else Behaviour()

    world.runtime._behaviour = by_commit  # type: ignore[method-assign]

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK, result
    state = world.runtime.controller_state()
    assert state.running and state.commit == C2, state
    assert world.telemetry.states == [*SUCCESS[:-1], "FAILED"]
    assert world.store.launched == C2, "a reboot starts what ran, by its commit"


def test_allowed_the_image_kept_is_the_one_that_runs_not_what_the_tag_names_now() -> None:
    """An earlier build left the tag's image at C3 while the container still runs C2: the
    rollback must start C2, the image the container runs."""
    world = moved_world(allow_moved_tags=True)
    world.runtime.add_image(tag("v1.1"), "v1.1", C3)  # the tag renamed, the container not
    crashes = Behaviour(exits_after_s=1, exit_code=3)

    def by_commit(container: Any) -> Behaviour:
        return crashes if container.labels.get(COMMIT_LABEL) == C3 else Behaviour()

    world.runtime._behaviour = by_commit  # type: ignore[method-assign]
    world.service.handle_request(world.request("v1.1"))
    state = world.runtime.controller_state()
    assert state.running and state.commit == C2, state


def test_allowed_a_running_image_that_cannot_be_kept_is_not_rebuilt_over() -> None:
    world = moved_world(allow_moved_tags=True)
    assert world.runtime.container is not None
    world.runtime.container.image_id = None  # the engine did not say which image it runs
    result = world.service.handle_request(world.request("v1.1"))
    assert result.outcome is Outcome.FAILED
    assert "cannot be kept for a rollback" in str(result.error)
    assert world.telemetry.states == ["FAILED"]
    assert world.runtime.controller_state().commit == C2
    assert not [c for c in world.runtime.calls if c.startswith(("build", "stop", "run"))]


def test_allowed_an_unmoved_running_tag_is_confirmed_after_asking() -> None:
    world = moved_world(allow_moved_tags=True)
    world.repo.remote_tags["v1.1"] = C2  # not moved after all
    result = world.service.handle_request(world.request("v1.1"))
    assert result.outcome is Outcome.ALREADY_RUNNING
    assert not [c for c in world.runtime.calls if c.startswith(("build", "stop", "run"))]


# --- the record on disk -------------------------------------------------------------------------


def test_the_record_survives_a_restart_and_stays_bounded(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    store.record_commit("v1.1", C2)
    store.record_commit("v1.1", C3)
    assert FileVersionStore(tmp_path).recorded_commit("v1.1") == C3
    for n in range(MAX_RESOLVED + 5):
        store.record_commit(f"v2.{n}", C1)
    data = json.loads((tmp_path / RESOLVED_FILE).read_text())
    assert len(data["versions"]) == MAX_RESOLVED
    assert store.recorded_commit("v2.0") is None and store.recorded_commit(f"v2.{MAX_RESOLVED}")


def test_a_corrupt_record_reads_as_not_recorded(tmp_path: Path) -> None:
    (tmp_path / RESOLVED_FILE).write_text(
        json.dumps({"versions": {"v1.1": "not-a-commit", "v1.2": C3}})
    )
    store = FileVersionStore(tmp_path)
    assert store.recorded_commit("v1.1") is None
    assert store.recorded_commit("v1.2") == C3
    (tmp_path / RESOLVED_FILE).write_text("[]")
    assert store.recorded_commit("v1.2") is None
    (tmp_path / RESOLVED_FILE).unlink()
    (tmp_path / RESOLVED_FILE).mkdir()
    assert store.recorded_commit("v1.2") is None


def test_refuses_to_record_what_is_not_a_commit(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    with pytest.raises(VersionStoreError):
        store.record_commit("v1.1", "$(reboot)")
    with pytest.raises((VersionStoreError, InvalidVersion)):
        store.record_commit("--upload-pack=x", C1)
    assert not (tmp_path / RESOLVED_FILE).exists()
