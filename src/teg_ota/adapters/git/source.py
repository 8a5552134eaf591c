"""PackageSource over a Git repository: a version is a tag or a commit, the image is built
from the work tree reset to it.

The domain no longer speaks Git: it asks a source for a digest and for something to build
from. For Git the digest is the 40-hex commit (what the image's commit label holds, so an
image built before is recognised whichever tag named it), and the staged material is the
repository's own work tree, which stays: the next update resets it again, and a rollback
that must rebuild the previous version needs nothing downloaded.

A fetch the Git server answered "not now" (HTTP 429, 5xx, a connection reset, refused or
timed out: :mod:`.transport_errors`) is raised as the domain's transient fault, which the
domain retries with jittered backoff (``services.fetch_retry``); this adapter never waits.
"""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger

from teg_ota.adapters.git.transport_errors import transient_fault
from teg_ota.ports.package_source import BuildContext, FetchFailed, PackageRef, Staged
from teg_ota.ports.source_repo import SourceRepo

__all__ = ["GitPackageSource"]


class GitPackageSource:
    """A :class:`~teg_ota.ports.package_source.PackageSource` over a ``SourceRepo``
    (:class:`~teg_ota.adapters.git.repository.DulwichSourceRepo` in production)."""

    def __init__(self, repo: SourceRepo) -> None:
        self._repo = repo

    def __repr__(self) -> str:
        # The repository's repr redacts the URL's credentials.
        return f"GitPackageSource({self._repo!r})"

    def resolve(self, package: PackageRef) -> str:
        """Fetch, then the commit ``package.version`` names now: a tag may have moved since
        the last update, so a cached answer could build the wrong code.

        :class:`~teg_ota.ports.package_source.FetchFailed` propagates (the caller may use
        an image built before), as a :class:`~teg_ota.domain.model.errors.SourceRateLimited`
        or :class:`~teg_ota.domain.model.errors.SourceTemporarilyUnavailable` when the
        server may answer later; a version the repository does not know raises
        :class:`~teg_ota.ports.package_source.UnknownVersion`.
        """
        try:
            self._repo.fetch()
        except FetchFailed as exc:
            # The repository raises its own credential-free message "from None": the
            # transport's exception is still its __context__, to be classified, not shown.
            fault = transient_fault(exc.__cause__ or exc.__context__)
            if fault is None:
                raise
            logger.debug("the fetch failed for now: {}", fault.why)
            raise fault.kind(f"{fault.why}: {exc}") from None
        commit = self._repo.resolve(package.version.value)
        logger.debug("package {} is commit {}", package.version.value, commit)
        return commit

    def stage(
        self,
        package: PackageRef,
        digest: str,
        on_progress: Callable[[str], None] | None = None,
    ) -> Staged:
        """The work tree, made exactly ``digest`` (``checkout -f``, ``reset --hard``,
        ``clean -fdx``). ``on_progress`` is not called: a local reset has nothing to stream.

        Raises :class:`~teg_ota.ports.package_source.ResetFailed`.
        """
        self._repo.reset_to(digest)
        return BuildContext(directory=self._repo.worktree)

    def release(self, staged: Staged) -> None:
        """Nothing to remove: the work tree is the repository's, and the next update starts
        from it."""
