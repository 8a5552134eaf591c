"""Make the image a version runs from, whatever the source: resolve the digest, reuse an
image that already carries it, else stage and build or load it; and collect old images.

Building happens while the old controller keeps running, so this is where an update may
take minutes; nothing here touches the controller container. The fetch an update needs is
tried again while the origin answers "not now" (``services.fetch_retry``).
"""

from __future__ import annotations

import logging

from teg_ota.domain.core.images import images_to_remove
from teg_ota.domain.core.jitter import RandomSource
from teg_ota.domain.model.controller import COMMIT_LABEL, VERSION_LABEL
from teg_ota.domain.model.errors import (
    DiskSpaceLow,
    InvalidVersion,
    TagMoved,
    VerificationFailed,
)
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.package import BuildContext, ImageArchive, PackageRef
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.model.versions import Version, image_tag, parse_version
from teg_ota.domain.services.fetch_retry import FetchRetry
from teg_ota.domain.services.reporting import ProgressListener, notify, quiet
from teg_ota.ports.clock import Clock
from teg_ota.ports.container_runtime import ContainerRuntime, ContainerRuntimeError
from teg_ota.ports.package_source import FetchFailed, PackageSource

log = logging.getLogger(__name__)


def labels_for(version: Version, digest: str | None) -> dict[str, str]:
    labels = {VERSION_LABEL: version.value}
    if digest is not None:
        labels[COMMIT_LABEL] = digest
    return labels


class ImageMaker:
    def __init__(
        self,
        runtime: ContainerRuntime,
        source: PackageSource,
        settings: UpdateSettings,
        clock: Clock,
        rng: RandomSource | None = None,
    ) -> None:
        self._runtime = runtime
        self._source = source
        self._settings = settings
        self.fetch = FetchRetry(clock, settings.fetch_retry, rng)

    def tag(self, version: Version) -> str:
        return image_tag(self._settings.image_prefix, version)

    def make(
        self,
        package: PackageRef,
        listener: ProgressListener = quiet,
        *,
        recorded: str | None = None,
    ) -> str:
        """The digest of an image for ``package`` that now exists locally.

        ``recorded``: what the version named at its first success. A tag that names another
        commit now is refused (:class:`TagMoved`) before anything is built, unless moved tags
        are allowed: then it is rebuilt from what it names now."""
        version, tag = package.version, self.tag(package.version)
        labels = self._runtime.image_labels(tag)
        cached = labels.get(COMMIT_LABEL) if labels is not None else None
        notify(listener, f"[{OtaState.DOWNLOADING}] fetching the controller repository")
        try:
            digest = self.fetch.resolve(self._source, package, listener)
        except FetchFailed as exc:
            if cached is None:
                raise
            log.warning("fetch failed (%s); using the cached image %s", exc, tag)
            return cached
        if recorded is not None and digest != recorded and not version.is_commit:
            self._check_move(version, recorded, digest)
        if cached == digest:
            notify(listener, f"[{OtaState.DOWNLOADING}] image {tag} already built")
            return digest
        free = self._runtime.free_disk_bytes()
        if free < self._settings.min_free_disk_bytes:
            raise DiskSpaceLow(
                f"only {free // 2**20} MiB free for building images; at least "
                f"{self._settings.min_free_disk_bytes // 2**20} MiB are required"
            )
        staged = self._source.stage(package, digest, lambda line: notify(listener, line))
        try:
            if isinstance(staged, ImageArchive):
                notify(listener, f"[{OtaState.DOWNLOADING}] loading {tag} ({digest[:12]})")
                self._runtime.load_image(staged.path, tag, labels_for(version, digest))
            elif isinstance(staged, BuildContext):
                notify(listener, f"[{OtaState.DOWNLOADING}] building {tag} from {digest[:12]}")
                self._runtime.build_image(
                    staged.directory,
                    tag,
                    labels_for(version, digest),
                    lambda line: notify(listener, line),
                )
        finally:
            self._source.release(staged)
        return digest

    def _check_move(self, version: Version, recorded: str, digest: str) -> None:
        moved = (
            f"tag {version} moved on the remote: it named {recorded[:12]} when it was "
            f"installed and names {digest[:12]} now"
        )
        if not self._settings.allow_moved_tags:
            raise TagMoved(f"{moved}; not installed (TEG_ALLOW_MOVED_TAGS=1 rebuilds it)")
        log.warning("%s; rebuilding it (moved tags are allowed)", moved)

    def moved_from(self, package: PackageRef, running_commit: str) -> str | None:
        """What the tag names now when that is not ``running_commit`` (moved tags allowed,
        the tag re-sent while it runs); ``None`` when it did not move or cannot be asked."""
        try:
            digest = self._source.resolve(package)
        except FetchFailed as exc:
            log.warning(
                "cannot ask whether %s moved (%s); it runs as installed", package.version, exc
            )
            return None
        return None if digest == running_commit else digest

    def keep_as_commit(self, version: Version, commit: str, image_id: str) -> str | None:
        """Name the image ``version`` runs from (``image_id``, not whatever the tag names
        now) after its ``commit`` too, before the tag is rebuilt, so a rollback starts what
        ran; that commit as a version, or ``None`` when it cannot be kept."""
        try:
            kept = parse_version(commit)
        except InvalidVersion:
            return None
        if not kept.is_commit or kept == version:
            return None
        self._runtime.tag_image(image_id, self.tag(kept))
        labels = self._runtime.image_labels(self.tag(kept))
        if labels is None or labels.get(COMMIT_LABEL) != commit:
            return None
        return kept.value

    def verify(self, version: Version, digest: str) -> None:
        """The image that would run carries the digest the version resolved to."""
        tag = self.tag(version)
        labels = self._runtime.image_labels(tag)
        if labels is None:
            raise VerificationFailed(f"image {tag} is missing after the build")
        built = labels.get(COMMIT_LABEL)
        if built != digest:
            raise VerificationFailed(
                f"image {tag} carries commit {built or 'none'}, but {version} resolves to {digest}"
            )
        if version.is_commit and digest != version.value:
            raise VerificationFailed(f"{version} resolved to another commit {digest}")

    def start(self, version: Version) -> bool:
        """Run ``version``'s image if it exists (False when it does not)."""
        tag = self.tag(version)
        labels = self._runtime.image_labels(tag)
        if labels is None:
            return False
        self._runtime.run_controller(tag, labels_for(version, labels.get(COMMIT_LABEL)))
        return True

    def collect(self, keep_versions: tuple[str | None, ...]) -> None:
        """Prune stopped containers; keep the given versions' images and the N newest
        others (the rule is ``core.images``)."""
        try:
            self._runtime.prune_stopped_containers()
            keep = {
                self.tag(parse_version(version)) for version in keep_versions if version is not None
            }
            images = self._runtime.list_controller_images()
            for tag in images_to_remove(images, keep, self._settings.keep_older_images):
                log.info("removing old controller image %s", tag)
                self._runtime.remove_image(tag)
        except (ContainerRuntimeError, InvalidVersion) as exc:
            log.warning("housekeeping after the update failed: %s", exc)
