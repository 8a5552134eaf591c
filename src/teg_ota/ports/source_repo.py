"""SourceRepo port: the controller's Git repository, the source images are built from."""

from typing import Protocol

from teg_ota.domain.model.errors import (
    FetchFailed,
    ResetFailed,
    SourceRepoError,
    UnknownVersion,
)

__all__ = ["FetchFailed", "ResetFailed", "SourceRepo", "SourceRepoError", "UnknownVersion"]


class SourceRepo(Protocol):
    @property
    def worktree(self) -> str:
        """The directory images are built from."""
        ...

    def fetch(self) -> None:
        """Update refs and tags from the remote (a moved tag is updated). Raises FetchFailed."""
        ...

    def resolve(self, tag_or_commit: str) -> str:
        """The 40-hex commit a tag (lightweight or annotated) or full hash names.

        Raises :class:`UnknownVersion`.
        """
        ...

    def commit_exists(self, commit: str) -> bool: ...

    def current_commit(self) -> str | None: ...

    def reset_to(self, commit: str) -> None:
        """``checkout -f``, ``reset --hard`` and ``clean -fdx``: the work tree is exactly the
        commit, ignored files removed too. Raises :class:`ResetFailed`."""
        ...
