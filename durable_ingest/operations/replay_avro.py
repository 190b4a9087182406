"""The replay's keyed inserts done by ClickHouse: no record decoded, no key in Python.

:class:`AvroKeyedTable` writes a block of one partition's staged records as
:class:`~durable_ingest.operations.replay_keys.KeyedTable` does (only rows
whose natural key the table lacks, each key once), but lets the server do
it: the block's bodies go into a scratch table as Avro container files (one
per writer schema), and one ``INSERT ... SELECT`` moves the rows with missing
keys (:class:`~sink_workers.clickhouse.scratch.KeyedScratch`). Records the
server's Avro parser refuses are isolated by halving and reported, as the
Python check reports records it cannot key. A block holding a writer schema
that ClickHouse's Avro input cannot map as Avro resolution would
(:func:`~sink_workers.tables.writer_gaps`) goes to the Python check instead.
Pure code: the scratch table is injected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from durable_ingest.operations.replay_keys import BlockResult, KeyedTable
from foundation.errors import BatchRejectedError, CorruptRecordError
from sink_workers.containers import ContainerFormat
from sink_workers.tables import TableSpec, writer_gaps
from staging.decoder import StagedRecord
from staging.schemas import StagedSchema


def _decoded(records: Sequence[StagedRecord]) -> list[StagedRecord]:
    """The records decoded once (read undecoded, a record decodes each time its ``record``
    is read, and the Python check reads it twice); one that does not decode stays as it
    is, for the check to report."""
    out = []
    for record in records:
        try:
            out.append(record._replace(decoded=record.record))
        except CorruptRecordError:
            out.append(record)
    return out


class Scratch(Protocol):
    """A scratch table next to the target (:class:`~sink_workers.clickhouse.scratch.KeyedScratch`)."""

    def clear(self) -> None: ...

    def load(self, container: bytes, rows: int) -> None: ...

    def insert_missing(self) -> int: ...


class AvroKeyedTable:
    """Writes blocks of one partition's records, each natural key at most once, through
    ClickHouse; ``fallback`` takes blocks with a writer schema it cannot map."""

    def __init__(
        self, scratch: Scratch, spec: TableSpec, schema: StagedSchema, fallback: KeyedTable
    ) -> None:
        self._scratch = scratch
        self._spec = spec
        self._schema = schema
        self._fallback = fallback
        self._formats: dict[bytes, ContainerFormat | None] = {}

    def write_block(self, records: Sequence[StagedRecord]) -> BlockResult:
        """Insert the records (of one partition, in offset order) whose key is missing."""
        runs: list[tuple[ContainerFormat, list[StagedRecord]]] = []
        for record in records:
            container = self._format_of(record.schema)
            if container is None:
                return self._fallback.write_block(_decoded(records))
            if runs and runs[-1][0] is container:
                runs[-1][1].append(record)
            else:
                runs.append((container, [record]))
        result = BlockResult()
        self._scratch.clear()
        loaded = sum(self._load(container, run, result) for container, run in runs)
        written = self._scratch.insert_missing() if loaded else 0
        result.written = written
        result.deduplicated = loaded - written
        return result

    def _load(
        self, container: ContainerFormat, records: list[StagedRecord], result: BlockResult
    ) -> int:
        """Load ``records`` into the scratch table, halving around refused ones; returns
        how many were loaded."""
        try:
            self._scratch.load(container.container([r.value for r in records]), len(records))
        except BatchRejectedError as exc:
            if len(records) == 1:
                record = records[0]
                where = f"{record.topic}[{record.partition}]@{record.offset}"
                result.refused.append(f"staged record {where}: {exc}")
                return 0
            middle = len(records) // 2
            return self._load(container, records[:middle], result) + self._load(
                container, records[middle:], result
            )
        return len(records)

    def _format_of(self, writer: StagedSchema) -> ContainerFormat | None:
        try:
            return self._formats[writer.header]
        except KeyError:
            fits = not writer_gaps(
                writer.parsed["fields"], self._schema.parsed["fields"], self._spec
            )
            container = self._formats[writer.header] = ContainerFormat(writer) if fits else None
            return container
