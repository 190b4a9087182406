"""Where a resource's records go: the Target contract and the ClickHouse table targets.

A ClickHouse table is written one of two ways, decided per resource when the
sink starts (:func:`sink_workers.tables.avro_input_gaps`) and logged:

* :class:`AvroTableTarget`, the default: the staged Avro bodies of an insert
  are framed as one Object Container File (:mod:`sink_workers.containers`)
  and ClickHouse parses them itself (``INSERT ... FORMAT Avro``). Nothing is
  decoded per record in Python.
* :class:`TableTarget`, the Python path: records decoded by the reader,
  turned into columns (:mod:`sink_workers.columns`), one column-oriented insert.
  It serves resources with a field ClickHouse's Avro input would store
  differently, and, inside an :class:`AvroTableTarget`, records of an older
  writer schema that ClickHouse cannot map onto the table as Avro would
  (:func:`sink_workers.tables.writer_gaps`).

Both send the same deduplication token and settings for the same records.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import fastavro

from foundation.errors import BatchRejectedError, CorruptRecordError
from sink_workers.columns import to_columns
from sink_workers.containers import ContainerFormat
from sink_workers.tables import TableSpec, avro_input_gaps, writer_gaps
from staging.decoder import StagedRecord, corrupt
from staging.schemas import StagedSchema

log = logging.getLogger(__name__)


class Target(Protocol):
    """Where a resource's records go: a ClickHouse table or another stream.

    ``write`` gets the records of one partition and one writer schema, in
    offset order. It raises a :class:`BackoffError` or :class:`RetryError`
    for a transient failure (the worker retries the same records and token)
    and a :class:`DeadLetterError` when the records themselves are refused
    (the worker splits them to isolate the bad ones).
    """

    @property
    def needs_records(self) -> bool:
        """Whether ``write`` reads decoded records; when no target of a sink does,
        its reader leaves the staged values undecoded."""
        ...

    def write(self, records: Sequence[StagedRecord], token: str) -> int: ...


class TableWriter(Protocol):
    """One ClickHouse table (:class:`~sink_workers.clickhouse.writer.ClickHouseTableWriter`)."""

    spec: TableSpec

    def insert(self, columns: Sequence[Sequence[Any]], token: str) -> int: ...

    def insert_avro(self, container: bytes, rows: int, token: str) -> int: ...


def resolved_rows(records: Sequence[StagedRecord], schema: StagedSchema | None) -> list[Any]:
    """The records as rows of ``schema`` (the resource's current schema): a record
    staged under another (older) writer schema is decoded with Avro's schema
    resolution, so a field it lacks takes the current schema's default.

    A record that does not decode raises :class:`BatchRejectedError` (the worker
    isolates it and dead-letters it with the decoder's reason)."""
    try:
        return [
            r.record if schema is None or r.schema is schema else _resolve(r, schema)
            for r in records
        ]
    except CorruptRecordError as exc:
        raise BatchRejectedError(str(exc), code=None) from None


def _resolve(record: StagedRecord, schema: StagedSchema) -> Any:
    try:
        return fastavro.schemaless_reader(
            io.BytesIO(record.body), record.schema.parsed, schema.parsed
        )
    except Exception as exc:
        raise corrupt(
            record.topic,
            record.partition,
            record.offset,
            f"cannot be read as {schema.path}: {exc}",
            key=record.key,
            value=record.value,
            headers=record.headers,
        ) from exc


class TableTarget:
    """A ClickHouse table through the Python path: records into columns, one
    deduplicated insert. ``schema``: the resource's current schema, to read
    records of older writer schemas with its defaults."""

    needs_records = True

    def __init__(self, table: TableWriter, schema: StagedSchema | None = None) -> None:
        self.table = table
        self._schema = schema

    def write(self, records: Sequence[StagedRecord], token: str) -> int:
        rows = resolved_rows(records, self._schema)
        return self.table.insert(to_columns(rows, self.table.spec), token)


class AvroTableTarget:
    """A ClickHouse table fed through ClickHouse's own Avro parser: the staged
    bodies of an insert go in one container file under their writer schema."""

    needs_records = False

    def __init__(self, table: TableWriter, schema: StagedSchema) -> None:
        self.table = table
        self._schema = schema
        self._formats: dict[bytes, ContainerFormat | None] = {}
        """Per writer schema (single-object header): its container format, or
        None when its records take the Python path."""
        self._python = TableTarget(table, schema)

    def write(self, records: Sequence[StagedRecord], token: str) -> int:
        writer = records[0].schema
        try:
            container = self._formats[writer.header]
        except KeyError:
            container = self._formats[writer.header] = self._format_of(writer)
        if container is None:
            return self._python.write(records, token)
        return self.table.insert_avro(
            container.container([r.value for r in records]), len(records), token
        )

    def _format_of(self, writer: StagedSchema) -> ContainerFormat | None:
        spec = self.table.spec
        gaps = writer_gaps(writer.parsed["fields"], self._schema.parsed["fields"], spec)
        if gaps:
            log.info(
                "%s.%s: records of writer schema %s (%s) take the Python path: %s",
                spec.database,
                spec.table,
                writer.path,
                writer.fingerprint_hex,
                "; ".join(gaps),
            )
            return None
        return ContainerFormat(writer)


def table_target(
    table: TableWriter, schema: StagedSchema, *, avro_input: bool = True
) -> TableTarget | AvroTableTarget:
    """The target of a resource's table (``schema``: its current schema): ClickHouse's
    Avro input unless ``avro_input`` is off or a field of the schema is one it would
    store differently. Logs the choice."""
    spec = table.spec
    gaps = (
        avro_input_gaps(schema.parsed["fields"]) if avro_input else ["clickhouse.avro_input is off"]
    )
    if gaps:
        log.info(
            "%s.%s: written through the Python path (decoded here): %s",
            spec.database,
            spec.table,
            "; ".join(gaps),
        )
        return TableTarget(table, schema)
    log.info("%s.%s: written through ClickHouse's Avro input", spec.database, spec.table)
    return AvroTableTarget(table, schema)
