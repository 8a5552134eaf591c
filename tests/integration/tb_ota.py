"""A software package and what ThingsBoard writes for it (no pytest imports).

From ``DefaultOtaPackageStateService`` (thingsboard/thingsboard master, 2026):

* on assignment (``send``): time series ``target_sw_title``, ``target_sw_version``,
  ``target_sw_tag`` (only when the package has a tag), ``target_sw_ts`` (a long: the assignment
  time) and ``sw_state=QUEUED``, all stamped with the assignment time;
* when the OTA queue gets to the device (``update`` / ``updateAttributes``): ``sw_state=INITIATED``
  stamped with the server's time then, then the shared attributes: ``sw_title``, ``sw_version``;
  ``sw_tag`` or its deletion; a URL package: ``sw_url``, and ``sw_size`` (a JSON number),
  ``sw_checksum_algorithm``, ``sw_checksum`` each written or deleted; a stored package:
  ``sw_size``, ``sw_checksum_algorithm``, ``sw_checksum`` and ``sw_url`` deleted. The deletions
  are pushed as their own ``{"deleted": [...]}`` message, in no guaranteed order with the values;
* on unassignment: one push deleting all nine ``sw_*`` attribute keys; no time series change.

A real stored package always has a size and a checksum (SHA256 when no algorithm is chosen);
here a stored package given without them writes neither (the gateway under test reads only the
title and the version), and a checksum without an algorithm gets SHA256.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OTA_KEYS = (
    "sw_title",
    "sw_version",
    "sw_size",
    "sw_checksum",
    "sw_checksum_algorithm",
    "sw_url",
    "sw_tag",
)
"""The shared attributes a device asks for."""
UNASSIGN_KEYS = (
    "sw_title",
    "sw_version",
    "sw_ts",
    "sw_state",
    "sw_size",
    "sw_checksum",
    "sw_checksum_algorithm",
    "sw_url",
    "sw_tag",
)
"""``OtaPackageUtil.ALL_SW_ATTRIBUTE_KEYS``: what an unassignment deletes, in this order."""
CHECKSUM_ALGORITHMS = ("MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128")


@dataclass(frozen=True)
class Package:
    """A SOFTWARE package: a URL package when ``url`` is set, else a stored one."""

    title: str
    version: str
    size: int | None = None
    checksum: str | None = None
    checksum_algorithm: str | None = None
    url: str | None = None
    tag: str | None = None

    def __post_init__(self) -> None:
        if self.checksum and not self.checksum_algorithm:
            object.__setattr__(self, "checksum_algorithm", "SHA256")

    def same_package(self, other: Package | None) -> bool:
        """ThingsBoard keys packages by id, and a title + version is unique in a tenant."""
        return other is not None and (other.title, other.version) == (self.title, self.version)

    def queued_series(self, ts: int) -> dict[str, Any]:
        """The time series written on assignment, all at ``ts``."""
        series: dict[str, Any] = {
            "target_sw_title": self.title,
            "target_sw_version": self.version,
        }
        if self.tag:
            series["target_sw_tag"] = self.tag
        series["target_sw_ts"] = ts
        series["sw_state"] = "QUEUED"
        return series

    def attributes(self) -> tuple[dict[str, Any], list[str]]:
        """(shared attributes written, keys deleted) when the assignment is processed."""
        values: dict[str, Any] = {"sw_title": self.title, "sw_version": self.version}
        deleted: list[str] = []
        if self.tag:
            values["sw_tag"] = self.tag
        else:
            deleted.append("sw_tag")
        optional = (
            ("sw_size", self.size),
            ("sw_checksum_algorithm", self.checksum_algorithm),
            ("sw_checksum", self.checksum),
        )
        if self.url:
            values["sw_url"] = self.url
            for key, value in optional:
                if value is None or value == "":
                    deleted.append(key)
                else:
                    values[key] = value
        else:
            values.update({key: value for key, value in optional if value is not None})
            deleted.append("sw_url")
        return values, deleted
