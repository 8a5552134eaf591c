"""The settings fingerprint changes with what decides a build or a run, and only that."""

from __future__ import annotations

import dataclasses

import pytest

from teg_ota.app.container import build_container
from teg_ota.app.fingerprint import FINGERPRINT_FIELDS, settings_fingerprint
from teg_ota.app.settings import Settings

BASE = Settings(git_url="https://user:secret@example.invalid/controller.git")


@pytest.mark.parametrize(
    "change",
    [
        {"privileged": False},
        {"network_mode": "none"},
        {"controller_mounts": ("/dev:/dev",)},
        {"controller_env": {"MODE": "test"}},
        {"image_prefix": "other-"},
        {"git_path": "/srv/controller"},
    ],
)
def test_a_build_or_run_setting_changes_it(change: dict[str, object]) -> None:
    changed = dataclasses.replace(BASE, **change)  # type: ignore[arg-type]
    assert settings_fingerprint(changed) != settings_fingerprint(BASE)


@pytest.mark.parametrize(
    "change", [{"mqtt_host": "tb.example"}, {"log_level": "DEBUG"}, {"backoff_max_s": 10.0}]
)
def test_a_setting_that_cannot_fail_an_update_does_not(change: dict[str, object]) -> None:
    changed = dataclasses.replace(BASE, **change)  # type: ignore[arg-type]
    assert settings_fingerprint(changed) == settings_fingerprint(BASE)


def test_it_is_a_short_digest_that_names_no_value() -> None:
    fingerprint = settings_fingerprint(BASE)
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert "secret" not in fingerprint


def test_every_listed_field_exists() -> None:
    assert all(hasattr(BASE, name) for name in FINGERPRINT_FIELDS)


def test_the_container_gives_the_service_the_fingerprint(tmp_path: object) -> None:
    settings = dataclasses.replace(BASE, data_path=str(tmp_path))
    service = build_container(settings).update_service()
    assert service.settings.fingerprint == settings_fingerprint(settings)
