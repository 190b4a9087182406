"""Failure paths against real components: unreachable or vanishing broker, secrets."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from durable_ingest.loopback import free_port
from foundation.config import KafkaSettings
from foundation.errors import (
    BrokerUnavailableError,
    ConfigError,
    DeliveryFailedError,
    DeliveryUnknownError,
    WarehouseUnavailableError,
)
from staging.kafka import KafkaCheckpointStore, KafkaStagingProvider
from staging.protocol import StagingContext
from staging.resource import TopicSpec
from staging.schemas import SchemaCatalog
from tests.conftest import start_test_broker
from tests.helpers import trade_resource, trades

SECRET = "s3cr3t-Pa55w0rd-XYZ"


def test_unreachable_broker_fails_fast_and_clearly(catalog: SchemaCatalog) -> None:
    """With no broker, opening a session fails within the timeout, naming the address."""
    bootstrap = f"127.0.0.1:{free_port()}"
    provider = KafkaStagingProvider(
        KafkaSettings(bootstrap=bootstrap, connect_timeout_s=2.0),
        catalog=catalog,
        max_record_bytes=1_000_000,
    )
    resource = trade_resource(catalog)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=f"cannot reach Kafka at {bootstrap}") as info:
        provider.allocate_session(StagingContext(source=resource.source, resources=(resource,)))
    assert time.monotonic() - started < 10
    assert info.value.bootstrap == bootstrap


def test_unreachable_broker_for_checkpoints(catalog: SchemaCatalog) -> None:
    """The checkpoint store also fails fast with BrokerUnavailableError."""
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}", connect_timeout_s=2.0)
    with pytest.raises(BrokerUnavailableError):
        KafkaCheckpointStore(
            kafka, TopicSpec("ingest._checkpoints", partitions=1, retention_ms=-1, compacted=True)
        )


def test_broker_vanishing_mid_session_is_unknown_not_failed(
    catalog: SchemaCatalog, stack_engine: str, tmp_path: Path
) -> None:
    """If the broker dies after the session opened, write_batch reports the outcome as unknown."""
    broker = start_test_broker(stack_engine, tmp_path)
    try:
        kafka = KafkaSettings(
            bootstrap=broker.bootstrap, connect_timeout_s=2.0, delivery_timeout_ms=3_000
        )
        provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)
        resource = trade_resource(catalog)
        session = provider.allocate_session(
            StagingContext(source=resource.source, resources=(resource,))
        )
        writer = session.writer()
        writer.write_batch(trades(5))
        broker.stop()
        started = time.monotonic()
        with pytest.raises((DeliveryUnknownError, DeliveryFailedError)) as info:
            writer.write_batch(trades(5, start=5))
        assert time.monotonic() - started < 15
        if isinstance(info.value, DeliveryUnknownError):
            assert "resend the same records" in str(info.value)
        session.close()
    finally:
        broker.stop()


def test_secrets_never_reach_logs_or_errors(
    catalog: SchemaCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    """A SASL password reaches neither log records (librdkafka's included) nor errors."""
    caplog.set_level(logging.DEBUG)
    # Named too: the CLI, run in-process by other tests, quiets this logger in the process.
    caplog.set_level(logging.DEBUG, logger="staging.kafka.librdkafka")
    kafka = KafkaSettings(
        bootstrap=f"127.0.0.1:{free_port()}",
        connect_timeout_s=2.0,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="ingest",
        sasl_password=SECRET,  # type: ignore[arg-type]
        debug="security,broker,conf",
    )
    provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)
    resource = trade_resource(catalog)
    with pytest.raises(BrokerUnavailableError) as info:
        provider.allocate_session(StagingContext(source=resource.source, resources=(resource,)))
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in repr(kafka) and SECRET not in repr(provider.kafka)
    assert caplog.records, "expected librdkafka and adapter logs to be captured"
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_setting_librdkafka_refuses_is_a_config_error(
    kafka: KafkaSettings, catalog: SchemaCatalog
) -> None:
    """An override librdkafka does not know fails as a ConfigError naming the setting."""
    bad = kafka.model_copy(update={"producer": {"linger.mss": "5"}})
    provider = KafkaStagingProvider(bad, catalog=catalog, max_record_bytes=1_000_000)
    resource = trade_resource(catalog)
    with provider.allocate_session(
        StagingContext(source=resource.source, resources=(resource,))
    ) as session:
        with pytest.raises(
            ConfigError, match=r"kafka\.producer: librdkafka refused the settings: .*linger\.mss"
        ):
            session.writer()


@pytest.mark.one_broker("apache")
def test_sink_retrying_longer_than_the_poll_interval_stays_in_the_group(
    catalog: SchemaCatalog, kafka: KafkaSettings
) -> None:
    """A warehouse down for longer than max.poll.interval.ms: the sink waits in the group
    (paused, polling), then writes and commits without the group dropping it."""
    from sink_workers.inserts import RetryPolicy
    from sink_workers.worker import SinkWorker
    from staging.offsets import Partition

    short = kafka.model_copy(update={"max_poll_interval_ms": 10_000})
    provider = KafkaStagingProvider(short, catalog=catalog, max_record_bytes=1_000_000)
    resource = trade_resource(catalog, partitions=1)
    context = StagingContext(
        source=resource.source, resources=(resource,), group_id=f"g{time.time_ns()}"
    )
    down_until = [0.0]
    written: list[int] = []

    class FlakyTarget:
        needs_records = True

        def write(self, records: Any, token: str) -> int:
            if down_until[0] == 0.0:
                down_until[0] = time.monotonic() + 14  # longer than max.poll.interval.ms
            if time.monotonic() < down_until[0]:
                raise WarehouseUnavailableError("down", code=210)
            written.extend(r.record["trade_id"] for r in records)
            return len(records)

    with provider.allocate_session(context) as session:
        session.writer().write_batch(trades(100))
        worker = SinkWorker(
            session,
            {resource.topic.name: FlakyTarget()},
            retry=RetryPolicy(initial_s=1, max_s=2, give_up_after_s=40),
        )
        worker.run(idle_timeout_s=2)
        assert worker.metrics.value("sink_commit_failures_total") is None
        assert worker.stats.retries >= 5
        assert worker.stats.committed == {str(Partition(resource.topic.name, 0)): 100}
    assert sorted(written) == sorted(r["trade_id"] for r in trades(100))
