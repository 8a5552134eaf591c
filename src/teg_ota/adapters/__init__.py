"""Adapters: one file per port implementation, each proven against the real thing in
tests/integration (dockerd, Mosquitto, Git repositories, the file system)."""
