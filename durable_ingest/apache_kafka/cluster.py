"""A loopback Apache Kafka cluster: one JVM per KRaft node, data on disk.

:class:`KafkaCluster` formats each node's log dir the first time (the cluster
id and ports go to ``cluster.json``), starts the nodes, and waits until the
metadata lists every broker. Started again on the same folder it finds the
same cluster, with its topics, offsets and checkpoints. A node's JVM dies with
its parent and runs in its own session, so a terminal's Ctrl-C reaches only
the supervisor, which stops the nodes (SIGTERM: a controlled shutdown;
SIGKILL after the timeout). See :mod:`.node` for the files of each node.

The fault tests use the per-node controls: :meth:`kill` (SIGKILL),
:meth:`stop_node` (SIGTERM) and :meth:`start_node`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

from durable_ingest.apache_kafka.jars import KafkaJars, java_binary, kafka_jars
from durable_ingest.apache_kafka.layout import HOST, LAYOUT_FILE, ClusterLayout, plan_layout
from durable_ingest.apache_kafka.node import DEFAULT_HEAP, Node
from durable_ingest.loopback import lasting_port, port_is_free
from foundation.config import KafkaSettings
from foundation.errors import BackoffError, StackError
from staging.kafka.admin import TopicAdmin

log = logging.getLogger(__name__)
DEFAULT_PORT = 9092


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka's own generator avoids these too
            return text


class KafkaCluster:
    """``brokers`` Apache Kafka nodes on 127.0.0.1 with their data in ``data_dir``.

    ``port`` is the first broker's port (the others follow it); ``0`` picks
    free ports, None means 9092. A folder that already holds a cluster keeps
    its ports and size (given another ``port`` or ``brokers``, it refuses);
    a new one has ``brokers`` (default 1) nodes, of which ``controllers``
    (default: up to 3) are also KRaft controllers.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        brokers: int | None = None,
        controllers: int | None = None,
        port: int | None = None,
        jars: KafkaJars | None = None,
        heap: str = DEFAULT_HEAP,
        properties: dict[str, str] | None = None,
    ) -> None:
        if brokers is not None and brokers < 1:
            raise StackError(f"--brokers must be at least 1, not {brokers}")
        self.data_dir = data_dir
        self._brokers = brokers
        self._controllers = controllers
        self._port = port
        self._jars = jars
        self._heap = heap
        self._properties = dict(properties or {})
        """Broker properties over the layout's (e.g. a production group delay for a bench)."""
        self._layout: ClusterLayout | None = None
        self._nodes: dict[int, Node] = {}

    # --- the cluster ------------------------------------------------------------

    @property
    def layout(self) -> ClusterLayout:
        if self._layout is None:
            raise StackError("the Kafka cluster has not been started")
        return self._layout

    @property
    def bootstrap(self) -> str:
        return self.layout.bootstrap

    @property
    def replication_factor(self) -> int:
        return self.layout.replication_factor

    def describe(self) -> str:
        layout = self.layout
        return (
            f"Apache Kafka {layout.version}, {layout.brokers} broker(s) "
            f"({len(layout.controllers)} KRaft controller(s)), replication factor "
            f"{layout.replication_factor}, min.insync.replicas {layout.min_insync_replicas}; "
            f"data in {self.data_dir}"
        )

    @property
    def log_path(self) -> Path:
        """Where the nodes' logs are (one ``node-<id>.log`` each)."""
        return self.data_dir

    def node(self, node_id: int) -> Node:
        found = self._nodes.get(node_id)
        if found is None:
            raise StackError(f"the cluster has no node {node_id}")
        return found

    def pids(self) -> list[int]:
        return [n.pid for n in self._nodes.values() if n.pid is not None]

    def start(self, timeout_s: float = 120.0) -> str:
        """Format (first time), start every node and wait for all brokers; the bootstrap."""
        java = java_binary()
        jars = self._jars or kafka_jars()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StackError(f"cannot create {self.data_dir}: {exc.strerror}") from None
        layout = self._load_or_plan(jars.version)
        self._check_ports(layout)
        nodes = {
            s.node_id: Node(s, self.data_dir, java, jars, self._heap, self._properties)
            for s in layout.nodes
        }
        try:
            # Before formatting: node folders never exist without the layout they belong to.
            (self.data_dir / LAYOUT_FILE).write_text(layout.to_json())
        except OSError as exc:
            raise StackError(
                f"cannot write {self.data_dir / LAYOUT_FILE}: {exc.strerror}"
            ) from None
        self._format(layout, list(nodes.values()))
        self._layout, self._nodes = layout, nodes
        try:
            for node in nodes.values():
                node.start(layout)
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("%s, on %s (cluster %s)", self.describe(), layout.bootstrap, layout.cluster_id)
        return layout.bootstrap

    def _load_or_plan(self, version: str) -> ClusterLayout:
        path = self.data_dir / LAYOUT_FILE
        if path.exists():
            layout = ClusterLayout.from_json(path.read_text(), path)
            if self._brokers is not None and layout.brokers != self._brokers:
                raise StackError(
                    f"{self.data_dir} holds a cluster of {layout.brokers} broker(s), not "
                    f"{self._brokers}: pass --brokers {layout.brokers} or another --data-dir"
                )
            if self._controllers is not None and len(layout.controllers) != self._controllers:
                raise StackError(
                    f"{self.data_dir} holds a cluster with {len(layout.controllers)} "
                    f"controller(s), not {self._controllers}: leave out --controllers or "
                    "pass another --data-dir"
                )
            if self._port and layout.nodes[0].port != self._port:  # None and 0: its own
                raise StackError(
                    f"{self.data_dir} holds a cluster on port {layout.nodes[0].port}, not "
                    f"{self._port}: pass --port {layout.nodes[0].port} or another --data-dir"
                )
            if layout.version != version:
                log.warning(
                    "%s was formatted by Apache Kafka %s; starting it with %s",
                    self.data_dir,
                    layout.version,
                    version,
                )
                layout = ClusterLayout(layout.cluster_id, version, layout.nodes)
            return layout
        stray = sorted(p.name for p in self.data_dir.glob("node-*") if p.is_dir())
        if stray:
            raise StackError(
                f"{self.data_dir} holds Kafka data ({', '.join(stray)}) but no {LAYOUT_FILE}: "
                "it is not a cluster this command started; pass another --data-dir"
            )
        brokers = self._brokers or 1
        # One controller, or three (a quorum that survives one loss); two would stop
        # when either died, which is worse than one.
        default = 3 if brokers >= 3 else 1
        controllers = self._controllers if self._controllers is not None else default
        if self._port != 0:
            first = DEFAULT_PORT if self._port is None else self._port
            ports = [first + i for i in range(brokers)]
            if ports[-1] > 65535:
                raise StackError(f"--port {first} leaves no room for {brokers} brokers")
        else:
            ports = _free_ports(brokers)
        controller_ports = _free_ports(controllers, avoid=set(ports))
        return plan_layout(new_cluster_id(), version, ports, controller_ports)

    def _check_ports(self, layout: ClusterLayout) -> None:
        for spec in layout.nodes:
            for port in (spec.port, spec.controller_port):
                if port is not None and not port_is_free(port):
                    raise StackError(
                        f"port {port} on {HOST} is already in use: pass another --port"
                    )

    def _format(self, layout: ClusterLayout, nodes: list[Node]) -> None:
        """Format the log dirs not formatted yet; refuse those of another cluster."""
        to_format = []
        for node in nodes:
            found = node.formatted_for()
            if found is None:
                to_format.append(node)
            elif found != layout.cluster_id:
                raise StackError(
                    f"{node.log_dir} belongs to Kafka cluster {found}, not {layout.cluster_id} "
                    f"({self.data_dir / LAYOUT_FILE}): pass another --data-dir"
                )
        if to_format:
            with ThreadPoolExecutor(max_workers=len(to_format)) as pool:
                list(pool.map(lambda n: n.format(layout), to_format))

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until the metadata lists every running node as a broker."""
        layout = self.layout
        want = {i for i, n in self._nodes.items() if n.alive()}
        running = ",".join(layout.node(i).address for i in sorted(want))
        deadline = time.monotonic() + timeout_s
        admin: TopicAdmin | None = None  # created once the ports are bound: no refusals logged
        while True:
            for node_id in want:
                node = self._nodes[node_id]
                if not node.alive():
                    raise StackError(
                        f"Kafka node {node_id} exited before the cluster was ready: "
                        f"{node.last_log_line()}"
                    )
            if time.monotonic() > deadline:
                raise StackError(
                    f"Apache Kafka did not list brokers {sorted(want)} on {running} within "
                    f"{timeout_s:.0f} s; see {self.data_dir}/node-*.log"
                )
            if all(not port_is_free(layout.node(i).port) for i in want):
                if admin is None:
                    admin = TopicAdmin(KafkaSettings(bootstrap=running, connect_timeout_s=2.0))
                with contextlib.suppress(BackoffError):
                    if want <= set(admin.brokers()):
                        return
            time.sleep(0.1)

    def running(self) -> bool:
        """True while every node runs."""
        return bool(self._nodes) and all(n.alive() for n in self._nodes.values())

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every node (a controlled shutdown), then SIGKILL what is left; idempotent."""
        alive = [n for n in self._nodes.values() if n.alive()]
        for node in alive:
            node.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for node in alive:
            if not node.wait(max(0.1, deadline - time.monotonic())):
                log.warning(
                    "Kafka node %d did not stop within %.0f s: killing it", node.node_id, timeout_s
                )
                node.kill()
        for node in self._nodes.values():
            node.close_log()

    # --- one node (fault injection) ----------------------------------------------

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: no controlled shutdown, no flush."""
        node = self.node(node_id)
        if not node.alive():
            raise StackError(f"Kafka node {node_id} is not running")
        node.kill()

    def stop_node(self, node_id: int, timeout_s: float = 30.0) -> None:
        """SIGTERM one node and wait for its controlled shutdown (SIGKILL after the timeout)."""
        node = self.node(node_id)
        node.signal(signal.SIGTERM)
        if not node.wait(timeout_s):
            node.kill()

    def start_node(self, node_id: int, timeout_s: float = 120.0) -> None:
        """Start one stopped node again and wait until the metadata lists it."""
        self.node(node_id).start(self.layout)
        self.wait_ready(timeout_s)

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


def _free_ports(count: int, avoid: set[int] | None = None) -> list[int]:
    """Ports the nodes keep across restarts: outside the ephemeral range (see
    :func:`~durable_ingest.loopback.lasting_port`)."""
    ports: list[int] = []
    taken = set(avoid or ())
    while len(ports) < count:
        port = lasting_port(taken)
        taken.add(port)
        ports.append(port)
    return ports
