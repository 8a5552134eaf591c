"""teg-ota: keeps the TEG gateway controller container running and updates it over the air.

The package never configures logging on import: the standard-library logger gets a
NullHandler (so an embedding product without logging set up sees nothing), and loguru is
disabled for ``teg_ota`` until the runner or the embedding product calls
``loguru.logger.enable("teg_ota")`` (``teg_ota.app.logging_setup.configure_logging`` does).
"""

import logging

from loguru import logger

__version__ = "0.1.0"

logging.getLogger("teg_ota").addHandler(logging.NullHandler())
logger.disable("teg_ota")
