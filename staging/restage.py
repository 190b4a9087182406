"""Staged records onto another topic as they are: what a stream target writes. Pure code.

A sink whose resource goes to another Kafka topic (``target = "kafka:<topic>"``)
passes its records through: key, value and headers unchanged (the event id
``ce_id`` too, so a consumer of the destination deduplicates as before),
except the checkpoint headers, which describe the source's topic and would
mislead a reader of the destination (and headers without a value, which no
writer of durable-ingest sets). Each record goes to partition CRC-32 of
its key modulo the destination's partition count, as a source's writer
partitions. Nothing is decoded: a record staged under an older writer schema
keeps its bytes and fingerprint.
"""

from __future__ import annotations

from collections.abc import Sequence
from zlib import crc32

from staging.checkpoints import CARRIER_HEADERS
from staging.decoder import StagedRecord
from staging.envelope import H_ID, EncodedBatch, Headers


def restaged(records: Sequence[StagedRecord], partitions: int) -> EncodedBatch:
    """The envelopes that put ``records`` on a topic of ``partitions`` partitions."""
    keys: list[bytes] = []
    headers: list[Headers] = []
    event_ids: list[str] = []
    for record in records:
        key = record.key or b""
        kept: Headers = []
        event_id = ""
        for name, raw in record.headers:
            if raw is None or name in CARRIER_HEADERS:
                continue
            kept.append((name, raw))
            if name == H_ID:
                event_id = raw.decode("utf-8", "replace")
        keys.append(key)
        headers.append(kept)
        event_ids.append(event_id)
    return EncodedBatch(
        keys,
        [record.value for record in records],
        headers,
        event_ids,
        [crc32(key) % partitions for key in keys],
    )
