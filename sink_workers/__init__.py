"""Sink workers: read staged batches, write them to their targets, then commit.

:mod:`.tables` (Avro to ClickHouse), :mod:`.columns`, :mod:`.batching`,
:mod:`.worker` (the loop: write, dead-letter, commit, checkpoint),
:mod:`.stream` (Kafka targets), :mod:`.clickhouse` (the warehouse adapter)
and :mod:`.run` (``ingest sink run``). See docs/sink.md.
"""
