"""A librdkafka client that knows no broker any more (:mod:`staging.kafka.stranded`)."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import KafkaError

from staging.kafka.stranded import STATS_INTERVAL_MS, BrokerWatch, RenewingProducer
from staging.kafka.writer import DeliveryErrors, KafkaRecordWriter
from staging.schemas import SchemaCatalog
from tests.helpers import trade_resource, trades


def stats(*sources: str) -> str:
    """librdkafka statistics naming one broker handle per source."""
    return json.dumps(
        {"brokers": {f"b{i}": {"source": s, "nodeid": i} for i, s in enumerate(sources)}}
    )


def test_a_client_knowing_a_learned_or_configured_broker_is_not_stranded() -> None:
    watch = BrokerWatch()
    for known in (stats("learned"), stats("configured"), stats("logical", "learned")):
        watch(known)
        assert not watch.stranded, known


def test_a_client_left_with_no_broker_or_only_internal_ones_is_stranded() -> None:
    """After a metadata answer that listed no broker: none, or only the coordinator and
    the internal handle, which cannot answer a metadata request."""
    for lost in (stats(), stats("logical", "internal")):
        watch = BrokerWatch()
        watch(lost)
        assert watch.stranded, lost
    watch(stats("configured"))  # re-bootstrapped after all
    assert not watch.stranded


def test_statistics_it_cannot_read_change_nothing() -> None:
    watch = BrokerWatch()
    watch(stats())
    for unreadable in ("not json", "[]", json.dumps({"brokers": []})):
        watch(unreadable)
        assert watch.stranded


def test_the_watch_is_set_as_the_statistics_callback_of_a_config() -> None:
    watch = BrokerWatch()
    config = watch.watch({"bootstrap.servers": "b:9092"})
    assert config["stats_cb"] is watch and config["statistics.interval.ms"] == STATS_INTERVAL_MS
    assert config["bootstrap.servers"] == "b:9092"


class FakeProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.purged = False
        self.flushed: list[float] = []

    def purge(self, in_queue: bool = True, in_flight: bool = True) -> None:
        self.purged = in_queue and in_flight

    def flush(self, timeout: float) -> int:
        self.flushed.append(timeout)
        return 0


def test_a_stranded_producer_is_replaced_by_one_built_from_the_same_settings() -> None:
    built: list[FakeProducer] = []

    def build(config: dict[str, Any]) -> Any:
        built.append(FakeProducer(config))
        return built[-1]

    producers = RenewingProducer({"bootstrap.servers": "b:9092"}, build)
    first = producers.current()
    first.config["stats_cb"](stats("learned"))
    assert producers.current() is first and producers.renewals == 0
    first.config["stats_cb"](stats())  # every broker forgotten
    second = producers.current()
    assert second is not first and producers.renewals == 1
    assert built == [first, second]
    assert first.purged and first.flushed == [0]  # its records reported undelivered now
    assert second.config["bootstrap.servers"] == "b:9092"
    assert second.config["stats_cb"] is not first.config["stats_cb"]  # a fresh watch
    assert producers.current() is second


class QueueingProducer:
    """A producer double that keeps what it is given until flushed, and reports what a
    purge took as undelivered, through the delivery callback of its settings."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.on_delivery = config["on_delivery"]
        self.queued: list[bytes] = []
        self.delivered: list[bytes] = []
        self.purged: list[bytes] = []

    def produce(self, topic: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        self.queued.append(value)

    def poll(self, timeout: float) -> int:
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True) -> None:
        self.purged, self.queued = self.queued, []

    def flush(self, timeout: float) -> int:
        for _ in self.purged:
            self.on_delivery(KafkaError(KafkaError._PURGE_QUEUE), None)
        self.purged = []
        if timeout > 0:
            self.delivered += self.queued
            self.queued = []
        return len(self.queued)


def test_a_write_after_a_renewal_is_not_failed_by_the_old_producers_purged_records(
    catalog: SchemaCatalog,
) -> None:
    """The old producer's records were reported undelivered before (their write raised):
    the reports its purge makes belong to that write, not to the next one."""
    errors = DeliveryErrors()
    producers = RenewingProducer({"on_delivery": errors}, QueueingProducer)
    writer = KafkaRecordWriter(
        producers,
        errors,
        trade_resource(catalog),
        max_record_bytes=1_000_000,
        partitions=3,
        flush_timeout_s=1,
    )
    stuck = producers.current()
    stuck.produce("t", b"an earlier write's record, never confirmed")
    producers.broker_watch(stats())
    result = writer.write_batch(trades(3))
    assert result.count == 3 and producers.renewals == 1
    assert len(producers.current().delivered) == 3
