"""Podman for the container tests: the CLI with the project's containers.conf, names
made unique per test, and everything a test started removed after it.

The tests drive the podman CLI rather than testcontainers: testcontainers speaks the
Docker API, which podman serves only through an extra API service, and needs its
reaper image from a registry (none is reachable here); the CLI also gives what the
tests check directly: ``podman stop`` (SIGTERM), ``podman kill`` (SIGKILL), ``podman
healthcheck run``, exit codes and layers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "local" / "containers.conf"
BUILD = ROOT / "deploy" / "local" / "build-images.sh"
IMAGE = "localhost/durable-ingest:latest"
EMBEDDED = "localhost/durable-ingest:embedded"


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONF))}


def unavailable() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed (Debian: apt-get install podman runc)"
    done = subprocess.run(
        [str(BUILD.with_name("base-image.sh")), "--check"],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"podman check exited {done.returncode}"
    return None


class Podman:
    """``podman`` with the project's settings; removes what it started on :meth:`cleanup`."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self._containers: list[str] = []
        self._volumes: list[str] = []
        self._networks: list[str] = []

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args],
            env=podman_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def name(self, what: str) -> str:
        return f"{what}-{self.tag}"

    def network(self) -> str:
        name = self.name("net")
        self("network", "create", name)
        self._networks.append(name)
        return name

    def volume(self, what: str) -> str:
        name = self.name(what)
        self("volume", "create", name)
        self._volumes.append(name)
        return name

    def run(self, what: str, *args: str) -> str:
        """``podman run -d --name <what>-<tag> ARGS``; the container's name."""
        name = self.name(what)
        self("run", "-d", "--name", name, *args)
        self._containers.append(name)
        return name

    def inspect(self, container: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self("inspect", container).stdout)
        return found[0]

    def state(self, container: str) -> dict[str, Any]:
        state: dict[str, Any] = self.inspect(container)["State"]
        return state

    def logs(self, container: str) -> str:
        done = self("logs", container, check=False)
        return done.stdout + done.stderr

    def sql(self, container: str, query: str, *, check: bool = True) -> Any:
        """``ingest sql --admin http://127.0.0.1:8080 QUERY --format json`` inside a sink
        container (its admin port, from its own host); the rows, or None when it failed
        and ``check`` is off."""
        admin = "http://127.0.0.1:8080"
        done = self(
            "exec", container, "ingest", "sql", "--admin", admin, query, "--format", "json",
            check=check,
        )  # fmt: skip
        return json.loads(done.stdout)["rows"] if done.returncode == 0 else None

    def wait_exit(self, container: str, timeout_s: float = 120) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.state(container)
            if not state["Running"]:
                return int(state["ExitCode"])
            time.sleep(0.2)
        raise AssertionError(f"{container} still runs after {timeout_s} s")

    def cleanup(self) -> None:
        for container in reversed(self._containers):
            self("rm", "-f", "-t", "0", container, check=False)
        for volume in self._volumes:
            self("volume", "rm", "-f", volume, check=False)
        for network in self._networks:
            self("network", "rm", "-f", network, check=False)
