"""StagedBatch: commit offsets and the newest checkpoint per partition."""

from __future__ import annotations

from typing import ClassVar

from staging.decoder import EnvelopeDecoder, FixedHeaders, StagedRecord
from staging.envelope import EnvelopeEncoder
from staging.offsets import Partition, offset_ranges
from staging.protocol import StagedBatch
from staging.schemas import SchemaCatalog
from tests.helpers import trade_resource, trades


class Counting(FixedHeaders):
    """Headers that remember whether anyone read them."""

    read: ClassVar[set[int]] = set()

    def headers(self):  # type: ignore[no-untyped-def]
        Counting.read.add(id(self))
        return super().headers()


def staged(catalog: SchemaCatalog, layout: list[tuple[int, int, dict | None]]) -> StagedBatch:  # type: ignore[type-arg]
    """Records at (partition, offset), some carrying a checkpoint."""
    resource = trade_resource(catalog)
    encoder = EnvelopeEncoder(resource, max_record_bytes=1_000_000)
    decoder = EnvelopeDecoder(catalog)
    records: list[StagedRecord] = []
    for i, (partition, offset, checkpoint) in enumerate(layout):
        envelope = encoder.encode_batch(
            trades(1, start=i), ingest_time_us=1, checkpoint=checkpoint
        )[0]
        records.append(
            decoder.decode(
                "t", partition, offset, envelope.key, envelope.value, Counting(envelope.headers)
            )
        )
    return StagedBatch(
        tuple(records), offset_ranges((r.topic, r.partition, r.offset) for r in records)
    )


def test_newest_checkpoint_per_partition(catalog: SchemaCatalog) -> None:
    """Per partition, the last checkpoint in offset order wins; partitions without one are absent."""
    batch = staged(
        catalog,
        [
            (0, 10, {"n": 1}),
            (1, 5, {"n": 2}),
            (0, 11, None),
            (0, 12, {"n": 3}),
            (2, 0, None),
            (1, 6, None),
        ],
    )
    found = [(c.partition, c.offset, c.checkpoint) for c in batch.checkpoints]
    assert found == [(0, 12, {"n": 3}), (1, 5, {"n": 2})]
    assert batch.commit_offsets == {
        Partition("t", 0): 13,
        Partition("t", 1): 7,
        Partition("t", 2): 1,
    }


def test_checkpoint_scan_stops_early(catalog: SchemaCatalog) -> None:
    """With a checkpoint at the end of every partition, only those records' headers are read."""
    layout = [(0, i, None) for i in range(50)] + [(0, 50, {"n": 1})]
    batch = staged(catalog, layout)
    Counting.read.clear()
    assert [c.offset for c in batch.checkpoints] == [50]
    assert Counting.read == {id(batch.records[-1].source)}
