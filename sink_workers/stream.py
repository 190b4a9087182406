"""A stream target: a resource's records re-staged on another Kafka topic.

The records pass through undecoded (``RecordWriter.write_staged``,
:mod:`staging.restage`): the same key, value and headers, so the same schema
fingerprint and event ids, and a consumer of the destination deduplicates by
``ce_id``; only the checkpoint headers are left out. Delivery to the
destination is at-least-once: a retried batch is produced again with the same
event ids.
"""

from __future__ import annotations

from collections.abc import Sequence

from staging.decoder import StagedRecord
from staging.protocol import RecordWriter
from staging.resource import StagedResource


def stream_resource(resource: StagedResource, topic: str) -> StagedResource:
    """The destination of ``resource`` on ``topic``: same schema and keys."""
    return StagedResource.define(
        source=resource.source,
        name=resource.name,
        schema=resource.schema,
        key=resource.key,
        id_fields=resource.id_fields,
        time_field=resource.time_field,
        topic=topic,
        partitions=resource.topic.partitions,
        retention_ms=resource.topic.retention_ms,
        replication_factor=resource.topic.replication_factor,
    )


class StreamTarget:
    """Writes records to their destination topic; returns once all are acknowledged."""

    needs_records = False

    def __init__(self, writer: RecordWriter) -> None:
        self._writer = writer

    def write(self, records: Sequence[StagedRecord], token: str) -> int:
        return self._writer.write_staged(records).count
