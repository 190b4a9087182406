"""The image as built: it runs the CLI as UID 10001, and holds no secret of the
build context (every layer checked)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.containers.podman import IMAGE, ROOT, Podman

pytestmark = pytest.mark.containers
SECRET = "planted-s3cret-Zq8w1y"


def test_config_check_runs_as_uid_10001(podman: Podman) -> None:
    """The image's default command checks the shipped configuration; the user is 10001."""
    done = podman("run", "--rm", IMAGE)
    assert "configuration OK" in done.stdout, done.stdout + done.stderr
    uid = podman(
        "run",
        "--rm",
        "--entrypoint",
        "python",
        IMAGE,
        "-c",
        "import os; print(os.getuid(), os.getgid())",
    )
    assert uid.stdout.split() == ["10001", "10001"]
    assert podman.inspect(IMAGE)["Config"]["User"] == "10001:10001"


def checkout_copy(target: Path) -> None:
    """The files git tracks, as a build context, without the repository itself."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        path = raw.decode()
        source = ROOT / path
        if source.is_file():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / path)


def test_no_secret_of_the_build_context_reaches_any_layer(podman: Podman, tmp_path: Path) -> None:
    """Secrets planted in the build context (.env, a private key, a password in a local
    config) appear in no layer of the image built from it."""
    context = tmp_path / "context"
    checkout_copy(context)
    (context / ".env").write_text(f"INGEST_CLICKHOUSE_PASSWORD={SECRET}\n")
    (context / "deploy" / "client.key").write_text(f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n")
    (context / "local.toml").write_text(f'[clickhouse]\npassword = "{SECRET}"\n')
    tag = f"localhost/durable-ingest:secret-check-{podman.tag}"
    podman(
        "build",
        "--network",
        "host",
        "--format",
        "docker",
        "-f",
        str(context / "deploy" / "Dockerfile"),
        "-t",
        tag,
        str(context),
        timeout=1200,
    )
    try:
        archive = tmp_path / "image.tar"
        podman("save", "--format", "docker-archive", "-o", str(archive), tag, timeout=600)
        found: list[str] = []
        layers = 0
        with tarfile.open(archive) as image:
            for member in image.getmembers():
                if not member.name.endswith(".tar"):
                    continue
                layers += 1
                data = image.extractfile(member)
                assert data is not None
                with tarfile.open(fileobj=io.BytesIO(data.read())) as layer:
                    for entry in layer.getmembers():
                        name = entry.name.rsplit("/", 1)[-1]
                        if name in (".env", "client.key", "local.toml"):
                            found.append(entry.name)
                        if entry.isfile() and entry.size < 50_000_000:
                            content = layer.extractfile(entry)
                            if content is not None and SECRET.encode() in content.read():
                                found.append(f"{entry.name} (content)")
        assert layers >= 2
        assert found == []
        history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
        assert SECRET not in history
    finally:
        podman("rmi", "-f", tag, check=False)
