"""Worker processes a supervisor (``ingest dev``) starts, watches and stops.

Each :class:`Worker` is an ``ingest`` subprocess with its output in a log file
and its admin port on 127.0.0.1. It runs in a process group of its own (so a
terminal's Ctrl-C reaches only the supervisor, which stops the workers in
order) and, on Linux, dies with the supervisor.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from durable_ingest.loopback import die_with_parent, free_port

log = logging.getLogger("ingest.dev")


class Worker:
    """One worker process, its log file and its admin port."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.admin_port = free_port()
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            [*args, "--admin-port", str(self.admin_port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
            preexec_fn=die_with_parent,
        )

    def get(self, path: str) -> str | None:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return str(answer.read().decode())
        except urllib.error.HTTPError as exc:
            return str(exc.read().decode())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float) -> int:
        """SIGTERM, wait; SIGKILL after ``timeout_s``. The exit code."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.error("%s did not stop within %.0f s: killing it", self.name, timeout_s)
            self.process.kill()
            code = self.process.wait(10)
        self._log.close()
        return code

    def last_error(self) -> str:
        """The worker's own one-line error, or its last log line."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        for line in reversed(lines):
            if line.startswith("ingest: error:"):
                return line.removeprefix("ingest: error:").strip()
        meaningful = [ln for ln in lines if ln.strip()]
        return meaningful[-1].strip() if meaningful else "it printed nothing"
