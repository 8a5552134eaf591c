"""Where the controller image is built from, against the real dockerd (issue 11, "Build"):
the original gateway's layout (``docker/Dockerfile``, ``docker/`` as the context), the root
``Dockerfile``, explicit settings through the original's variable names, build arguments,
and a commit without a Dockerfile failing before anything is built or swapped.

Repositories are real Git work trees (``git`` command line) whose ``.git/config`` holds a
remote URL with a token; images are built ``FROM`` the local busybox test image. The last
tests run ``teg-ota update`` as a process (tests/integration/test_cli.py's ``Cli``) with a
controller repository holding such commits.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import test_cli as cli_base
from controller_repo import BASE_IMAGE, SAMPLE_LABEL, ControllerRepo, git, make_controller_repo
from docker_runtime_support import BUSYBOX_IMAGE, RUN_LABEL, SLEEP_CMD, Env, make_env

from teg_ota.adapters.docker import DockerRuntime
from teg_ota.app.container import _docker_settings
from teg_ota.app.settings import load_settings
from teg_ota.domain.core.failures import Blame, blame
from teg_ota.domain.model.errors import BuildSettingMissing, DockerfileMissing
from teg_ota.ports.container_runtime import COMMIT_LABEL, VERSION_LABEL

pytestmark = pytest.mark.timeout(120)

TOKEN = "tok-S3CRET-build-layout"
HINT = "set TEG_CONTROLLER_DOCKERFILE / TEG_CONTROLLER_BUILD_CONTEXT"
UPDATE_FAILED = "update to {} failed: "
GIT_URL = f"https://build:{TOKEN}@git.example.invalid/controller.git"


@pytest.fixture
def env(
    docker_client: docker.DockerClient, test_images: list[str], tmp_path: Path
) -> Iterator[Env]:
    yield from make_env(docker_client, test_images, tmp_path)


def dockerfile(env: Env, body: str = "") -> str:
    """``FROM busybox`` + the run label (cleanup finds every layer by it) + ``body``."""
    return f"FROM {BUSYBOX_IMAGE}\nLABEL {RUN_LABEL}={env.uid}\n{body}{SLEEP_CMD}\n"


def work_tree(root: Path, files: dict[str, str]) -> tuple[Path, str]:
    """A Git work tree holding ``files`` in one commit (the remote URL carries a token);
    the tree and the commit's hash."""
    root.mkdir(parents=True)
    git("init", "-q", "--initial-branch=main", str(root))
    git("remote", "add", "origin", GIT_URL, cwd=root)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git("add", "-A", cwd=root)
    git("commit", "-q", "--allow-empty", "-m", "controller", cwd=root)
    assert TOKEN in (root / ".git" / "config").read_text()
    return root, git("rev-parse", "HEAD", cwd=root)


def labels(commit: str, version: str = "v1.0.0") -> dict[str, str]:
    return {VERSION_LABEL: version, COMMIT_LABEL: commit}


def runtime_with(env: Env, **changes: object) -> DockerRuntime:
    return DockerRuntime(dataclasses.replace(env.runtime.settings, **changes))  # type: ignore[arg-type]


def files_in(env: Env, tag: str, directory: str) -> set[str]:
    """The names in ``directory`` of a container of ``tag`` (removed afterwards)."""
    out = env.client.containers.run(
        tag, ["ls", "-A", directory], remove=True, network_mode="host", labels={RUN_LABEL: env.uid}
    )
    return set(out.decode().split())


# -- the layouts -----------------------------------------------------------------------------


def test_the_original_layout_builds_from_docker_with_its_dockerignore(
    env: Env, tmp_path: Path
) -> None:
    tree, commit = work_tree(
        tmp_path / "repo",
        {
            "docker/Dockerfile": dockerfile(env, "COPY . /app/\n"),
            "docker/.dockerignore": "# not for the image\nsecret.txt\n",
            "docker/secret.txt": "not in the image\n",
            "docker/controller.sh": "echo controller\n",
            # Not the one built: it would fail.
            "Dockerfile": f"FROM {BUSYBOX_IMAGE}\nLABEL {RUN_LABEL}={env.uid}\nRUN exit 9\n",
            "README.md": "outside the context\n",
        },
    )
    lines: list[str] = []
    tag = env.tag()
    env.runtime.build_image(str(tree), tag, labels(commit), lines.append)

    assert files_in(env, tag, "/app") == {"Dockerfile", ".dockerignore", "controller.sh"}
    assert not any(TOKEN in line for line in lines)
    image_labels = env.runtime.image_labels(tag)
    assert image_labels is not None and image_labels[COMMIT_LABEL] == commit


def test_the_root_layout_never_sends_git_and_honours_the_root_dockerignore(
    env: Env, tmp_path: Path
) -> None:
    tree, commit = work_tree(
        tmp_path / "repo",
        {
            "Dockerfile": dockerfile(env, "COPY . /app/\n"),
            ".dockerignore": "ignored.txt\n!.git\n",
            "ignored.txt": "not in the image\n",
            "controller.sh": "echo controller\n",
            "docker/README.md": "a docker/ without a Dockerfile\n",
        },
    )
    tag = env.tag()
    env.runtime.build_image(str(tree), tag, labels(commit))

    assert files_in(env, tag, "/app") == {"Dockerfile", ".dockerignore", "controller.sh", "docker"}
    # The work tree is left as it was.
    assert TOKEN in (tree / ".git" / "config").read_text()


def test_explicit_settings_through_the_originals_names_and_build_arguments(
    env: Env, tmp_path: Path
) -> None:
    secret = "s3cret-build-arg-value"
    tree, commit = work_tree(
        tmp_path / "repo",
        {
            "build/pi/Containerfile": dockerfile(
                env,
                "ARG GREETING\nARG SECRET\n"
                "LABEL org.teg.test.greeting=$GREETING\n"
                "ENV GREETING=$GREETING\n"
                'RUN echo "the secret is $SECRET"\n'
                "COPY . /app/\n",
            ),
            "build/pi/app.txt": "app\n",
            "docker/Dockerfile": f"FROM {BUSYBOX_IMAGE}\nRUN exit 9\n",  # not the one built
        },
    )
    settings = load_settings(
        {
            "CONTROLLER_GIT_PATH": str(tree),
            # The original gateway's names; its context is an absolute path.
            "TEG_CONTROLLER_DOCKERCONTEXT_PATH": str(tree / "build" / "pi"),
            "TEG_CONTROLLER_DOCKERFILE_PATH": "./Containerfile",
            "TEG_CONTROLLER_BUILD_ARGS": f"GREETING=hello-from-teg;SECRET={secret}",
        }
    )
    built = _docker_settings(settings)
    assert (built.build_context, built.dockerfile) == ("build/pi", "Containerfile")
    assert secret not in repr(built)
    runtime = runtime_with(
        env,
        build_context=built.build_context,
        dockerfile=built.dockerfile,
        build_args=built.build_args,
    )
    lines: list[str] = []
    tag = env.tag()
    runtime.build_image(str(tree), tag, labels(commit), lines.append)

    image_labels = runtime.image_labels(tag)
    assert image_labels is not None
    assert image_labels["org.teg.test.greeting"] == "hello-from-teg"
    config = env.client.api.inspect_image(tag)["Config"]
    assert "GREETING=hello-from-teg" in config["Env"]
    assert files_in(env, tag, "/app") == {"Containerfile", "app.txt"}
    # The build's own output of the argument is forwarded blanked out.
    assert "the secret is [build argument]" in lines, lines
    assert not any(secret in line for line in lines)


def test_a_dockerfile_linked_outside_the_context_is_sent_with_it(env: Env, tmp_path: Path) -> None:
    tree, commit = work_tree(
        tmp_path / "repo",
        {"Dockerfile": dockerfile(env, "COPY . /app/\n"), "docker/app.txt": "app\n"},
    )
    (tree / "docker" / "Dockerfile").symlink_to(Path("..") / "Dockerfile")
    tag = env.tag()
    env.runtime.build_image(str(tree), tag, labels(commit))
    assert "app.txt" in files_in(env, tag, "/app")


# -- a commit without the Dockerfile ----------------------------------------------------------


def test_a_commit_without_a_dockerfile_fails_naming_both_paths(env: Env, tmp_path: Path) -> None:
    tree, commit = work_tree(tmp_path / "repo", {"README.md": "nothing to build\n"})
    with pytest.raises(DockerfileMissing) as caught:
        env.runtime.build_image(str(tree), env.tag(), labels(commit))
    assert str(caught.value) == (
        f"neither docker/Dockerfile nor Dockerfile found in commit {commit[:12]}; {HINT}"
    )
    assert blame(caught.value) is Blame.VERSION
    assert not env.runtime.image_exists(env.tag())


def test_an_explicit_dockerfile_missing_from_the_commit_is_the_gateways_setting(
    env: Env, tmp_path: Path
) -> None:
    tree, commit = work_tree(
        tmp_path / "repo", {"Dockerfile": dockerfile(env), "docker/README.md": "no Dockerfile\n"}
    )
    runtime = runtime_with(env, build_context="docker")
    with pytest.raises(BuildSettingMissing) as caught:
        runtime.build_image(str(tree), env.tag(), labels(commit))
    assert str(caught.value).startswith(f"docker/Dockerfile not found in commit {commit[:12]}")
    assert blame(caught.value) is Blame.GATEWAY
    assert not env.runtime.image_exists(env.tag())


# -- through teg-ota update ------------------------------------------------------------------


def commit_files(repo: ControllerRepo, tag: str, files: dict[str, str | None]) -> str:
    """Commit ``files`` (``None``: removed) on ``main`` of ``repo``, tag it, push both."""
    for name, content in files.items():
        path = repo.work / name
        if content is None:
            git("rm", "-q", "--ignore-unmatch", name, cwd=repo.work)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git("add", "-A", cwd=repo.work)
    git("commit", "-q", "--allow-empty", "-m", f"controller {tag}", cwd=repo.work)
    commit = git("rev-parse", "HEAD", cwd=repo.work)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=repo.work)
    repo.tag(tag, commit)
    return commit


ORIGINAL_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
LABEL {SAMPLE_LABEL}=1
COPY . /app/
CMD ["/bin/sh", "/app/controller.sh"]
"""


@pytest.fixture(scope="module")
def controller_repo(tmp_path_factory: pytest.TempPathFactory) -> ControllerRepo:
    """The standard versions, then ``v5.0-docker`` laid out like the original controller
    repository and ``v5.1-nodockerfile`` without any Dockerfile."""
    repo = make_controller_repo(tmp_path_factory.mktemp("layout-repo"))
    script = (repo.work / "controller.sh").read_text().replace("v3.0-badbuild", "v5.0-docker")
    commit_files(
        repo,
        "v5.0-docker",
        {
            "docker/Dockerfile": ORIGINAL_DOCKERFILE,
            "docker/controller.sh": script,
            "docker/.dockerignore": "secret.txt\n",
            "docker/secret.txt": "not in the image\n",
            "Dockerfile": None,
            "controller.sh": None,
        },
    )
    commit_files(repo, "v5.1-nodockerfile", {"docker/Dockerfile": None})
    return repo


cli = cli_base.cli
cli_broker = cli_base.cli_broker
Cli = cli_base.Cli


def status(cli: Cli) -> dict[str, object]:
    result = cli.run_cli("status", "--json", timeout=60)
    assert result.returncode == 0, cli_base.output(result)
    data: dict[str, object] = json.loads(result.stdout)
    return data


def update(cli: Cli, version: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return cli.run_cli("update", version, **env)


@pytest.mark.timeout(240)
def test_update_builds_the_original_layout_then_refuses_a_commit_without_dockerfile(
    cli_broker: Cli,
) -> None:
    cli = cli_broker
    first = update(cli, "v5.0-docker")
    assert first.returncode == 0, cli_base.output(first)
    assert first.stdout.splitlines()[-1] == "updated: v5.0-docker", cli_base.output(first)
    cli.wait_running("v5.0-docker")
    assert "docker/ as the context and docker/Dockerfile as the Dockerfile" in first.stderr
    image = f"{cli.prefix}v5.0-docker:latest"
    out = cli.client.containers.run(image, ["ls", "-A", "/app"], remove=True, network_mode="host")
    assert set(out.decode().split()) == {"Dockerfile", ".dockerignore", "controller.sh"}

    missing = update(cli, "v5.1-nodockerfile")
    commit = cli.repo.commit_of("v5.1-nodockerfile")
    assert missing.returncode == 1, cli_base.output(missing)
    error = (
        f"neither docker/Dockerfile nor Dockerfile found in commit {commit[:12]}; {HINT}; "
        "v5.0-docker kept running"
    )
    last = missing.stdout.splitlines()[-1]
    assert last == f"failed: {UPDATE_FAILED.format('v5.1-nodockerfile')}{error}", last
    cli.wait_running("v5.0-docker")  # never swapped
    data = status(cli)
    assert (data["version"], data["failed"]) == ("v5.0-docker", "v5.1-nodockerfile")


@pytest.mark.timeout(240)
def test_a_wrong_explicit_setting_is_not_held_against_the_version(
    cli_broker: Cli,
) -> None:
    cli = cli_broker
    wrong = update(cli, "v5.0-docker", TEG_CONTROLLER_DOCKERFILE_PATH="Dockerfile.pi")
    assert wrong.returncode == 1, cli_base.output(wrong)
    commit = cli.repo.commit_of("v5.0-docker")
    error = f"neither docker/Dockerfile.pi nor Dockerfile.pi found in commit {commit[:12]}; {HINT}"
    last = wrong.stdout.splitlines()[-1]
    assert last == f"failed: {UPDATE_FAILED.format('v5.0-docker')}{error}", last
    assert status(cli)["failed"] is None  # the gateway's setting, not the version

    fixed = update(cli, "v5.0-docker", TEG_CONTROLLER_DOCKERCONTEXT_PATH="docker")
    assert fixed.returncode == 0, cli_base.output(fixed)
    cli.wait_running("v5.0-docker")
