"""Container tests: the images built with podman (deploy/local/build-images.sh) and a
:class:`Podman` per test. Without a podman that runs containers here, every test in
this folder is skipped with the one-line reason."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.containers.podman import BUILD, Podman, podman_env, unavailable

ENV_REQUIRE = "DURABLE_INGEST_TEST_CONTAINERS"
"""Set to 1 (as .ci/run does) to fail instead of skipping when podman cannot run."""


@pytest.fixture(scope="session")
def images() -> None:
    """The project's images, built (or found in podman's cache) once per session."""
    reason = unavailable()
    if reason is not None:
        if os.environ.get(ENV_REQUIRE) == "1":
            pytest.fail(f"containers cannot run here: {reason}")
        pytest.skip(f"containers cannot run here: {reason}")
    done = subprocess.run(
        [str(BUILD)], env=podman_env(), capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode == 3:
        message = f"containers cannot run here: {done.stderr.strip().splitlines()[-1]}"
        if os.environ.get(ENV_REQUIRE) == "1":
            pytest.fail(message)
        pytest.skip(message)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def podman(images: None) -> Iterator[Podman]:
    runner = Podman()
    try:
        yield runner
    finally:
        runner.cleanup()
