"""teg-ota: keeps the TEG gateway controller container running and updates it over the air.

The package never configures logging on import: the standard-library logger gets a
NullHandler (so an embedding product without logging set up sees nothing), and loguru is
disabled for ``teg_ota`` until the runner or the embedding product calls
``loguru.logger.enable("teg_ota")`` (``teg_ota.app.logging_setup.configure_logging`` does).

Importing the package imports nothing else (issue 14: ``teg-ota --help`` must not pay for
loguru, which pulls in asyncio and multiprocessing). loguru is disabled for ``teg_ota`` the
moment it is imported, by whichever module imports it first: at once when it already is,
else through a one-shot import hook (:class:`_QuietLoguruOnImport`). ``teg_ota.logger`` is
still loguru's logger, imported on first use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.abc alone costs more than the rest of the package
    from collections.abc import Sequence
    from importlib.abc import Loader
    from importlib.abc import Loader as _LoaderBase
    from importlib.machinery import ModuleSpec
else:
    _LoaderBase = object  # the import system only needs the methods

__version__ = "0.1.0"

_PACKAGE = "teg_ota"


def _quiet(loguru: types.ModuleType) -> None:
    loguru.logger.disable(_PACKAGE)


class _QuietLoader(_LoaderBase):
    """loguru's own loader, then ``logger.disable("teg_ota")`` before anyone can log; the
    original loader is put back on the module, so nothing of this stays visible."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _quiet(module)


class _QuietLoguruOnImport:
    """Finds nothing itself: on the import of ``loguru`` it removes itself, lets the other
    finders find loguru and wraps the loader they return in :class:`_QuietLoader`."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != "loguru":
            return None
        with contextlib.suppress(ValueError):  # another thread's import removed it already
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


logging.getLogger(_PACKAGE).addHandler(logging.NullHandler())
if "loguru" in sys.modules:
    _quiet(sys.modules["loguru"])
else:
    sys.meta_path.insert(0, _QuietLoguruOnImport())


def __getattr__(name: str) -> object:
    """``teg_ota.logger`` (loguru's logger, as before), imported when first asked for."""
    if name == "logger":
        from loguru import logger  # noqa: PLC0415 - lazy on purpose, see the docstring

        return logger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
