"""Envelopes: one staged Kafka record per source event, and back.

An envelope is the key, value and headers of one Kafka record (see
``docs/wire-format.md``):

* key: the resource's entity key (records with one key stay in order);
* value: the record in Avro single-object encoding (:mod:`staging.codec`);
* headers: CloudEvents 1.0 attributes in Kafka binary mode (``ce_id``,
  ``ce_source``, ``ce_type``, ``ce_time``...) plus the extensions
  ``ce_ingesttime`` and, on the last record of a write, ``ce_checkpoint``.

The event id is deterministic: a hash of the source, the resource and the
record's natural key (or, without one, its encoded bytes). A re-sent event has
the id it had the first time, which is what lets the sink deduplicate.

Pure code: :class:`EnvelopeEncoder` turns rows into envelopes and
:class:`EnvelopeDecoder` turns staged bytes back into records; neither does I/O.
"""

from __future__ import annotations

import decimal
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from durable_ingest.errors import (
    CheckpointError,
    CorruptRecordError,
    RecordTooLargeError,
    SchemaMismatchError,
)
from staging.codec import HEADER_SIZE, decode_body, encode_body
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog, StagedSchema

SPECVERSION = "1.0"
CONTENT_TYPE = "application/avro"
H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_SOURCE = "ce_source"
H_TYPE = "ce_type"
H_TIME = "ce_time"
H_DATASCHEMA = "ce_dataschema"
DATASCHEMA_PREFIX = "urn:durable-ingest:schema:"
"""``ce_dataschema`` is this prefix + the schema's path under ``schemas/``."""
H_INGESTTIME = "ce_ingesttime"
H_CHECKPOINT = "ce_checkpoint"
H_CONTENT_TYPE = "content-type"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Checkpoint = Mapping[str, Any]

# Per-record header overhead that Kafka counts in the record size (a varint
# key length, a varint value length): a generous upper bound.
_HEADER_OVERHEAD = 10


def rfc3339(micros: int) -> str:
    """RFC 3339 UTC timestamp with microseconds, e.g. ``2026-11-22T03:19:22.000001Z``."""
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_micros(value: Any) -> int:
    """Microseconds since the epoch of a datetime (naive means UTC) or an int."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta: timedelta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return int(value)


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
    headers: list[tuple[str, bytes]]
    event_id: str

    @property
    def size(self) -> int:
        """Bytes this record takes on the wire, headers included (upper bound)."""
        size = len(self.key) + len(self.value) + _HEADER_OVERHEAD
        for name, value in self.headers:
            size += len(name) + len(value) + 2
        return size


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class EnvelopeEncoder:
    """Rows of one resource into envelopes; validates every row before any is sent."""

    def __init__(self, resource: StagedResource, *, max_record_bytes: int) -> None:
        self.resource = resource
        self.max_record_bytes = max_record_bytes
        schema = resource.schema
        self._parsed = schema.parsed
        self._header = schema.header
        self._fields = schema.field_names
        self._required = schema.required_fields
        self._key_fields = resource.key
        self._id_fields = resource.id_fields
        self._time_field = resource.time_field
        self._id_prefix = f"{resource.source}\x1f{resource.name}\x1f".encode()
        self._static_headers: list[tuple[str, bytes]] = [
            (H_SPECVERSION, SPECVERSION.encode()),
            (H_SOURCE, f"/ingest/{resource.source}".encode()),
            (H_TYPE, resource.name.encode()),
            (H_DATASCHEMA, f"{DATASCHEMA_PREFIX}{schema.path}".encode()),
            (H_CONTENT_TYPE, CONTENT_TYPE.encode()),
        ]
        self._decimal_limits = _decimal_limits(schema)
        self._identity_fields = tuple(dict.fromkeys((*resource.key, *resource.id_fields)))

    def encode_batch(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        ingest_time_us: int,
        checkpoint: Checkpoint | None = None,
    ) -> list[Envelope]:
        """Envelopes for ``rows``, in order; the checkpoint rides on the last one.

        Raises :class:`SchemaMismatchError` or :class:`RecordTooLargeError` for
        the first bad row, naming it, before anything could have been staged.
        """
        ingest_header = (H_INGESTTIME, rfc3339(ingest_time_us).encode())
        checkpoint_bytes = encode_checkpoint(checkpoint) if checkpoint is not None else None
        if checkpoint_bytes is not None and not rows:
            raise CheckpointError(
                f"resource {self.resource.qualified_name}: a checkpoint needs at least one row "
                "to travel with"
            )
        envelopes: list[Envelope] = []
        last = len(rows) - 1
        for index, row in enumerate(rows):
            body = self._encode_row(index, row)
            key = self._key(row)
            event_id = self._event_id(row, body)
            event_time = (
                rfc3339(to_micros(row[self._time_field]))
                if self._time_field is not None
                else ingest_header[1].decode()
            )
            headers = [
                (H_ID, event_id.encode()),
                *self._static_headers,
                (H_TIME, event_time.encode()),
                ingest_header,
            ]
            if index == last and checkpoint_bytes is not None:
                headers.append((H_CHECKPOINT, checkpoint_bytes))
            envelope = Envelope(key, self._header + body, headers, event_id)
            size = envelope.size
            if size > self.max_record_bytes:
                raise RecordTooLargeError(
                    f"resource {self.resource.qualified_name}, row {index} (event {event_id}): "
                    f"{size} bytes encoded, over the limit of {self.max_record_bytes} bytes "
                    "(staging.max_record_bytes)",
                    resource=self.resource.qualified_name,
                    size=size,
                    limit=self.max_record_bytes,
                    row_index=index,
                )
            envelopes.append(envelope)
        return envelopes

    def _encode_row(self, index: int, row: Mapping[str, Any]) -> bytes:
        if not isinstance(row, Mapping):
            raise self._mismatch(index, None, f"row is a {type(row).__name__}, not a mapping")
        keys = row.keys()
        if keys != self._fields:
            extra = sorted(set(keys) - self._fields)
            if extra:
                raise self._mismatch(index, extra[0], "field is not in the schema")
            missing = sorted(self._required - set(keys))
            if missing:
                raise self._mismatch(index, missing[0], "required field is missing")
        for name in self._identity_fields:
            if row.get(name) is None:
                raise self._mismatch(
                    index, name, "is null, but it is part of the key or natural key"
                )
        for name, limit in self._decimal_limits:
            value = row.get(name)
            if isinstance(value, decimal.Decimal) and not abs(value) < limit:
                raise self._mismatch(
                    index, name, f"{_short(value)} does not fit the decimal's precision"
                )
        try:
            return encode_body(self._parsed, row)
        except (
            TypeError,
            ValueError,
            AttributeError,
            KeyError,
            OverflowError,
            decimal.InvalidOperation,
        ) as exc:
            raise self._mismatch(index, _failing_field(self._parsed, row), str(exc)) from exc

    def _mismatch(self, index: int, field: str | None, reason: str) -> SchemaMismatchError:
        where = f"field {field!r}" if field else "row"
        return SchemaMismatchError(
            f"resource {self.resource.qualified_name}, row {index}: {where} does not fit "
            f"schema {self.resource.schema.path}: {reason}",
            resource=self.resource.qualified_name,
            field=field,
            row_index=index,
        )

    def _key(self, row: Mapping[str, Any]) -> bytes:
        if len(self._key_fields) == 1:
            return str(row[self._key_fields[0]]).encode()
        return json.dumps([str(row[f]) for f in self._key_fields], separators=(",", ":")).encode()

    def _event_id(self, row: Mapping[str, Any], body: bytes) -> str:
        digest = hashlib.blake2b(self._id_prefix, digest_size=16)
        if self._id_fields:
            digest.update("\x1f".join([str(row[f]) for f in self._id_fields]).encode())
        else:
            digest.update(body)
        return digest.hexdigest()


def _decimal_limits(schema: StagedSchema) -> list[tuple[str, decimal.Decimal]]:
    """(field, exclusive bound) for each decimal field: |value| < 10^(precision-scale)."""
    limits = []
    for field in schema.parsed["fields"]:
        for branch in field["type"] if isinstance(field["type"], list) else [field["type"]]:
            if isinstance(branch, dict) and branch.get("logicalType") == "decimal":
                digits = int(branch["precision"]) - int(branch.get("scale", 0))
                limits.append((field["name"], decimal.Decimal(10) ** digits))
    return limits


def _failing_field(parsed: Any, row: Mapping[str, Any]) -> str | None:
    """Name of the first top-level field whose value the schema rejects."""
    from fastavro.validation import validate

    for field in parsed["fields"]:
        name = field["name"]
        if name in row and not validate(row[name], field["type"], raise_errors=False):
            return str(name)
    return None


@dataclass(frozen=True, slots=True)
class StagedRecord:
    """One record read back from staging, with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    schema: StagedSchema
    record: dict[str, Any]
    checkpoint: dict[str, Any] | None = None
    """The checkpoint this record carried (the last record of a write), if any."""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name and value is not None:
                return value.decode("utf-8", "replace")
        return None

    @property
    def event_id(self) -> str | None:
        return self.header(H_ID)

    @property
    def resource(self) -> str | None:
        return self.header(H_TYPE)


def _parse_checkpoint(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"header {H_CHECKPOINT} is not a JSON object")
    return value


class EnvelopeDecoder:
    """Staged bytes back into records, finding each schema by its fingerprint."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self.catalog = catalog

    def decode(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] | None,
    ) -> StagedRecord:
        """Decode one staged record; raises :class:`CorruptRecordError` naming it.

        The value and a ``ce_checkpoint`` header, when present, are both checked,
        so a record either decodes completely or is reported corrupt.
        """
        headers = headers or ()
        checkpoint = None
        try:
            if value is None:
                raise ValueError("value is empty (null)")
            if len(value) < HEADER_SIZE or value[:2] != b"\xc3\x01":
                raise ValueError(
                    f"value of {len(value)} bytes does not start with the Avro "
                    "single-object marker c301"
                )
            schema = self.catalog.by_header(value[:HEADER_SIZE])
            if schema is None:
                raise ValueError(
                    f"unknown schema fingerprint {value[2:HEADER_SIZE].hex()} "
                    "(is the schemas folder up to date?)"
                )
            record = decode_body(schema.parsed, memoryview(value)[HEADER_SIZE:])
            for name, raw in headers:
                if name == H_CHECKPOINT and raw is not None:
                    checkpoint = _parse_checkpoint(raw)
        except (
            ValueError,
            TypeError,
            EOFError,
            IndexError,
            KeyError,
            UnicodeDecodeError,
            OverflowError,
            decimal.InvalidOperation,
        ) as exc:
            reason = str(exc) or type(exc).__name__
            raise CorruptRecordError(
                f"staged record {topic}[{partition}]@{offset} cannot be decoded: {reason}",
                topic=topic,
                partition=partition,
                offset=offset,
                reason=reason,
                key=key,
                value=value,
                headers=tuple(headers),
            ) from exc
        return StagedRecord(topic, partition, offset, key, headers, schema, record, checkpoint)
