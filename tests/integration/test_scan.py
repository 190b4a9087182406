"""The group-less TopicScanner on the real broker: ranges, times, groups, idle end."""

from __future__ import annotations

import time

import pytest

from foundation.config import KafkaSettings
from foundation.errors import TopicError
from staging.kafka.provider import KafkaStagingProvider
from staging.kafka.scan import TopicScanner
from staging.protocol import StagingContext
from staging.schemas import SchemaCatalog
from tests.helpers import trade_resource, trades, unique


def test_scan_reads_ranges_times_and_committed_offsets_without_joining(
    kafka: KafkaSettings, catalog: SchemaCatalog
) -> None:
    resource = trade_resource(catalog, partitions=2)
    provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)
    provider.ensure_topics([resource])
    context = StagingContext(source=resource.source, resources=(resource,))
    with provider.allocate_session(context) as session:
        session.writer().write_batch(trades(300))
        middle_ms = int(time.time() * 1000) + 1
        time.sleep(0.05)
        session.writer().write_batch(trades(200, start=300))
        reader = session.reader()
        first = next(iter(reader.iter_batches(50, idle_timeout_s=20)))
        reader.commit(first)
        committed = reader.committed()
    topic = resource.topic.name
    scanner = TopicScanner(kafka)
    try:
        assert scanner.partitions(topic) == [0, 1]
        everything = [r for chunk in scanner.scan(topic, idle_s=1.0) for r in chunk]
        assert len(everything) == 500 and scanner.ended_by == "idle"
        assert len({(r.partition, r.offset) for r in everything}) == 500
        # Offsets by time: from the second write on.
        since = scanner.offsets_at(topic, middle_ms)
        start = {p: o for p, o in since.items() if o is not None}
        later = [r for chunk in scanner.scan(topic, start, idle_s=1.0) for r in chunk]
        assert len(later) == 200
        # A bounded range ends at its stop offsets without waiting for idleness.
        stop = {0: 10, 1: 5}
        bounded = [r for chunk in scanner.scan(topic, {0: 3, 1: 0}, stop, idle_s=30) for r in chunk]
        assert scanner.ended_by == "stop"  # at its stop offsets, not after 30 s of silence
        # The scanner reads the same partitions again after a bounded scan paused them.
        again = [r for chunk in scanner.scan(topic, idle_s=1.0) for r in chunk]
        assert len(again) == 500
        assert sorted((r.partition, r.offset) for r in bounded) == [
            *((0, o) for o in range(3, 10)),
            *((1, o) for o in range(5)),
        ]
        # The sink group's commits are readable, and the scans did not move them.
        assert {p.partition: o for p, o in committed.items()} == scanner.committed(
            context.consumer_group, topic
        )
        assert scanner.committed(unique("nogroup"), topic) == {}
        with pytest.raises(TopicError, match="does not exist"):
            scanner.partitions(unique("missing"))
    finally:
        scanner.close()
