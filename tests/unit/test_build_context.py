"""Choosing the build context and Dockerfile in a staged work tree (adapters/docker/
build_context.py), the context tar made from the chosen directory, and build arguments kept
out of the log (adapters/docker/build.py). No engine is needed."""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from loguru import logger

from teg_ota.adapters.docker import DockerRuntime, DockerRuntimeSettings, build
from teg_ota.adapters.docker.build_context import BuildLayout
from teg_ota.app.settings import ConfigError, load_settings
from teg_ota.domain.core.failures import Blame, blame, remembered
from teg_ota.domain.model.controller import COMMIT_LABEL, VERSION_LABEL
from teg_ota.domain.model.errors import (
    BuildFailed,
    BuildSettingMissing,
    DockerfileMissing,
    GatewayFault,
    RuntimeUnavailable,
)
from teg_ota.domain.model.outcome import Outcome

from .test_update_service import World

COMMIT = "abc1234567890def" + "0" * 24


def write(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


@pytest.fixture
def infos() -> Iterator[list[str]]:
    messages: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="INFO")
    yield messages
    logger.remove(sink)
    logger.disable("teg_ota")  # the library's default


# -- the default layout ----------------------------------------------------------------------


def test_default_prefers_the_original_layout(tmp_path: Path) -> None:
    write(tmp_path, {"docker/Dockerfile": "FROM x\n", "Dockerfile": "FROM y\n"})
    chosen = BuildLayout().choose(str(tmp_path), COMMIT)
    assert chosen.context_dir == str((tmp_path / "docker").resolve())
    assert chosen.dockerfile == "Dockerfile"
    assert (chosen.context, chosen.path) == ("docker", "docker/Dockerfile")


def test_default_falls_back_to_the_root_dockerfile(tmp_path: Path) -> None:
    write(tmp_path, {"Dockerfile": "FROM y\n", "docker/README": "no Dockerfile here\n"})
    chosen = BuildLayout().choose(str(tmp_path), COMMIT)
    assert chosen.context_dir == str(tmp_path.resolve())
    assert (chosen.dockerfile, chosen.context, chosen.path) == ("Dockerfile", ".", "Dockerfile")


def test_default_with_another_dockerfile_name(tmp_path: Path) -> None:
    write(tmp_path, {"docker/Dockerfile.pi": "FROM x\n", "docker/Dockerfile": "FROM y\n"})
    chosen = BuildLayout(None, "Dockerfile.pi").choose(str(tmp_path), COMMIT)
    assert (chosen.context, chosen.dockerfile) == ("docker", "Dockerfile.pi")


def test_a_commit_without_any_dockerfile_is_the_versions_fault(tmp_path: Path) -> None:
    write(tmp_path, {"README": "nothing to build\n"})
    with pytest.raises(DockerfileMissing) as caught:
        BuildLayout().choose(str(tmp_path), COMMIT)
    message = str(caught.value)
    assert "docker/Dockerfile" in message
    assert " Dockerfile found" in message or "nor Dockerfile" in message
    assert "commit abc123456789" in message
    assert COMMIT not in message  # shortened
    assert "TEG_CONTROLLER_DOCKERFILE" in message and "TEG_CONTROLLER_BUILD_CONTEXT" in message
    assert not isinstance(caught.value, GatewayFault)
    assert blame(caught.value) is Blame.VERSION and remembered(blame(caught.value))


def test_a_directory_named_dockerfile_is_no_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "docker" / "Dockerfile").mkdir(parents=True)
    write(tmp_path, {"Dockerfile": "FROM y\n"})
    assert BuildLayout().choose(str(tmp_path)).context == "."


def test_without_a_commit_the_message_names_the_work_tree(tmp_path: Path) -> None:
    with pytest.raises(DockerfileMissing, match="found in the work tree"):
        BuildLayout().choose(str(tmp_path), None)


def test_a_work_tree_that_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="is not a directory"):
        BuildLayout().choose(str(tmp_path / "missing"), COMMIT)


# -- explicit settings -----------------------------------------------------------------------


def test_explicit_context_and_dockerfile(tmp_path: Path) -> None:
    write(tmp_path, {"build/pi/Containerfile": "FROM x\n", "docker/Dockerfile": "FROM y\n"})
    chosen = BuildLayout("build/pi", "Containerfile").choose(str(tmp_path), COMMIT)
    assert chosen.context_dir == str((tmp_path / "build" / "pi").resolve())
    assert (chosen.dockerfile, chosen.path) == ("Containerfile", "build/pi/Containerfile")


def test_explicit_root_context_ignores_the_original_layout(tmp_path: Path) -> None:
    write(tmp_path, {"docker/Dockerfile": "FROM x\n"})
    chosen = BuildLayout(".", "docker/Dockerfile").choose(str(tmp_path), COMMIT)
    assert chosen.context_dir == str(tmp_path.resolve())
    assert chosen.dockerfile == "docker/Dockerfile"


@pytest.mark.parametrize(
    ("context", "dockerfile", "path"),
    [
        ("docker", "Dockerfile", "docker/Dockerfile"),
        (".", "Dockerfile", "Dockerfile"),
        ("docker", "Dockerfile.pi", "docker/Dockerfile.pi"),
    ],
)
def test_an_explicit_dockerfile_missing_is_the_gateways_fault(
    tmp_path: Path, context: str, dockerfile: str, path: str
) -> None:
    (tmp_path / "docker").mkdir()
    with pytest.raises(BuildSettingMissing) as caught:
        BuildLayout(context, dockerfile).choose(str(tmp_path), COMMIT)
    assert str(caught.value).startswith(f"{path} not found in commit abc123456789; set ")
    assert isinstance(caught.value, DockerfileMissing)
    assert blame(caught.value) is Blame.GATEWAY and not remembered(blame(caught.value))


def test_an_explicit_dockerfile_name_missing_in_the_default_layout(tmp_path: Path) -> None:
    write(tmp_path, {"docker/Dockerfile": "FROM x\n"})
    with pytest.raises(BuildSettingMissing, match=r"docker/Dockerfile\.pi nor Dockerfile\.pi"):
        BuildLayout(None, "Dockerfile.pi").choose(str(tmp_path), COMMIT)


def test_an_explicit_context_missing(tmp_path: Path) -> None:
    with pytest.raises(BuildSettingMissing, match=r"^build context docker/ not found in commit"):
        BuildLayout("docker").choose(str(tmp_path), COMMIT)
    write(tmp_path, {"docker": "a file\n"})
    with pytest.raises(BuildSettingMissing, match=r"^build context docker/ not a directory"):
        BuildLayout("docker").choose(str(tmp_path), COMMIT)


# -- paths stay inside the work tree ---------------------------------------------------------


def test_a_context_linked_outside_the_work_tree_is_refused(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside", {"Dockerfile": "FROM x\n"})
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "docker").symlink_to(outside)
    for layout in (BuildLayout(), BuildLayout("docker")):
        with pytest.raises(BuildFailed, match="resolves outside the repository") as caught:
            layout.choose(str(tree), COMMIT)
        assert not isinstance(caught.value, DockerfileMissing)


def test_a_dockerfile_linked_outside_the_work_tree_is_refused(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside", {"Dockerfile": "FROM x\n"})
    tree = tmp_path / "tree"
    (tree / "docker").mkdir(parents=True)
    (tree / "docker" / "Dockerfile").symlink_to(outside / "Dockerfile")
    with pytest.raises(BuildFailed, match=r"docker/Dockerfile in commit \w+ resolves outside"):
        BuildLayout().choose(str(tree), COMMIT)


def test_a_dockerfile_linked_into_git_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {".git/config": "[remote]\n\turl = https://u:secret@x/y\n"})
    (tmp_path / "Dockerfile").symlink_to(tmp_path / ".git" / "config")
    with pytest.raises(BuildFailed, match=r"inside \.git"):
        BuildLayout().choose(str(tmp_path), COMMIT)
    with pytest.raises(BuildFailed, match=r"inside \.git"):
        BuildLayout(".git").choose(str(tmp_path), COMMIT)


def test_a_dockerfile_linked_elsewhere_in_the_work_tree_is_sent_by_path(tmp_path: Path) -> None:
    write(tmp_path, {"Dockerfile": "FROM x\n", "docker/app.txt": "app\n"})
    (tmp_path / "docker" / "Dockerfile").symlink_to(Path("..") / "Dockerfile")
    chosen = BuildLayout().choose(str(tmp_path), COMMIT)
    assert chosen.context == "docker"
    assert chosen.dockerfile == str((tmp_path / "Dockerfile").resolve())  # sent inline


def test_a_linked_work_tree_is_resolved(tmp_path: Path) -> None:
    tree = write(tmp_path / "tree", {"docker/Dockerfile": "FROM x\n"})
    (tmp_path / "link").symlink_to(tree)
    chosen = BuildLayout().choose(str(tmp_path / "link"), COMMIT)
    assert chosen.context_dir == str((tree / "docker").resolve())


# -- logged once -----------------------------------------------------------------------------


def test_the_choice_is_logged_once_and_again_only_when_it_changes(
    tmp_path: Path, infos: list[str]
) -> None:
    write(tmp_path, {"docker/Dockerfile": "FROM x\n", "Dockerfile": "FROM y\n"})
    layout = BuildLayout()
    for _ in range(3):
        layout.choose(str(tmp_path), COMMIT)
    chosen = [m for m in infos if "as the Dockerfile" in m]
    assert len(chosen) == 1, infos
    assert "docker/ as the context" in chosen[0]
    assert "docker/Dockerfile as the Dockerfile" in chosen[0]
    assert "original gateway's layout" in chosen[0]

    (tmp_path / "docker" / "Dockerfile").unlink()
    layout.choose(str(tmp_path), COMMIT)
    layout.choose(str(tmp_path), COMMIT)
    chosen = [m for m in infos if "as the Dockerfile" in m]
    assert len(chosen) == 2, infos
    assert "the work tree as the context" in chosen[1]
    assert "no docker/Dockerfile in the work tree" in chosen[1]


# -- the runtime: checked before the engine --------------------------------------------------


def test_the_runtime_fails_before_contacting_the_engine(tmp_path: Path) -> None:
    runtime = DockerRuntime(
        DockerRuntimeSettings(
            base_url=f"unix://{tmp_path}/no-engine.sock",
            build_context="docker",
            build_args={"TOKEN": "s3cret-value"},
        )
    )
    labels = {VERSION_LABEL: "v1.0", COMMIT_LABEL: COMMIT}
    with pytest.raises(BuildSettingMissing, match=r"^build context docker/ not found in commit"):
        runtime.build_image(str(tmp_path), "teg-controller-v1.0:latest", labels)
    write(tmp_path, {"docker/Dockerfile": "FROM x\n"})
    with pytest.raises(RuntimeUnavailable):  # the layout is fine: now the engine is asked
        runtime.build_image(str(tmp_path), "teg-controller-v1.0:latest", labels)
    assert "s3cret-value" not in repr(runtime.settings)


# -- the context tar and the build arguments -------------------------------------------------


def tar_names(context: IO[bytes]) -> dict[str, bytes]:
    with tarfile.open(fileobj=context, mode="r") as tar:
        return {m.name: (tar.extractfile(m) or io.BytesIO()).read() for m in tar if m.isfile()}


def test_the_tar_honours_the_chosen_contexts_dockerignore(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".dockerignore": "docker/kept.txt\n",  # the root's: not the chosen context's
            ".git/config": "secret\n",
            "docker/Dockerfile": "FROM x\n",
            "docker/.dockerignore": "ignored.txt\nDockerfile\n",
            "docker/ignored.txt": "no\n",
            "docker/kept.txt": "yes\n",
            "docker/.git": "gitdir: ../.git/modules/docker\n",
        },
    )
    chosen = BuildLayout().choose(str(tmp_path), COMMIT)
    context, name = build._build_context(chosen.context_dir, "building", chosen.dockerfile)
    names = tar_names(context)
    assert name == "Dockerfile"
    assert {"Dockerfile", "kept.txt", ".dockerignore"} <= set(names)  # Dockerfile always sent
    assert "ignored.txt" not in names and ".git" not in names


def test_a_dockerfile_outside_the_context_travels_in_the_tar(tmp_path: Path) -> None:
    write(tmp_path, {"Dockerfile": "FROM outside\n", "docker/app.txt": "app\n"})
    (tmp_path / "docker" / "Dockerfile").symlink_to(Path("..") / "Dockerfile")
    chosen = BuildLayout().choose(str(tmp_path), COMMIT)
    context, name = build._build_context(chosen.context_dir, "building", chosen.dockerfile)
    names = tar_names(context)
    assert name is not None and name.startswith(".dockerfile.")
    assert names[name] == b"FROM outside\n"
    assert "app.txt" in names


def test_build_argument_values_are_blanked_out_of_the_output(tmp_path: Path) -> None:
    redact = build._redactor({"TOKEN": "s3cret-value", "LONG": "s3cret-value-longer", "ON": "1"})
    assert redact("a s3cret-value-longer b s3cret-value 1") == (
        "a [build argument] b [build argument] 1"
    )
    assert build._redactor({})("s3cret-value") == "s3cret-value"
    lines: list[str] = []
    built = build._handle_build_chunk(
        {"stream": "echo s3cret-value\n"}, "building", lines.append, redact
    )
    assert lines == ["echo [build argument]"] and not built


class FakeApi:
    def __init__(self, chunks: list[dict[str, object]]) -> None:
        self.chunks = chunks
        self.calls: list[dict[str, object]] = []

    def build(self, **kwargs: object) -> Iterator[dict[str, object]]:
        self.calls.append(kwargs)
        return iter(self.chunks)


class FakeEngine:
    def __init__(self, chunks: list[dict[str, object]]) -> None:
        self.api = FakeApi(chunks)

    @contextlib.contextmanager
    def session(self, action: str, failure: object = None) -> Iterator[object]:
        yield self


def test_build_arguments_are_sent_and_blanked_out_of_a_failure(tmp_path: Path) -> None:
    write(tmp_path, {"Dockerfile": "FROM x\n"})
    engine = FakeEngine([{"stream": "Step 1/2 : FROM x\n"}, {"error": "no s3cret-value here"}])
    lines: list[str] = []
    with pytest.raises(BuildFailed) as caught:
        build.build_image(
            engine,  # type: ignore[arg-type]
            str(tmp_path),
            "teg-controller-v1.0:latest",
            {},
            60,
            lines.append,
            dockerfile="Dockerfile",
            build_args={"TOKEN": "s3cret-value"},
        )
    assert str(caught.value) == "building teg-controller-v1.0:latest: no [build argument] here"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    (call,) = engine.api.calls
    assert call["buildargs"] == {"TOKEN": "s3cret-value"}
    assert call["dockerfile"] == "Dockerfile" and call["pull"] is False
    assert lines == ["Step 1/2 : FROM x"]


def test_no_build_arguments_send_none(tmp_path: Path) -> None:
    write(tmp_path, {"Dockerfile": "FROM x\n"})
    engine = FakeEngine([{"aux": {"ID": "sha256:" + "1" * 64}}])
    build.build_image(engine, str(tmp_path), "t:latest", {}, 60)  # type: ignore[arg-type]
    assert engine.api.calls[0]["buildargs"] is None


# -- through the update: the sw_error, and whether the version is remembered -----------------


@pytest.mark.parametrize(
    ("error", "held_against_the_version"),
    [
        (
            DockerfileMissing("neither docker/Dockerfile nor Dockerfile found in commit c0ffee"),
            True,
        ),
        (BuildSettingMissing("docker/Dockerfile.pi not found in commit c0ffee; set X"), False),
    ],
)
def test_a_missing_dockerfile_fails_before_the_swap_as_the_sw_error(
    error: BuildFailed, held_against_the_version: bool
) -> None:
    world = World()

    def build(context_dir, image, labels, on_progress=None):  # type: ignore[no-untyped-def]
        raise error

    world.runtime.build_image = build  # type: ignore[method-assign]
    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert "stop" not in world.runtime.calls
    assert world.runtime.running_version == "v1.0"
    failed = world.telemetry.reports[-1]
    assert failed.state.value == "FAILED"
    assert str(error) in (failed.error or "")
    assert (world.store.failed_version is not None) is held_against_the_version


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEG_CONTROLLER_DOCKERFILE", ".git/config"),
        ("TEG_CONTROLLER_DOCKERFILE_PATH", "./.git/config"),
        ("TEG_CONTROLLER_BUILD_CONTEXT", ".git"),
        ("TEG_CONTROLLER_DOCKERCONTEXT_PATH", "/srv/controller/.git/hooks"),
    ],
)
def test_settings_pointing_into_git_are_refused_at_start(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=r"inside \.git is refused"):
        load_settings({"CONTROLLER_GIT_PATH": "/srv/controller", variable: value})
