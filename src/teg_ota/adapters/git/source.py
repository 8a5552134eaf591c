"""PackageSource over a Git repository: a version is a tag or a commit, the image is built
from the work tree reset to it.

The domain no longer speaks Git: it asks a source for a digest and for something to build
from. For Git the digest is the 40-hex commit (what the image's commit label holds, so an
image built before is recognised whichever tag named it), and the staged material is the
repository's own work tree, which stays: the next update resets it again, and a rollback
that must rebuild the previous version needs nothing downloaded.
"""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger

from teg_ota.ports.package_source import BuildContext, PackageRef, Staged
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

        :class:`~teg_ota.ports.package_source.FetchFailed` propagates as it is (transient;
        the caller may use an image built before); a version the repository does not know
        raises :class:`~teg_ota.ports.package_source.UnknownVersion`.
        """
        self._repo.fetch()
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
