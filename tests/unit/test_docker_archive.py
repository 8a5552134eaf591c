"""Reading ``docker save`` archives before the engine sees them (adapters.docker.archive).

The archives are made here in the layout ``docker save`` writes (layer directories, the
config ``<hex>.json``, ``manifest.json``, ``repositories``); the integration suite loads a
real one into dockerd.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard  # a dependency: its absence is a failure, never a skip

from teg_ota.adapters.docker.archive import ArchivedImage, read_archive, untagged_tar
from teg_ota.domain.model.errors import BuildFailed

CONFIG_HEX = "7" * 64
LAYER_DIR = "5" * 64
LAYER = LAYER_DIR + "/layer.tar"
TAGS = ["someone-else:1.0"]


def manifest_for(tags: list[str] | None = TAGS) -> list[dict[str, Any]]:
    return [{"Config": f"{CONFIG_HEX}.json", "RepoTags": tags, "Layers": [LAYER]}]


def save_tar(
    manifest: object = None,
    *,
    extra: dict[str, bytes] | None = None,
    without: tuple[str, ...] = (),
) -> bytes:
    """A tar laid out the way ``docker save`` lays it out."""
    members: dict[str, bytes | None] = {
        LAYER_DIR: None,
        LAYER: b"layer bytes " * 1000,
        f"{CONFIG_HEX}.json": b'{"config": {}}',
        "manifest.json": json.dumps(manifest_for() if manifest is None else manifest).encode(),
        "repositories": json.dumps({"someone-else": {"1.0": CONFIG_HEX}}).encode(),
        **(extra or {}),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            if name in without:
                continue
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def write(tmp_path: Path, data: bytes, name: str = "image.tar") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_reads_the_one_image_of_a_plain_archive(tmp_path: Path) -> None:
    image = read_archive(write(tmp_path, save_tar()))
    assert image.config == f"{CONFIG_HEX}.json"
    assert image.layers == (LAYER,)
    assert image.repo_tags == tuple(TAGS)
    assert image.image_id == f"sha256:{CONFIG_HEX}"


def test_reads_a_gzip_compressed_archive_whatever_its_name(tmp_path: Path) -> None:
    path = write(tmp_path, gzip.compress(save_tar()), name="image.tar")
    assert read_archive(path).image_id == f"sha256:{CONFIG_HEX}"


def test_image_id_from_oci_and_unknown_config_names() -> None:
    def image(config: str) -> ArchivedImage:
        return ArchivedImage(config=config, layers=(), repo_tags=(), manifest=b"")

    assert image(f"blobs/sha256/{CONFIG_HEX}").image_id == f"sha256:{CONFIG_HEX}"
    assert image("config.json").image_id is None
    assert image(f"{'A' * 64}.json").image_id is None
    assert image(f"{CONFIG_HEX}.json.bak").image_id is None


def test_zstd_without_the_zstandard_module_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = importlib.import_module

    def without_zstandard(name: str, package: str | None = None) -> Any:
        if name == "zstandard":
            raise ImportError("No module named 'zstandard'")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", without_zstandard)
    path = write(tmp_path, b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    with pytest.raises(BuildFailed, match=r"zstd-compressed.*'zstandard'"):
        read_archive(path)


def test_reads_a_zstd_compressed_archive(tmp_path: Path) -> None:
    path = write(tmp_path, zstandard.ZstdCompressor().compress(save_tar()))
    assert read_archive(path).image_id == f"sha256:{CONFIG_HEX}"
    assert b"".join(untagged_tar(path, read_archive(path)))


@pytest.mark.parametrize(
    "data",
    [b"", b"this is not an image archive\n" * 40, b"\x1f\x8b" + b"garbage" * 20],
    ids=["empty", "text", "bad-gzip"],
)
def test_a_file_that_is_no_tar_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(BuildFailed, match="corrupt or not a"):
        read_archive(write(tmp_path, data))


def test_a_truncated_archive_is_refused(tmp_path: Path) -> None:
    whole = gzip.compress(save_tar())
    with pytest.raises(BuildFailed, match="corrupt or not a"):
        read_archive(write(tmp_path, whole[: len(whole) // 2]))


def test_a_missing_archive_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="cannot read the image archive"):
        read_archive(str(tmp_path / "nowhere.tar"))


def test_a_tar_without_manifest_is_no_image(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match=r"holds no image \(no manifest.json"):
        read_archive(write(tmp_path, save_tar(without=("manifest.json",))))


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ([], "holds no image; exactly one"),
        (manifest_for() * 2, "holds 2 images; exactly one"),
        ({"Config": "x"}, "not a list of images"),
        ([{"Config": 3, "Layers": []}], "does not describe an image"),
        ([{"Config": f"{CONFIG_HEX}.json", "Layers": "x"}], "does not describe an image"),
        ([{"Config": f"{CONFIG_HEX}.json", "Layers": ["gone/layer.tar"]}], "incomplete"),
        ([{"Config": "gone.json", "Layers": [LAYER]}], "incomplete"),
    ],
)
def test_a_manifest_that_names_no_single_complete_image_is_refused(
    tmp_path: Path, manifest: object, message: str
) -> None:
    with pytest.raises(BuildFailed, match=message):
        read_archive(write(tmp_path, save_tar(manifest)))


def test_a_manifest_that_is_no_json_is_refused(tmp_path: Path) -> None:
    data = save_tar(extra={"manifest.json": b"[{not json"})
    with pytest.raises(BuildFailed, match="not valid JSON"):
        read_archive(write(tmp_path, data))


def test_unsafe_member_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="unsafe member name"):
        read_archive(write(tmp_path, save_tar(extra={"../escape": b"x"})))
    with pytest.raises(BuildFailed, match="unsafe member name"):
        read_archive(write(tmp_path, save_tar(extra={"/etc/passwd": b"x"})))


def member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    data = tar.extractfile(name)
    assert data is not None, name
    return data.read()


def test_device_members_are_refused(tmp_path: Path) -> None:
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(save_tar()), mode="r") as src,
        tarfile.open(fileobj=out, mode="w") as tar,
    ):
        for member in src:
            tar.addfile(member, src.extractfile(member) if member.isfile() else None)
        device = tarfile.TarInfo("dev-null")
        device.type = tarfile.CHRTYPE
        tar.addfile(device)
    with pytest.raises(BuildFailed, match="unexpected member type"):
        read_archive(write(tmp_path, out.getvalue()))


def test_untagged_tar_drops_the_names_and_keeps_everything_else(tmp_path: Path) -> None:
    path = write(tmp_path, gzip.compress(save_tar()))
    image = read_archive(path)
    chunks = list(untagged_tar(path, image))
    assert all(isinstance(chunk, bytes) for chunk in chunks)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r") as tar:
        names = tar.getnames()
        manifest = json.loads(member_bytes(tar, "manifest.json"))
        layer = member_bytes(tar, LAYER)
        config = member_bytes(tar, f"{CONFIG_HEX}.json")
    assert "repositories" not in names
    assert manifest == manifest_for(tags=None)
    assert layer == b"layer bytes " * 1000
    assert config == b'{"config": {}}'
    assert LAYER_DIR in names


def test_untagged_tar_notices_an_archive_replaced_after_it_was_read(tmp_path: Path) -> None:
    path = write(tmp_path, save_tar())
    image = read_archive(path)
    write(tmp_path, save_tar(manifest_for(tags=["other:2"])))
    with pytest.raises(BuildFailed, match="changed while it was being loaded"):
        b"".join(untagged_tar(path, image))
