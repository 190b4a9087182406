"""Sink throughput: our sink loop against the raw limits of its parts.

Run as ``python bench/sink.py [--records N] [--repeats R] [--chunk C]``
(quick check: ``--records 50000 --repeats 1``; add ``--profile`` for a cProfile
of our loop). It starts the embedded Tansu broker, or uses
``INGEST_KAFKA_BOOTSTRAP`` when that is set, and opens ClickHouse's engine
in-process (chDB, on one temporary directory for the whole run: a process may
open only one chDB path), or the server in ``INGEST_CLICKHOUSE_DSN`` (other
``INGEST_CLICKHOUSE_*`` variables are passed on too). It builds N realistic
Coinbase trades (``schemas/coinbase/matches.avsc``, 9 fields), and in every
repeat stages them, untimed, with ``session.writer().write_batch`` in writes
of 5,000 rows to a fresh 3-partition topic, as a source does. Then it
measures, in one process and on one Python thread, rows per second of:

raw (what the libraries alone can do)
  consume  a plain confluent-kafka Consumer in a fresh group reading the staged
           topic with ``consume(C, 0.2)`` (fetch.wait.max.ms=100 and
           fetch.queue.backoff.ms=20, as our reader), taking each value.
  decode   fastavro ``schemaless_reader`` per staged value, past its 10-byte
           single-object header (timestamps become aware datetimes and
           decimals Decimals, as in our reader).
  insert   clickhouse-connect ``client.insert(..., column_oriented=True)`` of
           pre-built columns (the decoded values) in chunks of C rows into a
           fresh table made by ``table_spec`` + ``ClickHouseTableWriter.ensure``,
           with async_insert=0, insert_deduplicate=1 and a token per chunk.
  avro insert  clickhouse-connect ``client.raw_insert(..., fmt="Avro")`` of
           pre-built Avro container files (``ContainerFormat``) of C staged
           bodies each, with the same settings: ClickHouse's own Avro parser.

ours (the project's sink loop, in-process), on the two write paths
  ours (Avro input)  ``SinkWorker(session, {topic: AvroTableTarget(writer)})``:
           consume, recognise each value (marker and fingerprint; no decode),
           group per partition and writer schema, frame each group's bodies as
           one container file, one deduplicated ``FORMAT Avro`` insert per
           group, commit. What ``ingest sink run`` does by default.
  ours (Python path)  the same with ``TableTarget``: decode into StagedRecords,
           build columns, one column-oriented insert per group, commit
           (``clickhouse.avro_input = false``, and resources with a nullable
           record).

Both run on a fresh group and a fresh table with ``chunk_size=C`` (default
20,000, as ``ingest sink run --chunk-size``), overlapping reading with
inserting as ``ingest sink run`` does: only with a ClickHouse server, not with
embedded chDB, which parses on this process's own cores. ``--overlap on`` or
``off`` forces it either way, to compare the two in separate runs.

Timing: the clock of a consumer (raw consume, ours) starts once its first
batch has been handled (for ours: committed), so the consumer-group join
(seconds on Tansu) is not counted, and stops when all N records were counted
(for ours: committed; watermarks are wrong on Tansu, so none are used). Ours
is observed, not changed: a thin wrapper around the session's reader counts
each commit and stops the worker once all N records are committed, and one
around the table writer adds up the time spent inside inserts. Nothing is
produced while timing, so no producer warm-up is needed; instead the first
insert of the process (about 0.25 s slower than the next: client and engine
start) is made once, untimed, into a throwaway table. The fixtures (trades,
values, columns, containers) are held in tuples, which the garbage collector
stops tracking, so that they do not slow down the full collections that
happen during ours (a real sink does not hold them). Every repeat uses fresh
topics, groups, databases and tables; the stages are interleaved and their
order rotates from one repeat to the next, because CPU speed here drifts by
up to ~2.8x between runs (see /work/shared/ENVIRONMENT.md). After each insert
stage the table's row count is checked. Progress goes to stderr, the table to
stdout.

How to read the table: compare figures within one run only. The aim (issue
14) is >= 300,000 rows/s per sink process for ours (Avro input) and at least
0.3 of raw consume in the same run. One thread that pays consume and an Avro
insert for every record can reach at most 1 / (1/consume + 1/avro insert);
with chDB embedded the engine parses on this process's cores, so that bound
is the ceiling of ours (Avro input), and the share of it ours reaches is
printed. The breakdown splits each of ours per row into time inside inserts,
inside commits, and the rest (consume, recognising or decoding, grouping,
framing or columns, metrics). Peak RSS of this process includes the chDB
engine when it is embedded.

``--long N`` (e.g. 5000000) instead stages N trades, generated and staged in
slices so the bench holds none of them, and runs ours (Avro input) once over
all of them, printing this process's RSS when the sink has committed 1M rows,
half of N, and N: the sink's memory must stay flat.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import benchlib
import fastavro
from clickhouse_connect.driver.client import Client

from foundation.config import ClickHouseSettings, KafkaSettings, settings_from
from sink_workers.clickhouse.warehouse import open_warehouse
from sink_workers.clickhouse.writer import ClickHouseTableWriter
from sink_workers.containers import ContainerFormat
from sink_workers.tables import TableSpec, table_spec
from sink_workers.targets import AvroTableTarget, TableTarget
from sink_workers.worker import SinkWorker
from staging.codec import HEADER_SIZE
from staging.envelope import encode_value
from staging.kafka.provider import KafkaStagingProvider
from staging.protocol import StagedBatch
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog

ORDER_BY = benchlib.ID_FIELDS
"""The tables' sort key: the fields that identify a trade."""
STAGE_CHUNK = 5_000
"""Rows per ``write_batch`` when staging (untimed), as a source writes."""
AIM = 300_000
"""Issue 14's aim: rows/s per sink process (Avro input), on 2 cores."""
AIM_OF_CONSUME = 0.3
"""...and at least this share of raw consume, in the same run."""


# -- data ----------------------------------------------------------------------


def column_chunks(
    records: Sequence[dict[str, Any]], names: Sequence[str], chunk: int
) -> tuple[tuple[tuple[Any, ...], ...], ...]:
    """Decoded records as one sequence per column, cut into chunks of ``chunk`` rows."""
    columns = [tuple(r[name] for r in records) for name in names]
    return tuple(tuple(c[i : i + chunk] for c in columns) for i in range(0, len(records), chunk))


# -- raw stages ----------------------------------------------------------------


def raw_insert(client: Client, spec: TableSpec, chunks: Sequence[Sequence[Sequence[Any]]]) -> float:
    names = spec.column_names
    prefix = uuid.uuid4().hex

    def run() -> None:
        for i, columns in enumerate(chunks):
            client.insert(
                spec.table,
                columns,
                column_names=names,
                database=spec.database,
                column_oriented=True,
                settings={
                    "async_insert": 0,
                    "insert_deduplicate": 1,
                    "insert_deduplication_token": f"raw:{prefix}:{i}",
                },
            )

    return benchlib.timed(sum(len(c[0]) for c in chunks), run)


def raw_avro_insert(
    client: Client, spec: TableSpec, containers: Sequence[bytes], rows: int
) -> float:
    prefix = uuid.uuid4().hex

    def run() -> None:
        for i, container in enumerate(containers):
            client.raw_insert(
                spec.qualified,
                insert_block=container,
                fmt="Avro",
                settings={
                    "async_insert": 0,
                    "insert_deduplicate": 1,
                    "insert_deduplication_token": f"raw:{prefix}:{i}",
                },
            )

    return benchlib.timed(rows, run)


# -- ours: the real worker, observed -----------------------------------------


class WatchedReader:
    """The session's reader; each commit feeds the window, the last one stops the loop."""

    def __init__(self, reader: Any, window: benchlib.Window, on_start: Callable[[], None]) -> None:
        self._reader = reader
        self._window = window
        self._on_start = on_start
        self.commit_s = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def commit(self, batch: StagedBatch) -> Any:
        window = self._window
        started = time.perf_counter()
        committed = self._reader.commit(batch)
        if window.started is not None:
            self.commit_s += time.perf_counter() - started
        first = window.started is None
        if window.add(len(batch.records) + len(batch.corrupt)):
            self._reader.stop()  # as SinkWorker.stop(): ends the run after this batch
        if first:
            self._on_start()
        return committed


class WatchedSession:
    """A staging session whose reader is a :class:`WatchedReader`."""

    def __init__(self, session: Any, window: benchlib.Window, on_start: Callable[[], None]) -> None:
        self._session = session
        self._window = window
        self._on_start = on_start
        self.watched: WatchedReader | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def reader(self) -> WatchedReader:
        self.watched = WatchedReader(self._session.reader(), self._window, self._on_start)
        return self.watched


class TimedTable:
    """A table writer that adds up the time spent inside inserts once the window runs."""

    def __init__(self, writer: ClickHouseTableWriter, window: benchlib.Window) -> None:
        self._writer = writer
        self._window = window
        self.spec = writer.spec
        self.seconds = 0.0

    def insert(self, columns: Sequence[Sequence[Any]], token: str) -> int:
        started = time.perf_counter()
        rows = self._writer.insert(columns, token)
        if self._window.started is not None:
            self.seconds += time.perf_counter() - started
        return rows

    def insert_avro(self, container: bytes, rows: int, token: str) -> int:
        started = time.perf_counter()
        self._writer.insert_avro(container, rows, token)
        if self._window.started is not None:
            self.seconds += time.perf_counter() - started
        return rows


@dataclass(frozen=True, slots=True)
class SinkRun:
    rate: float
    records: int
    """Records inside the timed window (all but the first batch)."""
    seconds: float
    insert_s: float
    commit_s: float


def ours_sink(
    provider: KafkaStagingProvider,
    writer: ClickHouseTableWriter,
    res: StagedResource,
    n: int,
    chunk: int,
    *,
    avro: bool,
    overlap: bool,
    on_start: Callable[[], None] = lambda: None,
    window: benchlib.Window | None = None,
) -> SinkRun:
    window = window or benchlib.Window(n)
    table = TimedTable(writer, window)
    target = AvroTableTarget(table, res.schema) if avro else TableTarget(table)
    with provider.allocate_session(benchlib.context(res)) as session:
        watched = WatchedSession(session, window, on_start)
        worker = SinkWorker(watched, {res.topic.name: target}, chunk_size=chunk, overlap=overlap)
        stats = worker.run(idle_timeout_s=benchlib.IDLE_TIMEOUT_S)
    if stats.rows_written != n or stats.dead_letters:
        raise RuntimeError(f"ours: wrote {stats.rows_written} of {n}, {stats.dead_letters} DLQ")
    commit_s = watched.watched.commit_s if watched.watched is not None else 0.0
    return SinkRun(window.rate(), window.timed_records, window.seconds, table.seconds, commit_s)


# -- the run -------------------------------------------------------------------

RAW_CONSUME = "raw consume (Consumer)"
RAW_DECODE = "raw decode (fastavro reader)"
RAW_INSERT = "raw insert (column-oriented)"
RAW_AVRO = "raw avro insert (FORMAT Avro)"
OURS = "ours (Avro input)"
OURS_PYTHON = "ours (Python path)"
RAW = (RAW_CONSUME, RAW_DECODE, RAW_INSERT, RAW_AVRO)
STAGES = (*RAW, OURS, OURS_PYTHON)


@dataclass
class Bench:
    bootstrap: str
    client: Client
    rows: tuple[dict[str, Any], ...]
    chunk: int
    overlap: bool
    """Write on the insert thread while reading, as ``ingest sink run`` does with a
    ClickHouse server (not with embedded chDB, which parses on this process's cores)."""
    catalog: SchemaCatalog = field(default_factory=SchemaCatalog.default)
    results: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    sink_runs: dict[str, list[SinkRun]] = field(default_factory=lambda: {OURS: [], OURS_PYTHON: []})

    def __post_init__(self) -> None:
        self.schema = self.catalog.load(benchlib.SCHEMA_PATH)
        self.provider = KafkaStagingProvider(
            KafkaSettings(bootstrap=self.bootstrap),
            catalog=self.catalog,
            max_record_bytes=1_000_000,
        )
        # Fixtures are kept in tuples of atomic values, which the garbage collector
        # stops tracking: held in lists, they would make every full collection
        # during ours slower (by ~25 ms at 200k rows), which a real sink does not pay.
        # The staged values, as our writer encodes them, and decoded once for the columns.
        self.values = tuple(encode_value(self.schema, row) for row in self.rows)
        parsed = self.schema.parsed
        decoded = [
            fastavro.schemaless_reader(io.BytesIO(v[HEADER_SIZE:]), parsed, None)
            for v in self.values
        ]
        names = [f["name"] for f in parsed["fields"]]
        self.chunks = column_chunks(decoded, names, self.chunk)
        container = ContainerFormat(self.schema)
        self.containers = tuple(
            container.container(self.values[i : i + self.chunk])
            for i in range(0, len(self.values), self.chunk)
        )
        self.database = ""
        self.resource: StagedResource | None = None

    @property
    def n(self) -> int:
        return len(self.rows)

    def record(self, stage: str, rate: float, note: str = "") -> None:
        self.results[stage].append(rate)
        print(f"    {stage:<30} {rate:>12,.0f} rows/s{note}", file=sys.stderr, flush=True)

    def table(self, kind: str) -> ClickHouseTableWriter:
        spec = table_spec(
            self.schema.parsed["fields"],
            database=self.database,
            table=f"{kind}_{uuid.uuid4().hex[:12]}",
            order_by=ORDER_BY,
        )
        writer = ClickHouseTableWriter(self.client, spec)
        writer.ensure()
        return writer

    def check_rows(self, spec: TableSpec) -> None:
        rows = self.client.command(f"SELECT count() FROM {spec.qualified}")
        if int(rows) != self.n:
            raise RuntimeError(f"{spec.qualified} holds {rows} rows, not {self.n}")

    def stage(self) -> StagedResource:
        """Stage the trades to a fresh topic, untimed, as a source writes them."""
        res = benchlib.bench_resource(self.schema)
        with self.provider.allocate_session(benchlib.context(res)) as session:
            writer = session.writer()
            for start in range(0, self.n, STAGE_CHUNK):
                part = self.rows[start : start + STAGE_CHUNK]
                writer.write_batch(part, checkpoint={"trade_id": part[-1]["trade_id"]})
        return res

    def raw_consume(self) -> None:
        assert self.resource is not None
        topic = self.resource.topic.name
        self.record(RAW_CONSUME, benchlib.raw_consume(self.bootstrap, topic, self.n, self.chunk))

    def raw_decode(self) -> None:
        self.record(
            RAW_DECODE, benchlib.raw_decode(self.schema.parsed, self.values, skip=HEADER_SIZE)
        )

    def raw_insert(self) -> None:
        writer = self.table("raw")
        self.record(RAW_INSERT, raw_insert(self.client, writer.spec, self.chunks))
        self.check_rows(writer.spec)

    def raw_avro_insert(self) -> None:
        writer = self.table("rawavro")
        self.record(RAW_AVRO, raw_avro_insert(self.client, writer.spec, self.containers, self.n))
        self.check_rows(writer.spec)

    def ours(self) -> None:
        self._ours(OURS, avro=True)

    def ours_python(self) -> None:
        self._ours(OURS_PYTHON, avro=False)

    def _ours(self, stage: str, *, avro: bool) -> None:
        assert self.resource is not None
        writer = self.table("ours")
        run = ours_sink(
            self.provider,
            writer,
            self.resource,
            self.n,
            self.chunk,
            avro=avro,
            overlap=self.overlap,
        )
        self.sink_runs[stage].append(run)
        share = run.insert_s / run.seconds if run.seconds else float("nan")
        self.record(stage, run.rate, f"  ({share:.0%} in inserts)")
        self.check_rows(writer.spec)

    def warm_up(self) -> None:
        """One untimed insert: the first of a process costs ~0.25 s more (client and engine start)."""
        self.database = f"bench_sink_{uuid.uuid4().hex[:12]}"
        try:
            raw_insert(self.client, self.table("warmup").spec, self.chunks[:1])
        finally:
            self.client.command(f"DROP DATABASE IF EXISTS `{self.database}`")

    def run(self, repeats: int) -> None:
        self.warm_up()
        stages: list[Callable[[], None]] = [
            self.raw_consume,
            self.raw_decode,
            self.raw_insert,
            self.raw_avro_insert,
            self.ours,
            self.ours_python,
        ]
        for step in range(repeats):
            order = stages[step % len(stages) :] + stages[: step % len(stages)]
            names = ", ".join(s.__name__ for s in order)
            print(f"  repeat {step + 1}/{repeats}: staging...", file=sys.stderr, flush=True)
            self.resource = self.stage()
            self.database = f"bench_sink_{uuid.uuid4().hex[:12]}"
            print(f"  repeat {step + 1}/{repeats} ({names})", file=sys.stderr, flush=True)
            try:
                for stage in order:
                    gc.collect()
                    stage()
            finally:
                self.client.command(f"DROP DATABASE IF EXISTS `{self.database}`")

    def profile(self, top: int) -> None:
        """One more run of ours under cProfile, from its first commit to its last."""
        print("  profiling ours...", file=sys.stderr, flush=True)
        self.resource = self.stage()
        self.database = f"bench_sink_{uuid.uuid4().hex[:12]}"
        profiler = cProfile.Profile()
        try:
            gc.collect()
            run = ours_sink(
                self.provider,
                self.table("ours"),
                self.resource,
                self.n,
                self.chunk,
                avro=True,
                overlap=self.overlap,
                on_start=profiler.enable,
            )
        finally:
            profiler.disable()
            self.client.command(f"DROP DATABASE IF EXISTS `{self.database}`")
        print_profile(pstats.Stats(profiler), run, top)


def report(bench: Bench, args: argparse.Namespace, warehouse: str, broker_pid: int | None) -> None:
    med = {stage: benchlib.median(rates) for stage, rates in bench.results.items()}
    consume = med[RAW_CONSUME]
    print()
    print(
        f"durable-ingest sink benchmark: {bench.n:,} trades x {args.repeats} repeat(s), "
        f"batches of {bench.chunk:,}, overlap {'on' if bench.overlap else 'off'}, "
        f"broker {bench.bootstrap}, warehouse {warehouse}"
    )
    print(
        benchlib.versions_line(
            f"clickhouse-connect {benchlib.package_version('clickhouse-connect')}",
            f"chdb {benchlib.package_version('chdb')}",
        )
    )
    print()
    print(f"{'stage':<30} {'median rows/s':>13}  {'us/row':>6}  {'/consume':>8}  runs (rows/s)")
    print("-" * 104)
    for stage in STAGES:
        share = f"{med[stage] / consume:.2f}" if stage != RAW_CONSUME else ""
        runs = ", ".join(f"{r:,.0f}" for r in bench.results[stage])
        print(f"{stage:<30} {med[stage]:>13,.0f}  {1e6 / med[stage]:>6.2f}  {share:>8}  {runs}")
    print()
    ours, python = med[OURS], med[OURS_PYTHON]
    avro_bound = 1 / (1 / consume + 1 / med[RAW_AVRO])
    python_bound = 1 / (1 / consume + 1 / med[RAW_DECODE] + 1 / med[RAW_INSERT])
    print(
        f"one-thread bounds: consume + avro insert {avro_bound:,.0f} rows/s, which ours "
        f"(Avro input) reaches {ours / avro_bound:.2f} of; consume + decode + insert "
        f"{python_bound:,.0f} rows/s, which ours (Python path) reaches {python / python_bound:.2f} of"
    )
    print(f"ours (Avro input) over ours (Python path): {ours / python:.2f}x")
    reached = ours >= AIM and ours >= AIM_OF_CONSUME * consume
    print(
        f"aim: >= {AIM:,} rows/s and >= {AIM_OF_CONSUME} of raw consume: "
        f"{'reached' if reached else 'not reached'} by ours (Avro input): {ours / AIM:.2f} "
        f"of {AIM:,}, {ours / consume:.2f} of raw consume"
    )
    for stage, raw_rest in (
        (OURS, 1e6 / consume),
        (OURS_PYTHON, 1e6 / consume + 1e6 / med[RAW_DECODE]),
    ):
        runs = bench.sink_runs[stage]
        if not runs:
            continue
        per = {
            "insert": benchlib.median([r.insert_s / r.records * 1e6 for r in runs]),
            "commit": benchlib.median([r.commit_s / r.records * 1e6 for r in runs]),
            "rest": benchlib.median(
                [(r.seconds - r.insert_s - r.commit_s) / r.records * 1e6 for r in runs]
            ),
        }
        raw_insert = 1e6 / med[RAW_AVRO if stage == OURS else RAW_INSERT]
        what = "raw consume" if stage == OURS else "raw consume + decode"
        print(
            f"{stage} per row (medians): {per['insert']:.2f} us in inserts (raw "
            f"{raw_insert:.2f}), {per['commit']:.2f} us in commits, {per['rest']:.2f} us "
            f"the rest ({what} {raw_rest:.2f})"
        )
    note = " (chDB engine included)" if warehouse.startswith("chdb") else ""
    print(benchlib.peak_rss_line(broker_pid, note))


def print_profile(stats: pstats.Stats, run: SinkRun, top: int) -> None:
    """Own and cumulative time per timed row of the heaviest functions."""
    entries = stats.stats
    total = sum(tt for _cc, _nc, tt, _ct, _callers in entries.values())
    per_row = 1e6 / run.records
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

    def name(key: tuple[str, int, str]) -> str:
        path, line, func = key
        if path == "~":
            return func
        path = path.removeprefix(root)
        for marker in ("site-packages" + os.sep, "lib" + os.sep + "python3"):
            if marker in path:
                path = path.split(marker, 1)[1]
        return f"{path}:{line} {func}"

    print()
    print(
        f"cProfile of ours, first commit to last: {run.records:,} rows, "
        f"{run.rate:,.0f} rows/s under the profiler; {total * per_row:.2f} us/row profiled"
    )
    for title, index in (("own time", 2), ("cumulative time", 3)):
        print()
        print(f"top {top} by {title} (us/row, calls/row):")
        ranked = sorted(entries.items(), key=lambda item: item[1][index], reverse=True)
        for key, value in ranked[:top]:
            print(f"  {value[index] * per_row:>7.2f}  {value[1] / run.records:>6.2f}  {name(key)}")


def rss_mib() -> float:
    """This process's resident memory now, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def long_run(bootstrap: str, client: Client, n: int, chunk: int, overlap: bool) -> None:
    """Stage ``n`` trades in slices (none held), then one run of ours (Avro input) over
    all of them, with this process's RSS when 1M, n/2 and n rows are committed."""
    catalog = SchemaCatalog.default()
    schema = catalog.load(benchlib.SCHEMA_PATH)
    provider = KafkaStagingProvider(
        KafkaSettings(bootstrap=bootstrap), catalog=catalog, max_record_bytes=1_000_000
    )
    res = benchlib.bench_resource(schema)
    slice_rows = 100_000
    with provider.allocate_session(benchlib.context(res)) as session:
        writer = session.writer()
        for k, start in enumerate(range(0, n, slice_rows)):
            rows = benchlib.build_trades(min(slice_rows, n - start), seed=k)
            for row in rows:
                row["trade_id"] += k * 1_000_000_000  # unique across slices
            for i in range(0, len(rows), STAGE_CHUNK):
                part = rows[i : i + STAGE_CHUNK]
                writer.write_batch(part, checkpoint={"trade_id": part[-1]["trade_id"]})
            print(f"  staged {start + len(rows):,} of {n:,}", file=sys.stderr, flush=True)
    marks = sorted({min(1_000_000, n), n // 2, n})
    samples: list[tuple[int, float, int]] = []
    started = rss_mib()

    class Sampled(benchlib.Window):
        def add(self, count: int) -> bool:
            done = super().add(count)
            while marks and self.count >= marks[0]:
                samples.append((marks.pop(0), rss_mib(), sys.getallocatedblocks()))
            return done

    database = f"bench_sink_{uuid.uuid4().hex[:12]}"
    spec = table_spec(schema.parsed["fields"], database=database, table="long", order_by=ORDER_BY)
    writer_ = ClickHouseTableWriter(client, spec)
    writer_.ensure()
    try:
        gc.collect()
        run = ours_sink(
            provider, writer_, res, n, chunk, avro=True, overlap=overlap, window=Sampled(n)
        )
        rows_in = int(client.command(f"SELECT count() FROM {spec.qualified}"))
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{database}`")
    print()
    print(f"long run: {n:,} trades through ours (Avro input), batches of {chunk:,}")
    print(f"  {run.rate:,.0f} rows/s over the run; {rows_in:,} rows in the table")
    print(f"  RSS of this process (chDB engine included) before the sink: {started:,.0f} MiB")
    for mark, mib, blocks in samples:
        print(
            f"  at {mark:>10,} rows committed: RSS {mib:,.0f} MiB, Python heap "
            f"{blocks:,} allocated blocks"
        )
    if len(samples) >= 2:
        (first, rss0, blocks0), (last, rss1, blocks1) = samples[0], samples[-1]
        print(
            f"  from {first:,} to {last:,} rows: RSS {(rss1 - rss0) / rss0:+.1%}, "
            f"Python heap {(blocks1 - blocks0) / blocks0:+.1%} (the rest of RSS is chDB's)"
        )


@contextmanager
def warehouse_client() -> Iterator[tuple[Client, str]]:
    """A client on INGEST_CLICKHOUSE_DSN, or on chDB in one temporary directory."""
    prefix = "INGEST_CLICKHOUSE_"
    given = {
        k.removeprefix(prefix).lower(): v for k, v in os.environ.items() if k.startswith(prefix)
    }
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as tmp:
        data = {"clickhouse": given} if "dsn" in given else {"data_dir": tmp}
        settings: ClickHouseSettings = settings_from(data, "bench").clickhouse
        client = open_warehouse(settings)
        try:
            path = settings.embedded_path
            yield client, "chdb (temporary directory)" if path else settings.dsn.split("?")[0]
        finally:
            client.close()


def overlap(args: argparse.Namespace, warehouse: str) -> bool:
    """``--overlap``: as ``ingest sink run`` (not with embedded chDB), or forced."""
    return {"on": True, "off": False}.get(args.overlap, not warehouse.startswith("chdb"))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = benchlib.arg_parser(
        __doc__.splitlines()[0], chunk_help="rows per read batch and insert"
    )
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=25,
        default=0,
        metavar="TOP",
        help="then run ours once more under cProfile and print the TOP (25) functions",
    )
    parser.add_argument(
        "--overlap",
        choices=["auto", "on", "off"],
        default="auto",
        help="insert on a second thread while reading: auto (as ingest sink run: only "
        "with a ClickHouse server), on or off",
    )
    parser.add_argument(
        "--long",
        type=int,
        default=0,
        metavar="N",
        help="instead: one run of ours (Avro input) over N staged trades, with RSS at 1M, "
        "N/2 and N rows",
    )
    parser.set_defaults(chunk=20_000)  # ingest sink run's --chunk-size
    return benchlib.parse_checked(parser, argv, first_batch="first batch")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.long:
        for engine in benchlib.engines(args):
            with (
                benchlib.kafka_bootstrap(engine) as (bootstrap, _broker_pid),
                warehouse_client() as (client, where),
            ):
                print(benchlib.engine_banner(engine, bootstrap), flush=True)
                long_run(bootstrap, client, args.long, args.chunk, overlap(args, where))
        return 0
    print(f"building {args.records:,} trades...", file=sys.stderr, flush=True)
    rows = tuple(benchlib.build_trades(args.records))
    for engine in benchlib.engines(args):
        with (
            benchlib.kafka_bootstrap(engine) as (bootstrap, broker_pid),
            warehouse_client() as (client, where),
        ):
            print(benchlib.engine_banner(engine, bootstrap), flush=True)
            bench = Bench(bootstrap, client, rows, args.chunk, overlap(args, where))
            bench.run(args.repeats)
            report(bench, args, where, broker_pid)
            if args.profile:
                bench.profile(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
