"""Fixtures for tests that run workers as separate processes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start a process with piped text output; whatever a test started is gone after it."""
    started: list[subprocess.Popen[str]] = []

    def start(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
        )
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
