"""The exit codes of ``teg-ota`` (docs/configuration.md repeats them), in a module of their
own so that each command's module and the argument parser share them without importing
one another."""

EXIT_OK = 0
"""Success (for ``update``: updated or already running)."""
EXIT_FAILED = 1
"""The operation failed (update FAILED / rolled back / refused; doctor found problems)."""
EXIT_USAGE = 2
"""Bad usage or configuration (one line names the variable)."""
EXIT_LOCKED = 3
"""Another teg-ota process manages this data directory."""
EXIT_ENGINE = 4
"""The container engine is unreachable."""
