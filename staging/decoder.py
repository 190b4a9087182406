"""Staged bytes back into records: the reading half of the wire format.

The value is decoded at once (its schema found by fingerprint); headers are
read only when asked for, because fetching a Kafka record's headers costs
more than the rest of consuming it. Pure code: no I/O.
"""

from __future__ import annotations

import decimal
import io
import json
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import fastavro

from foundation.errors import CorruptRecordError, UnknownSchemaError
from staging.codec import HEADER_SIZE, MAGIC
from staging.envelope import (
    H_CHECKPOINT,
    H_CHECKPOINT_INSTANCE,
    H_CHECKPOINT_PARTITIONS,
    H_CHECKPOINT_PREV,
    H_CHECKPOINT_SEQ,
    H_ID,
    H_INGESTTIME,
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
    record: dict[str, Any]
    source: HeaderSource

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

    def carried(self) -> Carried | None:
        """The checkpoint this record carries, with its write's time and partitions.

        Reads the headers once. Raises :class:`CorruptRecordError` when the
        checkpoint headers are malformed.
        """
        headers = self.headers
        found: dict[str, bytes] = {}
        for name, raw in headers:
            if raw is not None and name in (
                H_CHECKPOINT,
                H_CHECKPOINT_PARTITIONS,
                H_CHECKPOINT_SEQ,
                H_CHECKPOINT_PREV,
                H_CHECKPOINT_INSTANCE,
                H_INGESTTIME,
                H_TYPE,
            ):
                found[name] = raw
        if H_CHECKPOINT not in found:
            return None
        try:
            value = json.loads(found[H_CHECKPOINT])
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            parts = found.get(H_CHECKPOINT_PARTITIONS, str(self.partition).encode()).decode()
            partitions = tuple(sorted(int(p) for p in parts.split(",")))
            seq = int(found[H_CHECKPOINT_SEQ]) if H_CHECKPOINT_SEQ in found else None
            prev_text = found.get(H_CHECKPOINT_PREV, b"").decode()
            prev = {
                int(p): int(q)
                for p, _, q in (item.partition(":") for item in prev_text.split(",") if item)
            }
        except ValueError as exc:
            raise corrupt(
                self.topic,
                self.partition,
                self.offset,
                f"checkpoint headers are malformed: {exc}",
                key=self.key,
                headers=headers,
            ) from exc
        return Carried(
            resource=found.get(H_TYPE, b"").decode("utf-8", "replace"),
            checkpoint=value,
            write_time=found.get(H_INGESTTIME, b"").decode("ascii", "replace"),
            partitions=partitions,
            seq=seq,
            prev=prev,
            instance=found.get(H_CHECKPOINT_INSTANCE, b"").decode("utf-8", "replace"),
        )


class Carried(NamedTuple):
    """A checkpoint as a record carries it."""

    resource: str
    checkpoint: dict[str, Any]
    write_time: str
    """``ce_ingesttime`` of the write: RFC 3339 with fixed width, so it sorts as text."""
    partitions: tuple[int, ...]
    """Every partition the write touched; each carries this checkpoint at its end of the write."""
    seq: int | None = None
    """The write's sequence number (None: staged before sequences existed)."""
    prev: dict[int, int] = {}  # noqa: RUF012 - a NamedTuple default, never mutated
    """For each partition the write did not touch: the writer's last earlier write there."""
    instance: str = ""
    """The source process that wrote it, when it was given an instance name."""


class EnvelopeDecoder:
    """Staged values back into records, finding each schema by its fingerprint."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self.catalog = catalog
        self._last: StagedSchema | None = None

    def decode(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        source: HeaderSource,
    ) -> StagedRecord:
        """Decode one staged record; raises :class:`CorruptRecordError` naming it."""
        try:
            if value is None:
                raise ValueError("value is empty (null)")
            schema = self._last
            if schema is None or not value.startswith(schema.header):
                if value[:2] != MAGIC or len(value) < HEADER_SIZE:
                    raise ValueError(
                        f"value of {len(value)} bytes does not start with the Avro "
                        "single-object marker c301"
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
            buf = io.BytesIO(value)
            buf.seek(HEADER_SIZE)
            record = fastavro.schemaless_reader(buf, schema.parsed, None)
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
        return StagedRecord(topic, partition, offset, key, schema, record, source)  # type: ignore[arg-type]  # a record schema decodes to a dict
