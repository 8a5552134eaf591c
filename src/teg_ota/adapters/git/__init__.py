"""The controller's Git repository on dulwich (no ``git`` binary), split by job.

* :mod:`.repository`: :class:`DulwichSourceRepo` (``SourceRepo``): clone or open, fetch,
  resolve tags and commits;
* :mod:`.worktree`: the work tree made exactly one commit (``checkout -f``, ``reset
  --hard``, ``clean -fdx``);
* :mod:`.fetching`, :mod:`.local_remote`, :mod:`.local_clone`, :mod:`.network_clone`,
  :mod:`.cloned_refs`, :mod:`.negotiation`: a fetch and a first clone that cost what
  changed (only missing tips asked for, only changed refs written, the server told the
  branch tips rather than the history, a clone's refs in one ``packed-refs`` file; a remote
  on this machine read directly);
* :mod:`.credentials`: URL credentials handed to the transport, never logged, never
  written under ``.git``;
* :mod:`.source`: :class:`GitPackageSource` (``PackageSource``) over a repository.
"""

from teg_ota.adapters.git.credentials import redact_url
from teg_ota.adapters.git.repository import DulwichSourceRepo, SourceRepoUnavailable
from teg_ota.adapters.git.source import GitPackageSource

__all__ = ["DulwichSourceRepo", "GitPackageSource", "SourceRepoUnavailable", "redact_url"]
