"""``ingest stack up --engine kafka``: Apache Kafka from its jars, replicated topics, data kept
on disk across restarts, no JVM left behind, and one line for each bad input."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from durable_ingest.apache_kafka.jars import KafkaJars, kafka_version
from foundation.config import KafkaSettings
from staging.kafka.admin import TopicAdmin
from tests.integration.conftest import Spawn
from tests.integration.test_stack_cli import gone_within, one_error_line, start, wait_up

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _jars(apache_kafka_jars: KafkaJars) -> None:
    """Every test here runs Apache Kafka from the cached jars (fetched once)."""


def up(
    spawn: Spawn, data: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``ingest stack up --engine kafka --data-dir DATA ARGS``."""
    return start(spawn, data, "--engine", "kafka", *args, env=env)


def value_of(lines: list[str], prefix: str) -> str:
    found = [ln.removeprefix(prefix).strip() for ln in lines if ln.startswith(prefix)]
    assert found, lines
    return found[0]


def test_a_three_broker_cluster_replicates_keeps_its_data_and_leaves_no_jvm(
    spawn: Spawn, tmp_path: Path
) -> None:
    """3 brokers: every declared topic has 3 in-sync replicas and min.insync.replicas 2;
    SIGTERM stops every JVM; a restart on the folder finds the staged record; kill -9 of
    the command takes the JVMs with it; a node folder of another cluster is refused."""
    data = tmp_path / "data"
    process = up(spawn, data, "--brokers", "3", "--port", "0")
    lines = wait_up(process, timeout_s=180)
    bootstrap = value_of(lines, "kafka bootstrap:")
    assert len(bootstrap.split(",")) == 3
    assert f"Apache Kafka {kafka_version()}, 3 broker(s)" in value_of(lines, "engine:")
    assert "export INGEST_STAGING_REPLICATION_FACTOR=3" in lines
    admin = TopicAdmin(KafkaSettings(bootstrap=bootstrap))
    for topic in ("ingest.coinbase.matches", "ingest.coinbase.matches.dlq", "ingest._checkpoints"):
        for partition in admin.replicas(topic).values():
            assert len(partition.replicas) == 3 and sorted(partition.in_sync) == [1, 2, 3]
        assert admin.topic_config(topic)["min.insync.replicas"] == "2"
    assert admin.topic_config("ingest._checkpoints")["cleanup.policy"] == "compact"
    value = uuid.uuid4().hex.encode()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce("ingest.coinbase.matches", value, b"k", partition=0)
    assert producer.flush(30) == 0
    del producer  # no client left retrying a cluster the test stops
    pids = json.loads((data / "stack.json").read_text())["broker_pids"]
    assert len(pids) == 3

    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    assert "stack stopped" in out
    assert all(gone_within(pid, 10) for pid in pids)

    again = up(spawn, data)  # no --port: the cluster's own ports
    assert value_of(wait_up(again, timeout_s=180), "kafka bootstrap:") == bootstrap
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    consumer.assign([TopicPartition("ingest.coinbase.matches", 0, OFFSET_BEGINNING)])
    seen: list[bytes | None] = []
    deadline = time.monotonic() + 30
    while value not in seen and time.monotonic() < deadline:
        seen += [m.value() for m in consumer.consume(10, 0.5) if m.error() is None]
    consumer.close()
    assert value in seen
    pids = json.loads((data / "stack.json").read_text())["broker_pids"]
    again.kill()  # kill -9 of `ingest stack up`: its JVMs die with it
    again.communicate(timeout=10)
    assert all(gone_within(pid, 30) for pid in pids)

    assert "holds a cluster of 3 broker(s), not 1" in one_error_line(
        up(spawn, data, "--brokers", "1")
    )
    meta = data / "kafka" / "node-2" / "meta.properties"
    meta.write_text(
        re.sub(r"cluster\.id=.*", "cluster.id=AAAAAAAAAAAAAAAAAAAAAA", meta.read_text())
    )
    line = one_error_line(up(spawn, data))
    assert "node-2 belongs to Kafka cluster AAAAAAAAAAAAAAAAAAAAAA, not" in line


def test_a_taken_port_is_one_line(spawn: Spawn, tmp_path: Path) -> None:
    """A broker port something listens on: one line naming it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        line = one_error_line(up(spawn, tmp_path, "--port", str(port)))
    assert f"port {port} on 127.0.0.1 is already in use" in line


def bin_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only ``tools`` (as links to the machine's own)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found is not None, tool
        (folder / tool).symlink_to(found)
    return str(folder)


def test_no_java_is_one_line(spawn: Spawn, tmp_path: Path) -> None:
    line = one_error_line(up(spawn, tmp_path, env={"PATH": bin_with(tmp_path)}))
    assert "Java is not installed: Apache Kafka 4 needs Java 17 or newer" in line


def test_no_maven_for_an_empty_cache_is_one_line(spawn: Spawn, tmp_path: Path) -> None:
    env = {"PATH": bin_with(tmp_path, "java"), "DURABLE_INGEST_CACHE": str(tmp_path / "cache")}
    line = one_error_line(up(spawn, tmp_path, env=env))
    assert "Maven is not installed" in line


def test_maven_central_out_of_reach_is_one_line(spawn: Spawn, tmp_path: Path) -> None:
    """Maven whose only repository refuses connections (as offline): one line with its cause."""
    home = tmp_path / "home"
    (home / ".m2").mkdir(parents=True)
    (home / ".m2" / "settings.xml").write_text(
        "<settings><mirrors><mirror><id>nowhere</id><mirrorOf>*</mirrorOf>"
        "<url>http://127.0.0.1:9/maven2</url></mirror></mirrors></settings>"
    )
    env = {"MAVEN_OPTS": f"-Duser.home={home}", "DURABLE_INGEST_CACHE": str(tmp_path / "cache")}
    line = one_error_line(up(spawn, tmp_path, env=env))
    assert f"Maven could not fetch Apache Kafka {kafka_version()} (offline" in line
    assert not list((tmp_path / "cache").glob("kafka/kafka-*"))  # nothing half-written
