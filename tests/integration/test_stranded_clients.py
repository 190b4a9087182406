"""Clients that know no broker any more are replaced (:mod:`staging.kafka.stranded`), on a
real broker. A metadata answer with no broker in it, as the last broker of a cluster
stopping as a whole gives, strands a librdkafka client; here the client's broker watch is
told so, as its statistics would tell it."""

from __future__ import annotations

import json

from confluent_kafka import Producer

from foundation.config import KafkaSettings
from staging.kafka import KafkaStagingProvider
from staging.kafka.admin import TopicAdmin
from staging.kafka.client_config import producer_config
from staging.kafka.stranded import RenewingProducer
from staging.protocol import StagingContext
from staging.resource import TopicSpec
from staging.schemas import SchemaCatalog
from tests.helpers import trade_resource, trades, unique

NO_BROKER = json.dumps({"brokers": {}})


def test_a_producer_that_knows_no_broker_is_replaced_and_delivers(kafka: KafkaSettings) -> None:
    topic = unique("stranded")
    TopicAdmin(kafka).ensure([TopicSpec(topic, partitions=1)])
    producers = RenewingProducer(producer_config(kafka, max_record_bytes=1_000_000), Producer)
    first = producers.current()
    first.produce(topic, b"before")
    assert first.flush(10) == 0
    producers.broker_watch(NO_BROKER)
    second = producers.current()
    assert second is not first and producers.renewals == 1
    second.produce(topic, b"after")
    assert second.flush(10) == 0
    assert producers.current() is second  # its own statistics name the broker again


def test_a_reader_that_knows_no_broker_joins_again_and_reads_what_was_not_committed(
    kafka: KafkaSettings, catalog: SchemaCatalog
) -> None:
    """Its partitions count as lost: what it read but did not commit is read again (the
    sink's tokens absorb that), nothing is skipped, and commits work afterwards."""
    provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)
    resource = trade_resource(catalog)
    context = StagingContext(source=resource.source, resources=(resource,), group_id=unique("g"))
    with provider.allocate_session(context) as session:
        session.writer().write_batch(trades(60))
        reader = session.reader()
        batches = reader.iter_batches(25, poll_timeout_s=0.5, idle_timeout_s=3)
        first = next(batches)
        reader.commit(first)
        second = next(batches)  # read, never committed
        assert reader.assignment()
        reader.broker_watch(NO_BROKER)
        rest = []
        for batch in batches:
            rest.extend(batch.records)
            reader.commit(batch)
        assert reader.renewals == 1
        # The replaced consumer's own revocation, as it closes, does not touch the new one's.
        assert reader.assignment()
        committed = {r.record["trade_id"] for r in first.records}
        again = {r.record["trade_id"] for r in second.records}
        after = [r.record["trade_id"] for r in rest]
        assert committed | set(after) == {r["trade_id"] for r in trades(60)}
        assert again <= set(after)  # read again by the new consumer
        assert not committed & set(after)
        assert sum(reader.committed().values()) == 60
