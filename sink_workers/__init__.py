"""Sink workers: read staged batches, write them to their targets, then commit.

:mod:`.tables` (Avro to ClickHouse), :mod:`.columns`, :mod:`.containers`
(staged bodies into Avro container files), :mod:`.batching`, :mod:`.targets`
(ClickHouse tables: ClickHouse's Avro input, or the Python path),
:mod:`.inserts` (one insert group: retries, halving, dead letters),
:mod:`.worker` (the loop: write, dead-letter, commit, checkpoint),
:mod:`.stream` (Kafka targets), :mod:`.clickhouse` (the warehouse adapter)
and :mod:`.run` with :mod:`.entry` (one sink process: ``ingest sink run``,
``python -m sink_workers``). See docs/sink.md.
"""

from sink_workers.inserts import RetryPolicy, SinkStats
from sink_workers.stream import StreamTarget
from sink_workers.tables import TableSpec, table_spec
from sink_workers.targets import AvroTableTarget, TableTarget, Target, table_target
from sink_workers.worker import SinkWorker

__all__ = [
    "AvroTableTarget",
    "RetryPolicy",
    "SinkStats",
    "SinkWorker",
    "StreamTarget",
    "TableSpec",
    "TableTarget",
    "Target",
    "table_spec",
    "table_target",
]
