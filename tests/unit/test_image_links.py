"""A host tool is not mounted over an image's link to another program (busybox's applets)."""

from __future__ import annotations

from teg_ota.adapters.docker.image_links import is_foreign_link, mount_target


def test_a_link_to_busybox_is_foreign() -> None:
    assert is_foreign_link("/bin/uptime", {"name": "uptime", "linkTarget": "/bin/busybox"})
    assert is_foreign_link("/bin/uptime", {"name": "uptime", "linkTarget": "busybox"})


def test_a_link_to_a_program_of_the_same_name_is_not() -> None:
    # Debian's merged /usr: the mount replaces /usr/bin/uptime, as intended.
    assert not is_foreign_link("/bin/uptime", {"name": "uptime", "linkTarget": "/usr/bin/uptime"})


def test_a_plain_file_or_a_missing_path_is_not() -> None:
    assert not is_foreign_link("/bin/uptime", {"name": "uptime", "linkTarget": ""})
    assert not is_foreign_link("/bin/uptime", {"name": "uptime"})
    assert not is_foreign_link("/bin/pigs", None)


def test_the_target_of_a_mount() -> None:
    assert mount_target("/bin/uptime:/bin/uptime:ro") == "/bin/uptime"
    assert mount_target("/opt/x:/bin/pigs") == "/bin/pigs"
