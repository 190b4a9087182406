"""One Apache Kafka KRaft node: its files, its formatting and its JVM process.

Files of node ``<id>`` in the cluster's data folder: ``node-<id>/`` (its
``log.dirs``), ``node-<id>.properties`` (rewritten at each start) and
``node-<id>.log`` (its output, appended). The JVM runs in a session of its own
and is SIGKILLed when its parent dies (``PR_SET_PDEATHSIG``): with the
supervisor gone nothing would end a controlled shutdown stuck on a lost quorum.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import IO

from durable_ingest.apache_kafka.jars import KafkaJars
from durable_ingest.apache_kafka.layout import ClusterLayout, NodeSpec, meta_cluster_id
from durable_ingest.apache_kafka.layout import render_properties as render
from durable_ingest.loopback import killed_with_parent
from foundation.errors import StackError

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
DEFAULT_HEAP = "512m"


class Node:
    """One node of a :class:`~durable_ingest.apache_kafka.cluster.KafkaCluster`."""

    def __init__(
        self,
        spec: NodeSpec,
        data_dir: Path,
        java: str,
        jars: KafkaJars,
        heap: str = DEFAULT_HEAP,
        properties: dict[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.log_dir = data_dir / f"node-{spec.node_id}"
        self.properties_path = data_dir / f"node-{spec.node_id}.properties"
        self.log_path = data_dir / f"node-{spec.node_id}.log"
        self._java = java
        self._jars = jars
        self._heap = heap
        self._properties = dict(properties or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self, properties: Path, kafka_opts: str = "") -> list[str]:
        """The JVM's command line. ``kafka_opts`` (``$KAFKA_OPTS``, as Kafka's own scripts
        take it) adds JVM options after ours, so an option given there wins."""
        try:
            extra = shlex.split(kafka_opts)
        except ValueError as exc:
            raise StackError(f"KAFKA_OPTS is not a valid option list: {exc}") from None
        return [
            self._java,
            f"-Xmx{self._heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            *extra,
            "-cp",
            self._jars.classpath,
            "kafka.Kafka",
            str(properties),
        ]

    @property
    def node_id(self) -> int:
        return self.spec.node_id

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.alive() and self._process is not None else None

    def formatted_for(self) -> str | None:
        """The cluster id this node's log dir was formatted for; None if it is not yet."""
        meta = self.log_dir / "meta.properties"
        if not meta.exists():
            return None
        return meta_cluster_id(meta.read_text()) or "(none)"

    def write_properties(self, layout: ClusterLayout) -> Path:
        properties = {**layout.properties(self.spec, self.log_dir), **self._properties}
        try:
            self.properties_path.write_text(render(properties))
        except OSError as exc:
            raise StackError(f"cannot write {self.properties_path}: {exc.strerror}") from None
        return self.properties_path

    def format(self, layout: ClusterLayout) -> None:
        """``kafka-storage format`` for this node, with the cluster's id."""
        command = [
            self._java,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            self._jars.classpath,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            layout.cluster_id,
            "--config",
            str(self.write_properties(layout)),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            raise StackError(
                f"formatting Kafka node {self.node_id} in {self.log_dir} took over 120 s"
            ) from None
        except OSError as exc:
            raise StackError(f"cannot run {self._java}: {exc.strerror}") from None
        if done.returncode != 0:
            lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
            raise StackError(
                f"formatting Kafka node {self.node_id} in {self.log_dir} failed: "
                f"{lines[-1] if lines else 'no output'}"
            )

    def start(self, layout: ClusterLayout) -> None:
        if self.alive():
            raise StackError(f"Kafka node {self.node_id} is already running")
        properties = self.write_properties(layout)
        self.close_log()
        try:
            self._log = self.log_path.open("ab")
        except OSError as exc:
            raise StackError(f"cannot write {self.log_path}: {exc.strerror}") from None
        command = self.command(properties, os.environ.get("KAFKA_OPTS", ""))
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
                preexec_fn=killed_with_parent,  # no supervisor left to end a stuck shutdown
            )
        except OSError as exc:
            self.close_log()
            raise StackError(f"cannot run {self._java}: {exc.strerror}") from None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        if self._process is None or not self.alive():
            raise StackError(f"Kafka node {self.node_id} is not running")
        self._process.send_signal(signum)

    def wait(self, timeout_s: float) -> bool:
        """Wait for the process to end; False if it still runs after ``timeout_s``."""
        if self._process is None:
            return True
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL: no controlled shutdown, no flush."""
        if self.alive():
            self.signal(signal.SIGKILL)
        self.wait(10)

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def last_log_line(self) -> str:
        """The last error (or, without one, the last line) the node logged."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        for line in reversed(lines):
            if " ERROR " in line or "Exception" in line:
                return line.strip()[:400]
        meaningful = [ln for ln in lines if ln.strip()]
        return meaningful[-1].strip()[:400] if meaningful else "it printed nothing"
