"""Staged bytes back into records: the reading half of the wire format.

A reader either decodes each value at once (:meth:`EnvelopeDecoder.decode`)
or only recognises it (:meth:`EnvelopeDecoder.frame`: the single-object
marker and a known fingerprint, nothing more), for a sink that hands the
bodies to ClickHouse's own Avro parser; such a record decodes when its
``record`` is read. Either way its schema is found by fingerprint and its
headers are read only when asked for, because fetching a Kafka record's
headers costs more than the rest of consuming it. Pure code: no I/O.
"""

from __future__ import annotations

import decimal
import io
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import fastavro

from foundation.errors import CorruptRecordError, UnknownSchemaError
from staging.checkpoints import CARRIER_HEADERS, CarriedCheckpoint, carried_in
from staging.codec import HEADER_SIZE, MAGIC
from staging.envelope import (
    H_ID,
    H_TYPE,
)
from staging.schemas import SchemaCatalog, StagedSchema

RawHeaders = Sequence[tuple[str, bytes | None]]

_DECODE_ERRORS = (
    ValueError,
    TypeError,
    EOFError,
    IndexError,
    KeyError,
    UnicodeDecodeError,
    OverflowError,
    decimal.InvalidOperation,
)


class HeaderSource(Protocol):
    """Anything that hands out a record's headers on demand (a Kafka message)."""

    def headers(self) -> Any: ...


class FixedHeaders:
    """A :class:`HeaderSource` over headers already in hand."""

    __slots__ = ("_headers",)

    def __init__(self, headers: RawHeaders | None) -> None:
        self._headers = tuple(headers or ())

    def headers(self) -> RawHeaders:
        return self._headers


def corrupt(
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    *,
    key: bytes | None = None,
    value: bytes | None = None,
    headers: RawHeaders | None = None,
) -> CorruptRecordError:
    """The error for an undecodable record, carrying its raw bytes for a dead letter."""
    return CorruptRecordError(
        f"staged record {topic}[{partition}]@{offset} cannot be decoded: {reason}",
        topic=topic,
        partition=partition,
        offset=offset,
        reason=reason,
        key=key,
        value=value,
        headers=tuple(headers or ()),
    )


class StagedRecord(NamedTuple):
    """One record read back from staging, with where it came from.

    A named tuple rather than a dataclass: one is built per staged record, and
    tuple construction is the cheapest immutable object Python has.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    schema: StagedSchema
    value: bytes
    """The staged value as read: single-object header and Avro body."""
    source: HeaderSource
    decoded: dict[str, Any] | None = None
    """The value decoded, when the reader decoded it (else None: see :attr:`record`)."""

    @property
    def record(self) -> dict[str, Any]:
        """The decoded value: as the reader decoded it, or decoded now (each time it is
        read). Raises :class:`CorruptRecordError` for a body that does not decode."""
        if self.decoded is not None:
            return self.decoded
        return decode_body(
            self.schema, self.topic, self.partition, self.offset, self.key, self.value, self.source
        )

    @property
    def body(self) -> bytes:
        """The Avro body: the value past its single-object header."""
        return self.value[HEADER_SIZE:]

    @property
    def headers(self) -> RawHeaders:
        return tuple(self.source.headers() or ())

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

    @property
    def checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint this record carried (the last record of a write), if any."""
        carried = self.carried()
        return carried.checkpoint if carried is not None else None

    def carried(self) -> CarriedCheckpoint | None:
        """The checkpoint this record carries, with its write's time and partitions and
        this record's position.

        Reads the headers once. Raises :class:`CorruptRecordError` when the
        checkpoint headers are malformed.
        """
        headers = self.headers
        found = {n: raw for n, raw in headers if raw is not None and n in CARRIER_HEADERS}
        try:
            carried = carried_in(found, self.partition)
        except ValueError as exc:
            raise corrupt(
                self.topic,
                self.partition,
                self.offset,
                f"checkpoint headers are malformed: {exc}",
                key=self.key,
                headers=headers,
            ) from exc
        return None if carried is None else carried.at(self.topic, self.partition, self.offset)


def decode_body(
    schema: StagedSchema,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    source: HeaderSource,
) -> dict[str, Any]:
    """The Avro body of a value whose header names ``schema``, decoded; every byte
    must belong to the record. Raises :class:`CorruptRecordError` naming it."""
    try:
        buf = io.BytesIO(value)
        buf.seek(HEADER_SIZE)
        record: dict[str, Any] = fastavro.schemaless_reader(buf, schema.parsed, None)  # type: ignore[assignment]  # a record schema decodes to a dict
        if buf.tell() != len(value):
            raise ValueError(f"{len(value) - buf.tell()} trailing bytes after the Avro record")
    except _DECODE_ERRORS as exc:
        raise corrupt(
            topic,
            partition,
            offset,
            str(exc) or type(exc).__name__,
            key=key,
            value=value,
            headers=source.headers(),
        ) from exc
    return record


_new_tuple = tuple.__new__


class EnvelopeDecoder:
    """Staged values back into records, finding each schema by its fingerprint."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self.catalog = catalog
        self._last: StagedSchema | None = None

    def frame(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        source: HeaderSource,
    ) -> StagedRecord:
        """Recognise one staged value without decoding its body: the single-object
        marker and a fingerprint the catalog knows. Raises :class:`CorruptRecordError`
        for a value that is not a single object, :class:`UnknownSchemaError` for an
        unknown fingerprint. A body that does not match its schema is not seen here."""
        schema = self._last
        if value is None or schema is None or not value.startswith(schema.header):
            schema, value = self._recognise(topic, partition, offset, key, value, source)
        # tuple.__new__: half the cost of StagedRecord(...), once per staged record.
        return _new_tuple(
            StagedRecord, (topic, partition, offset, key, schema, value, source, None)
        )

    def decode(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        source: HeaderSource,
    ) -> StagedRecord:
        """Recognise (:meth:`frame`) and decode one staged record; raises
        :class:`CorruptRecordError` naming it."""
        framed = self.frame(topic, partition, offset, key, value, source)
        record = decode_body(framed.schema, topic, partition, offset, key, framed.value, source)
        return _new_tuple(StagedRecord, (*framed[:7], record))

    def _recognise(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        source: HeaderSource,
    ) -> tuple[StagedSchema, bytes]:
        """The schema a value's header names (and the value, known not to be None)."""
        if value is None or value[:2] != MAGIC or len(value) < HEADER_SIZE:
            reason = (
                "value is empty (null)"
                if value is None
                else f"value of {len(value)} bytes does not start with the Avro "
                "single-object marker c301"
            )
            raise corrupt(
                topic, partition, offset, reason, key=key, value=value, headers=source.headers()
            )
        schema = self.catalog.by_header(value[:HEADER_SIZE])
        if schema is None:
            raise UnknownSchemaError(
                f"staged record {topic}[{partition}]@{offset} has schema fingerprint "
                f"{value[2:HEADER_SIZE].hex()}, which no file in the schemas folder has: "
                "add that schema version (old versions must stay) and restart",
                topic=topic,
                partition=partition,
                offset=offset,
            )
        self._last = schema  # consecutive records almost always share a schema
        return schema, value
