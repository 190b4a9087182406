"""The shape of a loopback Apache Kafka cluster, and each node's properties. Pure.

A cluster is ``brokers`` nodes on 127.0.0.1, numbered from 1; the first
``controllers`` of them are KRaft controllers as well (combined nodes, a static
voter set), so 3 brokers with 3 controllers keep a quorum when any one node
dies. The layout is saved as ``cluster.json`` in the cluster's data folder so
that a restart finds the same cluster id, node ids and ports.

Topic defaults follow the size: with 3 or more brokers every internal and new
topic gets replication factor 3 and ``min.insync.replicas=2``; with fewer, what
the brokers can hold. ``group.initial.rebalance.delay.ms`` is 0, as in the
``server.properties`` that Apache Kafka ships for development (production
brokers keep 3000 ms: a new group's first join then waits 3 s longer).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from foundation.errors import StackError

HOST = "127.0.0.1"
LAYOUT_FILE = "cluster.json"
MAX_CONTROLLERS = 3


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One KRaft node: always a broker, and a controller when ``controller`` is set."""

    node_id: int
    port: int
    controller_port: int | None = None

    @property
    def controller(self) -> bool:
        return self.controller_port is not None

    @property
    def roles(self) -> str:
        return "broker,controller" if self.controller else "broker"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    cluster_id: str
    version: str
    nodes: tuple[NodeSpec, ...]

    def __post_init__(self) -> None:
        if not self.nodes:
            raise StackError("a Kafka cluster needs at least one broker")
        if not any(n.controller for n in self.nodes):
            raise StackError("a Kafka cluster needs at least one controller")

    @property
    def brokers(self) -> int:
        return len(self.nodes)

    @property
    def controllers(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.controller)

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes)

    @property
    def replication_factor(self) -> int:
        """What staged and checkpoint topics get: 3 on 3 or more brokers."""
        return min(3, self.brokers)

    @property
    def min_insync_replicas(self) -> int:
        return 2 if self.replication_factor >= 3 else 1

    def node(self, node_id: int) -> NodeSpec:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise StackError(f"the cluster has no node {node_id}")

    def voters(self) -> str:
        return ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.controllers)

    def properties(self, node: NodeSpec, log_dir: Path) -> dict[str, str]:
        """The ``server.properties`` of one node."""
        listeners = f"PLAINTEXT://{node.address}"
        if node.controller:
            listeners += f",CONTROLLER://{HOST}:{node.controller_port}"
        rf = str(self.replication_factor)
        isr = str(self.min_insync_replicas)
        return {
            "process.roles": node.roles,
            "node.id": str(node.node_id),
            "controller.quorum.voters": self.voters(),
            "listeners": listeners,
            "advertised.listeners": f"PLAINTEXT://{node.address}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(log_dir),
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            # durable-ingest creates every topic it uses, with its configs; a typo'd
            # topic name must fail, not appear with broker defaults.
            "auto.create.topics.enable": "false",
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "cluster_id": self.cluster_id,
                "version": self.version,
                "nodes": [asdict(n) for n in self.nodes],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, where: Path) -> ClusterLayout:
        try:
            data: Any = json.loads(text)
            nodes = tuple(
                NodeSpec(
                    node_id=int(n["node_id"]),
                    port=int(n["port"]),
                    controller_port=(
                        None if n.get("controller_port") is None else int(n["controller_port"])
                    ),
                )
                for n in data["nodes"]
            )
            return cls(str(data["cluster_id"]), str(data["version"]), nodes)
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(
                f"{where} is not a cluster layout durable-ingest wrote: {exc}"
            ) from None


def plan_layout(
    cluster_id: str, version: str, ports: list[int], controller_ports: list[int]
) -> ClusterLayout:
    """Broker ``i`` listens on ``ports[i]``; the first ``len(controller_ports)`` are controllers."""
    if not 1 <= len(controller_ports) <= min(MAX_CONTROLLERS, len(ports)):
        raise StackError(
            f"--controllers must be between 1 and {min(MAX_CONTROLLERS, len(ports))} "
            f"for {len(ports)} brokers, not {len(controller_ports)}"
        )
    nodes = tuple(
        NodeSpec(
            node_id=i + 1,
            port=port,
            controller_port=controller_ports[i] if i < len(controller_ports) else None,
        )
        for i, port in enumerate(ports)
    )
    return ClusterLayout(cluster_id, version, nodes)


def render_properties(properties: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in properties.items())


def meta_cluster_id(meta_properties: str) -> str | None:
    """``cluster.id`` from a formatted log dir's ``meta.properties``."""
    for line in meta_properties.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    return None
