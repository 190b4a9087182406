"""Fixtures for tests that run workers as separate processes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from durable_ingest.apache_kafka import KafkaCluster, KafkaJars
from foundation.config import KafkaSettings
from staging.kafka.admin import TopicAdmin

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


@pytest.fixture(scope="session")
def kafka_cluster(
    tmp_path_factory: pytest.TempPathFactory, apache_kafka_jars: KafkaJars
) -> Iterator[KafkaCluster]:
    """A 3-broker Apache Kafka cluster (3 combined KRaft nodes) for fault and scale-out tests."""
    cluster = KafkaCluster(
        tmp_path_factory.mktemp("cluster") / "kafka", brokers=3, port=0, jars=apache_kafka_jars
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def admin(cluster: KafkaCluster) -> TopicAdmin:
    return TopicAdmin(KafkaSettings(bootstrap=cluster.bootstrap, connect_timeout_s=5))


def heal(cluster: KafkaCluster) -> None:
    """Every node up, and every partition's replicas back in sync."""
    for node in cluster.layout.nodes:
        if not cluster.node(node.node_id).alive():
            cluster.start_node(node.node_id)
    check = admin(cluster)
    deadline = time.monotonic() + 120
    while check.under_replicated():
        assert time.monotonic() < deadline, f"not in sync: {check.under_replicated()}"
        time.sleep(0.2)


@pytest.fixture
def healthy_cluster(kafka_cluster: KafkaCluster) -> Iterator[KafkaCluster]:
    """The 3-broker cluster with every node up and in sync, before and after the test."""
    heal(kafka_cluster)
    yield kafka_cluster
    heal(kafka_cluster)
