"""Replay throughput: ``ingest replay`` into a shadow table and into the live table.

Run as ``python bench/replay.py [--records N] [--repeats R] [--chunk C]``
(quick check: ``--records 50000 --repeats 1``). It starts the embedded Tansu
broker (or uses ``INGEST_KAFKA_BOOTSTRAP``; ``--engine kafka`` for Apache
Kafka) and opens chDB in one temporary directory. In every repeat it stages N
Coinbase trades, untimed, in writes of 5,000 rows to a fresh 3-partition
topic of a fresh resource, then measures records read per second of:

raw
  scan     ``TopicScanner.scan`` over the whole topic, as replay reads it
           (outside any group, without headers, chunks of 5,000), counting
           records; it ends, like a replay, after 0.5 s without a record.

ours (``run_replay``, the code behind ``ingest replay --from earliest``, blocks of C)
  shadow   into a fresh table (``--into``): every key is missing, all written.
  live     into the resource's live table, which already holds the first half
           of the trades (inserted untimed): half written, half found.

each with the key check in ClickHouse (the default: bodies into a scratch
table, one ``INSERT ... SELECT`` of the missing keys) and in Python
(``clickhouse.avro_input = false``: records decoded, keys queried, columns
inserted). The time is the whole call, as a user waits for it: planning, the
scan, the inserts, and the scan's end (``idle_s`` = 0.5 s without a record,
since Tansu's watermarks cannot end it). Every stage checks the table's
distinct keys afterwards. Stages are interleaved with a rotating order.

The aim of issue 14 is at least 150,000 records/s, into a shadow table and
into the live table.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib

from durable_ingest.operations.replay import ReplayRequest, run_replay
from durable_ingest.operations.replay_plan import parse_bound
from foundation.config import (
    ClickHouseSettings,
    KafkaSettings,
    ResourceSettings,
    Settings,
    SourceSettings,
)
from sink_workers.clickhouse.warehouse import open_warehouse
from sink_workers.clickhouse.writer import ClickHouseTableWriter
from sink_workers.containers import ContainerFormat
from sink_workers.tables import table_spec
from staging.envelope import encode_value
from staging.kafka.provider import KafkaStagingProvider
from staging.kafka.scan import TopicScanner
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog

STAGE_CHUNK = 5_000
AIM = 150_000
IDLE_S = 0.5
RAW_SCAN = "raw scan (TopicScanner)"
STAGES = (
    RAW_SCAN,
    "shadow, key check in ClickHouse",
    "live, key check in ClickHouse",
    "shadow, key check in Python",
    "live, key check in Python",
)


@dataclass
class Bench:
    bootstrap: str
    data_dir: Path
    rows: tuple[dict[str, Any], ...]
    chunk: int
    catalog: SchemaCatalog = field(default_factory=SchemaCatalog.default)
    results: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def __post_init__(self) -> None:
        self.schema = self.catalog.load(benchlib.SCHEMA_PATH)
        self.kafka = KafkaSettings(bootstrap=self.bootstrap)
        self.clickhouse = ClickHouseSettings(dsn=f"chdb://{self.data_dir / 'warehouse'}")
        self.client = open_warehouse(self.clickhouse)
        self.provider = KafkaStagingProvider(
            self.kafka, catalog=self.catalog, max_record_bytes=1_000_000
        )
        self.values = tuple(encode_value(self.schema, row) for row in self.rows)
        self.resource: StagedResource | None = None

    @property
    def n(self) -> int:
        return len(self.rows)

    def settings(self, avro_input: bool) -> Settings:
        assert self.resource is not None
        return Settings(
            data_dir=self.data_dir,
            kafka=self.kafka,
            clickhouse=self.clickhouse.model_copy(update={"avro_input": avro_input}),
            sources={
                benchlib.SOURCE: SourceSettings(
                    resources={
                        self.resource.name: ResourceSettings(
                            schema_file=benchlib.SCHEMA_PATH,
                            key=["product_id"],
                            id_fields=list(benchlib.ID_FIELDS),
                            time_field="time",
                        )
                    }
                )
            },
        )

    def stage(self) -> StagedResource:
        res = benchlib.bench_resource(self.schema)
        with self.provider.allocate_session(benchlib.context(res)) as session:
            writer = session.writer()
            for start in range(0, self.n, STAGE_CHUNK):
                writer.write_batch(self.rows[start : start + STAGE_CHUNK])
        return res

    def record(self, stage: str, rate: float) -> None:
        self.results[stage].append(rate)
        print(f"    {stage:<34} {rate:>12,.0f} records/s", file=sys.stderr, flush=True)

    def raw_scan(self) -> None:
        assert self.resource is not None
        scanner = TopicScanner(self.kafka)
        try:
            partitions = range(self.resource.topic.partitions)
            started = time.perf_counter()
            seen = 0
            for chunk in scanner.scan(
                self.resource.topic.name,
                dict.fromkeys(partitions, 0),
                dict.fromkeys(partitions, 2**63 - 1),
                idle_s=IDLE_S,
                chunk=5_000,
                headers=False,
            ):
                seen += len(chunk)
            rate = seen / (time.perf_counter() - started)
        finally:
            scanner.close()
        if seen != self.n:
            raise RuntimeError(f"raw scan read {seen} of {self.n}")
        self.record(RAW_SCAN, rate)

    def replay(self, stage: str, *, live: bool, avro_input: bool) -> None:
        assert self.resource is not None
        into = None if live else f"shadow_{uuid.uuid4().hex[:12]}"
        table = into or f"{benchlib.SOURCE}_{self.resource.name}"
        spec = table_spec(
            self.schema.parsed["fields"],
            database=self.clickhouse.database,
            table=table,
            order_by=benchlib.ID_FIELDS,
        )
        self.client.command(f"DROP TABLE IF EXISTS {spec.qualified}")
        expected_written = self.n
        if live:  # the live table holds the first half already
            writer = ClickHouseTableWriter(self.client, spec)
            writer.ensure()
            half = self.values[: self.n // 2]
            writer.insert_avro(ContainerFormat(self.schema).container(half), len(half), "prefill")
            expected_written = self.n - len(half)
        request = ReplayRequest(
            resource=self.resource.name,
            start=parse_bound("earliest"),
            source=benchlib.SOURCE,
            into=into,
            block_size=self.chunk,
            idle_s=IDLE_S,
        )
        gc.collect()
        started = time.perf_counter()
        report = run_replay(self.settings(avro_input), request, warn=lambda _m: None)
        rate = self.n / (time.perf_counter() - started)
        totals = report.as_json()["totals"]
        distinct = int(
            self.client.command(  # type: ignore[arg-type]
                f"SELECT uniqExact(product_id, trade_id) FROM {spec.qualified}"
            )
        )
        if totals["written"] != expected_written or distinct != self.n:
            raise RuntimeError(f"{stage}: wrote {totals['written']}, table holds {distinct} keys")
        self.client.command(f"DROP TABLE IF EXISTS {spec.qualified}")
        self.record(stage, rate)

    def run(self, repeats: int) -> None:
        stages: list[Callable[[], None]] = [
            self.raw_scan,
            lambda: self.replay(STAGES[1], live=False, avro_input=True),
            lambda: self.replay(STAGES[2], live=True, avro_input=True),
            lambda: self.replay(STAGES[3], live=False, avro_input=False),
            lambda: self.replay(STAGES[4], live=True, avro_input=False),
        ]
        for step in range(repeats):
            order = stages[step % len(stages) :] + stages[: step % len(stages)]
            print(f"  repeat {step + 1}/{repeats}: staging...", file=sys.stderr, flush=True)
            self.resource = self.stage()
            for stage in order:
                stage()


def report(bench: Bench, args: argparse.Namespace) -> None:
    med = {stage: benchlib.median(rates) for stage, rates in bench.results.items()}
    print()
    print(
        f"durable-ingest replay benchmark: {bench.n:,} trades x {args.repeats} repeat(s), "
        f"blocks of {bench.chunk:,}, broker {bench.bootstrap}, warehouse chdb"
    )
    print(benchlib.versions_line(f"chdb {benchlib.package_version('chdb')}"))
    print()
    print(f"{'stage':<34} {'median records/s':>16}  {'/scan':>5}  runs (records/s)")
    print("-" * 100)
    for stage in STAGES:
        share = "" if stage == RAW_SCAN else f"{med[stage] / med[RAW_SCAN]:.2f}"
        runs = ", ".join(f"{r:,.0f}" for r in bench.results[stage])
        print(f"{stage:<34} {med[stage]:>16,.0f}  {share:>5}  {runs}")
    print()
    for where in ("shadow", "live"):
        ours = med[f"{where}, key check in ClickHouse"]
        python = med[f"{where}, key check in Python"]
        verdict = "reached" if ours >= AIM else "not reached"
        print(
            f"aim >= {AIM:,} records/s into the {where} table: {verdict} ({ours / AIM:.2f} of "
            f"it); the check in ClickHouse is {ours / python:.1f}x the check in Python"
        )
    print(
        f"(every replay includes its scan's end: {IDLE_S} s without a record; at "
        f"{bench.n:,} records that alone caps a run at {bench.n / IDLE_S:,.0f} records/s)"
    )
    print(benchlib.peak_rss_line(None, " (chDB engine included)"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchlib.arg_parser(__doc__.splitlines()[0], chunk_help="offsets per replay block")
    parser.set_defaults(chunk=20_000)  # ingest replay --block-size
    args = benchlib.parse_checked(parser, argv, first_batch="first block")
    print(f"building {args.records:,} trades...", file=sys.stderr, flush=True)
    rows = tuple(benchlib.build_trades(args.records))
    for engine in benchlib.engines(args):
        with (
            benchlib.kafka_bootstrap(engine) as (bootstrap, _pid),
            tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp,
        ):
            print(benchlib.engine_banner(engine, bootstrap), flush=True)
            bench = Bench(bootstrap, Path(tmp), rows, args.chunk)
            try:
                bench.run(args.repeats)
            finally:
                bench.client.close()
            report(bench, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
