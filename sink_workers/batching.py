"""How a sink cuts staged batches into inserts. Pure code.

Each insert holds the records of one partition of one topic and one writer
schema, in offset order, so that its deduplication token
(``<topic>:<partition>:<first>-<last>:<ids>``, plus ``:<fingerprint>`` when
the partition's records in the batch have several writer schemas) is a
function of what it holds: a retry of the same records carries the same token
and the server drops it. One writer schema per insert is what lets
ClickHouse parse the staged bodies as one Avro block.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from staging.decoder import StagedRecord
from staging.offsets import OffsetRange


@dataclass(frozen=True, slots=True)
class InsertBatch:
    """Records of one partition bound for one table."""

    topic: str
    partition: int
    records: tuple[StagedRecord, ...]
    schema_tag: str = ""
    """The writer schema's fingerprint, when the partition's batch was split by schema."""

    @property
    def range(self) -> OffsetRange:
        return OffsetRange(
            self.topic, self.partition, self.records[0].offset, self.records[-1].offset
        )

    @property
    def token(self) -> str:
        """The offset range plus the first and last event ids.

        The same records give the same token on a retry; a recreated topic
        (offsets from 0 again) gives new tokens, so the server does not drop
        new data as a repeat of old data still in its deduplication window.
        """
        first, last = self.records[0].event_id or "", self.records[-1].event_id or ""
        token = f"{self.range.dedup_token()}:{first[:12]}{last[:12]}"
        return f"{token}:{self.schema_tag}" if self.schema_tag else token

    def halves(self) -> tuple[InsertBatch, InsertBatch]:
        """Split in two, to isolate records the warehouse refuses."""
        middle = len(self.records) // 2
        return (
            InsertBatch(self.topic, self.partition, self.records[:middle], self.schema_tag),
            InsertBatch(self.topic, self.partition, self.records[middle:], self.schema_tag),
        )


def by_partition(records: Iterable[StagedRecord]) -> list[InsertBatch]:
    """Group records per (topic, partition, writer schema), keeping offset order and
    first-seen order."""
    groups: dict[tuple[str, int, bytes], list[StagedRecord]] = {}
    for record in records:
        groups.setdefault((record.topic, record.partition, record.schema.header), []).append(record)
    schemas: dict[tuple[str, int], int] = {}
    for t, p, _ in groups:
        schemas[t, p] = schemas.get((t, p), 0) + 1
    return [
        InsertBatch(t, p, tuple(rs), header[2:].hex() if schemas[t, p] > 1 else "")
        for (t, p, header), rs in groups.items()
    ]
