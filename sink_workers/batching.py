"""How a sink cuts staged batches into inserts. Pure code.

Each insert holds the records of one partition of one topic, in offset order,
so that its deduplication token (``<topic>:<partition>:<first>-<last>:<ids>``)
is a function of what it holds: a retry of the same records carries the same
token and the server drops it.
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
        return f"{self.range.dedup_token()}:{first[:12]}{last[:12]}"

    def halves(self) -> tuple[InsertBatch, InsertBatch]:
        """Split in two, to isolate records the warehouse refuses."""
        middle = len(self.records) // 2
        return (
            InsertBatch(self.topic, self.partition, self.records[:middle]),
            InsertBatch(self.topic, self.partition, self.records[middle:]),
        )


def by_partition(records: Iterable[StagedRecord]) -> list[InsertBatch]:
    """Group records per (topic, partition), keeping offset order and first-seen order."""
    groups: dict[tuple[str, int], list[StagedRecord]] = {}
    for record in records:
        groups.setdefault((record.topic, record.partition), []).append(record)
    return [InsertBatch(t, p, tuple(rs)) for (t, p), rs in groups.items()]
