"""``ingest replay``: one resource's staged records back into a table, outside any group.

The loop around :mod:`durable_ingest.operations.replay_plan` (what to read) and
:mod:`durable_ingest.operations.replay_keys` (which rows the table holds):

1. the resource and its target are resolved: its live table
   ``<source>_<resource>``, or a shadow table (``--into``) with the same
   columns, engine and ORDER BY;
2. ``--from`` / ``--to`` become per-partition offsets (:func:`plan_replay`),
   from the topic's low watermarks and offsets by time, read with a
   :class:`TopicScanner`, which joins no group and commits nothing: the live
   sink's group ``ingest.sink.<source>`` is only read, for the warning;
3. the range is scanned; records are decoded and cut per partition into
   blocks at fixed offsets (multiples of ``block_size``), so a re-run cuts
   the same blocks; for each block the table is asked which natural keys it
   already holds, and only the others are inserted (one row per key). By
   default ClickHouse does both without a record decoded in Python: the
   block's bodies go into a scratch table and one ``INSERT ... SELECT`` moves
   the missing keys (:mod:`durable_ingest.operations.replay_avro`). With
   ``clickhouse.avro_input = false``, or for a resource ClickHouse's Avro
   input would store differently, records are decoded and their keys asked
   for (:mod:`durable_ingest.operations.replay_keys`), inserted with a
   deterministic deduplication token derived from the offsets inserted.

Transient warehouse or broker errors stop the replay with one line; running
it again is safe (the key check skips what was written). Corrupt records are
counted and skipped, not dead-lettered (the live sink did that already).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Protocol

from durable_ingest.operations.replay_avro import AvroKeyedTable
from durable_ingest.operations.replay_keys import (
    BlockResult,
    KeyColumns,
    KeyedTable,
    check_existing,
)
from durable_ingest.operations.replay_plan import (
    AtTime,
    Bound,
    PartitionCounts,
    PartitionGate,
    ReplayPlan,
    ReplayReport,
    check_order,
    live_table_warning,
    plan_replay,
)
from foundation.config import Settings
from foundation.errors import (
    ConfigError,
    CorruptRecordError,
    StopError,
    UnknownResourceError,
    WarehouseInUseError,
)
from sink_workers.clickhouse.query import ReadOnlyQuery
from sink_workers.clickhouse.scratch import KeyedScratch
from sink_workers.clickhouse.warehouse import open_warehouse
from sink_workers.clickhouse.writer import ClickHouseTableWriter
from sink_workers.run import table_name
from sink_workers.tables import IDENTIFIER, TableSpec, avro_input_gaps, table_spec
from source_workers.connectors.defaults import with_connector_defaults
from staging.compose import schema_catalog, staged_resources
from staging.decoder import EnvelopeDecoder, FixedHeaders, StagedRecord
from staging.kafka.scan import RawRecord, TopicScanner
from staging.protocol import StagingContext
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog

log = logging.getLogger(__name__)
OPEN_END = 2**63 - 1
"""The scanner's stop offset for a partition read until its time bound or idleness."""
UNDECODABLE_TO_STOP = 100
"""This many corrupt records with not one decodable record: the wrong topic or schemas."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayRequest:
    resource: str
    start: Bound
    stop: Bound | None = None
    """None: up to the moment the replay starts (and until the scan is idle)."""
    source: str | None = None
    into: str | None = None
    """A shadow table in ``clickhouse.database``; None: the resource's live table."""
    allow_gap: bool = False
    dry_run: bool = False
    block_size: int = 20_000
    idle_s: float = 2.0

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ConfigError(f"--block-size must be at least 1, not {self.block_size}")
        if not self.idle_s > 0:
            raise ConfigError(f"--idle must be more than 0 seconds, not {self.idle_s}")


@dataclass(frozen=True, slots=True)
class ReplayTarget:
    resource: StagedResource
    spec: TableSpec
    live: bool
    catalog: SchemaCatalog


def resolve_target(settings: Settings, request: ReplayRequest) -> ReplayTarget:
    """The resource to replay and the table it goes to; one-line errors for bad names."""
    source = request.source
    if source is None:
        if len(settings.sources) != 1:
            known = ", ".join(sorted(settings.sources)) or "none"
            raise ConfigError(f"name the source to replay with --source (configured: {known})")
        source = next(iter(settings.sources))
    catalog = schema_catalog(settings)
    catalog.load_all()  # records staged with an older schema version still decode
    everything = staged_resources(settings, catalog)
    declared = {r.name: r for r in staged_resources(settings, catalog, source)}
    resource = declared.get(request.resource)
    if resource is None:
        known = ", ".join(sorted(declared)) or "none"
        raise UnknownResourceError(
            f"source {source} has no resource {request.resource!r} (resources: {known})",
            source=source,
            resource=request.resource,
        )
    live_name = table_name(source, resource.name)
    table = live_name if request.into is None else request.into
    if not IDENTIFIER.match(table):
        raise ConfigError(
            f"--into {table!r} is not a table name: use letters, digits and '_', starting with "
            "a letter or '_' (the database is the clickhouse.database setting)"
        )
    for other in everything:
        if (other.source, other.name) != (source, resource.name) and table == table_name(
            other.source, other.name
        ):
            raise ConfigError(
                f"--into {table} is the table of resource {other.qualified_name}; pick another name"
            )
    if settings.sources[source].resources[resource.name].stream_topic is not None and (
        request.into is None
    ):
        raise ConfigError(
            f"resource {resource.qualified_name} is sunk into a Kafka topic, not a table: "
            "name a table to replay into with --into"
        )
    if not resource.id_fields:
        raise ConfigError(
            f"resource {resource.qualified_name} has no id_fields (natural key): a replay could "
            "not tell which rows the table already holds"
        )
    spec = table_spec(
        resource.schema.parsed["fields"],
        database=settings.clickhouse.database,
        table=table,
        order_by=resource.id_fields,
    )
    KeyColumns.of(spec)  # refuse key types the check cannot compare, before any I/O
    return ReplayTarget(resource, spec, table == live_name, catalog)


def make_plan(
    scanner: TopicScanner, resource: StagedResource, request: ReplayRequest, now_ms: int
) -> ReplayPlan:
    """Look up what the plan needs on the broker (never the high watermarks) and plan."""
    topic = resource.topic.name
    partitions = scanner.partitions(topic)
    low = {p: lo for p, (lo, _high) in scanner.watermarks(topic).items()}
    at_start = first_times = None
    if isinstance(request.start, AtTime):
        at_start = scanner.offsets_at(topic, request.start.ms)
        first_times = _first_times(scanner, topic, low, request.idle_s)
    return plan_replay(
        topic,
        partitions,
        request.start,
        request.stop,
        low=low,
        offsets_at_start=at_start,
        first_times=first_times,
        now_ms=now_ms,
        retention_ms=resource.topic.retention_ms,
        allow_gap=request.allow_gap,
    )


@contextmanager
def _closing(chunks: Iterator[list[RawRecord]]) -> Iterator[Iterator[list[RawRecord]]]:
    """Close a scan left early, so that its consumer unassigns the partitions at once."""
    try:
        yield chunks
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _first_times(
    scanner: TopicScanner, topic: str, low: dict[int, int], idle_s: float
) -> dict[int, int | None]:
    """The time of the first retained record of each partition that lost records."""
    wanted = {p: lo for p, lo in low.items() if lo > 0}
    found: dict[int, int | None] = {}
    if wanted:
        stop = dict.fromkeys(wanted, OPEN_END)
        with _closing(scanner.scan(topic, wanted, stop, idle_s=idle_s, chunk=100)) as chunks:
            for chunk in chunks:
                for record in chunk:
                    found.setdefault(record.partition, record.timestamp_ms or 0)
                if len(found) == len(wanted):
                    break
    return {p: found.get(p) for p in wanted}


def run_replay(
    settings: Settings,
    request: ReplayRequest,
    *,
    warn: Callable[[str], None] = log.warning,
    scanner: TopicScanner | None = None,
    now_ms: int | None = None,
) -> ReplayReport:
    """Replay one resource's range; ``warn`` gets the live-table warning before any write."""
    settings = with_connector_defaults(settings, request.source)
    target = resolve_target(settings, request)
    resource = target.resource
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    check_order(request.start, request.stop, now_ms)
    with ExitStack() as stack:
        client = None
        if not request.dry_run:
            # First, as the sink does: an embedded warehouse a sink owns fails here, at once.
            try:
                client = open_warehouse(settings.clickhouse)
            except WarehouseInUseError as exc:
                raise WarehouseInUseError(
                    f"{exc}; stop the sink that owns it (ingest sink run) before replaying in "
                    "embedded mode, or point clickhouse.dsn at a ClickHouse server"
                ) from None
            stack.callback(client.close)
        if scanner is None:
            scanner = TopicScanner(settings.kafka)
            stack.callback(scanner.close)
        plan = make_plan(scanner, resource, request, now_ms)
        for gap in plan.gaps:
            warn(f"{gap}; replaying from the retained data (--allow-gap)")
        warnings = list(plan.gaps)
        if target.live:
            group = StagingContext(source=resource.source, resources=(resource,)).consumer_group
            message = live_table_warning(
                plan,
                scanner.committed(group, plan.topic),
                table=f"{target.spec.database}.{target.spec.table}",
                group=group,
                id_fields=resource.id_fields,
            )
            if message is not None:
                warn(message)
                warnings.append(message)
        report = ReplayReport(
            resource.source,
            resource.name,
            plan.topic,
            f"{target.spec.database}.{target.spec.table}",
            target.live,
            request.dry_run,
            [PartitionCounts(pp.partition, pp.start, pp.stop) for pp in plan.partitions],
            warnings,
        )
        table: BlockWriter | None = None
        if client is not None:
            query = ReadOnlyQuery(client)
            check_existing(query, target.spec)
            writer = ClickHouseTableWriter(client, target.spec)
            writer.ensure()
            nonce = uuid.uuid4().hex[:12]
            table = KeyedTable(query, writer, nonce)
            fields = resource.schema.parsed["fields"]
            if settings.clickhouse.avro_input and not avro_input_gaps(fields):
                scratch = KeyedScratch(client, target.spec, nonce)
                stack.callback(scratch.drop)
                scratch.create()
                table = AvroKeyedTable(scratch, target.spec, resource.schema, fallback=table)
        _Replayer(target.catalog, plan, report, table, request).run(scanner)
    return report


class BlockWriter(Protocol):
    """Writes one partition's block, each natural key once (KeyedTable, AvroKeyedTable)."""

    def write_block(self, records: Sequence[StagedRecord]) -> BlockResult: ...


class _Replayer:
    """Scans a plan's range and writes each block's missing rows."""

    def __init__(
        self,
        catalog: SchemaCatalog,
        plan: ReplayPlan,
        report: ReplayReport,
        table: BlockWriter | None,
        request: ReplayRequest,
    ) -> None:
        self._decoder = EnvelopeDecoder(catalog)
        # ClickHouse parses what it checks: only recognise the values (marker, schema).
        self._recognise = (
            self._decoder.frame if isinstance(table, AvroKeyedTable) else self._decoder.decode
        )
        self._plan = plan
        self._counts = {c.partition: c for c in report.partitions}
        self._table = table
        self._request = request
        self._buffers: dict[int, list[StagedRecord]] = {}
        self._blocks: dict[int, int] = {}
        self._decoded = 0
        self._corrupt_logged = 0

    def run(self, scanner: TopicScanner) -> None:
        plan = self._plan
        if not plan.partitions:
            return
        gates = {pp.partition: PartitionGate(pp) for pp in plan.partitions}
        start = {pp.partition: pp.start for pp in plan.partitions}
        stop = {pp.partition: OPEN_END if pp.stop is None else pp.stop for pp in plan.partitions}
        chunks = scanner.scan(
            plan.topic, start, stop, idle_s=self._request.idle_s, chunk=5_000, headers=False
        )
        with _closing(chunks):
            for chunk in chunks:
                for raw in chunk:
                    gate = gates.get(raw.partition)
                    if gate is None or gate.ended:
                        continue
                    verdict = gate.admit(raw.offset, raw.timestamp_ms)
                    if verdict == "skip":
                        self._counts[raw.partition].skipped += 1
                    elif verdict == "take":
                        self._take(raw)
                    if gate.ended:
                        self._flush(raw.partition)
                if all(g.ended for g in gates.values()):
                    break
        for p in list(self._buffers):
            self._flush(p)
        corrupt = sum(c.corrupt for c in self._counts.values())
        if corrupt and not self._decoded:
            raise StopError(
                f"none of the {corrupt} records read from {plan.topic} could be decoded; "
                "is the schemas folder (staging.schemas_dir) the one they were staged with?"
            )

    def _take(self, raw: RawRecord) -> None:
        p = raw.partition
        counts = self._counts[p]
        counts.saw(raw.offset)
        try:
            record = self._recognise(
                raw.topic, p, raw.offset, raw.key, raw.value, FixedHeaders(raw.headers)
            )
        except CorruptRecordError as exc:
            self._skip_corrupt(counts, str(exc))
            return
        self._decoded += 1
        if self._table is None:
            return  # a dry run counts, decodes and writes nothing
        block = raw.offset // self._request.block_size
        if self._blocks.get(p, block) != block:
            self._flush(p)
        self._blocks[p] = block
        self._buffers.setdefault(p, []).append(record)

    def _skip_corrupt(self, counts: PartitionCounts, reason: str) -> None:
        counts.corrupt += 1
        if self._corrupt_logged < 10:
            log.warning("skipping a record: %s", reason)
            self._corrupt_logged += 1
        total = sum(c.corrupt for c in self._counts.values())
        if not self._decoded and total >= UNDECODABLE_TO_STOP:
            raise StopError(
                f"the first {total} records read from {self._plan.topic} cannot be decoded "
                f"(last: {reason}); is this the resource's staging topic, and the schemas folder "
                "the one they were staged with?"
            )

    def _flush(self, p: int) -> None:
        records = self._buffers.pop(p, [])
        self._blocks.pop(p, None)
        if not records or self._table is None:
            return
        counts = self._counts[p]
        result = self._table.write_block(records)
        counts.written += result.written
        counts.deduplicated += result.deduplicated
        for reason in result.refused:
            self._skip_corrupt(counts, reason)
