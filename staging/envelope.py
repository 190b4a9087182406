"""Envelopes: one staged Kafka record per source event.

An envelope is the key, value and headers of one Kafka record (see
``docs/wire-format.md``):

* key: the resource's entity key (records with one key stay in order);
* value: the record in Avro single-object encoding (:mod:`staging.codec`);
* headers: CloudEvents 1.0 attributes in Kafka binary mode (``ce_specversion``,
  ``ce_id``, ``ce_source``, ``ce_type``, ``ce_time``, ``content-type``) plus the
  extensions ``ce_ingesttime`` and, on the last record of a write in each
  partition it touched, ``ce_checkpoint``.

The event id is deterministic: a hash of the source, the resource and the
record's natural key (or, without one, its encoded bytes). A re-sent event has
the id it had the first time, which is what lets the sink deduplicate.

Pure code: :class:`EnvelopeEncoder` turns records into envelopes (decoding is
:mod:`staging.decoder`). Per-record Python work is the cost that matters
here, so the loop works on parallel lists and precomputed constants.
"""

from __future__ import annotations

import decimal
import hashlib
import io
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zlib import crc32

import fastavro

from foundation.errors import CheckpointError, RecordTooLargeError, SchemaMismatchError
from staging.avro_fast import compile_writer
from staging.record_check import decimal_limits, failing_field, logical_fields
from staging.resource import StagedResource
from staging.schemas import StagedSchema
from staging.times import TimeFormatter, time_unit_us, to_micros

SPECVERSION = "1.0"
CONTENT_TYPE = "application/avro"
H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_SOURCE = "ce_source"
H_TYPE = "ce_type"
H_TIME = "ce_time"
H_INGESTTIME = "ce_ingesttime"
H_CHECKPOINT = "ce_checkpoint"
H_CHECKPOINT_PARTITIONS = "ce_checkpointpartitions"
"""Beside ``ce_checkpoint``: the partitions the write touched, e.g. ``0,2``."""
H_CHECKPOINT_SEQ = "ce_checkpointseq"
"""Beside ``ce_checkpoint``: the write's sequence number, increasing per writer."""
H_CHECKPOINT_PREV = "ce_checkpointprev"
"""Beside ``ce_checkpoint``: for each partition this write did not touch, the
sequence of the writer's last earlier write that did, e.g. ``1:17,2:16``."""
H_CHECKPOINT_INSTANCE = "ce_checkpointinstance"
"""Beside ``ce_checkpoint``, from a source process started with an instance name: whose
checkpoint it is, when several processes of one source stage into the same topics."""
H_CONTENT_TYPE = "content-type"

Checkpoint = Mapping[str, Any]
Headers = list[tuple[str, bytes]]

# Kafka's per-record framing besides key, value and headers (varint lengths,
# attributes, deltas): a generous upper bound. Each header adds two varints.
_RECORD_OVERHEAD = 24
_PER_HEADER_OVERHEAD = 4


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    """Canonical JSON of a checkpoint (sorted keys, no NaN); raises CheckpointError."""
    try:
        return json.dumps(
            dict(checkpoint), sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint is not plain JSON: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Envelope:
    """The bytes of one staged Kafka record."""

    key: bytes
    value: bytes
    headers: Headers
    event_id: str
    partition: int


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """The envelopes of one write, as parallel lists in record order."""

    keys: list[bytes]
    values: list[bytes]
    headers: list[Headers]
    event_ids: list[str]
    partitions: list[int]
    """Partition of each record: CRC-32 of the key modulo the partition count
    (librdkafka's ``consistent`` partitioner), chosen here so that the
    checkpoint can ride on the last record of every partition the write touched."""

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> Envelope:
        return Envelope(
            self.keys[index],
            self.values[index],
            self.headers[index],
            self.event_ids[index],
            self.partitions[index],
        )

    def __iter__(self) -> Iterator[Envelope]:
        return (self[i] for i in range(len(self)))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class EnvelopeEncoder:
    """Records of one resource into envelopes; validates every record before any is sent."""

    def __init__(
        self,
        resource: StagedResource,
        *,
        max_record_bytes: int,
        partitions: int | None = None,
        instance: str = "",
    ) -> None:
        self.resource = resource
        self._instance = (H_CHECKPOINT_INSTANCE, instance.encode()) if instance else None
        self.max_record_bytes = max_record_bytes
        self.partitions = partitions or resource.topic.partitions
        schema = resource.schema
        self._parsed = schema.parsed
        self._compiled = compile_writer(schema.parsed)
        """The compiled writer (fastavro's bytes, sooner), when the schema is within what
        it compiles; a record it does not encode itself goes to fastavro."""
        self._fields = schema.field_names
        self._required = schema.required_fields
        self._id_fields = resource.id_fields
        self._id_hash = hashlib.blake2b(
            f"{resource.source}\x1f{resource.name}\x1f".encode(), digest_size=16
        )
        self._time = TimeFormatter()
        self._time_unit_us = time_unit_us(schema, resource.time_field)
        specversion = (H_SPECVERSION, SPECVERSION.encode())
        self._source = (H_SOURCE, f"/ingest/{resource.source}".encode())
        self._type = (H_TYPE, resource.name.encode())
        self._content_type = (H_CONTENT_TYPE, CONTENT_TYPE.encode())
        self._specversion = specversion
        self._decimal_limits = decimal_limits(schema)
        self._uuid_fields = logical_fields(schema, "uuid")
        self._int_fields = [
            f["name"]
            for f in schema.parsed["fields"]
            if "int" in (f["type"] if isinstance(f["type"], list) else [f["type"]])
        ]
        self._identity_fields = tuple(dict.fromkeys((*resource.key, *resource.id_fields)))
        self._write_seq = 0
        self._last_write: dict[int, int] = {}
        """Per partition, the sequence of the last write that touched it."""

    def encode_batch(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        ingest_time_us: int,
        checkpoint: Checkpoint | None = None,
    ) -> EncodedBatch:
        """Envelopes for ``records``, in order; the checkpoint rides on the last
        record of every partition the write touched.

        Raises :class:`SchemaMismatchError` or :class:`RecordTooLargeError` for
        the first bad record, naming it, before anything could have been staged.
        """
        checkpoint_bytes = encode_checkpoint(checkpoint) if checkpoint is not None else None
        if checkpoint_bytes is not None and not records:
            raise CheckpointError(
                f"resource {self.resource.qualified_name}: a checkpoint needs at least one record "
                "to travel with"
            )
        ingest = (H_INGESTTIME, self._time(ingest_time_us))
        specversion, source, type_, content_type = (
            self._specversion,
            self._source,
            self._type,
            self._content_type,
        )
        # Every header's name and overhead, and the values that never change.
        fixed_size = _RECORD_OVERHEAD + sum(
            len(name) + len(value) + _PER_HEADER_OVERHEAD
            for name, value in (specversion, source, type_, content_type, ingest)
        )
        fixed_size += len(H_ID) + len(H_TIME) + 2 * _PER_HEADER_OVERHEAD
        time_field = self.resource.time_field
        key_fields = self.resource.key
        single_key = key_fields[0] if len(key_fields) == 1 else None
        id_fields = self._id_fields
        id_hash = self._id_hash
        time_of = self._time
        time_unit = self._time_unit_us
        limit = self.max_record_bytes
        prefix = self.resource.schema.header
        compiled = self._compiled
        slow = self._slow_value
        check = self._check_record

        keys: list[bytes] = []
        values: list[bytes] = []
        all_headers: list[Headers] = []
        event_ids: list[str] = []
        sizes: list[int] = []
        partitions: list[int] = []
        partition_count = self.partitions
        for index, record in enumerate(records):
            check(index, record)
            if compiled is None:
                value = slow(index, record)
            else:
                try:
                    value = prefix + compiled(record)
                except Exception:  # noqa: BLE001 - not for the compiled writer: fastavro decides
                    value = slow(index, record)
            if single_key is not None:
                key = str(record[single_key]).encode()
            else:
                key = json.dumps(
                    [str(record[f]) for f in key_fields], separators=(",", ":")
                ).encode()
            digest = id_hash.copy()
            if id_fields:
                digest.update("\x1f".join([str(record[f]) for f in id_fields]).encode())
            else:
                digest.update(value[len(prefix) :])
            event_id = digest.hexdigest()
            event_time = (
                time_of(to_micros(record[time_field], time_unit))
                if time_field is not None
                else ingest[1]
            )
            headers = [
                specversion,
                (H_ID, event_id.encode()),
                source,
                type_,
                (H_TIME, event_time),
                content_type,
                ingest,
            ]
            size = fixed_size + len(key) + len(value) + len(event_id) + len(event_time)
            if size > limit:
                raise self._too_large(index, event_id, size)
            keys.append(key)
            values.append(value)
            all_headers.append(headers)
            event_ids.append(event_id)
            sizes.append(size)
            partitions.append(crc32(key) % partition_count)
        if checkpoint_bytes is not None:
            # On the last record of each partition the write touched, with the
            # list of those partitions: the sink can then tell when the whole
            # write is in the warehouse (see staging.checkpoints.resume_point).
            last_of = {p: i for i, p in enumerate(partitions)}
            touched = ",".join(str(p) for p in sorted(last_of)).encode()
            # The write's sequence (wall-clock microseconds, but always above the
            # previous one) and, for partitions it did not touch, the last earlier
            # write that did: resume_point then knows which earlier writes must be
            # in the warehouse before this one counts as complete.
            seq = max(ingest_time_us, self._write_seq + 1)
            prev = ",".join(
                f"{p}:{q}" for p, q in sorted(self._last_write.items()) if p not in last_of
            ).encode()
            seq_bytes = str(seq).encode()
            extra = (
                len(H_CHECKPOINT)
                + len(checkpoint_bytes)
                + len(H_CHECKPOINT_PARTITIONS)
                + len(touched)
                + len(H_CHECKPOINT_SEQ)
                + len(seq_bytes)
                + len(H_CHECKPOINT_PREV)
                + len(prev)
                + 4 * _PER_HEADER_OVERHEAD
            )
            if self._instance is not None:
                extra += len(self._instance[0]) + len(self._instance[1]) + _PER_HEADER_OVERHEAD
            for index in sorted(last_of.values()):
                all_headers[index].append((H_CHECKPOINT, checkpoint_bytes))
                all_headers[index].append((H_CHECKPOINT_PARTITIONS, touched))
                all_headers[index].append((H_CHECKPOINT_SEQ, seq_bytes))
                all_headers[index].append((H_CHECKPOINT_PREV, prev))
                if self._instance is not None:
                    all_headers[index].append(self._instance)
                if sizes[index] + extra > limit:
                    raise self._too_large(index, event_ids[index], sizes[index] + extra)
            # Remembered only once the write is sure to be produced as encoded.
            self._write_seq = seq
            for p in last_of:
                self._last_write[p] = seq
        return EncodedBatch(keys, values, all_headers, event_ids, partitions)

    def _slow_value(self, index: int, record: Mapping[str, Any]) -> bytes:
        """A staged value written by fastavro; a record it refuses is a schema mismatch."""
        buf = io.BytesIO()
        buf.write(self.resource.schema.header)
        try:
            fastavro.schemaless_writer(buf, self._parsed, record)
        except (
            TypeError,
            ValueError,
            AttributeError,
            KeyError,
            OverflowError,
            decimal.InvalidOperation,
        ) as exc:
            raise self._mismatch(index, failing_field(self._parsed, record), str(exc)) from exc
        return buf.getvalue()

    def _too_large(self, index: int, event_id: str, size: int) -> RecordTooLargeError:
        limit = self.max_record_bytes
        return RecordTooLargeError(
            f"resource {self.resource.qualified_name}, record {index} (event {event_id}): "
            f"{size} bytes encoded, over the limit of {limit} bytes (staging.max_record_bytes)",
            resource=self.resource.qualified_name,
            size=size,
            limit=limit,
            record_index=index,
        )

    def _check_record(self, index: int, record: Mapping[str, Any]) -> None:
        """What fastavro does not check: unknown fields, null keys, decimal precision."""
        if not isinstance(record, Mapping):
            raise self._mismatch(index, None, f"record is a {type(record).__name__}, not a mapping")
        keys = record.keys()
        if keys != self._fields:
            extra = sorted(set(keys) - self._fields)
            if extra:
                raise self._mismatch(index, extra[0], "field is not in the schema")
            missing = sorted(self._required - set(keys))
            if missing:
                raise self._mismatch(index, missing[0], "required field is missing")
        for name in self._identity_fields:
            if record.get(name) is None:
                raise self._mismatch(
                    index, name, "is null, but it is part of the key or natural key"
                )
        for name in self._int_fields:
            value = record.get(name)
            if isinstance(value, int) and not -(2**31) <= value < 2**31:
                raise self._mismatch(index, name, f"{value} does not fit an Avro int (32 bits)")
        for name in self._uuid_fields:
            value = record.get(name)
            if isinstance(value, str):
                try:
                    uuid.UUID(value)
                except ValueError:
                    raise self._mismatch(index, name, f"{_short(value)} is not a UUID") from None
        for name, bound in self._decimal_limits:
            value = record.get(name)
            if isinstance(value, decimal.Decimal) and not -bound < value < bound:
                raise self._mismatch(
                    index, name, f"{_short(value)} does not fit the decimal's precision"
                )

    def _mismatch(self, index: int, field: str | None, reason: str) -> SchemaMismatchError:
        where = f"field {field!r}" if field else "record"
        return SchemaMismatchError(
            f"resource {self.resource.qualified_name}, record {index}: {where} does not fit "
            f"schema {self.resource.schema.path}: {reason}",
            resource=self.resource.qualified_name,
            field=field,
            record_index=index,
        )


def encode_value(schema: StagedSchema, record: Mapping[str, Any]) -> bytes:
    """The staged value of a decoded record: Avro encoding is deterministic, so
    re-encoding a record read back gives the bytes that were staged."""
    buf = io.BytesIO()
    buf.write(schema.header)
    fastavro.schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()
