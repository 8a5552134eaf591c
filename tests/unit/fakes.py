"""Hand-written, in-memory fakes of every port. They record what was asked of them and can
be told to fail at any step. Time is a FakeClock: nothing here sleeps."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from teg_ota.domain.model.journal import (
    Answer,
    FailedVersion,
    InterruptedAttempts,
    JournalPhase,
    UpdateJournal,
)
from teg_ota.domain.model.versions import version_from_image
from teg_ota.ports import (
    BuildFailed,
    ControllerExit,
    ControllerState,
    FetchFailed,
    Health,
    ImageInfo,
    OtaReport,
    ResetFailed,
    RuntimeUnavailable,
    StartFailed,
    UnknownVersion,
    VersionStoreError,
)
from teg_ota.ports.container_runtime import COMMIT_LABEL, VERSION_LABEL
from teg_ota.ports.package_source import BuildContext, PackageRef, Staged

PREFIX = "teg-controller-"


class SimulatedCrash(BaseException):
    """A power cut: not an Exception, so no ``except Exception`` in the code under test can
    swallow it, exactly like a real kill."""


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.wall = start
        self.mono = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@dataclass
class _Container:
    tag: str
    labels: dict[str, str]
    started_at: float
    running: bool = True
    exit_code: int | None = None
    image_id: str | None = None


@dataclass
class Behaviour:
    """How a version's container behaves once started."""

    exits_after_s: float | None = None
    exit_code: int = 1
    health: Health = Health.NONE
    output: tuple[str, ...] = ()
    """What its container prints (``last_output`` returns the end of it)."""


class FakeRuntime:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.images: dict[str, dict[str, str]] = {}
        self.image_created: dict[str, float] = {}
        self.container: _Container | None = None
        self.calls: list[str] = []
        self.behaviours: dict[str, Behaviour] = {}
        self.free_bytes = 10 * 2**30
        self.unavailable = False
        self.build_fails: str | None = None
        self.start_fails_for: set[str] = set()
        self.build_log = ["Step 1/2 : FROM teg-ota-test-busybox", "Successfully built"]
        self.restarts_prepared = 0
        self.prepared_discards = 0
        """How often recovery asked for a left-over prepared container to be removed."""
        self.image_by_id: dict[str, dict[str, str]] = {}
        """Image id -> labels: a container runs an image, whatever its tag names later."""

    # -- helpers for tests
    def add_image(self, tag: str, version: str, commit: str | None) -> None:
        labels = {VERSION_LABEL: version}
        if commit is not None:
            labels[COMMIT_LABEL] = commit
        self.images[tag] = labels
        self.image_created[tag] = self.clock.now()
        self.clock.advance(0.001)

    def start_existing(self, tag: str) -> None:
        labels = dict(self.images.get(tag, {}))
        self.container = _Container(tag, labels, self.clock.now(), image_id=self._id_of(tag))

    def _id_of(self, tag: str) -> str | None:
        labels = self.images.get(tag)
        if labels is None:
            return None
        image_id = "sha256:" + hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()
        self.image_by_id[image_id] = dict(labels)
        return image_id

    @property
    def running_version(self) -> str | None:
        state = self.controller_state()
        return state.version if state.running else None

    def kill(self, exit_code: int = 137) -> None:
        assert self.container is not None
        self.container.running = False
        self.container.exit_code = exit_code

    def _check(self) -> None:
        if self.unavailable:
            raise RuntimeUnavailable("Docker engine unreachable")

    def _advance_container(self) -> None:
        """Apply a scheduled exit whose time has come."""
        container = self.container
        if container is None or not container.running:
            return
        behaviour = self._behaviour(container)
        due = behaviour.exits_after_s
        if due is not None and self.clock.now() - container.started_at >= due:
            container.running = False
            container.exit_code = behaviour.exit_code

    def _behaviour(self, container: _Container) -> Behaviour:
        version = container.labels.get(VERSION_LABEL) or version_from_image(PREFIX, container.tag)
        return self.behaviours.get(version or "", Behaviour())

    # -- the port
    def controller_state(self) -> ControllerState:
        self._check()
        self._advance_container()
        container = self.container
        if container is None:
            return ControllerState(exists=False)
        version = container.labels.get(VERSION_LABEL) or version_from_image(PREFIX, container.tag)
        return ControllerState(
            exists=True,
            running=container.running,
            version=version,
            image=container.tag,
            started_at_ms=int(container.started_at * 1000),
            health=self._behaviour(container).health if container.running else Health.NONE,
            exit_code=container.exit_code,
            commit=container.labels.get(COMMIT_LABEL),
            image_id=container.image_id,
        )

    def image_exists(self, tag: str) -> bool:
        self._check()
        return tag in self.images

    def image_labels(self, tag: str) -> Mapping[str, str] | None:
        self._check()
        labels = self.images.get(tag)
        return dict(labels) if labels is not None else None

    def build_image(
        self,
        context_dir: str,
        tag: str,
        labels: Mapping[str, str],
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self._check()
        self.calls.append(f"build {tag}")
        for line in self.build_log:
            if on_progress:
                on_progress(line)
        if self.build_fails is not None:
            raise BuildFailed(self.build_fails)
        self.images[tag] = dict(labels)
        self.image_created[tag] = self.clock.now()
        self.clock.advance(0.001)

    def load_image(self, archive_path: str, tag: str, labels: Mapping[str, str]) -> None:
        self._check()
        self.calls.append(f"load {tag} from {archive_path}")
        if self.build_fails is not None:
            raise BuildFailed(self.build_fails)
        self.images[tag] = dict(labels)
        self.image_created[tag] = self.clock.now()
        self.clock.advance(0.001)

    def run_controller(self, tag: str, labels: Mapping[str, str]) -> None:
        self._check()
        self.calls.append(f"run {tag}")
        if self.container is not None and self.container.running:
            raise StartFailed("a controller container is already running")
        if tag not in self.images:
            raise StartFailed(f"no such image {tag}")
        version = labels.get(VERSION_LABEL, "")
        if version in self.start_fails_for:
            raise StartFailed(f"cannot start {tag}: device /dev/i2c-1 not found")
        self.container = _Container(tag, dict(labels), self.clock.now(), image_id=self._id_of(tag))

    def replace_controller(self, tag: str, labels: Mapping[str, str], grace_s: float) -> None:
        """As the engine's: the new container is made before the stop, so a missing image
        fails with the old controller still running."""
        self._check()
        if tag not in self.images:
            self.calls.append(f"run {tag}")
            raise StartFailed(f"no such image {tag}")
        self.stop_controller(grace_s)
        self.run_controller(tag, labels)

    def prepare_restart(self) -> None:
        self._check()
        self.restarts_prepared += 1

    def discard_prepared(self) -> bool:
        self._check()
        self.prepared_discards += 1
        return False

    def stop_controller(self, grace_s: float) -> None:
        self._check()
        self.calls.append("stop")
        if self.container is not None and self.container.running:
            self.container.running = False
            self.container.exit_code = 0

    def last_output(self, lines: int) -> tuple[str, ...]:
        self._check()
        if self.container is None or lines <= 0:
            return ()
        return tuple(self._behaviour(self.container).output[-lines:])

    def wait_for_exit(self, timeout_s: float) -> ControllerExit | None:
        self._check()
        self._advance_container()
        container = self.container
        if container is None or not container.running:
            code = container.exit_code if container else None
            return ControllerExit(code)
        behaviour = self._behaviour(container)
        if behaviour.health is Health.UNHEALTHY:
            return ControllerExit(None, unhealthy=True)
        if behaviour.exits_after_s is not None:
            remaining = container.started_at + behaviour.exits_after_s - self.clock.now()
            if remaining <= timeout_s:
                self.clock.advance(max(remaining, 0.0))
                self._advance_container()
                return ControllerExit(container.exit_code)
        self.clock.advance(timeout_s)
        return None

    def prune_stopped_containers(self) -> int:
        self._check()
        self.calls.append("prune")
        if self.container is not None and not self.container.running:
            self.container = None
            return 1
        return 0

    def list_controller_images(self) -> Sequence[ImageInfo]:
        self._check()
        return [
            ImageInfo(tag, self.image_created.get(tag, 0.0), dict(labels))
            for tag, labels in self.images.items()
        ]

    def remove_image(self, tag: str) -> None:
        self._check()
        self.calls.append(f"rmi {tag}")
        self.images.pop(tag, None)

    def tag_image(self, image: str, new_tag: str) -> None:
        self._check()
        self.calls.append(f"tag {image} {new_tag}")
        labels = self.image_by_id.get(image) or self.images[image]
        self.images[new_tag] = dict(labels)
        self.image_created[new_tag] = self.image_created.get(image, self.clock.now())

    def free_disk_bytes(self) -> int:
        self._check()
        return self.free_bytes


class FakeRepo:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.commits: set[str] = set()
        self.head: str | None = None
        self.fetch_fails: str | None = None
        self.reset_fails = False
        self.calls: list[str] = []
        self.remote_tags: dict[str, str] = {}

    @property
    def worktree(self) -> str:
        return "/fake/controller"

    def add_tag(self, tag: str, commit: str, *, remote_only: bool = False) -> None:
        self.remote_tags[tag] = commit
        if not remote_only:
            self.tags[tag] = commit
            self.commits.add(commit)

    def fetch(self) -> None:
        self.calls.append("fetch")
        if self.fetch_fails is not None:
            raise FetchFailed(self.fetch_fails)
        self.tags.update(self.remote_tags)
        self.commits.update(self.remote_tags.values())

    def resolve(self, tag_or_commit: str) -> str:
        self.calls.append(f"resolve {tag_or_commit}")
        if tag_or_commit in self.commits:
            return tag_or_commit
        if tag_or_commit in self.tags:
            return self.tags[tag_or_commit]
        raise UnknownVersion(f"unknown version {tag_or_commit!r}: no such tag or commit")

    def commit_exists(self, commit: str) -> bool:
        return commit in self.commits

    def current_commit(self) -> str | None:
        return self.head

    def reset_to(self, commit: str) -> None:
        self.calls.append(f"reset {commit}")
        if self.reset_fails:
            raise ResetFailed("work tree is locked")
        self.head = commit


class FakeRepoSource:
    """The git package source's recipe over a :class:`FakeRepo`: fetch then resolve, and a
    work tree reset to the digest as the build context."""

    def __init__(self, repo: FakeRepo) -> None:
        self.repo = repo
        self.released: list[Staged] = []

    def resolve(self, package: PackageRef) -> str:
        self.repo.fetch()
        return self.repo.resolve(package.version.value)

    def stage(
        self,
        package: PackageRef,
        digest: str,
        on_progress: Callable[[str], None] | None = None,
    ) -> Staged:
        self.repo.reset_to(digest)
        return BuildContext(self.repo.worktree)

    def release(self, staged: Staged) -> None:
        self.released.append(staged)


@dataclass
class FakeTelemetry:
    reports: list[OtaReport] = field(default_factory=list)
    values: list[dict[str, object]] = field(default_factory=list)
    attribute_requests: int = 0

    def publish_ota_state(self, report: OtaReport) -> None:
        self.reports.append(report)

    def publish_telemetry(self, values: Mapping[str, object]) -> None:
        self.values.append(dict(values))

    def request_ota_attributes(self) -> None:
        self.attribute_requests += 1

    @property
    def states(self) -> list[str]:
        return [report.state.value for report in self.reports]

    @property
    def terminal(self) -> list[OtaReport]:
        return [report for report in self.reports if report.state.is_terminal]


class FakeStore:
    def __init__(self, default: str | None = None) -> None:
        self.default = default
        self.launched: str | None = None
        self.good_history: list[str] = []
        """Known-good versions, newest first, as stored (``domain.core.known_good`` changes it)."""
        self.failed_version: FailedVersion | None = None
        self.last_answer: Answer | None = None
        self.interrupted: InterruptedAttempts | None = None
        """The loop guard's count (``set_interrupted_attempts``)."""
        self.current_journal: UpdateJournal | None = None
        self.phases: list[JournalPhase] = []
        self.crash_before: JournalPhase | None = None
        """Crash (after writing) the journal entry of this phase, before the phase runs."""
        self.fail_writes = False
        self.commits: dict[str, str] = {}
        """Version -> the commit it named at its first success (``record_commit``)."""

    def last_launched(self) -> str | None:
        return self.launched or self.default

    def default_version(self) -> str | None:
        return self.default

    def set_last_launched(self, version: str) -> None:
        self._write_check()
        self.launched = version

    @property
    def good(self) -> str | None:
        return self.good_history[0] if self.good_history else None

    @good.setter
    def good(self, version: str | None) -> None:
        """Tests set the known-good version directly: it replaces the newest entry
        (``None``: nothing is known good any more)."""
        if version is None:
            self.good_history = []
        else:
            self.good_history = [version, *(v for v in self.good_history[1:] if v != version)]

    @property
    def previous_good(self) -> str | None:
        return self.good_history[1] if len(self.good_history) > 1 else None

    def known_good_history(self) -> tuple[str, ...]:
        return tuple(self.good_history)

    def set_known_good_history(self, history: Sequence[str]) -> None:
        self._write_check()
        self.good_history = list(history)

    def recorded_commit(self, version: str) -> str | None:
        return self.commits.get(version)

    def record_commit(self, version: str, commit: str) -> None:
        self._write_check()
        self.commits[version] = commit

    def failed(self) -> FailedVersion | None:
        return self.failed_version

    def set_failed(self, failed: FailedVersion | None) -> None:
        self._write_check()
        self.failed_version = failed

    def answered(self) -> Answer | None:
        return self.last_answer

    def set_answered(self, answer: Answer | None) -> None:
        self._write_check()
        self.last_answer = answer

    def interrupted_attempts(self) -> InterruptedAttempts | None:
        return self.interrupted

    def set_interrupted_attempts(self, record: InterruptedAttempts | None) -> None:
        self._write_check()
        self.interrupted = record

    def journal(self) -> UpdateJournal | None:
        return self.current_journal

    def write_journal(self, journal: UpdateJournal) -> None:
        self._write_check()
        self.current_journal = journal
        self.phases.append(journal.phase)
        if journal.phase is self.crash_before:
            self.crash_before = None
            raise SimulatedCrash(journal.phase.value)

    def clear_journal(self) -> None:
        self._write_check()
        self.current_journal = None

    def _write_check(self) -> None:
        if self.fail_writes:
            raise VersionStoreError("disk is read-only")
