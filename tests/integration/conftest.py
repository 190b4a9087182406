"""Fixtures for tests that run workers as separate processes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start a process with piped text output (unless ``stdout``/``stderr`` say otherwise);
    whatever a test started is gone after it."""
    started: list[subprocess.Popen[str]] = []

    def start(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        process = subprocess.Popen(args, text=True, **kwargs)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def python_json(code: str, *args: str, timeout_s: float = 120) -> Any:
    """Run ``code`` in a fresh interpreter (e.g. to open the embedded warehouse after the
    sink released it) and return the JSON its last output line holds."""
    import json
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
